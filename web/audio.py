"""Public audio for radio operators: a commune's page, its podcast feed, and file downloads."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import texts as audio_texts
from audio.programmes import (
    ProgrammeError,
    commune_by_code,
    daily_programmes,
    published_bulletins,
)
from audio.store import AssetStore, InvalidKeyError, check_key
from audio.studio import FILES_PATH, MIME_TYPES
from db.models import Area, AudioAsset
from web.app import TEMPLATES, app_version
from web.downloads import Unsatisfiable, parse_range, stored_file

__all__ = ["Unsatisfiable", "make_router", "parse_range"]

log = logging.getLogger(__name__)

ITUNES: Final = "http://www.itunes.com/dtds/podcast-1.0.dtd"
ATOM: Final = "http://www.w3.org/2005/Atom"
ET.register_namespace("itunes", ITUNES)
ET.register_namespace("atom", ATOM)
# Keys are content-addressed, but a forced re-render rewrites a key: cache for an hour,
# revalidate by ETag after.
_CACHE_CONTROL: Final = "public, max-age=3600"
DEFAULT_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class _Item:
    """One playable entry on the page and in the feed."""

    title: str
    description: str
    published: dt.datetime
    asset: AudioAsset
    downloads: list[tuple[str, AudioAsset]]  # (label, asset) per format

    @property
    def guid(self) -> str:
        return self.asset.sha256


def _duration_words(seconds: float) -> str:
    total = round(seconds)
    minutes, secs = divmod(total, 60)
    if minutes:
        return audio_texts.DURATION_MINUTES.format(minutes=minutes, seconds=secs)
    return audio_texts.DURATION_SECONDS.format(seconds=secs)


def _itunes_duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


_DOWNLOAD_LABELS: Final = {"mp3": "MP3", "aac": "AAC", "ogg": "OGG/Opus"}


async def _items(
    session: AsyncSession, commune: Area, limit: int
) -> tuple[list[_Item], list[_Item]]:
    bulletins = []
    for published in await published_bulletins(session, commune, limit=limit):
        mp3 = published.assets.get("mp3")
        if mp3 is None:
            continue
        downloads = [
            (_DOWNLOAD_LABELS[fmt], published.assets[fmt])
            for fmt in _DOWNLOAD_LABELS
            if fmt in published.assets
        ]
        bulletins.append(
            _Item(
                title=published.bulletin.title,
                description=published.bulletin.body,
                published=published.first_sent_at,
                asset=mp3,
                downloads=downloads,
            )
        )
    programmes = []
    for day, asset in await daily_programmes(session, commune):
        title = audio_texts.PROGRAMME_TITLE.format(date=audio_texts.written_date(day))
        programmes.append(
            _Item(
                title=title,
                description=audio_texts.PROGRAMME_DESCRIPTION.format(
                    title=title, commune=commune.name
                ),
                published=asset.created_at,
                asset=asset,
                downloads=[("MP3", asset)],
            )
        )
    return bulletins, programmes


def _feed_xml(
    commune: Area,
    province: Area | None,
    items: list[_Item],
    *,
    base_url: str,
    page_url: str,
    feed_url: str,
) -> bytes:
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    place = commune.name + (f", {province.name}" if province else "")

    def text(parent: ET.Element, tag: str, value: str, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, tag, attrs)
        element.text = value
        return element

    text(channel, "title", audio_texts.FEED_TITLE.format(commune=commune.name))
    text(channel, "link", page_url)
    text(channel, "description", audio_texts.FEED_DESCRIPTION.format(place=place))
    text(channel, "language", "vi")
    ET.SubElement(
        channel,
        f"{{{ATOM}}}link",
        {"href": feed_url, "rel": "self", "type": "application/rss+xml"},
    )
    text(channel, f"{{{ITUNES}}}author", audio_texts.SERVICE_NAME)
    ET.SubElement(channel, f"{{{ITUNES}}}category", {"text": "Government"})
    text(channel, f"{{{ITUNES}}}explicit", "false")
    if items:
        newest = max(item.published for item in items)
        text(channel, "lastBuildDate", email.utils.format_datetime(newest, usegmt=True))
    for item in items:
        entry = ET.SubElement(channel, "item")
        text(entry, "title", item.title)
        text(entry, "description", item.description)
        text(entry, "link", page_url)
        text(entry, "guid", item.guid, isPermaLink="false")
        text(entry, "pubDate", email.utils.format_datetime(item.published, usegmt=True))
        ET.SubElement(
            entry,
            "enclosure",
            {
                "url": base_url + FILES_PATH + item.asset.store_key,
                "length": str(item.asset.size_bytes),
                "type": MIME_TYPES[item.asset.format],
            },
        )
        text(entry, f"{{{ITUNES}}}duration", _itunes_duration(item.asset.duration_seconds))
    body: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return body


def make_router(
    sessions: async_sessionmaker[AsyncSession],
    store: AssetStore,
    public_base_url: str | None,
    *,
    tz: ZoneInfo = DEFAULT_TZ,
    limit: int = 30,
) -> APIRouter:
    """Routes for /audio/<commune code>, its feed.xml, and /audio/files/<store key>.

    Absolute URLs (the feed's enclosures) start with ``public_base_url`` when given,
    else with the request's own base URL. Only files recorded as AudioAsset rows are
    served. Pages list the newest ``limit`` bulletins and two weeks of programmes.
    """
    router = APIRouter(include_in_schema=False)
    base_configured = str(public_base_url).strip().rstrip("/") if public_base_url else ""

    def base_of(request: Request) -> str:
        return base_configured or str(request.base_url).rstrip("/")

    def not_found(request: Request, code: str) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            "audio/not_found.html",
            {"version": app_version(), "code": code},
            status_code=404,
        )

    async def load(code: str) -> tuple[Area, Area | None, list[_Item], list[_Item]] | None:
        async with sessions() as session:
            try:
                commune = await commune_by_code(session, code)
            except ProgrammeError:
                return None
            province = await session.get(Area, commune.province_id) if commune.province_id else None
            bulletins, programmes = await _items(session, commune, limit)
        return commune, province, bulletins, programmes

    @router.api_route(FILES_PATH + "{key:path}", methods=["GET", "HEAD"])
    async def download(key: str, request: Request) -> Response:
        try:
            check_key(key)
        except InvalidKeyError:
            return Response(audio_texts.FILE_NOT_FOUND, status_code=404, media_type="text/plain")
        async with sessions() as session:
            asset = await session.scalar(
                select(AudioAsset)
                .where(AudioAsset.store_key == key)
                .order_by(AudioAsset.id.desc())
                .limit(1)
            )
        if asset is None:
            return Response(audio_texts.FILE_NOT_FOUND, status_code=404, media_type="text/plain")
        response = await stored_file(
            request, store, key, etag=f'"{asset.sha256}"',
            media_type=MIME_TYPES.get(asset.format, "application/octet-stream"),
            headers={"Cache-Control": _CACHE_CONTROL},
        )  # fmt: skip
        if response is None:
            log.warning("asset %d is recorded but its file %s is missing", asset.id, key)
            return Response(audio_texts.FILE_NOT_FOUND, status_code=404, media_type="text/plain")
        return response

    @router.get("/audio/{code}/feed.xml")
    async def feed(code: str, request: Request) -> Response:
        loaded = await load(code)
        if loaded is None:
            return not_found(request, code)
        commune, province, bulletins, programmes = loaded
        items = sorted(bulletins + programmes, key=lambda item: item.published, reverse=True)
        base = base_of(request)
        body = _feed_xml(
            commune,
            province,
            items,
            base_url=base,
            page_url=f"{base}/audio/{commune.code}",
            feed_url=f"{base}/audio/{commune.code}/feed.xml",
        )
        return Response(body, media_type="application/rss+xml; charset=utf-8")

    @router.get("/audio/{code}", response_class=HTMLResponse)
    async def page(code: str, request: Request) -> HTMLResponse:
        loaded = await load(code)
        if loaded is None:
            return not_found(request, code)
        commune, province, bulletins, programmes = loaded
        return TEMPLATES.TemplateResponse(
            request,
            "audio/commune.html",
            {
                "version": app_version(),
                "commune": commune,
                "province": province,
                "bulletins": bulletins,
                "programmes": programmes,
                "files_path": FILES_PATH,
                "feed_url": f"{base_of(request)}/audio/{commune.code}/feed.xml",
                "local": lambda stamp: stamp.astimezone(tz).strftime("%H:%M, %d/%m/%Y"),
                "duration": _duration_words,
            },
        )

    return router
