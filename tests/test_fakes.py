"""Tests of the fake Telegram and Zalo Bot API servers, driven by the real client libraries."""

from __future__ import annotations

import asyncio
import datetime as dtm
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import telegram
import telegram.error
import zalo_bot
import zalo_bot.error
from aiohttp import web
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update

from tests.fakes._common import ALL_METHODS, lognormal_latency
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

CHAT = 512_000_001
ZALO_CHAT = "e4ea2cd5189df1c3a88c"


def _seconds(value: int | float | dtm.timedelta) -> float:
    """RetryAfter.retry_after is an int or a timedelta depending on PTB_TIMEDELTA."""
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


@dataclass
class Receiver:
    """A tiny webhook endpoint standing in for the product's web server."""

    expected_secret: str
    header: str
    url: str = ""
    bodies: list[dict[str, object]] = field(default_factory=list)
    secrets_seen: list[str | None] = field(default_factory=list)


@pytest.fixture
async def tg_api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
async def tg_bot(tg_api: FakeTelegramAPI) -> AsyncIterator[telegram.Bot]:
    bot = telegram.Bot(
        tg_api.token, base_url=tg_api.bot_base_url, base_file_url=tg_api.file_base_url
    )
    async with bot:
        yield bot


@pytest.fixture
async def zalo_api() -> AsyncIterator[FakeZaloAPI]:
    async with FakeZaloAPI() as api:
        yield api


@pytest.fixture
async def zbot(zalo_api: FakeZaloAPI) -> AsyncIterator[zalo_bot.Bot]:
    bot = zalo_bot.Bot(zalo_api.token, base_url=zalo_api.base_url)
    async with bot:
        yield bot


async def _start_receiver(receiver: Receiver) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        secret = request.headers.get(receiver.header)
        receiver.secrets_seen.append(secret)
        receiver.bodies.append(await request.json())
        status = 200 if secret == receiver.expected_secret else 403
        return web.Response(status=status)

    runner, receiver.url = await _serve_hook(handle)
    return runner


async def _serve_hook(
    handle: Callable[[web.Request], Awaitable[web.Response]],
) -> tuple[web.AppRunner, str]:
    """A webhook endpoint on 127.0.0.1: its runner (to clean up) and its URL."""
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


# --------------------------------------------------------------------- Telegram


async def test_telegram_get_me_and_send_message_logs_what_was_sent(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    me = await tg_bot.get_me()
    assert me.username == "haidang_test_bot"
    assert me.is_bot

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Đăng ký", callback_data="sub:yes")]])
    first = await tg_bot.send_message(
        CHAT, "<b>Bản tin</b> thời tiết", parse_mode="HTML", reply_markup=keyboard
    )
    second = await tg_bot.send_message(CHAT, "Gió cấp 6")

    assert first.message_id == 1 and second.message_id == 2
    assert first.text == "Bản tin thời tiết"  # markup stripped, as Telegram returns it
    assert first.reply_markup == keyboard
    assert first.chat.id == CHAT and first.chat.type == "private"

    records = tg_api.sent_to(CHAT)
    assert [r.text for r in records] == ["<b>Bản tin</b> thời tiết", "Gió cấp 6"]
    assert records[0].reply_markup == {
        "inline_keyboard": [[{"text": "Đăng ký", "callback_data": "sub:yes"}]]
    }
    assert records[0].message_id == 1 and records[1].reply_markup is None
    assert records[0].timestamp <= records[1].timestamp
    assert tg_api.stats.accepted_sends == 2


async def test_telegram_voice_upload_then_file_id_reuse(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    audio = b"OggS" + bytes(range(256)) * 8
    uploaded = await tg_bot.send_voice(CHAT, voice=audio, duration=12, caption="Bản tin 6h")
    assert uploaded.voice is not None
    stored = tg_api.bot_message(CHAT, uploaded.message_id)
    assert stored is not None and stored["voice"]["duration"] == 12
    reused = await tg_bot.send_voice(CHAT, voice=uploaded.voice.file_id)
    assert reused.voice is not None
    assert reused.voice.file_id == uploaded.voice.file_id
    assert reused.voice.file_unique_id == uploaded.voice.file_unique_id

    first, second = (r.file for r in tg_api.sent_to(CHAT))
    assert first is not None and second is not None
    assert (first.kind, first.source, first.size) == ("voice", "upload", len(audio))
    assert (second.source, second.file_id) == ("file_id", uploaded.voice.file_id)

    # The uploaded bytes can be fetched back through getFile and the file URL.
    file = await tg_bot.get_file(uploaded.voice.file_id)
    assert bytes(await file.download_as_bytearray()) == audio

    with pytest.raises(telegram.error.BadRequest, match=r"(?i)wrong file identifier"):
        await tg_bot.send_voice(CHAT, voice="not-a-known-file-id")


async def test_telegram_injected_errors_surface_as_ptb_exceptions(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # the future default; avoids PTB's warning
    tg_api.fail_chat(CHAT, status=403)
    with pytest.raises(telegram.error.Forbidden, match="bot was blocked by the user"):
        await tg_bot.send_message(CHAT, "xin chào")
    tg_api.clear_faults(CHAT)

    tg_api.fail_next(1, status=429, retry_after=7)
    with pytest.raises(telegram.error.RetryAfter) as caught:
        await tg_bot.send_message(CHAT, "xin chào")
    assert _seconds(caught.value.retry_after) == 7

    tg_api.fail_next(1, status=502)
    with pytest.raises(telegram.error.NetworkError):
        await tg_bot.send_message(CHAT, "xin chào")

    sent = await tg_bot.send_message(CHAT, "xin chào")  # faults are used up
    assert sent.text == "xin chào"
    statuses = [c.http_status for c in tg_api.calls_to("sendMessage")]
    assert statuses == [403, 429, 502, 200]
    assert tg_api.stats.responses_429 == 1
    assert [r.text for r in tg_api.sent_to(CHAT)] == ["xin chào"]


async def test_telegram_validates_like_the_real_api(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    with pytest.raises(telegram.error.BadRequest, match="Message is too long"):
        await tg_bot.send_message(CHAT, "x" * 4097)
    with pytest.raises(
        telegram.error.BadRequest, match=r'(?i)unsupported start tag "br" at byte offset 5'
    ):
        await tg_bot.send_message(CHAT, "một<br>hai", parse_mode="HTML")
    assert tg_api.sent == []

    strict = FakeTelegramAPI(require_known_chats=True)
    async with strict:
        bot = telegram.Bot(strict.token, base_url=strict.bot_base_url)
        async with bot:
            with pytest.raises(telegram.error.BadRequest, match="Chat not found"):
                await bot.send_message(CHAT, "ai đó?")
            strict.user_sends(CHAT, "/start")
            assert (await bot.send_message(CHAT, "chào bạn")).message_id == 2


async def test_telegram_get_updates_message_then_callback_query(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    tg_api.user_sends(CHAT, "/start ngư dân", first_name="Văn Ba")
    updates = await tg_bot.get_updates(timeout=1)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start ngư dân"
    assert message.from_user is not None and message.from_user.first_name == "Văn Ba"
    assert message.parse_entities() != {}
    assert next(iter(message.parse_entities().values())) == "/start"

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Có", callback_data="sub:yes")]])
    offer = await tg_bot.send_message(CHAT, "Nhận bản tin?", reply_markup=keyboard)
    tg_api.user_presses(CHAT, "sub:yes")
    updates = await tg_bot.get_updates(offset=updates[0].update_id + 1, timeout=1)
    assert len(updates) == 1
    query = updates[0].callback_query
    assert query is not None and query.data == "sub:yes"
    assert query.message is not None and query.message.message_id == offer.message_id

    assert await tg_bot.answer_callback_query(query.id, text="Đã đăng ký")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
        await tg_bot.answer_callback_query(query.id)
    answers = [r for r in tg_api.sent if r.method == "answerCallbackQuery"]
    assert [a.text for a in answers] == ["Đã đăng ký"]

    # Confirming with the offset empties the queue.
    assert await tg_bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()
    assert tg_api.pending_update_count == 0


async def test_telegram_long_poll_wakes_on_new_update_and_conflicts(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(tg_bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    tg_api.user_sends(CHAT, "Có bão không?")
    updates = await poll
    assert time.monotonic() - started < 2
    assert updates[0].message is not None and updates[0].message.text == "Có bão không?"

    # A second poller cuts the first one off, like two running instances of the bot.
    first = asyncio.create_task(tg_bot.get_updates(offset=updates[0].update_id + 1, timeout=5))
    await asyncio.sleep(0.1)
    async with telegram.Bot(tg_api.token, base_url=tg_api.bot_base_url) as other_instance:
        second = asyncio.create_task(other_instance.get_updates(timeout=0))
        with pytest.raises(telegram.error.Conflict, match="terminated by other getUpdates"):
            await first
        assert await second == ()


async def test_telegram_webhook_posts_updates_with_secret(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    receiver = Receiver(expected_secret="hai-dang_S3cret", header="X-Telegram-Bot-Api-Secret-Token")
    runner = await _start_receiver(receiver)
    try:
        assert await tg_bot.set_webhook(receiver.url, secret_token="hai-dang_S3cret")
        info = await tg_bot.get_webhook_info()
        assert info.url == receiver.url

        update = tg_api.user_sends(CHAT, "/start")
        deliveries = await tg_api.wait_deliveries(1)
        assert deliveries[0].status == 200
        assert receiver.bodies == [update]
        assert receiver.secrets_seen == ["hai-dang_S3cret"]
        parsed = Update.de_json(receiver.bodies[0], tg_bot)
        assert parsed.message is not None and parsed.message.text == "/start"

        with pytest.raises(telegram.error.Conflict, match="webhook is active"):
            await tg_bot.get_updates()

        # A receiver that rejects the secret answers 403, and that is what gets recorded.
        receiver.expected_secret = "some-other-secret"
        tg_api.user_sends(CHAT, "lần hai")
        deliveries = await tg_api.wait_deliveries(2)
        assert deliveries[1].status == 403
        info = await tg_bot.get_webhook_info()
        assert info.last_error_message is not None and "403" in info.last_error_message

        assert await tg_bot.delete_webhook()
        tg_api.user_sends(CHAT, "quay lại polling")
        updates = await tg_bot.get_updates(timeout=1)
        assert [u.message.text for u in updates if u.message] == ["quay lại polling"]
    finally:
        await runner.cleanup()


async def test_telegram_webhook_uses_max_connections_and_keeps_a_chats_order(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    """Like Telegram, the fake POSTs over up to max_connections at once, but a chat's next
    update only after its previous one was answered."""
    open_now = 0
    most_open = 0
    seen: list[tuple[int, str]] = []

    async def handle(request: web.Request) -> web.Response:
        nonlocal open_now, most_open
        body = await request.json()
        open_now += 1
        most_open = max(most_open, open_now)
        await asyncio.sleep(0.05)  # a slow receiver: POSTs overlap if the fake lets them
        seen.append((body["message"]["chat"]["id"], body["message"]["text"]))
        open_now -= 1
        return web.Response(status=200)

    runner, url = await _serve_hook(handle)
    try:
        assert await tg_bot.set_webhook(url, max_connections=5)
        assert (await tg_bot.get_webhook_info()).max_connections == 5
        for n in range(3):
            for chat in range(1, 11):
                tg_api.register_chat(1000 + chat)
                tg_api.user_sends(1000 + chat, f"tin {n}")
        await tg_api.wait_deliveries(30)
        assert most_open == 5
        for chat in range(1, 11):
            assert [t for c, t in seen if c == 1000 + chat] == ["tin 0", "tin 1", "tin 2"]
        with pytest.raises(telegram.error.BadRequest, match="max_connections"):
            await tg_bot.set_webhook(url, max_connections=101)
        assert await tg_bot.set_webhook(url)
        assert (await tg_bot.get_webhook_info()).max_connections == 40
    finally:
        await runner.cleanup()


async def test_telegram_commands_and_edits(tg_api: FakeTelegramAPI, tg_bot: telegram.Bot) -> None:
    commands = [BotCommand("start", "Bắt đầu"), BotCommand("dangky", "Đăng ký nhận bản tin")]
    assert await tg_bot.set_my_commands(commands)
    assert tuple(await tg_bot.get_my_commands()) == tuple(commands)
    assert [c["command"] for c in tg_api.commands()] == ["start", "dangky"]
    with pytest.raises(telegram.error.BadRequest, match="Bot_command_invalid"):
        await tg_bot.set_my_commands([BotCommand("Đăng-ký", "bad")])
    assert await tg_bot.delete_my_commands()
    assert await tg_bot.get_my_commands() == ()

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Nghe", callback_data="play:1")]])
    sent = await tg_bot.send_message(CHAT, "Bản tin 1", reply_markup=keyboard)
    edited = await tg_bot.edit_message_text("Bản tin 1 (đã cập nhật)", CHAT, sent.message_id)
    assert isinstance(edited, telegram.Message) and edited.edit_date is not None
    with pytest.raises(telegram.error.BadRequest, match="not modified"):
        await tg_bot.edit_message_text("Bản tin 1 (đã cập nhật)", CHAT, sent.message_id)
    await tg_bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=keyboard)
    stored = tg_api.bot_message(CHAT, sent.message_id)
    assert stored is not None and stored["text"] == "Bản tin 1 (đã cập nhật)"
    assert "reply_markup" in stored
    with pytest.raises(telegram.error.BadRequest, match="Message to edit not found"):
        await tg_bot.edit_message_text("?", CHAT, 999)


async def test_telegram_rate_limit_enforcement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    async with FakeTelegramAPI(rate_limit_per_second=3, chat_rate_limit=2) as api:
        bot = telegram.Bot(api.token, base_url=api.bot_base_url)
        async with bot:
            results = await asyncio.gather(
                *(bot.send_message(CHAT + i, f"tin {i}") for i in range(5)),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, telegram.error.RetryAfter)]
            assert len(errors) == 2 and all(_seconds(e.retry_after) >= 1 for e in errors)
            assert api.stats.accepted_sends == 3
            assert api.stats.responses_429 == api.stats.rate_limited == 2

            await asyncio.sleep(1.05)
            await bot.send_message(CHAT, "một")
            await bot.send_message(CHAT, "hai")
            with pytest.raises(telegram.error.RetryAfter):
                await bot.send_message(CHAT, "ba")  # per-chat window: 2 per second
            assert api.stats.accepted_sends == 5

            # Edits count against the limits like sends; callback answers do not.
            await asyncio.sleep(1.05)
            message = await bot.send_message(CHAT + 9, "bốn")
            await bot.edit_message_text("bốn (sửa)", CHAT + 9, message.message_id)
            with pytest.raises(telegram.error.RetryAfter):
                await bot.edit_message_reply_markup(CHAT + 9, message.message_id)
            assert api.stats.accepted_limited == 7 and api.stats.accepted_sends == 6


async def test_telegram_latency_and_unknown_method(tg_api: FakeTelegramAPI) -> None:
    tg_api.set_latency(0.2)
    url = f"{tg_api.bot_base_url}{tg_api.token}"
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        response = await client.post(f"{url}/getMe")
        assert time.monotonic() - started >= 0.2
        assert response.json()["result"]["username"] == "haidang_test_bot"
        tg_api.set_latency(None)

        response = await client.post(f"{url}/sendCarrierPigeon", json={"chat_id": CHAT})
        assert response.status_code == 404
        assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}

        # JSON bodies are accepted as well as form and multipart ones.
        response = await client.post(f"{url}/sendMessage", json={"chat_id": CHAT, "text": "json"})
        assert response.json()["result"]["text"] == "json"

        tg_api.fail_next(1, status=500, methods={ALL_METHODS})
        response = await client.post(f"{url}/getMe")
        assert response.status_code == 500
        assert response.json()["description"] == "Internal Server Error"

    with pytest.raises(telegram.error.InvalidToken):
        async with telegram.Bot("1:wrong", base_url=tg_api.bot_base_url):
            pass

    sample = lognormal_latency(0.05, seed=7)
    samples = [sample() for _ in range(2001)]
    assert statistics.median(samples) == pytest.approx(0.05, rel=0.1)


async def test_telegram_user_helpers_parse_with_ptb(
    tg_api: FakeTelegramAPI, tg_bot: telegram.Bot
) -> None:
    group = -1_001_234_567_890
    raw = [
        tg_api.user_sends_photo(CHAT, caption="Thuyền bị hỏng"),
        tg_api.user_sends_location(CHAT, 16.047, 108.206),
        tg_api.user_sends_sticker(CHAT),
        tg_api.user_sends_voice(CHAT, duration=4),
        tg_api.user_sends_contact(CHAT, "+84901234567"),
        tg_api.user_sends_in_group(group, CHAT, "/start@haidang_test_bot"),
        tg_api.user_blocks_bot(CHAT),
    ]
    updates = await tg_bot.get_updates(timeout=1)
    assert [u.to_dict() for u in updates] == [Update.de_json(r, tg_bot).to_dict() for r in raw]
    photo, location, sticker, voice, contact, in_group, blocked = updates
    assert photo.message and photo.message.photo[-1].width == 1280
    assert photo.message.caption == "Thuyền bị hỏng"
    assert location.message and location.message.location
    assert location.message.location.latitude == pytest.approx(16.047)
    assert sticker.message and sticker.message.sticker and sticker.message.sticker.emoji == "👍"
    assert voice.message and voice.message.voice
    assert contact.message and contact.message.contact
    assert contact.message.contact.phone_number == "+84901234567"
    assert in_group.message and in_group.message.chat.type == "supergroup"
    assert in_group.effective_user and in_group.effective_user.id == CHAT
    assert blocked.my_chat_member and blocked.my_chat_member.new_chat_member.status == "kicked"

    voice_file = await tg_bot.get_file(voice.message.voice.file_id)
    assert (await voice_file.download_as_bytearray())[:4] == b"OggS"
    with pytest.raises(telegram.error.Forbidden):
        await tg_bot.send_message(CHAT, "còn đó không?")


def test_telegram_runs_in_a_thread_for_sync_tests() -> None:
    with FakeTelegramAPI().running_in_thread() as api, httpx.Client() as client:
        url = f"{api.bot_base_url}{api.token}"
        api.user_sends(CHAT, "/start")
        updates = client.post(f"{url}/getUpdates", data={"timeout": "1"}).json()["result"]
        assert updates[0]["message"]["entities"] == [
            {"offset": 0, "length": 6, "type": "bot_command"}
        ]
        reply = client.post(f"{url}/sendMessage", data={"chat_id": str(CHAT), "text": "Chào"})
        assert reply.json()["result"]["message_id"] == 2
        records = api.wait_sent_blocking(1, chat_id=CHAT)
        assert records[0].text == "Chào"


# ------------------------------------------------------------------------- Zalo


async def test_zalo_get_me_and_send_message(zalo_api: FakeZaloAPI, zbot: zalo_bot.Bot) -> None:
    me = await zbot.get_me()
    assert me.id == "1459232241454765289"
    assert me.account_name == "bot.HaiDangTest" and me.account_type == "BASIC"

    zalo_api.user_sends(ZALO_CHAT, "Xin chào")
    sent = await zbot.send_message(ZALO_CHAT, "Chào bác, bản tin sẽ gửi lúc 6h")
    assert isinstance(sent, zalo_bot.Message)
    assert len(sent.message_id) == 20
    assert abs(sent.date.timestamp() - time.time()) < 5  # date arrives in milliseconds

    record = zalo_api.sent_to(ZALO_CHAT)[0]
    assert (record.method, record.text, record.message_id) == (
        "sendMessage",
        "Chào bác, bản tin sẽ gửi lúc 6h",
        sent.message_id,
    )
    assert await zbot.send_chat_action(ZALO_CHAT, "typing") is None  # {"ok": true}, no result
    assert [r.method for r in zalo_api.sent] == ["sendMessage", "sendChatAction"]


async def test_zalo_ok_false_answers_come_back_as_none(
    zalo_api: FakeZaloAPI, zbot: zalo_bot.Bot
) -> None:
    # Nobody with this id ever wrote to the bot: HTTP 200, ok:false, swallowed by the SDK.
    assert await zbot.send_message("0000000000aaaaaaaaaa", "alo") is None
    call = zalo_api.calls_to("sendMessage")[0]
    assert (call.http_status, call.ok, call.error_code) == (200, False, 400)

    zalo_api.user_sends(ZALO_CHAT, "hi")
    assert await zbot.send_message(ZALO_CHAT, "x" * 2001) is None
    assert zalo_api.calls_to("sendMessage")[1].description is not None
    assert zalo_api.sent == [] and zalo_api.stats.accepted_sends == 0

    strict = FakeZaloAPI(errors_as_http_200=False)
    async with strict, zalo_bot.Bot(strict.token, base_url=strict.base_url) as bot:
        with pytest.raises(zalo_bot.error.BadRequest):
            await bot.send_message("0000000000aaaaaaaaaa", "alo")


async def test_zalo_http_level_faults(zalo_api: FakeZaloAPI, zbot: zalo_bot.Bot) -> None:
    zalo_api.user_sends(ZALO_CHAT, "hi")
    zalo_api.fail_chat(ZALO_CHAT, status=403, times=1)
    with pytest.raises(zalo_bot.error.Forbidden):
        await zbot.send_message(ZALO_CHAT, "alo")
    zalo_api.fail_next(1, status=429, retry_after=3)
    with pytest.raises(zalo_bot.error.RetryAfter) as caught:
        await zbot.send_message(ZALO_CHAT, "alo")
    assert caught.value.retry_after in (3, dtm.timedelta(seconds=3))
    zalo_api.fail_next(1, status=503)
    with pytest.raises(zalo_bot.error.NetworkError, match="503"):
        await zbot.send_message(ZALO_CHAT, "alo")
    zalo_api.fail_next(1, status=403, http_200=True)
    assert await zbot.send_message(ZALO_CHAT, "alo") is None
    assert (await zbot.send_message(ZALO_CHAT, "alo")) is not None
    assert [c.http_status for c in zalo_api.calls_to("sendMessage")] == [403, 429, 503, 200, 200]


async def test_zalo_get_update_one_at_a_time_and_empty_poll(
    zalo_api: FakeZaloAPI, zbot: zalo_bot.Bot
) -> None:
    zalo_api.user_sends(ZALO_CHAT, "Xin chào", display_name="Nguyen Van A")
    zalo_api.user_sends_photo(ZALO_CHAT, caption="Lưới rách")
    first = await zbot.get_update(timeout=1)
    assert first is not None and first.message is not None
    assert first.message.text == "Xin chào"
    assert first.message.chat.id == ZALO_CHAT and first.message.chat.type == "PRIVATE"
    assert first.effective_user is not None
    assert first.effective_user.display_name == "Nguyen Van A"
    assert first.api_kwargs["event_name"] == "message.text.received"
    second = await zbot.get_update(timeout=1)
    assert second is not None and second.message is not None
    assert second.message.photo_url and second.api_kwargs["event_name"] == "message.image.received"

    started = time.monotonic()
    assert await zbot.get_update(timeout=1) is None  # ok:false 408 after the poll timeout
    assert 0.9 <= time.monotonic() - started < 3
    assert zalo_api.calls_to("getUpdates")[-1].error_code == 408

    poll = asyncio.create_task(zbot.get_update(timeout=5))
    await asyncio.sleep(0.1)
    zalo_api.user_sends_sticker(ZALO_CHAT)
    sticker = await poll
    assert sticker is not None and sticker.message is not None and sticker.message.sticker


async def test_zalo_webhook_with_secret_header(zalo_api: FakeZaloAPI, zbot: zalo_bot.Bot) -> None:
    receiver = Receiver(expected_secret="haidang-secret-1", header="X-Bot-Api-Secret-Token")
    runner = await _start_receiver(receiver)
    url = f"{zalo_api.base_url}/bot{zalo_api.token}"
    try:
        async with httpx.AsyncClient() as client:
            short = await client.post(
                f"{url}/setWebhook", json={"url": receiver.url, "secret_token": "short"}
            )
            assert short.json()["ok"] is False
            answer = await client.post(
                f"{url}/setWebhook", json={"url": receiver.url, "secret_token": "haidang-secret-1"}
            )
            assert answer.json()["result"]["url"] == receiver.url
            info = await client.post(f"{url}/getWebhookInfo", json={})
            assert info.json()["result"]["url"] == receiver.url

        update = zalo_api.user_sends(ZALO_CHAT, "/dangky")
        deliveries = await zalo_api.wait_deliveries(1)
        assert deliveries[0].status == 200
        assert receiver.bodies == [{"ok": True, "result": update}]
        assert receiver.secrets_seen == ["haidang-secret-1"]
        assert await zbot.get_update(timeout=1) is None  # polling is refused meanwhile

        receiver.expected_secret = "another-secret"
        zalo_api.user_sends(ZALO_CHAT, "lần hai")
        assert (await zalo_api.wait_deliveries(2))[1].status == 403
    finally:
        await runner.cleanup()


def test_zalo_runs_in_a_thread_with_the_sync_sdk_helpers() -> None:
    with FakeZaloAPI().running_in_thread() as api:
        # The SDK's webhook helpers call asyncio.run, so they only work outside a loop.
        bot = zalo_bot.Bot(api.token, base_url=api.base_url)
        assert bot.set_webhook("http://127.0.0.1:9/hook", "thread-secret") is True
        assert api.webhook_url == "http://127.0.0.1:9/hook"
        api.user_sends(ZALO_CHAT, "không ai nghe")  # the POST fails: nothing listens on :9
        delivery = api.wait_deliveries_blocking(1)[0]
        assert delivery.status is None and delivery.error is not None
