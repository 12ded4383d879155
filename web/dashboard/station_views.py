"""Loudspeaker pages: what a commune's stream plays, what comes next, its URL, "play now"."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from audio import programmes
from audio import texts as audio_texts
from audio.station import mount_for
from broadcasts import areas, leases, stations
from db.models import (
    Area,
    AreaKind,
    OfficialRole,
    Station,
    StationRequest,
    StationRequestState,
)
from web.dashboard import texts
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_text,
    scope_condition,
)

log = logging.getLogger(__name__)

# Who uses the loudspeaker pages, each within their scope (an admin everywhere). Approvers
# judge bulletins; they do not run the commune's loudspeakers.
LOUDSPEAKER_ROLES = frozenset(
    {
        OfficialRole.admin,
        OfficialRole.province_editor,
        OfficialRole.commune_editor,
        OfficialRole.radio_operator,
    }
)
PLAYABLE_SHOWN = 50
REQUESTS_SHOWN = 10


def require_loudspeaker_role(actor: Actor) -> None:
    if actor.official.role not in LOUDSPEAKER_ROLES:
        raise Forbidden(texts.LOUDSPEAKER_ROLE_ONLY)


def stream_url(base: str, code: str) -> str:
    """The URL a loudspeaker or receiver plays: ``<base>/c<code>.mp3``."""
    return base.rstrip("/") + mount_for(code)


@dataclass(frozen=True)
class NextProgramme:
    """The next programme slot and the day's programme title (None while not built)."""

    at: dt.datetime
    title: str | None


async def _station_of(db: AsyncSession, actor: Actor, code: str) -> tuple[Area, Station]:
    """The commune and its switched-on station: NotFound for an unknown commune or a
    station that is off, Forbidden for a commune outside the official's scope."""
    try:
        code = areas.canonical_code(code)
    except areas.AreaError:
        raise NotFound from None
    area = await db.scalar(select(Area).where(Area.code == code))
    if area is None or area.kind is not AreaKind.commune:
        raise NotFound
    inside = await db.scalar(select(Area.id).where(Area.id == area.id, scope_condition(actor)))
    if inside is None:
        log.warning("dashboard: official %d refused the station of %s", actor.official.id, code)
        raise Forbidden(texts.FORBIDDEN_SCOPE)
    station = await db.get(Station, area.id)
    if station is None or not station.enabled:
        raise NotFound
    return area, station


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the loudspeaker routes to the dashboard router."""
    settings = dash.settings
    if settings.station_public_url is not None:
        base_url = str(settings.station_public_url)
    else:
        base_url = f"http://{settings.station_host}:{settings.station_port}"

    async def _next_programme(
        db: AsyncSession, commune: Area, now: dt.datetime
    ) -> NextProgramme | None:
        """None when STATION_PROGRAMME_TIMES is empty (no programme airs)."""
        today = now.astimezone(dash.tz).date()
        slots = [
            dt.datetime.combine(day, at, tzinfo=dash.tz)
            for day in (today, today + dt.timedelta(days=1))
            for at in settings.programme_times
        ]
        later = [s for s in slots if s > now]  # tomorrow's first slot at the latest
        if not later:
            return None
        slot = min(later)
        built = await programmes.daily_programmes(db, commune, limit=3)
        title = None
        if any(day == slot.date() for day, _asset in built):
            title = audio_texts.PROGRAMME_TITLE.format(date=audio_texts.written_date(slot.date()))
        return NextProgramme(slot, title)

    @router.get("/loa")
    @dash.view
    async def station_list(request: Request) -> Response:
        now = dash.now()
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_loudspeaker_role(actor)
            rows = (
                await db.execute(
                    select(Area, Station)
                    .join(Station, Station.area_id == Area.id)
                    .where(Station.enabled.is_(True), scope_condition(actor))
                    .order_by(Area.code)
                )
            ).all()
            driven = await leases.held(db, stations.LEASE, now)
        items = [
            {"area": area, "station": station, "url": stream_url(base_url, area.code)}
            for area, station in rows
        ]
        return dash.render(
            request, "dashboard/loudspeakers.html", {"items": items, "driven": driven},
            actor=actor,
        )  # fmt: skip

    @router.get("/loa/{code}")
    @dash.view
    async def station_page(request: Request, code: str) -> Response:
        now = dash.now()
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_loudspeaker_role(actor)
            area, station = await _station_of(db, actor, code)
            province = await db.get(Area, area.province_id) if area.province_id else None
            driven = await leases.held(db, stations.LEASE, now)
            upcoming = await _next_programme(db, area, now)
            recent = await stations.recent_requests(db, area.id, limit=REQUESTS_SHOWN)
            playable = await stations.playable_bulletins(db, area, now, limit=PLAYABLE_SHOWN)
        pending = [row for row in recent if row[0].state is StationRequestState.pending]
        return dash.render(
            request,
            "dashboard/loudspeaker.html",
            {"area": area, "province": province, "station": station, "driven": driven,
             "upcoming": upcoming, "pending": pending, "recent": recent,
             "playable": playable, "url": stream_url(base_url, area.code)},
            actor=actor,
        )  # fmt: skip

    @router.post("/loa/{code}/play")
    @dash.view
    async def station_play(request: Request, code: str) -> Response:
        form = await dash.form(request)
        try:
            bulletin_id = int(form_text(form, "bulletin_id"))
        except ValueError:
            raise DashboardError(texts.PLAY_CHOOSE) from None
        now = dash.now()
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_loudspeaker_role(actor)
            area, _station = await _station_of(db, actor, code)
            try:
                played: StationRequest = await stations.request_play(
                    db, area, bulletin_id, actor.official, now, via="web"
                )
            except stations.PlayError as error:
                raise DashboardError(texts.PLAY_PROBLEMS[error.problem]) from None
            except LookupError:
                raise NotFound from None
            log.info(
                "dashboard: official %d asked %s to play bulletin %d now (request %d)",
                actor.official.id, area.code, bulletin_id, played.id,
            )  # fmt: skip
        return dash.redirect(f"/loa/{area.code}", "play_requested")
