"""The outbox of one bot: the one seam every request that counts against its limits meets."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from broadcasts.channels import FailureKind, SendFailure
from broadcasts.pacing import Lane, Pacer

T = TypeVar("T")

# Someone answered (or with an answer queued) this recently is in a conversation: their
# next answer waits behind the first answers of people who just arrived.
FIRST_ANSWER_WINDOW_S = 120.0
RATE_LIMITED_MEMORY_S = 3600.0  # the dashboard shows the 429s of the last hour
_CHAT_MEMORY = 100_000


@dataclass(frozen=True)
class RetryPolicy:
    """How a request sent through `Outbox.send` is retried.

    A 429 is not an attempt: the whole bot pauses for retry_after and the request goes
    again after it (up to `max_rate_limited` times in a row, so a platform that never
    lets go cannot hold a request forever). Timeouts and 5xx are retried after
    `backoff_s`, up to `max_attempts` in all. Anything else fails at once.
    """

    max_attempts: int = 5
    backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    max_rate_limited: int = 50


@dataclass(frozen=True)
class OutboxStats:
    """What an official sees of a bot's queue."""

    rate_per_second: float
    replies_waiting: int  # answers to people waiting for a slot (retries included)
    broadcast_waiting: int  # broadcast sends waiting for a slot
    broadcast_backlog: int | None  # pending deliveries of this bot (the sender counts them)
    rate_limited_last_hour: int  # 429s the platform answered this bot with
    paused_for: float  # seconds left of a 429 pause


class Outbox:
    """Everything one bot sends waits for its turn here, so replies, edits, broadcasts,
    media uploads and officials' answers share the platform's limit instead of tripping
    over each other's 429s: one pacer (see `Pacer` for the lanes), one pause for the
    whole bot on a 429, and a record of those for the dashboard.

    `send` is for requests that are retried here (answers to people); the broadcast
    sender waits its turn on `pacer` and keeps its own retries in the delivery queue.
    """

    def __init__(
        self,
        rate_per_second: float,
        per_chat_interval: float = 1.0,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.pacer = Pacer(rate_per_second, per_chat_interval, clock=clock, sleep=sleep)
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rate_limited: deque[float] = deque()
        self._answered: OrderedDict[str, float] = OrderedDict()  # chat → last answer queued
        self._retrying = 0  # replies sleeping before a retry
        self.broadcast_backlog: int | None = None

    def now(self) -> float:
        """This outbox's clock (what `send(since=...)` takes)."""
        return self._clock()

    def answer_lane(self, chat_id: str) -> Lane:
        """The lane of an answer to this chat, noting that it now has one: `first_reply`
        unless it was answered within FIRST_ANSWER_WINDOW_S."""
        now = self._clock()
        last = self._answered.get(chat_id)
        self._answered[chat_id] = now
        self._answered.move_to_end(chat_id)
        while self._answered and (
            len(self._answered) > _CHAT_MEMORY
            or next(iter(self._answered.values())) < now - FIRST_ANSWER_WINDOW_S
        ):
            self._answered.popitem(last=False)
        recent = last is not None and now - last < FIRST_ANSWER_WINDOW_S
        return Lane.reply if recent else Lane.first_reply

    def rate_limited(self, retry_after: float) -> None:
        """The platform answered 429: the whole bot waits `retry_after` seconds."""
        self.pacer.pause(retry_after)
        self._rate_limited.append(self._clock())

    async def send(
        self,
        chat_id: str | None,
        lane: Lane,
        request: Callable[[], Awaitable[T]],
        *,
        counted: bool = True,
        since: float | None = None,
    ) -> T:
        """Make one request as this bot: in `lane`, after its chat's gap, retried as
        `retry` says. `counted=False` for requests the platform does not count (a
        Telegram callback answer), which go at once. Raises the final SendFailure."""
        attempts = rate_limited = 0
        while True:
            if counted:
                slot = await self.pacer.wait_turn(chat_id, lane, since=since)
                self.pacer.sending(slot)
            try:
                return await request()
            except SendFailure as failure:
                if failure.kind is FailureKind.rate_limited:
                    self.rate_limited(failure.retry_after)
                    rate_limited += 1
                    if rate_limited < self.retry.max_rate_limited:
                        continue
                    raise
                if failure.kind is not FailureKind.transient:
                    raise
                attempts += 1
                if attempts >= self.retry.max_attempts:
                    raise SendFailure(
                        FailureKind.transient, f"retries exhausted: {failure.reason}"
                    ) from None
                backoff = self.retry.backoff_s
                self._retrying += 1
                try:
                    await self._sleep(backoff[min(attempts - 1, len(backoff) - 1)])
                finally:
                    self._retrying -= 1

    def stats(self) -> OutboxStats:
        hour_ago = self._clock() - RATE_LIMITED_MEMORY_S
        while self._rate_limited and self._rate_limited[0] < hour_ago:
            self._rate_limited.popleft()
        pacer = self.pacer
        return OutboxStats(
            rate_per_second=pacer.rate,
            replies_waiting=pacer.waiting(Lane.first_reply)
            + pacer.waiting(Lane.reply)
            + self._retrying,
            broadcast_waiting=pacer.waiting(Lane.urgent) + pacer.waiting(Lane.routine),
            broadcast_backlog=self.broadcast_backlog,
            rate_limited_last_hour=len(self._rate_limited),
            paused_for=pacer.paused_for,
        )
