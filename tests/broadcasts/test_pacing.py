"""The pacer on virtual time: window bound, rate kept despite overshoot, no catch-up bursts,
per-chat gaps, and 429 pauses of the whole bot."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest

from broadcasts.pacing import Pacer, request_written


class VirtualTime:
    """A clock that only moves when every task is waiting in `sleep`: it then jumps to the
    earliest wake-up. `overshoot` makes each wake-up late, like a real timer."""

    def __init__(self, overshoot: Callable[[], float] = lambda: 0.0) -> None:
        self.now = 0.0
        self._overshoot = overshoot
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        wake = self.now + max(0.0, seconds) + self._overshoot()
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        await future

    async def _settle(self) -> None:
        # Without real I/O, a few loop turns let every runnable task reach its next sleep.
        for _ in range(20):
            await asyncio.sleep(0)

    async def run(self, *work: Awaitable[object]) -> None:
        """Run `work` to completion, advancing virtual time whenever everything sleeps."""
        tasks = [asyncio.ensure_future(w) for w in work]
        while not all(t.done() for t in tasks):
            await self._settle()
            if all(t.done() for t in tasks):
                break
            assert self._sleepers, "tasks are blocked on something other than the clock"
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
        for task in tasks:
            task.result()

    async def after(self, seconds: float, action: Callable[[], object]) -> None:
        await self.sleep(seconds)
        action()


def pacer_on(time: VirtualTime, rate: float, **options: float) -> Pacer:
    return Pacer(rate, clock=time.clock, sleep=time.sleep, **options)


async def take(pacer: Pacer, time: VirtualTime, count: int, grants: list[float]) -> None:
    for _ in range(count):
        await pacer.wait_turn()
        grants.append(time.now)


def most_in_any(grants: Sequence[float], span: float) -> int:
    """Most grants in any half-open interval [t, t + span)."""
    best, low = 0, 0
    for high, stamp in enumerate(grants):
        while stamp - grants[low] >= span:
            low += 1
        best = max(best, high - low + 1)
    return best


@pytest.mark.parametrize("rate", [30.0, 29.5, 1000.0])
async def test_never_more_than_floor_rate_in_any_window_despite_jitter(rate: float) -> None:
    jitter = random.Random(4)
    time = VirtualTime(overshoot=lambda: jitter.uniform(0.0, 0.003))
    pacer = pacer_on(time, rate)
    grants: list[float] = []
    await time.run(take(pacer, time, int(rate * 10), grants))
    # What the platform counts: any 1 s, with our 15 ms margin for clock disagreement.
    assert most_in_any(grants, 1.0 + pacer.margin) <= int(rate)


@pytest.mark.parametrize("rate", [30.0, 1000.0])
async def test_timer_overshoot_does_not_lower_the_rate(rate: float) -> None:
    # 1 ms late on every wake-up: more than a whole slot at 1000 msg/s.
    time = VirtualTime(overshoot=lambda: 0.001)
    pacer = pacer_on(time, rate)
    grants: list[float] = []
    await time.run(take(pacer, time, int(rate * 10), grants))
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    # The window guard alone allows floor(rate) per 1.015 s: 98.5 % of the rate.
    assert achieved >= 0.98 * int(rate)


async def test_a_send_that_begins_late_counts_from_when_it_began() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 2.0)  # two sends in any second
    third: list[float] = []

    async def sends() -> None:
        first = await pacer.wait_turn()  # granted at 0
        await pacer.wait_turn()  # granted at 0.5
        await time.sleep(0.3)
        pacer.began(first)  # the busy event loop let the first request out only at 0.8
        await pacer.wait_turn()
        third.append(time.now)

    await time.run(sends())
    # Counted from its grant, the third could go at 1.015 and reach the platform within
    # 1 s of the first; counted from when the first began, it waits until 1.815.
    assert third == [pytest.approx(0.8 + 1.0 + pacer.margin)]


async def test_a_transport_reports_when_the_request_left_within_its_own_task() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 10.0)
    moments: dict[str, float] = {}

    async def send(name: str, connect: float) -> None:
        slot = await pacer.wait_turn()
        pacer.sending(slot)
        await time.sleep(connect)  # opening a connection before the request can leave
        request_written()
        moments[name] = slot.at

    await time.run(send("new connection", 0.05))
    await time.run(send("warm connection", 0.0))
    request_written()  # outside any send: nothing to update
    assert moments == {"new connection": pytest.approx(0.05), "warm connection": 0.1}


async def test_a_stall_is_not_caught_up_with_a_burst() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 100.0)
    grants: list[float] = []
    await time.run(take(pacer, time, 3, grants))
    await time.run(time.sleep(0.2))  # the caller stalled for 20 slots
    after: list[float] = []
    await time.run(take(pacer, time, 5, after))
    assert after[0] >= 0.2
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert gaps == pytest.approx([0.01] * 4)  # one slot apart, not five at once


async def test_one_chat_waits_its_gap_without_holding_up_others() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 1000.0, per_chat_interval=0.3)
    stamps: dict[str, list[float]] = {"a": [], "b": []}

    async def send(chat: str, delay: float) -> None:
        await time.sleep(delay)
        await pacer.wait_turn(chat)
        stamps[chat].append(time.now)

    await time.run(send("a", 0.0), send("a", 0.001), send("b", 0.002), send("b", 0.5))
    assert stamps["a"][1] - stamps["a"][0] == pytest.approx(0.3)
    assert stamps["b"][0] == pytest.approx(0.002)  # not queued behind a's gap
    assert stamps["b"][1] == pytest.approx(0.5)  # its own gap long over


async def test_a_429_pauses_every_slot_including_those_already_waiting() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 10.0)
    grants: list[float] = []
    # Twenty sends queued; at 0.25 s a send gets 429 retry_after=2.
    await time.run(take(pacer, time, 20, grants), time.after(0.25, lambda: pacer.pause(2.0)))
    assert not [g for g in grants if 0.25 <= g < 2.25]
    assert any(g >= 2.25 for g in grants)
    resumed = [g for g in grants if g >= 2.25]
    assert resumed[0] == pytest.approx(2.25)  # resumes at once, then at the rate again
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(resumed))


async def test_a_shorter_pause_never_shortens_a_longer_one() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 100.0)
    pacer.pause(3.0)
    pacer.pause(1.0)
    assert pacer.paused_for == pytest.approx(3.0)
    grants: list[float] = []
    await time.run(take(pacer, time, 1, grants))
    assert grants == [pytest.approx(3.0)]


async def test_rate_changes_apply_to_the_next_slots() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 10.0)
    grants: list[float] = []
    await time.run(take(pacer, time, 3, grants))
    pacer.set_rate(50.0)
    await time.run(take(pacer, time, 3, grants))
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(grants)]
    assert gaps == [0.1, 0.1, 0.1, 0.02, 0.02]
    with pytest.raises(ValueError):
        pacer.set_rate(0)


async def test_real_clock_keeps_the_rate() -> None:
    # One short check on the real event loop: 26 slots at 50 msg/s span about 0.5 s.
    pacer = Pacer(50)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(26):
        await pacer.wait_turn()
    assert 0.48 <= loop.time() - start <= 0.6
