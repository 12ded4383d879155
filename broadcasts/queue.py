"""The delivery queue: batch claims, batched outcome writes, and the lease sweeper."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import BroadcastRun, ChatAddress, Delivery, DeliveryState, Subscriber

URGENT, ROUTINE = 0, 1


@dataclass(frozen=True)
class Claimed:
    """A delivery a sender now owns until `lease_until`, with what it needs to send."""

    id: int
    run_id: int
    bulletin_id: int
    chat_address_id: int
    chat_id: str
    language: str
    role: str
    priority: int
    attempts: int
    parts_sent: int


# One statement claims the batch: the inner SELECT picks the oldest pending rows, urgent
# first; PostgreSQL skips rows another worker has locked, SQLite relies on BEGIN IMMEDIATE
# (one writer at a time), so no row is ever claimed twice.
_CLAIM = """
UPDATE deliveries SET state = 'sending', lease_until = :lease_until
WHERE id IN (
    SELECT id FROM deliveries
    WHERE bot_id = :bot_id AND state = 'pending' AND priority <= :max_priority
      AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
    ORDER BY priority, id
    LIMIT :limit
    {lock}
)
RETURNING id
"""


async def claim(
    session: AsyncSession,
    *,
    bot_id: int,
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta,
    urgent_only: bool = False,
) -> list[Claimed]:
    """Claim up to `limit` pending deliveries of a bot (urgent before routine)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = text(_CLAIM.format(lock="FOR UPDATE SKIP LOCKED" if postgres else "")).bindparams(
        lease_until=_stamp(now + lease, postgres),
        now=_stamp(now, postgres),
        bot_id=bot_id,
        limit=limit,
        max_priority=URGENT if urgent_only else ROUTINE,
    )
    ids = [row[0] for row in (await session.execute(statement)).all()]
    if not ids:
        return []
    rows = await session.execute(
        select(
            Delivery.id,
            Delivery.run_id,
            BroadcastRun.bulletin_id,
            Delivery.chat_address_id,
            ChatAddress.chat_id,
            Subscriber.language,
            Subscriber.role,
            Delivery.priority,
            Delivery.attempts,
            Delivery.parts_sent,
        )
        .join(BroadcastRun, BroadcastRun.id == Delivery.run_id)
        # A blank address (chat_id NULL: erased by /xoa) has nobody to send to.
        .join(
            ChatAddress,
            (ChatAddress.id == Delivery.chat_address_id) & ChatAddress.chat_id.is_not(None),
        )
        .join(Subscriber, Subscriber.id == ChatAddress.subscriber_id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.priority, Delivery.id)
    )
    claimed = [_claimed(row) for row in rows.all()]
    if len(claimed) < len(ids):
        # The address was erased (/xoa) after fan-out: nobody to send to any more.
        gone = set(ids) - {c.id for c in claimed}
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(gone))
            .values(state=DeliveryState.failed, reason="address erased", lease_until=None)
        )
    return claimed


def _claimed(row: Any) -> Claimed:
    return Claimed(
        id=row[0],
        run_id=row[1],
        bulletin_id=row[2],
        chat_address_id=int(row[3]),
        chat_id=row[4],
        language=row[5],
        role=str(row[6].value if hasattr(row[6], "value") else row[6]),
        priority=row[7],
        attempts=row[8],
        parts_sent=row[9],
    )


def _stamp(value: dt.datetime, postgres: bool) -> Any:
    # Raw SQL bypasses the UTCDateTime column type: give each driver what the type would.
    utc = value.astimezone(dt.UTC)
    return utc if postgres else utc.replace(tzinfo=None).isoformat(sep=" ")


@dataclass
class Outcome:
    """What became of one claimed delivery, written back in a batch."""

    id: int
    state: DeliveryState
    parts_sent: int
    attempts: int
    reason: str | None = None
    platform_message_id: str | None = None
    sent_at: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None
    deactivate_address: int | None = None  # chat address to switch off (blocked, gone)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "parts_sent": self.parts_sent,
            "attempts": self.attempts,
            "reason": self.reason,
            "platform_message_id": self.platform_message_id,
            "sent_at": self.sent_at,
            "next_attempt_at": self.next_attempt_at,
            "lease_until": None,
        }


async def record(session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
    """Write a batch of outcomes (one executemany) and switch off blocked addresses."""
    if not outcomes:
        return
    await session.execute(update(Delivery), [o.row() for o in outcomes])
    blocked = [
        (o.deactivate_address, o.reason) for o in outcomes if o.deactivate_address is not None
    ]
    for reason in {r for _, r in blocked}:
        ids = [address for address, r in blocked if r == reason]
        await session.execute(
            update(ChatAddress)
            .where(ChatAddress.id.in_(ids))
            .values(active=False, inactive_reason=(reason or "blocked")[:40])
        )


async def record_progress(session: AsyncSession, progress: Mapping[int, int]) -> None:
    """Write how many messages of deliveries still being sent went out (id → count), so
    a retry or a successor continues after them; only rows still `sending` (a final
    outcome written before is not undone)."""
    if not progress:
        return
    # The Core table: an executemany with a WHERE of its own, not an ORM bulk update by key.
    table = cast(Table, Delivery.__table__)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("delivery"), table.c.state == DeliveryState.sending.value)
        .values(parts_sent=bindparam("parts")),
        [{"delivery": id_, "parts": parts} for id_, parts in progress.items()],
    )


async def sweep(
    session: AsyncSession,
    *,
    bot_id: int,
    now: dt.datetime,
    takeover: bool = False,
    keep: Collection[int] = (),
) -> tuple[int, int]:
    """Return expired `sending` leases: urgent to pending (at-least-once), routine to unknown.

    Only the holder of the bot's sender lease calls this, so every expired lease it sees
    belongs to a sender that died. On `takeover` (the bot's lease just changed hands, so
    the previous sender is gone) every `sending` row is swept at once, without waiting
    for the rows' own leases: a storm warning must not wait a minute. `keep`: the rows the
    calling sender holds and is still sending (a 429 storm can hold a row past its
    lease; sweeping it would send it twice). Returns (requeued, unknown).
    """
    expired = [Delivery.bot_id == bot_id, Delivery.state == DeliveryState.sending]
    if not takeover:
        expired.append(Delivery.lease_until < now)
    if keep:
        expired.append(Delivery.id.not_in(list(keep)))
    requeued = await session.execute(
        update(Delivery)
        .where(*expired, Delivery.priority == URGENT)
        .values(state=DeliveryState.pending, lease_until=None)
    )
    unknown = await session.execute(
        update(Delivery)
        .where(*expired, Delivery.priority == ROUTINE)
        .values(state=DeliveryState.unknown, lease_until=None, reason="sender died mid-send")
    )
    return int(requeued.rowcount or 0), int(unknown.rowcount or 0)  # type: ignore[attr-defined]


async def backlog(session: AsyncSession, *, bot_id: int, cap: int) -> int:
    """A bot's deliveries not yet done (pending or being sent), counted up to `cap` so the
    count stays cheap with a million waiting (the claim index answers it alone)."""
    waiting = (
        select(Delivery.id)
        .where(
            Delivery.bot_id == bot_id,
            Delivery.state.in_((DeliveryState.pending, DeliveryState.sending)),
        )
        .limit(cap)
        .subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(waiting)) or 0)
