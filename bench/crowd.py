"""Crowds at a bot's limits: a QR poster's crowd, the same crowd during a broadcast, and
thousands of "Đã nhận" presses after a storm warning, against a fake Bot API process.

Targets (the issue; DESIGN "Everything a bot sends shares one budget"): at 30 msg/s per bot,
~1 msg/s per chat and 80 ms latency, 1,000 people writing within 5 s all get their first
answer, p95 within people / rate + 5 s, at most one 429, no duplicates (Telegram and Zalo);
with a 3,000-person routine broadcast running, every reply arrives, the broadcast goes out
exactly once and the bot's sends stay >= 97 % of its limit; 2,000 presses within 10 s of
their warning are each recorded once and answered.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import logging
import os
import resource
import socket
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.common import (
    CHAT_BASE,
    NOW,
    add_audience,
    approved_bulletin,
    area_ids,
    command_line,
    max_in_window,
    new_run,
    pg_database,
    prepared_database,
    sqlite_url,
    steady_rate,
    topic_ids,
    use_service_gc,
)
from bench.fake_server import FakeProcess, Stalls, add_priority_option
from bot import texts
from broadcasts import runs
from broadcasts.subscribers import ensure_bot
from db import schema
from db.models import (
    ENV_PLATFORMS,
    Acknowledgement,
    Answer,
    BroadcastRun,
    Delivery,
)
from haidang.runtime import AudioPart, OffPart, Service
from haidang.settings import Settings

CROWD_BASE = 2_000_000_000  # chat ids of the people who write: CROWD_BASE + n
READER_BASE = CHAT_BASE  # chat ids of the broadcast's audience: READER_BASE + n
SIGNED_UP = "đã đăng ký nhận tin của Đặc khu Cát Hải"  # the answer to /start c11914
WARNING_MARK = "Gió mạnh cấp 6"  # what identifies the broadcast's text in the fake's log
SETTLE_S = 1.5  # after the last answer: anything sent twice would have arrived by now
PROGRESS_EVERY_S = 10.0
LIMITED = {
    "telegram": {"sendMessage", "sendPhoto", "sendAudio", "sendVoice", "sendDocument"},
    "zalo": {"sendMessage", "sendPhoto", "sendSticker", "sendVoice"},
}


# --- the database and the service ---------------------------------------------------------


@asynccontextmanager
async def fresh_database(
    kind: str, tmp: Path
) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    """A brand-new schema (create_all, the 2025 map seeded, stamped as migrated: the
    service refuses an unmigrated one): a SQLite file, or a throwaway PostgreSQL database."""
    async with _url(kind, tmp) as url:
        engine, sessions = await prepared_database(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
                )
                await connection.execute(
                    text("INSERT INTO alembic_version VALUES (:v)"), {"v": schema.head_revision()}
                )
            yield engine, sessions
        finally:
            await engine.dispose()


@asynccontextmanager
async def _url(kind: str, tmp: Path) -> AsyncIterator[str]:
    if kind == "postgresql":
        async with pg_database() as url:
            yield url
    else:
        yield sqlite_url(str(tmp / "crowd.db"))


async def configure_bots(
    sessions: async_sessionmaker[AsyncSession], rate: float, gap: float
) -> dict[str, int]:
    """Both bots at the limit's rate and per-chat gap, quiet hours off (a bench must not
    pass or fail by the hour it runs at); their ids by platform."""
    ids = {}
    async with sessions.begin() as session:
        for platform in ENV_PLATFORMS:
            bot = await ensure_bot(session, platform)
            bot.quiet_start = bot.quiet_end = None
            bot.rate_per_second, bot.per_chat_interval = rate, gap
            ids[platform.value] = bot.id
    return ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def running_service(
    engine: AsyncEngine, platform: str, fake: FakeProcess, args: argparse.Namespace, tmp: Path
) -> AsyncIterator[Service]:
    """`haidang serve`'s Service in this loop with one bot (the other is off), as
    tests/bot/harness.running_service starts it; stopped cleanly afterwards."""
    port = free_port()
    webhook = args.updates == "webhook"
    values: dict[str, Any] = {
        "data_dir": tmp / "var",
        "http_port": port,
        "public_base_url": f"http://127.0.0.1:{port}" if webhook else None,
        # Never the online voice: the bench only ever talks to 127.0.0.1.
        "tts_engine": "espeak",
        f"{platform}_bot_token": fake.info["token"],
        f"{platform}_api_base_url": fake.info["base_url"],
        f"{platform}_webhook_secret": f"{platform}-secret-123" if webhook else None,
    }
    service = Service(Settings(_env_file=None, **values), engine=engine)
    if not args.voice:
        # Without the audio part no voice is rendered, so a broadcast is its text alone:
        # one request per person, what the targets count (--voice sends the voice too).
        service.parts = [
            OffPart("audio", "off in bench.crowd") if isinstance(p, AudioPart) else p
            for p in service.parts
        ]
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        configured = [p for p in service.parts if not isinstance(p, OffPart)]
        deadline = time.monotonic() + 30
        while not all(p.status().active for p in configured) and not task.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {service.statuses()}")
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


class LogTally(logging.Handler):
    """Counts what the service logged at WARNING and above, by logger, keeping the first
    message of each (printed per scenario instead of flooding the figures)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.name] += 1
        self.errors += record.levelno >= logging.ERROR
        self.first.setdefault(record.name, record.getMessage()[:160])

    def show(self) -> None:
        for name, n in self.counts.most_common():
            print(f"  service log: {n} x {name} (first: {self.first[name]})")
        self.counts.clear()
        self.first.clear()
        self.errors = 0


TALLY = LogTally()


# --- talking to the fake -----------------------------------------------------------------


class Fake:
    """The fake process, asked from a thread so the service in this loop never waits."""

    def __init__(self, process: FakeProcess) -> None:
        self.process = process
        self._lock = asyncio.Lock()

    async def ask(self, command: str | dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            return await asyncio.to_thread(self.process.ask, command)


async def wait_for(
    what: str,
    done: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 - a bench's give-up time, reported, not raised
    progress: Callable[[], Awaitable[str]],
) -> bool:
    """Poll `done` every 0.25 s, printing `progress` now and then; False on timeout."""
    started = time.monotonic()
    shown = started
    while not await done():
        now = time.monotonic()
        if now - started > timeout:
            print(f"  gave up waiting for {what} after {timeout:.0f} s: {await progress()}")
            return False
        if now - shown >= PROGRESS_EVERY_S:
            shown = now
            print(f"  {now - started:5.0f} s  {await progress()}", flush=True)
        await asyncio.sleep(0.25)
    return True


async def run_states(sessions: async_sessionmaker[AsyncSession], run_id: int) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.run_id == run_id)
            .group_by(Delivery.state)
        )
        return {state.value: int(n) for state, n in rows.all()}


async def settled(sessions: async_sessionmaker[AsyncSession], run_id: int) -> bool:
    states = await run_states(sessions, run_id)
    return not states.get("pending") and not states.get("sending")


async def answers_left(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Stored answers not cleared: pending (unsent) and failed, by state."""
    async with sessions() as session:
        rows = await session.execute(select(Answer.state, func.count()).group_by(Answer.state))
        return {state.value: int(n) for state, n in rows.all()}


async def broadcast_to(
    sessions: async_sessionmaker[AsyncSession],
    bot_id: int,
    fake: Fake,
    platform: str,
    people: int,
    *,
    urgent: bool,
) -> tuple[int, int]:
    """`people` subscribers of Cát Hải on the bot (all topics) and an approved bulletin to
    them, not fanned out yet: (bulletin id, run id)."""
    async with sessions.begin() as session:
        await add_audience(
            session, count=people, bot_id=bot_id, area_ids=await area_ids(session, code="11914"),
            topic_ids=await topic_ids(session), chat_base=READER_BASE,
        )  # fmt: skip
    if platform == "zalo":  # Zalo only takes messages to chats that wrote before
        await fake.ask({"do": "register", "base": READER_BASE, "count": people})
    bulletin_id = await approved_bulletin(sessions, urgent=urgent)
    return bulletin_id, await new_run(sessions, bulletin_id)


async def fan_out(sessions: async_sessionmaker[AsyncSession], run_id: int) -> int:
    async with sessions.begin() as session:
        run = await session.get_one(BroadcastRun, run_id)
        return await runs.fan_out(session, run, NOW)


# --- what the fake saw --------------------------------------------------------------------


@dataclass
class Sent:
    at: float  # when the fake answered it (accepted)
    chat: str | None
    method: str
    text: str
    query: str | None  # answerCallbackQuery: the query it answers


@dataclass
class Log:
    """The fake's records of one scenario (its clock, seconds since the epoch)."""

    platform: str
    sent: list[Sent]
    wrote: dict[str, float]  # chat -> when its person wrote
    presses: list[tuple[float, str, str | None]]  # (when, chat, callback query id)
    press_errors: list[str]
    stalls: list[tuple[float, float]]  # the fake's late wake-ups: (when, seconds late)
    deliveries: list[tuple[float, int | None]]  # webhook POSTs: (answered at, HTTP status)
    limited: list[tuple[float, bool, str | None]]  # arrivals the limits count: (when,
    # refused, chat)
    stats: dict[str, Any]

    @classmethod
    def of(cls, platform: str, raw: dict[str, Any]) -> Log:
        sent = [
            Sent(float(t), None if chat is None else str(chat), method, text or "", query)
            for t, chat, method, text, query in raw["sent"]
        ]
        return cls(
            platform=platform,
            sent=sent,
            wrote={str(chat): float(t) for t, chat in raw["wrote"]},
            presses=[(float(t), str(chat), query) for t, chat, query in raw["presses"]],
            press_errors=list(raw.get("press_errors", [])),
            stalls=[(float(t), float(late)) for t, late in raw.get("stalls", [])],
            deliveries=[(float(t), status) for t, status in raw.get("deliveries", [])],
            limited=[
                (float(t), bool(refused), None if chat is None else str(chat))
                for t, refused, chat in raw["limited"]
            ],
            stats=raw["stats"],
        )

    def messages(self) -> dict[str, list[Sent]]:
        """Accepted messages (not edits, toasts or chat actions) by chat, in order."""
        by_chat: dict[str, list[Sent]] = defaultdict(list)
        for record in self.sent:
            if record.chat is not None and record.method in LIMITED[self.platform]:
                by_chat[record.chat].append(record)
        for records in by_chat.values():
            records.sort(key=lambda r: r.at)
        return by_chat

    def accepted_arrivals(self) -> list[float]:
        return sorted(t for t, refused, _ in self.limited if not refused)

    @property
    def responses_429(self) -> int:
        return int(self.stats["responses_429"])


@dataclass
class Verdicts:
    lines: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, ok: bool) -> None:
        self.lines.append((what, ok))

    def show(self) -> bool:
        for what, ok in self.lines:
            print(f"  {what}: {'OK' if ok else 'MISSED'}")
        return all(ok for _, ok in self.lines)


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """Median, p95 and max (0s when empty)."""
    if not values:
        return 0.0, 0.0, 0.0
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95, ordered[-1]


@dataclass
class CrowdFigures:
    people: int
    answered: int
    waits: list[float]  # seconds from writing to the first answer, per person answered
    duplicates: int  # messages to a person repeating one they already had
    right: int | None  # first answers that are what --text asks for (None: not checked)
    apologies: int  # "Hải Đăng đang gặp trục trặc": a turn that failed
    messages: int  # messages the crowd received
    first_wrote: float
    last_first_answer: float


def crowd_figures(log: Log, people: int, expected: str | None) -> CrowdFigures:
    """`expected`: a fragment every first answer must contain (None: not checked)."""
    messages = log.messages()
    waits, duplicates, received, right, apologies = [], 0, 0, 0, 0
    last_answer = 0.0
    for chat, wrote in log.wrote.items():
        mine = messages.get(chat, [])
        received += len(mine)
        duplicates += sum(n - 1 for n in Counter(r.text for r in mine).values())
        apologies += sum(r.text == texts.APOLOGY for r in mine)
        first = next((r for r in mine if r.at >= wrote), None)
        if first is not None:
            waits.append(first.at - wrote)
            last_answer = max(last_answer, first.at)
            right += expected is not None and expected in first.text
    return CrowdFigures(
        people=people,
        answered=len(waits),
        waits=waits,
        duplicates=duplicates,
        right=right if expected is not None else None,
        apologies=apologies,
        messages=received,
        first_wrote=min(log.wrote.values(), default=0.0),
        last_first_answer=last_answer,
    )


def check_content(verdicts: Verdicts, figures: CrowdFigures) -> None:
    """The first answers are the sign-up, not an apology for a failed turn."""
    if figures.right is not None:
        verdicts.check(
            f"first answers that are the sign-up {figures.right}/{figures.people}",
            figures.right == figures.people,
        )
    verdicts.check(f"apologies {figures.apologies} == 0", figures.apologies == 0)


def rate_in(arrivals: list[float], start: float, end: float) -> float:
    """Accepted arrivals per second from the first to the last of those in [start, end]."""
    inside = [t for t in arrivals if start <= t <= end]
    return steady_rate(inside)


def print_common(log: Log, args: argparse.Namespace, wall: float, cpu: dict[str, float]) -> None:
    arrivals = log.accepted_arrivals()
    every = sorted(t for t, _, _ in log.limited)
    per_chat_max = 0
    by_chat: dict[str, list[float]] = defaultdict(list)
    for stamp, _, chat in log.limited:
        if chat is not None:
            by_chat[chat].append(stamp)
    for stamps in by_chat.values():
        per_chat_max = max(per_chat_max, max_in_window(sorted(stamps)))
    print(
        f"  limited requests accepted {len(arrivals)}, refused {len(every) - len(arrivals)}; "
        f"most arrivals in any 1 s {max_in_window(every)} (limit {args.rate:g}); most to one "
        f"chat in any 1 s {per_chat_max} (limit {args.chat_rate})"
    )
    print(
        f"  wall {wall:.1f} s; CPU: bench+service {cpu['service']:.1f} s "
        f"({cpu['service'] / wall * 100:.0f} % of a core), fake {cpu['fake']:.1f} s; "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )


def print_429s(log: Log, service_stalls: list[tuple[float, float]]) -> None:
    """For each 429 (up to five): which window refused it, and the latest wake-ups of the
    fake's loop and of the service's in the second before it. A fake that woke late
    stamped requests sent evenly as a bunch; a service whose loop was late wrote requests
    later than its pacer counted them; either way the pacer's 15 ms margin was spent."""
    first = log.limited[0][0] if log.limited else 0.0
    shown = 0
    for index, (t, refused, chat) in enumerate(log.limited):
        if not refused or shown == 5:
            continue
        shown += 1
        before = [a for a in log.limited[:index] if t - a[0] < 1.0]
        same = [a[0] for a in before if a[2] == chat and chat is not None]
        which = (
            f"the chat's (its previous {(t - same[-1]) * 1000:.0f} ms before)"
            if same
            else f"the bot's ({len(before)} arrivals in the second before, the first "
            f"{(t - before[0][0]) * 1000:.1f} ms before)"
            if before
            else "?"
        )
        fake = max((late for at, late in log.stalls if t - 1.1 <= at <= t), default=0.0)
        ours = max((late for at, late in service_stalls if t - 1.1 <= at <= t), default=0.0)
        print(
            f"  429 at {t - first:.1f} s from {which} window; in the second before, the "
            f"fake's loop woke up to {fake * 1000:.0f} ms late, the service's "
            f"{ours * 1000:.0f} ms"
        )


def print_crowd(figures: CrowdFigures, log: Log, label: str, queue: Queue) -> None:
    median, p95, worst = quantiles(figures.waits)
    dry = queue.dry(figures.first_wrote, figures.last_first_answer)
    span = figures.last_first_answer - figures.first_wrote if figures.answered else 0.0
    print(
        f"  {label}: {figures.answered}/{figures.people} answered; time to first answer "
        f"median {median:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s; last first answer "
        f"{span:.1f} s after the first person wrote; {figures.messages} messages to them, "
        f"{figures.duplicates} duplicates, {figures.apologies} apologies; 429s "
        f"{log.responses_429}"
    )
    if log.deliveries:
        # The fake POSTs a chat's updates one after another, and like the platform over
        # one connection (Zalo) or up to setWebhook's max_connections (Telegram: 40): how
        # fast the service answers its webhook bounds how fast a crowd reaches it.
        stamps = sorted(t for t, _ in log.deliveries)
        failed = sum(1 for _, status in log.deliveries if status != 200)
        print(
            f"  webhook: {len(stamps)} updates POSTed, the last answered "
            f"{stamps[-1] - figures.first_wrote:.1f} s after the first person wrote "
            f"({(stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1) * 1000:.0f} ms between "
            f"answered POSTs); {failed} not answered 200"
        )
    print(
        f"  no answer was waiting for a slot during {dry:.1f} s of those "
        f"{figures.last_first_answer - figures.first_wrote:.1f} s (the turns were behind)"
    )


# --- the scenarios -----------------------------------------------------------------------


class Queue:
    """The bot's outbox sampled every 0.1 s (its public stats): how many answers and
    broadcast sends were waiting for a slot. No answer waiting while people still wait
    for theirs means the turns (the conversation and its database writes), not the
    platform's limit, held them up."""

    def __init__(self, service: Service, bot_id: int) -> None:
        self.service = service
        self.bot_id = bot_id
        self.samples: list[tuple[float, int, int]] = []  # (time.time(), answers, broadcast)

    async def watch(self) -> None:
        while True:
            outbox = self.service.outboxes.get(self.bot_id)
            if outbox is not None:
                q = outbox.stats()
                self.samples.append((time.time(), q.replies_waiting, q.broadcast_waiting))
            await asyncio.sleep(0.1)

    def dry(self, start: float, end: float) -> float:
        """Seconds in [start, end] with no answer waiting for a slot."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        return sum(0.1 for s in inside if s[1] == 0)


@dataclass
class Context:
    args: argparse.Namespace
    platform: str
    fake: Fake
    service: Service
    sessions: async_sessionmaker[AsyncSession]
    bot_id: int
    stalls: Stalls
    queue: Queue

    @property
    def first_text(self) -> str:
        return str(self.args.text)

    @property
    def expected(self) -> str | None:
        """What the first answer to --text must say: the QR poster link subscribes at once."""
        return SIGNED_UP if self.first_text.strip() == "/start c11914" else None

    async def progress(self) -> dict[str, Any]:
        return await self.fake.ask({"do": "progress"})

    async def log(self) -> Log:
        """Everything the fake saw (also written to --keep-logs, for a closer look)."""
        raw = await self.fake.ask({"do": "log"})
        if self.args.keep_logs is not None:
            name = f"{self.args.scenario_now}-{self.platform}-{os.getpid()}.json"
            await asyncio.to_thread(_keep, Path(self.args.keep_logs) / name, raw)
        return Log.of(self.platform, raw)


def _keep(path: Path, raw: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))


async def crowd(ctx: Context) -> tuple[Log, Verdicts, float]:
    """1,000 people write within 5 s; all answered, p95 goal, <= one 429, no duplicates."""
    args = ctx.args
    started = time.monotonic()
    await ctx.fake.ask(
        {"do": "write", "base": CROWD_BASE, "count": args.people, "text": ctx.first_text,
         "over": args.over},
    )  # fmt: skip

    async def answered() -> bool:
        return bool(int((await ctx.progress())["answered"]) >= args.people)

    async def shown() -> str:
        p = await ctx.progress()
        return f"wrote {p['wrote']}, answered {p['answered']}, 429s {p['responses_429']}"

    give_up = args.people / args.rate * 3 + args.over + 60
    await wait_for("every first answer", answered, give_up, shown)
    await asyncio.sleep(SETTLE_S)
    wall = time.monotonic() - started
    log = await ctx.log()
    figures = crowd_figures(log, args.people, ctx.expected)
    print_crowd(figures, log, "crowd", ctx.queue)
    arrivals = log.accepted_arrivals()
    share = steady_rate(arrivals) / args.rate * 100
    print(f"  answers went at {share:.1f} % of the limit (first to last accepted arrival)")
    goal = args.people / args.rate + args.over
    _, p95, _ = quantiles(figures.waits)
    verdicts = Verdicts()
    verdicts.check(f"all {args.people} got their first answer", figures.answered == args.people)
    verdicts.check(
        f"p95 {p95:.1f} s <= {goal:.1f} s (people / rate + {args.over:g} s)", p95 <= goal
    )
    verdicts.check(f"429s {log.responses_429} <= 1", log.responses_429 <= 1)
    verdicts.check(f"duplicate replies {figures.duplicates} == 0", figures.duplicates == 0)
    check_content(verdicts, figures)
    return log, verdicts, wall


async def crowd_during_broadcast(ctx: Context) -> tuple[Log, Verdicts, float]:
    """The same crowd while a routine broadcast runs: every reply delivered, the broadcast
    exactly once, the bot's sends >= 97 % of its limit, <= one 429."""
    args = ctx.args
    readers = args.readers
    _, run_id = await broadcast_to(
        ctx.sessions, ctx.bot_id, ctx.fake, ctx.platform, readers, urgent=False
    )
    started = time.monotonic()
    total = await fan_out(ctx.sessions, run_id)

    async def under_way() -> bool:  # a few seconds of broadcast before the crowd comes
        return bool(int((await ctx.progress())["accepted_limited"]) >= args.rate * 3)

    async def shown() -> str:
        p = await ctx.progress()
        states = await run_states(ctx.sessions, run_id)
        return (
            f"wrote {p['wrote']}, answered {p['answered']}, sent {p['accepted_limited']}, "
            f"429s {p['responses_429']}, broadcast {states}"
        )

    await wait_for("the broadcast to start", under_way, 60, shown)
    await ctx.fake.ask(
        {"do": "write", "base": CROWD_BASE, "count": args.people, "text": ctx.first_text,
         "over": args.over},
    )  # fmt: skip

    async def done() -> bool:
        answered = int((await ctx.progress())["answered"]) >= args.people
        return answered and await settled(ctx.sessions, run_id)

    give_up = (readers + args.people) / args.rate * 3 + 60
    await wait_for("the answers and the broadcast", done, give_up, shown)
    await asyncio.sleep(SETTLE_S)
    wall = time.monotonic() - started
    log = await ctx.log()
    figures = crowd_figures(log, args.people, ctx.expected)
    print_crowd(figures, log, "crowd", ctx.queue)

    messages = log.messages()
    reader_chats = [str(READER_BASE + n) for n in range(readers)]
    got = Counter(sum(WARNING_MARK in r.text for r in messages.get(c, [])) for c in reader_chats)
    once = got.get(1, 0)
    extra = sum((n - 1) * k for n, k in got.items() if n > 1)
    states = await run_states(ctx.sessions, run_id)
    async with ctx.sessions() as session:
        run_state = (await session.get_one(BroadcastRun, run_id)).state.value
    broadcast_sends = sorted(
        r.at for c in reader_chats for r in messages.get(c, []) if WARNING_MARK in r.text
    )
    print(
        f"  broadcast: {total} deliveries, {once}/{readers} readers got it exactly once, "
        f"{got.get(0, 0)} never, {extra} extra; database {states}, run {run_state}; "
        f"{len(broadcast_sends)} sends from "
        f"{(broadcast_sends[0] - figures.first_wrote) if broadcast_sends else 0:+.1f} s to "
        f"{(broadcast_sends[-1] - figures.first_wrote) if broadcast_sends else 0:+.1f} s "
        "(0 = first person wrote)"
    )
    # LANE_SHARE promises a waiting routine send at least one slot in ten: the longest
    # stretch without one while the crowd was answered shows when it could not wait.
    during = [figures.first_wrote, *(t for t in broadcast_sends if t >= figures.first_wrote)]
    during.append(max(figures.last_first_answer, during[-1]))
    hole, hole_at = max(
        ((later - earlier, earlier) for earlier, later in itertools.pairwise(during)),
        default=(0.0, figures.first_wrote),
    )
    print(
        f"  longest stretch without a broadcast send while the crowd was answered: "
        f"{hole:.1f} s, from {hole_at - figures.first_wrote:+.1f} s"
    )
    # Both backlogged: from the first person writing (the broadcast is under way) to the
    # last first answer, or to the broadcast's last send if it ran out first.
    arrivals = log.accepted_arrivals()
    end = figures.last_first_answer
    if broadcast_sends:
        end = min(end, broadcast_sends[-1])
    window = end - figures.first_wrote
    both = rate_in(arrivals, figures.first_wrote, end)
    share = both / args.rate * 100
    crowd_in = sum(
        1 for c in log.wrote for r in messages.get(c, []) if figures.first_wrote <= r.at <= end
    )
    cast_in = sum(1 for t in broadcast_sends if figures.first_wrote <= t <= end)
    whole = steady_rate(arrivals) / args.rate * 100
    print(
        f"  while both were backlogged ({window:.1f} s): {both:.2f} msg/s = {share:.1f} % of "
        f"the limit; of it answers {crowd_in / max(window, 1e-9):.1f}/s, broadcast "
        f"{cast_in / max(window, 1e-9):.1f}/s; whole run {whole:.1f} % of the limit"
    )
    verdicts = Verdicts()
    verdicts.check(
        f"every reply delivered ({figures.answered}/{args.people})",
        figures.answered == args.people,
    )
    verdicts.check(
        f"broadcast complete exactly once ({once}/{readers} once, {extra} extra, "
        f"{states}, run {run_state})",
        once == readers and extra == 0 and states == {"sent": readers} and run_state == "done",
    )
    if window >= 5.0:
        verdicts.check(
            f"bot's sends {share:.1f} % >= 97 % of its limit while both waited", share >= 97
        )
    else:  # a few sends either side of a short window say nothing about a rate
        print(f"  (both backlogged for {window:.1f} s only: the rate is not judged)")
    verdicts.check(f"429s {log.responses_429} <= 1", log.responses_429 <= 1)
    verdicts.check(f"duplicate replies {figures.duplicates} == 0", figures.duplicates == 0)
    check_content(verdicts, figures)
    return log, verdicts, wall


async def presses_after_warning(ctx: Context) -> tuple[Log, Verdicts, float]:
    """An urgent warning to 2,000; each presses "Đã nhận" within 10 s of receiving it:
    every press recorded once and answered, none lost."""
    args = ctx.args
    people = args.warned
    bulletin_id, run_id = await broadcast_to(
        ctx.sessions, ctx.bot_id, ctx.fake, ctx.platform, people, urgent=True
    )
    await ctx.fake.ask(
        {"do": "press", "fragment": WARNING_MARK, "data": f"ack:{bulletin_id}",
         "text": "Đã nhận", "within": args.press_within},
    )  # fmt: skip
    started = time.monotonic()
    await fan_out(ctx.sessions, run_id)
    answers = ctx.service.answers[ctx.bot_id]
    telegram = ctx.platform == "telegram"

    async def done() -> bool:
        p = await ctx.progress()
        if int(p["pressed"]) + int(p["press_errors"]) < people:
            return False
        # Every press answered as the platform saw it: a callback answer (Telegram), a
        # message after the press (Zalo, where a press waits in getUpdates until fetched).
        answered = int(p["callbacks"]) if telegram else int(p["press_replied"])
        if answered < int(p["pressed"]):
            return False
        if answers.under_way or (await answers_left(ctx.sessions)).get("pending"):
            return False
        return await settled(ctx.sessions, run_id)

    async def shown() -> str:
        p = await ctx.progress()
        return (
            f"warned {p['warned']}, pressed {p['pressed']}, answered "
            f"{p['callbacks'] if telegram else p['press_replied']}, "
            f"answers under way {answers.under_way}, 429s {p['responses_429']}"
        )

    give_up = people * 3 / args.rate * 3 + 60
    await wait_for("every press answered", done, give_up, shown)
    await asyncio.sleep(SETTLE_S)
    wall = time.monotonic() - started
    log = await ctx.log()

    messages = log.messages()
    warned_at: dict[str, float] = {}
    warnings = Counter[str]()
    for chat, records in messages.items():
        for record in records:
            if WARNING_MARK in record.text:
                warnings[chat] += 1
                warned_at.setdefault(chat, record.at)
    callbacks = {r.query: r.at for r in log.sent if r.method == "answerCallbackQuery"}
    toasts = {r.query: r.text for r in log.sent if r.method == "answerCallbackQuery"}
    thanked = 0  # Telegram: toasts that thank (Zalo's answers are matched on the thanks)
    waits: list[float] = []
    lost = 0
    last_answer = 0.0
    for pressed_at, chat, query in log.presses:
        if telegram:
            answered_at = callbacks.get(query)
            thanked += toasts.get(query) == texts.ACK_THANKS
        else:
            answered_at = next(
                (
                    r.at
                    for r in messages.get(chat, [])
                    if r.at >= pressed_at and r.text == texts.ACK_THANKS
                ),
                None,
            )
        if answered_at is None:
            lost += 1
            continue
        waits.append(answered_at - pressed_at)
        last_answer = max(last_answer, answered_at)
    async with ctx.sessions() as session:
        acks = int(
            await session.scalar(
                select(func.count()).where(Acknowledgement.bulletin_id == bulletin_id)
            )
            or 0
        )
        ackers = int(
            await session.scalar(
                select(func.count(func.distinct(Acknowledgement.subscriber_id))).where(
                    Acknowledgement.bulletin_id == bulletin_id
                )
            )
            or 0
        )
    states = await run_states(ctx.sessions, run_id)
    edits = {r.chat for r in log.sent if r.method == "editMessageReplyMarkup"}
    first_warning = min(warned_at.values(), default=0.0)
    last_warning = max(warned_at.values(), default=0.0)
    last_press = max((t for t, _, _ in log.presses), default=0.0)
    median, p95, worst = quantiles(waits)
    print(
        f"  warning: {len(warned_at)}/{people} warned ({sum(warnings.values())} sends), "
        f"database {states}; first to last warning {last_warning - first_warning:.1f} s"
    )
    print(
        f"  presses: {len(log.presses)} made ({len(log.press_errors)} could not be made), "
        f"{len(waits)} answered, {lost} lost; press to answer median {median:.2f} s, p95 "
        f"{p95:.2f} s, max {worst:.2f} s; all answered {last_answer - first_warning:.1f} s "
        f"after the first warning, {last_answer - last_press:.1f} s after the last press"
    )
    what = "buttons removed" if telegram else "thanks sent"
    removed = len(edits) if telegram else len(waits)
    print(
        f"  acknowledgements in the database {acks} ({ackers} people); {what} {removed}; "
        f"429s {log.responses_429}"
    )
    for error in log.press_errors[:3]:
        print(f"  press error: {error}")
    verdicts = Verdicts()
    verdicts.check(
        f"every press recorded once ({acks} rows, {ackers} people, {len(log.presses)} presses)",
        acks == ackers == len(log.presses) == people,
    )
    verdicts.check(f"every press answered, {lost} lost", lost == 0 and len(waits) == people)
    if telegram:
        verdicts.check(f"toasts that thank {thanked}/{people}", thanked == people)
    verdicts.check(
        f"warning delivered once to each ({len(warned_at)}/{people})",
        len(warned_at) == people and max(warnings.values(), default=0) == 1,
    )
    verdicts.check(f"429s {log.responses_429} <= 1", log.responses_429 <= 1)
    return log, verdicts, wall


SCENARIOS: dict[str, Callable[[Context], Awaitable[tuple[Log, Verdicts, float]]]] = {
    "crowd": crowd,
    "broadcast": crowd_during_broadcast,
    "acks": presses_after_warning,
}
TITLES = {
    "crowd": "a crowd of {people} writes within {over:g} s",
    "broadcast": "the crowd of {people} during a routine broadcast to {readers}",
    "acks": 'an urgent warning to {warned}; each presses "Đã nhận" within {press_within:g} s',
}


async def one(args: argparse.Namespace, scenario: str, platform: str) -> bool:
    """One scenario on one platform: a fresh database, fake and service; its figures."""
    args.scenario_now = scenario
    title = TITLES[scenario].format(**vars(args))
    print(f"\n== {scenario} / {platform}: {title}")
    print(f"$ {command_line()}")
    fake_process = FakeProcess(
        latency=args.latency, sigma=args.latency_sigma, rate_limit=round(args.rate),
        chat_rate_limit=args.chat_rate, platform=platform,
        realtime=args.fake_priority == "realtime",
    )  # fmt: skip
    fake = Fake(fake_process)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-crowd-") as tmp:
            async with fresh_database(args.database, Path(tmp)) as (engine, sessions):
                ids = await configure_bots(sessions, args.rate, 1.0 / args.chat_rate)
                async with running_service(engine, platform, fake_process, args, Path(tmp)) as svc:
                    stalls, queue = Stalls(), Queue(svc, ids[platform])
                    watchers = [asyncio.create_task(w.watch()) for w in (stalls, queue)]
                    ctx = Context(args, platform, fake, svc, sessions, ids[platform], stalls, queue)
                    print(
                        f"  service up; {scenario} starts (fake: {fake_process.priority})",
                        flush=True,
                    )
                    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
                    fake_before = float((await fake.ask("stats"))["cpu_s"])
                    log, verdicts, wall = await SCENARIOS[scenario](ctx)
                    for watcher in watchers:
                        watcher.cancel()
                    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
                    cpu = {
                        "service": cpu_after.ru_utime + cpu_after.ru_stime
                        - cpu_before.ru_utime - cpu_before.ru_stime,
                        "fake": float(log.stats["cpu_s"]) - fake_before,
                    }  # fmt: skip
                left = await answers_left(sessions)
        print_common(log, args, wall, cpu)
        print_429s(log, stalls.seen)
        print(f"  stored answers left after stopping: {left or 'none'}")
        errors = TALLY.errors
        TALLY.show()
        verdicts.check(f"errors in the service's log {errors} == 0", errors == 0)
        verdicts.check(f"no answer left unsent or failed ({left or 'none'})", not left)
        return verdicts.show()
    finally:
        fake_process.close()


async def main_async(args: argparse.Namespace) -> None:
    platforms = ["telegram", "zalo"] if args.platform == "both" else [args.platform]
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    for scenario in scenarios:
        for platform in platforms:
            results.append((scenario, platform, await one(args, scenario, platform)))
    print("\nsummary:")
    for scenario, platform, ok in results:
        print(f"  {scenario:<10} {platform:<9} {'OK' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1000, help="the crowd (1000)")
    parser.add_argument("--over", type=float, default=5.0, help="s the crowd writes in (5)")
    parser.add_argument("--readers", type=int, default=3000, help="routine broadcast (3000)")
    parser.add_argument("--warned", type=int, default=2000, help="urgent broadcast (2000)")
    parser.add_argument("--press-within", type=float, default=10.0, help="s after the warning (10)")
    parser.add_argument("--rate", type=float, default=30.0, help="limit per bot, msg/s (30)")
    parser.add_argument("--chat-rate", type=int, default=1, help="limit per chat, msg/s (1)")
    parser.add_argument("--latency", type=float, default=0.08, help="median s (0.08)")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="log-normal (0.5)")
    parser.add_argument("--platform", choices=["telegram", "zalo", "both"], default="both")
    parser.add_argument("--scenario", choices=["crowd", "broadcast", "acks", "all"], default="all")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--updates", choices=["polling", "webhook"], default="polling",
        help="how the bot receives updates (polling: the embedded default)",
    )  # fmt: skip
    parser.add_argument(
        "--text", default="/start c11914", help="what each person writes (a QR poster's link)"
    )
    parser.add_argument("--voice", action="store_true", help="render and send the voice too")
    add_priority_option(parser)
    parser.add_argument("--keep-logs", metavar="DIR", help="write the fake's records there")
    args = parser.parse_args()
    # The service's warnings are counted and summed up per scenario (TALLY), not printed.
    logging.basicConfig(level=logging.WARNING, handlers=[TALLY])
    print(f"$ {command_line()}")
    gc_label = use_service_gc(default_gc=False)
    print(
        f"fake: {args.rate:g} msg/s per bot, {args.chat_rate} msg/s per chat (sliding 1 s "
        f"windows, counted on arrival), log-normal latency median {args.latency * 1000:.0f} ms "
        f"sigma {args.latency_sigma}, in its own process; service: haidang.runtime.Service on "
        f"{args.database}, updates by {args.updates}, {gc_label}; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
