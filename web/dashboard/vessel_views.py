"""A bulletin's vessels: totals, the "not reached" list with phones, marks by hand, CSV."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas, vessels
from broadcasts.bulletins import BulletinError
from broadcasts.vessels import MarkRefused, VesselError, VesselReport, VesselStatus
from db.models import Area, AreaKind, Bulletin, MarkMethod
from web.dashboard import texts
from web.dashboard.bulletin_views import load_visible
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

PAGE_SIZE = 200
METHODS = [(method.value, texts.MARK_METHODS[method.value]) for method in MarkMethod]


async def _communes(db: AsyncSession, actor: Actor, code: str) -> list[int] | None:
    """The commune ids the official may see vessels of, narrowed to `code` when given
    (None: every commune, for an admin with no filter). A vessel's phone is personal data:
    only officials whose scope covers its commune see the vessel at all."""
    conditions = [Area.kind == AreaKind.commune]
    if not actor.is_admin:
        conditions.append(scope_condition(actor))
    if code:
        try:
            conditions.append(Area.code == areas.canonical_code(code))
        except areas.AreaError:
            return []
    elif actor.is_admin:
        return None
    return list((await db.scalars(select(Area.id).where(*conditions))).all())


def _query(commune: str, page: int = 1) -> str:
    values = {"commune": commune} if commune else {}
    if page > 1:
        values["page"] = str(page)
    return ("?" + urlencode(values)) if values else ""


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the vessel routes of a bulletin to the dashboard router."""

    async def read(
        request: Request, bulletin_id: int, commune: str
    ) -> tuple[Actor, Bulletin, VesselReport, list[tuple[int, str, str, int]]]:
        """The official, the bulletin (NotFound unless visible), its vessels within scope
        (and `commune`), and every commune of the audience within scope (the filter)."""
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            report = await vessels.report(
                db, bulletin.id, communes=await _communes(db, actor, commune)
            )
            everywhere = report.communes
            if commune:
                whole = await vessels.report(
                    db, bulletin.id, communes=await _communes(db, actor, "")
                )
                everywhere = whole.communes
            return actor, bulletin, report, sorted(everywhere, key=lambda c: c[1])

    @router.get("/bulletins/{bulletin_id}/vessels")
    @dash.view
    async def vessel_page(request: Request, bulletin_id: int) -> Response:
        commune = request.query_params.get("commune", "").strip()[:16]
        try:
            page = max(int(request.query_params.get("page", "1")), 1)
        except ValueError:
            page = 1
        actor, bulletin, report, communes = await read(request, bulletin_id, commune)
        can_mark = actor.official.role in vessels.MARKERS and bulletin.approved_at is not None
        waiting = [row for row in report.rows if row.status is VesselStatus.not_reached]
        shown = waiting[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        informed = [row for row in report.rows if row.status is VesselStatus.informed]
        return dash.render(
            request,
            "dashboard/vessels.html",
            {"b": bulletin, "r": report, "waiting": shown, "waiting_total": len(waiting),
             "informed": informed, "communes": communes,
             "commune": commune, "page": page, "more": len(waiting) > page * PAGE_SIZE,
             "query": _query(commune), "next_query": _query(commune, page + 1),
             "prev_query": _query(commune, page - 1), "can_mark": can_mark,
             "methods": METHODS, "statuses": [(s.value, texts.VESSEL_STATUSES[s.value])
                                             for s in vessels.STATUS_ORDER],
             "phone": vessels.display_phone},
            actor=actor,
        )  # fmt: skip

    @router.get("/bulletins/{bulletin_id}/vessels.csv")
    @dash.view
    async def vessel_csv(request: Request, bulletin_id: int) -> Response:
        commune = request.query_params.get("commune", "").strip()[:16]
        only_waiting = request.query_params.get("not_reached", "") == "1"
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            report = await vessels.report(
                db, bulletin.id, communes=await _communes(db, actor, commune)
            )
        rows = [
            row for row in report.rows if not only_waiting or row.status is VesselStatus.not_reached
        ]
        suffix = "-chua-lien-lac" if only_waiting else ""
        return Response(
            vessels.vessel_csv(rows, dash.tz),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="ban-tin-{report.bulletin_id}-tau-ca{suffix}.csv"'
                )
            },
        )

    @router.post("/bulletins/{bulletin_id}/vessels/{vessel_id}/mark")
    @dash.view
    async def vessel_mark(request: Request, bulletin_id: int, vessel_id: int) -> Response:
        form = await dash.form(request)
        try:
            method = MarkMethod(form_text(form, "method"))
        except ValueError:
            raise DashboardError(texts.BAD_CHOICE) from None
        commune = form_text(form, "commune").strip()[:16]
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            try:
                await vessels.mark(
                    db, bulletin_id=bulletin.id, vessel_id=vessel_id, official=actor.official,
                    method=method, note=form_text(form, "note"), now=dash.now(), via="web",
                )  # fmt: skip
            except MarkRefused as error:
                log.warning("dashboard: official %d refused (vessel mark): %s",
                            actor.official.id, error)  # fmt: skip
                raise Forbidden(texts.VESSEL_MARK_ROLE_ONLY) from None
            except BulletinError:
                raise NotFound from None
            except VesselError:
                raise DashboardError(texts.VESSEL_MARK_BAD) from None
        return dash.redirect(f"/bulletins/{bulletin_id}/vessels{_query(commune)}", "vessel_marked")
