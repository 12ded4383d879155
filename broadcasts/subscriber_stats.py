"""Subscriber counts by area, role and platform, and their growth by month: exact, in a scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import (
    Area,
    AreaKind,
    Bot,
    ChatAddress,
    Platform,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    Subscription,
)

# "not stopped or erased" rather than "= active" (the only other status): SQLite would
# otherwise drive the joins from the status index (every subscriber) instead of the
# subscriptions in scope.
_RECEIVING = Subscriber.status.not_in([SubscriberStatus.stopped, SubscriberStatus.erased])


@dataclass(frozen=True)
class Month:
    """One local calendar month of the growth table."""

    month: str  # "2026-11", local time
    joined: int  # people in scope who gave consent that month (and did not erase their data)
    left: int  # people in scope who stopped (/huy) that month and still have not come back
    receiving: int  # people in scope receiving bulletins at the end of the month


@dataclass(frozen=True)
class SubscriberCounts:
    """Everything the subscriber page shows. Follows ("lượt theo dõi") count a person once
    per area they follow; `total` and the platforms count people and chat addresses."""

    total: int  # people receiving bulletins who follow at least one area in scope
    by_province: list[tuple[str, str, int]]  # (code, name, follows), most first
    by_commune: list[tuple[str, str, str | None, int]]  # (code, name, province, follows)
    by_role: list[tuple[str, int]]  # (role value, follows), most first
    by_platform: list[tuple[Platform, int]]  # active chat addresses of those people
    growth: list[Month]  # oldest first; the last month's `receiving` equals `total`


def _people_in(area_ids: Sequence[int] | None) -> Select[Any]:
    """Ids of people following an area of `area_ids` (None: any area)."""
    follows = select(Subscription.subscriber_id)
    if area_ids is not None:
        follows = follows.where(Subscription.area_id.in_(area_ids))
    return follows


def _local_month(
    session: AsyncSession, column: Any, tz: ZoneInfo, now: dt.datetime
) -> ColumnElement[str]:
    """The local calendar month ("YYYY-MM") of a UTC timestamp column, computed in SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone(tz.key, column), "YYYY-MM")
    # SQLite stores naive UTC text and knows no zones: shift by the zone's offset at `now`
    # (Asia/Ho_Chi_Minh has kept +07:00 since 1975, so this is exact there).
    offset = now.astimezone(tz).utcoffset() or dt.timedelta()
    return func.strftime("%Y-%m", column, f"{int(offset.total_seconds() // 60):+d} minutes")


async def _follows(
    session: AsyncSession, area_ids: Sequence[int] | None
) -> tuple[dict[int, int], dict[str, int]]:
    """Follows of receiving people per area and per role, from one pass.

    One conditional sum per role keeps the GROUP BY on area_id alone, which both databases
    read in ix_subscriptions_area_subscriber order without sorting.
    """
    roles = list(SubscriberRole)
    stmt = (
        select(
            Subscription.area_id,
            *(func.sum(case((Subscriber.role == role, 1), else_=0)) for role in roles),
        )
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(_RECEIVING)
        .group_by(Subscription.area_id)
    )
    if area_ids is not None:
        stmt = stmt.where(Subscription.area_id.in_(area_ids))
    per_area: dict[int, int] = {}
    per_role: dict[str, int] = {}
    for area_id, *counts in (await session.execute(stmt)).all():
        for role, count in zip(roles, counts, strict=True):
            if count:
                per_area[area_id] = per_area.get(area_id, 0) + int(count)
                per_role[role.value] = per_role.get(role.value, 0) + int(count)
    return per_area, per_role


async def _growth(
    session: AsyncSession, area_ids: Sequence[int] | None, tz: ZoneInfo, now: dt.datetime
) -> list[Month]:
    """Joins and departures per local month of the people following an area in scope.

    Erased people have no follows left, so they appear nowhere (their data is gone). A
    person who stopped and came back counts from their first consent, never as left.
    """
    people = _people_in(area_ids)
    joined_at = func.coalesce(Subscriber.consent_at, Subscriber.created_at)
    joined_month = _local_month(session, joined_at, tz, now)
    joined_rows = await session.execute(
        select(joined_month, func.count())
        .where(Subscriber.status != SubscriberStatus.erased, Subscriber.id.in_(people))
        .group_by(joined_month)
    )
    left_at = func.coalesce(Subscriber.stopped_at, Subscriber.created_at)
    left_month = _local_month(session, left_at, tz, now)
    left_rows = await session.execute(
        select(left_month, func.count())
        .where(Subscriber.status == SubscriberStatus.stopped, Subscriber.id.in_(people))
        .group_by(left_month)
    )
    joined = {str(month): int(count) for month, count in joined_rows.all()}
    left = {str(month): int(count) for month, count in left_rows.all()}
    months: list[Month] = []
    receiving = 0
    for month in sorted({*joined, *left}):
        receiving += joined.get(month, 0) - left.get(month, 0)
        months.append(Month(month, joined.get(month, 0), left.get(month, 0), receiving))
    return months


async def subscriber_counts(
    session: AsyncSession, area_ids: Sequence[int] | None, tz: ZoneInfo, now: dt.datetime
) -> SubscriberCounts:
    """Counts of the people who follow an area in `area_ids` (None: anywhere).

    Months are calendar months in `tz` (on SQLite at the zone's UTC offset at `now`).

    Exact at the moment of the call; four passes over the people in scope (follows,
    growth, platforms, a small one for departures), none of them per person in Python.
    """
    per_area, per_role = await _follows(session, area_ids)
    growth = await _growth(session, area_ids, tz, now)
    by_platform = (
        await session.execute(
            select(Bot.platform, func.count())
            .select_from(ChatAddress)
            .join(Subscriber, Subscriber.id == ChatAddress.subscriber_id)
            .join(Bot, Bot.id == ChatAddress.bot_id)
            .where(
                _RECEIVING,
                ChatAddress.active.is_(True),
                Subscriber.id.in_(_people_in(area_ids)),
            )
            .group_by(Bot.platform)
            .order_by(Bot.platform)
        )
    ).all()
    province = aliased(Area)
    names = (
        await session.execute(
            select(Area.id, Area.code, Area.name, Area.kind, province.code, province.name)
            .outerjoin(province, province.id == Area.province_id)
            .where(Area.id.in_(list(per_area)))
        )
    ).all()
    by_province_map: dict[tuple[str, str], int] = {}
    by_commune: list[tuple[str, str, str | None, int]] = []
    for area_id, code, name, kind, p_code, p_name in names:
        key = (code, name) if kind is AreaKind.province else (p_code or "", p_name or "")
        by_province_map[key] = by_province_map.get(key, 0) + per_area[area_id]
        if kind is not AreaKind.province:
            by_commune.append((code, name, p_name, per_area[area_id]))
    by_commune.sort(key=lambda row: (-row[3], row[0]))
    by_province = sorted(
        ((code, name, count) for (code, name), count in by_province_map.items()),
        key=lambda row: (-row[2], row[0]),
    )
    return SubscriberCounts(
        total=growth[-1].receiving if growth else 0,
        by_province=by_province,
        by_commune=by_commune,
        by_role=sorted(per_role.items(), key=lambda kv: (-kv[1], kv[0])),
        by_platform=[(platform, int(count)) for platform, count in by_platform],
        growth=growth,
    )
