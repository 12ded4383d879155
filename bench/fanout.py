"""Fan-out of one run to a big audience (default 1,000,000) on SQLite and PostgreSQL.

Target (DESIGN "Performance targets"): `runs.fan_out` of 1,000,000 deliveries <= 10 s on
SQLite and on PostgreSQL; a second call is idempotent (adds nothing) and is timed too.
The audience is built set-based beforehand; that set-up is timed separately.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
    topic_ids,
)
from broadcasts import runs, subscribers
from db.models import BroadcastRun, Delivery, Subscriber


@dataclass
class StatementLog:
    """Every statement the engine runs while armed, with its wall time; with `explain`
    set, the fan-out's INSERT ... SELECT runs under that EXPLAIN prefix instead and its
    plan rows are kept."""

    armed: bool = False
    explain: str | None = None
    entries: list[tuple[str, float]] = field(default_factory=list)
    plans: list[list[str]] = field(default_factory=list)

    def attach(self, engine: AsyncEngine) -> None:
        def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any):
            context._bench_started = time.perf_counter()
            if self.explain and statement.lstrip().startswith("INSERT INTO deliveries"):
                statement = f"{self.explain} {statement}"
            return statement, params

        def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any):
            if self.explain and statement.startswith(self.explain):
                rows = [tuple(row) for row in cursor.fetchall()]
                if conn.dialect.name == "sqlite":  # (id, parent, notused, detail)
                    self.plans.append([f"{r[3]}  (id {r[0]}, parent {r[1]})" for r in rows])
                else:
                    self.plans.append([str(r[0]) for r in rows])
            if self.armed:
                self.entries.append((statement, time.perf_counter() - context._bench_started))

        event.listen(engine.sync_engine, "before_cursor_execute", before, retval=True)
        event.listen(engine.sync_engine, "after_cursor_execute", after)

    def take(self) -> list[tuple[str, float]]:
        entries, self.entries = self.entries, []
        return entries


@dataclass
class Timing:
    backend: str
    rows: int
    setup_s: float
    first_s: float
    first_commit_s: float
    first_total: int
    second_s: float
    second_commit_s: float
    second_added: int
    statements: list[tuple[str, float]]
    second_statements: list[tuple[str, float]]
    first_cpu_s: float
    second_cpu_s: float
    erase_statements: list[tuple[str, float]]


async def cpu_clock(session: AsyncSession) -> Callable[[], float]:
    """CPU seconds of whatever does the database work for `session`, as a clock.

    The machine these benches share is often busy, so wall time alone says little: on
    SQLite the work is in this process (time.process_time, aiosqlite's thread included);
    on PostgreSQL it is the session's backend (utime + stime from /proc, same machine).
    """
    if session.get_bind().dialect.name == "sqlite":
        return time.process_time
    pid = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)
    ticks = os.sysconf("SC_CLK_TCK")

    def backend() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime

    return backend


async def timed_fan_out(
    sessions: async_sessionmaker[AsyncSession], run_id: int, args: argparse.Namespace
) -> tuple[int, float, float, float]:
    """(total, seconds in fan_out, seconds to commit, CPU seconds of both)."""
    async with sessions() as session:
        async with session.begin():
            run = await session.get_one(BroadcastRun, run_id)
            cpu = await cpu_clock(session)
            cpu_started = cpu()
            started = time.perf_counter()
            total = await runs.fan_out(session, run, NOW, chunk=args.chunk)
            done = time.perf_counter()
        committed = time.perf_counter()
        cpu_used = cpu() - cpu_started
    return total, done - started, committed - done, cpu_used


async def erase_probe(sessions: async_sessionmaker[AsyncSession]) -> tuple[float, float]:
    """Seconds of /xoa (subscribers.erase) for the two newest subscribers, rolled back.

    The first pays SQLAlchemy's one-off statement compilation; the second is what every
    later /xoa costs.
    """
    took: list[float] = []
    async with sessions() as session:
        await session.begin()
        newest = await session.scalars(select(Subscriber).order_by(Subscriber.id.desc()).limit(2))
        for person in newest.all():
            started = time.perf_counter()
            await subscribers.erase(session, person, NOW)
            await session.flush()
            took.append(time.perf_counter() - started)
        await session.rollback()
    return took[0], took[1]


async def explained_fan_out(
    sessions: async_sessionmaker[AsyncSession],
    log: StatementLog,
    run_id: int,
    args: argparse.Namespace,
) -> list[list[str]]:
    """Plans of the fan-out INSERTs for a fresh run, in a transaction that is rolled back:
    EXPLAIN QUERY PLAN on SQLite (not executed); EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL
    (executed, so the timings are real, then undone)."""
    dialect = sessions.kw["bind"].dialect.name
    log.explain = "EXPLAIN QUERY PLAN" if dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS)"
    log.plans = []
    try:
        async with sessions() as session:
            await session.begin()
            run = await session.get_one(BroadcastRun, run_id)
            await runs.fan_out(session, run, NOW, chunk=args.chunk)
            await session.rollback()
    finally:
        log.explain = None
    return log.plans


async def bench_backend(backend: str, url: str, args: argparse.Namespace) -> Timing:
    engine, sessions = await prepared_database(url)
    log = StatementLog()
    log.attach(engine)
    try:
        started = time.perf_counter()
        async with sessions.begin() as session:
            bot_id = await telegram_bot_id(session)
            await add_audience(
                session, count=args.rows, bot_id=bot_id,
                area_ids=await area_ids(session, province=args.province),
                topic_ids=(await topic_ids(session))[: args.topics],
            )  # fmt: skip
        if args.drop_status_index:
            # Experiment: without this index the planner drives the chunk from chat_addresses.
            async with engine.begin() as connection:
                await connection.exec_driver_sql("DROP INDEX ix_subscribers_status")
        analyze = args.analyze if backend == "sqlite" else not args.no_analyze
        if analyze:
            # PostgreSQL: what autovacuum would have done long before a real 1M audience is
            # reached. SQLite: nothing in the service runs ANALYZE (--analyze is an experiment).
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("ANALYZE")
        setup = time.perf_counter() - started
        bulletin_id = await approved_bulletin(
            sessions, areas=[args.province], topic_slug="thoi-tiet" if args.topics else None
        )
        run_id = await new_run(sessions, bulletin_id)
        print(f"[{backend}] set-up: {args.rows:,} subscribers in {setup:.1f} s", flush=True)

        log.armed = True
        total, first, first_commit, first_cpu = await timed_fan_out(sessions, run_id, args)
        log.armed = False
        statements = log.take()
        print(
            f"[{backend}] first fan_out: {total:,} deliveries in {first:.2f} s "
            f"+ commit {first_commit:.2f} s (CPU {first_cpu:.2f} s; load {load()})",
            flush=True,
        )
        log.armed = True
        again, second, second_commit, second_cpu = await timed_fan_out(sessions, run_id, args)
        log.armed = False
        second_statements = log.take()
        async with sessions() as session:
            count = int(
                await session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.run_id == run_id)
                )
                or 0
            )
        assert again == total == count, (again, total, count)
        print(
            f"[{backend}] second fan_out: {again - total} added in {second:.2f} s "
            f"(CPU {second_cpu:.2f} s; load {load()})",
            flush=True,
        )
        log.armed = True
        erase = await erase_probe(sessions)
        log.armed = False
        erase_statements = log.take()
        print(
            f"[{backend}] erase probe: /xoa of one subscriber (subscribers.erase: blanks the "
            f"chat address, deliveries untouched) with {count:,} deliveries present: "
            f"{erase[0] * 1000:.1f} ms, then {erase[1] * 1000:.1f} ms (rolled back)",
            flush=True,
        )
        if args.explain:
            fresh = await new_run(sessions, bulletin_id, fire_at=NOW + dt.timedelta(minutes=1))
            plans = await explained_fan_out(sessions, log, fresh, args)
            if backend == "sqlite":
                async with engine.connect() as connection:
                    version = await connection.scalar(text("SELECT sqlite_version()"))
                print(f"[{backend}] SQLite {version}")
            for number, plan in enumerate(plans[: args.explain_chunks], 1):
                print(f"[{backend}] plan of chunk {number}/{len(plans)}'s INSERT ... SELECT:")
                for line in plan:
                    print(f"    {line}")
        return Timing(
            backend=backend,
            rows=args.rows,
            setup_s=setup,
            first_s=first,
            first_commit_s=first_commit,
            first_total=total,
            second_s=second,
            second_commit_s=second_commit,
            second_added=again - total,
            statements=statements,
            second_statements=second_statements,
            first_cpu_s=first_cpu,
            second_cpu_s=second_cpu,
            erase_statements=erase_statements,
        )
    finally:
        await engine.dispose()


async def main_async(args: argparse.Namespace) -> list[Timing]:
    timings: list[Timing] = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
            url = sqlite_url(str(Path(tmp) / "bench.db"))
            timings.append(await bench_backend("sqlite", url, args))
    if args.backend in ("postgresql", "both"):
        async with pg_database() as url:
            timings.append(await bench_backend("postgresql", url, args))
    return timings


def load() -> str:
    """The 1-minute load average over the core count: how busy the shared machine was."""
    return f"{os.getloadavg()[0]:.1f}/{os.cpu_count()} cores"


def report(timings: list[Timing], target: float) -> None:
    print()
    header = (
        f"{'backend':<11} {'rows':>10} {'set-up s':>9} {'fan_out s':>10} {'commit s':>9} "
        f"{'CPU s':>6} {'rows/s':>10} {'again s':>8} {'CPU s':>6} {'added':>6}  verdict"
    )
    print(header)
    print("-" * len(header))
    for t in timings:
        first = t.first_s + t.first_commit_s
        second = t.second_s + t.second_commit_s
        ok = first <= target and second <= target
        print(
            f"{t.backend:<11} {t.first_total:>10,} {t.setup_s:>9.1f} {t.first_s:>10.2f} "
            f"{t.first_commit_s:>9.2f} {t.first_cpu_s:>6.2f} {t.first_total / first:>10,.0f} "
            f"{second:>8.2f} {t.second_cpu_s:>6.2f} {t.second_added:>6}  "
            f"{'OK' if ok else 'MISSED'} (target <= {target:.0f} s each, wall)"
        )
    for t in timings:
        for name, statements in (
            ("first fan_out", t.statements),
            ("second fan_out", t.second_statements),
            ("erase probe", t.erase_statements),
        ):
            print(f"\n[{t.backend}] statements of the {name} call (wall s):")
            for statement, took in statements:
                if took >= 0.001 or statement.startswith(("INSERT", "COMMIT")):
                    print(f"    {took:8.3f}  {' '.join(statement.split())[:100]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="audience (1,000,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--chunk", type=int, default=runs.FANOUT_CHUNK, help="fan-out chunk")
    parser.add_argument("--topics", type=int, default=6, help="topics each subscriber follows")
    parser.add_argument("--province", default="p31", help="audience: this province's communes")
    parser.add_argument("--explain", action="store_true", help="print the INSERT's plan")
    parser.add_argument("--explain-chunks", type=int, default=1, help="plans to print (1)")
    parser.add_argument("--no-analyze", action="store_true", help="skip ANALYZE on PostgreSQL")
    parser.add_argument("--analyze", action="store_true", help="experiment: ANALYZE on SQLite")
    parser.add_argument(
        "--drop-status-index", action="store_true",
        help="experiment: drop ix_subscribers_status before measuring",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"$ {command_line()}")
    print(
        f"audience: {args.rows:,} subscribers following the communes of {args.province} "
        f"round robin, {args.topics} topics each; bulletin to {args.province}"
        f"{' on topic thoi-tiet' if args.topics else ''}; chunk {args.chunk:,}"
        f"{' (runs.FANOUT_CHUNK)' if args.chunk == runs.FANOUT_CHUNK else ' (EXPERIMENT)'}"
        f"{'; EXPERIMENT: SQLite ANALYZE' if args.analyze else ''}"
        f"{'; EXPERIMENT: dropped ix_subscribers_status' if args.drop_status_index else ''}",
        flush=True,
    )
    report(asyncio.run(main_async(args)), target=10.0)


if __name__ == "__main__":
    main()
