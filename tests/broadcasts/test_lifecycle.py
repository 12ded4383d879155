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


def _png(path: Path) -> Path:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND) made with the standard library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x1e\x5a\x96")
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


async def _with_photo_and_voice(database: Database, service: object, photo: Path) -> int:
    """An approved urgent bulletin with a photo, its audio rendered by the service."""
    from db.models import AudioAsset, Bulletin
    from haidang.media import store_photo

    bulletin_id = await approved_bulletin(database, body="Bão số 3. Vào bờ ngay.", urgent=True)
    key = store_photo(service.store, photo)  # type: ignore[attr-defined]
    async with database.sessions.begin() as session:
        (await session.get_one(Bulletin, bulletin_id)).photo_path = key

    async def formats() -> set[str]:
        async with database.sessions() as session:
            rows = await session.scalars(
                select(AudioAsset.format).where(AudioAsset.bulletin_id == bulletin_id)
            )
            return set(rows.all())

    await eventually(formats, {"mp3", "aac", "ogg"}, timeout=30)
    return bulletin_id


async def test_photo_voice_and_mp3_for_radio_operators(seeded: Database, tmp_path: Path) -> None:
    from db.models import ChatAddress, Subscriber, SubscriberRole

    async with FakeTelegramAPI() as api, running_service(
        seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
        tts_engine="espeak",
    ) as service:  # fmt: skip
        for chat in (5001, 5002, 5003):
            api.user_sends(chat, "/start c11914")
            await wait_text(api, chat, "đã đăng ký")
        async with seeded.sessions.begin() as session:
            address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "5003"))
            assert address is not None
            (
                await session.get_one(Subscriber, address.subscriber_id)
            ).role = SubscriberRole.radio_operator
        await officials_pair(seeded)
        bulletin_id = await _with_photo_and_voice(seeded, service, _png(tmp_path / "bao.png"))
        await schedule_now(seeded, bulletin_id)
        await wait_text(api, 5003, "Vào bờ ngay", timeout=15)

        def methods(chat: int) -> list[str]:
            """What the bulletin became in this chat (the sign-up replies left out)."""
            return [
                r.method
                for r in api.sent_to(chat)
                if r.method != "sendMessage" or "Vào bờ" in (r.text or "")
            ]

        async def operator_parts() -> int:
            return len(methods(5003))

        await eventually(operator_parts, 4, timeout=15)
        assert methods(5001) == ["sendPhoto", "sendMessage", "sendVoice"]
        assert methods(5003) == ["sendPhoto", "sendMessage", "sendVoice", "sendAudio"]
        photos = [r.file for r in api.sent if r.method == "sendPhoto"]
        voices = [r.file for r in api.sent if r.method == "sendVoice"]
        # Uploaded once per bot; every later send reuses Telegram's file id.
        assert [f.source for f in photos if f].count("upload") == 1
        assert [f.source for f in voices if f].count("upload") == 1
        assert len({f.file_id for f in voices if f}) == 1


async def test_zalo_gets_photo_and_voice_by_url(seeded: Database, tmp_path: Path) -> None:
    async with FakeZaloAPI() as api, running_service(
        seeded, tmp_path, webhook=True, zalo_bot_token=api.token,
        zalo_api_base_url=api.base_url, tts_engine="espeak",
    ) as service:  # fmt: skip
        api.user_sends("zm-1", "/start c11914")
        await wait_text(api, "zm-1", "đã đăng ký")
        await officials_pair(seeded)
        bulletin_id = await _with_photo_and_voice(seeded, service, _png(tmp_path / "bao.png"))
        await schedule_now(seeded, bulletin_id)
        listen = await wait_text(api, "zm-1", "🔊 Nghe", timeout=15)
        base = f"{service.settings.public_base_url}".rstrip("/")
        assert f"{base}/audio/files/" in listen.text and listen.text.endswith(".aac")
        photo = [r for r in api.sent_to("zm-1") if r.method == "sendPhoto"]
        assert photo and photo[0].file and str(photo[0].file.file_id).startswith(base)
