"""What officials see of a bot's queue: the live figures while a broadcast goes out, and the
answers that could not be sent, with their reasons (admins only)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from broadcasts.outbox import Outbox
from broadcasts.pacing import Lane
from broadcasts.subscribers import ensure_bot
from db.models import Answer, AnswerState, Platform
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials


async def test_the_follow_up_page_shows_each_bots_live_queue(seeded: Database) -> None:
    await make_officials(seeded)
    bot_id = await add_people(seeded, Platform.telegram, [f"tg{i}" for i in range(3)])
    bulletin_id = await approved_bulletin(seeded)
    await start_run(seeded, bulletin_id)
    # A real outbox with a crowd waiting in it: three answers, one broadcast send, a 429.
    outbox = Outbox(30)
    outbox.rate_limited(60.0)
    waiting = [
        asyncio.create_task(outbox.pacer.wait_turn(f"p{n}", Lane.first_reply)) for n in range(3)
    ]
    waiting.append(asyncio.create_task(outbox.pacer.wait_turn("r1", Lane.routine)))
    await asyncio.sleep(0)
    outbox.broadcast_backlog = 1234
    app = make_app(seeded, bot_queues=lambda: {bot_id: outbox.stats()})
    try:
        async with Client(app) as editor:
            await editor.login("editor")
            page = await editor.get(f"/dashboard/bulletins/{bulletin_id}/progress")
            assert "Hàng đợi của bot" in page.text
            assert f'data-bot-id="{bot_id}"' in page.text
            assert 'data-field="replies_waiting">3<' in page.text
            assert 'data-field="broadcast_backlog">1.234<' in page.text
            assert 'data-field="rate_limited_last_hour">1<' in page.text
            polled = await editor.get(f"/dashboard/bulletins/{bulletin_id}/progress.json")
            (queue,) = json.loads(polled.text)["queues"]
            assert queue["bot"] == "Telegram · default" and queue["replies_waiting"] == 3
            assert queue["broadcast_waiting"] == 1 and queue["paused_for"] > 59
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


async def test_admins_see_the_answers_that_could_not_be_sent(seeded: Database) -> None:
    await make_officials(seeded)
    async with seeded.sessions.begin() as session:
        bot = await ensure_bot(session, Platform.zalo)
        when = NOW + dt.timedelta(minutes=3)
        session.add_all(
            [
                Answer(
                    bot_id=bot.id, chat_id="zalo-8842117", state=AnswerState.failed,
                    payload={"replies": [{"text": "Bà con đã đăng ký nhận tin của Cát Hải"}]},
                    reason="blocked: Forbidden", created_at=NOW, failed_at=when,
                ),
                Answer(
                    bot_id=bot.id, chat_id="zalo-1", payload={"replies": [{"text": "chờ"}]},
                    created_at=NOW,
                ),
            ]
        )  # fmt: skip
    app = make_app(seeded)
    async with Client(app) as admin, Client(app) as editor:
        await admin.login("root")
        page = await admin.get("/dashboard/admin/answers")
        assert page.status_code == 200
        assert page.text.count('class="failed-answer"') == 1  # the waiting one is not listed
        assert "Bà con đã đăng ký nhận tin của Cát Hải" in page.text
        assert "blocked: Forbidden" in page.text and "Zalo · default" in page.text
        assert "…117" in page.text and "8842117" not in page.text  # not enough to reach them
        await editor.login("editor")
        assert (await editor.get("/dashboard/admin/answers")).status_code == 403
