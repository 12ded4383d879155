"""CAP sources (administrators) and taking over a draft imported from one (editors)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broadcasts import audit, bulletins, cap_import
from db.models import CapSource
from web.dashboard import texts
from web.dashboard.bulletin_views import load_visible
from web.dashboard.common import (
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_text,
    require_admin,
)


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add /admin/cap (sources) and /bulletins/<id>/take to the dashboard router."""

    @router.post("/bulletins/{bulletin_id}/take")
    @dash.view
    async def take_over(request: Request, bulletin_id: int) -> Response:
        await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            try:
                await cap_import.take_over(db, bulletin, actor.official, dash.now())
            except bulletins.BulletinError:
                raise Forbidden(texts.CAP_TAKE_OVER_REFUSED) from None
        return dash.redirect(f"/bulletins/{bulletin_id}", "taken_over")

    @router.get("/admin/cap")
    @dash.view
    async def sources(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            rows = await cap_import.list_sources(db)
            imports = await cap_import.recent_imports(db, 30)
        shown = [{"source": s, "area": a, "url": cap_import.shown_url(s.url)} for s, a in rows]
        return dash.render(
            request, "dashboard/admin_cap.html", {"rows": shown, "imports": imports}, actor=actor
        )

    @router.post("/admin/cap")
    @dash.view
    async def source_add(request: Request) -> Response:
        form = await dash.form(request)
        try:
            interval = int(form_text(form, "poll_seconds", "300"))
        except ValueError:
            raise DashboardError(texts.BAD_NUMBER) from None
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            try:
                source = await cap_import.add_source(
                    db, name=form_text(form, "name"), url=form_text(form, "url"), now=dash.now(),
                    poll_seconds=interval, default_area=form_text(form, "default_area") or None,
                )  # fmt: skip
            except ValueError as exc:  # CapImportError, AreaError
                raise DashboardError(texts.explain_cap_source(exc)) from None
            await audit.record(
                db, now=dash.now(), official=actor.official, via="web", action="cap_source.add",
                object_type="cap_source", object_id=source.id,
                details={"name": source.name, "url": cap_import.shown_url(source.url),
                         "interval": interval},
            )  # fmt: skip
        return dash.redirect("/admin/cap", "cap_source_added")

    @router.post("/admin/cap/{source_id}")
    @dash.view
    async def source_change(request: Request, source_id: int) -> Response:
        """Switch a source on or off (enabled=1/0), or remove it (remove=1)."""
        form = await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            source = await db.get(CapSource, source_id)
            if source is None:
                raise NotFound
            details = {"name": source.name}
            if form_text(form, "remove") == "1":
                action, notice = "cap_source.remove", "cap_source_removed"
                await cap_import.remove_source(db, source)
            else:
                source.enabled = form_text(form, "enabled") == "1"
                action = "cap_source.enable" if source.enabled else "cap_source.disable"
                notice = "cap_source_changed"
            await audit.record(
                db, now=dash.now(), official=actor.official, via="web", action=action,
                object_type="cap_source", object_id=source_id, details=details,
            )  # fmt: skip
        return dash.redirect("/admin/cap", notice)
