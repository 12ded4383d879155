"""Audiences: who a bulletin reaches (areas ∪, filtered by roles, topics, platforms)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Area,
    Bot,
    Bulletin,
    BulletinArea,
    ChatAddress,
    Platform,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
)


def _filters(bulletin: Bulletin) -> list[ColumnElement[bool]]:
    """Who may receive at all, and the bulletin's role, platform and topic filters."""
    conditions = [
        Subscriber.status == SubscriberStatus.active,
        ChatAddress.active.is_(True),
        # A phone kept for fallback steps is reached only by broadcasts.fallback.
        ChatAddress.fallback.is_(False),
        Bot.enabled.is_(True),
    ]
    if bulletin.audience_roles:
        conditions.append(Subscriber.role.in_(bulletin.audience_roles))
    if bulletin.audience_platforms:
        conditions.append(Bot.platform.in_([Platform(p) for p in bulletin.audience_platforms]))
    if bulletin.topic_id is not None:
        conditions.append(
            exists().where(
                SubscriberTopic.subscriber_id == Subscriber.id,
                SubscriberTopic.topic_id == bulletin.topic_id,
            )
        )
    return conditions


def _in_audience(bulletin: Bulletin, followed: Any) -> ColumnElement[bool]:
    """A followed area matches: an audience area itself, a commune of it, a village of it."""
    in_audience = select(BulletinArea.area_id).where(BulletinArea.bulletin_id == bulletin.id)
    return or_(
        followed.c.id.in_(in_audience),
        followed.c.province_id.in_(in_audience),
        followed.c.parent_id.in_(in_audience),
    )


def matching_areas(bulletin: Bulletin) -> Select[int]:
    """Ids of the areas whose followers are in the audience (the same test as `recipients`)."""
    followed = Area.__table__.alias("followed")
    return select(followed.c.id).where(_in_audience(bulletin, followed))


def recipients(bulletin: Bulletin) -> Select[int, int, Any]:
    """(chat_address_id, bot_id, area_id): one row per reachable chat address.

    An audience area matches a subscription to itself, to a commune of it (a province),
    or to a village of it (a commune). A person following two matching communes gets
    one delivery per chat address, attributed to the first area (for reports).
    """
    followed = Area.__table__.alias("followed")
    conditions = [*_filters(bulletin), _in_audience(bulletin, followed)]
    return (
        select(ChatAddress.id, ChatAddress.bot_id, func.min(followed.c.id))
        .select_from(ChatAddress)
        .join(Subscriber, Subscriber.id == ChatAddress.subscriber_id)
        .join(Bot, Bot.id == ChatAddress.bot_id)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .join(followed, followed.c.id == Subscription.area_id)
        .where(and_(*conditions))
        .group_by(ChatAddress.id, ChatAddress.bot_id)
    )


@dataclass(frozen=True)
class Preview:
    """What an official sees before sending: how many, on which bots, how long."""

    total: int
    by_platform: dict[str, int]
    estimated_seconds: float  # bots send in parallel, each at its own rate


def audience_key(bulletin: Bulletin, area_ids: Iterable[int]) -> Hashable:
    """What `preview` depends on besides the data: bulletins with equal keys count the same."""
    return (
        tuple(sorted(area_ids)),
        tuple(sorted(bulletin.audience_roles)),
        tuple(sorted(bulletin.audience_platforms)),
        bulletin.topic_id,
    )


async def preview(session: AsyncSession, bulletin: Bulletin) -> Preview:
    """The number of chat addresses `recipients` would give, per bot, without listing them.

    Same conditions as `recipients`, but each address is counted where it stands (its
    person is among those following a matching area) instead of grouped per address:
    no sort of the whole audience, one pass over the people in the audience areas.
    """
    followed = Area.__table__.alias("followed")
    matching_areas = select(followed.c.id).where(_in_audience(bulletin, followed))
    people = select(Subscription.subscriber_id).where(Subscription.area_id.in_(matching_areas))
    conditions = [*_filters(bulletin), Subscriber.id.in_(people)]
    rows = await session.execute(
        select(Bot.platform, Bot.rate_per_second, func.count())
        .select_from(ChatAddress)
        .join(Subscriber, Subscriber.id == ChatAddress.subscriber_id)
        .join(Bot, Bot.id == ChatAddress.bot_id)
        .where(and_(*conditions))
        .group_by(Bot.id, Bot.platform, Bot.rate_per_second)
    )
    by_platform: dict[str, int] = {}
    seconds = 0.0
    for platform, rate, count in rows.all():
        by_platform[platform.value] = by_platform.get(platform.value, 0) + int(count)
        seconds = max(seconds, int(count) / max(float(rate), 0.1))
    return Preview(
        total=sum(by_platform.values()), by_platform=by_platform, estimated_seconds=seconds
    )
