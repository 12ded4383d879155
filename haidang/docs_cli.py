"""`haidang docs`: import official documents into the library, search it, list it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import documents, library
from db.models import Document
from haidang.cli_support import fail as _fail
from haidang.cli_support import now as _now
from haidang.cli_support import run as run_committed
from haidang.settings import Settings
from haidang.stores import document_store

docs_app = typer.Typer(
    help="The documents library: import (txt, md, pdf, docx), search, list.",
    no_args_is_help=True,
)

T = TypeVar("T")

TopicOption = Annotated[
    str | None, typer.Option("--topic", metavar="SLUG", help="A topic slug, e.g. iuu.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _run(ctx: typer.Context, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings: Settings = ctx.obj
    return run_committed(settings, work)


@docs_app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH...", help="Files: .txt, .md, .pdf, .docx.")
    ],
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", metavar="SLUG", help="Add the documents to a topic; repeatable."),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(help="Language code for all files (default: the file's, else vi)."),
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            "--attach",
            metavar="FILE",
            help="Attach a file (an annex, an image, the signed PDF) to the one document "
            "imported; repeatable.",
        ),
    ] = None,
    public: Annotated[
        bool | None,
        typer.Option(
            "--public/--internal",
            help="Show the documents on the public library pages, or keep them for officials "
            "(default: public; a new version keeps the previous one's choice).",
        ),
    ] = None,
) -> None:
    """Import documents in one transaction: every file goes in, or none does.

    Metadata comes from a front-matter block (title, number, issuer, date, language,
    summary, source, topics) or from the document's heading. A file whose number is
    already in the library becomes that document's new version. Each imported file is
    also kept as an attachment (the original for download), with any --attach files.
    """
    store = document_store(ctx.obj)

    async def work(session: AsyncSession) -> list[documents.Imported]:
        return await documents.import_files(
            session,
            paths,
            now=_now(),
            topics=topic or [],
            language=language,
            attach=attach or [],
            store=store,
            public=public,
        )

    for one in _run(ctx, work):
        document = one.document
        if one.unchanged:
            state = "unchanged"
        elif one.version > 1:
            state = f"version {one.version}, replaces #{one.replaced_id}"
        else:
            state = "new"
        number = f" {document.number}" if document.number else ""
        typer.echo(f"#{document.id}{number}  {document.title}  ({one.source}: {state})")
        for row in one.attachments:
            kind = "original" if row.is_source else "attachment"
            typer.echo(f"    {kind}: {row.name}  {row.media_type}  {row.size_bytes} bytes")


@docs_app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Words or a number: "luat thuy san", "1191".')],
    topic: TopicOption = None,
    language: Annotated[str | None, typer.Option(help="Only this language, e.g. vi.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Ranked search that ignores case and diacritics; a number finds that document first."""

    async def work(session: AsyncSession) -> list[library.Hit]:
        return await library.search(session, query, topic=topic, language=language, limit=limit)

    hits = _run(ctx, work)
    if as_json:
        typer.echo(json.dumps([_hit_json(hit) for hit in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        raise _fail(f"no document matches {query!r}")
    for hit in hits:
        number = f" {hit.number}" if hit.number else ""
        typer.echo(f"#{hit.document_id}{number}  {hit.title}")
        typer.echo(f"    {hit.snippet}")


def _hit_json(hit: library.Hit) -> dict[str, Any]:
    return {
        "id": hit.document_id,
        "title": hit.title,
        "number": hit.number,
        "issuer": hit.issuer,
        "issued_on": hit.issued_on.isoformat() if hit.issued_on else None,
        "language": hit.language,
        "snippet": hit.snippet,
        "score": hit.score,
    }


@docs_app.command("list")
def list_(
    ctx: typer.Context,
    topic: TopicOption = None,
    language: Annotated[str | None, typer.Option(help="Only this language, e.g. vi.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List the current version of each document, newest issue date first."""

    async def work(session: AsyncSession) -> list[tuple[Document, list[str]]]:
        rows = await library.browse(session, topic, language=language, limit=limit)
        return [(doc, await library.topics_of(session, doc.id)) for doc in rows]

    rows = _run(ctx, work)
    if as_json:
        payload = [
            {
                "id": doc.id,
                "title": doc.title,
                "number": doc.number,
                "issuer": doc.issuer,
                "issued_on": doc.issued_on.isoformat() if doc.issued_on else None,
                "language": doc.language,
                "public": doc.public,
                "topics": topics,
            }
            for doc, topics in rows
        ]
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    for doc, topics in rows:
        date = doc.issued_on.isoformat() if doc.issued_on else "–"
        number = doc.number or "–"
        internal = "" if doc.public else "  (internal)"
        typer.echo(
            f"#{doc.id:<5} {date:10}  {number:22}  {doc.title}  [{', '.join(topics)}]{internal}"
        )
