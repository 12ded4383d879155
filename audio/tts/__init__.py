"""Text-to-speech engines behind one protocol, with a name registry ("espeak", "gtts", "auto")."""

from __future__ import annotations

from typing import Any

from audio.tts.base import (
    EngineError,
    EngineFactory,
    Speech,
    TtsEngine,
    available,
    create,
    register,
)
from audio.tts.chunks import split_sentences
from audio.tts.espeak import EspeakEngine
from audio.tts.fallback import FallbackEngine
from audio.tts.gtts import GttsEngine

__all__ = [
    "EngineError",
    "EngineFactory",
    "EspeakEngine",
    "FallbackEngine",
    "GttsEngine",
    "Speech",
    "TtsEngine",
    "available",
    "create",
    "register",
    "split_sentences",
]


def _auto(
    *,
    chunk_timeout: float = 8.0,
    online: dict[str, Any] | None = None,
    offline: dict[str, Any] | None = None,
) -> FallbackEngine:
    """gTTS first, espeak-ng on failure; ``online``/``offline`` are each engine's options."""
    primary = GttsEngine(**{"timeout": chunk_timeout, **(online or {})})
    return FallbackEngine(
        primary,
        EspeakEngine(**(offline or {})),
        chunk_timeout=chunk_timeout,
        max_chars=primary.max_chars,
        gap_seconds=primary.gap_seconds,
    )


register(EspeakEngine.name, EspeakEngine)
register(GttsEngine.name, GttsEngine)
register(FallbackEngine.name, _auto)
