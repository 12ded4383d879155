"""Bulletin media for the senders (photos in the asset store, voice and MP3 from the studio)
and the file ids a bot got for uploaded audio, kept in the database."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import logging
import tempfile
from pathlib import Path

from PIL import Image, ImageOps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio import studio, tts, uploads
from audio.mastering import Compression
from audio.store import AssetStore
from broadcasts.channels import Media, MediaKind
from broadcasts.sender import BulletinMedia
from db.models import Bulletin
from haidang.settings import Settings, TtsEngineChoice

log = logging.getLogger(__name__)

# What Telegram and Zalo both show as a photo, recognised by the file's first bytes (a
# name or a declared type can lie).
PHOTO_SIGNATURES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png"}
MAX_PHOTO_BYTES = 10_000_000  # Telegram's limit for a photo
# Pixels a photo may have, checked from the header before any pixel is decoded: a small
# file can declare 20000x20000 (a decompression bomb, gigabytes once decoded). About 50 MP
# keeps the largest ordinary phone photos (48 MP and "50 MP" sensors: 8064x6048, and
# 8160x6144 which is 50.1 MP, hence the headroom) while capping what one upload costs
# (about 160 MB decoded as RGB). Our own limit, below Pillow's global MAX_IMAGE_PIXELS
# (~89 MP, which only warns up to twice that).
MAX_PHOTO_PIXELS = 52_000_000
# Telegram refuses a photo whose width + height exceed 10000 or whose sides differ by
# more than 20 times; a larger photo is scaled down, a longer one cannot be fixed.
TELEGRAM_PHOTO_SIDES = 10_000
TELEGRAM_PHOTO_RATIO = 20
JPEG_QUALITY = 90  # re-encoding a phone photo: no visible loss, about the size it came in


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


class PhotoTooBigError(MediaError):
    """The photo's file is larger than MAX_PHOTO_BYTES (as uploaded, or re-encoded)."""


class PhotoDimensionsError(MediaError):
    """The photo has more than MAX_PHOTO_PIXELS, or is too long and thin for Telegram."""


def store_photo(store: AssetStore, source: Path) -> str:
    """Put a JPEG or PNG in the store under a content-addressed key; return the key.

    The photo is decoded and re-encoded in its own format: what is stored holds only
    pixels (no EXIF and its GPS position, no comments, nothing appended after the image),
    turned upright by its EXIF orientation and scaled down to fit Telegram. The key is the
    hash of the stored bytes. Blocking (decoding takes up to a second): call it from a
    thread in async code. MediaError, with the reason, for what is not kept.
    """
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read the photo {source}: {exc.strerror or exc}") from None
    extension = next((ext for sig, ext in PHOTO_SIGNATURES.items() if data.startswith(sig)), None)
    if extension is None:
        raise MediaError(f"{source} is not a JPEG or PNG image")
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoTooBigError(f"{source} is larger than {MAX_PHOTO_BYTES // 1_000_000} MB")
    clean = _reencoded(data, extension, source)
    if len(clean) > MAX_PHOTO_BYTES:
        raise PhotoTooBigError(
            f"{source} is larger than {MAX_PHOTO_BYTES // 1_000_000} MB once re-encoded"
        )
    digest = hashlib.sha256(clean).hexdigest()
    key = f"photos/{digest[:2]}/{digest}{extension}"
    if not store.exists(key):
        with tempfile.TemporaryDirectory(prefix="haidang-photo-") as work:
            path = Path(work) / f"photo{extension}"
            path.write_bytes(clean)
            store.put_file(key, path)
    return key


def _reencoded(data: bytes, extension: str, source: Path) -> bytes:
    """The photo decoded and encoded again (JPEG stays JPEG, PNG stays PNG)."""
    jpeg = extension == ".jpg"
    try:
        # Only the format its first bytes claim: a JPEG signature cannot open as TIFF.
        with Image.open(io.BytesIO(data), formats=["JPEG" if jpeg else "PNG"]) as image:
            width, height = image.size  # from the header; no pixel decoded yet
            if width * height > MAX_PHOTO_PIXELS:
                raise PhotoDimensionsError(
                    f"{source} is {width}x{height}, more than "
                    f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels"
                )
            if max(width, height) > TELEGRAM_PHOTO_RATIO * min(width, height):
                raise PhotoDimensionsError(
                    f"{source} is {width}x{height}: Telegram takes no photo with one side"
                    f" more than {TELEGRAM_PHOTO_RATIO} times the other"
                )
            # Decodes every pixel: a truncated or corrupt file fails here (Pillow's
            # LOAD_TRUNCATED_IMAGES is left off), not when a sender reads it.
            image.load()
            upright = ImageOps.exif_transpose(image)
            icc_profile = upright.info.get("icc_profile")
            transparency = upright.info.get("transparency")
            upright = _fitted(upright)
            # Everything else in info (EXIF, XMP, comments, text chunks) would be written
            # back by the encoders; the pixels, their colour profile and transparency
            # are all a photo needs.
            upright.info = {}
            options: dict[str, object] = {}
            if icc_profile:
                options["icc_profile"] = icc_profile
            out = io.BytesIO()
            if jpeg:
                upright.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, **options)
            else:
                if transparency is not None and upright.mode in ("P", "L", "RGB"):
                    options["transparency"] = transparency
                upright.save(out, format="PNG", **options)
            return out.getvalue()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard, met while reading the header: an error at twice its
        # MAX_IMAGE_PIXELS, a warning above it (an exception where warnings are errors).
        raise PhotoDimensionsError(
            f"{source} has more than {MAX_PHOTO_PIXELS // 1_000_000} megapixels"
        ) from None
    except Exception as exc:
        # Hostile input makes Pillow's decoders raise many types (OSError, SyntaxError,
        # ValueError, struct.error, EOFError...): all of them mean "not a usable image".
        kind = "JPEG" if jpeg else "PNG"
        raise MediaError(f"{source} does not decode as a {kind} image: {exc}") from None


def _fitted(image: Image.Image) -> Image.Image:
    """The image scaled down to Telegram's width + height, if it is larger."""
    width, height = image.size
    if width + height <= TELEGRAM_PHOTO_SIDES:
        return image
    scale = TELEGRAM_PHOTO_SIDES / (width + height)
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    if image.mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        # Palette and 1-bit images would be resized by nearest neighbour, 16-bit ones not
        # at all by older Pillows: smooth 8-bit modes scale well and encode in both formats.
        alpha = image.mode in ("PA", "La") or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "L" if image.mode == "1" else "RGB")
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


class StoreMedia:
    """The senders' MediaSource: what goes with a bulletin's text, if anything.

    Telegram uploads files (paths); Zalo fetches by URL, which exists only under
    PUBLIC_BASE_URL (the voice goes as the AAC, since Zalo plays AAC). With an object
    store, give it haidang.stores.local_copies(store): paths are then local copies.
    A file the store cannot give is left out (logged): the text must still go.
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
        ogg, aac, mp3 = assets.get("ogg"), assets.get("aac"), assets.get("mp3")
        photo_key = bulletin.photo_path
        # A worker thread: with an object store these are requests (and a first download).
        paths = await asyncio.to_thread(
            self._paths, photo_key, [asset.store_key for asset in (ogg, mp3) if asset]
        )
        photo = None
        if photo_key and photo_key in paths:
            photo = Media(MediaKind.photo, photo_key, paths[photo_key], self._url(photo_key))
        voice = None
        if ogg is not None:
            voice = Media(
                MediaKind.voice,
                ogg.store_key,
                paths.get(ogg.store_key),
                self._url(aac.store_key) if aac is not None else None,
                title=bulletin.title,
            )
        loudspeaker = None
        if mp3 is not None:
            loudspeaker = Media(
                MediaKind.audio,
                mp3.store_key,
                paths.get(mp3.store_key),
                self._url(mp3.store_key),
                title=bulletin.title,
            )
        return BulletinMedia(photo=photo, voice=voice, mp3=loudspeaker)

    def _paths(self, photo_key: str | None, audio_keys: list[str]) -> dict[str, Path | None]:
        """The files' paths (None: no local file); the photo only if it exists (a bulletin
        may name a photo that is gone), the audio keys always (their rows say they exist)."""
        paths: dict[str, Path | None] = {}
        for key in ([photo_key] if photo_key else []) + audio_keys:
            try:
                if key == photo_key and not self._store.exists(key):
                    continue
                paths[key] = self._store.path_for(key)
            except OSError as exc:
                log.warning("media: %s cannot be read from the store: %s", key, exc)
                if key != photo_key:  # the photo is left out; audio keeps its URL for Zalo
                    paths[key] = None
        return paths


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
