"""Runs the real service (web app + chat parts) in the test's loop against fake Bot APIs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcasts.subscribers import ensure_bot
from db import schema
from db.models import ENV_PLATFORMS, Area, ChatAddress, Subscriber, Subscription
from haidang.pool import PoolBudget
from haidang.roles import ALL_ROLES, Role
from haidang.runtime import OffPart, Service
from haidang.settings import Settings
from tests.conftest import Database

T = TypeVar("T")


@dataclass(frozen=True)
class Said:
    """What the bot said: the text (never None here), how, and its buttons."""

    text: str
    method: str
    reply_markup: Any


SENDS_AND_EDITS = {"sendMessage", "editMessageText", "sendPhoto", "sendVoice", "sendAudio"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stamp_head(database: Database) -> None:
    """Mark a create_all schema as migrated, as `haidang db upgrade` would leave it."""
    async with database.engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE IF NOT EXISTS alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        )
        await connection.execute(text("DELETE FROM alembic_version"))
        await connection.execute(
            text("INSERT INTO alembic_version VALUES (:v)"), {"v": schema.head_revision()}
        )


async def without_quiet_hours(database: Database, **bot_settings: Any) -> None:
    """Create both platforms' bot rows with no quiet hours (and `bot_settings`).

    Routine sends wait out 21:00-06:00 local time; a test that runs the real service on
    the wall clock would otherwise pass or fail by the hour it runs at (CI runs at any hour).
    """
    async with database.sessions.begin() as session:
        for platform in ENV_PLATFORMS:
            bot = await ensure_bot(session, platform)
            bot.quiet_start = bot.quiet_end = None
            for name, value in bot_settings.items():
                setattr(bot, name, value)


@asynccontextmanager
async def running_service(
    database: Database,
    tmp_path: Path,
    *,
    webhook: bool = False,
    bots: dict[str, Any] | None = None,
    engine: AsyncEngine | None = None,
    pool: PoolBudget | None = None,
    roles: Collection[Role] = ALL_ROLES,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """Start `haidang serve`'s Service in this loop; stop it cleanly afterwards.

    `engine` (the test database's by default) and `pool`: a service with a pool of its
    own (tests/test_connections.py), for `roles`.

    The bots have no quiet hours (see without_quiet_hours), and the columns in `bots`
    (a rate, a per-chat gap).
    """
    await stamp_head(database)
    await without_quiet_hours(database, **(bots or {}))
    port = free_port()
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "http_port": port,
        "public_base_url": f"http://127.0.0.1:{port}" if webhook else None,
        "telegram_webhook_secret": "telegram-secret-123" if webhook else None,
        "zalo_webhook_secret": "zalo-secret-123" if webhook else None,
    }
    values.update(overrides)
    settings = Settings(_env_file=None, **values)
    service = Service(settings, engine=engine or database.engine, roles=roles, pool=pool)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        configured = [p for p in service.parts if not isinstance(p, OffPart)]
        await until(lambda: all(p.status().active for p in configured) or task.done(), 15)
        if task.done():
            task.result()
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def until(probe: Callable[[], T | None], timeout: float = 5.0) -> T:  # noqa: ASYNC109
    """Poll `probe` until it gives a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def until_async(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:  # noqa: ASYNC109
    """Poll an async `probe` (database state, usually) until it gives a truthy value."""
    deadline = time.monotonic() + timeout
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)
    return value


async def eventually(
    probe: Callable[[], Awaitable[T]],
    expected: T,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> None:
    """Poll an async `probe` until it returns `expected` (database state, usually)."""
    deadline = time.monotonic() + timeout
    while (value := await probe()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {expected!r}, still {value!r} after {timeout} s")
        await asyncio.sleep(0.05)


async def wait_text(
    api: Any,
    chat_id: object,
    fragment: str,
    *,
    after: int = 0,
    methods: Collection[str] = SENDS_AND_EDITS,
    timeout: float = 8.0,  # noqa: ASYNC109
) -> Said:
    """The first message to the chat, from index `after` on, whose text has `fragment`."""

    def probe() -> Said | None:
        for record in api.sent_to(chat_id, methods=methods)[after:]:
            if record.text and fragment in record.text:
                return Said(record.text, record.method, record.reply_markup)
        return None

    try:
        return await until(probe, timeout)
    except AssertionError:
        seen = [r.text for r in api.sent_to(chat_id, methods=methods)[after:]]
        raise AssertionError(f"no message with {fragment!r}; the bot sent {seen}") from None


def count(api: Any, chat_id: object) -> int:
    return len(api.sent_to(chat_id, methods=SENDS_AND_EDITS))


async def person(database: Database, chat_id: str) -> tuple[Subscriber, list[str]] | None:
    """The subscriber behind a chat and the codes of the areas they follow (None if gone)."""
    async with database.sessions() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == chat_id))
        if address is None:
            return None
        subscriber = await session.get_one(Subscriber, address.subscriber_id)
        codes = (
            await session.scalars(
                select(Area.code)
                .join(Subscription, Subscription.area_id == Area.id)
                .where(Subscription.subscriber_id == subscriber.id)
                .order_by(Subscription.id)
            )
        ).all()
        return subscriber, list(codes)


async def add_sent_bulletin(database: Database, area_code: str, *, urgent: bool) -> int:
    """A bulletin already sent to an area (until the broadcast engine makes them itself)."""
    from db.models import Bulletin, BulletinArea, BulletinState, Official, OfficialRole, Priority

    async with database.sessions.begin() as session:
        area = await session.scalar(select(Area).where(Area.code == area_code))
        assert area is not None
        author = await session.scalar(select(Official).where(Official.username == "tester"))
        if author is None:
            author = Official(username="tester", password_hash="x", role=OfficialRole.admin)
            session.add(author)
            await session.flush()
        bulletin = Bulletin(
            title="Bão số 3 tiến vào vịnh Bắc Bộ" if urgent else "Luật Thủy sản 2017: giấy phép",
            body="Nội dung bản tin.",
            priority=Priority.urgent if urgent else Priority.routine,
            state=BulletinState.sent,
            author_id=author.id,
            audience_roles=[],
            audience_platforms=[],
        )
        session.add(bulletin)
        await session.flush()
        session.add(BulletinArea(bulletin_id=bulletin.id, area_id=area.id))
        return bulletin.id
