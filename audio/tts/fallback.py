"""The ``auto`` engine: the online voice when it answers in time, else the offline one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from audio.tts.base import EngineError, Speech, TtsEngine, concatenate
from audio.tts.chunks import split_sentences
from audio.tts.gtts import GTTS_MAX_CHARS

__all__ = ["FallbackEngine"]

log = logging.getLogger(__name__)


class FallbackEngine:
    """Try ``primary`` chunk by chunk; on any error or hang, speak everything with ``secondary``.

    Each chunk gets ``chunk_timeout`` seconds overall, whatever the primary does
    internally, so a hung network costs at most that long before falling back. The
    whole text then goes to the secondary (never a mix of two voices in one bulletin).
    The result's ``engine`` names the engine that spoke and ``fallback_reason`` why.
    If the secondary fails too, raises EngineError naming both causes.
    """

    name = "auto"

    def __init__(
        self,
        primary: TtsEngine,
        secondary: TtsEngine,
        *,
        chunk_timeout: float = 8.0,
        max_chars: int = GTTS_MAX_CHARS,
        gap_seconds: float = 0.15,
    ) -> None:
        if chunk_timeout <= 0:
            raise ValueError("chunk_timeout must be positive")
        self.primary = primary
        self.secondary = secondary
        self.chunk_timeout = chunk_timeout
        self.max_chars = max_chars
        self.gap_seconds = gap_seconds

    async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
        """Speak ``text``, falling back as described; raises EngineError for blank text."""
        chunks = split_sentences(text, self.max_chars)
        if not chunks:
            raise EngineError("nothing to speak")
        parts: list[Speech] = []
        try:
            for chunk in chunks:
                parts.append(
                    await asyncio.wait_for(
                        self.primary.synthesize(chunk, language=language), self.chunk_timeout
                    )
                )
        except Exception as exc:  # any failure, including TimeoutError, means fall back
            reason = (
                f"timed out after {self.chunk_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc) or type(exc).__name__
            )
            log.warning(
                "TTS %s failed (%s); falling back to %s",
                self.primary.name,
                reason,
                self.secondary.name,
            )
            try:
                speech = await self.secondary.synthesize(text, language=language)
            except Exception as second:
                raise EngineError(
                    f"{self.primary.name} failed ({reason}) and "
                    f"{self.secondary.name} failed too: {second}"
                ) from second
            return dataclasses.replace(speech, fallback_reason=f"{self.primary.name}: {reason}")
        return concatenate(
            parts, gap_seconds=self.gap_seconds, engine=self.primary.name, voice=parts[0].voice
        )
