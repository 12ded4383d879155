"""Pacing for one bot: a fixed schedule at the rate, a guarded window, per-chat gaps, 429 pauses."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

# How many chats' last-send times to remember; older chats cannot be inside the gap.
_CHAT_MEMORY = 100_000


def request_written() -> None:
    """For transports: the request of the send being made in this task has just been
    written. The pacer counts the send from now (a new connection, or a wait for a free
    one, can delay it well past `Pacer.sending`)."""
    current = _sending.get()
    if current is not None:
        pacer, slot = current
        pacer.began(slot)


class Slot:
    """One granted send; `at` is when it was granted, or when it began if that was later."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class Pacer:
    """Hands out send slots at `rate` per second without ever exceeding the platform's window.

    Slots follow a fixed schedule, one `interval` apart. A wake-up that is late by a little
    (timer overshoot: about 1 ms with asyncio, more than a whole slot at 1000 msg/s) is
    absorbed by the schedule instead of being added to every interval, so the rate holds.
    Later than `catch_up` (a stall, a pause, the first send) the schedule restarts from now:
    missed slots are never caught up with a burst.

    The platform counts requests in a sliding window (Telegram: 1 s), so the pacer also
    keeps the last `floor(rate * window)` grant times and never grants another before the
    oldest is `window + margin` old; the margin covers jitter between our clock and the
    platform's arrival stamps. A send that begins late (the event loop was busy between
    the grant and the request) is counted from when it began: `began(slot)`, so such a
    delay cannot squeeze `floor(rate) + 1` requests into the platform's window.
    A per-chat gap keeps two messages to one person (a long bulletin's parts) apart, and
    `pause()` stops the whole bot after a 429.

    `clock` and `sleep` are injectable so tests can run the pacer on virtual time.
    """

    def __init__(
        self,
        rate_per_second: float,
        per_chat_interval: float = 1.0,
        *,
        window: float = 1.0,
        margin: float = 0.015,
        catch_up: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if window <= 0 or margin < 0 or catch_up < 0:
            raise ValueError("window must be positive, margin and catch_up not negative")
        self.window = window
        self.margin = margin
        self.catch_up = catch_up
        self.per_chat_interval = per_chat_interval
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._grants: deque[Slot] = deque()
        self._last_by_chat: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()
        self.set_rate(rate_per_second)

    def set_rate(self, rate_per_second: float) -> None:
        """Change the rate; the grants already in the window still count."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.rate = rate_per_second
        self.interval = 1.0 / rate_per_second
        self.per_window = max(1, math.floor(rate_per_second * self.window + 1e-9))
        self._grants = deque(self._grants, maxlen=self.per_window)

    def pause(self, seconds: float) -> None:
        """Stop handing out slots for `seconds` (a 429's retry_after); never shortens a pause."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def began(self, slot: Slot) -> None:
        """The granted send is being made now (call it just before the request)."""
        slot.at = max(slot.at, self._clock())

    def sending(self, slot: Slot) -> None:
        """`began(slot)`, and again when the transport reports the request written
        (`request_written`, within this task)."""
        self.began(slot)
        _sending.set((self, slot))

    async def wait_turn(self, chat_id: str | None = None) -> Slot:
        """Wait for this chat's gap (outside the queue), then for the next global slot."""
        if chat_id is not None and chat_id in self._last_by_chat:
            gap = self._last_by_chat[chat_id] + self.per_chat_interval - self._clock()
            if gap > 0:
                await self._sleep(gap)
        async with self._lock:  # global slots are handed out in order, one at a time
            while True:
                now = self._clock()
                start = max(self._next_slot, self._paused_until)
                if len(self._grants) == self.per_window:
                    start = max(start, self._grants[0].at + self.window + self.margin)
                if start <= now:
                    break
                # Re-check after waking: a 429 may have paused the bot meanwhile.
                await self._sleep(start - now)
            behind = now - self._next_slot
            base = self._next_slot if behind < max(self.interval, self.catch_up) else now
            self._next_slot = base + self.interval
            slot = Slot(now)
            self._grants.append(slot)
        if chat_id is not None:
            self._last_by_chat[chat_id] = now
            self._last_by_chat.move_to_end(chat_id)
            if len(self._last_by_chat) > _CHAT_MEMORY:
                self._last_by_chat.popitem(last=False)
        return slot


# The pacer and slot of the send this task is making (set by Pacer.sending).
_sending: ContextVar[tuple[Pacer, Slot] | None] = ContextVar("pacer_sending", default=None)
