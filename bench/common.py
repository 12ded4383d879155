"""Shared set-up for the benchmarks: throwaway databases, bulk audiences, approved bulletins,
fanned-out runs for the sender benches, and rate figures over send times."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import shlex
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broadcasts import bulletins, officials, runs
from broadcasts.sender import Sender, SenderConfig
from broadcasts.subscribers import ensure_bot
from db.engine import make_engine, make_sessionmaker
from db.models import (
    Area,
    Base,
    BroadcastRun,
    Official,
    OfficialRole,
    Platform,
    Subscriber,
    Topic,
)
from db.seed import seed_all
from db.types import UTCDateTime
from haidang.runtime import tune_gc

# 10:00 in Hải Phòng: outside the default quiet hours (the benches also switch them off).
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
# Only ever this machine: the benches never talk to anything but 127.0.0.1.
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CHAT_BASE = 1_000_000_000  # the sender benches' chat ids are CHAT_BASE + n


def command_line() -> str:
    """The exact command that is running, for the printed report."""
    return shlex.join([sys.executable.rsplit("/", 1)[-1], "-m", _module(), *sys.argv[1:]])


def _module() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


def sqlite_url(path: str) -> str:
    return f"sqlite+aiosqlite:///{path}"


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A brand-new PostgreSQL database `bench_<hex>` on 127.0.0.1, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield PG_URL.format(name=name)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def prepared_database(url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """Engine and sessions (production pragmas) on a fresh schema with the 2025 map seeded."""
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as session:
        await seed_all(session)
    return engine, sessions


def _series(dialect: str, count_param: str = "count") -> tuple[str, str]:
    """(prefix, FROM source) producing n = 0 .. count-1 in a column `n`."""
    if dialect == "postgresql":
        return "", f"generate_series(0, :{count_param} - 1) AS seq(n)"
    prefix = (
        "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL "
        f"SELECT n + 1 FROM seq WHERE n + 1 < :{count_param}) "
    )
    return prefix, "seq"


async def add_audience(
    session: AsyncSession,
    *,
    count: int,
    bot_id: int,
    area_ids: Sequence[int],
    topic_ids: Sequence[int],
    chat_base: int = 1_000_000_000,
) -> tuple[int, int]:
    """`count` active subscribers, each with one chat address on `bot_id`, following one of
    `area_ids` (round robin) and every topic in `topic_ids`; set-based INSERT ... SELECT.

    Chat ids are `chat_base + n`. Returns the first subscriber id and the first chat id.
    """
    dialect = session.get_bind().dialect.name
    prefix, source = _series(dialect)
    first = int(await session.scalar(select(func.coalesce(func.max(Subscriber.id), 0))) or 0) + 1
    first_address = (
        int(await session.scalar(text("SELECT coalesce(max(id), 0) FROM chat_addresses")) or 0) + 1
    )
    now = bindparam("now", NOW, type_=UTCDateTime())
    counted = {"count": count, "first": first}
    await session.execute(
        text(
            f"{prefix}INSERT INTO subscribers (id, role, language, status, consent_at, created_at) "
            f"SELECT :first + n, 'fisherman', 'vi', 'active', :now, :now FROM {source}"
        ).bindparams(now),
        counted,
    )
    cast = "VARCHAR" if dialect == "postgresql" else "TEXT"
    await session.execute(
        text(
            f"{prefix}INSERT INTO chat_addresses (id, subscriber_id, bot_id, chat_id, active, "
            "dialog, created_at) "
            f"SELECT :first_address + n, :first + n, :bot_id, CAST(:chat_base + n AS {cast}), "
            f"TRUE, '{{}}', :now FROM {source}"
        ).bindparams(now),
        {**counted, "first_address": first_address, "bot_id": bot_id, "chat_base": chat_base},
    )
    areas = ", ".join(str(int(a)) for a in area_ids)
    await session.execute(
        text(
            f"{prefix}INSERT INTO subscriptions (subscriber_id, area_id, created_at) "
            f"SELECT :first + n, a.id, :now FROM {source} "
            f"JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM areas "
            f"WHERE id IN ({areas})) a ON a.k = n % :areas"
        ).bindparams(now),
        {**counted, "areas": len(area_ids)},
    )
    if dialect == "postgresql":
        # Explicit ids leave the sequences behind: without this the service's next new
        # subscriber (a person writing /start) would collide with id 1 and fail.
        for table in ("subscribers", "chat_addresses"):
            await session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
    if topic_ids:
        topics = ", ".join(str(int(t)) for t in topic_ids)
        await session.execute(
            text(
                f"{prefix}INSERT INTO subscriber_topics (subscriber_id, topic_id) "
                f"SELECT :first + n, t.id FROM {source} "
                f"CROSS JOIN (SELECT id FROM topics WHERE id IN ({topics})) t "
                "ORDER BY 1, 2"
            ),
            counted,
        )
    return first, chat_base


async def telegram_bot_id(session: AsyncSession) -> int:
    return (await ensure_bot(session, Platform.telegram)).id


async def area_ids(session: AsyncSession, *, code: str | None = None, province: str | None = None):
    """Ids of one area by code, or of every commune of a province (`p31`)."""
    if code is not None:
        return list((await session.scalars(select(Area.id).where(Area.code == code))).all())
    parent = await session.scalar(select(Area.id).where(Area.code == province))
    rows = await session.scalars(select(Area.id).where(Area.parent_id == parent).order_by(Area.id))
    return list(rows.all())


async def topic_ids(session: AsyncSession) -> list[int]:
    return list((await session.scalars(select(Topic.id).order_by(Topic.id))).all())


async def approved_bulletin(
    sessions: async_sessionmaker[AsyncSession],
    *,
    areas: Sequence[str] = ("11914",),
    topic_slug: str | None = None,
    urgent: bool = False,
) -> int:
    """An approved bulletin by a Hải Phòng editor and approver (four-eyes); its id."""
    async with sessions.begin() as session:
        editor = await session.scalar(select(Official).where(Official.username == "bench-editor"))
        approver = await session.scalar(
            select(Official).where(Official.username == "bench-approver")
        )
        if editor is None or approver is None:
            editor = await officials.create(
                session, username="bench-editor", role=OfficialRole.province_editor,
                password="x" * 12, area_code="p31",
            )  # fmt: skip
            approver = await officials.create(
                session, username="bench-approver", role=OfficialRole.approver,
                password="y" * 12, area_code="p31",
            )  # fmt: skip
        bulletin = await bulletins.create(
            session, author=editor, title="Thông báo gió mạnh trên biển",
            body="Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn.",
            area_codes=list(areas), now=NOW, urgent=urgent, submit=True, topic_slug=topic_slug,
        )  # fmt: skip
        await bulletins.approve(session, bulletin, approver, NOW)
        return bulletin.id


async def new_run(
    sessions: async_sessionmaker[AsyncSession], bulletin_id: int, fire_at: dt.datetime = NOW
) -> int:
    """A broadcast run for the bulletin (not fanned out yet); its id."""
    async with sessions.begin() as session:
        run = await runs.create_run(
            session, bulletin_id=bulletin_id, schedule_id=None, fire_at=fire_at, now=NOW
        )
        assert run is not None
        return run.id


async def fanned_out_run(
    sessions: async_sessionmaker[AsyncSession], count: int, *, chat_base: int = CHAT_BASE
) -> tuple[int, int]:
    """`count` subscribers of Cát Hải (11914) on the Telegram bot, and a fanned-out run of
    an approved bulletin to them: (bot id, run id)."""
    async with sessions.begin() as session:
        bot_id = await telegram_bot_id(session)
        await add_audience(
            session, count=count, bot_id=bot_id, area_ids=await area_ids(session, code="11914"),
            topic_ids=await topic_ids(session), chat_base=chat_base,
        )  # fmt: skip
    run_id = await new_run(sessions, await approved_bulletin(sessions))
    async with sessions.begin() as session:
        run = await session.get_one(BroadcastRun, run_id)
        total = await runs.fan_out(session, run, NOW)
    if total != count:
        raise RuntimeError(f"fan-out made {total} deliveries, not {count}")
    return bot_id, run_id


def use_service_gc(default_gc: bool) -> str:
    """Apply the service's garbage-collector settings (haidang.runtime.tune_gc, as `haidang
    serve` does) unless `default_gc`; a label for the report."""
    if default_gc:
        return "CPython's default gc"
    tune_gc()
    return "the service's gc settings (tune_gc)"


def sender_config(bot_id: int, rate: float, *, max_in_flight: int | None = None) -> SenderConfig:
    """The bot's sender at `rate`, per-chat gap 1 s, quiet hours off (the benches must not
    depend on the time of day)."""
    return SenderConfig(
        bot_id=bot_id, rate_per_second=rate, per_chat_interval=1.0, quiet_start=None,
        quiet_end=None, max_in_flight=max_in_flight,
    )  # fmt: skip


async def send_all(sender: Sender, count: int, *, give_up_after: float) -> float:
    """Start the sender, wait until it has sent `count` deliveries (or `give_up_after` s),
    stop it (draining and writing every outcome); the wall time until the last send."""
    started = time.monotonic()
    await sender.start()
    deadline = started + give_up_after
    # The sender has no completion event: poll its counter (no database reads).
    while sender.sent < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    wall = time.monotonic() - started
    await sender.stop()
    return wall


def steady_rate(stamps: Sequence[float]) -> float:
    """Sends per second from the first to the last of `stamps` (sorted seconds)."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return 0.0
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def max_in_window(stamps: Sequence[float], window: float = 1.0) -> int:
    """Most of `stamps` (sorted seconds) in any `window` seconds: what a platform limits."""
    best, low = 0, 0
    for high, stamp in enumerate(stamps):
        while stamp - stamps[low] >= window:
            low += 1
        best = max(best, high - low + 1)
    return best


def gaps_ms(stamps: Sequence[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
