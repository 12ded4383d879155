"""The TTS engine protocol, its result type, errors and the engine registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from audio.tts.chunks import split_sentences

__all__ = [
    "EngineError",
    "EngineFactory",
    "Samples",
    "Speech",
    "TtsEngine",
    "available",
    "concatenate",
    "create",
    "register",
    "split_sentences",
]

Samples = npt.NDArray[np.float32]


class EngineError(RuntimeError):
    """A TTS engine could not produce speech (network, library, bad input)."""


@dataclass(frozen=True, slots=True, eq=False)
class Speech:
    """Synthesised speech as mono float32 PCM in [-1, 1].

    ``engine`` names the engine that actually spoke (after any fallback) and
    ``fallback_reason`` says why the preferred engine was skipped, if it was.
    """

    samples: Samples
    sample_rate: int
    engine: str
    voice: str
    chunks: int = 1
    fallback_reason: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.float32:
            raise ValueError("Speech samples must be a 1-D float32 array")
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@runtime_checkable
class TtsEngine(Protocol):
    """Anything that turns text into :class:`Speech`.

    Implementations must not block the event loop and must raise
    :class:`EngineError` (never a library-specific exception) when they fail.
    """

    name: str

    async def synthesize(self, text: str, *, language: str = "vi") -> Speech: ...


def concatenate(
    parts: Sequence[Speech], *, gap_seconds: float = 0.0, engine: str, voice: str
) -> Speech:
    """Join chunk results (all at one sample rate) with ``gap_seconds`` of silence."""
    if not parts:
        raise EngineError("no speech to join")
    rate = parts[0].sample_rate
    if any(p.sample_rate != rate for p in parts):
        raise EngineError("chunks came back at different sample rates")
    gap = np.zeros(round(gap_seconds * rate), dtype=np.float32)
    pieces: list[Samples] = []
    for i, part in enumerate(parts):
        if i and gap.size:
            pieces.append(gap)
        pieces.append(part.samples)
    return Speech(
        samples=np.concatenate(pieces).astype(np.float32, copy=False),
        sample_rate=rate,
        engine=engine,
        voice=voice,
        chunks=sum(p.chunks for p in parts),
    )


EngineFactory = Callable[..., TtsEngine]

_registry: dict[str, EngineFactory] = {}
_registry_lock = threading.Lock()


def register(name: str, factory: EngineFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``create(name, ...)``.

    Raises ValueError if the name is taken, unless ``replace`` is true.
    """
    with _registry_lock:
        if name in _registry and not replace:
            raise ValueError(f"TTS engine {name!r} is already registered")
        _registry[name] = factory


def create(name: str, **options: Any) -> TtsEngine:
    """Build the engine registered as ``name`` with keyword ``options``.

    Raises LookupError for an unknown name; the factory's own errors
    (ValueError, TypeError for bad options) pass through.
    """
    with _registry_lock:
        factory = _registry.get(name)
    if factory is None:
        raise LookupError(f"unknown TTS engine {name!r}; available: {', '.join(available())}")
    return factory(**options)


def available() -> list[str]:
    """Names of the registered engines, sorted."""
    with _registry_lock:
        return sorted(_registry)
