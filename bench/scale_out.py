"""Scaling out: 1, 2 and 4 Telegram bots (fakes at 30 msg/s each) run by 1 and 2 worker
processes (`haidang serve --role worker`) on one PostgreSQL database.

Goal (the issue): delivered msg/s grows with the number of bots, >= 0.95 x bots x 30 msg/s,
whatever the number of workers; zero 429s. Also shown: which worker ran which bots, each
worker's CPU per delivery over the send window, and the peak of PostgreSQL connections
the processes held (pg_stat_activity, by application_name).

Every platform's bots share one API base URL (TELEGRAM_API_BASE_URL), so the fakes run in
one process of their own (`--serve-fakes`, under SCHED_FIFO when allowed): one
`StampedTelegram` per bot, each with its own token and its own 30 msg/s window, behind one
port that routes `/bot<token>/<method>` to the fake of that token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from sqlalchemy import select, text

from bench.common import (
    PG_ADMIN_DSN,
    add_audience,
    approved_bulletin,
    area_ids,
    command_line,
    max_in_window,
    topic_ids,
)
from bench.fake_server import (
    Arrivals,
    Stalls,
    StampedTelegram,
    add_priority_option,
    fake_priority,
)
from broadcasts import bulletins, schedules
from broadcasts.bots import TokenBox
from broadcasts.subscribers import ensure_bot
from db import schema
from db.engine import make_engine, make_sessionmaker
from db.models import Official, Platform
from haidang.runtime import tune_gc
from haidang.settings import normalise_database_url

REPO = Path(__file__).resolve().parent.parent
PG_DSN = "postgresql://postgres@127.0.0.1:5432/{name}"
LIMIT = 30  # msg/s per bot: the fakes' window and each bot's rate
GOAL = 0.95  # of bots x LIMIT
CHAT_STRIDE = 10_000_000  # bot n's chats are 1_000_000_000 + n * CHAT_STRIDE + k
POLL_S = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def bot_token(n: int) -> str:
    """Bot n's token: a distinct account id each (bots refuse two bots of one account)."""
    return f"{7_100_000_000 + n}:AAHaiDangScaleOutBenchToken{n:02d}x"


def bot_name(n: int) -> str:
    return "default" if n == 0 else f"scale-{n}"


def bot_label(n: int) -> str:
    return "telegram" if n == 0 else f"telegram:{bot_name(n)}"


# --- the fakes' process ---------------------------------------------------------------------


async def serve_fakes(args: argparse.Namespace) -> None:
    """One StampedTelegram per token behind one port; commands on stdin as bench.fake_server:
    `stats`, `records`, `clear`, `quit`."""
    tokens = [bot_token(n) for n in range(args.serve_fakes)]
    fakes: dict[str, StampedTelegram] = {}
    arrivals: dict[str, Arrivals] = {}
    for n, token in enumerate(tokens):
        arrivals[token] = Arrivals(args.latency, args.sigma, seed=7 + n)
        fakes[token] = StampedTelegram(
            token=token, latency=arrivals[token], rate_limit_per_second=args.rate_limit
        )
        await fakes[token].start()  # on a port of its own too, unused: loop-side state

    async def route(request: web.Request) -> web.StreamResponse:
        fake = fakes.get(request.match_info["token"])
        if fake is None:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return web.json_response(body, status=401)
        return await fake._handle(request)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/bot{token}/{method}", route)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    tune_gc()
    stalls = Stalls()
    watcher = asyncio.create_task(stalls.watch())
    print(json.dumps({"base_url": f"http://127.0.0.1:{port}", "tokens": tokens}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "stats":
                counts = {}
                for token, fake in fakes.items():
                    s = fake.stats
                    counts[token] = {
                        "accepted_sends": s.accepted_sends,
                        "responses_429": s.responses_429,
                        "rate_limited": s.rate_limited,
                    }
                print(json.dumps({"fakes": counts, "cpu_s": time.process_time()}), flush=True)
            elif line == "records":
                records = {}
                for token, fake in fakes.items():
                    records[token] = {
                        "sends": [
                            [r.chat_id, r.timestamp, r.method]
                            for r in fake.sent
                            if r.method in StampedTelegram.SEND_METHODS
                        ],
                        "limited": [[t, refused] for t, refused, _ in fake.limited.stamps],
                    }
                answer = {"fakes": records, "stalls": stalls.seen, "cpu_s": time.process_time()}
                print(json.dumps(answer), flush=True)
            elif line == "clear":
                for token, fake in fakes.items():
                    fake.clear_log()
                    fake.limited.stamps.clear()
                    arrivals[token].stamps.clear()
                stalls.seen.clear()
                print(json.dumps({"cpu_s": time.process_time()}), flush=True)
            elif line in ("quit", ""):
                break
    finally:
        watcher.cancel()
        await runner.cleanup()
        for fake in fakes.values():
            await fake.stop()


class Fakes:
    """`--serve-fakes` in a subprocess (SCHED_FIFO when allowed), driven over stdin/stdout."""

    def __init__(self, count: int, *, latency: float, sigma: float, realtime: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.scale_out", "--serve-fakes", str(count),
             "--latency", str(latency), "--sigma", str(sigma), "--rate-limit", str(LIMIT)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            encoding="utf-8",
        )  # fmt: skip
        self.priority = fake_priority(self.process.pid, realtime=realtime)
        info = json.loads(self._line())
        self.base_url: str = info["base_url"]
        self.tokens: list[str] = info["tokens"]

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fakes' process exited")
        return line

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line())
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# --- database -------------------------------------------------------------------------------


async def _admin(statement: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def create_database(name: str) -> None:
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def seed(url: str, bots: int, people: int, secret_key: str, *, voice: bool) -> None:
    """Migrate; `bots` Telegram bots at LIMIT msg/s (quiet hours off), `people` subscribers
    of Cát Hải (11914) on each, and an urgent bulletin to all of them scheduled now (the
    scheduler process fires it). Without `voice` the people read English: the bulletin
    has no translation, so they get the Vietnamese text and no voice (sent in Vietnamese
    only): one message a delivery."""
    schema.upgrade(url)
    box = TokenBox(secret_key)

    async def build() -> None:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        try:
            from db.seed import seed_all

            async with sessions.begin() as session:
                await seed_all(session)
            for n in range(bots):
                async with sessions.begin() as session:
                    bot = await ensure_bot(session, Platform.telegram, bot_name(n))
                    bot.rate_per_second = float(LIMIT)
                    bot.quiet_start = bot.quiet_end = None
                    if n:
                        bot.token_sealed = box.seal(bot_token(n))
                    await session.flush()
                    await add_audience(
                        session, count=people, bot_id=bot.id,
                        area_ids=await area_ids(session, code="11914"),
                        topic_ids=await topic_ids(session),
                        chat_base=1_000_000_000 + n * CHAT_STRIDE,
                    )  # fmt: skip
            if not voice:
                async with sessions.begin() as session:
                    await session.execute(text("UPDATE subscribers SET language = 'en'"))
            bulletin_id = await approved_bulletin(sessions, urgent=True)
            async with sessions.begin() as session:
                bulletin = await bulletins.get(session, bulletin_id)
                editor = await session.scalar(
                    select(Official).where(Official.username == "bench-editor")
                )
                assert editor is not None
                await schedules.schedule(
                    session, bulletin, editor, now=dt.datetime.now(dt.UTC),
                    tz=ZoneInfo("Asia/Ho_Chi_Minh"),
                )  # fmt: skip
        finally:
            await engine.dispose()

    asyncio.run(build())


# --- watching: connections, leases, CPU -----------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Watch:
    """Samples every POLL_S in a thread: pg_stat_activity of the bench database by
    application_name, the live `sender:` leases, and each worker's CPU."""

    database: str
    pids: dict[str, int]  # worker name -> pid
    connections: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    leases: list[tuple[float, dict[int, str]]] = field(default_factory=list)
    cpu: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    deliveries: dict[str, int] = field(default_factory=dict)  # by state, last sample
    voices: int = 0  # rendered voices (ogg) of bulletins, last sample
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    async def _run(self) -> None:
        db = await asyncpg.connect(
            PG_DSN.format(name=self.database),
            server_settings={"application_name": "scale_out-watch"},
        )
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    await self._sample(db)
                except Exception as exc:  # keep watching; shown at the end
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - started)))
        finally:
            await db.close()

    async def _sample(self, db: asyncpg.Connection) -> None:
        now = time.time()
        cpu = {name: c for name, pid in self.pids.items() if (c := cpu_seconds(pid)) is not None}
        self.cpu.append((now, cpu))
        rows = await db.fetch(
            "SELECT coalesce(application_name, '') AS app, count(*) AS n FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1",
            self.database,
        )
        self.connections.append((now, {r["app"]: int(r["n"]) for r in rows}))
        held = await db.fetch(
            "SELECT name, holder FROM leases WHERE name LIKE 'sender:%' AND expires_at > now()"
        )
        self.leases.append((now, {int(r["name"].split(":")[1]): r["holder"] for r in held}))
        states = await db.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY 1")
        self.deliveries = {str(r["state"]): int(r["n"]) for r in states}
        self.voices = int(
            await db.fetchval(
                "SELECT count(*) FROM audio_assets WHERE format = 'ogg' AND bulletin_id IS NOT NULL"
            )
        )

    def cpu_at(self, worker: str, moment: float) -> float | None:
        """A worker's CPU seconds at `moment`, interpolated between samples."""
        points = [(t, c[worker]) for t, c in list(self.cpu) if worker in c]
        if not points or moment < points[0][0] or moment > points[-1][0]:
            return None
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t0 <= moment <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)
        return points[-1][1]

    def peak_connections(self) -> tuple[int, dict[str, int]]:
        """The most connections at one sample, and each application_name's peak."""
        total = max((sum(c.values()) for _, c in self.connections), default=0)
        by_app: dict[str, int] = defaultdict(int)
        for _, c in self.connections:
            for app, n in c.items():
                by_app[app] = max(by_app[app], n)
        return total, dict(by_app)

    def holder_at(self, bot_id: int, moment: float) -> str | None:
        """Who held the bot's lease at the sample nearest before `moment`."""
        found = None
        for t, held in self.leases:
            if t > moment and found is not None:
                break
            if bot_id in held:
                found = held[bot_id]
        return found


# --- the service's processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


def start_process(name: str, roles: list[str], env: dict[str, str], logs: Path, port: int) -> Proc:
    log = logs / f"{name}.log"
    arguments = [a for role in roles for a in ("--role", role)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "haidang", "serve", *arguments],
            cwd=REPO, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    return Proc(name, process, port, log)


def health(proc: Proc) -> dict[str, Any] | None:
    try:
        url = f"http://127.0.0.1:{proc.port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer
    except (OSError, ValueError):
        return None


def ready(proc: Proc) -> bool:
    try:
        url = f"http://127.0.0.1:{proc.port}/readyz"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError):
        return False


def stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.process.wait(30)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait(5)


def wait_for(what: str, predicate: Any, timeout: float, procs: list[Proc]) -> float:
    started = time.monotonic()
    while not predicate():
        for proc in procs:
            if proc.process.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{tail}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def running_bots(workers: list[Proc], bots: int) -> dict[str, list[int]]:
    """Which bots each worker runs (its /healthz: the bot's part active)."""
    found: dict[str, list[int]] = {}
    for proc in workers:
        answer = health(proc)
        parts = answer.get("parts", {}) if answer else {}
        found[proc.name] = [
            n for n in range(bots) if parts.get(bot_label(n), {}).get("active") is True
        ]
    return found


def balanced(workers: list[Proc], bots: int) -> bool:
    running = running_bots(workers, bots)
    each = sorted(bot for held in running.values() for bot in held)
    counts = [len(held) for held in running.values()]
    share = math.ceil(bots / len(workers))
    return (
        each == list(range(bots)) and max(counts) <= share and min(counts) >= bots // len(workers)
    )


# --- one combination ------------------------------------------------------------------------


@dataclass
class Outcome:
    bots: int
    workers: int
    expected: int  # deliveries
    states: dict[str, int] = field(default_factory=dict)  # deliveries by state at the end
    sent: int = 0  # messages the fakes accepted (texts and voices)
    texts: int = 0
    distinct: int = 0  # chats that got the text
    responses_429: int = 0
    rate: float = 0.0
    window_s: float = 0.0
    per_bot: dict[int, tuple[int, float, int]] = field(default_factory=dict)  # msgs, msg/s, 429
    max_1s: dict[int, int] = field(default_factory=dict)
    ran: dict[str, list[int]] = field(default_factory=dict)  # worker -> bots (by lease)
    # deliveries (texts) of the bots it held, CPU seconds over the window
    per_worker: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    peak_total: int = 0
    peak_by_app: dict[str, int] = field(default_factory=dict)
    startup_s: float = 0.0
    balance_s: float = 0.0
    fire_to_first_s: float = 0.0
    first_send_spread_s: float = 0.0
    fake_stall_ms: float = 0.0
    error: str | None = None

    @property
    def goal(self) -> float:
        return GOAL * self.bots * LIMIT

    @property
    def met(self) -> bool:
        return (
            self.error is None
            and self.states.get("sent") == self.expected
            and self.distinct == self.expected
            and self.rate >= self.goal
            and self.responses_429 == 0
        )


def one_combination(args: argparse.Namespace, bots: int, workers: int, tmp: Path) -> Outcome:
    outcome = Outcome(bots, workers, expected=bots * args.people_per_bot)
    name = f"scale_out_{bots}b{workers}w_{uuid.uuid4().hex[:8]}"
    dsn = PG_DSN.format(name=name)
    secret_key = secrets.token_hex(24)
    logs = tmp / name
    logs.mkdir()
    procs: list[Proc] = []
    fakes: Fakes | None = None
    watch: Watch | None = None
    create_database(name)
    try:
        seed(normalise_database_url(dsn), bots, args.people_per_bot, secret_key, voice=args.voice)
        fakes = Fakes(
            bots, latency=args.latency, sigma=args.sigma,
            realtime=args.fake_priority == "realtime",
        )  # fmt: skip
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "ZALO_"))}
        base.update(
            DATABASE_URL=dsn, LOG_LEVEL="INFO", PUBLIC_BASE_URL="", SECRET_KEY=secret_key,
            BOT_LEASE_TTL_S=str(args.lease_ttl), TELEGRAM_API_BASE_URL=fakes.base_url,
            TTS_ENGINE="espeak",  # the offline voice: nothing but 127.0.0.1 is ever called
        )  # fmt: skip
        started = time.monotonic()
        for w in range(workers):
            port = free_port()
            env = dict(base, DATA_DIR=str(logs / f"worker{w + 1}"), HTTP_PORT=str(port))
            env["TELEGRAM_BOT_TOKEN"] = fakes.tokens[0]
            procs.append(start_process(f"worker{w + 1}", ["worker"], env, logs, port))
        watch = Watch(name, {p.name: p.process.pid for p in procs})
        watch.start()
        wait_for("the workers to be ready", lambda: all(ready(p) for p in procs), 90, procs)
        outcome.startup_s = time.monotonic() - started
        outcome.balance_s = wait_for(
            "the bots to be shared fairly", lambda: balanced(procs, bots), 120, procs
        )
        # The bulletin's voice is rendered by a worker's audio part once it is scheduled:
        # waited for, so every delivery is its text and its voice from the first one.
        wait_for("the bulletin's voice", lambda: watch is not None and watch.voices > 0, 120, procs)
        time.sleep(2 * POLL_S)
        fakes.ask("clear")  # getMe, polls and uploads of the start-up
        port = free_port()
        env = dict(base, DATA_DIR=str(logs / "scheduler"), HTTP_PORT=str(port))
        scheduler = start_process("scheduler", ["scheduler"], env, logs, port)
        procs.append(scheduler)
        fired = time.time()
        last = [0, time.monotonic()]

        def all_sent() -> bool:
            assert watch is not None
            states = dict(watch.deliveries)
            done = sum(n for state, n in states.items() if state not in ("pending", "sending"))
            if done != last[0]:
                last[:] = [done, time.monotonic()]
            elif time.monotonic() - last[1] > 30:
                raise RuntimeError(f"no progress for 30 s: deliveries {states}")
            return done >= outcome.expected

        timeout = 60 + 8 * args.people_per_bot / LIMIT
        wait_for("every delivery to be sent", all_sent, timeout, procs)
        outcome.states = dict(watch.deliveries)
        time.sleep(1.0)  # anything sent twice would be sent by now
        records = fakes.ask("records")
        watch.stop()
        measure(outcome, records, watch, fired)
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        print(f"  {bots} bots, {workers} workers: {outcome.error}", flush=True)
    finally:
        if watch is not None:
            watch.stop()
        stop_all(procs)
        if fakes is not None:
            fakes.close()
        drop_database(name)
    for proc in procs:
        text = proc.log.read_text(errors="replace")
        if "Traceback" in text or (proc.process.returncode not in (0, None)):
            print(f"  {proc.name}: exit {proc.process.returncode}; see {proc.log}", flush=True)
    return outcome


def measure(outcome: Outcome, records: dict[str, Any], watch: Watch, fired: float) -> None:
    tokens = [bot_token(n) for n in range(outcome.bots)]
    all_stamps: list[float] = []
    chats: Counter[Any] = Counter()
    bot_ids = bot_ids_by_number(watch, outcome.bots)
    worker_of_holder = holders_to_workers(watch)
    per_worker_sent: Counter[str] = Counter()
    ran: dict[str, set[int]] = defaultdict(set)
    firsts = []
    for n, token in enumerate(tokens):
        fake = records["fakes"][token]
        stamps = sorted(t for _, t, _ in fake["sends"])
        texts = [(chat, t) for chat, t, method in fake["sends"] if method == "sendMessage"]
        chats.update(chat for chat, _ in texts)
        outcome.texts += len(texts)
        refused = sum(1 for _, r in fake["limited"] if r)
        arrivals = sorted(t for t, r in fake["limited"] if not r)
        outcome.max_1s[n] = max_in_window(arrivals)
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        outcome.per_bot[n] = (len(stamps), len(stamps) / span if span else 0.0, refused)
        outcome.responses_429 += refused
        all_stamps += stamps
        if stamps:
            firsts.append(stamps[0])
        for _, stamp in texts:  # each delivery to the worker holding the bot's lease then
            holder = watch.holder_at(bot_ids.get(n, -1), stamp)
            worker = worker_of_holder.get(holder or "", "?")
            per_worker_sent[worker] += 1
            ran[worker].add(n)
    all_stamps.sort()
    outcome.sent = len(all_stamps)
    outcome.distinct = len(chats)
    if len(all_stamps) > 1:
        outcome.window_s = all_stamps[-1] - all_stamps[0]
        outcome.rate = outcome.sent / outcome.window_s
        outcome.fire_to_first_s = all_stamps[0] - fired
        outcome.first_send_spread_s = max(firsts) - min(firsts)
        for worker in watch.pids:
            before = watch.cpu_at(worker, all_stamps[0])
            after = watch.cpu_at(worker, all_stamps[-1])
            cpu = None if before is None or after is None else after - before
            outcome.per_worker[worker] = (per_worker_sent[worker], cpu)
    outcome.ran = {worker: sorted(bots) for worker, bots in sorted(ran.items())}
    outcome.peak_total, outcome.peak_by_app = watch.peak_connections()
    stalls = [late for _, late in records.get("stalls", [])]
    outcome.fake_stall_ms = max(stalls, default=0.0) * 1000


def bot_ids_by_number(watch: Watch, bots: int) -> dict[int, int]:
    """Bot number (0 = "default") -> bots.id: read once the watch has stopped."""

    async def read() -> dict[int, int]:
        db = await asyncpg.connect(PG_DSN.format(name=watch.database))
        try:
            rows = await db.fetch("SELECT id, name FROM bots WHERE platform = 'telegram'")
        finally:
            await db.close()
        by_name = {r["name"]: int(r["id"]) for r in rows}
        return {n: by_name[bot_name(n)] for n in range(bots) if bot_name(n) in by_name}

    return asyncio.run(read())


def holders_to_workers(watch: Watch) -> dict[str, str]:
    """Lease holder ("host:pid:hex") -> worker name, by pid."""
    by_pid = {pid: name for name, pid in watch.pids.items()}
    found = {}
    for _, held in watch.leases:
        for holder in held.values():
            with contextlib.suppress(IndexError, ValueError):
                found[holder] = by_pid.get(int(holder.split(":")[1]), holder)
    return found


# --- report ---------------------------------------------------------------------------------


def _cpu_cell(o: Outcome) -> str:
    cells = []
    for worker, (deliveries, cpu) in sorted(o.per_worker.items()):
        ms = f"{cpu / deliveries * 1000:.2f}" if cpu is not None and deliveries else "-"
        cells.append(f"w{worker[-1]} {ms} ({deliveries})")
    return ", ".join(cells)


def _bots_cell(o: Outcome) -> str:
    return " ".join(f"w{w[-1]}:{','.join(map(str, b))}" for w, b in o.ran.items())


def _pg_cell(o: Outcome) -> str:
    apps = ", ".join(
        f"{app.removeprefix('haidang-')} {n}"
        for app, n in sorted(o.peak_by_app.items())
        if app != "scale_out-watch"
    )
    return f"{o.peak_total} ({apps})"


def report(outcomes: list[Outcome]) -> None:
    columns = [
        ("bots", 4), ("workers", 7), ("deliveries", 10), ("msgs", 5), ("msg/s", 6),
        ("goal", 5), ("429s", 4), ("ms CPU/delivery (deliveries)", 30),
        ("bots by worker", 16), ("PG conns peak", 28), ("goal met", 8),
    ]  # fmt: skip
    header = " ".join(f"{name:<{width}}" for name, width in columns)
    print()
    print(header)
    print("-" * len(header))
    for o in outcomes:
        delivered = f"{o.states.get('sent', 0)}/{o.expected}"
        cells = [
            str(o.bots), str(o.workers), delivered, str(o.sent), f"{o.rate:.1f}",
            f"{o.goal:.1f}", str(o.responses_429), _cpu_cell(o), _bots_cell(o), _pg_cell(o),
            "yes" if o.met else "NO",
        ]  # fmt: skip
        print(" ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, columns, strict=True)).rstrip())
    print()
    for o in outcomes:
        if o.error:
            print(f"{o.bots} bots, {o.workers} workers: {o.error}")
            continue
        bots = "  ".join(
            f"bot{n} {s} msgs at {r:.1f}/s max/1s {o.max_1s.get(n, 0)}"
            + (f" 429s {refused}" if refused else "")
            for n, (s, r, refused) in sorted(o.per_bot.items())
        )
        others = {k: v for k, v in o.states.items() if k != "sent"}
        print(
            f"{o.bots} bots, {o.workers} workers: window {o.window_s:.1f} s; workers ready "
            f"{o.startup_s:.1f} s, bots shared after {o.balance_s:.1f} s more; scheduler "
            f"start to first send {o.fire_to_first_s:.1f} s, the bots' first sends within "
            f"{o.first_send_spread_s:.2f} s; {o.distinct} chats got the text, {o.texts} texts"
            f"{f', not sent: {others}' if others else ''}; the fakes' longest stall "
            f"{o.fake_stall_ms:.0f} ms"
        )
        print(f"    {bots}")


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="scale_out_") as tmp:
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--people-per-bot", type=int, default=0,
        help="(default 600, or 300 with --voice: 600 messages a bot, ~20 s at 30 msg/s)",
    )  # fmt: skip
    parser.add_argument(
        "--voice", action="store_true",
        help="people read Vietnamese: each delivery is the text and then the voice",
    )  # fmt: skip
    parser.add_argument("--bots", default="1,2,4", help="bot counts to run (1,2,4)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run (1,2)")
    parser.add_argument("--latency", type=float, default=0.080, help="median seconds (0.080)")
    parser.add_argument("--sigma", type=float, default=0.5, help="log-normal sigma (0.5)")
    parser.add_argument(
        "--lease-ttl", type=float, default=10.0, help="BOT_LEASE_TTL_S (10, the default)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    add_priority_option(parser)
    parser.add_argument("--serve-fakes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate-limit", type=int, default=LIMIT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        asyncio.run(serve_fakes(args))
        return
    args.people_per_bot = args.people_per_bot or (300 if args.voice else 600)
    bot_counts = [int(b) for b in args.bots.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"$ {command_line()}")
    print(
        f"{args.people_per_bot} people per bot "
        f"({'text and voice' if args.voice else 'one text'} each); bots at {LIMIT} msg/s "
        f"against fakes enforcing {LIMIT} msg/s each (sliding 1 s window, log-normal latency "
        f"median {args.latency * 1000:.0f} ms); BOT_LEASE_TTL_S {args.lease_ttl:g}; goal >= "
        f"{GOAL:.2f} x bots x {LIMIT} msg/s; machine load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    tmp_context = (
        contextlib.nullcontext(Path(tempfile.mkdtemp(prefix="scale_out_")))
        if args.keep_logs
        else scratch()
    )
    with tmp_context as tmp:
        for bots in bot_counts:
            for workers in worker_counts:
                t0 = time.monotonic()
                outcome = one_combination(args, bots, workers, tmp)
                outcomes.append(outcome)
                print(
                    f"{bots} bots, {workers} workers: {outcome.sent} sent at "
                    f"{outcome.rate:.1f} msg/s, {outcome.responses_429} x 429 "
                    f"({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
        if args.keep_logs:
            print(f"logs in {tmp}")
    report(outcomes)
    print(
        f"\nmsg/s: sent / (last - first accepted send, the fakes' clocks), all bots together; "
        f"ms cpu/delivery: each worker's utime+stime (/proc) over that window / the sends of "
        f"the bots whose lease it held (count in brackets); pg conns: the peak of "
        f"pg_stat_activity rows for the database in one {POLL_S} s sample, then each "
        f"application_name's own peak; total {time.monotonic() - started:.0f} s; load "
        f"{os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
