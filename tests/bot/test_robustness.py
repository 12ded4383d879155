"""Robustness of the chat front ends: floods, failures, long input, and the log check."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from sqlalchemy import select, text

from bot.conversation import FLOOD_MAX_EVENTS, MAX_INPUT
from db.models import InboxMessage
from tests.bot.harness import count, running_service, until, wait_text
from tests.conftest import UNHANDLED, Database
from tests.fakes.telegram_api import FakeTelegramAPI


async def test_a_flooding_chat_does_not_stall_others(seeded: Database, tmp_path: Path) -> None:
    # A short per-chat gap: at Telegram's 1 s, thirty answers to one chat take 30 s.
    async with (
        FakeTelegramAPI(latency=0.02) as api,
        running_service(
            seeded,
            tmp_path,
            telegram_bot_token=api.token,
            telegram_api_base_url=api.base_url,
            bots={"per_chat_interval": 0.05},
        ),  # fmt: skip
    ):
        for n in range(FLOOD_MAX_EVENTS * 3):
            api.user_sends(666, f"spam {n}")
        started = time.monotonic()
        api.user_sends(1001, "/start c11914")
        await wait_text(api, 1001, "đã đăng ký")
        assert time.monotonic() - started < 3.0
        await wait_text(api, 666, "nhắn nhanh quá")
        # The warning goes out at once; the admitted messages are answered one by one
        # under the chat's lock, so on a loaded machine some may still be on their way.
        await until(lambda: len(api.sent_to(666)) >= FLOOD_MAX_EVENTS + 1, timeout=20)
        await asyncio.sleep(1.0)  # anything beyond the limit would have come by now
        # Answers stop at the limit (plus one warning); nothing is answered twice.
        assert len(api.sent_to(666)) == FLOOD_MAX_EVENTS + 1


async def test_a_database_error_is_answered_with_an_apology(
    seeded: Database, tmp_path: Path
) -> None:
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ),
    ):
        api.user_sends(1001, "/start c11914")
        await wait_text(api, 1001, "đã đăng ký")
        # A real failure, not a mock: the inbox table disappears under the running bot.
        async with seeded.engine.begin() as connection:
            await connection.execute(text("DROP TABLE inbox_messages"))
        mark = count(api, 1001)
        api.user_sends(1001, "Phao số 3 bị trôi")
        await wait_text(api, 1001, "Xin lỗi bà con", after=mark)
        api.user_sends(1001, "/trogiup")  # the bot still serves the next update
        await wait_text(api, 1001, "/huy – ngừng nhận tin", after=mark)


async def test_over_long_input_is_cut_safely(seeded: Database, tmp_path: Path) -> None:
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ),
    ):
        api.user_sends(1001, "/start c11914")
        await wait_text(api, 1001, "đã đăng ký")
        api.user_sends(1001, "Sóng lớn. " * 400)
        reply = await wait_text(api, 1001, "Đã chuyển ý kiến")
        assert f"chỉ giữ {MAX_INPUT} ký tự đầu" in reply.text
    async with seeded.sessions() as session:
        stored = await session.scalar(select(InboxMessage.text))
    assert stored == ("Sóng lớn. " * 400)[:MAX_INPUT].strip()


def test_the_log_check_catches_an_escaped_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    assert [r.name for r in UNHANDLED.records] == ["asyncio"]
    UNHANDLED.records.clear()  # this one was on purpose
