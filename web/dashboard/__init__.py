"""The officials' dashboard: a FastAPI router of server-rendered Vietnamese pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import areas, audit
from haidang.settings import Settings
from web.dashboard import (
    admin_views,
    bulletin_views,
    cap_views,
    document_views,
    inbox_views,
    poster_views,
    progress,
    station_views,
    subscriber_views,
    texts,
    vessel_views,
    zns_views,
)
from web.dashboard.auth import DEVICE_COOKIE, attempt_login, login_name, new_session
from web.dashboard.common import (
    STATIC_DIR,
    BotQueues,
    Dashboard,
    LoginRequired,
    NotFound,
    SendReply,
    form_text,
)

__all__ = ["make_admin_check", "make_router"]

# Files the router serves itself; a fixed list, so no path from a URL reaches the disk.
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _safe_next(prefix: str, target: str) -> str:
    # Only our own pages: "//evil.example" or "https://…" would be an open redirect.
    if target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return prefix + "/bulletins"


def make_router(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    send_reply: SendReply | None = None,
    bot_queues: BotQueues | None = None,
    prefix: str = "/dashboard",
    clock: Callable[[], dt.datetime] = _utc_now,
) -> APIRouter:
    """The dashboard's routes, already under `prefix`: include it with no further prefix.

    `send_reply(inbox_message_id)` is awaited after an official's reply is committed, to
    deliver it in chat; without it replies are only stored. `bot_queues()` gives the
    running bots' live queues, shown on the follow-up page.
    """
    dash = Dashboard(
        sessions, settings, prefix=prefix, send_reply=send_reply, clock=clock,
        bot_queues=bot_queues,
    )  # fmt: skip
    router = APIRouter(prefix=prefix, include_in_schema=False)

    @router.get("")
    @router.get("/")
    async def home(request: Request) -> Response:
        return RedirectResponse(prefix + "/bulletins", status_code=303)

    @router.get("/static/{name}")
    async def static(request: Request, name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return Response(status_code=404)
        return FileResponse(
            STATIC_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    @router.get("/login")
    @dash.view
    async def login_form(request: Request) -> Response:
        session = dash.session_of(request) or new_session()
        context = {"error": None, "username": "", "next": request.query_params.get("next", "")}
        return dash.render(request, "dashboard/login.html", context, session=session)

    @router.post("/login")
    @dash.view
    async def login(request: Request) -> Response:
        form = await dash.form(request)
        username = form_text(form, "username")
        now = dash.now()
        device = dash.devices.read(request.cookies.get(DEVICE_COOKIE))
        async with dash.sessions.begin() as db:
            official = await attempt_login(
                db, username=username, password=form_text(form, "password"), now=now,
                client=request.client.host if request.client else "", device=device,
                secret=dash.codec.secret,
            )  # fmt: skip
        if official is None:
            # One answer for every refusal: it must not tell which names exist.
            context = {
                "error": texts.LOGIN_FAILED, "username": username[:60],
                "next": form_text(form, "next"),
            }  # fmt: skip
            return dash.render(request, "dashboard/login.html", context, status_code=401)
        # A new session (and CSRF token) at sign-in, so a planted cookie is worthless.
        response = RedirectResponse(_safe_next(prefix, form_text(form, "next")), status_code=303)
        dash.codec.store(response, dash.login_session(official))
        dash.devices.store(response, device, login_name(username))
        return response

    @router.post("/logout")
    @dash.view
    async def logout(request: Request) -> Response:
        await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            # Every session of this official ends on the server, copied cookies included.
            actor.official.session_generation += 1
            await audit.record(
                db, now=dash.now(), official=actor.official, via="web", action="official.logout",
                object_type="official", object_id=actor.official.id,
            )  # fmt: skip
        response = dash.redirect("/login", "logged_out")
        dash.codec.store(response, new_session())
        return response

    @router.get("/api/areas")
    @dash.view
    async def area_search(request: Request) -> Response:
        """Provinces and communes matching `q` (diacritics ignored), for the audience picker."""
        query = request.query_params.get("q", "")[:80]
        async with dash.sessions() as db:
            await dash.actor(request, db)
            matches = await areas.search(db, query, limit=20) if query.strip() else []
        return JSONResponse(
            {
                "results": [
                    {"code": m.area.code, "name": m.area.name, "label": m.label} for m in matches
                ]
            }
        )

    bulletin_views.register(router, dash)
    progress.register(router, dash)
    inbox_views.register(router, dash)
    document_views.register(router, dash)
    subscriber_views.register(router, dash)
    poster_views.register(router, dash)
    station_views.register(router, dash)
    admin_views.register(router, dash)
    cap_views.register(router, dash)
    vessel_views.register(router, dash)
    zns_views.register(router, dash)

    @router.get("/{rest:path}")
    @dash.view
    async def not_found(request: Request, rest: str) -> Response:
        raise NotFound

    return router


def make_admin_check(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    prefix: str = "/dashboard",
) -> Callable[[Request], Awaitable[bool]]:
    """Whether a request carries a signed-in administrator's session (the same checks as
    every dashboard page); /healthz shows its details to them."""
    dash = Dashboard(sessions, settings, prefix=prefix, send_reply=None, clock=_utc_now)

    async def is_admin(request: Request) -> bool:
        async with sessions() as db:
            try:
                return (await dash.actor(request, db)).is_admin
            except LoginRequired:
                return False

    return is_admin
