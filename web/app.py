"""The ASGI app: landing page and /healthz; later the dashboard, audio pages and webhooks."""

from __future__ import annotations

import asyncio
import logging
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


Webhook = Callable[[Request], Awaitable[Response]]


def create_app(
    *,
    engine: AsyncEngine,
    parts: Callable[[], Mapping[str, PartStatus]],
    webhooks: Mapping[str, Webhook] | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """Build the web app; `parts` reports the live status of bots, engines and workers.

    `webhooks` maps a path to the handler a chat front end provides (bot/ owns them);
    `routers` are further pages, e.g. web.audio.make_router's public audio pages.
    """
    app = FastAPI(title="Hải Đăng", version=app_version(), docs_url=None, redoc_url=None)
    for path, handler in (webhooks or {}).items():
        app.add_api_route(path, handler, methods=["POST"], include_in_schema=False)
    for router in routers:
        app.include_router(router)

    async def database_reachable() -> tuple[bool, str]:
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not reachable" to a health probe
            log.warning("health check: database not reachable: %s", type(exc).__name__)
            return False, type(exc).__name__
        return True, "ok"

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        reachable, detail = await database_reachable()
        body: dict[str, Any] = {
            "status": "ok" if reachable else "error",
            "version": app_version(),
            "database": {
                "reachable": reachable,
                "dialect": engine.dialect.name,
                "detail": detail,
            },
            "parts": {
                name: {"active": status.active, "detail": status.detail}
                for name, status in parts().items()
            },
        }
        return JSONResponse(body, status_code=200 if reachable else 503)

    @app.get("/", response_class=HTMLResponse)
    async def landing(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "index.html", {"version": app_version(), "parts": parts()}
        )

    return app
