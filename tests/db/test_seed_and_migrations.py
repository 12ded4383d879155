"""Migrations reach head on every backend, and the map and topics seed idempotently."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from db import schema
from db.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine
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


# Rows at the revision before b7f1a2c30001: a person reached by a run and writing to the
# inbox (address 1), and one who will be blank (address 2). Raw SQL: the models are newer.
_BEFORE_B7F1A2C30001 = [
    "INSERT INTO bots (id, platform, name, rate_per_second, per_chat_interval) "
    "VALUES (1, 'telegram', 'default', 30, 1)",
    "INSERT INTO officials (id, username, password_hash, role) VALUES (1, 'e', 'x', 'admin')",
    "INSERT INTO bulletins (id, title, body, priority, state, author_id, audience_roles, "
    "audience_platforms) VALUES (1, 'T', 'B', 'routine', 'sent', 1, '[]', '[]')",
    "INSERT INTO broadcast_runs (id, bulletin_id, fire_at, state) "
    "VALUES (1, 1, CURRENT_TIMESTAMP, 'done')",
    "INSERT INTO subscribers (id, role, status) VALUES (1, 'fisherman', 'active')",
    "INSERT INTO subscribers (id, role, status) VALUES (2, 'fisherman', 'active')",
    "INSERT INTO chat_addresses (id, subscriber_id, bot_id, chat_id) VALUES (1, 1, 1, '111')",
    "INSERT INTO chat_addresses (id, subscriber_id, bot_id, chat_id) VALUES (2, 2, 1, '222')",
    "INSERT INTO deliveries (id, run_id, chat_address_id, bot_id, priority, state) "
    "VALUES (1, 1, 1, 1, 1, 'sent')",
    "INSERT INTO deliveries (id, run_id, chat_address_id, bot_id, priority, state) "
    "VALUES (2, 1, 2, 1, 1, 'sent')",
    "INSERT INTO inbox_messages (id, subscriber_id, chat_address_id, kind, status) "
    "VALUES (1, 1, 1, 'text', 'new')",
]


def test_b7f1a2c30001_drops_delivery_keys_and_keeps_links_both_ways(database_url: str) -> None:
    import asyncio

    from alembic import command
    from sqlalchemy import inspect as inspect_schema

    url = normalise_database_url(database_url)
    config = schema.alembic_config(url)

    async def run(*statements: str) -> list[tuple[object, ...]]:
        engine = make_engine(url)
        async with engine.begin() as connection:
            for statement in statements[:-1]:
                await connection.execute(text(statement))
            rows = [tuple(r) for r in (await connection.execute(text(statements[-1]))).all()]
        await engine.dispose()
        return rows

    async def foreign_keys() -> list[str]:
        engine = make_engine(url)
        async with engine.connect() as connection:
            keys = await connection.run_sync(
                lambda sync: inspect_schema(sync).get_foreign_keys("deliveries")
            )
        await engine.dispose()
        return sorted(k["referred_table"] for k in keys)

    links = (
        "SELECT d.id, d.chat_address_id, i.chat_address_id FROM deliveries d "
        "LEFT JOIN inbox_messages i ON i.chat_address_id = d.chat_address_id ORDER BY d.id"
    )
    command.upgrade(config, "5d0c3a7e91b4")
    asyncio.run(run(*_BEFORE_B7F1A2C30001, "SELECT 1"))
    command.upgrade(config, "b7f1a2c30001")
    # SQLite rebuilt chat_addresses: the inbox message still reaches its chat.
    assert asyncio.run(run(links)) == [(1, 1, 1), (2, 2, None)]
    assert asyncio.run(foreign_keys()) == []
    # What /xoa does now: a blank address, still pointed at.
    blank = "UPDATE chat_addresses SET chat_id = NULL, active = FALSE WHERE id = 2"
    assert asyncio.run(run(blank, links)) == [(1, 1, 1), (2, 2, None)]

    # Down again: the blank address goes (its delivery keeps the anonymous count), the keys
    # come back, the live inbox link stays.
    command.downgrade(config, "5d0c3a7e91b4")
    assert asyncio.run(run(links)) == [(1, 1, 1), (2, None, None)]
    assert asyncio.run(run("SELECT id FROM chat_addresses ORDER BY id")) == [(1,)]
    assert asyncio.run(foreign_keys()) == ["areas", "bots", "broadcast_runs", "chat_addresses"]
    schema.upgrade(url)
    assert asyncio.run(run(links)) == [(1, 1, 1), (2, None, None)]


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
        assert (
            await connection.execute(text("PRAGMA busy_timeout"))
        ).scalar() == SQLITE_BUSY_TIMEOUT_MS
