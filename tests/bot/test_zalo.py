"""Zalo end to end: the real zalo_bot SDK (wrapped) against the fake Zalo Bot API over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import zalo_bot

from bot.zalo import CheckedRequest, ZaloApiError
from db.models import InboxMessage, SubscriberRole, SubscriberStatus
from tests.bot.harness import add_sent_bulletin, count, person, running_service, wait_text
from tests.conftest import Database
from tests.fakes.zalo_api import FakeZaloAPI

CHAT = "e4ea2cd5189df1c3a88c"


def option_number(text: str, label: str) -> str:
    """The number the bot gave an option in its numbered list."""
    for line in text.splitlines():
        number, _, rest = line.partition(". ")
        if number.isdigit() and rest.startswith(label):
            return number
    raise AssertionError(f"no option {label!r} in {text!r}")


async def test_full_flow_with_numbered_menus(seeded: Database, tmp_path: Path) -> None:
    urgent = await add_sent_bulletin(seeded, "11914", urgent=True)
    async with (
        FakeZaloAPI() as api,
        running_service(seeded, tmp_path, zalo_bot_token=api.token, zalo_api_base_url=api.base_url),
    ):
        api.user_sends(CHAT, "Xin chào")  # first contact: plain text
        await wait_text(api, CHAT, "Đã ghi nhận tin nhắn")  # goes to the inbox, suggests /start
        before_consent = await person(seeded, CHAT)
        assert before_consent is not None and before_consent[0].display_name is None
        mark = count(api, CHAT)
        api.user_sends(CHAT, "dang ky")  # Zalo: keywords, no menu
        consent = await wait_text(api, CHAT, "Bà con đồng ý chứ?", after=mark)
        assert "1. ✅ Đồng ý" in consent.text and "Bà con trả lời bằng số" in consent.text
        api.user_sends(CHAT, "1")  # consent: the name is kept from now on
        provinces = await wait_text(api, CHAT, "tỉnh/thành phố nào", after=mark)
        assert len(provinces.text) <= 2000
        mark = count(api, CHAT)
        api.user_sends(CHAT, "quang ngai")
        await wait_text(api, CHAT, "của Quảng Ngãi", after=mark)
        mark = count(api, CHAT)
        api.user_sends(CHAT, "binh son")  # only Quảng Ngãi's Bình Sơn, not the other two
        roles = await wait_text(api, CHAT, "Bà con là:", after=mark)
        api.user_sends(CHAT, option_number(roles.text, "Đồn biên phòng"))
        topics = await wait_text(api, CHAT, "chủ đề nào", after=mark)
        api.user_sends(CHAT, option_number(topics.text, "✔️ Xong"))
        summary = await wait_text(api, CHAT, "Đăng ký xong", after=mark)
        assert "Xã Bình Sơn (Quảng Ngãi)" in summary.text
        found = await person(seeded, CHAT)
        assert found is not None
        subscriber, codes = found
        assert codes == ["21040"]
        assert subscriber.role is SubscriberRole.border_guard
        assert subscriber.display_name == "Nguyen Van A"  # the fake's default name

        # "đã nhận" typed acknowledges the newest urgent bulletin for the person's areas.
        await add_sent_bulletin(seeded, "21040", urgent=True)
        mark = count(api, CHAT)
        api.user_sends(CHAT, "Đã nhận")
        await wait_text(api, CHAT, "Cảm ơn bà con đã xác nhận", after=mark)
        assert urgent  # the Cát Hải one is not theirs; theirs was acknowledged

        # Settings by keyword: change the role through the numbered menu.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "cai dat")
        menu = await wait_text(api, CHAT, "Cài đặt", after=mark)
        api.user_sends(CHAT, option_number(menu.text, "👤 Vai trò"))
        roles = await wait_text(api, CHAT, "Bà con là:", after=mark)
        api.user_sends(CHAT, option_number(roles.text, "Ngư dân"))
        await wait_text(api, CHAT, "Đã lưu", after=mark)
        found = await person(seeded, CHAT)
        assert found is not None and found[0].role is SubscriberRole.fisherman
        api.user_sends(CHAT, "/khonghieu")
        await wait_text(api, CHAT, "/trogiup – xem hướng dẫn này", after=mark)

        # Stop, resume and erase by keyword, each confirmed by number.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "huy")
        confirm = await wait_text(api, CHAT, "NGỪNG", after=mark)
        api.user_sends(CHAT, option_number(confirm.text, "Có"))
        await wait_text(api, CHAT, "Đã ngừng gửi tin", after=mark)
        found = await person(seeded, CHAT)
        assert found is not None and found[0].status is SubscriberStatus.stopped
        api.user_sends(CHAT, "bat dau")
        await wait_text(api, CHAT, "trở lại", after=mark)
        api.user_sends(CHAT, "/xoa")
        confirm = await wait_text(api, CHAT, "XÓA", after=mark)
        api.user_sends(CHAT, option_number(confirm.text, "Có"))
        await wait_text(api, CHAT, "Đã xóa toàn bộ", after=mark)
        assert await person(seeded, CHAT) is None

        # A QR deep link on Zalo arrives as the first message "/start c11914".
        api.user_sends("zalo-2", "/start c11914")
        await wait_text(api, "zalo-2", "đã đăng ký nhận tin của Đặc khu Cát Hải")
        api.user_sends_photo("zalo-2", photo_url="https://example.invalid/p.jpg")
        await wait_text(api, "zalo-2", "Đã chuyển ảnh")
        api.user_sends_sticker("zalo-2")
        await wait_text(api, "zalo-2", "nhắn chữ giúp")
        api.user_sends_in_group("group-1", "u-9", "/start")
        await wait_text(api, "group-1", "trò chuyện riêng")


async def test_webhook_mode_checks_the_secret(seeded: Database, tmp_path: Path) -> None:
    async with (
        FakeZaloAPI() as api,
        running_service(
            seeded, tmp_path, webhook=True, zalo_bot_token=api.token, zalo_api_base_url=api.base_url
        ) as service,
    ):
        assert api.webhook_url is not None and api.webhook_url.endswith("/webhooks/zalo")
        api.user_sends(CHAT, "/start c11914")
        await wait_text(api, CHAT, "đã đăng ký")
        assert api.webhook_deliveries[0].secret_token == "zalo-secret-123"
        assert api.webhook_deliveries[0].status == 200

        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/zalo"
        update = {
            "event_name": "message.text.received",
            "message": {
                "message_id": "abc", "date": 1766619597466, "text": "/start c11914",
                "chat": {"id": "zalo-9", "chat_type": "PRIVATE"},
                "from": {"id": "zalo-9", "display_name": "X", "is_bot": False},
            },
        }  # fmt: skip
        async with httpx.AsyncClient() as client:
            wrong = await client.post(
                url, json=update, headers={"X-Bot-Api-Secret-Token": "x" * 16}
            )
            missing = await client.post(url, json=update)
            assert (wrong.status_code, missing.status_code) == (403, 403)
            api.register_chat("zalo-9")
            right = await client.post(
                url, json=update, headers={"X-Bot-Api-Secret-Token": "zalo-secret-123"}
            )
            assert right.status_code == 200
        await wait_text(api, "zalo-9", "đã đăng ký")
        async with seeded.sessions() as session:
            from sqlalchemy import func, select

            assert await session.scalar(select(func.count()).select_from(InboxMessage)) == 0


async def test_an_ok_false_answer_is_never_silent() -> None:
    """The bare SDK turns HTTP 200 + ok:false into None; our transport raises instead."""
    async with FakeZaloAPI() as api:
        plain = zalo_bot.Bot(api.token, base_url=api.base_url)
        async with plain:
            assert await plain.send_message("nobody-wrote-first", "xin chào") is None  # the defect
        checked = zalo_bot.Bot(api.token, base_url=api.base_url)
        checked._request = (CheckedRequest(), CheckedRequest())
        async with checked:
            with pytest.raises(ZaloApiError) as caught:
                await checked.send_message("nobody-wrote-first", "xin chào")
        assert caught.value.method == "sendMessage"
        assert caught.value.error_code is not None
