"""Schedules (now, at a time, or cron in local time) and the scheduler that fires them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import audit, bulletins, fallback, leases, officials, runs
from broadcasts.bulletins import APPROVERS, AUTHORS, FINAL_STATES, BulletinError, ScopeError
from broadcasts.parts import PartStatus
from db.engine import reading
from db.models import (
    BroadcastRun,
    Bulletin,
    BulletinState,
    Official,
    RunState,
    Schedule,
    ScheduleKind,
)

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
# A time typed a few seconds ago ("at 08:00" sent at 08:00:20) still counts as "now".
PAST_TOLERANCE = dt.timedelta(minutes=1)
SCHEDULABLE_STATES = {BulletinState.approved, BulletinState.scheduled}
_TICK = dt.timedelta(microseconds=1)

# Standard crontab weekdays: 0 and 7 are Sunday. APScheduler 3 counts 0 as Monday, so the
# field is rewritten into names (which both agree on) before APScheduler sees it.
_WEEKDAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_WEEKDAY_ITEM = re.compile(r"^(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?$")


class ScheduleError(BulletinError):
    """A schedule is not possible (bad cron text, a past time, wrong state, end before start)."""


# --- cron -------------------------------------------------------------------------------------


def _weekday(token: str, expression: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    if token in _WEEKDAY_NAMES:
        return _WEEKDAY_NAMES.index(token)
    raise ScheduleError(f"invalid cron expression {expression!r}: unknown weekday {token!r}")


def _weekdays_field(field: str, expression: str) -> str:
    """The crontab day-of-week field with crontab numbering, as APScheduler weekday names."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _WEEKDAY_ITEM.match(item)
        if match is None:
            raise ScheduleError(f"invalid cron expression {expression!r}: bad weekday {item!r}")
        star, first, last, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ScheduleError(f"invalid cron expression {expression!r}: step 0 in {item!r}")
        if star:
            low, high = 0, 6
        else:
            low = _weekday(first, expression)
            high = _weekday(last, expression) if last else low
            if last and high == 0 and last != "0":
                high = 7  # Sunday closing a range: "5-7" and "fri-sun" run Friday to Sunday
            if high < low:
                raise ScheduleError(
                    f"invalid cron expression {expression!r}: range {item!r} runs backwards"
                )
            if step_text and not last:
                high = 6  # "1/2": from Monday every second day, as crontab reads it
        days.update(day % 7 for day in range(low, high + 1, step))
    if len(days) == 7:
        return "*"
    # Monday first, the order APScheduler prints them in.
    return ",".join(_WEEKDAY_NAMES[day] for day in sorted(days, key=lambda d: (d + 6) % 7))


def parse_cron(expression: str, tz: ZoneInfo) -> CronTrigger:
    """A trigger for a five-field crontab expression evaluated in `tz`.

    Weekdays use crontab numbering (0 or 7 = Sunday); "L" in the day field means the last
    day of the month. Restricting both the day of month and the day of week is refused:
    crontab fires on either, APScheduler on both, and neither reading is safe to guess.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day month weekday), got {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    if day.upper() == "L":
        day = "last"
    if not day.startswith("*") and not weekday.startswith("*"):
        raise ScheduleError(
            f"invalid cron expression {expression!r}: give a day of the month or a day of "
            "the week, not both"
        )
    weekday = _weekdays_field(weekday, expression)
    try:
        return CronTrigger.from_crontab(" ".join([minute, hour, day, month, weekday]), timezone=tz)
    except (ValueError, TypeError, KeyError) as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from None


def _after(trigger: CronTrigger, moment: dt.datetime) -> dt.datetime | None:
    """The trigger's first firing strictly after `moment`."""
    fire: dt.datetime | None = trigger.get_next_fire_time(None, moment + _TICK)
    return fire


def next_fire_times(
    expression: str,
    tz: ZoneInfo,
    after: dt.datetime,
    count: int,
    until: dt.datetime | None = None,
) -> list[dt.datetime]:
    """Up to `count` firings strictly after `after` (and not after `until`), aware in `tz`."""
    trigger = parse_cron(expression, tz)
    times: list[dt.datetime] = []
    fire = _after(trigger, after)
    while fire is not None and len(times) < count and (until is None or fire <= until):
        times.append(fire)
        fire = _after(trigger, fire)
    return times


# --- scheduling -------------------------------------------------------------------------------


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{what} must carry a time zone")
    return value.astimezone(dt.UTC)


async def schedule(
    session: AsyncSession,
    bulletin: Bulletin,
    by: Official,
    *,
    now: dt.datetime,
    tz: ZoneInfo,
    at: dt.datetime | None = None,
    cron: str | None = None,
    until: dt.datetime | None = None,
    via: str = "web",
) -> Schedule:
    """Schedule an approved bulletin: now (neither `at` nor `cron`), once `at`, or by `cron`.

    Cron is read in `tz` and may end at `until`. A bulletin may get more than one schedule.
    Refused: a time more than a minute past, a firing at or after the bulletin's expiry,
    a bulletin that is not approved/scheduled, and an official whose scope does not cover
    the whole audience (ScopeError).
    """
    if at is not None and cron is not None:
        raise ScheduleError("give either a time (at) or a cron expression, not both")
    if bulletin.state not in SCHEDULABLE_STATES:
        raise ScheduleError(
            f"only an approved bulletin can be scheduled (this one is {bulletin.state.value})"
        )
    if by.role not in AUTHORS | APPROVERS:
        raise ScopeError(f"a {by.role.value} cannot schedule bulletins")
    for area in await bulletins.audience_areas(session, bulletin.id):
        if not await officials.covers(session, by, area):
            raise ScopeError(f"{by.username} may not schedule for {area.name} ({area.code})")
    expires_at = bulletin.expires_at
    if expires_at is not None and expires_at <= now:
        raise ScheduleError("the bulletin has already expired")

    cron_text: str | None = None
    until_utc: dt.datetime | None = None
    if cron is not None:
        cron_text = " ".join(cron.split())
        parse_cron(cron_text, tz)
        if until is not None:
            until_utc = _aware(until, "the end (until)")
            if until_utc <= now:
                raise ScheduleError("the end (until) must be after now")
        firsts = next_fire_times(cron_text, tz, now, 1, until_utc)
        if not firsts:
            raise ScheduleError(f"{cron_text!r} does not fire before the end (until)")
        first = firsts[0].astimezone(dt.UTC)
        run_at = None
        kind = ScheduleKind.cron
    else:
        if until is not None:
            raise ScheduleError("an end (until) applies only to a recurring (cron) schedule")
        first = now.astimezone(dt.UTC) if at is None else _aware(at, "the time (at)")
        if first < now - PAST_TOLERANCE:
            raise ScheduleError(f"{first.astimezone(tz):%Y-%m-%d %H:%M} is already past")
        run_at = first
        kind = ScheduleKind.once
    if expires_at is not None and first >= expires_at:
        raise ScheduleError(
            f"the firing at {first.astimezone(tz):%Y-%m-%d %H:%M} is not before the bulletin "
            f"expires ({expires_at.astimezone(tz):%Y-%m-%d %H:%M})"
        )

    row = Schedule(
        bulletin_id=bulletin.id,
        kind=kind,
        run_at=run_at,
        cron=cron_text,
        until=until_utc,
        next_fire_at=first,
        active=True,
        created_at=now,
    )
    session.add(row)
    bulletin.state = BulletinState.scheduled
    bulletin.updated_at = now
    await session.flush()
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.schedule",
        object_type="bulletin", object_id=bulletin.id,
        details={
            "schedule_id": row.id,
            "kind": kind.value,
            "at": run_at.isoformat() if run_at is not None else None,
            "cron": cron_text,
            "until": until_utc.isoformat() if until_utc is not None else None,
            "next_fire_at": first.isoformat(),
        },
    )  # fmt: skip
    return row


# --- firing -----------------------------------------------------------------------------------


async def _missed(
    session: AsyncSession, schedule_row: Schedule, fire_at: dt.datetime, now: dt.datetime
) -> BroadcastRun | None:
    run = await runs.create_run(
        session, bulletin_id=schedule_row.bulletin_id, schedule_id=schedule_row.id,
        fire_at=fire_at, now=now,
    )  # fmt: skip
    if run is not None:
        run.state = RunState.missed
        run.total = 0
        run.finished_at = now
    return run


async def _send(
    session: AsyncSession, schedule_row: Schedule, fire_at: dt.datetime, now: dt.datetime
) -> BroadcastRun | None:
    run = await runs.create_run(
        session, bulletin_id=schedule_row.bulletin_id, schedule_id=schedule_row.id,
        fire_at=fire_at, now=now,
    )  # fmt: skip
    if run is not None:
        await runs.fan_out(session, run, now)
    return run


def _sendable(bulletin: Bulletin, fire_at: dt.datetime, now: dt.datetime) -> bool:
    late = now - fire_at
    alive = bulletin.expires_at is None or now < bulletin.expires_at
    return alive and late <= dt.timedelta(minutes=bulletin.grace_minutes)


async def _fire_once(
    session: AsyncSession, row: Schedule, bulletin: Bulletin, now: dt.datetime
) -> list[BroadcastRun]:
    fire_at = row.next_fire_at or row.run_at or now
    if _sendable(bulletin, fire_at, now):
        run = await _send(session, row, fire_at, now)
    else:
        run = await _missed(session, row, fire_at, now)
        log.warning("schedule %d of bulletin %d missed its firing at %s", row.id,
                    bulletin.id, fire_at.isoformat())  # fmt: skip
    row.active = False
    row.last_fire_at = fire_at
    row.next_fire_at = None
    return [run] if run is not None else []


async def _fire_cron(
    session: AsyncSession,
    row: Schedule,
    bulletin: Bulletin,
    *,
    now: dt.datetime,
    tz: ZoneInfo,
    max_missed: int,
) -> list[BroadcastRun]:
    """Walk the firings due since next_fire_at: late ones are recorded as missed (at most
    `max_missed`), and of those still within grace only the latest is sent, so a restart
    never sends the same bulletin several times in a row."""
    try:
        trigger = parse_cron(row.cron or "", tz)
    except ScheduleError:
        # A row written past the validation (by hand, by an old version): stop it, loudly,
        # rather than failing every tick and holding up every other schedule.
        log.error("schedule %d has a bad cron expression %r; deactivated", row.id, row.cron)
        row.active = False
        row.next_fire_at = None
        return []
    expired = bulletin.expires_at is not None and bulletin.expires_at <= now
    cutoff = now - dt.timedelta(minutes=bulletin.grace_minutes)

    def due(fire: dt.datetime, horizon: dt.datetime = now) -> bool:
        return (
            fire <= horizon
            and (row.until is None or fire <= row.until)
            and (bulletin.expires_at is None or fire < bulletin.expires_at)
        )

    missed: list[dt.datetime] = []
    unrecorded = False  # missed firings beyond max_missed, skipped without a run
    latest: dt.datetime | None = None  # the one firing within grace that will be sent
    last: dt.datetime | None = None

    def miss(fire: dt.datetime) -> None:
        nonlocal unrecorded
        if len(missed) < max_missed:
            missed.append(fire)
        else:
            unrecorded = True

    fire = row.next_fire_at
    while fire is not None and due(fire):
        last = fire
        if not expired and fire >= cutoff:
            if latest is not None:
                miss(latest)  # superseded by a later firing within grace
            latest = fire
            fire = _after(trigger, fire)
            continue
        miss(fire)
        if unrecorded:
            if expired:
                break  # nothing will be sent any more
            # Jump over the rest of the downtime instead of walking every firing.
            fire = _after(trigger, cutoff - _TICK)
        else:
            fire = _after(trigger, fire)

    made: list[BroadcastRun] = []
    for fire_at in missed:
        run = await _missed(session, row, fire_at.astimezone(dt.UTC), now)
        if run is not None:
            made.append(run)
    if latest is not None:
        run = await _send(session, row, latest.astimezone(dt.UTC), now)
        if run is not None:
            made.append(run)
    if missed or unrecorded:
        log.warning("schedule %d of bulletin %d: %d firings missed%s", row.id, bulletin.id,
                    len(missed), " (and more, not recorded)" if unrecorded else "")  # fmt: skip

    if last is not None:
        row.last_fire_at = last.astimezone(dt.UTC)
    following = None if expired else _after(trigger, now)
    if following is not None and not due(following, horizon=following):
        following = None  # past `until` or the expiry: this schedule is used up
    row.next_fire_at = following.astimezone(dt.UTC) if following is not None else None
    row.active = following is not None
    return made


def _due(now: dt.datetime) -> Select[int]:
    return (
        select(Schedule.id)
        .join(Bulletin, Bulletin.id == Schedule.bulletin_id)
        .where(
            Schedule.active.is_(True),
            Schedule.next_fire_at.is_not(None),
            Schedule.next_fire_at <= now,
            Bulletin.state.not_in(FINAL_STATES),
        )
    )


async def anything_due(session: AsyncSession, now: dt.datetime) -> bool:
    """Whether `fire_due` would change anything now (reads only)."""
    if await session.scalar(select(exists(_due(now)))):
        return True
    if await bulletins.any_to_expire(session, now):
        return True
    return await runs.anything_to_finish(session, now)


async def fire_due(
    session: AsyncSession, *, now: dt.datetime, tz: ZoneInfo, max_missed: int = 100
) -> list[BroadcastRun]:
    """Fire every active schedule that is due; returns the runs created (sent and missed).

    A firing is sent when at most `grace_minutes` late and before the bulletin's expiry,
    otherwise recorded as a missed run without deliveries. A firing that already has a run
    (a double tick, a second scheduler) is not made again: the run's unique key decides.
    Bulletins past expiry are expired first; finished runs are closed last.
    """
    # Read what is due before expiring, so a firing the service slept through before the
    # expiry is still recorded (as missed) rather than vanishing with the schedule.
    due_ids = (await session.scalars(_due(now).order_by(Schedule.next_fire_at, Schedule.id))).all()
    await bulletins.expire_due(session, now)
    made: list[BroadcastRun] = []
    for schedule_id in due_ids:
        row = await session.get_one(Schedule, schedule_id)
        bulletin = await session.get_one(Bulletin, row.bulletin_id)
        if bulletin.state in FINAL_STATES and bulletin.state is not BulletinState.expired:
            continue  # cancelled or sent meanwhile
        if row.kind is ScheduleKind.once:
            made += await _fire_once(session, row, bulletin, now)
        else:
            made += await _fire_cron(session, row, bulletin, now=now, tz=tz, max_missed=max_missed)
    await session.flush()
    # Fallback steps of urgent bulletins (ZNS, then SMS) for whoever has not acknowledged.
    await fallback.advance(session, now)
    await runs.finish_runs(session, now)
    return made


# --- the scheduler part -----------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    """The scheduler part: exactly one active across processes (a lease), ticking every second.

    Our tables are the source of truth: each tick reads due schedules, so a schedule written
    by another process (the CLI, a web replica) fires within a tick. APScheduler only runs
    the periodic job (memory job store) and computes cron firings.
    """

    name = "scheduler"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        tz: ZoneInfo,
        holder: str,
        tick_seconds: float = 1.0,
        lease_ttl: dt.timedelta = dt.timedelta(seconds=15),
        clock: Callable[[], dt.datetime] = _utc_now,
        on_runs: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._tz = tz
        self._holder = holder
        self._tick_seconds = tick_seconds
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._on_runs = on_runs
        self._apscheduler: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self._ticked = False
        self._held = False
        self._failure: str | None = None

    def status(self) -> PartStatus:
        if self._apscheduler is None:
            return PartStatus(active=False, detail="stopped")
        if self._failure is not None:
            return PartStatus(active=False, detail=f"tick failing ({self._failure}); see the log")
        if not self._ticked:
            return PartStatus(active=False, detail="starting")
        if self._held:
            return PartStatus(active=True, detail="active (lease held)")
        return PartStatus(active=False, detail="standby (another process holds the lease)")

    async def start(self) -> None:
        """Tick once (so status is known on return), then every `tick_seconds`."""
        self._stopping = False
        await self._tick()
        scheduler = AsyncIOScheduler(timezone=self._tz)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self._tick_seconds,
            id="scheduler-tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,  # a late tick still runs (once, coalesced)
        )
        scheduler.start()
        self._apscheduler = scheduler

    async def stop(self) -> None:
        """Stop ticking (a running tick finishes first) and give the lease up."""
        scheduler = self._apscheduler
        if scheduler is None:
            return
        self._stopping = True
        scheduler.pause()
        # Let a tick APScheduler already launched see _stopping and return, then wait for
        # one in progress: APScheduler's shutdown would cancel it mid-transaction.
        await asyncio.sleep(0)
        async with self._lock:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop turn
            self._apscheduler = None
            try:
                async with self._sessions.begin() as session:
                    await leases.release(session, LEASE_NAME, self._holder)
            except Exception:
                log.error("could not release the scheduler lease", exc_info=True)
            self._held = False
            self._ticked = False

    async def _only_reads(self, now: dt.datetime) -> bool:
        """True when this tick has nothing to write: the lease is another live process's,
        or ours with two thirds of its time left, and nothing is due. Most ticks are so,
        and reading does not queue for SQLite's one write lock, which a crowd's turns hold
        most of the time (a tick that wrote every second was skipped 21-37 times in one
        crowd of 1,000)."""
        async with reading(self._sessions) as session:
            lease = await leases.current(session, LEASE_NAME)
            if lease is None:
                return False
            holder, until = lease
            if holder != self._holder:
                if until < now:
                    return False  # expired: take it over
                self._now_holding(False)
                return True
            if until - now < self._lease_ttl * 2 / 3 or await anything_due(session, now):
                return False
        self._now_holding(True)
        return True

    def _now_holding(self, held: bool) -> None:
        if self._held != held:
            log.info("scheduler %s: %s", self._holder, "active" if held else "standby")
        self._held = held

    async def _tick(self) -> None:
        if self._stopping:
            return
        async with self._lock:
            try:
                now = self._clock()
                if await self._only_reads(now):
                    run_ids: list[int] = []
                else:
                    async with self._sessions.begin() as session:
                        held = await leases.acquire(
                            session, LEASE_NAME, self._holder, now, self._lease_ttl
                        )
                        made = await fire_due(session, now=now, tz=self._tz) if held else []
                        run_ids = [run.id for run in made]
                    self._now_holding(held)
                self._ticked = True
                self._failure = None
            except Exception as exc:
                self._failure = type(exc).__name__
                log.error("scheduler tick failed", exc_info=True)
                return
            if run_ids and self._on_runs is not None:
                try:
                    await self._on_runs(run_ids)
                except Exception:
                    log.error("scheduler: on_runs callback failed", exc_info=True)
