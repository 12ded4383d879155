"""Bulletin media for the senders (photos in the asset store, voice and MP3 from the studio)
and the file ids a bot got for uploaded audio, kept in the database."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import studio, tts, uploads
from audio.mastering import Compression
from audio.store import AssetStore
from broadcasts.channels import Media, MediaKind
from broadcasts.sender import BulletinMedia
from db.models import Bulletin
from haidang.settings import Settings, TtsEngineChoice

# What Telegram and Zalo both show as a photo, recognised by the file's first bytes (a
# name or a declared type can lie).
PHOTO_SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}
MAX_PHOTO_BYTES = 10_000_000  # Telegram's limit for a photo


def engine_name(settings: Settings) -> str:
    """The TTS engine bulletins are spoken with (TTS_ENGINE, TTS_ONLINE_ENGINE and
    TTS_ENGINE_OPTIONS), plugin engines registered first. LookupError for an unknown
    engine, the engine's own errors for bad options."""
    tts.load_plugins()
    if settings.tts_engine is TtsEngineChoice.auto:
        return tts.configure_auto(settings.tts_online_engine, settings.tts_options)
    return settings.tts_engine.value


def production(settings: Settings) -> studio.Production:
    """How bulletins sound, from the AUDIO_* settings."""
    compression = (
        Compression(ratio=settings.audio_compression_ratio) if settings.audio_compression else None
    )
    return studio.Production(
        mastering=dataclasses.replace(studio.MASTERING, compression=compression),
        jingle=settings.audio_jingle,
        heading=settings.audio_heading,
    )


class MediaError(ValueError):
    """A file cannot be attached; the message says why."""


def store_photo(store: AssetStore, source: Path) -> str:
    """Put a JPEG or PNG in the store under a content-addressed key; return the key."""
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read the photo {source}: {exc.strerror or exc}") from None
    extension = next((ext for sig, ext in PHOTO_SIGNATURES.items() if data.startswith(sig)), None)
    if extension is None:
        raise MediaError(f"{source} is not a JPEG or PNG image")
    if len(data) > MAX_PHOTO_BYTES:
        raise MediaError(f"{source} is larger than {MAX_PHOTO_BYTES // 1_000_000} MB")
    digest = hashlib.sha256(data).hexdigest()
    key = f"photos/{digest[:2]}/{digest}{extension}"
    if not store.exists(key):
        store.put_file(key, source)
    return key


class StoreMedia:
    """The senders' MediaSource: what goes with a bulletin's text, if anything.

    Telegram uploads files (paths); Zalo fetches by URL, which exists only under
    PUBLIC_BASE_URL (the voice goes as the AAC, since Zalo plays AAC).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: AssetStore,
        public_base_url: str | None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._public = public_base_url.rstrip("/") if public_base_url else None

    def _url(self, key: str) -> str | None:
        return f"{self._public}{studio.FILES_PATH}{key}" if self._public else None

    async def media_for(self, bulletin_id: int) -> BulletinMedia:
        async with self._sessions() as session:
            bulletin = await session.get_one(Bulletin, bulletin_id)
            assets = await studio.bulletin_assets(session, bulletin_id)
        photo = None
        if bulletin.photo_path and self._store.exists(bulletin.photo_path):
            key = bulletin.photo_path
            photo = Media(MediaKind.photo, key, self._store.path_for(key), self._url(key))
        voice = None
        ogg, aac, mp3 = assets.get("ogg"), assets.get("aac"), assets.get("mp3")
        if ogg is not None:
            voice = Media(
                MediaKind.voice,
                ogg.store_key,
                self._store.path_for(ogg.store_key),
                self._url(aac.store_key) if aac is not None else None,
                title=bulletin.title,
            )
        loudspeaker = None
        if mp3 is not None:
            loudspeaker = Media(
                MediaKind.audio,
                mp3.store_key,
                self._store.path_for(mp3.store_key),
                self._url(mp3.store_key),
                title=bulletin.title,
            )
        return BulletinMedia(photo=photo, voice=voice, mp3=loudspeaker)


class StoredFileIds:
    """A bot's file ids for uploaded audio, in AudioUpload rows (broadcasts.channels.FileIds).

    Keys are store keys; media that are not audio assets (photos) are not kept. Each
    call is one short transaction of its own.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bot_id: int,
        *,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        self._read = read_sessions or sessions
        self.bot_id = bot_id

    async def get(self, key: str) -> str | None:
        async with self._read() as session:
            return await uploads.uploaded_file_id(session, self.bot_id, key)

    async def put(self, key: str, file_id: str) -> None:
        async with self._sessions.begin() as session:
            await uploads.record_upload(session, self.bot_id, key, file_id)

    async def forget(self, key: str) -> None:
        async with self._sessions.begin() as session:
            await uploads.forget_upload(session, self.bot_id, key)
