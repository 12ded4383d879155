"""Runs FakeTelegramAPI in its own process on 127.0.0.1, so its CPU is not the bench's.

Prints one JSON line {"port", "token", "bot_base_url"} when it is serving, then answers
commands read from stdin, one a line: `stats` prints a JSON line of counters, `clear`
forgets the logs, `quit` (or end of input) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

from tests.fakes._common import lognormal_latency
from tests.fakes.telegram_api import FakeTelegramAPI


def stats(api: FakeTelegramAPI) -> dict[str, int]:
    counts = Counter(r.chat_id for r in api.sent if r.method == "sendMessage")
    numbers = api.stats
    return {
        "calls": numbers.calls,
        "accepted_sends": numbers.accepted_sends,
        "responses_429": numbers.responses_429,
        "distinct_chats": len(counts),
        "max_per_chat": max(counts.values(), default=0),
    }


async def serve(args: argparse.Namespace) -> None:
    latency = lognormal_latency(median=args.latency) if args.latency > 0 else None
    api = FakeTelegramAPI(latency=latency, rate_limit_per_second=args.rate_limit or None)
    async with api:
        answer = {"port": api.port, "token": api.token, "bot_base_url": api.bot_base_url}
        print(json.dumps(answer), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "stats":
                print(json.dumps(stats(api)), flush=True)
            elif line == "clear":
                api.clear_log()
                print("{}", flush=True)
            elif line in ("quit", ""):
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="median seconds (0: none)")
    parser.add_argument("--rate-limit", type=int, default=0, help="msg/s (0: no limit)")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
