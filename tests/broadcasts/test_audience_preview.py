"""The preview's recipient count is exactly what the fan-out's recipients query selects."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import func, select

from broadcasts import audiences, bulletins, officials
from broadcasts.subscribers import ensure_bot
from db.models import (
    Area,
    Bot,
    ChatAddress,
    OfficialRole,
    Platform,
    Subscriber,
    SubscriberRole,
    Subscription,
    Topic,
)
from tests.broadcasts.engine import NOW
from tests.broadcasts.population import Population, build_population
from tests.conftest import Database


async def _disabled_bot_person(database: Database, area_id: int) -> None:
    """H: follows Cát Hải, reachable only through a disabled bot."""
    async with database.sessions.begin() as session:
        spare = await ensure_bot(session, Platform.telegram, name="spare")
        spare.enabled = False
        someone = Subscriber(role=SubscriberRole.fisherman, consent_at=NOW)
        session.add(someone)
        await session.flush()
        session.add(Subscription(subscriber_id=someone.id, area_id=area_id))
        session.add(ChatAddress(subscriber_id=someone.id, bot_id=spare.id, chat_id="spare-1"))


@pytest.mark.parametrize(
    ("areas", "roles", "platforms", "topic", "expected"),
    [
        # A (telegram + zalo), B (village), G (the province); C stopped, F blocked.
        (["p31"], [], [], False, {"telegram": 3, "zalo": 1}),
        (["11914"], [], [], False, {"telegram": 2, "zalo": 1}),  # A, B; not H (disabled bot)
        (["11914.1"], [], [], False, {"telegram": 1}),  # B only
        (["11914", "elsewhere"], [], [], False, {"telegram": 3, "zalo": 1}),  # A, B, D
        (["p31"], [SubscriberRole.fisherman], [], False, {"telegram": 1, "zalo": 1}),  # A
        (["p31"], [], [Platform.zalo], False, {"zalo": 1}),  # A's zalo address
        (["p31"], [], [], True, {"telegram": 2, "zalo": 1}),  # A and G follow the topic
        (["p31"], [SubscriberRole.border_guard], [], False, {}),  # C stopped: nobody
    ],
)
async def test_preview_counts_what_fan_out_selects(
    seeded: Database,
    areas: list[str],
    roles: Sequence[SubscriberRole],
    platforms: Sequence[Platform],
    topic: bool,
    expected: dict[str, int],
) -> None:
    pop: Population = await build_population(seeded)
    await _disabled_bot_person(seeded, pop.cat_hai)
    async with seeded.sessions.begin() as session:
        elsewhere = await session.get_one(Area, pop.elsewhere)
        codes = [elsewhere.code if code == "elsewhere" else code for code in areas]
        admin = await officials.create(
            session, username="root", role=OfficialRole.admin, password="z" * 12
        )
        slug = await session.scalar(select(Topic.slug).where(Topic.id == pop.topic_id))
        bulletin = await bulletins.create(
            session, author=admin, title="Thông báo", body="Nội dung thông báo.",
            area_codes=codes, now=NOW, roles=roles, platforms=platforms,
            topic_slug=slug if topic else None,
        )  # fmt: skip
        preview = await audiences.preview(session, bulletin)
        selected = audiences.recipients(bulletin).subquery()
        rows = await session.execute(
            select(Bot.platform, func.count())
            .select_from(selected)
            .join(Bot, Bot.id == selected.c.bot_id)
            .group_by(Bot.platform)
        )
        fan_out = {platform.value: int(count) for platform, count in rows.all()}
    assert preview.by_platform == fan_out == expected
    assert preview.total == sum(expected.values())
    if expected:  # each bot sends at its own rate, in parallel: the slowest decides
        assert preview.estimated_seconds == pytest.approx(max(expected.values()) / 30.0)
