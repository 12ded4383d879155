"""The chart's minute counts: kept for settled minutes, counted again for recent ones, exact."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from db.models import Delivery, DeliveryState, Platform
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run
from tests.conftest import Database
from web.dashboard.progress import MinuteCounts, sent_per_minute

MINUTE = dt.timedelta(minutes=1)


async def _send(database: Database, ids: list[int], at: dt.datetime) -> None:
    async with database.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(state=DeliveryState.sent, sent_at=at + dt.timedelta(seconds=17))
        )


async def test_minute_counts_match_a_full_count_as_a_broadcast_goes_on(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, [f"c{i}" for i in range(12)])
    bulletin_id = await approved_bulletin(seeded)
    run_id = await start_run(seeded, bulletin_id)
    async with seeded.sessions() as session:
        ids = list(
            (
                await session.scalars(
                    select(Delivery.id).where(Delivery.run_id == run_id).order_by(Delivery.id)
                )
            ).all()
        )
    await _send(seeded, ids[0:3], NOW)
    await _send(seeded, ids[3:5], NOW + MINUTE)
    await _send(seeded, ids[5:6], NOW + 5 * MINUTE)
    minutes = MinuteCounts()

    async def both() -> tuple[list[tuple[dt.datetime, int]], list[tuple[dt.datetime, int]]]:
        async with seeded.sessions() as session:
            return await minutes.get(session, bulletin_id), await sent_per_minute(
                session, bulletin_id
            )

    kept, full = await both()
    assert kept == full == [(NOW, 3), (NOW + MINUTE, 2), (NOW + 5 * MINUTE, 1)]

    # The broadcast goes on: the latest minute grows and a new one starts.
    await _send(seeded, ids[6:8], NOW + 5 * MINUTE)
    await _send(seeded, ids[8:9], NOW + 6 * MINUTE)
    kept, full = await both()
    assert (
        kept == full == [(NOW, 3), (NOW + MINUTE, 2), (NOW + 5 * MINUTE, 3), (NOW + 6 * MINUTE, 1)]
    )

    # Minutes more than two minutes before the latest are not read again: a (impossible in
    # service) send dated back into one is not seen, which shows they come from the cache.
    await _send(seeded, ids[9:10], NOW)
    kept, full = await both()
    assert kept[0] == (NOW, 3) and full[0] == (NOW, 4)
    assert kept[1:] == full[1:]
