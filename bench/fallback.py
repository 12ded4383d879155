"""One fallback pass (broadcasts.fallback.advance) over a run of 10,000 and 100,000 people.

Each person is on the Telegram bot with a consented phone; the urgent bulletin's chain is
ZNS then SMS after 30 minutes; step 0 is marked sent, a tenth of the people tapped "Đã
nhận". Timed: a pass before anything is due, the pass that creates the ZNS step, the same
pass again (nothing to create: the whole query, idempotent), the SMS step once every ZNS
message failed, and fallback.steps (what the progress page reads). SQLite always;
PostgreSQL too when TEST_DATABASE_URL is set (a throwaway database on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, text, update

from bench.common import (
    NOW,
    add_audience,
    approved_bulletin,
    area_ids,
    command_line,
    new_run,
    pg_database,
    prepared_database,
    sqlite_url,
    telegram_bot_id,
)
from broadcasts import fallback, runs
from broadcasts.subscribers import ensure_bot
from db.models import BroadcastRun, Bulletin, Delivery, DeliveryState, Platform
from db.types import UTCDateTime

MINUTES = 30
SENT_AT = NOW + dt.timedelta(minutes=1)
DUE = SENT_AT + dt.timedelta(minutes=MINUTES)


async def _timed(sessions: Any, work: Callable[[Any], Awaitable[Any]]) -> tuple[Any, float]:
    """(result, wall seconds) of `work` in one transaction, commit included."""
    started = time.perf_counter()
    async with sessions.begin() as session:
        result = await work(session)
    return result, time.perf_counter() - started


async def bench_backend(backend: str, url: str, people: int) -> list[tuple[str, int, float]]:
    engine, sessions = await prepared_database(url)
    try:
        started = time.perf_counter()
        async with sessions.begin() as session:
            bot_id = await telegram_bot_id(session)
            await ensure_bot(session, Platform.zns)
            await ensure_bot(session, Platform.sms)
            await add_audience(
                session, count=people, bot_id=bot_id,
                area_ids=await area_ids(session, code="11914"), topic_ids=[],
            )  # fmt: skip
            kind = "VARCHAR" if backend == "postgresql" else "TEXT"
            await session.execute(
                text(
                    f"UPDATE subscribers SET phone = CAST(84900000000 + id AS {kind}), "
                    "phone_consent_at = :now"
                ).bindparams(bindparam("now", NOW, type_=UTCDateTime()))
            )
        bulletin_id = await approved_bulletin(sessions, urgent=True)
        async with sessions.begin() as session:
            bulletin = await session.get_one(Bulletin, bulletin_id)
            bulletin.fallback_minutes = MINUTES
            bulletin.fallback_platforms = ["zns", "sms"]
        run_id = await new_run(sessions, bulletin_id)
        async with sessions.begin() as session:
            run = await session.get_one(BroadcastRun, run_id)
            await runs.fan_out(session, run, NOW)
            await session.execute(
                update(Delivery)
                .where(Delivery.run_id == run_id)
                .values(state=DeliveryState.sent, sent_at=SENT_AT)
            )
            await session.execute(
                text(
                    "INSERT INTO acknowledgements (bulletin_id, subscriber_id, created_at) "
                    "SELECT :bulletin, id, :at FROM subscribers WHERE id % 10 = 0"
                ).bindparams(bindparam("at", SENT_AT, type_=UTCDateTime())),
                {"bulletin": bulletin_id},
            )
        if backend == "postgresql":
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("ANALYZE")
        print(f"[{backend}] set-up of {people:,} people: {time.perf_counter() - started:.1f} s")

        figures: list[tuple[str, int, float]] = []

        async def measure(label: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
            result, took = await _timed(sessions, work)
            made = result if isinstance(result, int) else len(result)
            figures.append((label, made, took))
            print(f"[{backend}] {label}: {made:,} in {took:.3f} s", flush=True)
            return result

        await measure("pass before due", lambda s: fallback.advance(s, DUE - dt.timedelta(1)))
        await measure("pass creating ZNS", lambda s: fallback.advance(s, DUE))
        await measure("same pass again", lambda s: fallback.advance(s, DUE))
        async with sessions.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.run_id == run_id, Delivery.step == 1)
                .values(state=DeliveryState.failed, reason="bench")
            )
        await measure("pass creating SMS", lambda s: fallback.advance(s, DUE + dt.timedelta(0, 60)))
        await measure("steps (page)", lambda s: fallback.steps(s, bulletin_id, DUE))
        async with sessions() as session:
            total = await session.scalar(select(func.count()).where(Delivery.run_id == run_id))
        print(f"[{backend}] deliveries in the run: {total:,}")
        return figures
    finally:
        await engine.dispose()


async def main_async(args: argparse.Namespace) -> None:
    results: list[tuple[str, int, list[tuple[str, int, float]]]] = []
    for people in args.people:
        with tempfile.TemporaryDirectory(prefix="bench-fallback-") as tmp:
            url = sqlite_url(str(Path(tmp) / "bench.db"))
            results.append(("sqlite", people, await bench_backend("sqlite", url, people)))
        if os.environ.get("TEST_DATABASE_URL") and not args.sqlite_only:
            async with pg_database() as url:
                results.append(
                    ("postgresql", people, await bench_backend("postgresql", url, people))
                )
    print()
    header = f"{'backend':<11} {'people':>8}  {'what':<20} {'rows':>8} {'wall s':>8}"
    print(header)
    print("-" * len(header))
    for backend, people, figures in results:
        for label, made, took in figures:
            print(f"{backend:<11} {people:>8,}  {label:<20} {made:>8,} {took:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--people", type=int, nargs="+", default=[10_000, 100_000], help="people in the run"
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    print(f"$ {command_line()}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
