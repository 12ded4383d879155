"""Broadcast runs: one per firing, and the fan-out that fills the delivery queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts.audiences import recipients
from db.models import (
    BroadcastRun,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    DeliveryState,
    Priority,
    RunState,
    Schedule,
)

# Rows per INSERT ... SELECT: big enough to be fast, small enough that SQLite's single
# writer lets senders and bots in between chunks.
FANOUT_CHUNK = 250_000


def _insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING (both databases speak it)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def create_run(
    session: AsyncSession,
    *,
    bulletin_id: int,
    schedule_id: int | None,
    fire_at: dt.datetime,
    now: dt.datetime,
) -> BroadcastRun | None:
    """The run for one firing; None when that firing already has one (fired twice)."""
    insert = _insert_for(session)(BroadcastRun)
    result = await session.execute(
        insert.values(
            bulletin_id=bulletin_id,
            schedule_id=schedule_id,
            fire_at=fire_at,
            state=RunState.pending,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["bulletin_id", "fire_at"])
        .returning(BroadcastRun.id)
    )
    run_id = result.scalar()
    if run_id is None:
        return None
    return await session.get_one(BroadcastRun, run_id)


async def fan_out(
    session: AsyncSession, run: BroadcastRun, now: dt.datetime, chunk: int = FANOUT_CHUNK
) -> int:
    """Create one pending delivery per reachable chat address; idempotent; returns the total.

    One INSERT ... SELECT per chunk of chat-address ids (ON CONFLICT DO NOTHING on the
    (run, address) key), so running it again after a crash adds only what is missing.
    """
    bulletin = await session.get_one(Bulletin, run.bulletin_id)
    priority = 0 if bulletin.priority is Priority.urgent else 1
    bounds = (
        await session.execute(select(func.min(ChatAddress.id), func.max(ChatAddress.id)))
    ).one()
    low, high = bounds
    if low is not None:
        audience = recipients(bulletin).subquery()
        start = int(low)
        while start <= int(high):
            stop = start + chunk
            rows = select(
                literal(run.id),
                audience.c.id,
                audience.c.bot_id,
                audience.c[2],
                literal(priority),
                literal(DeliveryState.pending.value),
            ).where(audience.c.id >= start, audience.c.id < stop)
            columns = ["run_id", "chat_address_id", "bot_id", "area_id", "priority", "state"]
            insert = _insert_for(session)(Delivery)
            await session.execute(
                insert.from_select(columns, rows).on_conflict_do_nothing(
                    index_elements=["run_id", "chat_address_id"]
                )
            )
            start = stop
    total = int(await session.scalar(select(func.count()).where(Delivery.run_id == run.id)) or 0)
    run.total = total
    run.state = RunState.sending if total else RunState.done
    run.started_at = now
    if not total:
        run.finished_at = now
    if bulletin.state in (BulletinState.approved, BulletinState.scheduled):
        bulletin.state = BulletinState.sending
        bulletin.updated_at = now
    return total


async def finish_runs(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Close finished runs, then bring bulletin states in line with runs and schedules.

    A run with nothing pending or sending is done. A sending bulletin with no open run
    goes back to scheduled while a schedule is active, else it is sent. A scheduled one
    whose schedules are used up is sent when something went out, else approved again
    (every firing was missed), so an official can schedule it anew. Returns the runs
    closed now.
    """
    open_states = [DeliveryState.pending, DeliveryState.sending]
    still_open = select(Delivery.run_id).where(Delivery.state.in_(open_states)).distinct()
    done = (
        await session.scalars(
            select(BroadcastRun.id).where(
                BroadcastRun.state == RunState.sending, BroadcastRun.id.not_in(still_open)
            )
        )
    ).all()
    if done:
        await session.execute(
            update(BroadcastRun)
            .where(BroadcastRun.id.in_(done))
            .values(state=RunState.done, finished_at=now)
        )
    open_runs = select(BroadcastRun.bulletin_id).where(
        BroadcastRun.state.in_([RunState.pending, RunState.sending])
    )
    scheduled = select(Schedule.bulletin_id).where(Schedule.active.is_(True))
    went_out = select(BroadcastRun.bulletin_id).where(BroadcastRun.state == RunState.done)
    idle = (Bulletin.id.not_in(open_runs),)
    transitions = [
        (BulletinState.sending, Bulletin.id.in_(scheduled), BulletinState.scheduled),
        (BulletinState.sending, Bulletin.id.not_in(scheduled), BulletinState.sent),
        (BulletinState.scheduled, Bulletin.id.not_in(scheduled) & Bulletin.id.in_(went_out),
         BulletinState.sent),
        (BulletinState.scheduled, Bulletin.id.not_in(scheduled), BulletinState.approved),
    ]  # fmt: skip
    for before, condition, after in transitions:
        await session.execute(
            update(Bulletin)
            .where(Bulletin.state == before, condition, *idle)
            .values(state=after, updated_at=now)
        )
    return list(done)
