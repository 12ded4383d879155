"""Migrations reach head on every backend, and the map and topics seed idempotently."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from db import schema
from db.engine import make_engine
from db.models import Area, AreaKind, Base, Lease, Topic
from db.seed import TOPICS, seed_all
from haidang.settings import normalise_database_url
from tests.conftest import Database


def test_migrations_reach_head_from_empty_and_match_the_models(database_url: str) -> None:
    import asyncio

    url = normalise_database_url(database_url)
    schema.upgrade(url)

    async def inspect() -> tuple[str | None, list[object]]:
        engine = make_engine(url)
        async with engine.connect() as connection:
            revision = await schema.current_revision(engine)
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "include_name": schema.include_name}
                    ),
                    Base.metadata,
                )
            )
        await engine.dispose()
        return revision, diff

    revision, diff = asyncio.run(inspect())
    assert revision == schema.head_revision()
    assert diff == []  # what `alembic check` checks: the migrations build exactly the models
    schema.upgrade(url)  # a second upgrade is a no-op


async def test_map_counts_and_idempotent_seed(database: Database) -> None:
    async with database.sessions.begin() as session:
        first = await seed_all(session)
    assert (first.provinces_added, first.communes_added, first.topics_added) == (34, 3321, 6)
    async with database.sessions.begin() as session:
        second = await seed_all(session)
    assert (second.provinces_added, second.communes_added, second.topics_added) == (0, 0, 0)
    async with database.sessions() as session:
        rows = await session.execute(select(Area.kind, func.count()).group_by(Area.kind))
        counts = dict(rows.all())
        assert counts == {AreaKind.province: 34, AreaKind.commune: 3321}
        types = dict(
            (
                await session.execute(
                    select(Area.division_type, func.count())
                    .where(Area.kind == AreaKind.commune)
                    .group_by(Area.division_type)
                )
            ).all()
        )
        assert types == {"xã": 2621, "phường": 687, "đặc khu": 13}
        # Every commune hangs under its province; the 13 island đặc khu start coastal.
        orphans = await session.scalar(
            select(func.count()).where(Area.kind == AreaKind.commune, Area.parent_id.is_(None))
        )
        assert orphans == 0
        coastal = await session.scalar(select(func.count()).where(Area.coastal.is_(True)))
        assert coastal == 13
        cat_hai = await session.scalar(select(Area).where(Area.code == "11914"))
        assert cat_hai is not None and cat_hai.name == "Đặc khu Cát Hải"
        assert cat_hai.name_folded == "dac khu cat hai"
        hai_phong = await session.scalar(select(Area).where(Area.code == "p31"))
        assert hai_phong is not None and cat_hai.province_id == hai_phong.id


async def test_topics_are_seeded_and_edits_survive_a_reseed(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        topics = (await session.scalars(select(Topic).order_by(Topic.position))).all()
        assert [t.slug for t in topics] == [slug for slug, _, _ in TOPICS]
        assert topics[1].name == "Chủ quyền biển đảo"
        topics[0].name = "Phổ biến, giáo dục pháp luật"
        await session.delete(topics[5])
    async with seeded.sessions.begin() as session:
        report = await seed_all(session)
        assert report.topics_added == 1  # the deleted one comes back; the edit is kept
    async with seeded.sessions() as session:
        names = (await session.scalars(select(Topic.name).order_by(Topic.position))).all()
        assert names[0] == "Phổ biến, giáo dục pháp luật"
        assert "Thông báo địa phương" in names


async def test_datetimes_come_back_aware_in_utc(database: Database) -> None:
    local = dt.datetime(2026, 11, 25, 7, 30, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    async with database.sessions.begin() as session:
        session.add(Lease(name="sender:telegram:default", holder="w1", expires_at=local))
    async with database.sessions() as session:
        lease = await session.get(Lease, "sender:telegram:default")
        assert lease is not None
        assert lease.expires_at.tzinfo is not None
        assert lease.expires_at == local
        assert lease.expires_at.utcoffset() == dt.timedelta(0)


async def test_naive_datetimes_are_refused(database: Database) -> None:
    async with database.sessions() as session:
        session.add(Lease(name="x", holder="w", expires_at=dt.datetime(2026, 1, 1)))  # noqa: DTZ001
        with pytest.raises(Exception, match="naive datetime"):
            await session.flush()


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(database: Database) -> None:
    if database.backend != "sqlite":
        pytest.skip("SQLite pragmas only")
    async with database.engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 10_000
