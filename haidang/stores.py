"""The asset stores Settings choose (ASSET_STORE): audio and photos, and document files."""

from __future__ import annotations

from typing import Any

from audio.store import AssetStore, LocalCopyStore, make_store
from haidang.settings import AssetStoreChoice, Settings

__all__ = ["audio_store", "document_store", "local_copies"]


def _s3_options(settings: Settings) -> dict[str, Any]:
    def secret(value: Any) -> str | None:
        return None if value is None else str(value.get_secret_value())

    endpoint = settings.s3_endpoint_url
    return {
        "bucket": settings.s3_bucket,
        "endpoint_url": str(endpoint).rstrip("/") if endpoint is not None else None,
        "region": settings.s3_region,
        "access_key_id": secret(settings.s3_access_key_id),
        "secret_access_key": secret(settings.s3_secret_access_key),
    }


def audio_store(settings: Settings) -> AssetStore:
    """Rendered audio (bulletins, programmes, documents read aloud) and bulletin photos:
    DATA_DIR/audio, or the bucket's "audio/" prefix. Builds a new client each call: call
    once per component at start-up."""
    if settings.asset_store is AssetStoreChoice.s3:
        return make_store("s3", prefix="audio/", **_s3_options(settings))
    return make_store("local", root=settings.audio_dir)


def document_store(settings: Settings) -> AssetStore:
    """The documents library's files (originals and attachments): DATA_DIR/documents, or
    the bucket's "documents/" prefix."""
    if settings.asset_store is AssetStoreChoice.s3:
        return make_store("s3", prefix="documents/", **_s3_options(settings))
    from broadcasts.documents import store_for  # pypdf and python-docx: only when needed

    return store_for(settings.data_dir)


def local_copies(store: AssetStore, settings: Settings) -> AssetStore:
    """``store`` for code that needs a file path (Telegram uploads read ``Media.path``):
    itself when local, else with local copies under DATA_DIR/cache/assets."""
    if settings.asset_store is AssetStoreChoice.local:
        return store
    return LocalCopyStore(store, settings.data_dir / "cache" / "assets")
