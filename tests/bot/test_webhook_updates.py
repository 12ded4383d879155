"""A malformed update costs one warning line and a 200, never a traceback or a redelivery.

Unit level: the front ends' webhook handlers called with a Starlette request, no server,
no Bot API (nothing here reaches the network: a dropped update is never answered).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from bot.answers import Answers, Owed
from bot.conversation import Conversation, Inbound, Reply
from bot.telegram import TelegramFrontEnd
from bot.webhooks import NotAnUpdate, checked_id, checked_int, checked_text, one_line
from bot.zalo import ZaloFrontEnd
from broadcasts.outbox import Outbox
from broadcasts.subscribers import ensure_bot
from db.models import PendingEvent, Platform
from tests.conftest import UNHANDLED, Database

TELEGRAM_SECRET = "telegram-secret-123"
ZALO_SECRET = "zalo-secret-123"


class _Stub:
    """A conversation core that records what reaches it and answers nothing."""

    voices = None

    def __init__(self) -> None:
        self.events: list[Inbound] = []

    async def handle(self, event: Inbound, keep: object = None) -> list[Reply]:
        self.events.append(event)
        return []


def _answers(core: _Stub, bot_id: int, database: Database | None) -> Answers:
    # Without a database nothing may be kept: the updates those tests send are dropped.
    sessions = database.sessions if database else cast(async_sessionmaker[AsyncSession], None)
    return Answers(sessions, cast(Conversation, core), Outbox(30), bot_id=bot_id, holder="test")


def _request(path: str, header: str, secret: str, body: bytes) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [
            (header.lower().encode(), secret.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _telegram(core: _Stub, database: Database | None = None, bot_id: int = 1) -> TelegramFrontEnd:
    return TelegramFrontEnd(
        token="123456:fake", api_base_url="http://127.0.0.1:9",
        answers=_answers(core, bot_id, database), bot_id=bot_id,
        webhook_url="http://127.0.0.1:9/webhooks/telegram", webhook_secret=TELEGRAM_SECRET,
    )  # fmt: skip


def _zalo(core: _Stub) -> ZaloFrontEnd:
    return ZaloFrontEnd(
        token="123:fake", api_base_url="http://127.0.0.1:9",
        answers=_answers(core, 2, None), bot_id=2,
        webhook_url="http://127.0.0.1:9/webhooks/zalo", webhook_secret=ZALO_SECRET,
    )  # fmt: skip


def _one_warning_line(caplog: pytest.LogCaptureFixture, fragment: str) -> logging.LogRecord:
    """Exactly one record was logged, a WARNING of one line with no traceback."""
    records = caplog.records
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None and record.stack_info is None
    line = record.getMessage()
    assert "\n" not in line and fragment in line, line
    assert "Traceback" not in caplog.text
    line.encode("utf-8")  # writable by any log handler
    return record


TELEGRAM_MESSAGE = {"message_id": 5, "date": 1_760_000_000, "chat": {"id": 42, "type": "private"}}


def _telegram_text(value: object, **fields: object) -> dict[str, Any]:
    return {"update_id": 1, "message": {**TELEGRAM_MESSAGE, "text": value, **fields}}


TELEGRAM_DROPPED = [
    # PTB's de_json fails: the message is no object, the update_id is missing.
    ("message is a string", {"update_id": 1, "message": "hello"}, "AttributeError"),
    ("message is a list", {"update_id": 1, "message": [1, 2]}, "TypeError"),
    ("no update_id", {"message": {**TELEGRAM_MESSAGE, "text": "hi"}}, "TypeError"),
    # de_json builds it; the checks refuse what the core would fail on.
    ("text is an object", _telegram_text({}), "message.text is dict"),
    ("chat id is text", _telegram_text("hi", chat={"id": "42", "type": "private"}), "chat.id"),
    ("no chat", {"update_id": 1, "message": {"message_id": 5, "date": 0, "text": "hi"}}, "chat"),
    ("huge update_id", {**_telegram_text("hi"), "update_id": 2**64}, "64-bit"),
    ("lone surrogate", _telegram_text("\ud800"), "no valid Unicode"),
]


@pytest.mark.parametrize(("name", "body", "fragment"), TELEGRAM_DROPPED, ids=lambda v: v)
async def test_telegram_malformed_update_is_one_warning_and_200(
    caplog: pytest.LogCaptureFixture, name: str, body: dict[str, Any], fragment: str
) -> None:
    core = _Stub()
    front = _telegram(core)
    raw = json.dumps(body).encode()  # ensure_ascii: a lone surrogate travels as "\ud800"
    request = _request(
        "/webhooks/telegram", "X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET, raw
    )
    with caplog.at_level(logging.DEBUG):
        answer = await front.webhook(request)
    assert answer.status_code == 200  # Telegram redelivers anything else, forever
    record = _one_warning_line(caplog, fragment)
    assert record.getMessage().startswith("telegram: webhook update dropped: ")
    assert not front._answers._turns and not core.events  # dropped, not kept


async def test_telegram_well_formed_update_is_kept_before_the_200_then_turned(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with database.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.telegram)).id
    core = _Stub()
    front = _telegram(core, database, bot_id)
    body = {"update_id": 1, "message": {**TELEGRAM_MESSAGE, "text": "/start"}}
    request = _request(
        "/webhooks/telegram", "X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET,
        json.dumps(body).encode(),
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        answer = await front.webhook(request)
    assert answer.status_code == 200
    async with database.sessions() as session:  # kept, from before the 200
        (kept,) = (await session.scalars(select(PendingEvent))).all()
    assert kept.update_key == "1" and kept.event["event"]["text"] == "/start"
    await asyncio.gather(*front._answers._turns)
    assert [e.text for e in core.events] == ["/start"]
    assert not [r for r in caplog.records if r.name.startswith("bot")]


ZALO_MESSAGE = {"message_id": "abc", "date": 1_760_000_000_000, "chat": {"id": "zc-1"}}
ZALO_DROPPED = [
    # The SDK's de_json fails: no message_id, a date that is no number, a message list.
    ("no message_id", {"message": {"chat": {"id": "zc-1"}, "date": 0}}, "KeyError"),
    ("date is text", {"message": {**ZALO_MESSAGE, "date": "hôm qua"}}, "TypeError"),
    ("message is a list", {"message": [1]}, "Error"),
    ("result is a string", {"ok": True, "result": "x"}, "Error"),
    # The SDK builds it; the checks refuse what the core would fail on.
    ("text is a number", {"message": {**ZALO_MESSAGE, "text": 7}}, "message.text"),
    ("chat id is a list", {"message": {**ZALO_MESSAGE, "chat": {"id": ["zc-1"]}}}, "chat.id"),
    ("chat id too long", {"message": {**ZALO_MESSAGE, "chat": {"id": "z" * 65}}}, "longer"),
    ("NUL in the text", {"message": {**ZALO_MESSAGE, "text": "a\u0000b"}}, "NUL"),
]


@pytest.mark.parametrize(("name", "body", "fragment"), ZALO_DROPPED, ids=lambda v: v)
async def test_zalo_malformed_update_is_one_warning_and_200(
    caplog: pytest.LogCaptureFixture, name: str, body: dict[str, Any], fragment: str
) -> None:
    core = _Stub()
    front = _zalo(core)
    request = _request(
        "/webhooks/zalo", "X-Bot-Api-Secret-Token", ZALO_SECRET, json.dumps(body).encode()
    )
    with caplog.at_level(logging.DEBUG):
        answer = await front.webhook(request)
    assert answer.status_code == 200  # Zalo redelivers anything else
    record = _one_warning_line(caplog, fragment)
    assert record.getMessage().startswith("zalo: webhook update dropped: ")
    assert not front._answers._turns and not core.events  # nothing kept or turned


async def test_zalo_polled_malformed_update_is_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = _Stub()
    front = _zalo(core)
    raw = {"message": {**ZALO_MESSAGE, "text": {"x": 1}}}  # as getUpdates gave it
    with caplog.at_level(logging.DEBUG):
        assert front._read(raw) is None
    _one_warning_line(caplog, "zalo: update dropped: NotAnUpdate: message.text is dict")
    assert not core.events


async def test_zalo_failure_while_answering_is_one_warning_not_a_task_exception(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer is sent in a task nobody awaits: what escapes it must be caught."""
    front = _zalo(_Stub())

    async def broken_send(*args: object, **kwargs: object) -> None:
        raise RuntimeError("transport\nbroke")  # not a ZaloError: _say does not catch it

    monkeypatch.setattr(front.bot, "send_message", broken_send)
    with caplog.at_level(logging.DEBUG):
        reason = await front._answers.give(Owed("zc-1", (Reply("xin chào"),)))
        gc.collect()  # asyncio would log "Task exception was never retrieved" here
    # The crash is logged (with its traceback: a bug) and the answer counted as failed,
    # its reason in one line, to be kept for operators.
    assert reason == "error: RuntimeError: transport broke"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"an answer to a chat could not be sent: {reason}"]
    assert front._answers.failed == 1 and front._answers._outcomes[0].reason == reason
    assert not UNHANDLED.records


async def test_telegram_polled_malformed_update_is_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = _Stub()
    front = _telegram(core)
    batch = [{"update_id": 1, "message": {**TELEGRAM_MESSAGE, "text": ["hi"]}}]
    with caplog.at_level(logging.DEBUG):
        arrivals, offset = front._read_batch(batch, None)
    _one_warning_line(caplog, "telegram: update dropped: NotAnUpdate: message.text is list")
    assert arrivals == [] and offset == 2  # confirmed with the next poll, never fetched again


def test_one_line_folds_newlines_and_escapes_surrogates() -> None:
    line = one_line(KeyError("a\nb\r\n\ud800"))
    assert "\n" not in line and "\r" not in line
    assert line == "KeyError: 'a\\nb\\r\\n\\ud800'"  # KeyError quotes (repr) its key
    assert one_line(ValueError("x\ny" + "z" * 500)).startswith("ValueError: x y")
    assert len(one_line(ValueError("z" * 500))) < 230
    assert one_line(ValueError("lone \ud800")) == "ValueError: lone \\ud800"
    assert one_line(RecursionError()) == "RecursionError"


def test_checks_refuse_what_no_platform_sends() -> None:
    assert checked_int(-(2**62), "x") == -(2**62)
    assert checked_id(42, "x", max_length=64) == "42" and checked_id("zc", "x", max_length=4)
    for value in (True, 1.0, "1", None, 2**63):
        with pytest.raises(NotAnUpdate):
            checked_int(value, "x")
    for junk in ("\ud800", "a\x00", 5, None, ["a"]):
        with pytest.raises(NotAnUpdate):
            checked_text(junk, "x")
    for bad_id in ("", "   ", "z" * 65, False):
        with pytest.raises(NotAnUpdate):
            checked_id(bad_id, "x", max_length=64)
