"""A small population with the awkward cases counts must get right (see build_population)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas
from broadcasts.subscribers import ensure_bot
from db.models import (
    Area,
    AreaKind,
    ChatAddress,
    Platform,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
    Topic,
)
from tests.conftest import Database


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


@dataclass
class Population:
    """Area ids of the population (codes in the docstring of build_population)."""

    cat_hai: int  # commune 11914 of Hải Phòng (p31)
    other_hp: int  # another commune of Hải Phòng
    village: int  # a village under Cát Hải
    province: int  # p31 itself
    elsewhere: int  # a commune of another province
    topic_id: int  # the topic only A and G follow


async def build_population(database: Database) -> Population:
    """Seven people (telegram and zalo bots), each an awkward case:

    A fisherman, follows Cát Hải and another Hải Phòng commune, telegram + zalo, consent 09/2026;
    B villager, follows a village of Cát Hải, telegram, consent 2026-10-31 18:30 UTC, which
      is 01:30 on 1 November in Hải Phòng;
    C border guard, follows Cát Hải, stopped on 2026-11-20, consent 09/2026;
    D fisherman, follows a commune of another province, telegram, consent 10/2026;
    E erased: no follows, no address;
    F fisherman, follows Cát Hải, telegram address inactive (blocked), consent 10/2026;
    G radio operator, follows the province p31 itself, telegram, consent 11/2026.
    A and G follow one topic; nobody else follows any.
    """
    async with database.sessions.begin() as session:
        telegram = await ensure_bot(session, Platform.telegram)
        zalo = await ensure_bot(session, Platform.zalo)
        cat_hai = await _area(session, Area.code == "11914")
        province = await _area(session, Area.code == "p31")
        other_hp = await _area(
            session, Area.province_id == province, Area.kind == AreaKind.commune, Area.id != cat_hai
        )
        elsewhere = await _area(
            session, Area.province_id != province, Area.kind == AreaKind.commune
        )
        village = (await areas.add_subarea(session, "11914", "Thôn Thử", AreaKind.village)).id
        topic_id = await _first_topic(session)
        chat = 0

        async def person(
            role: SubscriberRole,
            follows: list[int],
            addresses: list[tuple[int, bool]],
            consent: dt.datetime,
            *,
            status: SubscriberStatus = SubscriberStatus.active,
            stopped_at: dt.datetime | None = None,
            topic: bool = False,
        ) -> None:
            nonlocal chat
            someone = Subscriber(
                role=role, status=status, consent_at=consent, stopped_at=stopped_at,
                created_at=consent,
            )  # fmt: skip
            session.add(someone)
            await session.flush()
            for area_id in follows:
                session.add(Subscription(subscriber_id=someone.id, area_id=area_id))
            for bot_id, active in addresses:
                chat += 1
                session.add(
                    ChatAddress(
                        subscriber_id=someone.id, bot_id=bot_id, chat_id=f"p{chat}", active=active
                    )
                )
            if topic:
                session.add(SubscriberTopic(subscriber_id=someone.id, topic_id=topic_id))

        fisher, villager = SubscriberRole.fisherman, SubscriberRole.villager
        await person(fisher, [cat_hai, other_hp], [(telegram.id, True), (zalo.id, True)],
                     utc(2026, 9, 10, 3), topic=True)  # fmt: skip  # A
        await person(villager, [village], [(telegram.id, True)], utc(2026, 10, 31, 18, 30))  # B
        await person(SubscriberRole.border_guard, [cat_hai], [(telegram.id, True)],
                     utc(2026, 9, 5, 3), status=SubscriberStatus.stopped,
                     stopped_at=utc(2026, 11, 20, 3))  # fmt: skip  # C
        await person(fisher, [elsewhere], [(telegram.id, True)], utc(2026, 10, 2, 3))  # D
        await person(fisher, [], [], utc(2026, 9, 1, 3), status=SubscriberStatus.erased)  # E
        await person(fisher, [cat_hai], [(telegram.id, False)], utc(2026, 10, 15, 3))  # F
        await person(SubscriberRole.radio_operator, [province], [(telegram.id, True)],
                     utc(2026, 11, 3, 3), topic=True)  # fmt: skip  # G
    return Population(cat_hai, other_hp, village, province, elsewhere, topic_id)


async def _area(session: AsyncSession, *conditions: ColumnElement[bool]) -> int:
    found = await session.scalar(select(Area.id).where(*conditions).order_by(Area.id).limit(1))
    assert found is not None
    return int(found)


async def _first_topic(session: AsyncSession) -> int:
    found = await session.scalar(select(Topic.id).order_by(Topic.id).limit(1))
    assert found is not None
    return int(found)
