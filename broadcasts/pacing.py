"""Pacing for one bot: a fixed schedule at the rate, a guarded window, per-chat gaps, 429
pauses, and lanes that decide who gets the next slot."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

# How many chats' last-send times to remember; older chats cannot be inside the gap.
_CHAT_MEMORY = 100_000


class Lane(enum.IntEnum):
    """Who is waiting for a send slot; a lower value goes first."""

    first_reply = 0  # the answer to someone not answered lately: a crowd's newcomers first
    reply = 1  # later answers, edits of a pressed message, officials' inbox replies
    urgent = 2  # an urgent broadcast (storm warnings)
    routine = 3  # a routine broadcast


# While a lane waits behind higher ones it still gets at least one slot in this many: a
# crowd of chat replies slows a storm warning down but never stops it.
LANE_SHARE = {Lane.urgent: 3, Lane.routine: 10}


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

    __slots__ = ("at", "chat_id")

    def __init__(self, at: float, chat_id: str | None = None) -> None:
        self.at = at
        self.chat_id = chat_id


class _Waiter:
    __slots__ = ("chat_id", "future", "key", "lane")

    def __init__(
        self, chat_id: str | None, lane: Lane, key: tuple[float, int], future: asyncio.Future[Slot]
    ) -> None:
        self.chat_id = chat_id
        self.lane = lane
        self.key = key  # (waiting since, arrival order): its place in the lane
        self.future = future


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

    Everything a bot sends waits here, in a `Lane`: each slot goes to the oldest waiter of
    the first lane that has one, except that a lane in LANE_SHARE that was passed over
    that many times minus one gets the slot. A waiter whose chat had a slot less than
    `per_chat_interval` ago sits aside until its gap ends, holding up nobody; `pause()`
    stops the whole bot after a 429. The slots are handed out by the first waiter when
    nobody else does (until its own turn), else by a task started on demand and gone when
    nobody waits.

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
        # Per lane, a heap of waiters by key; beside them, those waiting for a chat's gap.
        self._ready: list[list[tuple[tuple[float, int], _Waiter]]] = [[] for _ in Lane]
        self._aside: list[tuple[float, int, _Waiter]] = []  # (gap ends, order, waiter)
        self._order = itertools.count()
        self._passed = [0 for _ in Lane]  # grants to higher lanes while this one waited
        self._waiting = [0 for _ in Lane]
        self._granting = False  # a task, or a waiter inline, is handing slots out
        self._granter: asyncio.Task[None] | None = None
        self._arrival: asyncio.Future[None] | None = None
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

    def waiting(self, lane: Lane) -> int:
        """Sends waiting for a slot in `lane` (a chat's gap included)."""
        return self._waiting[lane]

    def began(self, slot: Slot) -> None:
        """The granted send is being made now (call it just before the request)."""
        slot.at = max(slot.at, self._clock())
        chat = slot.chat_id
        if chat is not None and self._last_by_chat.get(chat, -math.inf) < slot.at:
            self._last_by_chat[chat] = slot.at  # its gap, too, counts from when it went

    def sending(self, slot: Slot) -> None:
        """`began(slot)`, and again when the transport reports the request written
        (`request_written`, within this task)."""
        self.began(slot)
        _sending.set((self, slot))

    async def wait_turn(
        self, chat_id: str | None = None, lane: Lane = Lane.routine, *, since: float | None = None
    ) -> Slot:
        """Wait for a slot in `lane`, after this chat's gap.

        Within a lane the oldest goes first; `since` (this pacer's clock) lets the next
        message of something already under way, such as an answer's second part, keep the
        place the whole began with instead of going to the back.
        """
        now = self._clock()
        key = (now if since is None else since, next(self._order))
        waiter = _Waiter(chat_id, lane, key, asyncio.get_running_loop().create_future())
        self._waiting[lane] += 1
        self._enqueue(waiter, now)
        try:
            if not self._granting:
                # Nobody hands slots out: this caller does, until its own turn. A lone
                # sender (the usual case) then waits in its own task, with no task switch
                # per send: at 1000 msg/s that is a third of the pacer's cost.
                return await self._grant_inline(waiter)
            if self._arrival is not None and not self._arrival.done():
                self._arrival.set_result(None)  # the granter naps until a gap ends: wake it
            return await waiter.future
        finally:
            # Granted, or given up (cancelled): either way no longer waiting. A grant that
            # raced with a cancellation is simply not used.
            self._waiting[lane] -= 1

    async def _grant_inline(self, waiter: _Waiter) -> Slot:
        self._granting = True
        try:
            await self._grant(until=waiter)
            return waiter.future.result()
        except BaseException:
            if not waiter.future.done():
                waiter.future.cancel()  # given up: skipped when its turn comes
            raise
        finally:
            self._granting = False
            if any(self._ready) or self._aside:  # others came meanwhile: a task goes on
                self._granting = True
                self._granter = asyncio.create_task(self._grant_while_waited_for(), name="pacer")

    def _gap_ends(self, chat_id: str | None, now: float) -> float | None:
        """When this chat's gap ends, if it has not yet (with the window's margin: the
        platform counts arrivals, and requests take different times to get there)."""
        last = self._last_by_chat.get(chat_id) if chat_id is not None else None
        if last is None:
            return None
        ends = last + self.per_chat_interval + (self.margin if self.per_chat_interval else 0.0)
        return ends if ends > now else None

    def _enqueue(self, waiter: _Waiter, now: float) -> None:
        ends = self._gap_ends(waiter.chat_id, now)
        if ends is not None:
            heapq.heappush(self._aside, (ends, next(self._order), waiter))
        else:
            heapq.heappush(self._ready[waiter.lane], (waiter.key, waiter))

    async def _grant_while_waited_for(self) -> None:
        try:
            await self._grant()
        except BaseException as exc:
            # Cancelled at shutdown, or a bug: no sender or reply may be left waiting forever.
            waiters = [w for lane in self._ready for _, w in lane] + [w for *_, w in self._aside]
            self._ready, self._aside = [[] for _ in Lane], []
            for waiter in waiters:
                if waiter.future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    waiter.future.cancel()
                else:
                    waiter.future.set_exception(exc)
            raise
        finally:
            self._granting = False

    async def _grant(self, until: _Waiter | None = None) -> None:
        """Hand out slots while anyone waits (or until `until` has its own)."""
        while True:
            now = self._clock()
            while self._aside and self._aside[0][0] <= now:
                waiter = heapq.heappop(self._aside)[2]
                heapq.heappush(self._ready[waiter.lane], (waiter.key, waiter))
            if not any(self._ready) and not self._aside:
                return
            start = max(self._next_slot, self._paused_until)
            if len(self._grants) == self.per_window:
                start = max(start, self._grants[0].at + self.window + self.margin)
            if start > now:
                # Re-check after waking: a 429 may have paused the bot meanwhile.
                await self._sleep(start - now)
                continue
            chosen = self._pick(now)
            if chosen is None:
                if self._aside:  # everyone waits for a chat's gap: until one ends or a send
                    await self._nap(self._aside[0][0] - now)  # of another chat comes
                continue
            behind = now - self._next_slot
            base = self._next_slot if behind < max(self.interval, self.catch_up) else now
            self._next_slot = base + self.interval
            slot = Slot(now, chosen.chat_id)
            self._grants.append(slot)
            if chosen.chat_id is not None:
                self._last_by_chat[chosen.chat_id] = now
                self._last_by_chat.move_to_end(chosen.chat_id)
                if len(self._last_by_chat) > _CHAT_MEMORY:
                    self._last_by_chat.popitem(last=False)
            chosen.future.set_result(slot)
            if chosen is until:
                return

    def _pick(self, now: float) -> _Waiter | None:
        """The waiter the next slot goes to (see the class docstring), or None."""
        heads: list[_Waiter | None] = []
        for lane in Lane:
            heads.append(self._head(self._ready[lane], now))
        chosen: Lane | None = None
        for lane in Lane:
            if heads[lane] is None:
                continue
            if chosen is None:
                chosen = lane
            elif lane in LANE_SHARE and self._passed[lane] >= LANE_SHARE[lane] - 1:
                chosen = lane
                break
        if chosen is None:
            return None
        for lane in Lane:
            if heads[lane] is not None:
                self._passed[lane] = 0 if lane == chosen else self._passed[lane] + 1
        return heapq.heappop(self._ready[chosen])[1]

    def _head(self, ready: list[tuple[tuple[float, int], _Waiter]], now: float) -> _Waiter | None:
        """The first live waiter of a lane whose chat's gap is over; others step aside."""
        while ready:
            waiter = ready[0][1]
            if waiter.future.done():  # cancelled while it waited
                heapq.heappop(ready)
                continue
            ends = self._gap_ends(waiter.chat_id, now)
            if ends is not None:  # another send to this chat went first: wait for the gap
                heapq.heappop(ready)
                heapq.heappush(self._aside, (ends, next(self._order), waiter))
                continue
            return waiter
        return None

    async def _nap(self, seconds: float) -> None:
        """Sleep up to `seconds`, or until a new waiter arrives."""
        arrival: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sleeper: asyncio.Future[Any] = asyncio.ensure_future(self._sleep(seconds))
        self._arrival = arrival
        try:
            await asyncio.wait({sleeper, arrival}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._arrival = None
            if not sleeper.done():
                sleeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sleeper


# The pacer and slot of the send this task is making (set by Pacer.sending).
_sending: ContextVar[tuple[Pacer, Slot] | None] = ContextVar("pacer_sending", default=None)
