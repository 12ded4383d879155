"""ZNS templates (administrators): register the templates Zalo approved, list and disable them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.datastructures import FormData

from broadcasts import zns
from db.models import Bot, Platform, ZnsTemplate
from web.dashboard import texts
from web.dashboard.common import Dashboard, DashboardError, NotFound, form_text, require_admin

PARAM_ROWS = 6  # empty parameter rows on the form (a template rarely has more)


def _params(form: FormData) -> dict[str, str]:
    """The parameter rows as zns.add takes them ({"name": "source[:limit]"}); blank rows
    are skipped, a name given twice is refused."""
    names, sources, limits = (
        [v if isinstance(v, str) else "" for v in form.getlist(field)]
        for field in ("param_name", "param_source", "param_limit")
    )
    params: dict[str, str] = {}
    for index, name in enumerate(names):
        name = name.strip()
        if not name:
            continue
        if name in params:
            raise DashboardError(texts.ZNS_PARAM_TWICE.format(name=name[:50]))
        source = sources[index].strip() if index < len(sources) else ""
        limit = limits[index].strip() if index < len(limits) else ""
        params[name] = f"{source}:{limit}" if limit else source
    return params


def _price(form: FormData) -> int:
    try:
        return int(form_text(form, "price_vnd").strip())
    except ValueError:
        raise DashboardError(texts.BAD_NUMBER) from None


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add /admin/zns to the dashboard router."""

    @router.get("/admin/zns")
    @dash.view
    async def templates(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            rows = await zns.listing(db)
            bots = (
                await db.scalars(select(Bot).where(Bot.platform == Platform.zns).order_by(Bot.name))
            ).all()
        return dash.render(
            request, "dashboard/admin_zns.html",
            {"rows": rows, "bots": bots, "sources": zns.SOURCES, "param_rows": PARAM_ROWS,
             "param_limit": zns.PARAM_LIMIT, "param_limit_max": zns.PARAM_LIMIT_MAX},
            actor=actor,
        )  # fmt: skip

    @router.post("/admin/zns")
    @dash.view
    async def template_add(request: Request) -> Response:
        form = await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)  # before reading the form: others learn nothing from it
            params = _params(form)
            price = _price(form)
            try:
                bot = await db.get(Bot, int(form_text(form, "bot_id")))
            except ValueError:
                bot = None
            if bot is None:
                raise DashboardError(texts.BAD_CHOICE)
            try:
                await zns.add(
                    db, bot=bot, template_id=form_text(form, "template_id"),
                    name=form_text(form, "name"), params=params, price_vnd=price,
                    official=actor.official, now=dash.now(), via="web",
                )  # fmt: skip
            except zns.ZnsError as exc:
                raise DashboardError(texts.ZNS_PROBLEMS[exc.problem]) from None
        return dash.redirect("/admin/zns", "zns_template_added")

    @router.post("/admin/zns/{template_id}/disable")
    @dash.view
    async def template_disable(request: Request, template_id: int) -> Response:
        await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            template = await db.get(ZnsTemplate, template_id)
            if template is None:
                raise NotFound
            await zns.disable(db, template, official=actor.official, now=dash.now(), via="web")
        return dash.redirect("/admin/zns", "zns_template_disabled")
