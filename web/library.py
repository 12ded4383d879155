"""Public library pages for kiosks and phones: topics, search, documents, attachment downloads."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio.store import AssetStore, InvalidKeyError
from broadcasts import documents, library
from db.models import Document, DocumentAttachment, Topic
from db.text import fold
from web import library_texts as texts
from web.app import app_version
from web.downloads import stored_file

__all__ = ["PREFIX", "make_router"]

PREFIX: Final = "/library"
PAGE_SIZE: Final = 20
MAX_QUERY: Final = 200
# Read-only pages with no scripts: nothing on them may load or run anything else.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Types a browser shows by itself; everything else is offered as a download.
_INLINE_TYPES: Final = ("application/pdf", "image/", "text/plain")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES = Jinja2Templates(env=_ENV)


def highlighted(snippet: str) -> Markup:
    """A search snippet as HTML: escaped, with the « » marks turned into <mark>."""
    safe = str(escape(snippet))
    safe = safe.replace(library.MARK_OPEN, "<mark>").replace(library.MARK_CLOSE, "</mark>")
    return Markup(safe)  # noqa: S704 - escaped above; only our own marks become tags


def paragraphs(body: str) -> list[str]:
    """The document's text in paragraphs (blank lines part them)."""
    return [part.strip() for part in re.split(r"\n\s*\n", body) if part.strip()]


def content_disposition(name: str, media_type: str) -> str:
    """RFC 6266 header: the UTF-8 name, an ASCII fallback, inline for viewable types."""
    kind = "inline" if media_type.startswith(_INLINE_TYPES) else "attachment"
    fallback = re.sub(r"[^a-z0-9._-]+", "_", fold(name)).strip("_") or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class _Page:
    """What every page's template gets: the language, its strings, and link builders."""

    def __init__(self, request: Request) -> None:
        self.lang = texts.interface_language(request.query_params.get("lang"))
        self.t = texts.UI[self.lang]
        self.path = request.url.path

    def url(self, path: str = "", **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        if self.lang != texts.DEFAULT_LANGUAGE:
            query["lang"] = self.lang
        return PREFIX + path + ("?" + urlencode(query) if query else "")

    def switch(self, request: Request) -> list[tuple[str, str, str, bool]]:
        """(code, name, link, current) for each interface language, on this same page."""
        links = []
        for code, name in texts.LANGUAGE_NAMES.items():
            params = {k: v for k, v in request.query_params.items() if k not in ("lang", "page")}
            if code != texts.DEFAULT_LANGUAGE:
                params["lang"] = code
            link = self.path + ("?" + urlencode(params) if params else "")
            links.append((code, name, link, code == self.lang))
        return links


def make_router(sessions: async_sessionmaker[AsyncSession], store: AssetStore) -> APIRouter:
    """Routes under /library: no login, public documents only, in the interface language.

    `?lang=` picks the interface language (vi, en) and shows only documents in that
    language. Attachments are served from `store` when their document is public.
    """
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    def render(
        request: Request, page: _Page, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        response = TEMPLATES.TemplateResponse(
            request,
            f"library/{template}",
            {
                "p": page,
                "t": page.t,
                "languages": page.switch(request),
                "version": app_version(),
                "topic_name": lambda topic: texts.topic_name(topic.slug, topic.name, page.lang),
                "size": lambda size: texts.file_size(size, page.lang),
                "highlighted": highlighted,
                "query": "",
                **context,
            },
            status_code=status,
        )
        response.headers.update(SECURITY_HEADERS)
        # Kiosks reload often; a minute of caching spares the database without going stale.
        response.headers["Cache-Control"] = "public, max-age=60"
        return response

    def missing(request: Request, page: _Page, message: str) -> HTMLResponse:
        return render(request, page, "missing.html", {"message": message}, status=404)

    async def topic_by_slug(session: AsyncSession, slug: str) -> Topic | None:
        return await session.scalar(
            select(Topic).where(Topic.slug == slug.strip().lower(), Topic.active.is_(True))
        )

    @router.get("", response_class=HTMLResponse)
    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> HTMLResponse:
        page = _Page(request)
        async with sessions() as session:
            topics = await documents.public_topics(session, language=page.lang)
            newest, total = await documents.public_documents(
                session, language=page.lang, limit=PAGE_SIZE // 2
            )
        context = {"topics": topics, "newest": newest, "total": total}
        return render(request, page, "home.html", context)

    @router.get("/search", response_class=HTMLResponse)
    async def search(request: Request) -> HTMLResponse:
        page = _Page(request)
        query = request.query_params.get("q", "").strip()
        slug = request.query_params.get("topic", "").strip()
        error = None
        hits: list[library.Hit] = []
        async with sessions() as session:
            topic = await topic_by_slug(session, slug) if slug else None
            topics = await documents.public_topics(session, language=page.lang)
            if len(query) > MAX_QUERY:
                error = page.t["query_too_long"]
            elif query:
                hits = await library.search(
                    session,
                    query,
                    topic=topic.slug if topic else None,
                    language=page.lang,
                    limit=PAGE_SIZE,
                    public=True,
                )
        context = {
            "query": query[:MAX_QUERY],
            "hits": hits,
            "topic": topic,
            "topics": topics,
            "error": error,
        }
        return render(request, page, "search.html", context)

    @router.get("/topics/{slug}", response_class=HTMLResponse)
    async def topic_page(request: Request, slug: str) -> HTMLResponse:
        page = _Page(request)
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        async with sessions() as session:
            topic = await topic_by_slug(session, slug)
            if topic is None:
                return missing(request, page, page.t["topic_not_found"])
            rows, total = await documents.public_documents(
                session,
                topic_id=topic.id,
                language=page.lang,
                limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
            )
        pages = max(1, math.ceil(total / PAGE_SIZE))
        context = {
            "topic": topic,
            "documents": rows,
            "total": total,
            "page_number": number,
            "pages": pages,
        }
        return render(request, page, "topic.html", context)

    @router.get("/documents/{document_id}", response_class=HTMLResponse)
    async def document_page(request: Request, document_id: int) -> HTMLResponse:
        page = _Page(request)
        async with sessions() as session:
            document = await session.get(Document, document_id)
            if document is None or not document.public:
                return missing(request, page, page.t["not_found"])
            topics = await documents.topics_with_names(session, document.id)
            files = await documents.attachments_of(session, document.id)
            versions = await library.versions(session, document)
        context = {
            "document": document,
            "topics": topics,
            "files": files,
            # The newest *public* version: an internal one is not to be named here.
            "newest": [version for version in versions if version.public][-1],
            "paragraphs": paragraphs(document.body),
        }
        return render(request, page, "document.html", context)

    @router.api_route("/files/{attachment_id}/{name}", methods=["GET", "HEAD"])
    async def download(request: Request, attachment_id: int, name: str) -> Response:
        page = _Page(request)
        async with sessions() as session:
            row = await session.get(DocumentAttachment, attachment_id)
            document = await session.get(Document, row.document_id) if row else None
        if row is None or document is None or not document.public or row.name != name:
            return missing(request, page, page.t["not_found"])
        headers = {
            **SECURITY_HEADERS,
            # The files are content-addressed: the bytes behind this URL never change.
            "Cache-Control": "public, max-age=86400",
            "ETag": f'"{row.sha256}"',
            "Content-Disposition": content_disposition(row.name, row.media_type),
        }
        try:
            path = store.path_for(row.store_key)
            if path is not None:  # a local store: Starlette serves the file, Range included
                if not await asyncio.to_thread(path.is_file):
                    raise FileNotFoundError(row.store_key)
                return FileResponse(path, media_type=row.media_type, headers=headers)
            # An object store: streamed through this app (ranges too) rather than a
            # redirect to a signed URL, so the kiosk needs no route to the storage server
            # and the answer keeps these security headers.
            response = await stored_file(
                request, store, row.store_key, etag=headers.pop("ETag"),
                media_type=row.media_type, headers=headers,
            )  # fmt: skip
        except (FileNotFoundError, InvalidKeyError):
            return missing(request, page, page.t["not_found"])
        return response or missing(request, page, page.t["not_found"])

    return router
