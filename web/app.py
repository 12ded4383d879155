"""The ASGI app: landing page and /healthz; later the dashboard, audio pages and webhooks."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcasts.parts import PartStatus

log = logging.getLogger(__name__)
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
DB_CHECK_TIMEOUT_S = 2.0


def app_version() -> str:
    try:
        return version("haidang")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


# A chat front end's webhook: the request, and the bot id when the path carries one.
Webhook = Callable[..., Awaitable[Response]]
# Whether a request may see /healthz's details (e.g. a signed-in administrator).
DetailsCheck = Callable[[Request], Awaitable[bool]]
# The health answer is also served here, under the dashboard's cookie path, so a signed-in
# administrator's browser sends its session along and sees the details.
ADMIN_HEALTH_PATH = "/dashboard/healthz"


def from_loopback(request: Request) -> bool:
    """Whether the client is this machine (uvicorn has already applied X-Forwarded-For
    from a proxy on 127.0.0.1, so a proxied visitor is not "this machine")."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _nobody(request: Request) -> bool:
    return False


def free_bytes(path: Path) -> int | None:
    """Free space on the filesystem of `path` (its nearest existing parent); None if unknown."""
    for candidate in (path, *path.resolve().parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def create_app(
    *,
    engine: AsyncEngine,
    parts: Callable[[], Mapping[str, PartStatus]],
    ready: Callable[[], bool] | None = None,
    webhooks: Mapping[str, Webhook] | None = None,
    routers: Sequence[APIRouter] = (),
    data_dir: Path | None = None,
    min_free_bytes: int = 0,
    may_see_details: DetailsCheck = _nobody,
) -> FastAPI:
    """Build the web app; `parts` reports the live status of bots, engines and workers.

    `webhooks` maps a path to the handler a chat front end provides (bot/ owns them);
    `routers` are further pages, e.g. web.audio.make_router's public audio pages.
    /healthz checks the database and the free space in `data_dir`; anyone sees its status,
    only this machine and whom `may_see_details` admits see versions, bots and parts.
    /readyz answers 200 while `ready()` (this process's roles are up) and the database
    answers, else 503: for a load balancer or an orchestrator's readiness probe.
    """
    app = FastAPI(title="Hải Đăng", version=app_version(), docs_url=None, redoc_url=None)
    for path, handler in (webhooks or {}).items():
        app.add_api_route(path, handler, methods=["POST"], include_in_schema=False)

    async def database_reachable() -> tuple[bool, str]:
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not reachable" to a health probe
            log.warning("health check: database not reachable: %s", type(exc).__name__)
            return False, type(exc).__name__
        return True, "ok"

    disk_was_ok = [True]

    def disk_report() -> dict[str, Any] | None:
        if data_dir is None:
            return None
        free = free_bytes(data_dir)
        ok = free is None or free >= min_free_bytes
        if ok != disk_was_ok[0]:  # logged once per change, not at every probe
            disk_was_ok[0] = ok
            if ok:
                log.info("health check: DATA_DIR has room again (%s bytes free)", free)
            else:
                log.warning("health check: DATA_DIR has only %s bytes free", free)
        return {"free_bytes": free, "min_free_bytes": min_free_bytes, "ok": ok}

    async def healthz(request: Request) -> JSONResponse:
        reachable, detail = await database_reachable()
        disk = disk_report()
        statuses = parts()
        # 503: this instance cannot do its work (no database, or no room to write);
        # "degraded" with 200: it serves, but a part is retrying (say, a blocked platform).
        if not reachable:
            status, code = "error", 503
        elif disk is not None and not disk["ok"]:
            status, code = "degraded", 503
        elif any(part.retrying for part in statuses.values()):
            status, code = "degraded", 200
        else:
            status, code = "ok", 200
        headers = {"Cache-Control": "no-store"}
        # Versions, bot names, addresses and lease holders help an attacker more than a
        # load balancer, which needs only the status and the code.
        if not (from_loopback(request) or await may_see_details(request)):
            return JSONResponse({"status": status}, status_code=code, headers=headers)
        body: dict[str, Any] = {
            "status": status,
            "version": app_version(),
            "database": {
                "reachable": reachable,
                "dialect": engine.dialect.name,
                "detail": detail,
            },
            "parts": {
                name: {"active": part.active, "detail": part.detail, "retrying": part.retrying}
                for name, part in statuses.items()
            },
        }
        if disk is not None:
            body["disk"] = disk
        return JSONResponse(body, status_code=code, headers=headers)

    async def readyz(request: Request) -> JSONResponse:
        is_ready = ready() if ready is not None else True
        if is_ready:
            is_ready, _ = await database_reachable()
        return JSONResponse(
            {"status": "ready" if is_ready else "not ready"},
            status_code=200 if is_ready else 503,
            headers={"Cache-Control": "no-store"},
        )

    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    # Before the routers: the dashboard's router must not claim ADMIN_HEALTH_PATH.
    for path in ("/healthz", ADMIN_HEALTH_PATH):
        app.add_api_route(path, healthz, methods=["GET"], include_in_schema=False)
    for router in routers:
        app.include_router(router)

    @app.get("/", response_class=HTMLResponse)
    async def landing(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "index.html", {"version": app_version(), "parts": parts()}
        )

    return app
