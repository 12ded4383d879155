"""SQL statements and CPU per conversation turn (bot.conversation + the stored answer).

Each turn kind is taken by `--people` chats in a row on one event loop, as
`bot.answers.Answers._answer` takes it: `Conversation.handle(event, keep)` with `keep`
storing the answer row (`bot.answers.store`) in the turn's transaction. The database is a
throwaway SQLite file with the production pragmas, or a throwaway PostgreSQL database
(`--database postgresql`), created and seeded as bench.common does. Statements are counted
with a `before_cursor_execute` listener (BEGIN, SAVEPOINT and RELEASE included; COMMIT is
the driver's own call and not counted); CPU is time.process_time() of the whole process
(the event loop and aiosqlite's thread) over the turns of one kind. Not measured: the
set-up, and two people who first take every kind (SQLAlchemy compiles each statement
once, the conversation reads the map of communes once), as in a service that has been
running. `--echo KIND` prints the statements of one more turn of that kind.

The kinds, in the order they run (each person goes through all of them):
  qr        "/start c11914" by a new person (a QR poster at the port)
  all-good  the "Vậy là được" button under the deep link's answer
  topic     a topic's button (turns one topic off: loads the person's topics, settings mode)
  ack       "Đã nhận" under an urgent bulletin
  ack-typed "đã nhận" typed (Zalo has no buttons): the newest urgent bulletin, another one
  huy       "/huy" (asks to confirm)
  huy-yes   "Có" (stops the subscription)
  start     "/start" by another new person (the consent question)
  consent   "Đồng ý" (the province list)
  province  a province's button (its communes)
  commune   a commune's button (the role question)
  role      a role's button (the topics)
  done      "Xong" under the topics (the summary)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import io
import pstats
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.common import (
    NOW,
    approved_bulletin,
    command_line,
    pg_database,
    prepared_database,
    sqlite_url,
    telegram_bot_id,
    use_service_gc,
)
from bot.answers import Owed, store
from bot.conversation import Conversation, EventKind, Inbound, Reply
from db.models import Bulletin, BulletinState, Topic

COMMUNE = "11914"  # Đặc khu Cát Hải, Hải Phòng
PROVINCE = "31"  # Hải Phòng
CHAT_BASE = 7_000_000_000
KINDS = (
    "qr",
    "all-good",
    "topic",
    "ack",
    "ack-typed",
    "huy",
    "huy-yes",
    "start",
    "consent",
    "province",
    "commune",
    "role",
    "done",
)


@dataclass
class Counter:
    """Statements seen by the engine; `echo` prints them as they go."""

    statements: int = 0
    echo: bool = False
    lines: list[str] = field(default_factory=list)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.statements += 1
        if self.echo:
            self.lines.append(" ".join(statement.split())[:300])


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "postgresql":
        async with pg_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield sqlite_url(str(Path(folder) / "turns.db"))


def event_for(kind: str, chat: str, n: int, values: dict[str, Any]) -> Inbound:
    """The event a person `chat` sends for a turn kind (`n` keeps update keys unique)."""
    texts = {
        "qr": f"/start c{COMMUNE}",
        "ack-typed": "đã nhận",
        "huy": "/huy",
        "start": "/start",
    }
    buttons = {
        "all-good": "done",
        "topic": f"t:{values['topic']}",
        "ack": f"ack:{values['bulletin']}",
        "huy-yes": "yes",
        "consent": "consent:yes",
        "province": f"p:{PROVINCE}",
        "commune": f"c:{COMMUNE}",
        "role": "r:fisherman",
        "done": "t:done",
    }
    key = f"{kind}:{chat}:{n}"
    if kind in texts:
        return Inbound(
            values["bot"], chat, EventKind.text, key, text=texts[kind], display_name="Ngư dân"
        )
    return Inbound(
        values["bot"], chat, EventKind.button, key, data=buttons[kind], display_name="Ngư dân"
    )


async def turn(conversation: Conversation, event: Inbound) -> list[Reply]:
    """One turn as Answers._answer takes it: the answer stored in the turn's transaction."""

    async def keep(session: AsyncSession, replies: list[Reply]) -> None:
        owed = Owed(event.chat_id, tuple(replies), None, None)
        await store(session, bot_id=event.bot_id, owed=owed, holder="bench", now=NOW)

    return await conversation.handle(event, keep)


async def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    async with database(args.database) as url:
        engine, sessions = await prepared_database(url)
        try:
            return await measure(engine, sessions, args)
        finally:
            await engine.dispose()


async def measure(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], args: argparse.Namespace
) -> list[tuple[str, float, float]]:
    async with sessions.begin() as session:
        bot_id = await telegram_bot_id(session)
        topic = await session.scalar(select(Topic.id).order_by(Topic.position, Topic.id))
    bulletin = await approved_bulletin(sessions, areas=(COMMUNE,), urgent=True)
    newest = await approved_bulletin(sessions, areas=(COMMUNE,), urgent=True)
    async with sessions.begin() as session:
        for bulletin_id, minutes in ((bulletin, 0), (newest, 1)):
            sent = await session.get_one(Bulletin, bulletin_id)
            sent.state = BulletinState.sent
            sent.updated_at = NOW + dt.timedelta(minutes=minutes)
    values = {"topic": topic, "bulletin": bulletin, "bot": bot_id}
    # The wall clock, as in the service: each turn moves the address's last_seen_at.
    conversation = Conversation(sessions)
    counter = Counter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    people = [str(CHAT_BASE + i) for i in range(args.people)]
    signups = [str(CHAT_BASE + args.people + i) for i in range(args.people)]
    phases = (KINDS[: KINDS.index("start")], KINDS[KINDS.index("start") :])
    for n, phase in enumerate(phases):  # the warm-up
        for kind in phase:
            await turn(conversation, event_for(kind, str(CHAT_BASE - 1 - n), 0, values))
    results = []
    profile = cProfile.Profile() if args.profile else None
    for kind in KINDS:
        phase = phases[1] if kind in phases[1] else phases[0]
        chats = signups if phase is phases[1] else people
        if args.echo == kind:  # one more turn of this kind, by a person of its own
            for before in phase[: phase.index(kind) + 1]:
                counter.echo = before == kind
                echoed = str(CHAT_BASE - 3)
                replies = await turn(conversation, event_for(before, echoed, 0, values))
            print(f"-- one '{kind}' turn: {len(counter.lines)} statements")
            print("\n".join(counter.lines))
            print("-- replies:", [r.text[:60] for r in replies])
            counter.echo, counter.lines = False, []
        gc.collect()
        counter.statements = 0
        started = time.process_time()
        if profile is not None and kind in args.profile:
            profile.enable()
        for n, chat in enumerate(chats):
            replies = await turn(conversation, event_for(kind, chat, n, values))
            if not replies:
                raise RuntimeError(f"no answer to a '{kind}' turn")
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - started
        results.append((kind, counter.statements / len(chats), cpu * 1000 / len(chats)))
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.lines)
        print(out.getvalue())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--people", type=int, default=300, help="turns of each kind")
    parser.add_argument("--repeat", type=int, default=1, help="runs; CPU is the best of them")
    parser.add_argument("--echo", choices=KINDS, help="print one turn's statements")
    parser.add_argument("--profile", nargs="*", choices=KINDS, help="cProfile these kinds")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key")
    parser.add_argument("--lines", type=int, default=40, help="cProfile lines shown")
    parser.add_argument("--default-gc", action="store_true", help="CPython's gc settings")
    args = parser.parse_args(argv)
    print(command_line())
    print(f"{args.database}, {args.people} turns of each kind, {use_service_gc(args.default_gc)}")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for kind, statements, cpu in asyncio.run(run(args)):
            old = best.get(kind)
            best[kind] = (statements, cpu if old is None else min(old[1], cpu))
    print(f"{'turn':<10} {'statements':>10} {'CPU ms':>8}  (CPU: best of {args.repeat})")
    for kind in KINDS:
        statements, cpu = best[kind]
        print(f"{kind:<10} {statements:>10.1f} {cpu:>8.2f}")
    statements = sum(s for s, _ in best.values()) / len(best)
    cpu = sum(c for _, c in best.values()) / len(best)
    print(f"{'mean':<10} {statements:>10.1f} {cpu:>8.2f}")


if __name__ == "__main__":
    main()
