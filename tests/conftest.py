"""Test harness: a guard against the internet, and fresh databases on SQLite and PostgreSQL."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.models import Base
from db.seed import seed_all
from haidang.settings import normalise_database_url
from tests.s3 import S3Server, start_server

# --- the network guard -----------------------------------------------------------------------


class InternetAccessError(AssertionError):
    """A test tried to reach a host that is not on this machine."""


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check_address(family: int, address: Any) -> None:
    if family == getattr(socket, "AF_UNIX", None):
        return  # local sockets (PostgreSQL's socket, asyncio's self-pipe) stay on the machine
    host = address[0] if isinstance(address, tuple) else address
    if not _is_loopback(host):
        raise InternetAccessError(f"tests may only connect to loopback, not {address!r}")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self.family, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self.family, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # Resolving a public name is already a packet to the outside (DNS), so refuse it here.
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and not _is_loopback(name):
        raise InternetAccessError(f"tests may not resolve {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


# --- unhandled exceptions in the logs ---------------------------------------------------------

# Our packages log the errors they handle (and answer with an apology); anything logged with
# a traceback by another logger (asyncio's "Task exception was never retrieved", PTB's "No
# error handlers are registered", uvicorn's "Exception in ASGI application") escaped us.
OUR_LOGGERS = ("bot", "broadcasts", "audio", "web", "haidang", "db")


class UnhandledRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        ours = record.name.split(".", 1)[0] in OUR_LOGGERS
        if not ours and (record.exc_info or "exception" in record.getMessage().lower()):
            self.records.append(record)


UNHANDLED = UnhandledRecorder()


@pytest.fixture(autouse=True)
def no_unhandled_exceptions_logged() -> Iterator[None]:
    """Fails any test during which an exception escaped our code into the logs."""
    UNHANDLED.records.clear()
    yield
    escaped = [f"{r.name}: {r.getMessage()}" for r in UNHANDLED.records]
    UNHANDLED.records.clear()
    assert not escaped, f"unhandled exceptions were logged: {escaped}"


def pytest_configure(config: pytest.Config) -> None:
    logging.getLogger().addHandler(UNHANDLED)
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = _guarded_getaddrinfo


# --- databases -------------------------------------------------------------------------------

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])


@dataclass
class Database:
    """A fresh, empty-of-rows schema for one test, on one backend."""

    backend: str
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pg_url() -> str:
    return normalise_database_url(TEST_DATABASE_URL)


@pytest.fixture
async def database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh schema built by create_all (throwaway): a SQLite file, or a PostgreSQL schema."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        engine = make_engine(url)
        schema = None
    else:
        url = _pg_url()
        schema = f"t_{uuid.uuid4().hex[:16]}"
        admin = make_engine(url)
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await admin.dispose()
        engine = make_engine(url, connect_args={"server_settings": {"search_path": schema}})
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        yield Database(backend, url, engine, make_sessionmaker(engine))
    finally:
        await engine.dispose()
        if schema is not None:
            admin = make_engine(url)
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()


@pytest.fixture
async def seeded(database: Database) -> Database:
    """The fresh schema with the 2025 map and the topics."""
    async with database.sessions.begin() as session:
        await seed_all(session)
    return database


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to a brand-new empty database (for migrations and CLI subprocesses).

    PostgreSQL gets a whole throwaway database, since a CLI cannot be handed a search_path.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    base = make_url(TEST_DATABASE_URL)
    name = f"t_{uuid.uuid4().hex[:16]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_admin(statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        dsn = make_url(TEST_DATABASE_URL).set(drivername="postgresql")
        connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def sqlite_count(path: Path, table: str) -> int:
    """Row count read with the standard library, independent of our engine code."""
    with sqlite3.connect(path) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- object storage ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 for the whole run, started by the first test that asks
    for it; those tests skip, saying why, where it cannot start."""
    server = start_server()
    if isinstance(server, str):
        pytest.skip(f"no S3-protocol server for the S3 store tests: {server}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the test S3 server."""
    return s3_server.new_bucket()
