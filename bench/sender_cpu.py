"""CPU per delivery and peak memory of our Sender, with the fake Bot API in another process.

Target (DESIGN "Performance targets"): <= 0.5 ms of CPU per delivery in the sender, and
memory flat in audience size (peak RSS for 5,000 vs 20,000 deliveries).

Each audience size runs in a fresh child process (so ru_maxrss is its own), on a SQLite
file with the production pragmas; the fake (bench/fake_server.py) answers with no
latency and no rate limit, and the sender runs at a high rate so it never waits long.
CPU is time.process_time() of the child (every thread: the event loop and aiosqlite's)
over the sending phase only; set-up and fan-out are excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import telegram
from telegram.request import HTTPXRequest

from bench.common import (
    TZ,
    command_line,
    fanned_out_run,
    prepared_database,
    send_all,
    sender_config,
    sqlite_url,
    use_service_gc,
)
from bench.fake_server import REPO, FakeProcess
from bot.telegram import TelegramChannel, build_application
from broadcasts.channels import Channel, Outbound
from broadcasts.sender import Sender
from db.models import Platform

TARGET_MS = 0.5
CHANNELS = ("telegram", "telegram-httpx", "null")


class NullChannel:
    """Accepts every message at once without any I/O: what is left is the sender's own
    cost (claims, pacing, tasks, outcome writes), without PTB and HTTP."""

    platform = Platform.telegram
    max_text = 4096

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, chat_id: str, message: Outbound) -> str:
        self.sent += 1
        return str(self.sent)


@asynccontextmanager
async def channel_for(kind: str, base_url: str, token: str) -> AsyncIterator[Channel]:
    """`telegram`: the service's own stack (bot.telegram.build_application: PTB's ExtBot
    over our AiohttpRequest); `telegram-httpx`: a plain PTB Bot over PTB's default
    HTTPXRequest, for comparison; `null`: no I/O at all."""
    if kind == "telegram":
        application = build_application(token, base_url)
        async with application.bot as bot:
            yield TelegramChannel(bot)
    elif kind == "telegram-httpx":
        request = HTTPXRequest(connection_pool_size=64)
        async with telegram.Bot(token, base_url=f"{base_url}/bot", request=request) as bot:
            yield TelegramChannel(bot)
    else:
        yield NullChannel()


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def child(args: argparse.Namespace) -> dict[str, Any]:
    """One measured sending phase; returns the figures (printed as a JSON line)."""
    count = args.child
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        engine, sessions = await prepared_database(sqlite_url(str(Path(tmp) / "bench.db")))
        try:
            bot_id, _ = await fanned_out_run(sessions, count)
            async with channel_for(args.channel, args.base_url, args.token) as channel:
                sender = Sender(
                    sessions, channel, sender_config(bot_id, args.rate), tz=TZ, holder="bench"
                )
                use_service_gc(args.default_gc)
                gc.collect()
                rss_before, peak_before = current_rss_mb(), peak_rss_mb()
                profiler = cProfile.Profile() if args.profile else None
                cpu_started, started = time.process_time(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                # Includes the drain and the last outcome writes: part of the cost.
                await send_all(sender, count, give_up_after=count / args.rate * 5 + 60)
                if profiler is not None:
                    profiler.disable()
                cpu = time.process_time() - cpu_started
                wall = time.perf_counter() - started
        finally:
            await engine.dispose()
    result: dict[str, Any] = {
        "deliveries": count,
        "sent": sender.sent,
        "cpu_s": cpu,
        "wall_s": wall,
        "rss_before_mb": rss_before,
        "peak_before_mb": peak_before,
        "rss_after_mb": current_rss_mb(),
        "peak_mb": peak_rss_mb(),
    }
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(15)
        stats.sort_stats("tottime").print_stats(15)
        result["profile"] = out.getvalue()
    return result


def run_child(
    fake: FakeProcess, count: int, args: argparse.Namespace, profile: bool
) -> dict[str, Any]:
    fake.ask("clear")
    command = [
        sys.executable, "-m", "bench.sender_cpu", "--child", str(count),
        "--base-url", f"http://127.0.0.1:{fake.info['port']}", "--token", fake.info["token"],
        "--rate", str(args.rate), "--channel", args.channel,
    ]  # fmt: skip
    if args.default_gc:
        command.append("--default-gc")
    if profile:
        command.append("--profile")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["fake"] = fake.ask("stats")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", default="5000,20000", help="sizes, comma separated")
    parser.add_argument("--rate", type=float, default=2000.0, help="sender rate, msg/s (2000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (1)")
    parser.add_argument("--profile", action="store_true", help="always print a cProfile")
    parser.add_argument(
        "--channel", choices=CHANNELS, default="telegram",
        help="the service's TelegramChannel over AiohttpRequest (default), the same channel "
        "over PTB's HTTPXRequest (telegram-httpx), or a no-I/O channel (the sender alone)",
    )  # fmt: skip
    parser.add_argument("--default-gc", action="store_true", help="without tune_gc")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args))))
        return

    print(f"$ {command_line()}")
    sizes = [int(s) for s in args.deliveries.split(",")]
    fake = FakeProcess()
    results: list[dict[str, Any]] = []
    try:
        print(
            f"fake Bot API in pid {fake.process.pid} on {fake.info['bot_base_url']} "
            f"(no latency, no limit); sender rate {args.rate:.0f} msg/s; channel "
            f"{args.channel}; each size in a fresh child process; "
            f"{'CPython default gc' if args.default_gc else 'the service gc settings (tune_gc)'}",
            flush=True,
        )
        for count in sizes:
            for _ in range(args.repeat):
                results.append(run_child(fake, count, args, profile=False))
        header = (
            f"{'deliveries':>10} {'sent':>6} {'fake ok':>8} {'cpu s':>7} {'ms/delivery':>11} "
            f"{'wall s':>7} {'msg/s':>7} {'rss start MB':>12} {'rss end MB':>10} "
            f"{'peak MB':>8}"
        )
        print()
        print(header)
        print("-" * len(header))
        for r in results:
            f = r["fake"]
            ok = (
                f["accepted_sends"] == r["deliveries"] == f["distinct_chats"]
                and f["max_per_chat"] == 1
            ) or (args.channel == "null" and r["sent"] == r["deliveries"])
            print(
                f"{r['deliveries']:>10} {r['sent']:>6} {'yes' if ok else 'NO':>8} "
                f"{r['cpu_s']:>7.2f} {r['cpu_s'] / r['deliveries'] * 1000:>11.3f} "
                f"{r['wall_s']:>7.1f} {r['deliveries'] / r['wall_s']:>7.0f} "
                f"{r['rss_before_mb']:>12.1f} {r['rss_after_mb']:>10.1f} {r['peak_mb']:>8.1f}"
            )
        worst = max(r["cpu_s"] / r["deliveries"] * 1000 for r in results)
        by_size = {r["deliveries"]: r["peak_mb"] for r in results}
        growth = by_size[max(sizes)] - by_size[min(sizes)]
        print(
            f"\nworst CPU {worst:.3f} ms/delivery (target <= {TARGET_MS} ms): "
            f"{'OK' if worst <= TARGET_MS else 'MISSED'}; peak RSS {min(sizes)} -> "
            f"{max(sizes)} deliveries: {growth:+.1f} MB"
        )
        if args.profile or worst > TARGET_MS:
            size = max(sizes)
            print(f"\ncProfile of the sending phase, {size} deliveries (main thread only; the")
            print("sqlite3 calls run in aiosqlite's thread), top 15 by cumulative time, then")
            print("by own time (coroutines count once per resumption):")
            profiled = run_child(fake, size, args, profile=True)
            print(profiled["profile"])
    finally:
        fake.close()


if __name__ == "__main__":
    main()
