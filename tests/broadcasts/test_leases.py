"""Leases: one holder at a time, renewal, expiry, release."""

from __future__ import annotations

import datetime as dt

from broadcasts import leases
from tests.conftest import Database

T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=10)


async def test_one_holder_until_expiry_or_release(database: Database) -> None:
    async with database.sessions.begin() as session:
        assert await leases.acquire(session, "sender:1", "a", T0, TTL)
    async with database.sessions.begin() as session:
        assert not await leases.acquire(session, "sender:1", "b", T0 + dt.timedelta(seconds=5), TTL)
        assert await leases.acquire(session, "sender:1", "a", T0 + dt.timedelta(seconds=5), TTL)
    async with database.sessions.begin() as session:
        # a renewed at +5 s holds until +15 s; b gets it only after that.
        assert not await leases.acquire(
            session, "sender:1", "b", T0 + dt.timedelta(seconds=14), TTL
        )
        assert await leases.acquire(session, "sender:1", "b", T0 + dt.timedelta(seconds=16), TTL)
    async with database.sessions.begin() as session:
        await leases.release(session, "sender:1", "b")
        assert await leases.acquire(session, "sender:1", "c", T0 + dt.timedelta(seconds=17), TTL)
