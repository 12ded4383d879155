"""Receipts and reports: delivery counts by state, failure reasons and "Đã nhận" rates."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, literal_column, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from broadcasts import bulletins
from db.models import (
    Acknowledgement,
    Area,
    AreaKind,
    Bot,
    BroadcastRun,
    Bulletin,
    Delivery,
    DeliveryState,
    Platform,
    Priority,
    RunState,
)

# Failed and blocked deliveries are explained by their reason code; other states explain
# themselves.
REASON_STATES = (DeliveryState.failed, DeliveryState.blocked)

# --- CSV copy (Vietnamese: the file is opened by officials in Excel) ---------------------------

CSV_HEADERS_BEFORE = ("mã", "xã/phường", "tỉnh/thành")
CSV_STATE_HEADERS: dict[DeliveryState, str] = {
    DeliveryState.pending: "chờ gửi",
    DeliveryState.sending: "đang gửi",
    DeliveryState.sent: "đã gửi",
    DeliveryState.failed: "lỗi",
    DeliveryState.blocked: "bị chặn",
    DeliveryState.expired: "hết hạn",
    DeliveryState.unknown: "không rõ",
    DeliveryState.cancelled: "đã hủy",
}
CSV_HEADERS_AFTER = ("đã nhận", "tỉ lệ đã nhận")
CSV_UNKNOWN_AREA = "(không rõ)"
# Excel reads UTF-8 without a byte order mark as the local code page and mangles diacritics.
BOM = "\ufeff"
# Cells Excel would evaluate as a formula (CSV injection): prefixed with a quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class RunReport:
    """Receipts of one broadcast run."""

    run_id: int
    bulletin_id: int
    fire_at: dt.datetime
    state: RunState
    total: int
    counts: dict[str, int]  # every DeliveryState value, 0 when none
    acknowledgements: int
    ack_rate: float | None  # acknowledgements / sent; urgent bulletins only
    failure_reasons: dict[str, int]  # reason code → failed or blocked deliveries


@dataclass(frozen=True)
class CommuneRow:
    """Receipts of one bulletin in one area (a commune, village or province)."""

    area_code: str  # "" when the area is unknown (no area recorded)
    area_name: str
    province_name: str
    counts: dict[str, int]  # every DeliveryState value, over all runs
    # Distinct chat addresses with a sent delivery over all runs: the rate's denominator
    # (equal to counts["sent"] for a bulletin with one run).
    sent: int
    acknowledgements: int
    ack_rate: float | None  # acknowledgements / sent; urgent bulletins only


@dataclass(frozen=True)
class BotRow:
    """A bot's share of a bulletin: the deliveries it carries (to its own people) over all runs.

    The rows of a bulletin add up to its totals: counts and sent exactly; acknowledgements
    up to the taps no bot can be named for (the report's acknowledgements_unattributed).
    """

    bot_id: int
    platform: Platform | None  # None only for a bot row missing from `bots` (never deleted)
    name: str
    username: str | None
    counts: dict[str, int]  # every DeliveryState value, over all runs
    sent: int  # distinct chat addresses reached, as the bulletin's sent
    # Taps that came through this bot (see _acks_by_bot); None for routine bulletins.
    acknowledgements: int | None
    ack_rate: float | None  # acknowledgements / sent; urgent bulletins only


# Iterating an Enum costs microseconds per member: the values once, for the hot loops.
_STATE_VALUES = tuple(state.value for state in DeliveryState)


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(_STATE_VALUES, 0)


def _rate(acknowledgements: int, sent: int, priority: Priority) -> float | None:
    # Routine bulletins carry no "Đã nhận" button, so a rate would only ever read 0 %.
    if priority is not Priority.urgent or sent == 0:
        return None
    return acknowledgements / sent


# Exactly the WHERE of the partial index ix_deliveries_progress, written inline (SQLite
# and PostgreSQL's generic plans only use a partial index for a literal that matches it).
MOVED = Delivery.state != literal_column("'pending'")


# (area id, bot id): the finest grain of the follow-up's counts.
AreaBot = tuple[int | None, int]


class AreaTotals:
    """Deliveries per (area, bot) of each run, kept once the run's fan-out is done.

    Fan-out inserts all of a run's deliveries in the transaction that moves the run out
    of `pending` and sets run.total, and deliveries are never deleted nor moved to another
    area or bot, so from then on these totals never change (kept ones are checked against
    run.total, which another fan_out call of the run would change). Pending counts are
    these totals minus the deliveries that moved on (which ix_deliveries_progress holds):
    the index then costs nothing at fan-out, where a full one cost 30-60 % of a
    1,000,000-row fan-out. Keep one instance for as long as you like (the dashboard keeps
    one per process); at most `max_runs` runs are kept.
    """

    def __init__(self, max_runs: int = 256) -> None:
        self.max_runs = max_runs
        self._kept: OrderedDict[int, dict[AreaBot, int]] = OrderedDict()

    async def of(
        self, session: AsyncSession, runs: Sequence[BroadcastRun]
    ) -> dict[int, dict[AreaBot, int]]:
        """run id → (area id, bot id) → deliveries, for `runs`."""
        found = {
            run.id: self._kept[run.id]
            for run in runs
            # A later fan_out of the run (not done in service, but allowed) changes total.
            if run.id in self._kept and sum(self._kept[run.id].values()) == run.total
        }
        missing = [run for run in runs if run.id not in found]
        if missing:
            for run in missing:
                found[run.id] = {}
            rows = await session.execute(
                select(Delivery.run_id, Delivery.area_id, Delivery.bot_id, func.count())
                .where(Delivery.run_id.in_([run.id for run in missing]))
                .group_by(Delivery.run_id, Delivery.area_id, Delivery.bot_id)
            )
            for run_id, area_id, bot_id, count in rows.all():
                found[run_id][area_id, bot_id] = int(count)
            for run in missing:
                if run.state is not RunState.pending:
                    self._kept[run.id] = found[run.id]
        for run in runs:
            if run.id in self._kept:
                self._kept.move_to_end(run.id)
        while len(self._kept) > self.max_runs:
            self._kept.popitem(last=False)
        return found


@dataclass(frozen=True)
class _Tally:
    """Delivery counts of some runs by (run, area, bot, state, reason).

    Deliveries that left `pending` are grouped in the order of ix_deliveries_progress,
    read from that partial index alone (no table rows, no sort); the pending ones are
    what is left of each (area, bot) total (AreaTotals). Everything the follow-up shows
    is summed from these few hundred rows in Python. The bot is in the grouping, not a
    second pass: a commune's people are mostly on one or two bots (its province's, and
    each platform's default), so it adds few rows, and every breakdown (per run, area or
    bot) sums the same rows, so they agree with the totals by construction.
    """

    rows: list[tuple[int, int | None, int, DeliveryState, str | None, int]]

    @classmethod
    async def of(
        cls, session: AsyncSession, runs: Sequence[BroadcastRun], totals: AreaTotals
    ) -> _Tally:
        if not runs:
            return cls([])
        result = await session.execute(
            select(
                Delivery.run_id,
                Delivery.area_id,
                Delivery.bot_id,
                Delivery.state,
                Delivery.reason,
                func.count(),
            )
            .where(Delivery.run_id.in_([run.id for run in runs]), MOVED)
            .group_by(
                Delivery.run_id, Delivery.area_id, Delivery.bot_id, Delivery.state, Delivery.reason
            )
        )
        rows: list[tuple[int, int | None, int, DeliveryState, str | None, int]] = []
        kept = await totals.of(session, runs)
        # A copy: the kept totals themselves must not change.
        pending = {run_id: dict(per_key) for run_id, per_key in kept.items()}
        for run_id, area_id, bot_id, state, reason, count in result.all():
            rows.append((run_id, area_id, bot_id, DeliveryState(state), reason, int(count)))
            key = (area_id, bot_id)
            pending[run_id][key] = pending[run_id].get(key, 0) - int(count)
        for run_id, per_key in pending.items():
            rows.extend(
                (run_id, area_id, bot_id, DeliveryState.pending, None, count)
                for (area_id, bot_id), count in per_key.items()
                if count > 0
            )
        return cls(rows)

    def by_run(self) -> dict[int, dict[str, int]]:
        """Counts by state per run."""
        counts: dict[int, dict[str, int]] = {}
        for run_id, _area, _bot, state, _reason, count in self.rows:
            if run_id not in counts:
                counts[run_id] = _empty_counts()
            counts[run_id][state] += count
        return counts

    def by_area(self) -> dict[int | None, dict[str, int]]:
        """Counts by state per area (None: deliveries with no area recorded)."""
        counts: dict[int | None, dict[str, int]] = {}
        for _run, area_id, _bot, state, _reason, count in self.rows:
            if area_id not in counts:
                counts[area_id] = _empty_counts()
            counts[area_id][state] += count
        return counts

    def by_bot(self) -> dict[int, dict[str, int]]:
        """Counts by state per bot."""
        counts: dict[int, dict[str, int]] = {}
        for _run, _area, bot_id, state, _reason, count in self.rows:
            if bot_id not in counts:
                counts[bot_id] = _empty_counts()
            counts[bot_id][state] += count
        return counts

    def reasons_by_run(self) -> dict[int, dict[str, int]]:
        reasons: dict[int, dict[str, int]] = {}
        for run_id, _area, _bot, state, reason, count in self.rows:
            if state in REASON_STATES:
                key = reason or state.value
                per_run = reasons.setdefault(run_id, {})
                per_run[key] = per_run.get(key, 0) + count
        return reasons


@dataclass(frozen=True)
class _FollowUp:
    """A bulletin, its runs (oldest first) and their tally."""

    bulletin: Bulletin
    runs: Sequence[BroadcastRun]
    tally: _Tally

    @classmethod
    async def load(
        cls, session: AsyncSession, bulletin_id: int, totals: AreaTotals | None
    ) -> _FollowUp:
        bulletin = await bulletins.get(session, bulletin_id)
        runs = (
            await session.scalars(
                select(BroadcastRun)
                .where(BroadcastRun.bulletin_id == bulletin.id)
                .order_by(BroadcastRun.fire_at, BroadcastRun.id)
            )
        ).all()
        return cls(bulletin, runs, await _Tally.of(session, runs, totals or AreaTotals()))

    def _sent_rows(self) -> tuple[ColumnElement[bool], ...]:
        return (
            Delivery.run_id.in_([run.id for run in self.runs]),
            Delivery.state == DeliveryState.sent,
        )

    async def reached_by_bot(self, session: AsyncSession) -> dict[int, int]:
        """Distinct addresses with a sent delivery over all runs (erased ones count once
        each), per bot; their sum is the bulletin's reach, since an address is on one bot.

        With one run every delivery is a distinct address, so its sent count is the answer
        and the DISTINCT pass is skipped; the same holds per area in reached_by_area.
        """
        if len(self.runs) <= 1:
            return {bot: c[DeliveryState.sent.value] for bot, c in self.tally.by_bot().items()}
        rows = await session.execute(
            select(Delivery.bot_id, *_reached_columns())
            .where(*self._sent_rows())
            .group_by(Delivery.bot_id)
        )
        return {bot: int(distinct) + int(erased) for bot, distinct, erased in rows.all()}

    async def reached_by_area(self, session: AsyncSession) -> dict[int | None, int]:
        """reached, per area."""
        if len(self.runs) <= 1:
            return {area: c[DeliveryState.sent.value] for area, c in self.tally.by_area().items()}
        rows = await session.execute(
            select(Delivery.area_id, *_reached_columns())
            .where(*self._sent_rows())
            .group_by(Delivery.area_id)
        )
        return {area: int(distinct) + int(erased) for area, distinct, erased in rows.all()}


async def _run_reports(
    session: AsyncSession, bulletin: Bulletin, runs: Sequence[BroadcastRun], tally: _Tally
) -> list[RunReport]:
    """Reports for `runs` of `bulletin` from their tally plus one query for the taps."""
    if not runs:
        return []
    counts = tally.by_run()
    reasons = tally.reasons_by_run()
    acks = await _acks_by_run(session, bulletin.id)
    reports = []
    for run in runs:
        run_counts = counts.get(run.id, _empty_counts())
        run_reasons = reasons.get(run.id, {})
        reports.append(
            RunReport(
                run_id=run.id,
                bulletin_id=bulletin.id,
                fire_at=run.fire_at,
                state=run.state,
                total=run.total,
                counts=run_counts,
                acknowledgements=acks.get(run.id, 0),
                ack_rate=_rate(
                    acks.get(run.id, 0), run_counts[DeliveryState.sent.value], bulletin.priority
                ),
                failure_reasons=dict(sorted(run_reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            )
        )
    return reports


async def _acks_by_run(session: AsyncSession, bulletin_id: int) -> dict[int, int]:
    """Acknowledgements per run of a bulletin.

    A tap is once per person per bulletin and often carries no run, so an unlinked tap is
    credited to the latest run fired at or before it (the message the person answered).
    """
    latest_before = (
        select(BroadcastRun.id)
        .where(
            BroadcastRun.bulletin_id == Acknowledgement.bulletin_id,
            BroadcastRun.fire_at <= Acknowledgement.created_at,
        )
        .order_by(BroadcastRun.fire_at.desc())
        .limit(1)
        .correlate(Acknowledgement)
        .scalar_subquery()
    )
    credited = (
        select(func.coalesce(Acknowledgement.run_id, latest_before).label("run_id"))
        .where(Acknowledgement.bulletin_id == bulletin_id)
        .subquery()
    )
    run_id = type_coerce(credited.c.run_id, Integer)
    rows = await session.execute(
        select(run_id, func.count()).where(run_id.is_not(None)).group_by(run_id)
    )
    return {int(run): int(count) for run, count in rows.all()}


async def _acks_by_bot(session: AsyncSession, bulletin_id: int) -> dict[int | None, int]:
    """Acknowledgements of a bulletin per bot they came through (None: taps recorded
    before taps named their bot), from ix_acknowledgements_bulletin_bot alone."""
    rows = await session.execute(
        select(Acknowledgement.bot_id, func.count())
        .where(Acknowledgement.bulletin_id == bulletin_id)
        .group_by(Acknowledgement.bot_id)
    )
    return {None if bot is None else int(bot): int(count) for bot, count in rows.all()}


async def _bot_rows(
    session: AsyncSession, loaded: _FollowUp, reached: dict[int, int], acknowledgements: int
) -> tuple[list[BotRow], int]:
    """The bulletin's BotRows (by platform, then name) and its unattributed taps.

    Per-bot taps are counted for urgent bulletins only (routine ones carry no button), and
    not at all when the bulletin has none.
    """
    bulletin = loaded.bulletin
    counts = loaded.tally.by_bot()
    if not counts:
        return [], 0
    acks: dict[int | None, int] = {}
    urgent = bulletin.priority is Priority.urgent
    if urgent and acknowledgements:
        acks = await _acks_by_bot(session, bulletin.id)
    found = await session.execute(
        select(Bot.id, Bot.platform, Bot.name, Bot.username).where(Bot.id.in_(counts))
    )
    bots = {bot_id: (platform, name, username) for bot_id, platform, name, username in found}
    rows = []
    for bot_id, bot_counts in counts.items():
        platform, name, username = bots.get(bot_id, (None, f"#{bot_id}", None))
        bot_acks = acks.get(bot_id, 0) if urgent else None
        bot_sent = reached.get(bot_id, 0)
        rows.append(
            BotRow(
                bot_id=bot_id,
                platform=platform,
                name=name,
                username=username,
                counts=bot_counts,
                sent=bot_sent,
                acknowledgements=bot_acks,
                ack_rate=_rate(bot_acks or 0, bot_sent, bulletin.priority),
            )
        )
    rows.sort(key=lambda row: (row.platform is None, row.platform or "", row.name, row.bot_id))
    # Taps credited to no bot, or (not possible, but kept exact) to one with no deliveries.
    unattributed = sum(n for bot, n in acks.items() if bot is None or bot not in counts)
    return rows, unattributed if urgent else 0


def _reached_columns() -> tuple[ColumnElement[int], ColumnElement[int]]:
    """Distinct addresses reached, plus erased addresses (NULL: each counts once)."""
    return (
        func.count(Delivery.chat_address_id.distinct()),
        func.coalesce(func.sum(case((Delivery.chat_address_id.is_(None), 1), else_=0)), 0),
    )


async def run_report(
    session: AsyncSession, run_id: int, totals: AreaTotals | None = None
) -> RunReport:
    """Counts by delivery state, failure reasons and acknowledgements of one run.

    `totals` may carry area totals over from earlier calls. Raises BulletinError for an
    unknown run.
    """
    run = await session.get(BroadcastRun, run_id)
    if run is None:
        raise bulletins.BulletinError(f"no broadcast run {run_id}")
    bulletin = await session.get_one(Bulletin, run.bulletin_id)
    tally = await _Tally.of(session, [run], totals or AreaTotals())
    return (await _run_reports(session, bulletin, [run], tally))[0]


async def bulletin_report(
    session: AsyncSession, bulletin_id: int, totals: AreaTotals | None = None
) -> dict[str, Any]:
    """The whole bulletin: state, per-run RunReports and totals over all runs.

    Keys: id, title, state, priority, counts, failure_reasons, sent (distinct addresses
    reached), acknowledgements, ack_rate (urgent only), runs (RunReports, oldest first),
    bots (BotRows, one per bot with deliveries; they add up to counts and sent) and
    acknowledgements_unattributed (urgent only: taps credited to no bot, see _acks_by_bot).
    `totals` may carry area totals over from earlier calls. Raises BulletinError for an
    unknown bulletin.
    """
    return await _bulletin_report(session, await _FollowUp.load(session, bulletin_id, totals))


async def follow_up(
    session: AsyncSession, bulletin_id: int, totals: AreaTotals | None = None
) -> tuple[dict[str, Any], list[CommuneRow]]:
    """bulletin_report and commune_rows together, from one pass over the deliveries."""
    loaded = await _FollowUp.load(session, bulletin_id, totals)
    return await _bulletin_report(session, loaded), await _commune_rows(session, loaded)


async def _bulletin_report(session: AsyncSession, loaded: _FollowUp) -> dict[str, Any]:
    bulletin = loaded.bulletin
    reports = await _run_reports(session, bulletin, loaded.runs, loaded.tally)
    counts = _empty_counts()
    reasons: dict[str, int] = {}
    for report in reports:
        for state, count in report.counts.items():
            counts[state] += count
        for reason, count in report.failure_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    reached = await loaded.reached_by_bot(session)
    sent = sum(reached.values())
    acknowledgements = int(
        await session.scalar(select(func.count()).where(Acknowledgement.bulletin_id == bulletin.id))
        or 0
    )
    bots, unattributed = await _bot_rows(session, loaded, reached, acknowledgements)
    return {
        "id": bulletin.id,
        "title": bulletin.title,
        "state": bulletin.state,
        "priority": bulletin.priority,
        "counts": counts,
        "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "sent": sent,
        "acknowledgements": acknowledgements,
        "ack_rate": _rate(acknowledgements, sent, bulletin.priority),
        "runs": reports,
        "bots": bots,
        "acknowledgements_unattributed": unattributed,
    }


async def commune_rows(
    session: AsyncSession, bulletin_id: int, totals: AreaTotals | None = None
) -> list[CommuneRow]:
    """Receipts per area over all runs, ordered by area code (unknown area last).

    Deliveries are grouped by the area that matched the person (Delivery.area_id: a commune,
    village or province), taps by Acknowledgement.area_id. `totals` may carry area totals
    over from earlier calls. Raises BulletinError for an unknown bulletin.
    """
    return await _commune_rows(session, await _FollowUp.load(session, bulletin_id, totals))


async def _commune_rows(session: AsyncSession, loaded: _FollowUp) -> list[CommuneRow]:
    bulletin = loaded.bulletin
    counts = loaded.tally.by_area()
    sent = await loaded.reached_by_area(session)
    taps = await session.execute(
        select(Acknowledgement.area_id, func.count())
        .where(Acknowledgement.bulletin_id == bulletin.id)
        .group_by(Acknowledgement.area_id)
    )
    acks = {area_id: int(count) for area_id, count in taps.all()}

    known = {area_id for area_id in (*counts, *acks) if area_id is not None}
    names: dict[int, tuple[str, str, str]] = {}
    if known:
        province = aliased(Area)
        rows = await session.execute(
            select(Area.id, Area.code, Area.name, Area.kind, province.name)
            .outerjoin(province, Area.province_id == province.id)
            .where(Area.id.in_(known))
        )
        for area_id, code, name, kind, province_name in rows.all():
            # A province has no province above it: it is its own.
            own = name if kind is AreaKind.province else ""
            names[area_id] = (code, name, province_name or own)

    result: list[CommuneRow] = []
    for key in (*counts, *(a for a in acks if a not in counts)):
        code, name, province_name = (
            names.get(key, ("", CSV_UNKNOWN_AREA, ""))
            if key is not None
            else ("", CSV_UNKNOWN_AREA, "")
        )
        area_acks = acks.get(key, 0)
        area_sent = sent.get(key, 0)
        result.append(
            CommuneRow(
                area_code=code,
                area_name=name,
                province_name=province_name,
                counts=counts.get(key, _empty_counts()),
                sent=area_sent,
                acknowledgements=area_acks,
                ack_rate=_rate(area_acks, area_sent, bulletin.priority),
            )
        )
    result.sort(key=lambda row: (row.area_code == "", row.area_code))
    return result


def csv_cell(text: str) -> str:
    """`text` as a CSV cell Excel shows as text, never evaluates (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def commune_csv(rows: list[CommuneRow]) -> str:
    """A CSV (UTF-8 with BOM, so Excel shows diacritics) of `rows` with a header row.

    Columns: mã, xã/phường, tỉnh/thành, one per delivery state, đã nhận, tỉ lệ đã nhận
    (a percentage with one decimal; empty for routine bulletins).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [*CSV_HEADERS_BEFORE, *(CSV_STATE_HEADERS[s] for s in DeliveryState), *CSV_HEADERS_AFTER]
    )
    for row in rows:
        rate = "" if row.ack_rate is None else f"{row.ack_rate * 100:.1f}%"
        writer.writerow(
            [
                csv_cell(row.area_code),
                csv_cell(row.area_name),
                csv_cell(row.province_name),
                *(row.counts.get(state.value, 0) for state in DeliveryState),
                row.acknowledgements,
                rate,
            ]
        )
    return BOM + out.getvalue()
