"""What every `haidang` command shares: failing cleanly, the clock, one committed transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import areas, officials
from db.engine import make_engine, make_sessionmaker
from db.models import Official
from haidang.settings import Settings

T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr; raise the result to exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@asynccontextmanager
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    async with sessions(settings) as factory, factory.begin() as session:
        yield session


def run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; domain errors (ValueError and its kin,
    which every domain error is) become `error: …` and exit code 1."""

    async def runner() -> T:
        async with transaction(settings) as session:
            return await work(session)

    try:
        return asyncio.run(runner())
    except (areas.AreaError, officials.OfficialError, ValueError) as exc:
        raise fail(str(exc)) from None


def run_with_sessions(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Like `run`, but `work` gets a session factory and opens its own short transactions
    (a render must not hold one: on SQLite it would block the running service's writers);
    ValueError and LookupError (an unknown TTS engine) become `error: …` and exit code 1."""

    async def runner() -> T:
        async with sessions(settings) as factory:
            return await work(factory)

    try:
        return asyncio.run(runner())
    except (ValueError, LookupError) as exc:
        raise fail(str(exc)) from None


async def active_official(session: AsyncSession, username: str) -> Official:
    """The active official with this login name; OfficialError when there is none."""
    official = await session.scalar(
        select(Official).where(
            Official.username == username.strip().lower(), Official.active.is_(True)
        )
    )
    if official is None:
        raise officials.OfficialError(f"unknown official: {username}")
    return official
