"""A commune's daily programme (the day's bulletins with spoken cues, one MP3) and its listings."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, String, Subquery, and_, cast, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import mastering, texts
from audio.mastering import (
    MASTER_RATE,
    EncodingSettings,
    MasteringSettings,
    Pcm,
    PcmLike,
    Rendered,
    Tags,
)
from audio.spoken import to_spoken
from audio.store import AssetStore
from audio.studio import (
    LANGUAGE,
    PRODUCTION,
    Production,
    StudioError,
    cached_assets,
    engines_of,
    render_bulletin,
    render_to_store,
    speak,
    upsert_assets,
)
from db.models import (
    Area,
    AreaKind,
    AssetKind,
    AudioAsset,
    BroadcastRun,
    Bulletin,
    BulletinArea,
    BulletinState,
    RunState,
    Station,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    Subscription,
)

__all__ = [
    "REBUILD_DAYS",
    "PendingRebuilds",
    "ProgrammeChange",
    "ProgrammeError",
    "PublishedBulletin",
    "build_daily_programme",
    "commune_by_code",
    "daily_programmes",
    "day_bulletins",
    "programme_changes",
    "programme_communes",
    "programme_day",
    "public_audience",
    "published_bulletins",
]

log = logging.getLogger(__name__)

# The bulletins are mastered already, so the programme is only levelled and limited once
# more: a second compressor pass would squash them further.
PROGRAMME_MASTERING: Final = MasteringSettings(compression=None)
PROGRAMME_ENCODING: Final = EncodingSettings(formats=("mp3",))
CUE_MASTERING: Final = MasteringSettings(padding_seconds=0.0)
CUE_GAP_SECONDS: Final = 0.5  # between a cue ("Tin tiếp theo") and its bulletin
ITEM_GAP_SECONDS: Final = 1.2  # between one bulletin and the next cue
# Who a public loudspeaker speaks to: a bulletin whose role filter leaves both out
# (say, border guards only) is internal and stays off programmes, pages and feeds.
PUBLIC_ROLES: Final = (SubscriberRole.fisherman, SubscriberRole.villager)
# How far back a cancelled or expired bulletin's programmes are rebuilt: the pages show
# two weeks of programmes.
REBUILD_DAYS: Final = 14
_PROGRAMMES: Final = "programmes"
_CACHE_VERSION: Final = 1


class ProgrammeError(StudioError):
    """No programme for this request: an unknown or non-commune area code."""


@dataclass(frozen=True, slots=True)
class PublishedBulletin:
    """A bulletin a commune has heard, when it first went out, and its audio by format."""

    bulletin: Bulletin
    first_sent_at: dt.datetime
    assets: dict[str, AudioAsset]


# --------------------------------------------------------------------------- queries


async def commune_by_code(session: AsyncSession, code: str) -> Area:
    """The commune with this code ("11914" or "c11914"); ProgrammeError otherwise."""
    text = code.strip().lower().removeprefix("c")
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ProgrammeError(f"not a commune code: {code!r}")
    area = await session.scalar(
        select(Area).where(Area.code == f"{int(text):05d}", Area.kind == AreaKind.commune)
    )
    if area is None:
        raise ProgrammeError(f"unknown commune code: {code}")
    return area


def _reaches(commune: Area) -> ColumnElement[bool]:
    """Bulletins addressed to the commune itself or to its whole province."""
    areas = [commune.id] + ([commune.province_id] if commune.province_id is not None else [])
    return Bulletin.id.in_(select(BulletinArea.bulletin_id).where(BulletinArea.area_id.in_(areas)))


def _public() -> ColumnElement[bool]:
    # The role filter is a JSON list; its text form is portable across both databases.
    roles = cast(Bulletin.audience_roles, String)
    return or_(
        Bulletin.audience_roles.is_(None),
        roles == "[]",
        *(roles.like(f'%"{role.value}"%') for role in PUBLIC_ROLES),
    )


def public_audience() -> ColumnElement[bool]:
    """SQL over Bulletin: addressed to the public (PUBLIC_ROLES): a loudspeaker may air it."""
    return _public()


def _first_sends(start: dt.datetime | None = None, end: dt.datetime | None = None) -> Subquery:
    """Each bulletin's first run start (within [start, end) when given)."""
    conditions = [BroadcastRun.started_at.is_not(None), BroadcastRun.state != RunState.missed]
    if start is not None and end is not None:
        conditions += [BroadcastRun.started_at >= start, BroadcastRun.started_at < end]
    return (
        select(
            BroadcastRun.bulletin_id,
            func.min(BroadcastRun.started_at).label("first_sent_at"),
        )
        .where(*conditions)
        .group_by(BroadcastRun.bulletin_id)
        .subquery()
    )


def _local_day(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


async def day_bulletins(
    session: AsyncSession, commune: Area, day: dt.date, *, tz: ZoneInfo, now: dt.datetime
) -> list[tuple[Bulletin, dt.datetime]]:
    """The day's programme items: (bulletin, first send that local day), in send order.

    A bulletin counts when a run of it started that day, its audience is the commune
    or its province, it is for the public (see PUBLIC_ROLES), and it is neither
    cancelled nor expired (by state or by its expiry time at ``now``).
    """
    start, end = _local_day(day, tz)
    first = _first_sends(start, end)
    rows = await session.execute(
        select(Bulletin, first.c.first_sent_at)
        .join(first, first.c.bulletin_id == Bulletin.id)
        .where(
            Bulletin.state.not_in([BulletinState.cancelled, BulletinState.expired]),
            or_(Bulletin.expires_at.is_(None), Bulletin.expires_at > now),
            _reaches(commune),
            _public(),
        )
        .order_by(first.c.first_sent_at, Bulletin.id)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def published_bulletins(
    session: AsyncSession, commune: Area, *, limit: int = 30
) -> list[PublishedBulletin]:
    """The commune's public bulletins that went out and have audio, newest first.

    Cancelled bulletins are left out; expired ones stay (they were valid when sent).
    At most ``limit`` (bulletins without audio yet are skipped, not counted).
    """
    first = _first_sends()
    result = await session.execute(
        select(Bulletin, first.c.first_sent_at)
        .join(first, first.c.bulletin_id == Bulletin.id)
        .where(
            Bulletin.state != BulletinState.cancelled,
            _reaches(commune),
            _public(),
            Bulletin.id.in_(
                select(AudioAsset.bulletin_id).where(AudioAsset.kind == AssetKind.bulletin)
            ),
        )
        .order_by(first.c.first_sent_at.desc(), Bulletin.id.desc())
        .limit(limit)
    )
    rows: list[tuple[Bulletin, dt.datetime]] = [(row[0], row[1]) for row in result.all()]
    assets: dict[int, dict[str, AudioAsset]] = {}
    if rows:
        found = await session.scalars(
            select(AudioAsset)
            .where(
                AudioAsset.bulletin_id.in_([bulletin.id for bulletin, _ in rows]),
                AudioAsset.kind == AssetKind.bulletin,
            )
            .order_by(AudioAsset.created_at, AudioAsset.id)
        )
        for asset in found.all():
            if asset.bulletin_id is not None:  # always: the query asked for these bulletins
                assets.setdefault(asset.bulletin_id, {})[asset.format] = asset  # latest wins
    return [PublishedBulletin(b, sent_at, assets.get(b.id, {})) for b, sent_at in rows]


def _programme_prefix(commune_code: str, day: dt.date | None = None) -> str:
    # The day lives in the key (AudioAsset has no date column): programmes/11914/2026-11-25/…
    return f"{_PROGRAMMES}/{commune_code}/" + (f"{day.isoformat()}/" if day else "")


def programme_day(asset: AudioAsset) -> dt.date | None:
    """The day a programme asset is for (read from its store key); None if not a programme."""
    parts = asset.store_key.split("/")
    if asset.kind is not AssetKind.programme or len(parts) != 4 or parts[0] != _PROGRAMMES:
        return None
    try:
        return dt.date.fromisoformat(parts[2])
    except ValueError:
        return None


async def daily_programmes(
    session: AsyncSession, commune: Area, *, limit: int = 14
) -> list[tuple[dt.date, AudioAsset]]:
    """The commune's current programme per day, newest day first, at most ``limit``."""
    rows = await session.scalars(
        select(AudioAsset)
        .where(
            AudioAsset.kind == AssetKind.programme,
            AudioAsset.area_id == commune.id,
            AudioAsset.store_key.startswith(_programme_prefix(commune.code), autoescape=True),
        )
        # The ISO day in the key sorts as text: newest day first.
        .order_by(AudioAsset.store_key.desc())
        .limit(limit)
    )
    out: list[tuple[dt.date, AudioAsset]] = []
    for asset in rows.all():
        day = programme_day(asset)
        if day is not None:
            out.append((day, asset))
    return out


async def programme_communes(session: AsyncSession, bulletin_id: int, day: dt.date) -> list[str]:
    """Codes of the communes whose programme for ``day`` a change to this bulletin touches.

    Communes it names, plus, for a province it names, only those communes of it that
    already have that day's programme, that a radio operator follows or whose station is
    on: rebuilding a
    hundred programmes for a province-wide notice nobody plays would waste minutes.
    """
    targets = (
        await session.scalars(
            select(Area)
            .join(BulletinArea, BulletinArea.area_id == Area.id)
            .where(BulletinArea.bulletin_id == bulletin_id)
        )
    ).all()
    codes = {area.code for area in targets if area.kind is AreaKind.commune}
    provinces = [area.id for area in targets if area.kind is AreaKind.province]
    if provinces:
        in_provinces = (Area.kind == AreaKind.commune, Area.province_id.in_(provinces))
        followed = (
            select(Subscription.area_id)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(
                Subscriber.role == SubscriberRole.radio_operator,
                Subscriber.status == SubscriberStatus.active,
            )
        )
        day_path = f"/{day.isoformat()}/"
        built = select(AudioAsset.area_id).where(
            AudioAsset.kind == AssetKind.programme,
            AudioAsset.store_key.contains(day_path, autoescape=True),
        )
        on_air = select(Station.area_id).where(Station.enabled.is_(True))
        rows = await session.scalars(
            select(Area.code).where(
                *in_provinces,
                or_(Area.id.in_(followed), Area.id.in_(built), Area.id.in_(on_air)),
            )
        )
        codes.update(rows.all())
    return sorted(codes)


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class ProgrammeChange:
    """Something that changes days' programmes: a run started, a bulletin cancelled or expired.

    ``key`` names the event ("run:12", "cancel:7", "expire:7:<time>"), so a caller that
    polls overlapping windows handles each event once; ``at`` is when it happened.
    """

    key: str
    at: dt.datetime
    programmes: frozenset[tuple[str, dt.date]]  # (commune code, local day)


async def _sent_days(
    session: AsyncSession, bulletin_id: int, tz: ZoneInfo, since: dt.datetime
) -> list[dt.date]:
    starts = await session.scalars(
        select(BroadcastRun.started_at).where(
            BroadcastRun.bulletin_id == bulletin_id,
            BroadcastRun.started_at >= since,
            BroadcastRun.state != RunState.missed,
        )
    )
    return sorted({at.astimezone(tz).date() for at in starts.all() if at is not None})


async def programme_changes(
    session: AsyncSession, *, since: dt.datetime, now: dt.datetime, tz: ZoneInfo
) -> list[ProgrammeChange]:
    """The events in (since, now] that change a day's programme, oldest first.

    A run that started adds its bulletin to that local day; a bulletin cancelled or
    expired leaves every day it went out on within REBUILD_DAYS (older programmes are
    off the pages). The communes touched are :func:`programme_communes`'. Read-only.
    """
    found: list[tuple[str, dt.datetime, int, list[dt.date]]] = []
    started = await session.execute(
        select(BroadcastRun.id, BroadcastRun.bulletin_id, BroadcastRun.started_at).where(
            BroadcastRun.started_at > since,
            BroadcastRun.started_at <= now,
            BroadcastRun.state != RunState.missed,
        )
    )
    for run_id, bulletin_id, at in started.all():
        if at is None:  # never: the query asks for a start time in the window
            continue
        found.append((f"run:{run_id}", at, bulletin_id, [at.astimezone(tz).date()]))
    horizon = now - dt.timedelta(days=REBUILD_DAYS)
    gone = await session.execute(
        select(Bulletin.id, Bulletin.cancelled_at, Bulletin.expires_at).where(
            or_(
                and_(Bulletin.cancelled_at > since, Bulletin.cancelled_at <= now),
                and_(Bulletin.expires_at > since, Bulletin.expires_at <= now),
            )
        )
    )
    for bulletin_id, cancelled_at, expires_at in gone.all():
        days = await _sent_days(session, bulletin_id, tz, horizon)
        if cancelled_at is not None and since < cancelled_at <= now:
            found.append((f"cancel:{bulletin_id}", cancelled_at, bulletin_id, days))
        if expires_at is not None and since < expires_at <= now:
            key = f"expire:{bulletin_id}:{expires_at.isoformat()}"
            found.append((key, expires_at, bulletin_id, days))
    changes = []
    for key, at, bulletin_id, days in sorted(found, key=lambda event: event[1]):
        touched: set[tuple[str, dt.date]] = set()
        for day in days:
            codes = await programme_communes(session, bulletin_id, day)
            touched.update((code, day) for code in codes)
        changes.append(ProgrammeChange(key, at, frozenset(touched)))
    return changes


class PendingRebuilds:
    """Programmes waiting to be rebuilt, let out once their changes settle (a debounce).

    A (commune, day) is due ``quiet`` seconds after its latest change or ``max_wait``
    after its first, whichever comes sooner: a burst of changes rebuilds once, and a
    steady trickle still rebuilds at least every ``max_wait``. Times are any monotonic
    clock's seconds.
    """

    def __init__(self, *, quiet: float, max_wait: float) -> None:
        if not 0 <= quiet <= max_wait:
            raise ValueError("need 0 <= quiet <= max_wait")
        self.quiet = quiet
        self.max_wait = max_wait
        self._first: dict[tuple[str, dt.date], float] = {}
        self._last: dict[tuple[str, dt.date], float] = {}

    def __len__(self) -> int:
        return len(self._last)

    def add(self, programmes: Iterable[tuple[str, dt.date]], at: float) -> None:
        for programme in programmes:
            self._first.setdefault(programme, at)
            self._last[programme] = at

    def due(self, at: float) -> list[tuple[str, dt.date]]:
        """Take the programmes due at ``at``: newest day first, then by commune code."""
        ready = [
            programme
            for programme, last in self._last.items()
            if at - last >= self.quiet or at - self._first[programme] >= self.max_wait
        ]
        for programme in ready:
            del self._first[programme], self._last[programme]
        return sorted(ready, key=lambda p: (-p[1].toordinal(), p[0]))

    def clear(self) -> None:
        self._first.clear()
        self._last.clear()


# --------------------------------------------------------------------------- building


def _levelled(speech: PcmLike) -> npt.NDArray[np.float32]:
    """A cue at the programme's loudness, at 44.1 kHz, without padding."""
    return mastering.master(speech, settings=CUE_MASTERING).samples


def _assemble_and_render(
    cues: Mapping[str, PcmLike],
    bulletins: Sequence[bytes],
    out_dir: Path,
    basename: str,
    tags: Tags,
) -> Rendered:
    """Opening, then cue + bulletin for each, then closing; mastered and encoded to MP3."""
    levelled = {name: _levelled(pcm) for name, pcm in cues.items()}
    cue_gap = np.zeros(round(CUE_GAP_SECONDS * MASTER_RATE), dtype=np.float32)
    item_gap = np.zeros(round(ITEM_GAP_SECONDS * MASTER_RATE), dtype=np.float32)
    parts = [levelled["opening"], item_gap]
    for index, data in enumerate(bulletins):
        decoded = mastering.decode_audio(data)
        samples = mastering.resample(decoded.samples, decoded.sample_rate, MASTER_RATE)
        parts += [levelled["first" if index == 0 else "next"], cue_gap, samples, item_gap]
    parts.append(levelled["closing"])
    programme = Pcm(np.concatenate(parts).astype(np.float32), MASTER_RATE)
    return mastering.render(
        programme,
        out_dir,
        basename=basename,
        tags=tags,
        mastering=PROGRAMME_MASTERING,
        encoding=PROGRAMME_ENCODING,
    )


async def _drop_superseded(
    session: AsyncSession, store: AssetStore, commune: Area, day: dt.date, keep: int | None
) -> None:
    """Delete the day's other programme rows and their files (a day has one programme).

    Files go at once: should the caller roll back, the surviving row's file is missing
    and the next build renders it again.
    """
    condition = (
        AudioAsset.kind == AssetKind.programme,
        AudioAsset.area_id == commune.id,
        AudioAsset.store_key.startswith(_programme_prefix(commune.code, day), autoescape=True),
        AudioAsset.id != (keep if keep is not None else -1),
    )
    old = (await session.scalars(select(AudioAsset.store_key).where(*condition))).all()
    if not old:
        return
    await session.execute(delete(AudioAsset).where(*condition))

    def delete_files() -> None:
        for key in old:
            store.delete(key)

    await asyncio.to_thread(delete_files)


async def build_daily_programme(
    sessions: async_sessionmaker[AsyncSession],
    commune_code: str,
    day: dt.date,
    *,
    store: AssetStore,
    engine_name: str,
    tz: ZoneInfo,
    now: dt.datetime,
    work_dir: Path,
    force: bool = False,
    production: Production = PRODUCTION,
) -> AudioAsset | None:
    """The commune's programme for ``day`` as one MP3 asset; None when the day is empty.

    Items are :func:`day_bulletins`, each rendered (or found cached) by
    :func:`audio.studio.render_bulletin`, introduced by "Tin thứ nhất" / "Tin tiếp
    theo" after an opening with the date, and closed by "Đài truyền thanh … xin hết.";
    the whole is levelled to -16 LUFS under the true-peak ceiling once more. The
    content hash covers the ordered bulletin files' SHA-256, so an unchanged day is a
    cache hit and a bulletin added or cancelled makes a new programme, which replaces
    the day's previous one (row and file). Cost on a miss: about 1 s per minute of
    programme plus any bulletin renders.

    ``production`` is the bulletins' (see render_bulletin); the programme itself has no
    jingle and is not compressed again. Like render_bulletin it opens its own short
    transactions from ``sessions`` and holds none while it speaks, masters or encodes:
    reads, then the render, then one short write (upsert and removal of the day's
    previous programme).
    Raises ProgrammeError for an unknown commune code.
    """
    async with sessions() as session:
        commune = await commune_by_code(session, commune_code)
        items = await day_bulletins(session, commune, day, tz=tz, now=now)
    if not items:
        async with sessions.begin() as session:
            await _drop_superseded(session, store, commune, day, keep=None)
        return None
    mp3s: list[AudioAsset] = []
    for bulletin, _ in items:
        assets = await render_bulletin(
            sessions,
            bulletin.id,
            store=store,
            engine_name=engine_name,
            tz=tz,
            now=now,
            work_dir=work_dir,
            production=production,
        )
        mp3s.append(next(asset for asset in assets if asset.format == "mp3"))

    station = texts.station_name(commune)
    cues = {
        "opening": texts.OPENING.format(station=station, date=texts.written_date(day)),
        "first": texts.FIRST_ITEM,
        "next": texts.NEXT_ITEM,
        "closing": texts.CLOSING.format(station=station),
    }
    spoken = {name: to_spoken(line) for name, line in cues.items()}
    settings = {
        "v": _CACHE_VERSION,
        "kind": AssetKind.programme.value,
        "commune": commune.code,
        "day": day,
        "items": [asset.sha256 for asset in mp3s],
        "cue_gap": CUE_GAP_SECONDS,
        "item_gap": ITEM_GAP_SECONDS,
        "cue_mastering": CUE_MASTERING,
        "mastering": PROGRAMME_MASTERING,
        "encoding": PROGRAMME_ENCODING,
    }
    key = mastering.cache_key("\n".join(spoken.values()), engine_name, LANGUAGE, settings)
    if not force:
        async with sessions() as session:
            cached = await cached_assets(session, store, key, ["mp3"])
        if cached is not None:
            async with sessions.begin() as session:
                await _drop_superseded(session, store, commune, day, keep=cached[0].id)
            return cached[0]

    speeches = await speak(engine_name, list(spoken.values()))
    voices = dict(zip(spoken, speeches, strict=True))
    mp3_data = await asyncio.to_thread(lambda: [_read(store, a.store_key) for a in mp3s])
    title = texts.PROGRAMME_TITLE.format(date=texts.written_date(day))
    tags = Tags(title=title, commune=commune.name, date=day)
    store_key = f"{_programme_prefix(commune.code, day)}{key}.mp3"
    rendered, records = await asyncio.to_thread(
        render_to_store,
        store,
        work_dir,
        lambda out_dir: _assemble_and_render(voices, mp3_data, out_dir, key, tags),
        lambda _fmt: store_key,
    )
    log.info(
        "built programme %s %s: %d bulletins, %.1f s, %.2f LUFS",
        commune.code,
        day,
        len(items),
        rendered.master.duration_seconds,
        rendered.master.integrated_lufs,
    )
    async with sessions.begin() as session:
        (asset,) = await upsert_assets(
            session,
            records,
            content_hash=key,
            kind=AssetKind.programme,
            engine=engines_of([*speeches, *(a.engine for a in mp3s)]),
            now=now,
            area_id=commune.id,
        )
        await _drop_superseded(session, store, commune, day, keep=asset.id)
    return asset


def _read(store: AssetStore, key: str) -> bytes:
    with store.open(key) as fh:
        return fh.read()
