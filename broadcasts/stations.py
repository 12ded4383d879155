"""Commune loudspeaker stations: which communes stream, and which urgent runs they played."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

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
    Priority,
    RunState,
    Station,
    StationPlay,
)

__all__ = [
    "UrgentPlay",
    "bulletin_mp3",
    "enabled_communes",
    "record_play",
    "switch_off",
    "switch_on",
    "urgent_plays",
]

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
    return area, changed


async def switch_off(session: AsyncSession, code: str) -> tuple[Area, bool]:
    """Switch the commune's station off; (the commune, whether it was on before).

    Raises AreaError like switch_on. The row stays (enabled false).
    """
    area = await _commune(session, code)
    row = await session.get(Station, area.id)
    if row is None or not row.enabled:
        return area, False
    row.enabled = False
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
