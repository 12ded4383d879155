"""Webhooks refuse what is no update (400) or too large (413) and keep serving: never a 5xx."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bot.harness import running_service, wait_text
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

DEEP = "[" * 1000 + "]" * 1000
BAD_BODIES: list[tuple[str, bytes]] = [
    ("a string", b'"hello"'),
    ("a list", b"[1, 2]"),
    ("a number", b"42"),
    ("not JSON", b"{update_id: 1"),
    ("NaN", b'{"update_id": NaN}'),
    ("Infinity", b'{"update_id": 1, "x": -Infinity}'),
    ("deep nesting", ('{"message": ' + DEEP + "}").encode()),
    ("deeper than the parser", ("[" * 100_000 + "]" * 100_000).encode()),
    ("bad UTF-8", b'{"update_id": "\xff\xfe"}'),
    ("no update_id", b'{"message": {"text": "hi"}}'),
    ("message null", b'{"message": null}'),
    ("wrong types", b'{"update_id": "x", "message": {"chat": 5, "date": "z"}}'),
]
TOO_LARGE = b'{"update_id": 1, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'


async def _post_all(url: str, secret: dict[str, str]) -> list[tuple[str, int]]:
    answers = []
    async with httpx.AsyncClient(timeout=20) as client:
        for name, body in BAD_BODIES:
            reply = await client.post(
                url, content=body, headers={**secret, "content-type": "application/json"}
            )
            answers.append((name, reply.status_code))
        large = await client.post(url, content=TOO_LARGE, headers=secret)
        answers.append(("2 MB", large.status_code))

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(40):
                yield b"x" * 65536

        streamed = await client.post(url, content=chunks(), headers=secret)
        answers.append(("2.5 MB streamed", streamed.status_code))
    return answers


def _no_server_errors(answers: list[tuple[str, int]]) -> None:
    assert all(status < 500 for _, status in answers), answers
    sizes = dict(answers)
    assert sizes["2 MB"] == 413 and sizes["2.5 MB streamed"] == 413
    assert all(status in (200, 400) for name, status in answers if "MB" not in name), answers


async def test_telegram_webhook_refuses_bad_bodies(
    seeded: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeTelegramAPI() as api, running_service(
        seeded, tmp_path, webhook=True,
        telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
    ) as service:  # fmt: skip
        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/telegram"
        with caplog.at_level(logging.WARNING):
            answers = await _post_all(
                url, {"X-Telegram-Bot-Api-Secret-Token": "telegram-secret-123"}
            )
        _no_server_errors(answers)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        api.user_sends(7001, "/start c11914")  # and the bot still answers
        await wait_text(api, 7001, "đã đăng ký")


async def test_zalo_webhook_refuses_bad_bodies(
    seeded: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeZaloAPI() as api,
        running_service(
            seeded, tmp_path, webhook=True, zalo_bot_token=api.token, zalo_api_base_url=api.base_url
        ) as service,
    ):
        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/zalo"
        with caplog.at_level(logging.WARNING):
            answers = await _post_all(url, {"X-Bot-Api-Secret-Token": "zalo-secret-123"})
        _no_server_errors(answers)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        api.user_sends("zl-77", "/start c11914")
        await wait_text(api, "zl-77", "đã đăng ký")
