"""The follow-up page: chart minute counts (kept for settled minutes, exact), each bot's share."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from db.models import Delivery, DeliveryState, Platform
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run
from tests.broadcasts.test_reports import build_two_bots
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials
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


async def test_the_page_and_its_poll_show_each_bots_share(seeded: Database) -> None:
    await make_officials(seeded)
    ids = await build_two_bots(seeded)
    async with Client(make_app(seeded)) as editor:
        await editor.login("editor")
        polled = (await editor.get(f"/dashboard/bulletins/{ids.bulletin_id}/progress.json")).json()
        page = await editor.get(f"/dashboard/bulletins/{ids.bulletin_id}/progress")

    default, quang_ngai = polled["bots"]
    assert (default["bot_id"], default["name"], default["platform_label"]) == (
        ids.default,
        "default",
        "Telegram",
    )
    assert (quang_ngai["bot_id"], quang_ngai["name"], quang_ngai["username"]) == (
        ids.quang_ngai,
        "quang-ngai",
        "haidang_qn_bot",
    )
    assert (default["counts"]["sent"], quang_ngai["counts"]["sent"]) == (7, 3)
    assert (default["acknowledgements"], quang_ngai["acknowledgements"]) == (3, 2)
    assert quang_ngai["ack_rate"] == pytest.approx(2 / 3)
    assert polled["acknowledgements_unattributed"] == 1
    for state, count in polled["counts"].items():
        assert default["counts"][state] + quang_ngai["counts"][state] == count

    assert page.status_code == 200
    assert "<h2>Theo bot</h2>" in page.text and 'id="bot-shares" hidden' not in page.text
    rows = {
        bot_id: page.text.split(f'<tr class="bot-share" data-bot-id="{bot_id}">')[1].split("</tr>")[
            0
        ]
        for bot_id in (ids.default, ids.quang_ngai)
    }
    assert 'data-state="cancelled">4<' in rows[ids.default]
    assert 'data-field="ack_rate">75,0 %<' in rows[ids.default]
    assert "@haidang_qn_bot" in rows[ids.quang_ngai]
    assert 'data-state="blocked">1<' in rows[ids.quang_ngai]
    assert 'data-field="acknowledgements_unattributed">1<' in page.text
