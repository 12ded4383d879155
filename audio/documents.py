"""A library document read aloud on request: its summary (or first part) as mastered audio."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from audio import mastering, studio, texts
from audio.mastering import Tags
from audio.spoken import to_spoken
from audio.store import AssetStore
from db.models import AssetKind, AudioAsset, Document
from db.text import split_message

__all__ = [
    "MAX_SPOKEN_CHARS",
    "cached_document_assets",
    "document_key",
    "document_script",
    "document_store_key",
    "make_document_audio",
    "record_document_audio",
]

# About a minute and a half of speech: a person listening on a boat wants the gist;
# the whole text is there to read.
MAX_SPOKEN_CHARS: Final = 1200
# Bump to re-render every document after a change the settings do not capture.
_CACHE_VERSION: Final = 1


def _spoken_part(document: Document) -> str:
    """The summary when there is one, else the body's first part, cut at a sentence end."""
    source = (document.summary or "").strip() or (document.body or "").strip()
    parts = split_message(source, MAX_SPOKEN_CHARS) if source else []
    return parts[0] if parts else ""


def document_script(document: Document) -> studio.Script:
    """What the document's audio says (spoken forms) and the tags its files carry.

    Title, number and the summary (or the first ~MAX_SPOKEN_CHARS of the body). The
    tag date is the issue date, else the day the document was added: stable, so the
    cache key does not change from one day to the next.
    """
    title = document.title.strip().rstrip(".") + "."
    number = texts.DOCUMENT_NUMBER.format(number=document.number) if document.number else ""
    spoken = "\n\n".join(part for part in (title, number, _spoken_part(document)) if part)
    day = document.issued_on or document.created_at.date()
    return studio.Script(
        heading=to_spoken(texts.DOCUMENT_HEADING),
        text=to_spoken(spoken),
        tags=Tags(title=document.title, commune=texts.SERVICE_NAME, date=day),
    )


def document_key(document_id: int, script: studio.Script, engine_name: str) -> str:
    """The content hash of a document's audio: script, engine and every audio setting."""
    settings = {
        "v": _CACHE_VERSION,
        "kind": AssetKind.document.value,
        "document": document_id,
        "heading": script.heading,
        "tags": script.tags,
        "mastering": studio.MASTERING,
        "encoding": studio.ENCODING,
    }
    return mastering.cache_key(script.text, engine_name, studio.LANGUAGE, settings)


def document_store_key(content_hash: str, fmt: str) -> str:
    """``documents/ab/abcdef….ogg``: fanned out by the first two hex digits."""
    return f"documents/{content_hash[:2]}/{content_hash}.{fmt}"


async def cached_document_assets(
    session: AsyncSession, store: AssetStore, key: str
) -> list[AudioAsset] | None:
    """The rows for ``key`` in studio.FORMATS order when every one exists with its file."""
    return await studio.cached_assets(session, store, key, studio.FORMATS)


async def make_document_audio(
    script: studio.Script, key: str, *, store: AssetStore, engine_name: str, work_dir: Path
) -> studio.StoredAudio:
    """:func:`audio.studio.make_audio` under ``documents/`` keys: no database is touched,
    so no transaction is held during the render. TTS and mastering errors pass through."""
    return await studio.make_audio(
        script, key, store=store, engine_name=engine_name, work_dir=work_dir,
        key_for=lambda fmt: document_store_key(key, fmt),
    )  # fmt: skip


async def record_document_audio(
    session: AsyncSession, key: str, audio: studio.StoredAudio, *, now: dt.datetime
) -> list[AudioAsset]:
    """Upsert the rows for ``audio`` (a short write; the caller commits)."""
    return await studio.upsert_assets(
        session, audio.records, content_hash=key, kind=AssetKind.document,
        engine=audio.engine, now=now,
    )  # fmt: skip
