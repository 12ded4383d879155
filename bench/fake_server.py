"""Runs a fake Bot API (Telegram or Zalo) in its own process on 127.0.0.1, so its CPU is
not the bench's.

Prints one JSON line {"port", "token", "base_url", "bot_base_url"} when it is serving, then
answers commands read from stdin, one a line: `stats` prints a JSON line of counters,
`records` the accepted messages and arrival times, `clear` forgets the logs, `quit` (or end
of input) stops it. A line that is a JSON object is a command for the crowd benches (see
`Crowd`): people writing, pressing "Đã nhận", and what the fake saw of them. `FakeProcess`
drives it from a bench.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import gaps_ms, max_in_window, steady_rate
from haidang.runtime import tune_gc
from tests.fakes._common import ApiError, ChatId, FakeBotAPI, lognormal_latency
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

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


class _Limited:
    """Arrivals of the requests the platform counts against its limits: (time, refused,
    chat).

    Stamped where the fake counts them (`_apply_rate_limits`), so polls, callback answers
    and chat actions are not among them, and a request refused with 429 is."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, bool, ChatId | None]] = []

    def count(self, check: Any, chat_id: ChatId | None) -> None:
        stamp = time.time()
        try:
            check(chat_id)
        except ApiError:
            self.stamps.append((stamp, True, chat_id))
            raise
        self.stamps.append((stamp, False, chat_id))


class StampedTelegram(FakeTelegramAPI):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.limited = _Limited()

    def _apply_rate_limits(self, chat_id: ChatId | None) -> None:
        self.limited.count(super()._apply_rate_limits, chat_id)


class StampedZalo(FakeZaloAPI):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.limited = _Limited()

    def _apply_rate_limits(self, chat_id: ChatId | None) -> None:
        self.limited.count(super()._apply_rate_limits, chat_id)


class Crowd:
    """What people do to the bot in the crowd benches, timed by this process's clock.

    `write`: each chat sends a text once, at a random moment within `over` seconds.
    `press`: whoever receives a message containing `fragment` acknowledges it after a
    random delay within `within` seconds: a press of its `data` button (Telegram) or a
    typed `text` (Zalo, which has no buttons). `progress` counts cheaply for the bench's
    waits; `log` hands over everything the figures are computed from.
    """

    def __init__(self, api: FakeBotAPI, limited: _Limited, stalls: Stalls) -> None:
        self.api = api
        self.limited = limited
        self.stalls = stalls
        self.telegram = isinstance(api, FakeTelegramAPI)
        self.wrote: dict[ChatId, float] = {}
        self.first_answer: dict[ChatId, float] = {}
        self.presses: list[tuple[float, ChatId, str | None]] = []
        self.press_due = 0  # presses scheduled, made or not
        self.press_errors: list[str] = []
        self._pressed_at: dict[ChatId, float] = {}  # awaiting a message after the press
        self.press_replied = 0  # presses followed by a message to their chat (Zalo's thanks)
        self._pressing: dict[str, Any] | None = None
        self._warned: set[ChatId] = set()
        self._seen = 0  # records of api.sent already scanned
        self._rng = random.Random(11)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    def command(self, order: dict[str, Any]) -> dict[str, Any]:
        do = order.get("do")
        if do == "write":
            chats = [self._chat(c) for c in _chats(order)]
            self._spawn(self._write(chats, str(order["text"]), float(order["over"])))
            return {"ok": True, "at": time.time()}
        if do == "register":  # Zalo answers only chats that wrote first; readers did, once
            assert isinstance(self.api, FakeZaloAPI)
            for chat in _chats(order):
                self.api.register_chat(str(chat))
            return {"ok": True}
        if do == "press":
            self._pressing = order
            if self._watcher is None:
                self._watcher = asyncio.create_task(self._watch())
            return {"ok": True}
        if do == "progress":
            self._scan()
            stats = self.api.stats
            return {
                "wrote": len(self.wrote),
                "answered": len(self.first_answer),
                "warned": len(self._warned),
                "press_due": self.press_due,
                "pressed": len(self.presses),
                "press_errors": len(self.press_errors),
                "press_replied": self.press_replied,
                "callbacks": len(self.api.calls_to("answerCallbackQuery")) if self.telegram else 0,
                "accepted_limited": stats.accepted_limited,
                "responses_429": stats.responses_429,
            }
        if do == "log":
            return self._log()
        return {"error": f"unknown command {do!r}"}

    def _chat(self, chat: Any) -> ChatId:
        return self.api.normalize_chat_id(chat)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, chats: list[ChatId], text: str, over: float) -> None:
        start = time.monotonic()
        moments = sorted(self._rng.uniform(0.0, over) for _ in chats)
        for chat, moment in zip(chats, moments, strict=True):
            delay = start + moment - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.wrote[chat] = time.time()
            self._user_sends(chat, text)

    def _user_sends(self, chat: ChatId, text: str) -> None:
        if isinstance(self.api, FakeTelegramAPI):
            self.api.user_sends(int(chat), text)
        elif isinstance(self.api, FakeZaloAPI):
            self.api.user_sends(str(chat), text)

    def _scan(self) -> None:
        """Look at the messages accepted since the last scan: first answers to people who
        wrote, and warnings to acknowledge."""
        sent = self.api.sent
        fresh, self._seen = sent[self._seen :], len(sent)
        send_methods = type(self.api).SEND_METHODS
        for record in fresh:
            chat = record.chat_id
            if chat is None or record.method not in send_methods:
                continue
            pressed = self._pressed_at.get(chat)
            if pressed is not None and record.timestamp >= pressed:
                del self._pressed_at[chat]
                self.press_replied += 1
            wrote = self.wrote.get(chat)
            if wrote is not None and chat not in self.first_answer and record.timestamp >= wrote:
                self.first_answer[chat] = record.timestamp
            order = self._pressing
            if (
                order is not None
                and chat not in self._warned
                and str(order["fragment"]) in (record.text or "")
            ):
                self._warned.add(chat)
                delay = self._rng.uniform(0.0, float(order["within"]))
                self.press_due += 1
                asyncio.get_running_loop().call_later(
                    delay, self._press, chat, record.message_id, order
                )

    def _press(self, chat: ChatId, message_id: int | str | None, order: dict[str, Any]) -> None:
        query: str | None = None
        try:
            if isinstance(self.api, FakeTelegramAPI):
                data, message = str(order["data"]), int(message_id or 0)
                update = self.api.user_presses(int(chat), data, message_id=message)
                query = str(update["callback_query"]["id"])
            else:
                self._user_sends(chat, str(order["text"]))
        except (LookupError, ValueError) as exc:  # no such button: a press that never was
            self.press_errors.append(f"{chat}: {exc}")
            return
        self.presses.append((time.time(), chat, query))
        self._pressed_at[chat] = self.presses[-1][0]

    async def _watch(self) -> None:
        # Presses follow the warnings within a scan period (20 ms) of their arrival.
        while True:
            self._scan()
            await asyncio.sleep(0.02)

    def _log(self) -> dict[str, Any]:
        records = []
        for r in self.api.sent:
            extra = r.params.get("callback_query_id") if r.method == "answerCallbackQuery" else None
            records.append([r.timestamp, r.chat_id, r.method, r.text, extra])
        stats = self.api.stats
        return {
            "sent": records,
            "wrote": [[t, chat] for chat, t in self.wrote.items()],
            "presses": self.presses,
            "press_errors": self.press_errors[:20],
            "stalls": self.stalls.seen,
            # Webhook POSTs as answered: (when, HTTP status or None)
            "deliveries": [[d.timestamp, d.status] for d in self.api.webhook_deliveries],
            "limited": self.limited.stamps,
            "stats": {
                "calls": stats.calls,
                "accepted_sends": stats.accepted_sends,
                "accepted_limited": stats.accepted_limited,
                "responses_429": stats.responses_429,
                "rate_limited": stats.rate_limited,
                "cpu_s": time.process_time(),
            },
        }


class Stalls:
    """Moments a process's event loop woke up late (busy, or not given a core): (when,
    seconds late). A late fake stamps arrivals late, then the next ones on time, so
    requests sent evenly look bunched together to its rate window."""

    def __init__(self, *, tick: float = 0.005, threshold: float = 0.005) -> None:
        self.tick = tick
        self.threshold = threshold
        self.seen: list[tuple[float, float]] = []

    async def watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.tick)
            late = time.monotonic() - before - self.tick
            if late > self.threshold:
                self.seen.append((time.time() - late, late))


def _chats(order: dict[str, Any]) -> list[Any]:
    """The chats of a command: listed, or `count` numbers from `base`."""
    if "chats" in order:
        return list(order["chats"])
    return [int(order["base"]) + n for n in range(int(order["count"]))]


def per_second(stamps: list[float]) -> list[int]:
    """Arrivals in each second from the first one (how steady the sending was)."""
    counts = Counter(int(stamp - stamps[0]) for stamp in stamps) if stamps else Counter()
    return [counts[second] for second in range(max(counts, default=-1) + 1)]


def stats(api: FakeBotAPI, arrivals: Arrivals) -> dict[str, Any]:
    messages = [r for r in api.sent if r.method == "sendMessage"]
    counts = Counter(r.chat_id for r in messages)
    numbers = api.stats
    return {
        "calls": numbers.calls,
        "accepted_sends": numbers.accepted_sends,
        "accepted_limited": numbers.accepted_limited,
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


def make_api(args: argparse.Namespace, arrivals: Arrivals) -> StampedTelegram | StampedZalo:
    limits = {
        "rate_limit_per_second": args.rate_limit or None,
        "chat_rate_limit": args.chat_rate_limit or None,
    }
    if args.platform == "zalo":
        return StampedZalo(latency=arrivals, **limits)
    return StampedTelegram(latency=arrivals, **limits)


async def serve(args: argparse.Namespace) -> None:
    arrivals = Arrivals(args.latency, args.sigma)
    api = make_api(args, arrivals)
    async with api:
        # It keeps every request it answers; with CPython's default collector its pauses
        # grow with that log and compress arrivals into bursts no client sent.
        tune_gc()
        stalls = Stalls()
        watcher = asyncio.create_task(stalls.watch())
        crowd = Crowd(api, api.limited, stalls)
        answer = {
            "port": api.port,
            "token": api.token,
            "base_url": api.base_url,
            "bot_base_url": f"{api.base_url}/bot",
        }
        print(json.dumps(answer), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line.startswith("{"):
                print(json.dumps(crowd.command(json.loads(line))), flush=True)
            elif line == "stats":
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
        watcher.cancel()


def add_priority_option(parser: argparse.ArgumentParser) -> None:
    """`--fake-priority`, for the benches that measure against the fake's rate limits."""
    parser.add_argument(
        "--fake-priority", choices=["realtime", "default"], default="realtime",
        help="realtime (default, needs root): the fake under SCHED_FIFO, so its arrival "
        "stamps do not wait for a core of a loaded machine (see bench/README.md)",
    )  # fmt: skip


def fake_priority(pid: int, *, realtime: bool) -> str:
    """Run a fake's process at SCHED_FIFO when `realtime` (and allowed); says which.

    Its CPU is small (a few % at 30 msg/s) and the kernel caps real-time threads at 95 %
    of a core, so it cannot starve the machine."""
    if not realtime:
        return "default priority"
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(10))
    except OSError:  # not root: as usual
        return "default priority (SCHED_FIFO refused)"
    return "SCHED_FIFO"


class FakeProcess:
    """bench/fake_server.py in a subprocess, driven over its stdin and stdout.

    `ask` blocks until the answer: from a bench whose loop runs the service, call it in a
    thread (`asyncio.to_thread`) so the service is not held up meanwhile.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        sigma: float = 0.5,
        rate_limit: int = 0,
        chat_rate_limit: int = 0,
        platform: str = "telegram",
        realtime: bool = False,
    ) -> None:
        """`realtime`: its serving thread under SCHED_FIFO (needs root), ahead of every
        ordinary process: a platform's clock does not wait for a core of the bench's
        machine (see `Stalls`). Where that is not allowed it runs as usual; `priority`
        says which."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_server", "--latency", str(latency),
             "--sigma", str(sigma), "--rate-limit", str(rate_limit),
             "--chat-rate-limit", str(chat_rate_limit), "--platform", platform],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            encoding="utf-8",
        )  # fmt: skip
        self.priority = fake_priority(self.process.pid, realtime=realtime)
        self.info: dict[str, Any] = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def ask(self, command: str | dict[str, Any]) -> dict[str, Any]:
        """Send one command (a word, or a JSON object for `Crowd`) and read its answer."""
        assert self.process.stdin is not None
        line = command if isinstance(command, str) else json.dumps(command)
        self.process.stdin.write(line + "\n")
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
    parser.add_argument("--platform", choices=["telegram", "zalo"], default="telegram")
    parser.add_argument("--latency", type=float, default=0.0, help="median seconds (0: none)")
    parser.add_argument("--sigma", type=float, default=0.5, help="log-normal sigma (0.5)")
    parser.add_argument("--rate-limit", type=int, default=0, help="msg/s (0: no limit)")
    parser.add_argument(
        "--chat-rate-limit", type=int, default=0, help="msg/s to one chat (0: no limit)"
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
