"""Online TTS through gTTS (Google Translate's speech endpoint); the only network code here."""

from __future__ import annotations

import asyncio
import io
import logging
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
from gtts import gTTS

from audio.tts.base import EngineError, Samples, Speech, concatenate
from audio.tts.chunks import split_sentences

__all__ = ["GTTS_MAX_CHARS", "GttsEngine", "decode_mp3"]

log = logging.getLogger(__name__)

# gTTS sends at most 100 characters per request; larger chunks would be re-split by
# gTTS's own tokenizer, outside our timeout accounting.
GTTS_MAX_CHARS = 100

# A private pool: a hung HTTP request must not occupy asyncio's default executor
# (where the offline fallback runs) nor make event-loop shutdown wait for it.
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gtts")


class GttsEngine:
    """Google Translate speech, MP3 decoded to mono float32 PCM (24 kHz as served).

    Each chunk (at most ``max_chars``, cut at sentence boundaries) is one HTTP request
    with ``timeout`` seconds overall, enforced both as requests' socket timeout and
    as an asyncio deadline. Any failure raises EngineError. Needs the internet.
    """

    name = "gtts"

    def __init__(
        self,
        *,
        timeout: float = 8.0,
        tld: str = "com",
        slow: bool = False,
        max_chars: int = GTTS_MAX_CHARS,
        gap_seconds: float = 0.15,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 20 <= max_chars <= GTTS_MAX_CHARS:
            raise ValueError(f"max_chars must be 20-{GTTS_MAX_CHARS}")
        self.timeout = timeout
        self.tld = tld
        self.slow = slow
        self.max_chars = max_chars
        self.gap_seconds = gap_seconds

    async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
        """Speak ``text`` chunk by chunk; raises EngineError on any failure or timeout."""
        chunks = split_sentences(text, self.max_chars)
        if not chunks:
            raise EngineError("nothing to speak")
        voice = language if self.tld == "com" else f"{language}:{self.tld}"
        loop = asyncio.get_running_loop()
        parts: list[Speech] = []
        for index, chunk in enumerate(chunks):
            future = loop.run_in_executor(_executor, self._speak_chunk, chunk, language, voice)
            try:
                parts.append(await asyncio.wait_for(future, self.timeout))
            except TimeoutError as exc:
                raise EngineError(
                    f"gTTS chunk {index + 1}/{len(chunks)} timed out after {self.timeout:g} s"
                ) from exc
        return concatenate(parts, gap_seconds=self.gap_seconds, engine=self.name, voice=voice)

    def _speak_chunk(self, chunk: str, language: str, voice: str) -> Speech:
        buffer = io.BytesIO()
        try:
            gTTS(
                chunk, lang=language, tld=self.tld, slow=self.slow, timeout=self.timeout
            ).write_to_fp(buffer)
        except Exception as exc:  # gTTSError, requests errors, ValueError for the language
            raise EngineError(f"gTTS failed: {exc}") from exc
        samples, rate = decode_mp3(buffer.getvalue())
        return Speech(samples, rate, self.name, voice)


def decode_mp3(data: bytes) -> tuple[Samples, int]:
    """Decode an MP3 (or any FFmpeg-readable) blob to mono float32 PCM at its own rate."""
    if not data:
        raise EngineError("empty audio response")
    pieces: list[Samples] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
    except (av.FFmpegError, IndexError) as exc:
        raise EngineError(f"cannot decode audio response: {exc}") from exc
    if not pieces or not rate:
        raise EngineError("audio response held no samples")
    return np.concatenate(pieces), rate
