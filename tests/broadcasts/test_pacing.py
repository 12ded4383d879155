"""The pacer on virtual time: window bound, rate kept despite overshoot, no catch-up bursts,
per-chat gaps, and 429 pauses of the whole bot."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest

from broadcasts.pacing import LANE_SHARE, Lane, Pacer, request_written


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
            if future.done():  # a sleep that was cancelled (the pacer's nap)
                continue
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
    assert stamps["b"][1] - stamps["b"][0] > 0.3 + pacer.margin
    # The gap, plus the window's margin (the platform counts arrivals).
    assert stamps["a"][1] - stamps["a"][0] == pytest.approx(0.3 + pacer.margin)
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


# --- lanes ---------------------------------------------------------------------------------


async def test_slots_go_to_first_answers_then_answers_then_urgent_then_routine() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 10.0)
    order: list[str] = []

    async def send(name: str, lane: Lane, delay: float) -> None:
        await time.sleep(delay)
        await pacer.wait_turn(name, lane)
        order.append(name)

    # A routine send takes the first slot; everyone else arrives while it is out, the
    # lower lanes first.
    await time.run(
        send("routine-1", Lane.routine, 0.0),
        send("routine-2", Lane.routine, 0.01),
        send("urgent", Lane.urgent, 0.02),
        send("answer", Lane.reply, 0.03),
        send("newcomer", Lane.first_reply, 0.04),
    )
    assert order == ["routine-1", "newcomer", "answer", "urgent", "routine-2"]


async def test_a_crowd_of_answers_slows_a_storm_warning_but_never_stops_it() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 30.0)
    granted: list[tuple[Lane, float]] = []

    async def send(chat: str, lane: Lane) -> None:
        await pacer.wait_turn(chat, lane)
        granted.append((lane, time.now))

    crowd = [send(f"person-{n}", Lane.first_reply) for n in range(300)]
    warning = [send(f"fisher-{n}", Lane.urgent) for n in range(100)]
    news = [send(f"reader-{n}", Lane.routine) for n in range(30)]
    await time.run(*crowd, *warning, *news)
    first_ten_seconds = [lane for lane, at in granted if at < 10.0]
    # The crowd takes most slots, the warning at least one in LANE_SHARE[urgent].
    assert first_ten_seconds.count(Lane.urgent) >= len(first_ten_seconds) // LANE_SHARE[Lane.urgent]
    assert first_ten_seconds.count(Lane.first_reply) >= len(first_ten_seconds) // 2
    # Routine news waits behind the warning (no share of its own while urgent ones wait
    # beside nothing else) but is not starved by the crowd either.
    assert Lane.routine in first_ten_seconds
    # Every send got a slot, and the bot never went over its limit (less a rounding hair:
    # a grant lands exactly window + margin after the oldest).
    assert len(granted) == 430
    assert most_in_any([at for _, at in granted], 1.0 + pacer.margin - 1e-9) <= 30


@pytest.mark.parametrize(
    ("rate", "gap", "order"),
    [
        # a's second part waits its chat's gap while the later arrivals are served...
        (100.0, 0.5, ["a0", "b", "c", "d", "e", "f", "g", "a1"]),
        # ...and once the gap is over it goes first: it began before all of them.
        (10.0, 0.15, ["a0", "b", "a1", "c", "d", "e", "f", "g"]),
    ],
)
async def test_the_next_part_of_an_answer_keeps_its_place(
    rate: float, gap: float, order: list[str]
) -> None:
    time = VirtualTime()
    pacer = pacer_on(time, rate, per_chat_interval=gap)
    sent: list[str] = []

    async def answer(chat: str, parts: int) -> None:
        since = time.now
        for part in range(parts):
            await pacer.wait_turn(chat, Lane.first_reply, since=since)
            sent.append(f"{chat}{part}")

    async def later(chat: str) -> None:
        await time.sleep(0.01)
        await pacer.wait_turn(chat, Lane.first_reply)
        sent.append(chat)

    await time.run(answer("a", 2), *(later(c) for c in "bcdefg"))
    assert sent == order


async def test_a_waiting_chat_holds_up_nobody_and_a_newcomer_is_served_at_once() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 100.0, per_chat_interval=1.0)
    stamps: dict[str, float] = {}

    async def two_parts() -> None:
        await pacer.wait_turn("a", Lane.reply)
        await pacer.wait_turn("a", Lane.reply)  # waits a's gap: the pacer naps
        stamps["a1"] = time.now

    async def newcomer() -> None:
        await time.sleep(0.3)
        await pacer.wait_turn("b", Lane.routine)
        stamps["b"] = time.now

    await time.run(two_parts(), newcomer())
    assert stamps["b"] == pytest.approx(0.3)  # not kept waiting until a's gap ends
    assert stamps["a1"] == pytest.approx(1.0 + pacer.margin)


async def test_a_cancelled_wait_uses_no_slot() -> None:
    time = VirtualTime()
    pacer = pacer_on(time, 10.0)
    grants: list[float] = []

    async def impatient() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0):  # gives up before its turn
                await pacer.wait_turn("x", Lane.reply)

    await time.run(take(pacer, time, 1, grants))
    await impatient()
    await time.run(take(pacer, time, 1, grants))
    assert grants == [0.0, pytest.approx(0.1)]
    assert pacer.waiting(Lane.reply) == 0
