"""Urgent bulletins' fallback chains: the next step (ZNS, SMS) to whoever has not acknowledged."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.engine import insert_for
from db.models import (
    PHONE_PLATFORMS,
    Acknowledgement,
    Area,
    Bot,
    BroadcastRun,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    DeliveryState,
    Platform,
    Priority,
    RunState,
    Subscriber,
    SubscriberStatus,
)

log = logging.getLogger(__name__)

# ChatAddress.inactive_reason of a fallback address whose person withdrew the phone.
PHONE_REMOVED = "phone removed"
# Delivery.reason of a step to a phone whose address on that bot is switched off (blocked,
# stopped): recorded as failed at once, so the person moves on to the next step.
ADDRESS_INACTIVE = "address inactive"
# A run whose chain may still make a step stays `sending` until this long past its last
# send plus the chain's minutes: the scheduler's advance() gets that long to run once more.
CLOSE_GRACE = dt.timedelta(minutes=2)
URGENT = 0  # Delivery.priority of urgent rows (queue.URGENT)
_OPEN = (DeliveryState.pending.value, DeliveryState.sending.value)
# Exactly the WHERE of the partial index ix_deliveries_progress (reports.MOVED).
_MOVED = Delivery.state != literal_column("'pending'")


@dataclass(frozen=True)
class _Chain:
    """A live run whose bulletin has a chain, and the bots the chain may use."""

    run: BroadcastRun
    bulletin: Bulletin
    platforms: tuple[Platform, ...]
    # Every bot of each phone platform (enabled or not: past deliveries count), by platform.
    bots_of: dict[Platform, list[int]] = field(default_factory=dict)

    @property
    def minutes(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.bulletin.fallback_minutes or 0)

    @property
    def phone_bots(self) -> list[int]:
        return [bot for platform in PHONE_PLATFORMS for bot in self.bots_of.get(platform, [])]


def _platforms(bulletin: Bulletin) -> tuple[Platform, ...]:
    found = []
    for value in bulletin.fallback_platforms or []:
        try:
            found.append(Platform(value))
        except ValueError:
            continue
    return tuple(p for p in found if p in PHONE_PLATFORMS)


def _has_chain(bulletin: Bulletin, now: dt.datetime) -> bool:
    """An urgent bulletin, neither cancelled nor expired, with minutes and platforms."""
    return (
        bulletin.priority is Priority.urgent
        and bulletin.state not in (BulletinState.cancelled, BulletinState.expired)
        and (bulletin.expires_at is None or bulletin.expires_at > now)
        and bool(bulletin.fallback_minutes)
        and bool(_platforms(bulletin))
    )


async def _chains(
    session: AsyncSession, now: dt.datetime, run_ids: Sequence[int] | None = None
) -> list[_Chain]:
    """Sending runs (all, or those of `run_ids`) of bulletins with a live chain."""
    query = (
        select(BroadcastRun, Bulletin)
        .join(Bulletin, Bulletin.id == BroadcastRun.bulletin_id)
        .where(
            BroadcastRun.state == RunState.sending,
            BroadcastRun.started_at.is_not(None),
            Bulletin.priority == Priority.urgent,
            Bulletin.fallback_minutes.is_not(None),
            Bulletin.state.not_in([BulletinState.cancelled, BulletinState.expired]),
        )
        .order_by(BroadcastRun.id)
    )
    if run_ids is not None:
        if not run_ids:
            return []
        query = query.where(BroadcastRun.id.in_(run_ids))
    found = [
        (run, bulletin) for run, bulletin in (await session.execute(query)).all()
        if _has_chain(bulletin, now)
    ]  # fmt: skip
    if not found:
        return []
    bots_of: dict[Platform, list[int]] = {}
    rows = await session.execute(
        select(Bot.platform, Bot.id).where(Bot.platform.in_(PHONE_PLATFORMS)).order_by(Bot.id)
    )
    for platform, bot_id in rows.all():
        bots_of.setdefault(Platform(platform), []).append(bot_id)
    return [_Chain(run, bulletin, _platforms(bulletin), bots_of) for run, bulletin in found]


# --- who is due --------------------------------------------------------------------------


def _on_their_phone(
    chain: _Chain, person: Any, condition: ColumnElement[bool], bots: Sequence[int]
) -> ColumnElement[bool]:
    """Whether a delivery of the run matching `condition` went to a phone bot's address
    (of `bots`) for the person's phone: shared phones, fallback rows made for someone
    else, their own SMS subscription. PostgreSQL hashes it once per statement; SQLite
    looks it up by the (bot, chat id) key."""
    phone_bots = [b for b in bots if b in chain.phone_bots]
    if not phone_bots:
        return false()
    phone = aliased(ChatAddress)
    return exists(
        select(literal(1))
        .select_from(phone)
        .join(Delivery, and_(Delivery.run_id == chain.run.id, Delivery.chat_address_id == phone.id))
        .where(phone.bot_id.in_(phone_bots), phone.chat_id == person.phone, condition)
    )


@asynccontextmanager
async def _hash_joins(session: AsyncSession) -> AsyncIterator[None]:
    """On PostgreSQL, plan the statements inside without nested loops (SET LOCAL, back to
    the default after). The people of a run come out of an aggregate filtered on its
    flags, which the planner estimates at one row; it then chose nested loops that scan
    a table per person (a tap per person: 50,000,000 rows compared for 10,000 people; an
    INSERT of 90,000 rows ran 7 minutes). Hash joins are right for a whole run."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        await session.execute(text("SET LOCAL enable_nestloop = off"))
    try:
        yield
    finally:
        if postgres:
            await session.execute(text("SET LOCAL enable_nestloop TO DEFAULT"))


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.max(case((condition, 1), else_=0))


def _waiting(chain: _Chain, step: int, due_by: dt.datetime | None) -> Select[Any]:
    """(subscriber id, area id, phone, province id) of the run's people waiting for `step`
    (1-based): in the run (a step-0 delivery on an address of theirs), active, with a
    consented phone, no "Đã nhận" for the bulletin, reached on every earlier step's
    platform (by that step or on their own channel) and on none of this step's. With
    `due_by` (now), only those due: none of their deliveries still pending or sending, none
    sent after `due_by` minus the chain's minutes.

    What reached a person on their own addresses is one aggregate over the run's
    deliveries (a hash or sort of the run, linear); what reached their phone on others'
    addresses is an EXISTS per person. (Correlated lookups of their own deliveries went
    quadratic on PostgreSQL with stale statistics: it scanned a bot's deliveries per
    person.)"""
    run = chain.run
    person = aliased(Subscriber)
    area = aliased(Area)
    platforms = chain.platforms[:step]
    flags = {
        platform: (
            _flag(Delivery.bot_id.in_(chain.bots_of[platform])) if chain.bots_of.get(platform)
            else literal(0)
        )
        for platform in platforms
    }  # fmt: skip
    busy_condition: ColumnElement[bool] = false()
    if due_by is not None:
        cutoff = due_by - chain.minutes
        busy_condition = or_(
            Delivery.state.in_(_OPEN),
            and_(Delivery.state == DeliveryState.sent, Delivery.sent_at > cutoff),
        )
    people = (
        select(
            ChatAddress.subscriber_id.label("sid"),
            func.min(case((Delivery.step == 0, Delivery.area_id))).label("area_id"),
            *(flag.label(f"on_{platform.value}") for platform, flag in flags.items()),
            _flag(busy_condition).label("busy"),
        )
        .select_from(Delivery)
        .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
        .where(Delivery.run_id == run.id)
        .group_by(ChatAddress.subscriber_id)
        .having(func.min(Delivery.step) == 0)
        .subquery("people")
    )
    conditions: list[ColumnElement[bool]] = [
        person.status == SubscriberStatus.active,
        person.phone.is_not(None),
        person.phone_consent_at.is_not(None),
        ~exists().where(
            Acknowledgement.bulletin_id == run.bulletin_id,
            Acknowledgement.subscriber_id == person.id,
        ),
    ]
    anything = Delivery.id.is_not(None)
    # Never twice on the same channel: this step's platform already reached them.
    this = chain.platforms[step - 1]
    conditions.append(people.c[f"on_{this.value}"] == 0)
    conditions.append(~_on_their_phone(chain, person, anything, chain.bots_of.get(this, [])))
    # Every earlier step was theirs or skipped because its platform had reached them.
    for earlier in chain.platforms[: step - 1]:
        bots = chain.bots_of.get(earlier, [])
        conditions.append(
            or_(
                people.c[f"on_{earlier.value}"] == 1, _on_their_phone(chain, person, anything, bots)
            )
        )
    if due_by is not None:
        if run.started_at is None or run.started_at > due_by - chain.minutes:
            conditions.append(false())
        conditions.append(people.c.busy == 0)
        conditions.append(~_on_their_phone(chain, person, busy_condition, chain.phone_bots))
    province = func.coalesce(area.province_id, area.id)
    return (
        select(people.c.sid, people.c.area_id, person.phone, province.label("province_id"))
        .select_from(people)
        .join(person, person.id == people.c.sid)
        .outerjoin(area, area.id == people.c.area_id)
        .where(*conditions)
    )


async def _step_bot(
    session: AsyncSession, platform: Platform, province: ColumnElement[Any]
) -> tuple[ColumnElement[Any] | None, bool]:
    """The SQL expression of the step's bot for a person's province: the lowest enabled bot
    of `platform` serving that province, else the lowest serving no province; and whether
    some province may have none (no bot serving no province). None: no enabled bot."""
    rows = await session.execute(
        select(Bot.id, Bot.area_id)
        .where(Bot.platform == platform, Bot.enabled.is_(True))
        .order_by(Bot.id)
    )
    by_province: dict[int, int] = {}
    default: int | None = None
    for bot_id, area_id in rows.all():
        if area_id is None:
            default = bot_id if default is None else default
        else:
            by_province.setdefault(area_id, bot_id)
    if default is None and not by_province:
        return None, True
    fallback_bot: Any = literal(default, Integer()) if default is not None else None
    if not by_province:
        return fallback_bot, False
    whens = [(province == area_id, literal(bot_id)) for area_id, bot_id in by_province.items()]
    return case(*whens, else_=fallback_bot), default is None


async def _advance_step(
    session: AsyncSession, chain: _Chain, step: int, now: dt.datetime
) -> tuple[int, int]:
    """Create one step's deliveries for the people due for it: (created, left without a bot)."""
    platform = chain.platforms[step - 1]
    waiting = _waiting(chain, step, now)
    # One scan when nobody is due (most passes), instead of one per INSERT below.
    if not await session.scalar(select(waiting.exists())):
        return 0, 0
    due = waiting.subquery("due")
    bot, gaps = await _step_bot(session, platform, due.c.province_id)
    if bot is None:
        without = await session.scalar(select(func.count()).select_from(due))
        return 0, int(without or 0)
    targets = select(due.c.sid, due.c.area_id, due.c.phone, bot.label("bot_id")).subquery("targets")
    stranded = 0
    if gaps:
        stranded = int(
            await session.scalar(select(func.count()).where(targets.c.bot_id.is_(None))) or 0
        )
    insert = insert_for(session)
    # One address per (bot, phone): two people sharing a phone share it; an existing row
    # (another person's, or their own SMS subscription) is reused. Sorted, so two
    # schedulers at once take the unique index's entries in the same order.
    addresses = (
        select(
            func.min(targets.c.sid),
            targets.c.bot_id,
            targets.c.phone,
            true(),
            true(),
            literal(now, ChatAddress.created_at.type),
        )
        .where(targets.c.bot_id.is_not(None))
        .group_by(targets.c.bot_id, targets.c.phone)
        .order_by(targets.c.bot_id, targets.c.phone)
    )
    await session.execute(
        insert(ChatAddress)
        .from_select(
            ["subscriber_id", "bot_id", "chat_id", "active", "fallback", "created_at"], addresses
        )
        .on_conflict_do_nothing(index_elements=["bot_id", "chat_id"])
    )
    address = aliased(ChatAddress)
    rows = (
        select(
            literal(chain.run.id),
            address.id,
            address.bot_id,
            func.min(targets.c.area_id),
            literal(URGENT),
            case(
                (address.active.is_(True), DeliveryState.pending.value),
                else_=DeliveryState.failed.value,
            ),
            case((address.active.is_(True), None), else_=ADDRESS_INACTIVE),
            literal(step),
        )
        .select_from(targets)
        .join(
            address,
            and_(address.bot_id == targets.c.bot_id, address.chat_id == targets.c.phone),
        )
        # The WHERE keeps SQLite from reading ON CONFLICT as the join's ON.
        .where(targets.c.bot_id.is_not(None))
        .group_by(address.id, address.bot_id, address.active)
        .order_by(address.id)
    )
    columns = ["run_id", "chat_address_id", "bot_id", "area_id", "priority", "state", "reason"]
    result = await session.execute(
        insert(Delivery)
        .from_select([*columns, "step"], rows)
        .on_conflict_do_nothing(index_elements=["run_id", "chat_address_id"])
    )
    created = int(getattr(result, "rowcount", 0) or 0)
    if created:
        # An increment (not a recount): the run's row lock orders two schedulers, and
        # reports.AreaTotals notices the new total.
        await session.execute(
            update(BroadcastRun)
            .where(BroadcastRun.id == chain.run.id)
            .values(total=BroadcastRun.total + created)
            .execution_options(synchronize_session=False)
        )
    return created, stranded


async def advance(session: AsyncSession, now: dt.datetime) -> int:
    """One pass of every live chain; returns the deliveries created.

    Live: a `sending` run of an urgent bulletin, neither cancelled nor expired (nor past
    `expires_at`), with `fallback_minutes` and `fallback_platforms`. Step k uses the k-th
    platform. A person gets step k when they are in the run (a step-0 delivery on one of
    their addresses), active, with a phone kept with consent, have not tapped "Đã nhận"
    on the bulletin, were reached on each earlier step's platform and not yet on this
    one's (their own addresses, or any address of a phone bot for their phone: a person
    subscribed by SMS skips the SMS step, two people sharing a phone get one message),
    none of their deliveries of the run is pending or sending, and none was sent later
    than now minus `fallback_minutes` (deliveries never sent, failed or blocked, count
    from the run's start). So a skipped step costs no time (the next one follows the
    last sent one's minutes), a failed step is followed at once, and a person without a
    phone gets no step.

    The bot: the lowest enabled one of the platform serving the person's province (of
    their step-0 delivery's area), else the lowest serving none; without one the person
    waits at that step (logged) until a bot is enabled. The phone's address on that bot
    is reused if it exists (whoever's), else made (`fallback` true); a switched-off one
    gets a `failed` delivery at once ("address inactive"). Rows are urgent, pending, with
    `step` k, and the person's step-0 area. Set-based (two INSERT ... SELECT per step
    and run); idempotent, also with two schedulers at once (the unique keys and ON
    CONFLICT DO NOTHING). Measured by bench/fallback.py. The caller owns the transaction.
    """
    created = 0
    for chain in await _chains(session, now):
        started = chain.run.started_at
        if started is None or started + chain.minutes > now:
            continue  # nobody can be due before the chain's minutes have passed once
        for step in range(1, len(chain.platforms) + 1):
            async with _hash_joins(session):
                made, stranded = await _advance_step(session, chain, step, now)
            created += made
            if made:
                log.info("run %d: fallback step %d (%s): %d deliveries", chain.run.id, step,
                         chain.platforms[step - 1].value, made)  # fmt: skip
            if stranded:
                log.warning("run %d: fallback step %d (%s): no enabled bot for %d people; "
                            "they wait", chain.run.id, step, chain.platforms[step - 1].value,
                            stranded)  # fmt: skip
    return created


async def chain_open(session: AsyncSession, run_ids: Sequence[int], now: dt.datetime) -> set[int]:
    """Of `run_ids` (sending runs with nothing pending or sending), those a chain step may
    still come to: the bulletin's chain is live, and the run started, or one of its
    deliveries was sent, less than the chain's minutes plus CLOSE_GRACE ago.

    broadcasts.runs keeps these `sending` (so the bulletin stays `sending` and its page
    keeps polling) instead of closing them: a closed run would get pending rows again.
    An over-estimate by design: a run whose people all acknowledged stays open until
    that time has passed. Reads only.
    """
    kept: set[int] = set()
    for chain in await _chains(session, now, run_ids):
        cutoff = now - chain.minutes - CLOSE_GRACE
        if chain.run.started_at is not None and chain.run.started_at > cutoff:
            kept.add(chain.run.id)
            continue
        recent = exists().where(
            Delivery.run_id == chain.run.id,
            _MOVED,
            Delivery.state == DeliveryState.sent,
            Delivery.sent_at > cutoff,
        )
        if await session.scalar(select(recent)):
            kept.add(chain.run.id)
    return kept


async def forget_phone(session: AsyncSession, subscriber_id: int) -> int:
    """/sdt xoa (and /xoa): blank the person's fallback addresses (no chat id, switched
    off), so no step reaches the phone again and their deliveries still count; returns how
    many. Rows of another person's for the same phone stay (they consented to it too).
    broadcasts.subscribers.remove_phone calls this. The caller owns the transaction."""
    result = await session.execute(
        update(ChatAddress)
        .where(
            ChatAddress.subscriber_id == subscriber_id,
            ChatAddress.fallback.is_(True),
            ChatAddress.chat_id.is_not(None),
        )
        .values(chat_id=None, active=False, inactive_reason=PHONE_REMOVED, dialog={})
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the follow-up -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepReport:
    """One step of a bulletin's chain over all its runs."""

    step: int  # 1-based
    platform: Platform
    created: int  # deliveries made for this step
    counts: dict[str, int]  # every DeliveryState value
    sent: int
    failed: int  # failed or blocked
    pending: int  # pending or being sent
    # People who tapped "Đã nhận" after this step's message to them was sent.
    acknowledged: int
    # People waiting for this step in runs still open: not due yet (or due since the
    # last pass, or without an enabled bot).
    not_yet_due: int


async def steps(session: AsyncSession, bulletin_id: int, now: dt.datetime) -> list[StepReport]:
    """The bulletin's chain step by step ([] without a chain, or an unknown bulletin);
    people wait only in runs whose chain is live at `now`.

    Counts are read from ix_deliveries_progress plus one count of pending rows per step;
    not_yet_due runs the advance() query without its timing per open run and step, so it
    costs about one pass (bench/fallback.py): for the page, not for a 2-second poll.
    """
    bulletin = await session.get(Bulletin, bulletin_id)
    if bulletin is None:
        return []
    platforms = _platforms(bulletin)
    if not platforms:
        return []
    run_ids = select(BroadcastRun.id).where(BroadcastRun.bulletin_id == bulletin_id)
    counts: dict[int, dict[str, int]] = {
        k: dict.fromkeys((s.value for s in DeliveryState), 0) for k in range(1, len(platforms) + 1)
    }
    rows = await session.execute(
        select(Delivery.step, Delivery.state, func.count())
        .where(Delivery.run_id.in_(run_ids), Delivery.step > 0)
        .group_by(Delivery.step, Delivery.state)
    )
    for step, state, count in rows.all():
        if step in counts:
            counts[step][DeliveryState(state).value] += int(count)
    acked = await _acknowledged_after(session, bulletin_id, list(await session.scalars(run_ids)))
    waiting: dict[int, int] = dict.fromkeys(counts, 0)
    open_runs = (await session.scalars(run_ids.where(BroadcastRun.state == RunState.sending))).all()
    for chain in await _chains(session, now, list(open_runs)):
        for step in counts:
            query = _waiting(chain, step, None).subquery()
            async with _hash_joins(session):
                found = await session.scalar(select(func.count()).select_from(query))
            waiting[step] += int(found or 0)
    reports = []
    for step, by_state in counts.items():
        reports.append(
            StepReport(
                step=step,
                platform=platforms[step - 1],
                created=sum(by_state.values()),
                counts=by_state,
                sent=by_state[DeliveryState.sent.value],
                failed=by_state[DeliveryState.failed.value] + by_state[DeliveryState.blocked.value],
                pending=by_state[DeliveryState.pending.value]
                + by_state[DeliveryState.sending.value],
                acknowledged=acked.get(step, 0),
                not_yet_due=waiting[step],
            )
        )
    return reports


async def _acknowledged_after(
    session: AsyncSession, bulletin_id: int, run_ids: list[int]
) -> dict[int, int]:
    """step → people whose tap came after a sent delivery of that step reached them (on an
    address of theirs or on a phone bot's address for their phone)."""
    person = aliased(Subscriber)
    address = aliased(ChatAddress)
    # Lists, not subqueries: with them SQLite goes from each tap to the person's addresses
    # and their deliveries by key, instead of through every delivery of the run.
    found = await session.scalars(select(Bot.id).where(Bot.platform.in_(PHONE_PLATFORMS)))
    phone_bots = list(found)
    if not run_ids:
        return {}
    reached = [
        Delivery.chat_address_id == address.id,
        Delivery.run_id.in_(run_ids),
        Delivery.step > 0,
        Delivery.state == DeliveryState.sent,
        Delivery.sent_at <= Acknowledgement.created_at,
    ]
    # Two ways a step reaches a person, each an indexed join (an OR of them is not).
    on_theirs = (
        select(Delivery.step, Acknowledgement.id)
        .select_from(Acknowledgement)
        .join(address, address.subscriber_id == Acknowledgement.subscriber_id)
        .join(Delivery, and_(*reached))
        .where(Acknowledgement.bulletin_id == bulletin_id)
    )
    on_their_phone = (
        select(Delivery.step, Acknowledgement.id)
        .select_from(Acknowledgement)
        .join(person, person.id == Acknowledgement.subscriber_id)
        .join(address, and_(address.bot_id.in_(phone_bots), address.chat_id == person.phone))
        .join(Delivery, and_(*reached))
        .where(Acknowledgement.bulletin_id == bulletin_id)
    )
    both = on_theirs.union(on_their_phone).subquery()
    step = type_coerce(both.c.step, Integer)
    rows = await session.execute(select(step, func.count()).group_by(step))
    return {int(k): int(count) for k, count in rows.all()}
