"""Text-to-speech engines behind one protocol, with a name registry ("espeak", "gtts", "auto")."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Final

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
    "PLUGIN_GROUP",
    "EngineError",
    "EngineFactory",
    "EspeakEngine",
    "FallbackEngine",
    "GttsEngine",
    "Speech",
    "TtsEngine",
    "available",
    "configure_auto",
    "create",
    "load_plugins",
    "register",
    "split_sentences",
]


log = logging.getLogger(__name__)

# Entry points of this group are TTS engines from other distributions (a commercial
# Vietnamese voice, say): name = "package.module:Factory", called with keyword options.
PLUGIN_GROUP: Final = "haidang.tts_engines"
_CHUNK_CHARS: Final = 400  # for an online engine that does not say how much it takes


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


def load_plugins() -> list[str]:
    """Register the engines other installed distributions offer (PLUGIN_GROUP).

    A name already registered is left alone (built-in engines cannot be replaced this
    way). Returns the names added. An entry point that fails to load raises.
    """
    added = []
    for entry in entry_points(group=PLUGIN_GROUP):
        if entry.name in available():
            continue
        register(entry.name, entry.load())
        added.append(entry.name)
    if added:
        log.info("TTS engines from plugins: %s", ", ".join(added))
    return added


def configure_auto(
    online: str, options: Mapping[str, Any] | None = None, *, chunk_timeout: float = 8.0
) -> str:
    """The engine name that speaks with ``online`` first and espeak-ng when it fails.

    "auto" itself for gTTS without options; otherwise "auto:<online>" is registered
    (so renders by another online voice get their own cache keys) with ``options``
    given to the online engine's factory (an API key, a voice). Raises LookupError
    for an unknown engine and the factory's errors for bad options, at once.
    """
    if online == GttsEngine.name and not options:
        return FallbackEngine.name
    name = f"{FallbackEngine.name}:{online}"
    primary = create(online, **dict(options or {}))  # fail now, not at the first render

    def factory() -> FallbackEngine:
        return FallbackEngine(
            primary,
            EspeakEngine(),
            chunk_timeout=chunk_timeout,
            max_chars=int(getattr(primary, "max_chars", _CHUNK_CHARS)),
            gap_seconds=float(getattr(primary, "gap_seconds", 0.15)),
        )

    register(name, factory, replace=True)
    return name


register(EspeakEngine.name, EspeakEngine)
register(GttsEngine.name, GttsEngine)
register(FallbackEngine.name, _auto)
