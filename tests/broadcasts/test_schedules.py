"""Schedules: cron in local time, scheduling rules, firing with grace and expiry, the lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from broadcasts import areas, bulletins, officials, schedules, subscribers
from broadcasts.schedules import ScheduleError, Scheduler
from db.models import (
    AuditEntry,
    BroadcastRun,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    DeliveryState,
    Lease,
    Official,
    OfficialRole,
    Platform,
    RunState,
    Schedule,
    ScheduleKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
)
from tests.conftest import Database

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 08:00 in Hải Phòng
MINUTE = dt.timedelta(minutes=1)
PASSWORD = "mật khẩu dài 123"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


# --- cron in local time (no database) ---------------------------------------------------------


def test_daily_cron_crosses_midnight_and_the_utc_date() -> None:
    # 22:30 on the 24th in Hải Phòng: the next 06:00 is tomorrow, 23:00 UTC on the 24th.
    after = dt.datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
    (fire,) = schedules.next_fire_times("0 6 * * *", TZ, after, 1)
    assert fire == local(2026, 11, 25, 6, 0)
    assert fire.utcoffset() == dt.timedelta(hours=7)
    assert fire.astimezone(UTC) == dt.datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    # At 23:30 UTC it is already 06:30 local on the 25th: the next is the 26th.
    later = schedules.next_fire_times(
        "0 6 * * *", TZ, dt.datetime(2026, 11, 24, 23, 30, tzinfo=UTC), 1
    )
    assert later == [local(2026, 11, 26, 6, 0)]


def test_late_evening_cron_and_strictly_after() -> None:
    # 23:30 local is 16:30 UTC; from 23:45 local the next one is the following day.
    assert schedules.next_fire_times(
        "30 23 * * *", TZ, dt.datetime(2026, 11, 25, 16, 0, tzinfo=UTC), 2
    ) == [local(2026, 11, 25, 23, 30), local(2026, 11, 26, 23, 30)]
    assert schedules.next_fire_times(
        "30 23 * * *", TZ, dt.datetime(2026, 11, 25, 16, 45, tzinfo=UTC), 1
    ) == [local(2026, 11, 26, 23, 30)]
    # Exactly at a firing: strictly after, so the next one.
    assert schedules.next_fire_times("30 23 * * *", TZ, local(2026, 11, 25, 23, 30), 1) == [
        local(2026, 11, 26, 23, 30)
    ]


def test_month_ends_and_the_turn_of_the_year() -> None:
    thirty_firsts = schedules.next_fire_times("0 8 31 * *", TZ, local(2026, 1, 1), 7)
    assert [f.month for f in thirty_firsts] == [1, 3, 5, 7, 8, 10, 12]
    assert all(f.day == 31 and f.hour == 8 for f in thirty_firsts)
    # "L": the last day of each month, 29 February in a leap year.
    for expression in ("0 8 L * *", "0 8 last * *"):
        ends = schedules.next_fire_times(expression, TZ, local(2028, 1, 1), 4)
        assert [(f.month, f.day) for f in ends] == [(1, 31), (2, 29), (3, 31), (4, 30)]
    new_year = schedules.next_fire_times("0 0 1 * *", TZ, local(2026, 12, 15), 2)
    assert new_year == [local(2027, 1, 1, 0, 0), local(2027, 2, 1, 0, 0)]
    assert new_year[0].astimezone(UTC) == dt.datetime(2026, 12, 31, 17, 0, tzinfo=UTC)


def test_until_is_respected_inclusively() -> None:
    fires = schedules.next_fire_times(
        "0 6 * * *", TZ, local(2026, 11, 25, 7, 0), 10, until=local(2026, 11, 28, 6, 0)
    )
    assert fires == [local(2026, 11, d, 6, 0) for d in (26, 27, 28)]


@pytest.mark.parametrize(
    ("expression", "weekdays"),
    [
        ("0 8 * * 1", {0}),  # crontab 1 = Monday (APScheduler 3 alone would say Tuesday)
        ("0 8 * * 0", {6}),
        ("0 8 * * 7", {6}),
        ("0 8 * * 1-5", {0, 1, 2, 3, 4}),
        ("0 8 * * 5-7", {4, 5, 6}),
        ("0 8 * * fri-sun", {4, 5, 6}),
        ("0 8 * * SAT,sun", {5, 6}),
        ("0 8 * * */2", {6, 1, 3, 5}),  # Sunday, Tuesday, Thursday, Saturday
    ],
)
def test_weekdays_use_crontab_numbering(expression: str, weekdays: set[int]) -> None:
    fires = schedules.next_fire_times(expression, TZ, local(2026, 11, 23), 14)  # a Monday
    assert {f.weekday() for f in fires} == weekdays


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("61 * * * *", "maximum"),
        ("0 6 * *", "5 fields"),
        ("mỗi sáng", "5 fields"),
        ("0 8 1 * 1", "not both"),
        ("0 8 * * 9", "weekday"),
        ("0 8 * * 5-1", "backwards"),
        ("0 25 * * *", "maximum"),
    ],
)
def test_bad_cron_text_is_refused_with_the_expression(expression: str, why: str) -> None:
    with pytest.raises(ScheduleError, match=why) as caught:
        schedules.parse_cron(expression, TZ)
    assert repr(expression) in str(caught.value)


# --- fixtures for the database tests ----------------------------------------------------------


@dataclass
class World:
    bulletin_id: int
    editor_id: int
    approver_id: int


async def _world(
    db: Database,
    *,
    now: dt.datetime = T0,
    expires_at: dt.datetime | None = None,
    approve: bool = True,
    grace_minutes: int = 30,
) -> World:
    """An editor and an approver of Hải Phòng, and a bulletin for Đặc khu Cát Hải."""
    async with db.sessions.begin() as session:
        editor = await officials.create(
            session, username="editor", role=OfficialRole.commune_editor, password=PASSWORD,
            area_code="11914",
        )  # fmt: skip
        approver = await officials.create(
            session, username="approver", role=OfficialRole.approver, password=PASSWORD,
            area_code="p31",
        )  # fmt: skip
        bulletin = await bulletins.create(
            session, author=editor, title="Cảnh báo áp thấp nhiệt đới",
            body="Tàu thuyền khẩn trương vào nơi trú ẩn.", area_codes=["11914"], now=now,
            expires_at=expires_at, submit=True,
        )  # fmt: skip
        bulletin.grace_minutes = grace_minutes
        if approve:
            await bulletins.approve(session, bulletin, approver, now)
        return World(bulletin.id, editor.id, approver.id)


async def _another_bulletin(db: Database, world: World) -> int:
    """One more approved bulletin for Cát Hải by the same two officials."""
    async with db.sessions.begin() as session:
        editor = await session.get_one(Official, world.editor_id)
        approver = await session.get_one(Official, world.approver_id)
        bulletin = await bulletins.create(
            session, author=editor, title="Thông báo", body="Nội dung.", area_codes=["11914"],
            now=T0, submit=True,
        )  # fmt: skip
        await bulletins.approve(session, bulletin, approver, T0)
        return bulletin.id


async def _recipients(db: Database) -> int:
    """Three reachable chats in Cát Hải, plus two that fan-out must leave out."""
    async with db.sessions.begin() as session:
        bot = await subscribers.ensure_bot(session, Platform.telegram)
        cat_hai = await areas.get_by_code(session, "11914")
        for n, (status, active) in enumerate(
            [
                (SubscriberStatus.active, True),
                (SubscriberStatus.active, True),
                (SubscriberStatus.active, True),
                (SubscriberStatus.stopped, True),  # sent /huy
                (SubscriberStatus.active, False),  # blocked the bot
            ]
        ):
            person = Subscriber(display_name=f"Ngư dân {n}", status=status)
            session.add(person)
            await session.flush()
            address = ChatAddress(
                subscriber_id=person.id, bot_id=bot.id, chat_id=str(1000 + n), active=active
            )
            session.add(address)
            session.add(Subscription(subscriber_id=person.id, area_id=cat_hai.id))
    return 3


async def _schedule(
    db: Database,
    world: World,
    *,
    now: dt.datetime = T0,
    at: dt.datetime | None = None,
    cron: str | None = None,
    until: dt.datetime | None = None,
    bulletin_id: int | None = None,
) -> int:
    async with db.sessions.begin() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id or world.bulletin_id)
        by = await session.get_one(Official, world.approver_id)
        row = await schedules.schedule(
            session, bulletin, by, now=now, tz=TZ, at=at, cron=cron, until=until
        )
        return row.id


async def _fire(db: Database, now: dt.datetime, **kwargs: int) -> list[BroadcastRun]:
    async with db.sessions.begin() as session:
        return await schedules.fire_due(session, now=now, tz=TZ, **kwargs)


async def _runs(
    db: Database, bulletin_id: int | None = None
) -> list[tuple[dt.datetime, RunState, int, int]]:
    """(fire_at, state, total, deliveries) of every run (of one bulletin), oldest first."""
    async with db.sessions() as session:
        deliveries = (
            select(func.count())
            .where(Delivery.run_id == BroadcastRun.id)
            .correlate(BroadcastRun)
            .scalar_subquery()
        )
        query = select(
            BroadcastRun.fire_at, BroadcastRun.state, BroadcastRun.total, deliveries
        ).order_by(BroadcastRun.fire_at)
        if bulletin_id is not None:
            query = query.where(BroadcastRun.bulletin_id == bulletin_id)
        rows = await session.execute(query)
        return [(r[0], r[1], r[2], r[3]) for r in rows.all()]


# --- schedule() -------------------------------------------------------------------------------


async def test_now_at_and_cron_set_the_next_firing(seeded: Database) -> None:
    world = await _world(seeded)
    now_id = await _schedule(seeded, world)
    at_id = await _schedule(seeded, world, at=local(2026, 11, 25, 17, 0))
    cron_id = await _schedule(seeded, world, cron=" 0  6 * * * ", until=local(2026, 12, 31, 23, 0))
    async with seeded.sessions() as session:
        now_row = await session.get_one(Schedule, now_id)
        assert (now_row.kind, now_row.run_at, now_row.next_fire_at) == (ScheduleKind.once, T0, T0)
        at_row = await session.get_one(Schedule, at_id)
        assert at_row.next_fire_at == dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
        cron_row = await session.get_one(Schedule, cron_id)
        assert (cron_row.kind, cron_row.cron, cron_row.run_at) == (
            ScheduleKind.cron,
            "0 6 * * *",
            None,
        )
        # 08:00 local now: the next 06:00 local is tomorrow, 23:00 UTC today.
        assert cron_row.next_fire_at == dt.datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
        assert cron_row.until == dt.datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
        assert all(r.active for r in (now_row, at_row, cron_row))
        bulletin = await session.get_one(Bulletin, world.bulletin_id)
        assert bulletin.state is BulletinState.scheduled
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "bulletin.schedule")
                .order_by(AuditEntry.id)
            )
        ).all()
        assert [(e.official_id, e.object_id) for e in entries] == [
            (world.approver_id, str(world.bulletin_id))
        ] * 3
        assert entries[0].details["kind"] == "once"
        assert entries[2].details["cron"] == "0 6 * * *"
        assert entries[2].details["until"] == "2026-12-31T16:00:00+00:00"


async def test_refusals(seeded: Database) -> None:
    world = await _world(seeded, expires_at=T0 + dt.timedelta(hours=6))
    draft = await _world_draft(seeded)
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, world.bulletin_id)
        approver = await session.get_one(Official, world.approver_id)
        # An approver of Quảng Ngãi: Cát Hải is outside their scope.
        outsider = await officials.create(
            session, username="outsider", role=OfficialRole.approver, password=PASSWORD,
            area_code="p51",
        )  # fmt: skip

        async def attempt(**kwargs: object) -> None:
            await schedules.schedule(session, bulletin, approver, now=T0, tz=TZ, **kwargs)  # type: ignore[arg-type]

        with pytest.raises(ScheduleError, match="'0 6 \\* \\*'"):
            await attempt(cron="0 6 * *")
        with pytest.raises(ScheduleError, match="already past"):
            await attempt(at=T0 - 5 * MINUTE)
        with pytest.raises(ScheduleError, match="not before the bulletin expires"):
            await attempt(at=T0 + dt.timedelta(hours=7))
        with pytest.raises(ScheduleError, match="not both"):
            await attempt(at=T0 + MINUTE, cron="0 6 * * *")
        with pytest.raises(ScheduleError, match="until"):
            await attempt(cron="0 6 * * *", until=T0 - MINUTE)
        with pytest.raises(ScheduleError, match="until"):
            await attempt(at=T0 + MINUTE, until=T0 + dt.timedelta(hours=1))
        with pytest.raises(bulletins.ScopeError, match="outsider"):
            await schedules.schedule(session, bulletin, outsider, now=T0, tz=TZ)
        with pytest.raises(ScheduleError, match="pending_approval"):
            other = await session.get_one(Bulletin, draft)
            await schedules.schedule(session, other, approver, now=T0, tz=TZ)
        # A time typed a few seconds late still counts as now.
        row = await schedules.schedule(
            session, bulletin, approver, now=T0, tz=TZ, at=T0 - 20 * dt.timedelta(seconds=1)
        )
        assert row.next_fire_at == T0 - dt.timedelta(seconds=20)
        await session.rollback()


async def _world_draft(db: Database) -> int:
    async with db.sessions.begin() as session:
        author = await session.scalar(select(Official).where(Official.username == "editor"))
        assert author is not None
        draft = await bulletins.create(
            session, author=author, title="Bản nháp", body="Chưa duyệt.", area_codes=["11914"],
            now=T0, submit=True,
        )  # fmt: skip
        return draft.id


# --- fire_due() -------------------------------------------------------------------------------


async def test_a_due_once_schedule_makes_one_run_with_deliveries(seeded: Database) -> None:
    world = await _world(seeded)
    reachable = await _recipients(seeded)
    schedule_id = await _schedule(seeded, world, at=T0 + 10 * MINUTE)
    assert await _fire(seeded, T0 + 9 * MINUTE) == []  # not due yet
    made = await _fire(seeded, T0 + 10 * MINUTE)
    assert [(r.state, r.total) for r in made] == [(RunState.sending, reachable)]
    assert await _fire(seeded, T0 + 10 * MINUTE) == []  # the same tick again
    assert await _fire(seeded, T0 + 11 * MINUTE) == []
    assert await _runs(seeded) == [(T0 + 10 * MINUTE, RunState.sending, 3, 3)]
    async with seeded.sessions() as session:
        row = await session.get_one(Schedule, schedule_id)
        assert (row.active, row.last_fire_at, row.next_fire_at) == (False, T0 + 10 * MINUTE, None)
        bulletin = await session.get_one(Bulletin, world.bulletin_id)
        assert bulletin.state is BulletinState.sending


async def test_two_schedulers_at_once_make_one_run(seeded: Database) -> None:
    world = await _world(seeded)
    await _recipients(seeded)
    await _schedule(seeded, world)
    start = asyncio.Event()

    async def tick() -> int:
        async with seeded.sessions.begin() as session:
            await start.wait()
            return len(await schedules.fire_due(session, now=T0 + MINUTE, tz=TZ))

    tasks = [asyncio.create_task(tick()) for _ in range(2)]
    await asyncio.sleep(0.05)
    start.set()
    assert sorted(await asyncio.gather(*tasks)) == [0, 1]
    assert await _runs(seeded) == [(T0, RunState.sending, 3, 3)]


async def test_late_firings_within_grace_are_sent_others_missed(seeded: Database) -> None:
    world = await _world(seeded, grace_minutes=30)
    await _recipients(seeded)
    # Three bulletins due at 08:20, 08:30 and 08:40; the service comes back at 09:00.
    lateness = {40: world.bulletin_id}
    for late in (30, 20):
        lateness[late] = await _another_bulletin(seeded, world)
    for late, bulletin_id in lateness.items():
        await _schedule(seeded, world, bulletin_id=bulletin_id, at=T0 + (60 - late) * MINUTE)
    made = await _fire(seeded, T0 + 60 * MINUTE)
    assert len(made) == 3
    for late, bulletin_id in lateness.items():
        fire_at = T0 + (60 - late) * MINUTE
        async with seeded.sessions() as session:
            state = (await session.get_one(Bulletin, bulletin_id)).state
        if late <= 30:  # 20 and exactly 30 minutes late: sent late
            assert await _runs(seeded, bulletin_id) == [(fire_at, RunState.sending, 3, 3)]
            assert state is BulletinState.sending
        else:
            assert await _runs(seeded, bulletin_id) == [(fire_at, RunState.missed, 0, 0)]
            # Nothing went out and nothing is left to fire: it can be scheduled again.
            assert state is BulletinState.approved


async def test_nothing_is_sent_after_the_expiry(seeded: Database) -> None:
    world = await _world(seeded, expires_at=T0 + 60 * MINUTE)
    await _recipients(seeded)
    schedule_id = await _schedule(seeded, world, at=T0 + 50 * MINUTE)
    # The service was down from before the firing until after the expiry (20 min late).
    made = await _fire(seeded, T0 + 70 * MINUTE)
    assert [r.state for r in made] == [RunState.missed]
    assert await _runs(seeded) == [(T0 + 50 * MINUTE, RunState.missed, 0, 0)]
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, world.bulletin_id)
        assert bulletin.state is BulletinState.expired
        assert not (await session.get_one(Schedule, schedule_id)).active
    assert await _fire(seeded, T0 + 80 * MINUTE) == []


async def test_cron_after_three_days_down(seeded: Database) -> None:
    world = await _world(seeded, grace_minutes=30)
    await _recipients(seeded)
    schedule_id = await _schedule(seeded, world, cron="0 6 * * *")  # first: 26 Nov 06:00
    async with seeded.sessions() as session:
        assert (await session.get_one(Schedule, schedule_id)).next_fire_at == local(
            2026, 11, 26, 6, 0
        )
    # Down until 29 Nov 06:10 local: 26, 27, 28 are missed, 29 is 10 minutes late.
    made = await _fire(seeded, local(2026, 11, 29, 6, 10).astimezone(UTC))
    assert [r.state for r in made] == [RunState.missed] * 3 + [RunState.sending]
    assert await _runs(seeded) == [
        (local(2026, 11, 26, 6, 0), RunState.missed, 0, 0),
        (local(2026, 11, 27, 6, 0), RunState.missed, 0, 0),
        (local(2026, 11, 28, 6, 0), RunState.missed, 0, 0),
        (local(2026, 11, 29, 6, 0), RunState.sending, 3, 3),
    ]
    async with seeded.sessions() as session:
        row = await session.get_one(Schedule, schedule_id)
        assert row.active
        assert row.next_fire_at == local(2026, 11, 30, 6, 0)
        assert row.last_fire_at == local(2026, 11, 29, 6, 0)
    # Once that run's deliveries are done, the bulletin waits for its next firing.
    async with seeded.sessions.begin() as session:
        for delivery in (await session.scalars(select(Delivery))).all():
            delivery.state = DeliveryState.sent
    await _fire(seeded, local(2026, 11, 29, 7, 0).astimezone(UTC))
    async with seeded.sessions() as session:
        assert (await session.get_one(Bulletin, world.bulletin_id)).state is BulletinState.scheduled


async def test_cron_missed_firings_are_capped_and_within_grace_coalesced(seeded: Database) -> None:
    world = await _world(seeded, grace_minutes=30)
    await _schedule(seeded, world, cron="*/10 * * * *", until=T0 + dt.timedelta(days=2))
    # First firing 01:10 UTC; down until 10:25 UTC: 01:10 ... 09:50 are late beyond grace
    # (only the first five recorded), 10:00 ... 10:20 within it.
    now = T0 + dt.timedelta(hours=9, minutes=25)
    made = await _fire(seeded, now, max_missed=5)
    assert [(r.fire_at, r.state) for r in made] == [
        *[(T0 + n * 10 * MINUTE, RunState.missed) for n in range(1, 6)],
        (now - 5 * MINUTE, RunState.done),  # 10:20, sent (nobody to reach here)
    ]
    async with seeded.sessions() as session:
        row = await session.scalar(select(Schedule))
        assert row is not None
        assert row.next_fire_at == now + 5 * MINUTE
    # Down again 10:30 to 10:55: three firings within grace, but people get one message.
    made = await _fire(seeded, now + 30 * MINUTE)
    assert [(r.fire_at, r.state) for r in made] == [
        (now + 5 * MINUTE, RunState.missed),  # superseded by 10:50
        (now + 15 * MINUTE, RunState.missed),
        (now + 25 * MINUTE, RunState.done),
    ]
    # After the end (until) the schedule is used up and the bulletin is sent.
    made = await _fire(seeded, T0 + dt.timedelta(days=2, minutes=5))
    async with seeded.sessions() as session:
        row = await session.scalar(select(Schedule))
        assert row is not None
        assert (row.active, row.next_fire_at) == (False, None)
        assert (await session.get_one(Bulletin, world.bulletin_id)).state is BulletinState.sent


async def test_a_bad_cron_row_does_not_block_the_others(
    seeded: Database, caplog: pytest.LogCaptureFixture
) -> None:
    world = await _world(seeded)
    await _schedule(seeded, world, at=T0 + MINUTE)
    async with seeded.sessions.begin() as session:
        # Written past schedule(), e.g. by hand in the database.
        bad = Schedule(
            bulletin_id=world.bulletin_id,
            kind=ScheduleKind.cron,
            cron="every day",
            next_fire_at=T0,
            active=True,
        )
        session.add(bad)
    with caplog.at_level(logging.ERROR, logger="broadcasts.schedules"):
        made = await _fire(seeded, T0 + 2 * MINUTE)
    assert len(made) == 1
    assert "every day" in caplog.text
    async with seeded.sessions() as session:
        assert await session.scalar(select(func.count()).where(Schedule.active.is_(True))) == 0


# --- the Scheduler part -----------------------------------------------------------------------


async def _wait_for(condition: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until the async `condition()` holds; fails after `within` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if await condition():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s")


async def test_one_scheduler_is_active_and_picks_up_new_schedules(seeded: Database) -> None:
    now = dt.datetime.now(UTC)
    world = await _world(seeded, now=now)
    await _recipients(seeded)
    fired: list[int] = []

    async def on_runs(run_ids: list[int]) -> None:
        fired.extend(run_ids)

    a = Scheduler(seeded.sessions, tz=TZ, holder="a", tick_seconds=0.2, on_runs=on_runs)
    b = Scheduler(seeded.sessions, tz=TZ, holder="b", tick_seconds=0.2, on_runs=on_runs)
    assert a.status().detail == "stopped"
    await a.start()
    await b.start()
    try:
        assert a.status().active and a.status().detail == "active (lease held)"
        assert not b.status().active
        assert b.status().detail == "standby (another process holds the lease)"

        # Another process (the CLI) schedules the bulletin "now" and commits.
        await _schedule(seeded, world, now=dt.datetime.now(UTC))

        async def has_run() -> bool:
            async with seeded.sessions() as session:
                return bool(await session.scalar(select(func.count()).select_from(BroadcastRun)))

        elapsed = await _wait_for(has_run, 5.0)
        assert elapsed < 5.0
        assert (await _runs(seeded))[0][1:] == (RunState.sending, 3, 3)
        await _wait_for(lambda: _async(bool(fired)), 2.0)
        assert len(fired) == 1

        await a.stop()
        assert a.status().detail == "stopped"
        # a released the lease: b takes over on its next tick, not after the 15 s TTL.
        await _wait_for(lambda: _async(b.status().active), 2.0)
    finally:
        await a.stop()
        await b.stop()
    async with seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Lease)) == 0


async def _async(value: bool) -> bool:
    return value


async def test_a_failing_tick_is_logged_and_survived(
    seeded: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def clock() -> dt.datetime:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("clock glitch")
        return dt.datetime.now(UTC)

    part = Scheduler(seeded.sessions, tz=TZ, holder="a", tick_seconds=0.1, clock=clock)
    with caplog.at_level(logging.ERROR, logger="broadcasts.schedules"):
        await part.start()
        try:
            await _wait_for(lambda: _async(calls >= 4 and part.status().active), 3.0)
        finally:
            await part.stop()
    failures = [r for r in caplog.records if r.name == "broadcasts.schedules"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


async def test_a_tick_with_nothing_to_write_does_not_wait_for_a_writer(
    seeded: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Most ticks only read, so a long write elsewhere (SQLite's one write lock, a row lock
    on PostgreSQL: a crowd's turns) does not hold the scheduler up; the lease is still
    renewed, every third of its time."""
    ticks = 0

    def clock() -> dt.datetime:
        nonlocal ticks
        ticks += 1  # one reading of the clock per tick
        return dt.datetime.now(UTC)

    async def expiry() -> dt.datetime:
        async with seeded.sessions() as session:
            lease = await session.get_one(Lease, "scheduler")
            assert lease.holder == "a"
            return lease.expires_at

    part = Scheduler(
        seeded.sessions, tz=TZ, holder="a", tick_seconds=0.1, clock=clock,
        lease_ttl=dt.timedelta(seconds=6),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        await part.start()
        try:
            first = await expiry()
            # Renewed 2 s after it was taken: the next renewal is 2 s away again.
            await _wait_for(lambda: _changed(expiry, first), 4.0)
            async with seeded.sessions.begin() as session:
                before = ticks
                # Another writer holds the lease row (and on SQLite the write lock).
                await session.execute(
                    update(Lease).where(Lease.name == "scheduler").values(holder="a")
                )
                await asyncio.sleep(0.8)
                during = ticks - before
            assert during >= 4, f"{during} ticks in 0.8 s while a writer held the database"
            assert part.status().detail == "active (lease held)"
        finally:
            await part.stop()
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


async def _changed(read: Callable[[], Awaitable[dt.datetime]], first: dt.datetime) -> bool:
    return await read() != first
