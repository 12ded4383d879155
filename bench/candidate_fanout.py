"""A candidate for broadcasts/runs.fan_out, measured by bench/fanout.py --fanout candidate.

Not used by the service. The shipped fan-out filters each chunk on the audience's chat
address id *outside* the grouped audience query; SQLite then drives every chunk from
ix_subscribers_status over all subscribers (the chunk filter only prunes chat addresses
late), and PostgreSQL seq-scans subscriptions and subscriber_topics again for every
chunk: the work is chunks x audience. This one:

- on SQLite chunks on subscribers.id *inside* the audience query, which turns the driving
  index search into `status=? AND rowid>? AND rowid<?` (each chunk reads its own slice);
- on PostgreSQL runs one INSERT ... SELECT (MVCC: a long insert blocks no reader and no
  other writer, so the chunking that SQLite's single writer needs buys nothing).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts.audiences import recipients
from broadcasts.runs import FANOUT_CHUNK, _insert_for
from db.models import (
    BroadcastRun,
    Bulletin,
    BulletinState,
    Delivery,
    DeliveryState,
    Priority,
    RunState,
    Subscriber,
)


async def fan_out(
    session: AsyncSession, run: BroadcastRun, now: dt.datetime, chunk: int = FANOUT_CHUNK
) -> int:
    bulletin = await session.get_one(Bulletin, run.bulletin_id)
    priority = 0 if bulletin.priority is Priority.urgent else 1
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        ranges: list[tuple[int, int] | None] = [None]
    else:
        low, high = (
            await session.execute(select(func.min(Subscriber.id), func.max(Subscriber.id)))
        ).one()
        ranges = (
            []
            if low is None
            else [(start, start + chunk) for start in range(int(low), int(high) + 1, chunk)]
        )
    columns = ["run_id", "chat_address_id", "bot_id", "area_id", "priority", "state"]
    for bounds in ranges:
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
        ).where(audience.c.id.is_not(None))  # SQLite: with no WHERE, ON CONFLICT parses as ON
        insert = _insert_for(session)(Delivery)
        await session.execute(
            insert.from_select(columns, rows).on_conflict_do_nothing(
                index_elements=["run_id", "chat_address_id"]
            )
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
