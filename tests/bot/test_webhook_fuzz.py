"""Seeded fuzzing of both webhooks over real HTTP (hardening finding #3).

About 2,000 generated requests a platform, 20 in flight over keep-alive connections, to
the running service with the right secret. Every request must get an HTTP answer below
500, nothing may be logged at ERROR or with a traceback, and the bot must still answer
/start afterwards. The seed is fixed, so a failure reproduces on every run.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bot.harness import running_service, wait_text
from tests.bot.webhook_fuzz import CHAT_IDS, Case, cases, telegram_update, zalo_update
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

SEED = 20261205
REQUESTS = 2000
IN_FLIGHT = 20


async def _post_all(url: str, headers: dict[str, str], requests: list[Case]) -> list[str]:
    """POST every case, IN_FLIGHT at a time; each outcome as 'status' or 'dropped: why'.

    The client keeps its connections alive, so one that a request broke shows up as
    the next request on it failing (the way "dropped connections" were found).
    """
    outcomes: list[str] = [""] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            case = requests[index]
            sent = dict(headers)
            if case.content_type is not None:
                sent["content-type"] = case.content_type
            try:
                answer = await client.post(url, content=case.body, headers=sent)
            except httpx.HTTPError as exc:  # the connection closed or reset with no answer
                outcomes[index] = f"dropped: {type(exc).__name__}"
            else:
                outcomes[index] = str(answer.status_code)
                if answer.headers.get("connection", "").lower() == "close":
                    # uvicorn closes after a 500 (or an unreadable request): the next request
                    # a client sends on that pooled connection is dropped. httpx checks a
                    # connection before reusing it, so it would hide the drop; count it here.
                    outcomes[index] += " close"

    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(IN_FLIGHT)))
    return outcomes


def _check(
    requests: list[Case], outcomes: list[str], records: list[logging.LogRecord], answered: int
) -> None:
    bad = [
        f"{case.label}: {outcome}"
        for case, outcome in zip(requests, outcomes, strict=True)
        if not outcome.isdigit() or int(outcome) >= 500
    ]
    tally = Counter(outcomes)
    assert not bad, f"{len(bad)} requests got a 5xx or no answer ({tally}), e.g. {bad[:10]}"
    assert set(tally) <= {"200", "400", "413"}, tally
    # Every well-formed update is taken (the generator is seeded: the same ones each run).
    valid = [o for c, o in zip(requests, outcomes, strict=True) if c.label.endswith(" valid")]
    assert valid and all(o == "200" for o in valid), Counter(valid)
    # The well-formed ones were processed, not only accepted: the bot wrote to those chats.
    assert answered >= 100, f"the bot answered only {answered} fuzzed chats"
    loud = [_described(r) for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, f"{len(loud)} errors or tracebacks logged, e.g. {loud[:10]}"


def _described(record: logging.LogRecord) -> str:
    """The record with the exception it carries, so the failure says what broke."""
    text = f"{record.name} {record.levelname}: {record.getMessage()[:200]}"
    if record.exc_info and record.exc_info[1] is not None:
        text += f" [{type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:200]}]"
    return text


async def _fuzz(
    caplog: pytest.LogCaptureFixture,
    url: str,
    headers: dict[str, str],
    template: Callable[[Any, int], Any],
) -> tuple[list[Case], list[str]]:
    requests = cases(SEED, REQUESTS, template)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        outcomes = await _post_all(url, headers, requests)
    elapsed = time.monotonic() - started
    # About 6 s here; far slower means requests queue up (a blocked loop, lost keep-alive).
    assert elapsed < 60, f"{len(requests)} requests took {elapsed:.0f} s"
    return requests, outcomes


async def test_telegram_webhook_survives_fuzzed_updates(
    seeded: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with FakeTelegramAPI() as api, running_service(
        seeded, tmp_path, webhook=True,
        telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
    ) as service:  # fmt: skip
        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/telegram"
        requests, outcomes = await _fuzz(
            caplog, url, {"X-Telegram-Bot-Api-Secret-Token": "telegram-secret-123"},
            telegram_update,
        )  # fmt: skip
        api.user_sends(7001, "/start c11914")  # and the bot still answers
        await wait_text(api, 7001, "đã đăng ký", timeout=30)
    gc.collect()  # "Task exception was never retrieved" is logged when the task is freed
    answered = {r.chat_id for r in api.sent} & set(CHAT_IDS)
    _check(requests, outcomes, caplog.records, len(answered))


async def test_zalo_webhook_survives_fuzzed_updates(
    seeded: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        FakeZaloAPI() as api,
        running_service(
            seeded, tmp_path, webhook=True, zalo_bot_token=api.token, zalo_api_base_url=api.base_url
        ) as service,
    ):
        url = f"http://127.0.0.1:{service.settings.http_port}/webhooks/zalo"
        for chat_id in CHAT_IDS:  # as if they had written before: the fake then takes sends
            api.register_chat(f"zf-{chat_id}")
        requests, outcomes = await _fuzz(
            caplog, url, {"X-Bot-Api-Secret-Token": "zalo-secret-123"}, zalo_update
        )
        api.user_sends("zl-77", "/start c11914")
        await wait_text(api, "zl-77", "đã đăng ký", timeout=30)
    gc.collect()
    answered = {r.chat_id for r in api.sent} & {f"zf-{c}" for c in CHAT_IDS}
    _check(requests, outcomes, caplog.records, len(answered))
