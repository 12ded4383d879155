"""The documents library in the dashboard: list and search, upload with metadata and
attachments, a document's versions and files, and uploading a new version."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from broadcasts import documents, library
from db.models import Document, DocumentAttachment, OfficialRole
from haidang.stores import document_store
from web.dashboard import texts
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_list,
    form_text,
    ordered_topics,
)
from web.downloads import stored_file
from web.library import content_disposition

PAGE_SIZE = 50
_CHUNK = 256 * 1024
# Documents are not tied to an area: the library is shared by every commune, the public
# kiosk pages and chat search, so putting a text into it is a province-level editorial act.
UPLOAD_ROLES = frozenset((OfficialRole.admin, OfficialRole.province_editor))
# The metadata fields of the upload form, as documents.with_metadata names them.
FIELDS = ("title", "number", "issuer", "issued_on", "language", "summary", "source_url")


def may_upload(actor: Actor) -> bool:
    return actor.official.role in UPLOAD_ROLES


def _require_uploader(actor: Actor) -> None:
    if not may_upload(actor):
        raise Forbidden(texts.DOCUMENT_UPLOAD_ROLES_ONLY)


async def _read(upload: UploadFile, limit: int) -> bytes:
    # Chunks, stopping past the limit: a huge upload never sits in memory whole.
    data = bytearray()
    while chunk := await upload.read(_CHUNK):
        data += chunk
        if len(data) > limit:
            break
    return bytes(data)


def _uploads(form: FormData, name: str) -> list[UploadFile]:
    return [
        value for value in form.getlist(name) if isinstance(value, UploadFile) and value.filename
    ]


async def _parse_form(
    form: FormData, *, number_required: bool
) -> tuple[documents.ParsedDocument, list[documents.AttachmentFile], bool]:
    """The uploaded document with the typed metadata, the attachments, and `public`;
    DocumentError (English, for texts.explain_document) on any problem."""
    files = _uploads(form, "file")
    if not files:
        raise DashboardError(texts.DOCUMENT_FILE_MISSING)
    upload = files[0]
    # One byte over the limit is enough for extract_text to say the file is too large.
    data = await _read(upload, documents.MAX_FILE_BYTES + 1)
    parsed = documents.load_bytes(data, upload.filename or "")
    values = {name: form_text(form, name) for name in FIELDS}
    parsed = documents.with_metadata(parsed, topics=form_list(form, "topics"), **values)
    if number_required and not parsed.number:
        raise DashboardError(texts.DOCUMENT_VERSION_NEEDS_NUMBER)
    attachments = []
    for extra in _uploads(form, "attachments"):
        content = await _read(extra, documents.MAX_ATTACHMENT_BYTES + 1)
        attachments.append(documents.attachment_file(extra.filename or "", content))
    return parsed, attachments, form_text(form, "public") == "1"


async def _document(db: AsyncSession, document_id: int) -> Document:
    document = await db.get(Document, document_id)
    if document is None:
        raise NotFound
    return document


def _explain(error: Exception) -> str:
    if isinstance(error, DashboardError):
        return error.message
    return texts.explain_document(error)


def _notice(imported: documents.Imported) -> str:
    if imported.unchanged:
        return "document_unchanged"
    return "document_version" if imported.version > 1 else "document_imported"


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the documents library routes to the dashboard router."""
    store = document_store(dash.settings)

    async def form_page(
        request: Request,
        actor: Actor,
        db: AsyncSession,
        *,
        values: dict[str, Any],
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        context = {
            "values": values,
            "error": error,
            "topics": await ordered_topics(db),
            "languages": texts.DOCUMENT_LANGUAGES,
            "max_attachments": documents.MAX_ATTACHMENTS,
        }
        return dash.render(
            request, "dashboard/document_new.html", context, actor=actor, status_code=status_code
        )

    async def import_form(
        request: Request, form: FormData, *, replaces_id: int | None, number_required: bool = False
    ) -> tuple[int, str]:
        """Import the posted file in one transaction: (the new document's id, the notice)."""
        parsed, attachments, public = await _parse_form(form, number_required=number_required)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            _require_uploader(actor)
            replaces = await _document(db, replaces_id) if replaces_id is not None else None
            imported = await documents.add(
                db, parsed, now=dash.now(), official=actor.official, via="web",
                attachments=attachments, store=store, public=public, replaces=replaces,
            )  # fmt: skip
            return imported.document.id, _notice(imported)

    async def detail_page(
        request: Request,
        actor: Actor,
        db: AsyncSession,
        document_id: int,
        *,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        document = await _document(db, document_id)
        context = {
            "document": document,
            "versions": await library.versions(db, document),
            "topics": await documents.topics_with_names(db, document.id),
            "files": await documents.attachments_of(db, document.id),
            "all_topics": await ordered_topics(db),
            "may_upload": may_upload(actor),
            "error": error,
            "languages": texts.DOCUMENT_LANGUAGES,
            "max_attachments": documents.MAX_ATTACHMENTS,
        }
        return dash.render(
            request, "dashboard/document_detail.html", context, actor=actor,
            status_code=status_code,
        )  # fmt: skip

    def typed(form: FormData | None) -> dict[str, Any]:
        values: dict[str, Any] = {name: "" for name in FIELDS}
        values.update(language="", topics=[], public=True)
        if form is not None:
            values.update({name: form_text(form, name)[:2000] for name in FIELDS})
            values["topics"] = form_list(form, "topics")
            values["public"] = form_text(form, "public") == "1"
        return values

    @router.get("/documents")
    @dash.view
    async def document_list(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()[:200]
        try:
            page = max(int(request.query_params.get("page", "1")), 1)
        except ValueError:
            page = 1
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            hits: list[library.Hit] = []
            rows: list[Document] = []
            if query:
                hits = await library.search(db, query, limit=50)
            else:
                rows = await library.browse(db, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
            shown_ids = [hit.document_id for hit in hits] + [doc.id for doc in rows]
            internal = set(
                await db.scalars(
                    select(Document.id).where(
                        Document.id.in_(shown_ids), Document.public.is_(False)
                    )
                )
            )
            counted = await db.execute(
                select(DocumentAttachment.document_id, func.count())
                .where(DocumentAttachment.document_id.in_(shown_ids))
                .group_by(DocumentAttachment.document_id)
            )
            counts = {document_id: int(n) for document_id, n in counted.all()}
        context = {
            "query": query,
            "hits": hits,
            "rows": rows[:PAGE_SIZE],
            "more": len(rows) > PAGE_SIZE,
            "page": page,
            "internal": internal,
            "files": counts,
            "may_upload": may_upload(actor),
        }
        return dash.render(request, "dashboard/documents.html", context, actor=actor)

    @router.get("/documents/new")
    @dash.view
    async def document_new(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            _require_uploader(actor)
            return await form_page(request, actor, db, values=typed(None))

    @router.post("/documents")
    @dash.view
    async def document_create(request: Request) -> Response:
        form = await dash.form(request)
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            _require_uploader(actor)
        try:
            document_id, notice = await import_form(request, form, replaces_id=None)
        except (documents.DocumentError, DashboardError) as error:
            async with dash.sessions() as db:
                actor = await dash.actor(request, db)
                return await form_page(
                    request, actor, db, values=typed(form), error=_explain(error), status_code=400
                )
        return dash.redirect(f"/documents/{document_id}", notice)

    @router.get("/documents/{document_id}")
    @dash.view
    async def document_detail(request: Request, document_id: int) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            return await detail_page(request, actor, db, document_id)

    @router.post("/documents/{document_id}/versions")
    @dash.view
    async def document_version(request: Request, document_id: int) -> Response:
        form = await dash.form(request)
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            _require_uploader(actor)
            previous = await _document(db, document_id)
            needs_number = previous.number is None
        try:
            new_id, notice = await import_form(
                request, form, replaces_id=document_id, number_required=needs_number
            )
        except (documents.DocumentError, DashboardError) as error:
            async with dash.sessions() as db:
                actor = await dash.actor(request, db)
                return await detail_page(
                    request, actor, db, document_id, error=_explain(error), status_code=400
                )
        return dash.redirect(f"/documents/{new_id}", notice)

    @router.get("/documents/{document_id}/files/{attachment_id}")
    @dash.view
    async def document_file(request: Request, document_id: int, attachment_id: int) -> Response:
        async with dash.sessions() as db:
            await dash.actor(request, db)
            row = await db.get(DocumentAttachment, attachment_id)
        if row is None or row.document_id != document_id:
            raise NotFound
        headers = {"Content-Disposition": content_disposition(row.name, row.media_type)}
        path = store.path_for(row.store_key)
        if path is not None:  # a local store
            if not await asyncio.to_thread(path.is_file):
                raise NotFound
            return FileResponse(path, media_type=row.media_type, headers=headers)
        # An object store: streamed through the dashboard (Range too), behind the session.
        response = await stored_file(
            request, store, row.store_key, etag=f'"{row.sha256}"',
            media_type=row.media_type, headers=headers,
        )  # fmt: skip
        if response is None:
            raise NotFound
        return response
