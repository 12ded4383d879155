"""Library documents read aloud in chat: rendered on demand, once per content, off the chat path."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import documents as document_audio
from audio import studio
from audio.store import AssetStore
from bot import texts
from broadcasts.channels import Media, MediaKind
from db.models import Document

log = logging.getLogger(__name__)

# Renders at once across all chats: each takes a core for a second or two, and the
# machine also serves the bots, the senders and the web.
MAX_RENDERS = 2


class DocumentVoices:
    """A document's voice message for the chat adapters, rendered the first time it is asked
    for and reused afterwards (the AudioAsset rows and files are the cache).

    Reads and writes in short transactions of its own, never during the render, so a
    render holds no SQLite write lock and no chat waits for it.
    """

    def __init__(
        self,
        read_sessions: async_sessionmaker[AsyncSession],
        write_sessions: async_sessionmaker[AsyncSession],
        store: AssetStore,
        *,
        engine_name: str,
        work_dir: Path,
        public_base_url: str | None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._read = read_sessions
        self._write = write_sessions
        self._store = store
        self._engine = engine_name
        self._work_dir = work_dir
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._clock = clock
        # Two people asking for the same document at once: one render, both get it.
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._slots = asyncio.Semaphore(MAX_RENDERS)
        self.rendered = 0  # renders done by this process (cache hits do not count)

    async def voice(self, document_id: int) -> Media | None:
        """The document's voice (Ogg/Opus to upload; the AAC's URL under PUBLIC_BASE_URL);
        None for an unknown document. TTS and mastering errors pass through."""
        async with self._locks[document_id]:
            async with self._read() as session:
                document = await session.get(Document, document_id)
                if document is None:
                    return None
                script = document_audio.document_script(document)
                key = document_audio.document_key(document.id, script, self._engine)
                assets = await document_audio.cached_document_assets(session, self._store, key)
                title = document.title
            if assets is None:
                async with self._slots:
                    audio = await document_audio.make_document_audio(
                        script, key, store=self._store, engine_name=self._engine,
                        work_dir=self._work_dir,
                    )  # fmt: skip
                async with self._write.begin() as session:
                    assets = await document_audio.record_document_audio(
                        session, key, audio, now=self._clock()
                    )
                self.rendered += 1
        by_format = {asset.format: asset for asset in assets}
        ogg, aac = by_format["ogg"], by_format["aac"]
        # A store in object storage may fetch the file to a local copy here: not on the loop.
        path = await asyncio.to_thread(self._store.path_for, ogg.store_key)
        return Media(
            MediaKind.voice,
            ogg.store_key,  # Telegram's file id for the upload is cached under this key
            path,
            studio.public_url(self.public_base_url, aac),
            title=title,
        )

    async def voice_or_note(self, document_id: int) -> Media | str:
        """The document's voice, or what to tell the person instead (an unknown document,
        a render that failed: logged here with its traceback)."""
        try:
            media = await self.voice(document_id)
        except Exception:
            log.error("document %d could not be read aloud", document_id, exc_info=True)
            return texts.LISTEN_FAILED
        return texts.DOCUMENT_GONE if media is None else media


class Background:
    """Tasks an adapter starts after answering (a voice to render and send), kept so they
    are not garbage-collected mid-flight and are finished or cancelled at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Let running work finish for up to `timeout` seconds, then cancel the rest."""
        await finish(self._tasks, timeout)


async def finish(tasks: set[asyncio.Task[Any]], timeout: float) -> None:  # noqa: ASYNC109
    """Let `tasks` finish for up to `timeout` seconds, then cancel what is left."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(set(tasks), timeout=timeout)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
