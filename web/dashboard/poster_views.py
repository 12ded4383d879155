"""QR poster pages: pick a commune in scope, see its poster, download it as PNG or PDF."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from broadcasts import areas, bots
from db.models import Area, AreaKind, Platform
from web.dashboard import posters, texts
from web.dashboard.cache import TtlCache
from web.dashboard.common import Actor, Dashboard, DashboardError, NotFound, scope_condition

SEARCH_LIMIT = 30
CACHE_SIZE = 64  # rendered posters kept in memory: a poster changes only with the bot
FORMATS: dict[str, tuple[str, Callable[[posters.Poster], bytes]]] = {
    "png": ("image/png", posters.png_bytes),
    "pdf": ("application/pdf", posters.pdf_bytes),
}


async def _poster_for(
    db: AsyncSession, actor: Actor, code: str, zalo: str | None
) -> posters.Poster:
    """The poster of a commune inside the official's scope (else NotFound, as if absent).

    `zalo` is ZALO_BOT_LINK: the first Zalo bot's link when its row has none."""
    try:
        code = areas.canonical_code(code)
    except areas.AreaError:
        raise NotFound from None
    province = aliased(Area)
    row = (
        await db.execute(
            select(Area, province.name)
            .outerjoin(province, province.id == Area.province_id)
            .where(Area.code == code, scope_condition(actor))
        )
    ).first()
    if row is None:
        raise NotFound
    area, province_name = row
    if area.kind is not AreaKind.commune:
        raise DashboardError(texts.POSTER_NOT_COMMUNE)
    # Each province's communes point at the bot serving it (else the deployment's first).
    province_id = area.province_id if area.province_id is not None else area.id
    telegram_bot = await bots.poster_bot(db, Platform.telegram, province_id)
    telegram = (
        posters.deep_link(telegram_bot.username, area.code)
        if telegram_bot is not None and telegram_bot.username
        else None
    )
    zalo_bot = await bots.poster_bot(db, Platform.zalo, province_id)
    if zalo_bot is not None and zalo_bot.link:
        zalo = zalo_bot.link
    elif zalo_bot is not None and not bots.is_first(zalo_bot):
        zalo = None  # that province's own bot has no link yet: not the other bot's
    if telegram is None and zalo is None:
        raise DashboardError(texts.POSTER_NO_BOT)
    return posters.Poster(area.name, province_name or "", area.code, telegram, zalo)


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the poster routes to the dashboard router."""
    zalo = str(dash.settings.zalo_bot_link) if dash.settings.zalo_bot_link else None
    # A poster changes only with the bot; concurrent requests for one share one drawing.
    rendered: TtlCache[bytes] = TtlCache(math.inf, max_entries=CACHE_SIZE)

    async def render(poster: posters.Poster, fmt: str) -> bytes:
        # A few hundred milliseconds of drawing: off the event loop.
        draw = FORMATS[fmt][1]
        return (await rendered.get((poster, fmt), lambda: asyncio.to_thread(draw, poster))).value

    @router.get("/posters")
    @dash.view
    async def poster_search(request: Request) -> Response:
        query = request.query_params.get("q", "")[:80].strip()
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            found = []
            if query:
                matches = await areas.search(db, query, kinds=(AreaKind.commune,), limit=200)
                allowed = set(
                    (
                        await db.scalars(
                            select(Area.id).where(
                                Area.id.in_([m.area.id for m in matches]), scope_condition(actor)
                            )
                        )
                    ).all()
                )
                found = [m for m in matches if m.area.id in allowed][:SEARCH_LIMIT]
        return dash.render(
            request, "dashboard/posters.html", {"query": query, "found": found}, actor=actor
        )

    async def download(request: Request, code: str, fmt: str) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            poster = await _poster_for(db, actor, code, zalo)
        media_type = FORMATS[fmt][0]
        inline = request.query_params.get("view") == "1"
        disposition = "inline" if inline else "attachment"
        return Response(
            await render(poster, fmt),
            media_type=media_type,
            headers={
                "Content-Disposition": f'{disposition}; filename="ap-phich-{poster.code}.{fmt}"',
                "Cache-Control": "private, max-age=300",
            },
        )

    @router.get("/posters/{code}.png")
    @dash.view
    async def poster_png(request: Request, code: str) -> Response:
        return await download(request, code, "png")

    @router.get("/posters/{code}.pdf")
    @dash.view
    async def poster_pdf(request: Request, code: str) -> Response:
        return await download(request, code, "pdf")

    # After the two downloads: /posters/{code} would otherwise take "11914.png" too.
    @router.get("/posters/{code}")
    @dash.view
    async def poster_page(request: Request, code: str) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            poster = await _poster_for(db, actor, code, zalo)
        return dash.render(request, "dashboard/poster.html", {"poster": poster}, actor=actor)
