"""The pacer: even spacing, no catch-up bursts, per-chat gaps, 429 pauses."""

from __future__ import annotations

import asyncio
import time

from broadcasts.pacing import Pacer


async def test_slots_are_evenly_spaced_at_the_rate() -> None:
    pacer = Pacer(50)
    stamps = []
    for _ in range(26):
        await pacer.wait_turn()
        stamps.append(time.monotonic())
    elapsed = stamps[-1] - stamps[0]
    assert 0.48 <= elapsed <= 0.6  # 25 intervals of 20 ms


async def test_a_stall_is_not_caught_up_with_a_burst() -> None:
    pacer = Pacer(100)
    await pacer.wait_turn()
    await asyncio.sleep(0.2)  # the caller stalled for 20 slots
    start = time.monotonic()
    for _ in range(5):
        await pacer.wait_turn()
    assert time.monotonic() - start >= 0.035  # still ~10 ms apart, not five at once


async def test_one_chat_waits_its_gap_without_holding_up_others() -> None:
    pacer = Pacer(1000, per_chat_interval=0.3)
    await pacer.wait_turn("a")
    start = time.monotonic()
    second_a = asyncio.create_task(pacer.wait_turn("a"))
    await pacer.wait_turn("b")
    assert time.monotonic() - start < 0.05
    await second_a
    assert time.monotonic() - start >= 0.28


async def test_pause_stops_every_slot() -> None:
    pacer = Pacer(1000)
    pacer.pause(0.2)
    start = time.monotonic()
    await pacer.wait_turn("x")
    assert time.monotonic() - start >= 0.19
