"""Bulletin audio: spoken text → TTS → mastered MP3/AAC/Opus, cached by content in an AssetStore."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import mastering, texts, tts
from audio.mastering import EncodingSettings, MasteringSettings, OutputFormat, Rendered, Tags
from audio.spoken import to_spoken
from audio.store import AssetStore
from db.engine import insert_for
from db.models import Area, AreaKind, AssetKind, AudioAsset, Bulletin, BulletinArea

__all__ = [
    "ENCODING",
    "FILES_PATH",
    "FORMATS",
    "LANGUAGE",
    "MASTERING",
    "MIME_TYPES",
    "PRODUCTION",
    "AssetRecord",
    "BulletinPlan",
    "Production",
    "Script",
    "StoredAudio",
    "StudioError",
    "bulletin_assets",
    "bulletin_script",
    "bulletin_store_key",
    "cached_assets",
    "engines_of",
    "make_audio",
    "make_bulletin_audio",
    "plan_bulletin",
    "public_url",
    "record_bulletin_audio",
    "render_bulletin",
    "render_to_store",
    "speak",
    "upsert_assets",
]

log = logging.getLogger(__name__)

# AudioAsset.format values (file types), in the order render_bulletin returns them:
# MP3 for operators and feeds, AAC for Zalo (fetched by URL), Opus in Ogg for Telegram.
FORMATS: Final = ("mp3", "aac", "ogg")
MIME_TYPES: Final[Mapping[str, str]] = {"mp3": "audio/mpeg", "aac": "audio/aac", "ogg": "audio/ogg"}
_FORMAT_OF_OUTPUT: Final[Mapping[str, str]] = {"mp3": "mp3", "aac": "aac", "opus": "ogg"}
_OUTPUTS: Final[tuple[OutputFormat, ...]] = ("mp3", "aac", "opus")
# Where web/ serves stored files; defined here so public URLs can be made without web/.
FILES_PATH: Final = "/audio/files/"
LANGUAGE: Final = "vi"
MASTERING: Final = MasteringSettings()
ENCODING: Final = EncodingSettings(formats=_OUTPUTS)
# Bump to re-render everything after a change that the settings do not capture.
_CACHE_VERSION: Final = 1
_TAG_AREAS: Final = 3  # area names written into a file's "commune" tag
_SENTENCE_END: Final = re.compile(r"[.!?…:;]$")


class StudioError(ValueError):
    """Audio cannot be made for this request (unknown bulletin, nothing to say)."""


@dataclass(frozen=True, slots=True)
class Production:
    """How bulletins sound besides their words; configured once (the AUDIO_* settings).

    ``mastering`` carries the light compression for outdoor horns (``compression`` None
    turns it off); ``jingle`` is an audio file played before the heading; ``heading``
    says whether "Đài truyền thanh … xin thông báo." is spoken first. All are part of
    the render cache key, the jingle by its content.
    """

    mastering: MasteringSettings = MASTERING
    jingle: Path | None = None
    heading: bool = True

    def key_settings(self) -> dict[str, object]:
        """What goes into a cache key. The defaults add nothing, so files rendered
        before these options existed stay cache hits."""
        extra: dict[str, object] = {"mastering": self.mastering}
        if self.jingle is not None:
            extra["jingle"] = _file_digest(self.jingle)
        if not self.heading:
            extra["heading_spoken"] = False
        return extra


PRODUCTION: Final = Production()


def _file_digest(path: Path) -> str:
    stat = path.stat()
    return _digest_of(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _digest_of(path: str, _mtime_ns: int, _size: int) -> str:
    # Keyed by modification time and size too, so an edited jingle is hashed again.
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Script:
    """What a bulletin's audio says (spoken forms) and the tags its files carry."""

    heading: str
    text: str
    tags: Tags


@dataclass(frozen=True, slots=True)
class AssetRecord:
    """One stored file, ready to become an AudioAsset row."""

    format: str
    store_key: str
    sha256: str
    size_bytes: int
    duration_seconds: float
    loudness_lufs: float
    true_peak_dbtp: float


# --------------------------------------------------------------------------- scripts


async def _audience(session: AsyncSession, bulletin_id: int) -> list[Area]:
    rows = await session.scalars(
        select(Area)
        .join(BulletinArea, BulletinArea.area_id == Area.id)
        .where(BulletinArea.bulletin_id == bulletin_id)
        .order_by(Area.code)
    )
    return list(rows.all())


async def bulletin_script(session: AsyncSession, bulletin: Bulletin, tz: ZoneInfo) -> Script:
    """The spoken heading and text of ``bulletin`` (Vietnamese) and its file tags.

    The heading names the commune's station when the audience is exactly one commune,
    the service otherwise. The tag date is the local day of approval (or creation).
    """
    audience = await _audience(session, bulletin.id)
    if len(audience) == 1 and audience[0].kind is AreaKind.commune:
        heading = texts.STATION_HEADING.format(station=texts.station_name(audience[0]))
    else:
        heading = texts.SERVICE_HEADING
    title = bulletin.title.strip()
    if not _SENTENCE_END.search(title):
        title += "."
    names = [area.name for area in audience[:_TAG_AREAS]]
    if len(audience) > _TAG_AREAS:
        names.append("…")
    stamp = bulletin.approved_at or bulletin.created_at
    return Script(
        heading=to_spoken(heading),
        text=to_spoken(f"{title}\n\n{bulletin.body}"),
        tags=Tags(
            title=bulletin.title,
            commune=", ".join(names) or texts.SERVICE_NAME,
            date=stamp.astimezone(tz).date(),
        ),
    )


def _bulletin_key(
    bulletin_id: int, script: Script, engine_name: str, production: Production
) -> str:
    # The bulletin id is part of the key: a row belongs to one bulletin (AudioAsset has
    # one bulletin_id), so two bulletins with the same words each get their own files.
    settings = {
        "v": _CACHE_VERSION,
        "kind": AssetKind.bulletin.value,
        "bulletin": bulletin_id,
        "heading": script.heading,
        "tags": script.tags,
        "encoding": ENCODING,
        **production.key_settings(),
    }
    return mastering.cache_key(script.text, engine_name, LANGUAGE, settings)


def bulletin_store_key(content_hash: str, fmt: str) -> str:
    """``bulletins/ab/abcdef….mp3``: fanned out by the first two hex digits."""
    return f"bulletins/{content_hash[:2]}/{content_hash}.{fmt}"


# --------------------------------------------------------------------------- speech


async def speak(engine_name: str, lines: Sequence[str]) -> list[tts.Speech]:
    """Speak each line (non-blank) with one engine and one voice.

    With a fallback engine ("auto") the lines could come back in two voices if the
    online one failed for some lines only; the others are then spoken again by the
    engine fallen back to. Raises the engine's EngineError when it cannot speak.
    """
    engine = tts.create(engine_name)
    speeches = [await engine.synthesize(line, language=LANGUAGE) for line in lines]
    if len({s.engine for s in speeches}) > 1:
        # Unify on the engine that was fallen back to: it is the one that works now.
        chosen = next((s.engine for s in speeches if s.fallback_reason), speeches[0].engine)
        if chosen in tts.available():
            same = tts.create(chosen)
            speeches = [
                s if s.engine == chosen else await same.synthesize(line, language=LANGUAGE)
                for s, line in zip(speeches, lines, strict=True)
            ]
    for speech in speeches:
        if speech.fallback_reason:
            log.warning("spoke with %s instead: %s", speech.engine, speech.fallback_reason)
    return speeches


def engines_of(speeches: Iterable[tts.Speech | str]) -> str:
    """The AudioAsset.engine value for audio made by these engines ("espeak", "gtts+espeak")."""
    names: list[str] = []
    for item in speeches:
        name = item if isinstance(item, str) else item.engine
        for part in name.split("+"):
            if part not in names:
                names.append(part)
    return "+".join(names)[:40]


# --------------------------------------------------------------------------- storage


def render_to_store(
    store: AssetStore,
    work_dir: Path,
    render: Callable[[Path], Rendered],
    key_for: Callable[[str], str],
) -> tuple[Rendered, list[AssetRecord]]:
    """Run ``render`` in a fresh temporary directory under ``work_dir`` and store its files.

    ``key_for`` maps an AudioAsset format ("mp3", "aac", "ogg") to a store key. Blocking
    (mastering, encoding, file copies): call it through asyncio.to_thread. The
    temporary directory is removed whatever happens.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="render-") as tmp:
        rendered = render(Path(tmp))
        records = []
        for encoded in rendered.outputs:
            fmt = _FORMAT_OF_OUTPUT[encoded.format]
            key = key_for(fmt)
            store.put_file(key, encoded.path)
            records.append(
                AssetRecord(
                    format=fmt,
                    store_key=key,
                    sha256=encoded.sha256,
                    size_bytes=encoded.size_bytes,
                    duration_seconds=encoded.duration_seconds,
                    loudness_lufs=encoded.integrated_lufs,
                    true_peak_dbtp=encoded.true_peak_dbtp,
                )
            )
    return rendered, records


async def upsert_assets(
    session: AsyncSession,
    records: Sequence[AssetRecord],
    *,
    content_hash: str,
    kind: AssetKind,
    engine: str,
    now: dt.datetime,
    bulletin_id: int | None = None,
    area_id: int | None = None,
) -> list[AudioAsset]:
    """Insert or refresh one AudioAsset per record (unique on content hash and format).

    ``created_at`` is set to ``now`` either way: it says when the file was written.
    Two workers rendering the same content both succeed; the last write wins.
    """
    values = [
        {
            "content_hash": content_hash,
            "kind": kind,
            "format": record.format,
            "bulletin_id": bulletin_id,
            "area_id": area_id,
            "engine": engine,
            "store_key": record.store_key,
            "sha256": record.sha256,
            "size_bytes": record.size_bytes,
            "duration_seconds": record.duration_seconds,
            "loudness_lufs": record.loudness_lufs,
            "true_peak_dbtp": record.true_peak_dbtp,
            "created_at": now,
        }
        for record in records
    ]
    insert = insert_for(session)(AudioAsset).values(values)
    updated = {
        name: insert.excluded[name]
        for name in values[0]
        if name not in ("content_hash", "format", "kind")
    }
    await session.execute(
        insert.on_conflict_do_update(index_elements=["content_hash", "format"], set_=updated)
    )
    # populate_existing: rows already in the session's identity map were just rewritten.
    rows = await session.scalars(
        select(AudioAsset)
        .where(AudioAsset.content_hash == content_hash)
        .execution_options(populate_existing=True)
    )
    order = {record.format: i for i, record in enumerate(records)}
    return sorted(
        (row for row in rows.all() if row.format in order), key=lambda row: order[row.format]
    )


async def cached_assets(
    session: AsyncSession, store: AssetStore, content_hash: str, formats: Sequence[str]
) -> list[AudioAsset] | None:
    """The rows for ``content_hash`` in ``formats`` order if all exist with their files."""
    rows = (
        await session.scalars(select(AudioAsset).where(AudioAsset.content_hash == content_hash))
    ).all()
    by_format = {row.format: row for row in rows}
    if any(fmt not in by_format for fmt in formats):
        return None
    found = [by_format[fmt] for fmt in formats]
    # A worker thread: for an object store, exists() is a network round trip.
    present = await asyncio.to_thread(lambda: all(store.exists(row.store_key) for row in found))
    return found if present else None


# --------------------------------------------------------------------------- the API


@dataclass(frozen=True, slots=True)
class BulletinPlan:
    """What a render needs, read from the database: the script, its key, any cached rows."""

    bulletin_id: int
    script: Script
    key: str
    cached: list[AudioAsset] | None  # every format's row, with its file present
    production: Production = PRODUCTION


@dataclass(frozen=True, slots=True)
class StoredAudio:
    """Files rendered and stored for a script, not recorded in the database yet."""

    records: list[AssetRecord]
    engine: str  # the AudioAsset.engine value: who actually spoke
    master: mastering.Master


async def plan_bulletin(
    session: AsyncSession,
    bulletin_id: int,
    *,
    store: AssetStore,
    engine_name: str,
    tz: ZoneInfo,
    force: bool = False,
    production: Production = PRODUCTION,
) -> BulletinPlan:
    """Read what rendering ``bulletin_id`` needs; only reads (a few queries, a stat per file).

    ``cached`` is None when a render is needed: some row or file is missing, or ``force``.
    Raises StudioError for an unknown bulletin.
    """
    bulletin = await session.get(Bulletin, bulletin_id)
    if bulletin is None:
        raise StudioError(f"no bulletin {bulletin_id}")
    script = await bulletin_script(session, bulletin, tz)
    key = _bulletin_key(bulletin.id, script, engine_name, production)
    cached = None if force else await cached_assets(session, store, key, FORMATS)
    return BulletinPlan(bulletin.id, script, key, cached, production)


async def make_audio(
    script: Script,
    key: str,
    *,
    store: AssetStore,
    engine_name: str,
    work_dir: Path,
    key_for: Callable[[str], str],
    production: Production = PRODUCTION,
) -> StoredAudio:
    """Speak ``script`` (heading, then text), master, encode and put the files in ``store``.

    ``key`` (the content hash) names the files; ``key_for`` maps a format ("mp3",
    "aac", "ogg") to its store key; ``production`` adds the jingle, drops the heading
    or changes the compression. Touches no database, so no transaction is held while
    it runs (about 1 s per 20 s of speech; TTS and mastering run in worker threads).
    TTS and mastering errors pass through.
    """
    lines = [script.text, script.heading] if production.heading else [script.text]
    body, *spoken_heading = await speak(engine_name, lines)
    heading = spoken_heading[0] if spoken_heading else None
    rendered, records = await asyncio.to_thread(
        render_to_store,
        store,
        work_dir,
        lambda out_dir: mastering.render(
            body,
            out_dir,
            basename=key,
            tags=script.tags,
            heading=heading,
            jingle=production.jingle,
            mastering=production.mastering,
            encoding=ENCODING,
        ),
        key_for,
    )
    log.info(
        "rendered %s with %s: %.1f s, %.2f LUFS, %.2f dBTP",
        key_for(FORMATS[0]),
        body.engine,
        rendered.master.duration_seconds,
        rendered.master.integrated_lufs,
        rendered.master.true_peak_dbtp,
    )
    return StoredAudio(records, engines_of([body, *spoken_heading]), rendered.master)


async def make_bulletin_audio(
    plan: BulletinPlan, *, store: AssetStore, engine_name: str, work_dir: Path
) -> StoredAudio:
    """:func:`make_audio` for a bulletin's plan, under ``bulletins/`` keys."""
    return await make_audio(
        plan.script,
        plan.key,
        store=store,
        engine_name=engine_name,
        work_dir=work_dir,
        key_for=lambda fmt: bulletin_store_key(plan.key, fmt),
        production=plan.production,
    )


async def record_bulletin_audio(
    session: AsyncSession, plan: BulletinPlan, audio: StoredAudio, *, now: dt.datetime
) -> list[AudioAsset]:
    """Upsert the rows for ``audio`` (one statement and one read): a short write."""
    return await upsert_assets(
        session,
        audio.records,
        content_hash=plan.key,
        kind=AssetKind.bulletin,
        engine=audio.engine,
        now=now,
        bulletin_id=plan.bulletin_id,
    )


async def render_bulletin(
    sessions: async_sessionmaker[AsyncSession],
    bulletin_id: int,
    *,
    store: AssetStore,
    engine_name: str,
    tz: ZoneInfo,
    now: dt.datetime,
    work_dir: Path,
    force: bool = False,
    production: Production = PRODUCTION,
) -> list[AudioAsset]:
    """The bulletin's MP3, AAC and Ogg/Opus assets (in FORMATS order), rendering if needed.

    Cached by content: the key covers the spoken text and heading, the engine name
    (the one asked for, e.g. "auto"), the voice, the tags, ``production`` (jingle,
    heading, compression) and every mastering and encoding setting, so an unchanged
    bulletin is a cache hit (two queries and a stat per file, no TTS, no mastering)
    unless ``force``. A render done by the offline
    fallback stays cached under the requested engine's key; re-render with ``force``.

    Unlike most domain functions this one opens its own short transactions from
    ``sessions``, because the point is to hold none during a render: it reads
    (:func:`plan_bulletin`) and closes that transaction, renders outside any
    (:func:`make_bulletin_audio`), then upserts the rows in a transaction of its own
    (:func:`record_bulletin_audio`). On SQLite the write lock is held for
    milliseconds, not for the render. Callers that need the steps in their own
    transactions call those three. Raises StudioError for an unknown bulletin.
    """
    async with sessions() as session:
        plan = await plan_bulletin(
            session, bulletin_id, store=store, engine_name=engine_name, tz=tz, force=force,
            production=production,
        )  # fmt: skip
    if plan.cached is not None:
        return plan.cached
    audio = await make_bulletin_audio(plan, store=store, engine_name=engine_name, work_dir=work_dir)
    async with sessions.begin() as session:
        return await record_bulletin_audio(session, plan, audio, now=now)


async def bulletin_assets(session: AsyncSession, bulletin_id: int) -> dict[str, AudioAsset]:
    """The bulletin's latest asset per format ("mp3", "aac", "ogg"); empty if never rendered.

    Does not check the store: a file lost since is found by render_bulletin instead.
    """
    rows = await session.scalars(
        select(AudioAsset)
        .where(AudioAsset.bulletin_id == bulletin_id, AudioAsset.kind == AssetKind.bulletin)
        .order_by(AudioAsset.created_at, AudioAsset.id)
    )
    return {row.format: row for row in rows.all()}  # later rows overwrite earlier ones


def public_url(public_base_url: str | None, asset: AudioAsset) -> str | None:
    """The absolute download URL of ``asset`` under PUBLIC_BASE_URL; None when that is unset.

    (Zalo fetches voice by URL, so without a public base URL it gets no voice.)
    """
    if not public_base_url or not str(public_base_url).strip():
        return None
    return str(public_base_url).strip().rstrip("/") + FILES_PATH + asset.store_key
