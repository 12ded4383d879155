"""The follow-up of a bulletin: live delivery counts, per-commune receipts, CSV, a chart."""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import fallback, reports
from db.models import Bot, BroadcastRun, Bulletin, BulletinState, Delivery, DeliveryState
from web.dashboard import texts
from web.dashboard.bulletin_views import load_visible
from web.dashboard.common import Actor, Dashboard

OPEN_STATES = (DeliveryState.pending.value, DeliveryState.sending.value)
MAX_BARS = 120
CHART_W, CHART_H, CHART_PAD = 640, 180, 28
CHART = {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD}
T = TypeVar("T")
# (value, label) of every delivery state: the page writes a cell per state per commune.
STATES = [(state.value, texts.DELIVERY_STATES[state]) for state in DeliveryState]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


async def sent_per_minute(
    db: AsyncSession, bulletin_id: int, since: dt.datetime | None = None
) -> list[tuple[dt.datetime, int]]:
    """(minute, deliveries sent in it) for every run of the bulletin, oldest first.

    With `since` (the start of a minute), only deliveries sent from then on.
    """
    if db.get_bind().dialect.name == "sqlite":
        # Stored as naive UTC text; the first 16 characters are "YYYY-MM-DD HH:MM".
        minute: Any = func.substr(Delivery.sent_at, 1, 16)
    else:
        minute = func.date_trunc("minute", Delivery.sent_at)
    runs = select(BroadcastRun.id).where(BroadcastRun.bulletin_id == bulletin_id)
    sent = Delivery.sent_at.is_not(None) if since is None else Delivery.sent_at >= since
    rows = await db.execute(
        select(minute, func.count())
        # Sent rows are never pending: MOVED lets the databases read the partial index.
        .where(Delivery.run_id.in_(runs), reports.MOVED, sent)
        .group_by(minute)
        .order_by(minute)
    )
    result: list[tuple[dt.datetime, int]] = []
    for row in rows.all():
        stamp: Any = row[0]
        count = row[1]
        if isinstance(stamp, str):
            moment = dt.datetime.fromisoformat(stamp.replace(" ", "T")).replace(tzinfo=dt.UTC)
        else:
            moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
        result.append((moment.astimezone(dt.UTC), int(count)))
    return result


class MinuteCounts:
    """sent_per_minute that counts only the recent minutes again.

    A delivery's sent_at is the sender's clock when the platform accepted it, written
    within about a second; so minutes more than SETTLE before the latest one seen never
    change again and are kept (per bulletin, for the last `max_bulletins`). Exact, and
    the chart of a long broadcast no longer sorts every sent row every ten seconds.
    """

    SETTLE = dt.timedelta(minutes=2)

    def __init__(self, max_bulletins: int = 64) -> None:
        self.max_bulletins = max_bulletins
        # bulletin id → (horizon, the counts of the minutes before it)
        self._settled: OrderedDict[int, tuple[dt.datetime, list[tuple[dt.datetime, int]]]] = (
            OrderedDict()
        )

    async def get(self, db: AsyncSession, bulletin_id: int) -> list[tuple[dt.datetime, int]]:
        horizon, settled = self._settled.get(bulletin_id, (None, []))
        points = settled + await sent_per_minute(db, bulletin_id, since=horizon)
        if points:
            latest = points[-1][0] - self.SETTLE
            new_horizon = latest if horizon is None else max(horizon, latest)
            self._settled[bulletin_id] = (new_horizon, [p for p in points if p[0] < new_horizon])
            self._settled.move_to_end(bulletin_id)
            while len(self._settled) > self.max_bulletins:
                self._settled.popitem(last=False)
        return points


def chart_bars(points: list[tuple[dt.datetime, int]], tz: Any) -> tuple[list[Bar], int, int]:
    """Bars for the SVG chart (minutes grouped when there are more than MAX_BARS).

    Returns (bars, the tallest count, minutes per bar).
    """
    if not points:
        return [], 0, 1
    first, last = points[0][0], points[-1][0]
    span = int((last - first).total_seconds() // 60) + 1
    step = max(1, -(-span // MAX_BARS))
    buckets: dict[int, int] = {}
    for moment, count in points:
        index = int((moment - first).total_seconds() // 60) // step
        buckets[index] = buckets.get(index, 0) + count
    slots = max(buckets) + 1
    tallest = max(buckets.values())
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    width = inner_w / slots
    bars = []
    for index, count in sorted(buckets.items()):
        height = inner_h * count / tallest
        start = (first + dt.timedelta(minutes=index * step)).astimezone(tz)
        bars.append(
            Bar(
                x=round(CHART_PAD + index * width, 2),
                y=round(CHART_PAD + inner_h - height, 2),
                width=round(max(width - 1, 1), 2),
                height=round(height, 2),
                count=count,
                label=f"{start:%H:%M}",
            )
        )
    return bars, tallest, step


def bot_shares(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bot's share of the bulletin (reports.BotRow) as the page and its poll show it."""
    shares = []
    row: reports.BotRow
    for row in report["bots"]:
        shares.append(
            {
                "bot_id": row.bot_id,
                "platform": row.platform.value if row.platform else None,
                "platform_label": texts.PLATFORMS[row.platform] if row.platform else "",
                "name": row.name,
                "username": row.username,
                "counts": row.counts,
                "sent": row.sent,
                "acknowledgements": row.acknowledgements,
                "ack_rate": row.ack_rate,
            }
        )
    return shares


def progress_payload(report: dict[str, Any]) -> dict[str, Any]:
    """What the page shows and polls: totals, counts by state, taps, reasons, bots."""
    counts: dict[str, int] = report["counts"]
    total = sum(counts.values())
    open_count = sum(counts[s] for s in OPEN_STATES)
    state: BulletinState = report["state"]
    return {
        "bulletin_id": report["id"],
        "state": state.value,
        "state_label": texts.BULLETIN_STATES[state],
        "total": total,
        "counts": counts,
        "done_count": total - open_count,
        "sent": report["sent"],
        "acknowledgements": report["acknowledgements"],
        "ack_rate": report["ack_rate"],
        "failure_reasons": report["failure_reasons"],
        "runs": len(report["runs"]),
        "bots": bot_shares(report),
        "acknowledgements_unattributed": report["acknowledgements_unattributed"],
        # The page stops polling when nothing can change any more.
        "finished": open_count == 0
        and state in {BulletinState.sent, BulletinState.cancelled, BulletinState.expired},
    }


def chain_steps(found: list[fallback.StepReport]) -> list[dict[str, Any]]:
    """The bulletin's fallback chain (fallback.steps) as the page shows it, step by step."""
    return [
        {
            "step": report.step,
            "platform": report.platform.value,
            "platform_label": texts.PLATFORMS[report.platform],
            "created": report.created,
            "sent": report.sent,
            "failed": report.failed,
            "pending": report.pending,
            "acknowledged": report.acknowledged,
            "not_yet_due": report.not_yet_due,
        }
        for report in found
    ]


async def bot_queues(db: AsyncSession, dash: Dashboard) -> list[dict[str, Any]]:
    """Each running bot's live queue, for the page and its poll: why a broadcast slows
    while a crowd is being answered (answers go first) or the platform pushes back."""
    if dash.bot_queues is None:
        return []
    live = dash.bot_queues()
    if not live:
        return []
    bots = (await db.execute(select(Bot.id, Bot.platform, Bot.name).where(Bot.id.in_(live)))).all()
    queues = []
    for bot_id, platform, name in sorted(bots, key=lambda row: (row[1], row[2])):
        stats = live[bot_id]
        queues.append(
            {
                "bot_id": bot_id,
                "bot": f"{texts.PLATFORMS[platform]} · {name}",
                "rate": stats.rate_per_second,
                "replies_waiting": stats.replies_waiting,
                "broadcast_waiting": stats.broadcast_waiting,
                "broadcast_backlog": stats.broadcast_backlog,
                "rate_limited_last_hour": stats.rate_limited_last_hour,
                "paused_for": round(stats.paused_for, 1),
            }
        )
    return queues


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the follow-up routes to the dashboard router."""
    minutes = MinuteCounts()
    totals = reports.AreaTotals()

    async def read_visible(
        request: Request, bulletin_id: int, read: Callable[[AsyncSession, int], Awaitable[T]]
    ) -> tuple[Actor, Bulletin, T]:
        """The signed-in official, the bulletin (NotFound unless they may see it) and what
        `read` finds for it, in one read-only session."""
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            return actor, bulletin, await read(db, bulletin.id)

    @router.get("/bulletins/{bulletin_id}/progress")
    @dash.view
    async def progress_page(request: Request, bulletin_id: int) -> Response:
        # The chart is an <img> loading chart.svg: the page itself does not count minutes.
        actor, bulletin, (report, rows) = await read_visible(
            request, bulletin_id, functools.partial(reports.follow_up, totals=totals)
        )
        async with dash.sessions() as db:
            queues = await bot_queues(db, dash)
            # The chain's waiting count costs about one fallback pass: on the page only,
            # not in its 2-second poll.
            chain = chain_steps(await fallback.steps(db, bulletin.id, dash.now()))
        return dash.render(
            request,
            "dashboard/progress.html",
            {"b": bulletin, "p": progress_payload(report), "rows": rows, "chart": CHART,
             "states": STATES, "queues": queues, "chain": chain},
            actor=actor,
        )  # fmt: skip

    @router.get("/bulletins/{bulletin_id}/progress.json")
    @dash.view
    async def progress_json(request: Request, bulletin_id: int) -> Response:
        read = functools.partial(reports.bulletin_report, totals=totals)
        _, _, report = await read_visible(request, bulletin_id, read)
        async with dash.sessions() as db:
            queues = await bot_queues(db, dash)
        return JSONResponse({**progress_payload(report), "queues": queues})

    @router.get("/bulletins/{bulletin_id}/chart.svg")
    @dash.view
    async def progress_chart(request: Request, bulletin_id: int) -> Response:
        _, _, points = await read_visible(request, bulletin_id, minutes.get)
        bars, tallest, step = chart_bars(points, dash.tz)
        template = dash.templates.get_template("dashboard/chart.svg")
        svg = template.render(bars=bars, tallest=tallest, step=step, chart=CHART)
        return Response(svg, media_type="image/svg+xml")

    @router.get("/bulletins/{bulletin_id}/communes.csv")
    @dash.view
    async def commune_csv(request: Request, bulletin_id: int) -> Response:
        read = functools.partial(reports.commune_rows, totals=totals)
        _, bulletin, rows = await read_visible(request, bulletin_id, read)
        return Response(
            reports.commune_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="ban-tin-{bulletin.id}-theo-xa.csv"'
            },
        )
