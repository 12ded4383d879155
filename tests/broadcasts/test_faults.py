"""Fault tests: a sender killed mid-broadcast, and two workers claiming one queue."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from broadcasts.sender import SenderConfig
from db.models import Platform
from haidang.settings import normalise_database_url
from tests.broadcasts.engine import (
    add_people,
    approved_bulletin,
    migrated_with_urgent_bulletin,
    start_run,
    warnings_received,
)
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_serve import _free_port, _until, serve_logged, telegram_env

# (people, the bot's rate): a 30 msg/s Telegram bot as deployed, and a fast one. Each
# broadcast takes 10-15 s, so the kill lands mid-broadcast.
CASES = [pytest.param(400, 30.0, id="30-per-s"), pytest.param(2000, 200.0, id="200-per-s")]


@pytest.mark.parametrize(("people", "rate"), CASES)
def test_sigkill_mid_urgent_broadcast_then_restart(
    database_url: str, tmp_path: Path, people: int, rate: float
) -> None:
    url = normalise_database_url(database_url)
    migrated_with_urgent_bulletin(
        url, {Platform.telegram: [str(10_000 + n) for n in range(people)]}, rate=rate
    )
    bound = SenderConfig(bot_id=0, rate_per_second=rate).duplicate_bound
    if rate <= 30:
        assert bound <= rate  # the promise: a 30 msg/s bot repeats at most 30
    log = tmp_path / "serve.log"
    # The fake holds the bot to its rate (429 past it), as Telegram does.
    fake = FakeTelegramAPI(latency=0.005, rate_limit_per_second=int(rate))
    with fake.running_in_thread() as api:
        env = telegram_env(database_url, tmp_path, api)
        first = serve_logged(env, log)
        try:
            _until(lambda: sum(warnings_received(api).values()) >= people // 3, 60, "sends")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        at_kill = sum(warnings_received(api).values())
        assert at_kill < people, "the broadcast finished before the kill; slow it down"

        env["HTTP_PORT"] = str(_free_port())
        second = serve_logged(env, log)
        try:
            _until(lambda: len(warnings_received(api)) == people, 90, "every person reached")
            time.sleep(1.0)  # let the last outcomes land
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, log.read_text()
        received = warnings_received(api)
    # Nobody misses the warning; duplicates stay within the documented bound.
    assert set(received) == {str(10_000 + n) for n in range(people)}
    duplicates = sum(received.values()) - people
    assert 0 <= duplicates <= bound, (duplicates, bound)
    text = log.read_text()
    assert "took over" in text or duplicates == 0
    print(f"{rate:.0f}/s: killed after {at_kill} sends; {duplicates} duplicates (bound {bound})")


async def test_two_workers_never_claim_the_same_delivery(seeded: Database, tmp_path: Path) -> None:
    bot_id = await add_people(seeded, Platform.telegram, [str(n) for n in range(1, 1501)])
    await start_run(seeded, await approved_bulletin(seeded))
    schema_args: list[str] = []
    if seeded.backend == "postgresql":
        async with seeded.engine.connect() as connection:
            schema_args = [str((await connection.execute(text("SHOW search_path"))).scalar())]
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    start_at = str(time.time() + 3)  # after both interpreters are up
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.broadcasts.claim_worker", seeded.url, str(bot_id),
            str(out), start_at, *schema_args,
        )
        for out in outs
    ]  # fmt: skip
    codes = await asyncio.gather(*(w.wait() for w in workers))
    assert codes == [0, 0]
    claimed = [[int(x) for x in out.read_text().split()] for out in outs]
    assert claimed[0] and claimed[1], "both workers should have claimed some"
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 1500
