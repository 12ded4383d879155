"""Public CAP 1.2 warnings: one ATOM feed nationally, one per province, and each message."""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import cap, readout
from broadcasts.areas import AreaError, get_by_code
from db.models import Area, AreaKind, BulletinState
from haidang.settings import Settings

ATOM: Final = "http://www.w3.org/2005/Atom"
ATOM_TYPE: Final = "application/atom+xml; charset=utf-8"
CAP_TYPE: Final = cap.MEDIA_TYPE + "; charset=utf-8"
TEXT_TYPE: Final = "text/plain; charset=utf-8"
# A Cancel should reach aggregators within a minute; a message addressed by its type
# (?msg=alert, ?msg=cancel) never changes once issued.
_CACHE_CURRENT: Final = "public, max-age=60"
_CACHE_ISSUED: Final = "public, max-age=86400"

# The feeds' words (Vietnamese, as everything people read).
FEED_AUTHOR: Final = "Hải Đăng"
FEED_TITLE_NATIONAL: Final = "Cảnh báo (CAP) trên cả nước"
FEED_TITLE_PROVINCE: Final = "Cảnh báo (CAP): {province}"
ENTRY_CANCELLED: Final = "Đã hủy: {title}"
NOT_FOUND: Final = "Không tìm thấy cảnh báo."
NOT_A_PROVINCE: Final = "Không tìm thấy tỉnh, thành phố: {code}"


def alert_path(bulletin_id: int, msg_type: cap.MsgType | None = None) -> str:
    """The URL path of a warning's current message, or of one message by its type."""
    path = f"/cap/alerts/{bulletin_id}.xml"
    return path if msg_type is None else f"{path}?msg={msg_type.name}"


def _feed_xml(
    warnings: list[cap.AlertSource],
    *,
    title: str,
    feed_url: str,
    base_url: str,
    now: dt.datetime,
    tz: ZoneInfo,
) -> bytes:
    def text(parent: ET.Element, tag: str, value: str) -> ET.Element:
        element = ET.SubElement(parent, tag)
        element.text = value
        return element

    def link(parent: ET.Element, rel: str, href: str, media_type: str) -> None:
        ET.SubElement(parent, "link", {"rel": rel, "href": href, "type": media_type})

    # Unprefixed names under a declared default namespace: ElementTree's default_namespace
    # refuses the (unqualified) attributes that <link> needs.
    feed = ET.Element("feed", {"xmlns": ATOM})
    text(feed, "id", feed_url)
    text(feed, "title", title)
    stamps = [cap.sent_at(w.bulletin, w.current) for w in warnings]
    # An empty feed is as new as the request: RFC 4287 needs an <updated> all the same.
    text(feed, "updated", cap.cap_time(max(stamps, default=now), tz))
    author = ET.SubElement(feed, "author")
    text(author, "name", FEED_AUTHOR)
    link(feed, "self", feed_url, "application/atom+xml")
    for warning, stamp in zip(warnings, stamps, strict=True):
        bulletin, current = warning.bulletin, warning.current
        url = base_url + alert_path(bulletin.id, current)
        entry = ET.SubElement(feed, "entry")
        text(entry, "id", url)
        headline = bulletin.title
        text(
            entry,
            "title",
            ENTRY_CANCELLED.format(title=headline) if current is cap.MsgType.cancel else headline,
        )
        text(entry, "updated", cap.cap_time(stamp, tz))
        text(entry, "summary", "; ".join(area.description for area in warning.areas))
        link(entry, "alternate", url, cap.MEDIA_TYPE)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body


def _cached(request: Request, body: bytes, media_type: str, cache_control: str) -> Response:
    """The body with an ETag; 304 when the client already has it."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": cache_control, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _not_found(message: str) -> Response:
    return Response(message, status_code=404, media_type="text/plain; charset=utf-8")


def make_router(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> APIRouter:
    """Routes for /cap/national.atom, /cap/p<NN>.atom, /cap/alerts/<bulletin id>.xml and
    its read-out, /cap/alerts/<bulletin id>.txt.

    The feeds list the warnings of the last 30 days not past their expiry (broadcasts.cap.
    recent), each entry linking its current message. Absolute URLs start with
    PUBLIC_BASE_URL when set, else with the request's own base URL; the alerts' <sender>
    is Settings.cap_sender_name and their times are in Settings.tz.
    """
    router = APIRouter(include_in_schema=False)
    public = settings.public_base_url
    base_configured = str(public).rstrip("/") if public else ""
    sender, tz = settings.cap_sender_name, settings.tz

    def base_of(request: Request) -> str:
        return base_configured or str(request.base_url).rstrip("/")

    async def feed(request: Request, province: Area | None, title: str, path: str) -> Response:
        now = clock()
        async with sessions() as session:
            warnings = await cap.recent(session, now=now, province=province)
        base = base_of(request)
        body = _feed_xml(warnings, title=title, feed_url=base + path, base_url=base, now=now, tz=tz)
        return _cached(request, body, ATOM_TYPE, _CACHE_CURRENT)

    @router.get("/cap/national.atom")
    async def national(request: Request) -> Response:
        return await feed(request, None, FEED_TITLE_NATIONAL, "/cap/national.atom")

    @router.get("/cap/{code}.atom")
    async def province_feed(code: str, request: Request) -> Response:
        async with sessions() as session:
            try:
                province = await get_by_code(session, code)
            except AreaError:
                return _not_found(NOT_A_PROVINCE.format(code=code))
        if province.kind is not AreaKind.province:
            return _not_found(NOT_A_PROVINCE.format(code=code))
        title = FEED_TITLE_PROVINCE.format(province=province.name)
        return await feed(request, province, title, f"/cap/{province.code}.atom")

    @router.get("/cap/alerts/{bulletin_id}.xml")
    async def message(bulletin_id: int, request: Request, msg: str | None = None) -> Response:
        async with sessions() as session:
            warning = await cap.load(session, bulletin_id)
        if warning is None:
            return _not_found(NOT_FOUND)
        chosen = warning.current if msg is None else cap.MsgType.__members__.get(msg)
        if chosen is None or chosen not in warning.messages():
            return _not_found(NOT_FOUND)
        body = cap.to_xml(warning, chosen, sender=sender, tz=tz)
        return _cached(request, body, CAP_TYPE, _CACHE_ISSUED if msg else _CACHE_CURRENT)

    @router.get("/cap/alerts/{bulletin_id}.txt")
    async def relay_text(bulletin_id: int, request: Request) -> Response:
        """The read-out of a live urgent warning for radio stations and VMS relays: the
        160-character plain text, a blank line, the text to read aloud. Approved, not
        cancelled and not expired only (404 otherwise)."""
        relay = None
        async with sessions() as session:
            warning = await cap.load(session, bulletin_id)
            if (
                warning is not None
                and warning.current is not cap.MsgType.cancel
                and warning.bulletin.state is not BulletinState.expired
                and not (warning.bulletin.expires_at and warning.bulletin.expires_at <= clock())
            ):
                relay = await readout.for_bulletin(session, warning.bulletin, tz)
        if relay is None:
            return _not_found(NOT_FOUND)
        body = f"{relay.short}\n\n{relay.spoken}\n".encode()
        return _cached(request, body, TEXT_TYPE, _CACHE_CURRENT)

    return router
