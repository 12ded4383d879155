"""Named leases in the database: exactly one holder (a sender, the scheduler) at a time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import insert_for
from db.models import Lease


async def acquire(
    session: AsyncSession, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta
) -> bool:
    """Take or renew the lease; True when `holder` holds it until now + ttl.

    Taken when free, expired, or already ours. The caller commits promptly: the lease
    only protects anything once committed.
    """
    until = now + ttl
    insert = insert_for(session)
    await session.execute(
        insert(Lease)
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    taken = await session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=until)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, name: str, holder: str) -> None:
    """Give the lease up (on clean shutdown) so another process can take it at once."""
    await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


async def current(session: AsyncSession, name: str) -> tuple[str, dt.datetime] | None:
    """The lease's holder and expiry as last written (a read), None when nobody took it."""
    row = (
        await session.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name))
    ).first()
    return None if row is None else (row[0], row[1])


async def held(session: AsyncSession, name: str, now: dt.datetime) -> bool:
    """Whether some process holds the lease now (it renews it while it runs)."""
    until = await session.scalar(select(Lease.expires_at).where(Lease.name == name))
    return until is not None and until >= now


async def live(session: AsyncSession, prefix: str, now: dt.datetime) -> dict[str, str]:
    """Unexpired leases whose name starts with `prefix`: name → holder."""
    rows = await session.execute(
        select(Lease.name, Lease.holder).where(
            Lease.name.startswith(prefix, autoescape=True), Lease.expires_at >= now
        )
    )
    return {name: holder for name, holder in rows.all()}
