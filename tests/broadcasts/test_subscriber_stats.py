"""Subscriber counts: people once, follows per area, platforms, growth by local month."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select

from broadcasts.subscriber_stats import Month, subscriber_counts
from db.models import Area, Platform
from tests.broadcasts.population import build_population
from tests.conftest import Database

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)


async def _ids(database: Database, *conditions: ColumnElement[bool]) -> list[int]:
    async with database.sessions() as session:
        return list((await session.scalars(select(Area.id).where(or_(*conditions)))).all())


async def test_everywhere(seeded: Database) -> None:
    await build_population(seeded)
    async with seeded.sessions() as session:
        counts = await subscriber_counts(session, None, TZ, NOW)
    # A, B, D, F, G receive; C stopped and E erased do not.
    assert counts.total == 5
    assert counts.by_role == [("fisherman", 4), ("radio_operator", 1), ("villager", 1)]
    # F's only address is inactive; A has one on each platform.
    assert counts.by_platform == [(Platform.telegram, 4), (Platform.zalo, 1)]
    by_province = {code: count for code, _name, count in counts.by_province}
    assert by_province.pop("p31") == 5  # A twice, B (a village), F, G (the province itself)
    assert list(by_province.values()) == [1]  # D
    by_commune = {code: count for code, _name, _province, count in counts.by_commune}
    assert by_commune["11914"] == 2  # A and F; B follows the village, G the province
    assert by_commune["11914.1"] == 1
    # The other Hải Phòng commune (A) and the other province's (D); never the province.
    assert sorted(by_commune.values()) == [1, 1, 1, 2] and "p31" not in by_commune
    assert counts.growth == [
        Month("2026-09", joined=2, left=0, receiving=2),  # A, C
        Month("2026-10", joined=2, left=0, receiving=4),  # D, F
        # B gave consent at 01:30 on 1 November local time (still October in UTC); C left.
        Month("2026-11", joined=2, left=1, receiving=5),
    ]


async def test_province_scope(seeded: Database) -> None:
    pop = await build_population(seeded)
    scope = await _ids(seeded, Area.id == pop.province, Area.province_id == pop.province)
    async with seeded.sessions() as session:
        counts = await subscriber_counts(session, scope, TZ, NOW)
    assert counts.total == 4  # A (once, for two communes), B, F, G
    assert sum(count for _role, count in counts.by_role) == 5  # follows: A twice
    assert counts.by_platform == [(Platform.telegram, 3), (Platform.zalo, 1)]
    assert [(code, count) for code, _name, count in counts.by_province] == [("p31", 5)]
    assert [m.receiving for m in counts.growth] == [2, 3, 4]
    assert counts.growth[-1] == Month("2026-11", joined=2, left=1, receiving=4)


async def test_commune_scope_counts_its_villages(seeded: Database) -> None:
    pop = await build_population(seeded)
    scope = await _ids(seeded, Area.id == pop.cat_hai, Area.parent_id == pop.cat_hai)
    async with seeded.sessions() as session:
        counts = await subscriber_counts(session, scope, TZ, NOW)
    assert counts.total == 3  # A, B (village), F
    assert counts.by_role == [("fisherman", 2), ("villager", 1)]
    assert counts.by_platform == [(Platform.telegram, 2), (Platform.zalo, 1)]
    assert {code for code, *_rest in counts.by_commune} == {"11914", "11914.1"}
    assert counts.growth == [
        Month("2026-09", joined=2, left=0, receiving=2),  # A, C
        Month("2026-10", joined=1, left=0, receiving=3),  # F
        Month("2026-11", joined=1, left=1, receiving=3),  # B in, C out
    ]


async def test_empty_scope(seeded: Database) -> None:
    await build_population(seeded)
    async with seeded.sessions() as session:
        counts = await subscriber_counts(session, [], TZ, NOW)
    assert (counts.total, counts.by_role, counts.by_platform, counts.growth) == (0, [], [], [])
