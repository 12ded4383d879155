"""A candidate Pacer for broadcasts/pacing.py, measured by bench/sending.py --pacer window.

Not used by the service. The shipped Pacer re-bases every slot on the moment it actually
woke up (`next = max(now, next) + interval`), so each timer overshoot (about 1 ms with
asyncio's millisecond epoll timeouts) is added to every interval: at 30 msg/s that alone
costs about 3 % of the rate, and at 1000 msg/s (a 1 ms slot, shorter than the overshoot)
about 15 %. This one keeps slots on an absolute schedule (an overshoot is absorbed, not
accumulated, up to `catch_up` seconds; a real stall still re-bases, so there is no
catch-up burst) and guards the platform's sliding window directly: at most
`floor(rate * window)` grants in any `window + margin` seconds, the margin covering
jitter between our clock and the platform's arrival stamps.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from broadcasts.pacing import _CHAT_MEMORY, Pacer


class WindowPacer(Pacer):
    def __init__(
        self,
        rate_per_second: float,
        per_chat_interval: float = 1.0,
        *,
        window: float = 1.0,
        margin: float = 0.015,
        catch_up: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate_per_second, per_chat_interval, clock=clock)
        self.window = window
        self.margin = margin
        self.catch_up = catch_up
        self._grants: deque[float] = deque(maxlen=self._per_window(rate_per_second))

    def _per_window(self, rate_per_second: float) -> int:
        return max(1, math.floor(rate_per_second * self.window + 1e-9))

    def set_rate(self, rate_per_second: float) -> None:
        super().set_rate(rate_per_second)
        self._grants = deque(self._grants, maxlen=self._per_window(rate_per_second))

    async def wait_turn(self, chat_id: str | None = None) -> None:
        if chat_id is not None and chat_id in self._last_by_chat:
            gap = self._last_by_chat[chat_id] + self.per_chat_interval - self._clock()
            if gap > 0:
                await asyncio.sleep(gap)
        async with self._lock:
            while True:
                now = self._clock()
                start = max(self._next_slot, self._paused_until)
                if len(self._grants) == self._grants.maxlen:
                    start = max(start, self._grants[0] + self.window + self.margin)
                if start <= now:
                    break
                await asyncio.sleep(start - now)
            behind = now - self._next_slot
            # Late by a little (timer overshoot, which at 1000 msg/s exceeds a whole slot):
            # keep the schedule, absorbing it. Later than that (a stall, a pause, the first
            # send): start a new schedule from now, so a stall is never caught up in a burst.
            base = self._next_slot if behind < max(self.interval, self.catch_up) else now
            self._next_slot = base + self.interval
            self._grants.append(now)
        if chat_id is not None:
            self._last_by_chat[chat_id] = now
            self._last_by_chat.move_to_end(chat_id)
            if len(self._last_by_chat) > _CHAT_MEMORY:
                self._last_by_chat.popitem(last=False)
