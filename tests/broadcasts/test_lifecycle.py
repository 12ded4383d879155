"""The whole lifecycle through the running service, over the fake Bot APIs on both platforms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from broadcasts import bulletins, schedules
from db.models import Acknowledgement, Official
from tests.bot.harness import eventually, running_service, wait_text
from tests.broadcasts.engine import approved_bulletin, bulletin_state, officials_pair
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def schedule_now(database: Database, bulletin_id: int) -> None:
    """What `haidang bulletin schedule ID --now` does, from another session."""
    async with database.sessions.begin() as session:
        bulletin = await bulletins.get(session, bulletin_id)
        editor = await session.scalar(select(Official).where(Official.username == "editor"))
        assert editor is not None
        await schedules.schedule(session, bulletin, editor, now=dt.datetime.now(dt.UTC), tz=TZ)


async def test_telegram_lifecycle(seeded: Database, tmp_path: Path) -> None:
    chats = [3001, 3002, 3003, 3004, 3005]
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ) as service,
    ):
        for chat in chats:
            api.user_sends(chat, "/start c11914")  # from the QR poster at the port
        for chat in chats:
            await wait_text(api, chat, "đã đăng ký")
        api.user_sends(3005, "/huy")
        await wait_text(api, 3005, "NGỪNG")
        api.user_presses(3005, "yes")
        await wait_text(api, 3005, "Đã ngừng gửi tin")

        await officials_pair(seeded)
        bulletin_id = await approved_bulletin(
            seeded, body="Bão số 3 đổ bộ chiều nay. Tàu thuyền vào nơi trú ẩn ngay.", urgent=True
        )
        await schedule_now(seeded, bulletin_id)
        for chat in chats[:4]:
            received = await wait_text(api, chat, "Bão số 3 đổ bộ", timeout=10)
            assert received.text.startswith("🚨 Thông báo gió mạnh trên biển")
            assert f"ack:{bulletin_id}" in str(received.reply_markup)
        assert not [r for r in api.sent_to(3005) if "Bão số 3" in (r.text or "")]  # stopped

        api.user_presses(3001, f"ack:{bulletin_id}")
        api.user_presses(3002, f"ack:{bulletin_id}")

        async def acks() -> int:
            async with seeded.sessions() as session:
                count = await session.scalar(
                    select(func.count()).where(Acknowledgement.bulletin_id == bulletin_id)
                )
            return int(count or 0)

        await eventually(acks, 2)
        await eventually(lambda: bulletin_state(seeded, bulletin_id), "sent")
        assert service.statuses()["senders"].active


async def test_zalo_lifecycle(seeded: Database, tmp_path: Path) -> None:
    chats = ["zl-1", "zl-2", "zl-3"]
    async with (
        FakeZaloAPI() as api,
        running_service(seeded, tmp_path, zalo_bot_token=api.token, zalo_api_base_url=api.base_url),
    ):
        for chat in chats:
            api.user_sends(chat, "/start c11914")
        for chat in chats:
            await wait_text(api, chat, "đã đăng ký")
        bulletin_id = await approved_bulletin(seeded, body="Luật Thủy sản: tàu cá phải có VMS.")
        await schedule_now(seeded, bulletin_id)
        for chat in chats:
            received = await wait_text(api, chat, "tàu cá phải có VMS", timeout=10)
            assert received.text.startswith("📢 Thông báo gió mạnh trên biển")
