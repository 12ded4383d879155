"""TtlCache: one computation per key and period, shared by concurrent callers; no failures kept."""

from __future__ import annotations

import asyncio

import pytest

from web.dashboard.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A computation that counts its calls and can be held open."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.release.wait()
        return self.calls


async def test_values_are_reused_until_they_expire() -> None:
    clock, compute = Clock(), Counter()
    cache: TtlCache[int] = TtlCache(60.0, clock=clock)
    assert (await cache.get("p31", compute)).value == 1
    clock.now += 59.9
    assert (await cache.get("p31", compute)).value == 1
    assert (await cache.get("p01", compute)).value == 2  # another key, its own value
    clock.now += 0.1
    first = await cache.get("p31", compute)
    assert (first.value, first.computed_at) == (3, clock.now)
    assert compute.calls == 3


async def test_concurrent_misses_share_one_computation() -> None:
    compute = Counter()
    compute.release.clear()
    cache: TtlCache[int] = TtlCache(60.0)
    waiting = [asyncio.create_task(cache.get("k", compute)) for _ in range(12)]
    await asyncio.sleep(0.01)
    assert compute.calls == 1
    compute.release.set()
    assert [entry.value for entry in await asyncio.gather(*waiting)] == [1] * 12


async def test_failures_are_not_kept() -> None:
    cache: TtlCache[int] = TtlCache(60.0)
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return 42

    with pytest.raises(RuntimeError):
        await cache.get("k", flaky)
    assert (await cache.get("k", flaky)).value == 42


async def test_concurrent_waiters_see_the_failure_too() -> None:
    cache: TtlCache[int] = TtlCache(60.0)
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise RuntimeError("database went away")

    first = asyncio.create_task(cache.get("k", failing))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get("k", failing))
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert [type(result) for result in results] == [RuntimeError, RuntimeError]


async def test_least_recently_used_keys_go_first() -> None:
    compute = Counter()
    cache: TtlCache[int] = TtlCache(60.0, max_entries=2)
    await cache.get("a", compute)
    await cache.get("b", compute)
    await cache.get("a", compute)  # "a" used last: "b" goes when "c" arrives
    await cache.get("c", compute)
    assert (await cache.get("a", compute)).value == 1
    assert (await cache.get("b", compute)).value == 4  # computed again


async def test_waiters_compute_it_themselves_when_the_first_caller_goes_away() -> None:
    compute = Counter()
    compute.release.clear()
    cache: TtlCache[int] = TtlCache(60.0)
    first = asyncio.create_task(cache.get("k", compute))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get("k", compute))
    await asyncio.sleep(0.01)
    first.cancel()  # e.g. the official closed the tab while the counts were running
    await asyncio.sleep(0.01)
    compute.release.set()
    assert (await second).value == 2  # computed again, by the second caller
    assert first.cancelled()
