"""A turn stays cheap: the map the chat keeps in memory answers as the database would
(and notices what was seeded after it), and typical turns stay within their statements."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.answers import Owed, store
from bot.conversation import Conversation, EventKind, Inbound, Reply
from bot.places import Map
from broadcasts import areas
from broadcasts.subscribers import ensure_bot
from db.models import Area, AreaKind, Platform
from db.text import fold
from tests.conftest import Database

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)


async def test_the_map_answers_as_the_database(seeded: Database) -> None:
    kept = Map()
    async with seeded.sessions.begin() as session:
        for code in ("c11914", "11914", "p31", "p1"):
            place = await kept.find(session, code)
            area = await areas.get_by_code(session, code)
            assert place is not None
            assert (place.id, place.code, place.kind, place.name, place.province_id) == (
                area.id, area.code, area.kind, area.name, area.province_id,
            )  # fmt: skip
        assert await kept.find(session, "99999") is None  # unknown
        assert await kept.find(session, "zz") is None  # not a code
        rows = await session.scalars(select(Area).where(Area.kind == AreaKind.province))
        provinces = sorted(rows.all(), key=areas.sort_key)
        assert [p.id for p in await kept.provinces(session)] == [p.id for p in provinces]
        haiphong = await areas.get_by_code(session, "p31")
        rows = await session.scalars(
            select(Area).where(Area.parent_id == haiphong.id, Area.kind == AreaKind.commune)
        )
        communes = sorted(rows.all(), key=areas.sort_key)
        assert [c.id for c in await kept.communes(session, haiphong.id)] == [c.id for c in communes]
        commune = await areas.get_by_code(session, "11914")
        assert await kept.communes(session, commune.id) == []  # villages are not communes
        assert (await kept.get(session, haiphong.id)) == (await kept.find(session, "p31"))
        assert await kept.get(session, 10**9) is None


async def test_villages_and_later_seeds_come_from_the_database(seeded: Database) -> None:
    kept = Map()
    async with seeded.sessions.begin() as session:
        haiphong = await areas.get_by_code(session, "p31")
        before = len(await kept.communes(session, haiphong.id))
        # Officials add (and rename) villages and ports: never kept, always read.
        village = await areas.add_subarea(session, "11914", "Thôn Một", AreaKind.village)
        found = await kept.find(session, village.code)
        assert found is not None and found.id == village.id and found.kind is AreaKind.village
        await areas.rename_subarea(session, village, "Thôn Hai")
        renamed = await kept.get(session, village.id)
        assert renamed is not None and renamed.name == "Thôn Hai"
        # A commune seeded after the map was loaded: found, and the map loaded again.
        await session.execute(
            insert(Area).values(
                code="99990", kind=AreaKind.commune, division_type="xã", name="Xã Mới",
                name_folded=fold("Xã Mới"), parent_id=haiphong.id, province_id=haiphong.id,
            )
        )  # fmt: skip
        assert (await kept.find(session, "99990")) is not None
        after = await kept.communes(session, haiphong.id)
        assert len(after) == before + 1 and "Xã Mới" in [c.name for c in after]


@contextmanager
def counting(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)


async def test_typical_turns_stay_within_their_statements(seeded: Database) -> None:
    """Budgets measured on SQLite with the answer stored, as bot.answers does (BEGIN
    counted; PostgreSQL's is not a statement): a change that adds queries to every turn
    fails here. bench.turns measures more kinds of turn, and their CPU."""
    async with seeded.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.telegram)).id
    conversation = Conversation(seeded.sessions)

    async def turn(chat: str, key: str, **what: Any) -> tuple[list[Reply], int]:
        kind = EventKind.text if "text" in what else EventKind.button
        event = Inbound(bot_id, chat, kind, key, display_name="Ngư dân", **what)

        async def keep(session: AsyncSession, replies: list[Reply]) -> None:
            owed = Owed(chat, tuple(replies))
            await store(session, bot_id=bot_id, owed=owed, holder="test", now=NOW)

        with counting(seeded) as statements:
            replies = await conversation.handle(event, keep)
        return replies, len(statements)

    await turn("41", "0", text="/start c11914")  # the map is read once, by the first turn
    replies, qr = await turn("42", "1", text="/start c11914")
    assert "Cát Hải" in replies[0].text
    replies, again = await turn("42", "1", text="/start c11914")
    assert replies == []  # a redelivery: nothing done twice
    _replies, button = await turn("42", "2", data="done")
    _replies, stop = await turn("42", "3", text="/huy")
    spent = {"qr": (qr, 13), "redelivery": (again, 2), "button": (button, 6), "huy": (stop, 7)}
    assert all(count <= budget for count, budget in spent.values()), spent
