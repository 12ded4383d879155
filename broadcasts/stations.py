"""Commune loudspeaker stations: which communes stream, and which urgent runs they played."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from audio.programmes import public_audience
from broadcasts import audit
from broadcasts.areas import AreaError, get_by_code
from db.engine import insert_for
from db.models import (
    Area,
    AreaKind,
    AssetKind,
    AudioAsset,
    BroadcastRun,
    Bulletin,
    BulletinArea,
    BulletinState,
    Official,
    Priority,
    RunState,
    Station,
    StationOnAir,
    StationPlay,
    StationRequest,
    StationRequestState,
)

__all__ = [
    "LEASE",
    "PLAY_REQUEST_TTL",
    "PUBLISHED_STATES",
    "PendingPlay",
    "PlayError",
    "PlayProblem",
    "PlayableBulletin",
    "UrgentPlay",
    "bulletin_mp3",
    "drop_play",
    "enabled_communes",
    "mark_played",
    "pending_plays",
    "playable_bulletins",
    "recent_requests",
    "record_on_air",
    "record_play",
    "request_play",
    "switch_off",
    "switch_on",
    "urgent_plays",
]

# The lease of the one process that drives the streams (haidang.runtime.StationPart); the
# dashboard reads it to tell whether the stored on-air state is being kept up to date.
LEASE: Final = "station"
# A "play now" the driver could not air by then (no driver running, MP3 still missing) is
# dropped: played much later it would surprise the commune.
PLAY_REQUEST_TTL: Final = dt.timedelta(minutes=10)
# Bulletins approved for the public: what an operator may put on the air now.
PUBLISHED_STATES: Final = (
    BulletinState.approved,
    BulletinState.scheduled,
    BulletinState.sending,
    BulletinState.sent,
)
_TITLE_MAX: Final = 400  # Station.on_air_title

# Runs in these states have started going out; a cancelled or missed run is not aired.
_AIRED_STATES = (RunState.sending, RunState.done)


async def _commune(session: AsyncSession, code: str) -> Area:
    area = await get_by_code(session, code)
    if area.kind is not AreaKind.commune:
        raise AreaError(f"a station is a commune's, not a {area.kind.value}'s: {code.strip()}")
    return area


async def switch_on(session: AsyncSession, code: str, now: dt.datetime) -> tuple[Area, bool]:
    """Switch the commune's station on; (the commune, whether it was off before).

    Raises AreaError for an unknown code or an area that is not a commune. The caller
    audits and commits; a running service starts the stream within seconds.
    """
    area = await _commune(session, code)
    row = await session.get(Station, area.id)
    if row is None:
        session.add(Station(area_id=area.id, enabled=True, created_at=now))
        return area, True
    changed = not row.enabled
    row.enabled = True
    if changed:  # what played before it was switched off is not what plays now
        row.on_air = row.on_air_title = row.on_air_since = None
    return area, changed


async def switch_off(session: AsyncSession, code: str) -> tuple[Area, bool]:
    """Switch the commune's station off; (the commune, whether it was on before).

    Raises AreaError like switch_on. The row stays (enabled false); its pending "play now"
    requests are dropped (switched on again later, they would air out of the blue).
    """
    area = await _commune(session, code)
    row = await session.get(Station, area.id)
    if row is None or not row.enabled:
        return area, False
    row.enabled = False
    row.on_air = row.on_air_title = row.on_air_since = None
    await session.execute(
        update(StationRequest)
        .where(
            StationRequest.area_id == area.id,
            StationRequest.state == StationRequestState.pending,
        )
        .values(state=StationRequestState.dropped, reason="station_off")
    )
    return area, True


async def enabled_communes(session: AsyncSession) -> list[Area]:
    """The communes whose station is switched on, by code."""
    rows = await session.scalars(
        select(Area)
        .join(Station, Station.area_id == Area.id)
        .where(Station.enabled.is_(True))
        .order_by(Area.code)
    )
    return list(rows.all())


@dataclass(frozen=True, slots=True)
class UrgentPlay:
    """An urgent bulletin's run a switched-on commune has not aired yet."""

    run_id: int
    bulletin_id: int
    area_id: int
    commune: str  # the commune's code
    title: str


async def urgent_plays(
    session: AsyncSession, communes: list[Area], *, since: dt.datetime
) -> list[UrgentPlay]:
    """Runs of urgent bulletins started (or due) since ``since`` that reach one of
    ``communes`` (named directly, through its province, or through a village or port of
    it) and are not recorded as played there; oldest first.

    Reads at most the runs of that window: keep ``since`` a few minutes back.
    """
    if not communes:
        return []
    runs = (
        await session.execute(
            select(BroadcastRun.id, Bulletin.id, Bulletin.title)
            .join(Bulletin, Bulletin.id == BroadcastRun.bulletin_id)
            .where(
                Bulletin.priority == Priority.urgent,
                BroadcastRun.state.in_(_AIRED_STATES),
                or_(BroadcastRun.started_at >= since, BroadcastRun.fire_at >= since),
            )
            .order_by(BroadcastRun.fire_at, BroadcastRun.id)
        )
    ).all()
    if not runs:
        return []
    bulletin_ids = {bulletin_id for _, bulletin_id, _ in runs}
    targets = (
        await session.execute(
            select(BulletinArea.bulletin_id, Area.id, Area.kind, Area.parent_id)
            .join(Area, Area.id == BulletinArea.area_id)
            .where(BulletinArea.bulletin_id.in_(bulletin_ids))
        )
    ).all()
    played = set(
        (
            await session.execute(
                select(StationPlay.run_id, StationPlay.area_id).where(
                    StationPlay.run_id.in_([run_id for run_id, _, _ in runs])
                )
            )
        ).all()
    )
    reached: dict[int, set[int]] = {}  # bulletin id → the commune ids it reaches
    by_id = {commune.id: commune for commune in communes}
    by_province: dict[int, list[int]] = {}
    for commune in communes:
        if commune.province_id is not None:
            by_province.setdefault(commune.province_id, []).append(commune.id)
    for bulletin_id, area_id, kind, parent_id in targets:
        hit = reached.setdefault(bulletin_id, set())
        if kind is AreaKind.commune and area_id in by_id:
            hit.add(area_id)
        elif kind is AreaKind.province:
            hit.update(by_province.get(area_id, []))
        elif parent_id in by_id:  # a village or port of the commune
            hit.add(parent_id)
    out: list[UrgentPlay] = []
    for run_id, bulletin_id, title in runs:
        for area_id in sorted(reached.get(bulletin_id, ())):
            if (run_id, area_id) not in played:
                out.append(UrgentPlay(run_id, bulletin_id, area_id, by_id[area_id].code, title))
    return out


async def bulletin_mp3(session: AsyncSession, bulletin_id: int) -> AudioAsset | None:
    """The bulletin's latest loudspeaker MP3, None while it is not rendered yet."""
    asset: AudioAsset | None = await session.scalar(
        select(AudioAsset)
        .where(
            AudioAsset.bulletin_id == bulletin_id,
            AudioAsset.kind == AssetKind.bulletin,
            AudioAsset.format == "mp3",
        )
        .order_by(AudioAsset.created_at.desc(), AudioAsset.id.desc())
        .limit(1)
    )
    return asset


async def record_play(session: AsyncSession, play: UrgentPlay, now: dt.datetime) -> None:
    """Remember that the run was put on the commune's stream (a repeat is a no-op)."""
    insert = insert_for(session)
    await session.execute(
        insert(StationPlay)
        .values(run_id=play.run_id, area_id=play.area_id, played_at=now)
        .on_conflict_do_nothing(index_elements=["run_id", "area_id"])
    )


async def record_on_air(
    session: AsyncSession,
    area_id: int,
    on_air: StationOnAir | None,
    title: str | None,
    now: dt.datetime,
) -> bool:
    """Store what the commune's stream plays, with ``now`` as its start, unless that is
    what is stored already (then ``since`` keeps the earlier time); True when written.

    The title is cut at 400 characters. A switched-off station is left alone.
    """
    title = title[:_TITLE_MAX] if title is not None else None
    result = await session.execute(
        update(Station)
        .where(
            Station.area_id == area_id,
            Station.enabled.is_(True),
            or_(
                Station.on_air.is_distinct_from(on_air),
                Station.on_air_title.is_distinct_from(title),
            ),
        )
        .values(on_air=on_air, on_air_title=title, on_air_since=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- "play now" -----------------------------------------------------------------------------


class PlayProblem(enum.StrEnum):
    """Why a bulletin cannot be put on a commune's stream now."""

    station_off = "station_off"  # the commune's station is not switched on
    not_published = "not_published"  # not approved, scheduled, sending or sent
    not_public = "not_public"  # addressed to officials or border guards only
    no_audio = "no_audio"  # its MP3 is not rendered yet


class PlayError(ValueError):
    """A "play now" refused (``problem`` says why)."""

    def __init__(self, problem: PlayProblem) -> None:
        super().__init__(f"cannot play the bulletin now: {problem.value}")
        self.problem = problem


def _has_mp3() -> ColumnElement[bool]:
    return Bulletin.id.in_(
        select(AudioAsset.bulletin_id).where(
            AudioAsset.kind == AssetKind.bulletin, AudioAsset.format == "mp3"
        )
    )


def _playable(now: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        Bulletin.state.in_(PUBLISHED_STATES),
        or_(Bulletin.expires_at.is_(None), Bulletin.expires_at > now),
        public_audience(),
    ]


async def request_play(
    session: AsyncSession,
    commune: Area,
    bulletin_id: int,
    official: Official | None,
    now: dt.datetime,
    *,
    via: str,
) -> StationRequest:
    """Ask the commune's stream to play the bulletin now (within a second or two, when a
    worker drives the station); audited. The caller checks the official's scope.

    Raises PlayError when the station is off, or the bulletin is not published (or
    expired), not for the public, or has no MP3 yet; LookupError for an unknown bulletin.
    """
    station = await session.get(Station, commune.id)
    if station is None or not station.enabled:
        raise PlayError(PlayProblem.station_off)
    bulletin = await session.get(Bulletin, bulletin_id)
    if bulletin is None:
        raise LookupError(f"no bulletin {bulletin_id}")
    if bulletin.state not in PUBLISHED_STATES or (
        bulletin.expires_at is not None and bulletin.expires_at <= now
    ):
        raise PlayError(PlayProblem.not_published)
    public = select(Bulletin.id).where(Bulletin.id == bulletin.id, public_audience())
    if await session.scalar(public) is None:
        raise PlayError(PlayProblem.not_public)
    if await bulletin_mp3(session, bulletin.id) is None:
        raise PlayError(PlayProblem.no_audio)
    request = StationRequest(
        area_id=commune.id,
        bulletin_id=bulletin.id,
        requested_by_id=official.id if official is not None else None,
        requested_at=now,
        state=StationRequestState.pending,
    )
    session.add(request)
    await session.flush()
    await audit.record(
        session, now=now, official=official, via=via, action="station.play_now",
        object_type="station_request", object_id=request.id,
        details={"commune": commune.code, "bulletin_id": bulletin.id, "title": bulletin.title},
    )  # fmt: skip
    return request


@dataclass(frozen=True, slots=True)
class PlayableBulletin:
    """A published bulletin with its MP3, offered for "play now" on a commune's stream."""

    id: int
    title: str
    priority: Priority
    created_at: dt.datetime
    reaches: bool  # addressed to the commune, a village or port of it, or its province


async def playable_bulletins(
    session: AsyncSession, commune: Area, now: dt.datetime, *, limit: int = 50
) -> list[PlayableBulletin]:
    """Published, unexpired, public bulletins with an MP3: those reaching the commune
    first, then the others; newest first within each; at most ``limit``."""
    targets = [commune.id] + ([commune.province_id] if commune.province_id is not None else [])
    reaching = select(BulletinArea.bulletin_id).where(
        or_(
            BulletinArea.area_id.in_(targets),
            BulletinArea.area_id.in_(select(Area.id).where(Area.parent_id == commune.id)),
        )
    )
    reaches = case((Bulletin.id.in_(reaching), 1), else_=0)
    rows = await session.execute(
        select(Bulletin.id, Bulletin.title, Bulletin.priority, Bulletin.created_at, reaches)
        .where(*_playable(now), _has_mp3())
        .order_by(reaches.desc(), Bulletin.created_at.desc(), Bulletin.id.desc())
        .limit(limit)
    )
    return [PlayableBulletin(row[0], row[1], row[2], row[3], bool(row[4])) for row in rows.all()]


@dataclass(frozen=True, slots=True)
class PendingPlay:
    """A "play now" waiting for the driver, with what it needs to air it."""

    request_id: int
    area_id: int
    commune: str  # the commune's code
    bulletin_id: int
    title: str
    bulletin_state: BulletinState
    requested_at: dt.datetime
    store_key: str | None  # the bulletin's latest MP3; None while not rendered


async def pending_plays(session: AsyncSession) -> list[PendingPlay]:
    """The pending "play now" requests of switched-on communes, oldest first (one query:
    the driver asks every second)."""
    latest_mp3 = (
        select(AudioAsset.store_key)
        .where(
            AudioAsset.bulletin_id == StationRequest.bulletin_id,
            AudioAsset.kind == AssetKind.bulletin,
            AudioAsset.format == "mp3",
        )
        .order_by(AudioAsset.created_at.desc(), AudioAsset.id.desc())
        .limit(1)
        .correlate(StationRequest)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            StationRequest.id,
            StationRequest.area_id,
            Area.code,
            Bulletin.id,
            Bulletin.title,
            Bulletin.state,
            StationRequest.requested_at,
            latest_mp3,
        )
        .join(Station, Station.area_id == StationRequest.area_id)
        .join(Area, Area.id == StationRequest.area_id)
        .join(Bulletin, Bulletin.id == StationRequest.bulletin_id)
        .where(StationRequest.state == StationRequestState.pending, Station.enabled.is_(True))
        .order_by(StationRequest.requested_at, StationRequest.id)
    )
    return [
        PendingPlay(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])
        for row in rows.all()
    ]


async def mark_played(session: AsyncSession, request_id: int, now: dt.datetime) -> None:
    """The request was put on the commune's stream."""
    await session.execute(
        update(StationRequest)
        .where(StationRequest.id == request_id, StationRequest.state == StationRequestState.pending)
        .values(state=StationRequestState.played, played_at=now)
    )


async def drop_play(session: AsyncSession, request_id: int, now: dt.datetime, reason: str) -> None:
    """Give the request up (``reason``: a short code such as "expired" or "withdrawn")."""
    await session.execute(
        update(StationRequest)
        .where(StationRequest.id == request_id, StationRequest.state == StationRequestState.pending)
        .values(state=StationRequestState.dropped, played_at=now, reason=reason[:40])
    )


async def recent_requests(
    session: AsyncSession, area_id: int, *, limit: int = 10
) -> list[tuple[StationRequest, str, str | None]]:
    """The commune's latest "play now" requests, newest first: (request, bulletin title,
    the requesting official's username)."""
    rows = await session.execute(
        select(StationRequest, Bulletin.title, Official.username)
        .join(Bulletin, Bulletin.id == StationRequest.bulletin_id)
        .outerjoin(Official, Official.id == StationRequest.requested_by_id)
        .where(StationRequest.area_id == area_id)
        .order_by(StationRequest.requested_at.desc(), StationRequest.id.desc())
        .limit(limit)
    )
    return [(row[0], row[1], row[2]) for row in rows.all()]
