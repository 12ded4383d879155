"""Public audio for radio operators: a commune's page, its podcast feed, and file downloads."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import io
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
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

__all__ = ["Unsatisfiable", "make_router", "parse_range"]

log = logging.getLogger(__name__)

ITUNES: Final = "http://www.itunes.com/dtds/podcast-1.0.dtd"
ATOM: Final = "http://www.w3.org/2005/Atom"
ET.register_namespace("itunes", ITUNES)
ET.register_namespace("atom", ATOM)
_CHUNK: Final = 64 * 1024
# Keys are content-addressed, but a forced re-render rewrites a key: cache for an hour,
# revalidate by ETag after.
_CACHE_CONTROL: Final = "public, max-age=3600"
_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
DEFAULT_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")


class Unsatisfiable(Exception):
    """A Range header none of whose bytes exist (answered 416)."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions of a single-range ``Range`` header, inclusive.

    None means "serve the whole file": a malformed header, another unit, or several
    ranges (RFC 9110 lets a server ignore Range). Raises Unsatisfiable when the range
    starts at or past the end, or asks for an empty suffix.
    """
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # "bytes=-N": the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size - 1)


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


def _stream(fh: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``start`` (run in a worker thread by Starlette)."""
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


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
        try:
            fh = await asyncio.to_thread(store.open, key)
        except FileNotFoundError:
            log.warning("asset %d is recorded but its file %s is missing", asset.id, key)
            return Response(audio_texts.FILE_NOT_FOUND, status_code=404, media_type="text/plain")
        # The size of the file actually opened (the key may be rewritten meanwhile).
        size = await asyncio.to_thread(fh.seek, 0, io.SEEK_END)
        etag = f'"{asset.sha256}"'
        headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": _CACHE_CONTROL}
        media_type = MIME_TYPES.get(asset.format, "application/octet-stream")
        if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
            fh.close()
            return Response(status_code=304, headers=headers)
        status, start, end = 200, 0, size - 1
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        # If-Range with another validator: the client's copy is stale, send everything.
        if range_header and (if_range is None or if_range.strip() == etag):
            try:
                wanted = parse_range(range_header, size)
            except Unsatisfiable:
                fh.close()
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
                )
            if wanted is not None:
                status, (start, end) = 206, wanted
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            fh.close()
            return Response(status_code=status, headers=headers, media_type=media_type)
        return StreamingResponse(
            _stream(fh, start, length), status_code=status, headers=headers, media_type=media_type
        )

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
