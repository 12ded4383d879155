"""Broadcast runs: one per firing, and the fan-out that fills the delivery queue."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import ColumnElement, Select, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import fallback
from broadcasts.audiences import recipients
from db.engine import insert_for
from db.models import (
    BroadcastRun,
    Bulletin,
    BulletinState,
    Delivery,
    DeliveryState,
    Priority,
    RunState,
    Schedule,
    Subscriber,
)

# Subscriber ids per INSERT ... SELECT on SQLite. Chunking on subscribers.id inside the
# audience query turns SQLite's driving index search into `status = ? AND rowid BETWEEN`,
# so each chunk reads only its own slice and its GROUP BY stays small. The transaction
# still holds SQLite's write lock for the whole fan-out (about 3 s per 1,000,000 here);
# other writers wait on busy_timeout. PostgreSQL runs one statement: under MVCC a long
# insert blocks no reader and no other writer, so chunks there would only rescan.
FANOUT_CHUNK = 250_000
# The dialect's INSERT columns, in the order fan_out selects them.
_DELIVERY_COLUMNS = ["run_id", "chat_address_id", "bot_id", "area_id", "priority", "state"]


async def create_run(
    session: AsyncSession,
    *,
    bulletin_id: int,
    schedule_id: int | None,
    fire_at: dt.datetime,
    now: dt.datetime,
) -> BroadcastRun | None:
    """The run for one firing; None when that firing already has one (fired twice)."""
    insert = insert_for(session)(BroadcastRun)
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

    INSERT ... SELECT: one statement on PostgreSQL, one per `chunk` of subscriber ids on
    SQLite. The first call for a run inserts plainly; a later one (the run already has
    deliveries) skips the addresses it has and adds only what is missing, with ON
    CONFLICT DO NOTHING on the (run, address) key as the backstop. Measured by
    bench/fanout.py (1,000,000 rows <= 10 s).
    """
    bulletin = await session.get_one(Bulletin, run.bulletin_id)
    priority = 0 if bulletin.priority is Priority.urgent else 1
    # A plain INSERT costs about a quarter less than ON CONFLICT's speculative insertion
    # per row on PostgreSQL. Safe: only the transaction that created the run fans it out
    # (create_run's unique key), and the unique key would refuse a duplicate anyway.
    again = await session.scalar(select(Delivery.id).where(Delivery.run_id == run.id).limit(1))
    for bounds in await _subscriber_slices(session, chunk):
        query = recipients(bulletin)
        if bounds is not None:
            query = query.where(Subscriber.id >= bounds[0], Subscriber.id < bounds[1])
        audience = query.subquery()
        rows = select(
            literal(run.id),
            audience.c.id,
            audience.c.bot_id,
            audience.c[2],
            literal(priority),
            literal(DeliveryState.pending.value),
        )
        if bounds is None:
            # PostgreSQL's hash aggregate yields addresses in no order; sorted, each index
            # insert lands next to the previous one instead of on a random page: about a
            # quarter less CPU (bench/fanout.py). SQLite's GROUP BY already sorts by address
            # (an ORDER BY there would add a second sort).
            rows = rows.order_by(audience.c.id)
        insert = insert_for(session)(Delivery)
        if again is None:
            await session.execute(insert.from_select(_DELIVERY_COLUMNS, rows))
            continue
        # The addresses this run already has are skipped before any insert is attempted
        # (a speculative insertion per row that then conflicts costs more than this check).
        # On SQLite the WHERE also keeps ON CONFLICT from parsing as a JOIN's ON.
        have = select(Delivery.id).where(
            Delivery.run_id == run.id, Delivery.chat_address_id == audience.c.id
        )
        await session.execute(
            insert.from_select(
                _DELIVERY_COLUMNS, rows.where(~have.exists())
            ).on_conflict_do_nothing(index_elements=["run_id", "chat_address_id"])
        )
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


async def _subscriber_slices(session: AsyncSession, chunk: int) -> list[tuple[int, int] | None]:
    """[None] (everyone at once) on PostgreSQL; SQLite: [low, high) ranges of subscriber ids."""
    if session.get_bind().dialect.name == "postgresql":
        return [None]
    bounds = select(func.min(Subscriber.id), func.max(Subscriber.id))
    low, high = cast(tuple[int | None, int], (await session.execute(bounds)).one())
    if low is None:
        return []
    return [(start, start + chunk) for start in range(low, high + 1, chunk)]


def _finished_runs() -> Select[int]:
    """Runs still marked sending with nothing pending or sending left."""
    open_states = [DeliveryState.pending, DeliveryState.sending]
    still_open = select(Delivery.run_id).where(Delivery.state.in_(open_states)).distinct()
    return select(BroadcastRun.id).where(
        BroadcastRun.state == RunState.sending, BroadcastRun.id.not_in(still_open)
    )


def _bulletin_transitions() -> list[tuple[BulletinState, ColumnElement[bool], BulletinState]]:
    """(state before, condition, state after) for bulletins with no open run."""
    open_runs = select(BroadcastRun.bulletin_id).where(
        BroadcastRun.state.in_([RunState.pending, RunState.sending])
    )
    scheduled = select(Schedule.bulletin_id).where(Schedule.active.is_(True))
    went_out = select(BroadcastRun.bulletin_id).where(BroadcastRun.state == RunState.done)
    idle = Bulletin.id.not_in(open_runs)
    return [
        (BulletinState.sending, idle & Bulletin.id.in_(scheduled), BulletinState.scheduled),
        (BulletinState.sending, idle & Bulletin.id.not_in(scheduled), BulletinState.sent),
        (BulletinState.scheduled,
         idle & Bulletin.id.not_in(scheduled) & Bulletin.id.in_(went_out), BulletinState.sent),
        (BulletinState.scheduled, idle & Bulletin.id.not_in(scheduled), BulletinState.approved),
    ]  # fmt: skip


async def _closable(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Finished runs, less those a fallback chain step may still come to (kept sending)."""
    done = (await session.scalars(_finished_runs())).all()
    kept = await fallback.chain_open(session, done, now) if done else set()
    return [run_id for run_id in done if run_id not in kept]


async def anything_to_finish(session: AsyncSession, now: dt.datetime | None = None) -> bool:
    """Whether `finish_runs` would change anything now (a read: the scheduler's tick
    takes the write lock only when it would). Without `now`, a run kept open by its
    fallback chain counts as finishable."""
    if now is not None and await _closable(session, now):
        return True
    checks = [] if now is not None else [exists(_finished_runs())]
    checks += [
        exists(select(Bulletin.id).where(Bulletin.state == before, condition))
        for before, condition, _ in _bulletin_transitions()
    ]
    return bool(await session.scalar(select(or_(*checks))))


async def finish_runs(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Close finished runs, then bring bulletin states in line with runs and schedules.

    A run with nothing pending or sending is done. A sending bulletin with no open run
    goes back to scheduled while a schedule is active, else it is sent. A scheduled one
    whose schedules are used up is sent when something went out, else approved again
    (every firing was missed), so an official can schedule it anew. A run a fallback
    chain step may still come to stays sending (fallback.chain_open). Returns the runs
    closed now.
    """
    done = await _closable(session, now)
    if done:
        await session.execute(
            update(BroadcastRun)
            .where(BroadcastRun.id.in_(done))
            .values(state=RunState.done, finished_at=now)
        )
    for before, condition, after in _bulletin_transitions():
        await session.execute(
            update(Bulletin)
            .where(Bulletin.state == before, condition)
            .values(state=after, updated_at=now)
        )
    return list(done)
