"""The aiohttp transport under the real python-telegram-bot `Bot`, against the fake Bot API."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBDeprecationWarning

from bot.telegram_http import AiohttpRequest
from broadcasts.pacing import Pacer
from tests.fakes.telegram_api import FakeTelegramAPI

CHAT = 424242
TEXT = "Bão số 3 đang vào Vịnh Bắc Bộ: tàu thuyền khẩn trương về nơi trú ẩn."


@asynccontextmanager
async def bot_on(api: FakeTelegramAPI, request: AiohttpRequest) -> AsyncIterator[telegram.Bot]:
    bot = telegram.Bot(
        api.token, base_url=api.bot_base_url, base_file_url=api.file_base_url, request=request
    )
    async with bot:
        yield bot


async def test_text_with_vietnamese_and_a_keyboard_reaches_the_api() -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Đã nhận", callback_data="ack:7")]])
    async with FakeTelegramAPI() as api, bot_on(api, AiohttpRequest()) as bot:
        assert bot.username == "haidang_test_bot"  # getMe went through at initialize
        message = await bot.send_message(CHAT, TEXT, reply_markup=markup)
        [record] = api.sent_to(CHAT)
        assert record.text == TEXT
        assert record.reply_markup == {
            "inline_keyboard": [[{"text": "Đã nhận", "callback_data": "ack:7"}]]
        }
        assert message.message_id == record.message_id
        assert message.text == TEXT


async def test_the_lean_call_returns_the_raw_result_and_raises_ptbs_errors() -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Đã nhận", callback_data="ack:7")]])
    async with FakeTelegramAPI() as api, AiohttpRequest() as request:
        url = f"{api.bot_base_url}{api.token}/sendMessage"
        parameters = {"chat_id": CHAT, "text": TEXT, "reply_markup": markup.to_dict()}
        result = await request.call(url, {**parameters, "allow_paid_broadcast": None})
        [record] = api.sent_to(CHAT)
        assert result["message_id"] == record.message_id
        assert result["text"] == record.text == TEXT
        assert record.reply_markup == markup.to_dict()
        assert "allow_paid_broadcast" not in record.params  # None values are left out
        api.fail_next(status=429, retry_after=3)
        with pytest.raises(RetryAfter):
            await request.call(url, parameters)
        api.fail_chat(CHAT, status=403)
        with pytest.raises(Forbidden):
            await request.call(url, parameters)


async def test_the_pacer_learns_when_the_request_was_written() -> None:
    pacer = Pacer(100)
    async with FakeTelegramAPI() as api, AiohttpRequest() as request:
        url = f"{api.bot_base_url}{api.token}/sendMessage"

        async def send() -> tuple[float, float]:
            slot = await pacer.wait_turn()
            granted = slot.at
            pacer.sending(slot)
            await asyncio.sleep(0.05)  # as if the task had waited for a connection
            await request.call(url, {"chat_id": CHAT, "text": TEXT})
            return granted, slot.at

        granted, counted = await asyncio.create_task(send())
    assert counted - granted >= 0.05  # counted from when the request left, not the grant


async def test_uploads_from_bytes_and_from_a_file_then_reuse_and_download(
    tmp_path: Path,
) -> None:
    voice = b"OggS\x00\x02" + bytes(range(256)) * 40  # binary, with every byte value
    path = tmp_path / "ban-tin.mp3"
    path.write_bytes(b"ID3\x04" + bytes(reversed(range(256))) * 30)
    async with FakeTelegramAPI() as api, bot_on(api, AiohttpRequest()) as bot:
        sent = await bot.send_voice(CHAT, voice, caption="Bản tin chiều")
        assert sent.voice is not None
        assert api.file_bytes(sent.voice.file_id) == voice
        with path.open("rb") as handle:
            audio = await bot.send_audio(CHAT, handle, title="Bản tin", filename="ban-tin.mp3")
        assert audio.audio is not None
        assert api.file_bytes(audio.audio.file_id) == path.read_bytes()
        again = await bot.send_voice(CHAT + 1, sent.voice.file_id)  # no upload this time
        assert again.voice is not None and again.voice.file_id == sent.voice.file_id
        kinds = [r.file.source for r in api.sent if r.file is not None]
        assert kinds == ["upload", "upload", "file_id"]
        downloaded = await (await bot.get_file(sent.voice.file_id)).download_as_bytearray()
        assert bytes(downloaded) == voice  # a GET through the same transport


async def test_api_errors_become_ptbs_exceptions() -> None:
    async with FakeTelegramAPI() as api, bot_on(api, AiohttpRequest()) as bot:
        api.fail_next(status=429, retry_after=7)
        with pytest.raises(RetryAfter) as too_many:
            await bot.send_message(CHAT, TEXT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PTBDeprecationWarning)
            wait = too_many.value.retry_after
        seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
        assert seconds == 7
        api.user_blocks_bot(CHAT)
        with pytest.raises(Forbidden, match="blocked"):
            await bot.send_message(CHAT, TEXT)
        api.fail_next(status=400, description="Bad Request: chat not found")
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(CHAT + 1, TEXT)
        api.fail_next(status=502)
        with pytest.raises(NetworkError):
            await bot.send_message(CHAT + 1, TEXT)
        assert api.sent == []


async def test_a_slow_answer_times_out_as_timed_out() -> None:
    async with FakeTelegramAPI() as api, bot_on(api, AiohttpRequest(read_timeout=0.2)) as bot:
        api.set_latency(2.0)
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, TEXT)
        assert time.monotonic() - started < 1.5
        # A per-call timeout overrides the default one, as with PTB's HTTPXRequest.
        api.set_latency(0.5)
        message = await bot.send_message(CHAT, TEXT, read_timeout=2.0)
        assert message.text == TEXT


async def test_a_refused_connection_is_a_network_error() -> None:
    async with FakeTelegramAPI() as api:
        base, token = api.bot_base_url, api.token
    # The fake is gone: nothing listens on its port any more.
    async with AiohttpRequest(connect_timeout=1.0) as request:
        bot = telegram.Bot(token, base_url=base, request=request)
        with pytest.raises(NetworkError) as error:
            await bot.get_me()
        assert not isinstance(error.value, TimedOut)


async def test_the_pool_bounds_concurrent_requests() -> None:
    arrivals: list[float] = []

    def latency() -> float:  # the fake calls it once per request, as it arrives
        arrivals.append(time.monotonic())
        return 0.3

    async with FakeTelegramAPI() as api, bot_on(api, AiohttpRequest(2)) as bot:
        api.set_latency(latency)
        arrivals.clear()  # getMe
        await asyncio.gather(*(bot.send_message(CHAT + n, TEXT) for n in range(6)))
    arrivals.sort()
    # Two connections: the requests arrive in three waves, 0.3 s apart.
    assert arrivals[1] - arrivals[0] < 0.2
    assert arrivals[2] - arrivals[0] >= 0.25
    assert arrivals[4] - arrivals[0] >= 0.55


async def test_waiting_too_long_for_a_connection_times_out() -> None:
    request = AiohttpRequest(1, pool_timeout=0.1, connect_timeout=0.1)
    async with FakeTelegramAPI() as api, bot_on(api, request) as bot:
        api.set_latency(1.0)
        results = await asyncio.gather(
            bot.send_message(CHAT, TEXT), bot.send_message(CHAT + 1, TEXT),
            return_exceptions=True,
        )  # fmt: skip
    assert sum(isinstance(r, telegram.Message) for r in results) == 1
    assert sum(isinstance(r, TimedOut) for r in results) == 1


async def test_shutdown_closes_everything_without_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with FakeTelegramAPI() as api:
            request = AiohttpRequest()
            async with bot_on(api, request) as bot:
                await bot.send_message(CHAT, TEXT)
            await request.shutdown()  # a second shutdown is harmless
            with pytest.raises(NetworkError, match="not initialized"):
                await bot.send_message(CHAT, TEXT)
            # Initialised again (PTB may restart an application), it works again.
            async with bot_on(api, request) as bot:
                await bot.send_message(CHAT, TEXT)
        del request, bot
        gc.collect()
        await asyncio.sleep(0)
    unclosed = [w for w in caught if "Unclosed" in str(w.message)]
    assert unclosed == []
    assert len(api.sent_to(CHAT)) == 2
