"""Database connections: the pool budget per role, and work that survives killed connections."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import telegram
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import texts
from bot.telegram import TelegramChannel
from bot.telegram_http import AiohttpRequest
from broadcasts.sender import Sender, SenderConfig
from db.engine import make_engine, make_sessionmaker
from db.models import Answer, PendingEvent, Platform
from haidang.pool import PoolBudget, pool_budget
from haidang.roles import ALL_ROLES, Role
from haidang.settings import Settings
from tests.bot.harness import running_service, until, until_async
from tests.broadcasts.engine import add_people, approved_bulletin, start_run, wait_settled
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SUBSCRIBED = "đã đăng ký nhận tin của Đặc khu Cát Hải"


@pytest.fixture
def postgres(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("kills PostgreSQL backends (pg_terminate_backend); SQLite has no connections")


def test_the_budget_follows_the_roles() -> None:
    settings = Settings(_env_file=None)
    worker = pool_budget(settings, {Role.worker})
    assert (worker.size, worker.overflow, worker.turns) == (10, 10, 10)
    assert (pool_budget(settings, {Role.web}).connections, pool_budget(settings, {Role.scheduler})
            .connections) == (10, 2)  # fmt: skip
    everything = pool_budget(settings, ALL_ROLES)
    assert (everything.size, everything.overflow) == (17, 15)
    assert everything.application_name == "haidang-all"
    assert pool_budget(settings, {Role.web, Role.worker}).application_name == "haidang-web+worker"
    set_here = pool_budget(Settings(_env_file=None, db_pool_size=3, db_max_overflow=1))
    assert (set_here.size, set_here.overflow, set_here.turns) == (3, 1, 2)
    assert set_here.engine_options()["connect_args"] == {
        "server_settings": {"application_name": "haidang-all"}
    }


def _budget(size: int, overflow: int) -> PoolBudget:
    # A name of its own: the kills and the counts see this test's service and nothing else.
    name = f"haidang-test-{uuid.uuid4().hex[:10]}"
    return PoolBudget(size, overflow, timeout_s=30.0, recycle_s=1800, application_name=name)


async def _service_engine(database: Database, budget: PoolBudget) -> AsyncEngine:
    """An engine within `budget` on the test's schema (the fixture's engine sets it)."""
    async with database.engine.connect() as connection:
        path: str = (await connection.execute(text("SHOW search_path"))).scalar_one()
    options = budget.engine_options()
    options["connect_args"]["server_settings"]["search_path"] = path
    return make_engine(database.url, **options)


@asynccontextmanager
async def killing(database: Database, name: str) -> AsyncIterator[list[int]]:
    """Terminate every connection named `name` every 0.15-0.5 s (pg_terminate_backend);
    yields the list of how many each round killed."""
    kills: list[int] = []
    chance = random.Random(12)

    async def loop() -> None:
        while True:
            await asyncio.sleep(chance.uniform(0.15, 0.5))
            async with database.engine.connect() as connection:
                killed = await connection.scalar(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE application_name = :name "
                        "AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
            kills.append(int(killed or 0))

    task = asyncio.create_task(loop())
    try:
        yield kills
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _connections(database: Database, name: str) -> int:
    async with database.engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": name},
        )
    return int(count or 0)


@pytest.mark.usefixtures("postgres")
async def test_a_broadcast_goes_to_everyone_while_connections_are_killed(seeded: Database) -> None:
    chats = [str(10_000 + n) for n in range(300)]
    budget = _budget(10, 10)
    engine = await _service_engine(seeded, budget)
    config = SenderConfig(
        bot_id=0, rate_per_second=60.0, per_chat_interval=0.05, quiet_start=None,
        quiet_end=None, backoff_s=(0.05,), idle_poll_s=0.05,
    )  # fmt: skip
    async with FakeTelegramAPI() as api:
        request = AiohttpRequest(connection_pool_size=64)
        async with telegram.Bot(api.token, base_url=api.bot_base_url, request=request) as bot:
            bot_id = await add_people(seeded, Platform.telegram, chats)
            # Routine: a claim lost with its connection must not leave anyone `unknown`.
            run_id = await start_run(seeded, await approved_bulletin(seeded))
            config = dataclasses.replace(config, bot_id=bot_id)
            sender = Sender(
                make_sessionmaker(engine), TelegramChannel(bot), config, tz=TZ,
                holder="test", clock=lambda: dt.datetime.now(dt.UTC),
            )  # fmt: skip
            await sender.start()
            try:
                async with killing(seeded, budget.application_name) as kills:
                    await until(lambda: len(api.sent) >= len(chats), 180)
                counts = await wait_settled(seeded, run_id, timeout=120)
            finally:
                await sender.stop()
                await engine.dispose()
    assert sum(kills) >= 3, kills  # the sender's connections were killed, repeatedly
    assert counts == {"sent": len(chats)}
    received = Counter(str(r.chat_id) for r in api.sent)
    assert set(received) == set(chats)
    # Nothing is sent twice for a lost connection (outcomes wait in memory); the
    # documented bound is that of a crash (README "Delivery guarantees").
    assert sum(received.values()) - len(chats) <= config.duplicate_bound


@pytest.mark.usefixtures("postgres")
async def test_a_crowd_is_answered_while_connections_are_killed(
    seeded: Database, tmp_path: Path
) -> None:
    crowd = [7000 + n for n in range(50)]
    budget = _budget(10, 10)
    engine = await _service_engine(seeded, budget)
    fake = FakeTelegramAPI(latency=0.01)
    try:
        with fake.running_in_thread() as api:
            async with running_service(
                seeded, tmp_path, engine=engine, pool=budget, roles={Role.worker},
                telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
                bots={"rate_per_second": 10, "per_chat_interval": 1.0},
            ):  # fmt: skip
                async with killing(seeded, budget.application_name) as kills:
                    for chat in crowd:
                        api.user_sends(chat, "/start c11914")
                    await until(lambda: all(_said(api, c, SUBSCRIBED) for c in crowd), 180)
                await asyncio.sleep(1.5)  # anything said twice has arrived by now

                async def settled() -> bool:
                    async with seeded.sessions() as session:
                        left = await session.scalar(select(func.count()).select_from(Answer))
                        kept = await session.scalar(select(func.count()).select_from(PendingEvent))
                    return left == 0 and kept == 0

                await until_async(settled, 60)  # every answer sent, every event done
    finally:
        await engine.dispose()
    assert sum(kills) >= 3, kills
    for chat in crowd:
        said = Counter(r.text for r in api.sent_to(chat))
        assert not any(texts.APOLOGY in (t or "") for t in said), (chat, said)
        assert _said(api, chat, SUBSCRIBED) == 1, (chat, said)


def _said(api: FakeTelegramAPI, chat: int, fragment: str) -> int:
    return sum(fragment in (r.text or "") for r in api.sent_to(chat))


@pytest.mark.usefixtures("postgres")
async def test_a_worker_stays_within_its_pool_under_a_crowd(
    seeded: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="haidang.serve")
    crowd = [8000 + n for n in range(60)]
    budget = _budget(3, 2)  # small, so that the crowd would go past it if it could
    engine = await _service_engine(seeded, budget)
    seen: list[int] = []
    fake = FakeTelegramAPI(latency=0.01)
    try:
        with fake.running_in_thread() as api:
            async with running_service(
                seeded, tmp_path, engine=engine, pool=budget, roles={Role.worker},
                telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
                bots={"rate_per_second": 30, "per_chat_interval": 1.0},
            ):  # fmt: skip
                for chat in crowd:
                    api.user_sends(chat, "/start c11914")
                while not all(_said(api, c, SUBSCRIBED) for c in crowd):
                    seen.append(await _connections(seeded, budget.application_name))
                    assert len(seen) < 20_000, "the crowd was not answered"
                    await asyncio.sleep(0.01)
    finally:
        await engine.dispose()
    assert max(seen) <= budget.connections, Counter(seen)
    # The budget is in the start-up log, and in pg_stat_activity under its name.
    assert (
        f"pool 3+2 connections (wait 30 s, recycled after 1800 s), 2 turns at once, "
        f"application_name {budget.application_name}" in caplog.text
    )
    assert all(_said(api, chat, SUBSCRIBED) == 1 for chat in crowd)
