"""Sending at a platform limit: our Sender vs PTB's AIORateLimiter against the fake Bot API.

Target (DESIGN "Performance targets"): at a 30 msg/s limit with 80 ms median latency, our
sender achieves >= 97 % of the limit with zero 429s, and every chat gets exactly one message.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from telegram.ext import AIORateLimiter, Application

from bench.common import (
    CHAT_BASE,
    TZ,
    command_line,
    fanned_out_run,
    gaps_ms,
    max_in_window,
    prepared_database,
    send_all,
    sender_config,
    sqlite_url,
    steady_rate,
    use_service_gc,
)
from bench.fake_server import FakeProcess, add_priority_option
from bot.telegram import TelegramChannel, build_application
from broadcasts.sender import Sender
from db.models import Delivery

TEXT = "📢 Thông báo gió mạnh trên biển\n\nGió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn."


@dataclass
class Result:
    name: str
    expected: int
    sends: list[tuple[int, float]]  # accepted messages: (chat id, answer time)
    responses_429: int
    wall_s: float
    failures: int = 0
    db_states: dict[str, int] | None = None
    arrivals: list[float] | None = None

    @property
    def per_chat(self) -> Counter[int | str | None]:
        return Counter(chat for chat, _ in self.sends)

    @property
    def exactly_once(self) -> int:
        """Chats (of those expected) that received exactly one message."""
        counts = self.per_chat
        return sum(1 for n in range(self.expected) if counts.get(CHAT_BASE + n) == 1)

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.per_chat.values() if c > 1)

    def stamps(self) -> list[float]:
        return sorted(stamp for _, stamp in self.sends)

    def steady_rate(self) -> float:
        return steady_rate(self.stamps())

    def max_in_window(self, window: float = 1.0) -> int:
        """Most requests arriving at the fake in any `window` seconds (what it limits)."""
        return max_in_window(sorted(self.arrivals or []), window)

    def gaps_ms(self) -> list[float]:
        return gaps_ms(self.stamps())


def measured(fake: FakeProcess) -> dict[str, Any]:
    """What the fake saw: accepted messages, arrival times, its 429 count."""
    records = fake.ask("records")
    return {
        "sends": [(int(chat), float(stamp)) for chat, stamp in records["sends"]],
        "arrivals": records["arrivals"],
        "responses_429": int(fake.ask("stats")["responses_429"]),
    }


async def run_ours(args: argparse.Namespace, fake: FakeProcess) -> Result:
    """Our Sender with the service's Telegram stack (bot.telegram.build_application: PTB's
    ExtBot over AiohttpRequest, TelegramChannel) on a SQLite file with production pragmas."""
    with tempfile.TemporaryDirectory(prefix="bench-sending-") as tmp:
        engine, sessions = await prepared_database(sqlite_url(str(Path(tmp) / "bench.db")))
        try:
            bot_id, run_id = await fanned_out_run(sessions, args.deliveries)
            base_url = f"http://127.0.0.1:{fake.info['port']}"
            application = build_application(fake.info["token"], base_url)
            async with application.bot as bot:
                config = sender_config(bot_id, args.rate)
                sender = Sender(sessions, TelegramChannel(bot), config, tz=TZ, holder="bench")
                give_up = args.deliveries / args.rate * 3 + 30
                wall = await send_all(sender, args.deliveries, give_up_after=give_up)
            async with sessions() as session:
                rows = await session.execute(
                    select(Delivery.state, func.count())
                    .where(Delivery.run_id == run_id)
                    .group_by(Delivery.state)
                )
                db_states = {state.value: int(n) for state, n in rows.all()}
        finally:
            await engine.dispose()
    return Result(
        name="ours: Sender + TelegramChannel (aiohttp)",
        expected=args.deliveries,
        wall_s=wall,
        db_states=db_states,
        **measured(fake),
    )


async def run_ptb(args: argparse.Namespace, fake: FakeProcess) -> Result:
    """PTB's recommended setup: an Application's ExtBot with AIORateLimiter (defaults, but
    overall_max_rate follows --rate), send_message concurrently in asyncio.gather chunks."""
    limiter = AIORateLimiter(overall_max_rate=args.rate, max_retries=args.ptb_max_retries)
    application = (
        Application.builder()
        .token(fake.info["token"])
        .base_url(fake.info["bot_base_url"])
        .rate_limiter(limiter)
        .build()
    )
    chats = [CHAT_BASE + n for n in range(args.deliveries)]
    failures = 0
    async with application:
        bot = application.bot
        started = time.monotonic()
        for low in range(0, len(chats), args.ptb_chunk):
            chunk = chats[low : low + args.ptb_chunk]
            results = await asyncio.gather(
                *(bot.send_message(chat, TEXT) for chat in chunk), return_exceptions=True
            )
            failures += sum(1 for r in results if isinstance(r, BaseException))
        wall = time.monotonic() - started
    return Result(
        name=f"PTB AIORateLimiter retries={args.ptb_max_retries}, gather {args.ptb_chunk}",
        expected=args.deliveries,
        wall_s=wall,
        failures=failures,
        **measured(fake),
    )


def report(results: list[Result], limit: int) -> None:
    header = (
        f"{'approach':<48} {'accepted':>8} {'once':>11} {'dup':>4} {'429s':>5} "
        f"{'msg/s':>6} {'% limit':>8} {'max/1s':>6} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = r.steady_rate()
        print(
            f"{r.name:<48} {len(r.stamps()):>8} {r.exactly_once:>5}/{r.expected:<5} "
            f"{r.duplicates:>4} {r.responses_429:>5} {rate:>6.2f} {rate / limit * 100:>7.1f}% "
            f"{r.max_in_window():>6} {r.wall_s:>7.1f}"
        )
    print()
    for r in results:
        gaps = sorted(r.gaps_ms())
        if not gaps:
            continue
        p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
        stalls = sum(1 for g in gaps if g > 2000 / limit)
        extra = f", failed sends {r.failures}" if r.failures else ""
        states = f", db states {r.db_states}" if r.db_states is not None else ""
        print(
            f"{r.name}: gap between accepted sends ms: mean {statistics.fmean(gaps):.1f}, "
            f"median {statistics.median(gaps):.1f}, p99 {p99:.1f}, max {gaps[-1]:.0f}, "
            f"gaps > 2 slots {stalls}{extra}{states}"
        )


def verdict(ours: Result, limit: int) -> None:
    share = ours.steady_rate() / limit * 100
    ok = share >= 97.0 and ours.responses_429 == 0 and ours.exactly_once == ours.expected
    print(
        f"\nours: {share:.1f} % of {limit} msg/s, {ours.responses_429} x 429, "
        f"{ours.exactly_once}/{ours.expected} chats exactly once "
        f"(target >= 97 %, zero 429s, all once): {'OK' if ok else 'MISSED'}"
    )


async def main_async(args: argparse.Namespace) -> None:
    results: list[Result] = []
    sides = [
        run for name, run in (("ours", run_ours), ("ptb", run_ptb)) if args.only in (None, name)
    ]
    for run in sides:
        # The platform in its own process, as in production: in a thread of the bench it
        # shared the GIL with the sender, and its arrival stamps jittered with our work.
        fake = FakeProcess(
            latency=args.latency_median, sigma=args.latency_sigma, rate_limit=args.limit,
            realtime=args.fake_priority == "realtime",
        )  # fmt: skip
        print(f"{run.__name__}: fake at {fake.priority}", flush=True)
        try:
            results.append(await run(args, fake))
        finally:
            fake.close()
    print()
    report(results, args.limit)
    if results and results[0].name.startswith("ours"):
        verdict(results[0], args.limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=3000, help="audience size (3000)")
    parser.add_argument("--rate", type=float, default=30.0, help="sender rate, msg/s (30)")
    parser.add_argument("--limit", type=int, help="the fake's limit, msg/s (default: --rate)")
    parser.add_argument("--latency-median", type=float, default=0.080, help="seconds (0.080)")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="log-normal sigma")
    parser.add_argument("--ptb-chunk", type=int, default=100, help="gather chunk size (100)")
    parser.add_argument("--ptb-max-retries", type=int, default=0, help="AIORateLimiter (0)")
    parser.add_argument("--only", choices=["ours", "ptb"], help="run one side only")
    add_priority_option(parser)
    args = parser.parse_args()
    if args.limit is None:
        args.limit = round(args.rate)
    # AIORateLimiter logs every 429 it gives up on with a traceback; the table counts them.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
    logging.basicConfig(level=logging.WARNING)
    print(f"$ {command_line()}")
    gc_label = use_service_gc(default_gc=False)
    print(
        f"{args.deliveries} deliveries; fake: {args.limit} msg/s sliding 1 s window, log-normal "
        f"latency median {args.latency_median * 1000:.0f} ms sigma {args.latency_sigma}; "
        f"sender rate {args.rate} msg/s, per-chat gap 1.0 s; {gc_label}"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
