"""Offline TTS: libespeak-ng from the espeakng-loader wheel, driven through ctypes."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from typing import Final

import numpy as np

from audio.tts.base import EngineError, Samples, Speech, concatenate
from audio.tts.chunks import split_sentences

__all__ = ["EspeakEngine"]

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_DONT_EXIT: Final = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 1
_PARAM_RATE: Final = 1
_PARAM_VOLUME: Final = 2
_PARAM_PITCH: Final = 3
_EE_OK: Final = 0
# espeak's default amplitude (100) clips its own loudest vowels; 75 keeps the raw
# output clean and mastering restores the level anyway.
_VOLUME: Final = 75
_BUFFER_MS: Final = 500

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Library:
    """The process-wide libespeak-ng instance.

    The C library keeps its voice, parameters and callback in globals, so every use
    goes through ``lock`` and the callback writes into ``self._buffers``.
    """

    def __init__(self, library_path: str, data_path: str) -> None:
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as exc:
            raise EngineError(f"cannot load libespeak-ng from {library_path}: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EngineError(f"espeak_Initialize failed with data at {data_path}")
        self.lib = lib
        self.sample_rate: int = rate
        self.lock = threading.Lock()
        self._buffers: list[bytes] = []
        # Keep a reference: ctypes frees the trampoline if the Python object dies.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0 and wav:
            self._buffers.append(ctypes.string_at(wav, count * 2))
        return 0  # 0 = keep synthesising

    def synth(self, text: str, *, voice: str, rate: int, pitch: int) -> Samples:
        """Speak one chunk synchronously; the caller must hold ``lock``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EngineError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_VOLUME, _VOLUME)):
            if self.lib.espeak_SetParameter(param, value, 0) != _EE_OK:
                raise EngineError(f"espeak_SetParameter({param}, {value}) failed")
        data = text.encode("utf-8") + b"\0"
        self._buffers = []
        try:
            status = self.lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            if status != _EE_OK:
                raise EngineError(f"espeak_Synth failed with status {status}")
            pcm = np.frombuffer(b"".join(self._buffers), dtype=np.int16)
        finally:
            self._buffers = []
        return (pcm.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


_libraries: dict[tuple[str, str], _Library] = {}
_libraries_lock = threading.Lock()


def _library(library_path: str | None, data_path: str | None) -> _Library:
    import espeakng_loader

    lib_path = library_path or str(espeakng_loader.get_library_path())
    try:
        dat_path = data_path or str(espeakng_loader.get_data_path())
    except RuntimeError as exc:
        raise EngineError(str(exc)) from exc
    with _libraries_lock:
        if (lib_path, dat_path) not in _libraries:
            _libraries[(lib_path, dat_path)] = _Library(lib_path, dat_path)
        return _libraries[(lib_path, dat_path)]


class EspeakEngine:
    """Offline Vietnamese speech from libespeak-ng (22,050 Hz, robotic but always there).

    ``voice`` defaults to the requested language ("vi"); ``speed`` is words per minute
    (80-450); ``pitch`` is 0-100. Text is spoken in chunks of at most ``max_chars``
    cut at sentence boundaries. Calls are serialised process-wide because the C
    library is single-threaded; each runs in a worker thread. The library carries
    state from one utterance to the next, so repeated calls may differ by a few
    milliseconds: cache by input (``audio.mastering.cache_key``), not by output bytes.
    """

    name = "espeak"

    def __init__(
        self,
        *,
        voice: str | None = None,
        speed: int = 150,
        pitch: int = 50,
        max_chars: int = 400,
        library_path: str | None = None,
        data_path: str | None = None,
    ) -> None:
        if not 80 <= speed <= 450:
            raise ValueError("speed must be 80-450 words per minute")
        if not 0 <= pitch <= 100:
            raise ValueError("pitch must be 0-100")
        if max_chars < 20:
            raise ValueError("max_chars must be at least 20")
        self.voice = voice
        self.speed = speed
        self.pitch = pitch
        self.max_chars = max_chars
        self._library_path = library_path
        self._data_path = data_path

    async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
        """Speak ``text``; raises EngineError for blank text or a library failure."""
        chunks = split_sentences(text, self.max_chars)
        if not chunks:
            raise EngineError("nothing to speak")
        voice = self.voice or language
        return await asyncio.to_thread(self._synthesize_blocking, chunks, voice)

    def _synthesize_blocking(self, chunks: list[str], voice: str) -> Speech:
        library = _library(self._library_path, self._data_path)
        parts: list[Speech] = []
        with library.lock:
            for chunk in chunks:
                samples = library.synth(chunk, voice=voice, rate=self.speed, pitch=self.pitch)
                parts.append(Speech(samples, library.sample_rate, self.name, voice))
        if not any(p.samples.size for p in parts):
            raise EngineError("espeak-ng produced no audio")
        # espeak ends every chunk with its own sentence pause, so no extra gap.
        return concatenate(parts, engine=self.name, voice=voice)
