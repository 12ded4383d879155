"""Builders for broadcast tests: subscribers on a bot, an approved bulletin, a fanned-out run."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from broadcasts import bulletins, officials, runs, schedules
from broadcasts.bots import TokenBox
from broadcasts.subscribers import ensure_bot, follow_all_topics
from db import schema
from db.engine import make_engine, make_sessionmaker
from db.models import (
    Area,
    Bot,
    BroadcastRun,
    Bulletin,
    ChatAddress,
    Delivery,
    Official,
    OfficialRole,
    Platform,
    Subscriber,
    SubscriberRole,
    Subscription,
)
from db.seed import seed_all
from haidang.settings import DEV_SECRET_KEY
from tests.conftest import Database
from tests.fakes._common import FakeBotAPI

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)  # 10:00 in Hải Phòng: not quiet hours


async def add_people(
    database: Database,
    platform: Platform,
    chat_ids: Sequence[str],
    *,
    area_code: str = "11914",
    role: SubscriberRole = SubscriberRole.fisherman,
    language: str = "vi",
    bot_name: str = "default",
) -> int:
    """Subscribers following an area with every topic, one chat address each on the bot
    `bot_name` of `platform` (made if missing); the bot id."""
    async with database.sessions.begin() as session:
        bot = await ensure_bot(session, platform, bot_name)
        area = await session.scalar(select(Area).where(Area.code == area_code))
        assert area is not None
        for chat_id in chat_ids:
            person = Subscriber(role=role, language=language, consent_at=NOW)
            session.add(person)
            await session.flush()
            session.add(ChatAddress(subscriber_id=person.id, bot_id=bot.id, chat_id=chat_id))
            session.add(Subscription(subscriber_id=person.id, area_id=area.id))
            await follow_all_topics(session, person.id)
        return bot.id


async def officials_pair(database: Database) -> tuple[int, int]:
    """An editor and an approver for Hải Phòng (ids)."""
    async with database.sessions.begin() as session:
        existing = await session.scalar(select(Official).where(Official.username == "editor"))
        if existing is not None:
            approver = await session.scalar(select(Official).where(Official.username == "approver"))
            assert approver is not None
            return existing.id, approver.id
        editor = await officials.create(
            session, username="editor", role=OfficialRole.province_editor,
            password="x" * 12, area_code="p31",
        )  # fmt: skip
        approver = await officials.create(
            session, username="approver", role=OfficialRole.approver,
            password="y" * 12, area_code="p31",
        )  # fmt: skip
        return editor.id, approver.id


async def approved_bulletin(
    database: Database,
    *,
    body: str = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn.",
    urgent: bool = False,
    areas: Sequence[str] = ("11914",),
    expires_at: dt.datetime | None = None,
    translations: dict[str, tuple[str, str]] | None = None,
) -> int:
    editor_id, approver_id = await officials_pair(database)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        approver = await session.get_one(Official, approver_id)
        bulletin = await bulletins.create(
            session, author=editor, title="Thông báo gió mạnh trên biển", body=body,
            area_codes=list(areas), now=NOW, urgent=urgent, submit=True,
            expires_at=expires_at, translations=translations,
        )  # fmt: skip
        await bulletins.approve(session, bulletin, approver, NOW)
        return bulletin.id


async def start_run(database: Database, bulletin_id: int, fire_at: dt.datetime = NOW) -> int:
    async with database.sessions.begin() as session:
        run = await runs.create_run(
            session, bulletin_id=bulletin_id, schedule_id=None, fire_at=fire_at, now=NOW
        )
        assert run is not None
        await runs.fan_out(session, run, NOW)
        return run.id


async def states(database: Database, run_id: int) -> dict[str, int]:
    async with database.sessions() as session:
        rows = await session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.run_id == run_id)
            .group_by(Delivery.state)
        )
        return {state.value: int(count) for state, count in rows.all()}


async def wait_settled(database: Database, run_id: int, timeout: float = 15.0) -> dict[str, int]:  # noqa: ASYNC109
    """Wait until no delivery of the run is pending or sending; the final counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await states(database, run_id)
        if not counts.get("pending") and not counts.get("sending"):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not settle: {counts}")
        await asyncio.sleep(0.1)


async def bulletin_state(database: Database, bulletin_id: int) -> str:
    async with database.sessions() as session:
        return (await session.get_one(Bulletin, bulletin_id)).state.value


async def run_row(database: Database, run_id: int) -> BroadcastRun:
    async with database.sessions() as session:
        return await session.get_one(BroadcastRun, run_id)


URGENT_BODY = "Bão khẩn cấp!"  # the body of migrated_with_urgent_bulletin's warning


def warnings_received(api: FakeBotAPI) -> Counter[str]:
    """How many times each chat got that warning's text from a fake Bot API."""
    return Counter(str(r.chat_id) for r in api.sent if URGENT_BODY in (r.text or ""))


async def warn_now(database: Database, areas: Sequence[str] = ("11914",)) -> int:
    """An urgent bulletin (URGENT_BODY) for `areas`, scheduled now on the wall clock: a
    running service's scheduler fires it."""
    bulletin_id = await approved_bulletin(database, body=URGENT_BODY, urgent=True, areas=areas)
    async with database.sessions.begin() as session:
        bulletin = await bulletins.get(session, bulletin_id)
        editor = await session.scalar(select(Official).where(Official.username == "editor"))
        assert editor is not None
        await schedules.schedule(
            session, bulletin, editor, now=dt.datetime.now(dt.UTC),
            tz=ZoneInfo("Asia/Ho_Chi_Minh"),
        )  # fmt: skip
    return bulletin_id


@dataclass(frozen=True)
class BotPeople:
    """A bot and the chats subscribed through it (in `area_code`). `token` None: the
    platform's first bot ("default"), whose token is in the environment; else the token
    stored sealed with `SECRET_KEY` (broadcasts.bots)."""

    platform: Platform
    chats: list[str]
    name: str = "default"
    token: str | None = None
    area_code: str = "11914"
    language: str = "vi"


def migrated_with_urgent_bulletin(
    url: str,
    people: dict[Platform, list[str]] | Sequence[BotPeople],
    *,
    rate: float | None = None,
    secret_key: str = DEV_SECRET_KEY,
) -> int:
    """For tests of `haidang serve`: a migrated, seeded database with these chats on each
    bot (at `rate` msg/s) and an urgent bulletin for all of them scheduled now."""
    if isinstance(people, dict):
        people = [BotPeople(platform, chats) for platform, chats in people.items()]
    box = TokenBox(secret_key)

    async def build() -> int:
        engine = make_engine(url)
        database = Database("serve", url, engine, make_sessionmaker(engine))
        async with database.sessions.begin() as session:
            await seed_all(session)
        for group in people:
            bot_id = await add_people(
                database, group.platform, group.chats, area_code=group.area_code,
                bot_name=group.name, language=group.language,
            )  # fmt: skip
            async with database.sessions.begin() as session:
                bot = await session.get_one(Bot, bot_id)
                if rate is not None:
                    bot.rate_per_second = rate
                if group.token is not None:
                    bot.token_sealed = box.seal(group.token)
        bulletin_id = await warn_now(database, sorted({group.area_code for group in people}))
        await engine.dispose()
        return bulletin_id

    schema.upgrade(url)
    return asyncio.run(build())
