"""Paid broadcast: our Sender at Telegram's 1000 msg/s paid limit; the fake in its own process.

Target (DESIGN "Performance targets"): >= 900 msg/s on this 2-core machine, zero 429s,
every chat exactly once. The fake (bench/fake_server.py) enforces 1000 msg/s in a sliding
1 s window and answers after a log-normal latency (median 80 ms), in another process, so
the CPU the client spends is its own and is reported per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
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
from bench.fake_server import FakeProcess, add_priority_option
from bot.telegram import CONNECTION_POOL, TelegramChannel, build_application
from broadcasts.sender import Sender
from haidang.runtime import PAID_BROADCAST_IN_FLIGHT, PAID_BROADCAST_RATE

TARGET = 900.0


@asynccontextmanager
async def paid_channel(request: str, base_url: str, token: str) -> AsyncIterator[TelegramChannel]:
    """`aiohttp`: the service's stack (build_application); `httpx`: PTB's default transport
    with the same pool, for comparison. Either way every send asks for the paid limit."""
    if request == "aiohttp":
        async with build_application(token, base_url).bot as bot:
            yield TelegramChannel(bot).for_paid_broadcast()
    else:
        transport = HTTPXRequest(connection_pool_size=CONNECTION_POOL)
        async with telegram.Bot(token, base_url=f"{base_url}/bot", request=transport) as bot:
            yield TelegramChannel(bot).for_paid_broadcast()


async def one_run(args: argparse.Namespace, fake: FakeProcess) -> dict[str, Any]:
    fake_cpu = fake.ask("stats")["cpu_s"]
    base_url = f"http://127.0.0.1:{fake.info['port']}"
    with tempfile.TemporaryDirectory(prefix="bench-paid-") as tmp:
        engine, sessions = await prepared_database(sqlite_url(str(Path(tmp) / "bench.db")))
        try:
            bot_id, _ = await fanned_out_run(sessions, args.deliveries)
            config = sender_config(bot_id, args.rate, max_in_flight=args.in_flight)
            args.gc_label = use_service_gc(args.default_gc)
            async with paid_channel(args.request, base_url, fake.info["token"]) as channel:
                sender = Sender(sessions, channel, config, tz=TZ, holder="bench")
                cpu_started = time.process_time()
                give_up = args.deliveries / args.rate * 5 + 30
                wall = await send_all(sender, args.deliveries, give_up_after=give_up)
                cpu = time.process_time() - cpu_started
        finally:
            await engine.dispose()
    stats = fake.ask("stats")
    stats["cpu_s"] -= fake_cpu
    return {"sent": sender.sent, "wall_s": wall, "cpu_s": cpu, "fake": stats}


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    header = (
        f"{'run':>3} {'sent':>6} {'once':>11} {'paid':>6} {'429s':>5} {'msg/s':>7} "
        f"{'max/1s':>6} {'cpu ms/delivery':>15} {'client cpu':>10} {'fake cpu':>8} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for n, r in enumerate(results, 1):
        f = r["fake"]
        once = f["distinct_chats"] if f["max_per_chat"] == 1 else 0
        print(
            f"{n:>3} {r['sent']:>6} {once:>5}/{args.deliveries:<5} {f['paid_sends']:>6} "
            f"{f['responses_429']:>5} {f['steady_rate']:>7.0f} {f['max_arrivals_1s']:>6} "
            f"{r['cpu_s'] / args.deliveries * 1000:>15.3f} "
            f"{r['cpu_s'] / r['wall_s'] * 100:>9.0f}% {f['cpu_s'] / r['wall_s'] * 100:>7.0f}% "
            f"{r['wall_s']:>7.1f}"
        )
    for n, r in enumerate(results, 1):
        print(f"run {n}: arrivals in each second {r['fake']['per_second']}")
    worst = min(r["fake"]["steady_rate"] for r in results)
    clean = all(
        r["fake"]["responses_429"] == 0
        and r["fake"]["distinct_chats"] == args.deliveries
        and r["fake"]["max_per_chat"] == 1
        and r["fake"]["paid_sends"] == args.deliveries
        for r in results
    )
    ok = worst >= TARGET and clean
    print(
        f"\nworst {worst:.0f} msg/s at a {args.limit} msg/s limit (target >= {TARGET:.0f}, "
        f"zero 429s, every chat once, every send paid): {'OK' if ok else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=10_000, help="audience size (10000)")
    parser.add_argument("--rate", type=float, default=PAID_BROADCAST_RATE, help="msg/s (1000)")
    parser.add_argument("--limit", type=int, default=1000, help="the fake's limit, msg/s")
    parser.add_argument("--latency", type=float, default=0.080, help="median seconds (0.080)")
    parser.add_argument(
        "--in-flight", type=int, default=PAID_BROADCAST_IN_FLIGHT,
        help=f"sender's max in flight ({PAID_BROADCAST_IN_FLIGHT}, as the service)",
    )  # fmt: skip
    parser.add_argument(
        "--request", choices=["aiohttp", "httpx"], default="aiohttp",
        help="the service's AiohttpRequest (default) or PTB's default HTTPXRequest",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs (1)")
    parser.add_argument("--default-gc", action="store_true", help="without tune_gc")
    add_priority_option(parser)
    args = parser.parse_args()
    print(f"$ {command_line()}")
    print(
        f"{args.deliveries} deliveries; fake Bot API in its own process, a fresh one per run: "
        f"{args.limit} msg/s sliding 1 s window, log-normal latency median "
        f"{args.latency * 1000:.0f} ms; sender {args.rate:.0f} msg/s, {args.in_flight} in "
        f"flight, transport {args.request}, allow_paid_broadcast on every send",
        flush=True,
    )
    results = []
    for _ in range(args.repeat):
        fake = FakeProcess(
            latency=args.latency, rate_limit=args.limit, realtime=args.fake_priority == "realtime"
        )
        print(f"fake at {fake.priority}", flush=True)
        try:
            results.append(asyncio.run(one_run(args, fake)))
        finally:
            fake.close()
    print()
    print(f"client: {args.gc_label}; the fake: tune_gc too")
    report(args, results)


if __name__ == "__main__":
    main()
