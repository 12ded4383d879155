"""What arrives is kept until its turn is taken: a process that stops (or dies) mid-turn
leaves its events to the next, a redelivery under way is not taken twice, and the stored
answer survives the round trip to JSON."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sqlalchemy import func, select

from bot.answers import Answers, Owed, Received, from_payload, to_payload
from bot.conversation import Conversation, EventKind, Inbound, Option, Reply
from broadcasts.outbox import Outbox
from broadcasts.subscribers import ensure_bot
from db.models import PendingEvent, Platform
from tests.bot.harness import until
from tests.conftest import Database


class Core:
    """A conversation core that records events; `hold` keeps its turns from finishing."""

    voices = None

    def __init__(self, *, hold: bool = False) -> None:
        self.events: list[Inbound] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def handle(self, event: Inbound, keep: Any = None) -> list[Reply]:
        self.events.append(event)
        await self.release.wait()
        return []


def answers(database: Database, core: Core, bot_id: int, holder: str) -> Answers:
    return Answers(
        database.sessions, cast(Conversation, core), Outbox(30), bot_id=bot_id, holder=holder
    )


def arrival(n: int, **extra: Any) -> Received:
    event = Inbound(
        bot_id=0, chat_id=str(100 + n), kind=EventKind.button, update_key=str(n),
        data=f"t:{n}", display_name="Bà Tư", **extra,
    )  # fmt: skip
    return Received(event, query_id=f"q{n}", pressed_message_id=n)


async def kept(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(PendingEvent)) or 0)


async def test_events_a_dead_process_kept_are_turned_by_the_next(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.telegram)).id
    stuck = Core(hold=True)
    first = answers(seeded, stuck, bot_id, "first")
    await first.receive([arrival(n) for n in range(5)])
    await until(lambda: len(stuck.events) == 5)
    # The first process dies here, mid-turn: nothing of it runs any more.
    for task in list(first._turns):
        task.cancel()
    await asyncio.gather(*first._turns, return_exceptions=True)
    assert await kept(seeded) == 5

    core = Core()
    second = answers(seeded, core, bot_id, "second")
    await second.start()
    try:
        await until(lambda: len(core.events) == 5)
        # The same events, whole: the button's query and message come along.
        assert sorted(e.update_key for e in core.events) == ["0", "1", "2", "3", "4"]
        assert {e.data for e in core.events} == {f"t:{n}" for n in range(5)}
        await asyncio.gather(*second._turns)
    finally:
        await second.stop()
    assert await kept(seeded) == 0  # handled, then deleted


async def test_a_redelivery_under_way_is_not_taken_twice(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.zalo)).id
    core = Core(hold=True)
    service = answers(seeded, core, bot_id, "only")
    await service.receive([arrival(7)])
    await service.receive([arrival(7), arrival(8)])  # the platform sent 7 again
    await until(lambda: len(core.events) == 2)
    core.release.set()
    await asyncio.gather(*service._turns)
    assert [e.update_key for e in core.events] == ["7", "8"]


def test_a_stored_answer_comes_back_as_it_was() -> None:
    owed = Owed(
        "4242",
        (
            Reply("Chọn chủ đề:", (Option("Thời tiết", "t:1"), Option("Xong", "t:done")), 2),
            Reply("Đã ghi nhận", notice=True),
            Reply("Văn bản", replace=True, keep_buttons=True, audio_document=12),
        ),
        query_id="q1",
        pressed_message_id=77,
    )
    back = from_payload(5, "4242", to_payload(owed))
    assert back == Owed(**{**owed.__dict__, "answer_id": 5})
