"""Engine and session factories, with the SQLite pragmas the service relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# How long a SQLite writer waits for another writer before "database is locked". SQLite's
# busy handler is not a queue (waiters poll, and one can lose many times in a row), so on a
# loaded machine 20 webhook updates at once went past 10 s in CI; a wait is better than
# an update answered with an apology.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (web pages) run while a sender writes; foreign keys are off by default
    # in SQLite, and busy_timeout turns a lock clash into a wait instead of an error.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_take_over_transactions(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module opens transactions itself, lazily and DEFERRED, which breaks
    # SAVEPOINT and lets two writers deadlock on the read-to-write upgrade. We emit BEGIN
    # ourselves instead (SQLAlchemy's documented recipe for pysqlite/aiosqlite).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the async engine for `url` (sqlite+aiosqlite or postgresql+asyncpg)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "connect", _sqlite_take_over_transactions)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def connection_lost(error: BaseException) -> bool:
    """Whether `error` is the database connection going away (PostgreSQL restarted, the
    connection killed or dropped mid-transaction, no free connection in the pool, the
    server not reachable yet): the transaction rolled back (unless the connection died in
    its COMMIT, which may have gone through: callers that retry must recognise that), and
    trying again on a new connection works once the server answers."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.InterfaceError | exc.TimeoutError | OSError)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for units of work; they keep loaded objects usable after commit.

    On SQLite every session transaction is BEGIN IMMEDIATE: it takes the write lock up
    front, so concurrent writers (senders, the scheduler, the bots) queue on busy_timeout
    instead of failing with "database is locked" on a read-to-write upgrade.
    """
    if engine.dialect.name == "sqlite":
        engine = engine.execution_options(sqlite_begin="IMMEDIATE")
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work that only reads. On SQLite it begins DEFERRED instead of IMMEDIATE,
    so it does not queue for the write lock behind the writers (WAL lets a reader run
    beside one); a write in it could fail on the read-to-write upgrade, so do none."""
    async with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            await session.connection(execution_options={"sqlite_begin": "DEFERRED"})
        yield session


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite both speak it)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
