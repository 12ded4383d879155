"""The outbox on virtual time: 429s pause the bot and are not attempts, transient failures
are retried with backoff and then given up, answers find their lane, 429s are counted."""

from __future__ import annotations

import pytest

from broadcasts.channels import FailureKind, SendFailure
from broadcasts.outbox import FIRST_ANSWER_WINDOW_S, Outbox, RetryPolicy
from broadcasts.pacing import Lane
from tests.broadcasts.test_pacing import VirtualTime


def outbox_on(time: VirtualTime, rate: float = 10.0, **retry: object) -> Outbox:
    return Outbox(
        rate, 0.0, retry=RetryPolicy(**retry),  # type: ignore[arg-type]
        clock=time.clock, sleep=time.sleep,
    )  # fmt: skip


class Platform:
    """Answers requests as told: a list of failures to raise first, then "ok"."""

    def __init__(self, time: VirtualTime, *failures: SendFailure) -> None:
        self.time = time
        self.failures = list(failures)
        self.calls: list[float] = []

    async def request(self) -> str:
        self.calls.append(self.time.now)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_a_429_pauses_the_whole_bot_and_the_request_goes_after_it() -> None:
    time = VirtualTime()
    outbox = outbox_on(time, max_attempts=1)  # a 429 is not an attempt: one is enough
    limited = Platform(time, SendFailure(FailureKind.rate_limited, "slow down", retry_after=3))
    other = Platform(time)
    results: list[str] = []

    async def answer() -> None:
        results.append(await outbox.send("a", Lane.first_reply, limited.request))

    async def someone_else() -> None:
        await time.sleep(0.5)
        results.append(await outbox.send("b", Lane.reply, other.request))

    await time.run(answer(), someone_else())
    assert results == ["ok", "ok"]
    assert limited.calls == [0.0, pytest.approx(3.0)]
    # The other chat's request waited for the pause too: the limit is the bot's.
    assert other.calls[0] >= 3.0
    assert outbox.stats().rate_limited_last_hour == 1


async def test_timeouts_are_retried_with_backoff_then_given_up_with_the_reason() -> None:
    time = VirtualTime()
    outbox = outbox_on(time, max_attempts=3, backoff_s=(1.0, 5.0))
    flaky = Platform(time, *(SendFailure(FailureKind.transient, "Timed out") for _ in range(2)))
    assert await _run(time, outbox.send("a", Lane.reply, flaky.request)) == "ok"
    assert flaky.calls == [0.0, pytest.approx(1.0), pytest.approx(6.0)]

    down = Platform(time, *(SendFailure(FailureKind.transient, "Bad Gateway") for _ in range(9)))
    with pytest.raises(SendFailure, match="retries exhausted: Bad Gateway"):
        await _run(time, outbox.send("b", Lane.reply, down.request))
    assert len(down.calls) == 3


async def test_a_refusal_is_not_retried() -> None:
    time = VirtualTime()
    outbox = outbox_on(time)
    blocked = Platform(time, SendFailure(FailureKind.blocked, "bot was blocked by the user"))
    with pytest.raises(SendFailure, match="blocked"):
        await _run(time, outbox.send("a", Lane.reply, blocked.request))
    assert len(blocked.calls) == 1


async def test_a_platform_that_never_lets_go_does_not_hold_a_request_forever() -> None:
    time = VirtualTime()
    outbox = outbox_on(time, max_rate_limited=4)
    stuck = Platform(
        time, *(SendFailure(FailureKind.rate_limited, "wait", retry_after=1) for _ in range(9))
    )
    with pytest.raises(SendFailure) as raised:
        await _run(time, outbox.send("a", Lane.reply, stuck.request))
    assert raised.value.kind is FailureKind.rate_limited and len(stuck.calls) == 4


async def test_an_uncounted_request_goes_at_once_even_during_a_pause() -> None:
    time = VirtualTime()
    outbox = outbox_on(time)
    outbox.rate_limited(30.0)
    toast = Platform(time)
    await _run(time, outbox.send("a", Lane.first_reply, toast.request, counted=False))
    assert toast.calls == [0.0]


def test_a_person_is_a_newcomer_until_answered_then_again_after_a_while() -> None:
    now = [0.0]
    outbox = Outbox(30, clock=lambda: now[0])
    assert outbox.answer_lane("a") is Lane.first_reply
    now[0] = 10.0
    assert outbox.answer_lane("a") is Lane.reply  # in a conversation
    assert outbox.answer_lane("b") is Lane.first_reply
    now[0] += FIRST_ANSWER_WINDOW_S + 1
    assert outbox.answer_lane("a") is Lane.first_reply  # back after a long while


def test_429s_older_than_an_hour_drop_out_of_the_count() -> None:
    now = [0.0]
    outbox = Outbox(30, clock=lambda: now[0])
    outbox.rate_limited(1.0)
    now[0] = 1800.0
    outbox.rate_limited(1.0)
    assert outbox.stats().rate_limited_last_hour == 2
    now[0] = 3700.0
    stats = outbox.stats()
    assert stats.rate_limited_last_hour == 1 and stats.rate_per_second == 30


async def _run(time: VirtualTime, work: object) -> str:
    result: list[str] = []

    async def keep() -> None:
        result.append(await work)  # type: ignore[misc]

    await time.run(keep())
    return result[0]
