"""Runs FakeTelegramAPI in its own process on 127.0.0.1, so its CPU is not the bench's.

Prints one JSON line {"port", "token", "bot_base_url"} when it is serving, then answers
commands read from stdin, one a line: `stats` prints a JSON line of counters, `clear`
forgets the logs, `quit` (or end of input) stops it. `FakeProcess` drives it from a bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import gaps_ms, max_in_window, steady_rate
from haidang.runtime import tune_gc
from tests.fakes._common import lognormal_latency
from tests.fakes.telegram_api import FakeTelegramAPI

REPO = Path(__file__).resolve().parent.parent


class Arrivals:
    """A latency sampler that also records arrival times: the fake calls it once per
    request as the request arrives (after counting it against its rate window)."""

    def __init__(self, median: float, sigma: float, *, seed: int = 7) -> None:
        self._sample = lognormal_latency(median=median, sigma=sigma, seed=seed) if median else None
        self.stamps: list[float] = []

    def __call__(self) -> float:
        self.stamps.append(time.time())
        return self._sample() if self._sample is not None else 0.0


def per_second(stamps: list[float]) -> list[int]:
    """Arrivals in each second from the first one (how steady the sending was)."""
    counts = Counter(int(stamp - stamps[0]) for stamp in stamps) if stamps else Counter()
    return [counts[second] for second in range(max(counts, default=-1) + 1)]


def stats(api: FakeTelegramAPI, arrivals: Arrivals) -> dict[str, Any]:
    messages = [r for r in api.sent if r.method == "sendMessage"]
    counts = Counter(r.chat_id for r in messages)
    numbers = api.stats
    return {
        "calls": numbers.calls,
        "accepted_sends": numbers.accepted_sends,
        "responses_429": numbers.responses_429,
        "distinct_chats": len(counts),
        "max_per_chat": max(counts.values(), default=0),
        "paid_sends": sum(
            1 for r in messages if r.params.get("allow_paid_broadcast") in (True, "true")
        ),
        "steady_rate": steady_rate(sorted(r.timestamp for r in messages)),
        "max_arrivals_1s": max_in_window(sorted(arrivals.stamps)),
        "longest_gaps_ms": sorted(gaps_ms(sorted(arrivals.stamps)))[-5:],
        "cpu_s": time.process_time(),  # the fake's own CPU so far, to tell who is busy
        "per_second": per_second(sorted(arrivals.stamps)),
    }


async def serve(args: argparse.Namespace) -> None:
    arrivals = Arrivals(args.latency, args.sigma)
    api = FakeTelegramAPI(latency=arrivals, rate_limit_per_second=args.rate_limit or None)
    async with api:
        # It keeps every request it answers; with CPython's default collector its pauses
        # grow with that log and compress arrivals into bursts no client sent.
        tune_gc()
        answer = {"port": api.port, "token": api.token, "bot_base_url": api.bot_base_url}
        print(json.dumps(answer), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "stats":
                print(json.dumps(stats(api, arrivals)), flush=True)
            elif line == "records":  # accepted messages (chat, answer time) and arrivals
                sends = [(r.chat_id, r.timestamp) for r in api.sent if r.method == "sendMessage"]
                print(json.dumps({"sends": sends, "arrivals": arrivals.stamps}), flush=True)
            elif line == "clear":
                api.clear_log()
                arrivals.stamps.clear()
                print(json.dumps({"cpu_s": time.process_time()}), flush=True)
            elif line in ("quit", ""):
                break


class FakeProcess:
    """bench/fake_server.py in a subprocess, driven over its stdin and stdout."""

    def __init__(self, *, latency: float = 0.0, sigma: float = 0.5, rate_limit: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_server", "--latency", str(latency),
             "--sigma", str(sigma), "--rate-limit", str(rate_limit)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.info: dict[str, Any] = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line())
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="median seconds (0: none)")
    parser.add_argument("--sigma", type=float, default=0.5, help="log-normal sigma (0.5)")
    parser.add_argument("--rate-limit", type=int, default=0, help="msg/s (0: no limit)")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
