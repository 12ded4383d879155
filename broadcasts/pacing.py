"""Pacing for one bot: an even global rate, a per-chat gap, and pauses after a 429."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

# How many chats' last-send times to remember; older chats cannot be inside the gap.
_CHAT_MEMORY = 100_000


class Pacer:
    """Hands out send slots at `rate` per second, evenly spaced.

    Slots follow an absolute schedule, but a late slot is never caught up with a burst:
    after a stall the next slot is one interval after *now*, so no second of sending
    ever holds more than `rate` requests (what a platform's window counts).
    A per-chat gap keeps two messages to one person (a long bulletin's parts) apart, and
    `pause()` stops the whole bot after a 429 for the platform's `retry_after`.
    """

    def __init__(
        self,
        rate_per_second: float,
        per_chat_interval: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.interval = 1.0 / rate_per_second
        self.per_chat_interval = per_chat_interval
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_by_chat: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    def set_rate(self, rate_per_second: float) -> None:
        self.interval = 1.0 / rate_per_second

    def pause(self, seconds: float) -> None:
        """Stop handing out slots for `seconds` (a 429's retry_after)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    async def wait_turn(self, chat_id: str | None = None) -> None:
        """Wait for this chat's gap (outside the queue), then for the next global slot."""
        if chat_id is not None and chat_id in self._last_by_chat:
            gap = self._last_by_chat[chat_id] + self.per_chat_interval - self._clock()
            if gap > 0:
                await asyncio.sleep(gap)
        async with self._lock:  # global slots are handed out in order, one at a time
            while True:
                now = self._clock()
                start = max(now, self._next_slot, self._paused_until)
                if start <= now:
                    break
                await asyncio.sleep(start - now)
            self._next_slot = max(now, self._next_slot) + self.interval
        if chat_id is not None:
            self._last_by_chat[chat_id] = now
            self._last_by_chat.move_to_end(chat_id)
            if len(self._last_by_chat) > _CHAT_MEMORY:
                self._last_by_chat.popitem(last=False)
