"""What every dashboard view shares: the signed-in official, scope filters, rendering, errors."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData

from broadcasts.outbox import OutboxStats
from db.models import Area, AreaKind, Official, OfficialRole, Topic
from haidang.settings import Settings
from web.dashboard import texts
from web.dashboard.auth import (
    COOKIE_NAME,
    CSRF_FIELD,
    DeviceCodec,
    SessionCodec,
    SessionData,
    csrf_matches,
    fingerprint,
    new_session,
)

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Pages render no third-party content; the policy keeps any injected markup inert.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

# Delivers a stored inbox answer in chat: True once sent, False while it waits in the bot's
# queue (it goes out in turn); raises when it cannot be sent.
SendReply = Callable[[int], Awaitable[bool]]
# Each running bot's live queue, by bot id (see broadcasts.outbox.Outbox.stats).
BotQueues = Callable[[], Mapping[int, OutboxStats]]
P = ParamSpec("P")


class DashboardError(Exception):
    """Ends a request with an error page; the message is Vietnamese for the official."""

    status = 400

    def __init__(self, message: str = texts.BAD_REQUEST) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(DashboardError):
    status = 403


class NotFound(DashboardError):
    status = 404

    def __init__(self, message: str = texts.NOT_FOUND) -> None:
        super().__init__(message)


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, JSON answers 401."""


@dataclass
class Actor:
    """The signed-in official, their scope area (None for admins) and their session."""

    official: Official
    scope: Area | None
    session: SessionData

    @property
    def is_admin(self) -> bool:
        return self.official.role is OfficialRole.admin


def _local(value: dt.datetime | None, tz: ZoneInfo, fmt: str = "%d/%m/%Y %H:%M") -> str:
    return "" if value is None else value.astimezone(tz).strftime(fmt)


def _number(value: int | float) -> str:
    # Vietnamese groups thousands with dots: 100.000.
    return f"{value:,.0f}".replace(",", ".")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}".replace(".", ",") + " %"


class Dashboard:
    """Dependencies of the views, built once by make_router."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        prefix: str,
        send_reply: SendReply | None,
        clock: Callable[[], dt.datetime],
        bot_queues: BotQueues | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.prefix = prefix
        self.send_reply = send_reply
        self.bot_queues = bot_queues
        self.clock = clock
        self.tz = settings.tz
        secure = settings.public_base_url is not None and settings.public_base_url.scheme == "https"
        secret = settings.secret_key.get_secret_value()
        self.codec = SessionCodec(secret, secure=secure, path=prefix or "/")
        self.devices = DeviceCodec(secret, secure=secure, path=prefix or "/")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
            autoescape=True,  # every template, .svg included
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["local"] = lambda value, fmt="%d/%m/%Y %H:%M": _local(value, self.tz, fmt)
        env.filters["number"] = _number
        env.filters["percent"] = _percent
        env.globals.update(base=prefix, T=texts, csrf_field=CSRF_FIELD)
        self.templates = Jinja2Templates(env=env)

    def now(self) -> dt.datetime:
        return self.clock()

    # --- sessions ------------------------------------------------------------------------------

    def session_of(self, request: Request) -> SessionData | None:
        return self.codec.decode(request.cookies.get(COOKIE_NAME))

    async def actor(self, request: Request, db: AsyncSession) -> Actor:
        """The signed-in, active official of this request, or LoginRequired."""
        data = self.session_of(request)
        if data is None or data.official_id is None:
            raise LoginRequired
        official = await db.get(Official, data.official_id)
        if official is None or not official.active:
            raise LoginRequired
        if data.fingerprint != fingerprint(self.codec.secret, official):
            raise LoginRequired  # the password changed since this session began
        scope = await db.get(Area, official.area_id) if official.area_id is not None else None
        return Actor(official=official, scope=scope, session=data)

    async def form(self, request: Request) -> FormData:
        """The posted form, after its CSRF token matched the session's (else Forbidden)."""
        form = await request.form()
        if not csrf_matches(self.session_of(request), form.get(CSRF_FIELD)):
            log.warning("dashboard: POST %s refused: CSRF token missing or wrong", request.url.path)
            raise Forbidden(texts.CSRF_FAILED)
        return form

    def login_session(self, official: Official) -> SessionData:
        return new_session(official, secret=self.codec.secret)

    # --- rendering -----------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        actor: Actor | None = None,
        status_code: int = 200,
        session: SessionData | None = None,
    ) -> HTMLResponse:
        """A page; `session` (a new or anonymous session) is stored in the cookie too."""
        data = session or (actor.session if actor else None) or self.session_of(request)
        fresh = data is None
        if data is None:
            data = new_session()
        notice = texts.NOTICES.get(request.query_params.get("ok", ""))
        response = self.templates.TemplateResponse(
            request,
            template,
            {"me": actor, "csrf": data.csrf, "notice": notice, **context},
            status_code=status_code,
        )
        if fresh or session is not None:
            self.codec.store(response, data)
        return response

    def redirect(self, path: str, notice: str | None = None) -> RedirectResponse:
        target = self.prefix + path
        if notice:
            target += ("&" if "?" in target else "?") + "ok=" + quote(notice)
        return RedirectResponse(target, status_code=303)

    def error_page(self, request: Request, error: DashboardError) -> Response:
        if request.url.path.endswith(".json") or request.url.path.startswith(self.prefix + "/api/"):
            return JSONResponse({"error": error.message}, status_code=error.status)
        return self.render(
            request, "dashboard/error.html", {"message": error.message}, status_code=error.status
        )

    # --- the guard around every view -----------------------------------------------------------

    def view(self, endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        """Turns our exceptions into pages and adds the security headers to every answer."""

        @functools.wraps(endpoint)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = kwargs.get("request")
            if not isinstance(request, Request):
                raise TypeError("dashboard views take `request` by keyword")
            try:
                response = await endpoint(*args, **kwargs)
            except LoginRequired:
                if request.method == "GET" and not request.url.path.endswith(
                    (".json", ".csv", ".svg")
                ):
                    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(
                        f"{self.prefix}/login?next={quote(path)}", status_code=303
                    )
                else:
                    response = JSONResponse({"error": "login required"}, status_code=401)
            except DashboardError as error:
                response = self.error_page(request, error)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return guarded


# --- scope ----------------------------------------------------------------------------------------


def scope_condition(actor: Actor, *, reaching: bool = False) -> ColumnElement[bool]:
    """SQL over `Area` true for areas inside the official's scope (admins: every area).

    With `reaching`, a commune scope also matches its province: a province-wide bulletin
    reaches the commune, so its officials may follow it (read-only).
    """
    if actor.is_admin:
        return true()
    scope = actor.scope
    if scope is None:
        return false()
    if scope.kind is AreaKind.province:
        return or_(Area.id == scope.id, Area.province_id == scope.id)
    inside = or_(Area.id == scope.id, Area.parent_id == scope.id)
    if reaching and scope.province_id is not None:
        return or_(inside, Area.id == scope.province_id)
    return inside


def require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden(texts.ADMIN_ONLY)


def parse_local(value: str, tz: ZoneInfo) -> dt.datetime | None:
    """A `datetime-local` field (local time) as an aware datetime; None when empty."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise DashboardError(texts.BAD_DATETIME) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def form_text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


def form_list(form: FormData, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str) and value.strip()]


async def ordered_topics(db: AsyncSession, *, active_only: bool = True) -> list[Topic]:
    """Topics in display order (the editors' pickers offer the active ones)."""
    stmt = select(Topic).order_by(Topic.position, Topic.id)
    if active_only:
        stmt = stmt.where(Topic.active.is_(True))
    return list((await db.scalars(stmt)).all())
