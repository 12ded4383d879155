"""Documents read aloud: what is spoken, one render per content (even when asked twice at once),
files that meet the loudness targets, and renders that leave other writers alone."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from audio import documents as document_audio
from audio.spoken import to_spoken
from audio.store import LocalStore
from bot.listening import DocumentVoices
from broadcasts import documents
from db.models import AssetKind, AudioAsset, Document, Topic
from tests.audio.measure import measure_delivery
from tests.conftest import Database

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
TITLE = "Thông tư về giám sát tàu cá"
SENTENCE = "Tàu cá phải bật thiết bị giám sát hành trình suốt chuyến biển. "


async def add_document(database: Database, body: str) -> int:
    text = f"---\ntitle: {TITLE}\nnumber: 23/2018/TT-BNNPTNT\n---\n\n{body}\n"
    parsed = documents.parse(text, source="tt.md")
    async with database.sessions.begin() as session:
        return (await documents.add(session, parsed, now=NOW)).document.id


def document(document_id: int, summary: str, body: str) -> Document:
    return Document(
        id=document_id, title=TITLE, number="23/2018/TT-BNNPTNT", summary=summary, body=body,
        created_at=NOW,
    )  # fmt: skip


def voices(database: Database, tmp_path: Path) -> DocumentVoices:
    return DocumentVoices(
        database.sessions, database.sessions, LocalStore(tmp_path / "audio"),
        engine_name="espeak", work_dir=tmp_path / "work", public_base_url="https://hd.example/",
    )  # fmt: skip


def test_the_summary_is_spoken_else_the_first_part_of_the_body() -> None:
    summarised = document(1, "Quy định thiết bị giám sát hành trình.", SENTENCE * 5)
    script = document_audio.document_script(summarised)
    assert script.text.startswith(to_spoken(f"{TITLE}."))
    assert to_spoken("Quy định thiết bị giám sát hành trình.") in script.text
    assert to_spoken(SENTENCE.strip()) not in script.text  # the body is not read
    assert script.tags.date == NOW.date()  # no issue date: the day it was added, stable
    first_part = document_audio.document_script(document(2, "", SENTENCE * 60)).text
    assert to_spoken(SENTENCE.strip()) in first_part
    # About a minute and a half: the first part only, ending at a sentence end.
    assert len(first_part) < len(to_spoken(SENTENCE * 60)) // 2
    assert first_part.rstrip().endswith(".")
    key = document_audio.document_key(1, script, "espeak")
    assert key == document_audio.document_key(1, script, "espeak")
    assert key != document_audio.document_key(1, script, "auto")
    assert key != document_audio.document_key(2, script, "espeak")
    changed = document_audio.document_script(document(1, "Quy định mới.", SENTENCE * 5))
    assert key != document_audio.document_key(1, changed, "espeak")


async def test_asked_twice_at_once_renders_once_and_meets_the_targets(
    database: Database, tmp_path: Path
) -> None:
    document_id = await add_document(database, SENTENCE * 3)
    studio = voices(database, tmp_path)
    first, second = await asyncio.gather(studio.voice(document_id), studio.voice(document_id))
    assert first == second and first is not None
    assert studio.rendered == 1
    assert first.key.startswith("documents/") and first.key.endswith(".ogg")
    assert first.url is not None and first.url.startswith("https://hd.example/audio/files/")
    assert first.url.endswith(".aac")
    assert first.title == TITLE
    assert first.path is not None
    measure_delivery(first.path)
    async with database.sessions() as session:
        rows = (
            await session.scalars(select(AudioAsset).where(AudioAsset.kind == AssetKind.document))
        ).all()
    assert sorted(row.format for row in rows) == ["aac", "mp3", "ogg"]
    assert all(row.engine == "espeak" and row.bulletin_id is None for row in rows)
    # Asked again later: the files are reused, nothing is rendered or rewritten.
    assert await studio.voice(document_id) == first
    assert studio.rendered == 1
    assert await studio.voice(999_999) is None


async def test_a_render_leaves_other_writers_alone(seeded: Database, tmp_path: Path) -> None:
    """No transaction is open while the voice renders, so on SQLite a writer (a person
    signing up, an official saving a bulletin) does not wait for it."""
    document_id = await add_document(seeded, SENTENCE * 17)  # a minute of speech
    studio = voices(seeded, tmp_path)
    render = asyncio.create_task(studio.voice(document_id))
    await asyncio.sleep(0.3)  # the render is under way (it takes a second or more)
    async with seeded.sessions.begin() as session:
        topic = await session.scalar(select(Topic).order_by(Topic.id))
        assert topic is not None
        topic.description = "Sửa trong lúc đang đọc văn bản"
    # Had the render held the write lock, this write would have waited for its end.
    assert not render.done()
    assert await render is not None
    async with seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AudioAsset)) == 3
