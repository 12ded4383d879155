"""Telegram end to end: real python-telegram-bot against the fake Bot API over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import func, select

from db.models import Acknowledgement, InboxKind, InboxMessage, SubscriberStatus, Topic
from tests.bot.harness import add_sent_bulletin, count, person, running_service, wait_text
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI

CHAT = 1001


async def test_start_flow_deep_links_settings_stop_resume_erase(
    seeded: Database, tmp_path: Path
) -> None:
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ),
    ):
        # The command menu is set in Vietnamese.
        assert {c["command"] for c in api.commands()} >= {"start", "huy", "xoa", "caidat"}
        assert any(c["description"] == "Ngừng nhận tin" for c in api.commands())

        api.user_sends(CHAT, "/start", first_name="Ba")
        await wait_text(api, CHAT, "Chào bà con")
        consent = await wait_text(api, CHAT, "Bà con đồng ý chứ?")
        assert consent.reply_markup is not None
        api.user_presses(CHAT, "consent:yes")
        await wait_text(api, CHAT, "tỉnh/thành phố nào")
        mark = count(api, CHAT)
        api.user_sends(CHAT, "HAI PHONG")
        await wait_text(api, CHAT, "của Thành phố Hải Phòng", after=mark)
        mark = count(api, CHAT)
        api.user_sends(CHAT, "cat hai")
        await wait_text(api, CHAT, "Bà con là:", after=mark)
        api.user_presses(CHAT, "r:fisherman")
        await wait_text(api, CHAT, "chủ đề nào")
        mark = count(api, CHAT)
        async with seeded.sessions() as session:
            first_topic = await session.scalar(select(Topic.id).order_by(Topic.position))
        api.user_presses(CHAT, f"t:{first_topic}")  # untick one topic: the message is edited
        edited = await wait_text(api, CHAT, "chủ đề nào", after=mark)
        assert edited.method == "editMessageText"
        assert "⬜ Phổ biến pháp luật" in str(edited.reply_markup)
        api.user_presses(CHAT, "t:done")
        summary = await wait_text(api, CHAT, "Đăng ký xong")
        assert "Đặc khu Cát Hải (Thành phố Hải Phòng)" in summary.text
        found = await person(seeded, str(CHAT))
        assert found is not None
        subscriber, codes = found
        assert codes == ["11914"]
        assert subscriber.consent_at is not None and subscriber.display_name == "Ba"
        assert subscriber.status is SubscriberStatus.active

        # /caidat: add a second commune by typing it.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/caidat")
        await wait_text(api, CHAT, "Cài đặt", after=mark)
        api.user_presses(CHAT, "s:communes")
        await wait_text(api, CHAT, "Bà con đang theo dõi: Đặc khu Cát Hải", after=mark)
        api.user_presses(CHAT, "s:add")
        await wait_text(api, CHAT, "tỉnh/thành phố nào", after=mark)
        api.user_sends(CHAT, "ly son")
        await wait_text(api, CHAT, "Đã thêm Đặc khu Lý Sơn (Quảng Ngãi)", after=mark)
        found = await person(seeded, str(CHAT))
        assert found is not None and found[1] == ["11914", "21548"]

        # /huy asks to confirm, then stops; /batdau resumes.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/huy")
        await wait_text(api, CHAT, "NGỪNG", after=mark)
        api.user_presses(CHAT, "yes")
        await wait_text(api, CHAT, "Đã ngừng gửi tin", after=mark)
        found = await person(seeded, str(CHAT))
        assert found is not None and found[0].status is SubscriberStatus.stopped
        api.user_sends(CHAT, "/batdau")
        await wait_text(api, CHAT, "trở lại", after=mark)
        found = await person(seeded, str(CHAT))
        assert found is not None and found[0].status is SubscriberStatus.active

        # /xoa asks to confirm, then erases the person's data.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/xoa")
        await wait_text(api, CHAT, "XÓA", after=mark)
        api.user_presses(CHAT, "yes")
        await wait_text(api, CHAT, "Đã xóa toàn bộ", after=mark)
        assert await person(seeded, str(CHAT)) is None
        async with seeded.sessions() as session:
            from db.models import Subscriber

            erased = await session.scalar(
                select(Subscriber).where(Subscriber.status == SubscriberStatus.erased)
            )
            assert erased is not None and erased.display_name is None
            assert erased.consent_at is None

        # A QR deep link subscribes at once and names commune and province.
        api.user_sends(2002, "/start c11914")
        done = await wait_text(api, 2002, "đã đăng ký nhận tin của Đặc khu Cát Hải")
        assert "(Thành phố Hải Phòng)" in done.text
        found = await person(seeded, "2002")
        assert found is not None and found[1] == ["11914"]
        # A bad code gets a clear message and the normal flow.
        api.user_sends(3003, "/start c99999")
        await wait_text(api, 3003, "không đúng hoặc đã thay đổi")
        await wait_text(api, 3003, "Bà con đồng ý chứ?")
        # A province link starts at that province after consent.
        api.user_sends(4004, "/start p31")
        await wait_text(api, 4004, "Bà con đồng ý chứ?")
        api.user_presses(4004, "consent:yes")
        await wait_text(api, 4004, "của Thành phố Hải Phòng")


async def test_ack_button_inbox_and_latest(seeded: Database, tmp_path: Path) -> None:
    urgent = await add_sent_bulletin(seeded, "11914", urgent=True)
    await add_sent_bulletin(seeded, "p31", urgent=False)
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ) as service,
    ):
        api.user_sends(CHAT, "/start c11914")
        await wait_text(api, CHAT, "đã đăng ký")
        # /tin lists bulletins for the commune and its province.
        api.user_sends(CHAT, "/tin")
        latest = await wait_text(api, CHAT, "Tin mới nhất")
        assert "🚨 Bão số 3" in latest.text and "📢 Luật Thủy sản" in latest.text

        # An urgent bulletin arrives with the "Đã nhận" button (as the sender will send it).
        from bot.conversation import ack_option
        from bot.telegram import TelegramFrontEnd, keyboard
        from haidang.runtime import ChatPart

        part = service.bots.part("telegram")
        assert isinstance(part, ChatPart) and isinstance(part.front, TelegramFrontEnd)
        await part.front.application.bot.send_message(
            CHAT, "🚨 Bão số 3", reply_markup=keyboard([ack_option(urgent)])
        )
        api.user_presses(CHAT, f"ack:{urgent}")
        api.user_presses(CHAT, f"ack:{urgent}", check_button=False)  # a second tap

        def answers() -> list[str]:
            return [
                str(c.params.get("text"))
                for c in api.calls_to("answerCallbackQuery")
                if c.params.get("text")
            ]

        from tests.bot.harness import until

        texts: list[str] = await until(lambda: answers() if len(answers()) >= 2 else None)
        assert "Cảm ơn bà con đã xác nhận" in texts[0]
        assert "đã xác nhận tin này rồi" in texts[1]
        async with seeded.sessions() as session:
            acks = await session.scalar(
                select(func.count()).where(Acknowledgement.bulletin_id == urgent)
            )
            assert acks == 1

        # Free text goes to the inbox of the person's commune; urgent words are flagged.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "Có tàu lạ neo gần đảo, cần cấp cứu một ngư dân bị thương")
        reply = await wait_text(api, CHAT, "Đã chuyển tin KHẨN", after=mark)
        assert "Đặc khu Cát Hải" in reply.text
        api.user_sends_photo(CHAT, caption="Phao tiêu bị hỏng")
        await wait_text(api, CHAT, "Đã chuyển ảnh", after=mark)
        api.user_sends_location(CHAT, 20.72, 107.05)
        await wait_text(api, CHAT, "Đã chuyển vị trí", after=mark)
        api.user_sends_sticker(CHAT)
        await wait_text(api, CHAT, "nhắn chữ giúp", after=mark)
        async with seeded.sessions() as session:
            rows = (await session.scalars(select(InboxMessage).order_by(InboxMessage.id))).all()
        assert [r.kind for r in rows] == [InboxKind.text, InboxKind.photo, InboxKind.location]
        assert rows[0].urgent and rows[0].area_id is not None
        assert rows[1].text == "Phao tiêu bị hỏng" and rows[1].attachment_ref
        assert rows[2].latitude == 20.72

        # Group chats get a polite answer and nothing is stored.
        api.user_sends_in_group(-500, 77, "/start")
        await wait_text(api, -500, "trò chuyện riêng")


async def test_webhook_mode_checks_the_secret(seeded: Database, tmp_path: Path) -> None:
    async with FakeTelegramAPI() as api, running_service(
        seeded, tmp_path, webhook=True,
        telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
    ) as service:  # fmt: skip
        assert api.webhook_url == f"{service.settings.public_base_url}webhooks/telegram".replace(
            "//webhooks", "/webhooks"
        )
        api.user_sends(CHAT, "/start c11914")
        await wait_text(api, CHAT, "đã đăng ký")
        delivery = api.webhook_deliveries[0]
        assert delivery.status == 200 and delivery.secret_token == "telegram-secret-123"

        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/telegram"
        update = {
            "update_id": 999,
            "message": {
                "message_id": 5, "date": 0, "text": "/start c11914",
                "chat": {"id": 5005, "type": "private"},
                "from": {"id": 5005, "is_bot": False, "first_name": "X"},
            },
        }  # fmt: skip
        async with httpx.AsyncClient() as client:
            wrong = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
            )
            missing = await client.post(url, json=update)
            right = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "telegram-secret-123"}
            )
            again = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "telegram-secret-123"}
            )
        assert (wrong.status_code, missing.status_code) == (403, 403)
        assert (right.status_code, again.status_code) == (200, 200)
        await wait_text(api, 5005, "đã đăng ký")
        from tests.bot.harness import until

        await until(lambda: True, 0.01)
        import asyncio

        await asyncio.sleep(0.5)
        # The same update delivered twice was handled once.
        assert len(api.sent_to(5005)) == 1
