"""Loudness mastering (EBU R128, true-peak safe) and MP3/AAC/Opus encoding with PyAV."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol

import av
import numpy as np
import numpy.typing as npt
import pyloudnorm
from av.audio.stream import AudioStream

__all__ = [
    "MASTER_RATE",
    "Compression",
    "EncodedAudio",
    "EncodingSettings",
    "Master",
    "MasteringError",
    "MasteringSettings",
    "OutputFormat",
    "Pcm",
    "PcmLike",
    "Rendered",
    "SilentInputError",
    "Tags",
    "cache_key",
    "decode_audio",
    "encode",
    "integrated_loudness",
    "master",
    "render",
    "resample",
    "true_peak_dbtp",
]

from audio.store import fsync_directory

log = logging.getLogger(__name__)

MASTER_RATE: Final = 44_100
OPUS_RATE: Final = 48_000
_BLOCK_SECONDS: Final = 0.4  # BS.1770 gating block
_SILENCE_LUFS: Final = -70.0  # BS.1770 absolute gate
_SILENT_PEAK: Final = 1e-4  # -80 dBFS, under 16-bit dither: no programme there
_LOUDNESS_TOLERANCE_LU: Final = 0.1  # second-pass target accuracy
_MAX_PASSES: Final = 6
_LIMITER_BLOCK: Final = 32  # samples (0.7 ms)
_MP3_BITRATES: Final = frozenset({64, 80, 96, 112, 128})  # MPEG-1 Layer III steps in range
# Checking encodes: at most this many encodes per file, each retry with the encoder's
# input dipped (limiter-style, attack and release of about one codec frame) where the
# decoded file passed the limit, aiming this far under it so one retry usually suffices.
_MAX_ENCODES: Final = 5
_DIP_WINDOW_MS: Final = 20.0
_DIP_MARGIN_DB: Final = 0.3

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
OutputFormat = Literal["mp3", "aac", "opus"]


class MasteringError(ValueError):
    """The input cannot be mastered (bad shape, non-finite samples, bad settings)."""


class SilentInputError(MasteringError):
    """The input is empty, peaks below -80 dBFS, or has nothing over BS.1770's gate."""


class PcmLike(Protocol):
    """Mono PCM: what TTS engines return (``audio.tts.Speech`` fits) and mastering takes."""

    @property
    def samples(self) -> npt.NDArray[np.floating[Any]]: ...

    @property
    def sample_rate(self) -> int: ...


@dataclass(frozen=True, slots=True, eq=False)
class Pcm:
    """Mono float32 PCM at ``sample_rate``."""

    samples: F32
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Compression:
    """Downward compressor for outdoor horns, applied before loudness normalisation.

    ``threshold_db`` is in dBFS RMS (20 ms windows) *after* each part has been brought
    to the target loudness, so it sits at a fixed distance below the programme level
    whatever the input level was. Soft knee of ``knee_db``.
    """

    threshold_db: float = -18.0
    ratio: float = 2.5
    knee_db: float = 6.0
    attack_ms: float = 10.0
    release_ms: float = 150.0

    def __post_init__(self) -> None:
        if self.ratio < 1.0:
            raise MasteringError("compression ratio must be >= 1")
        if self.attack_ms <= 0 or self.release_ms <= 0 or self.knee_db < 0:
            raise MasteringError("attack/release must be positive and knee non-negative")


@dataclass(frozen=True, slots=True)
class MasteringSettings:
    """Targets and processing for :func:`master`.

    ``true_peak_ceiling_dbtp`` is the master's ceiling. It defaults to 1.5 dB below the
    -1 dBTP delivery limit because lossy encoders overshoot the master's true peak:
    on espeak-ng speech +0.3 to +0.65 dB on Opus at 32 kbit/s and up to +0.45 dB on
    AAC at 64 kbit/s, but Opus now and then by 2 dB or more in a single frame. So
    :func:`encode` also decodes every file and encodes again the few that pass
    ``EncodingSettings.true_peak_limit_dbtp``.
    """

    target_lufs: float = -16.0
    true_peak_ceiling_dbtp: float = -2.5
    compression: Compression | None = field(default_factory=Compression)
    limiter_window_ms: float = 8.0
    jingle_gain_db: float = -3.0  # music sits a little under the speech
    jingle_gap_seconds: float = 0.4
    heading_gap_seconds: float = 0.7
    # Silence at both ends: horn amplifiers switched on by the playout clip the first
    # syllable otherwise, and it keeps encoder priming away from speech.
    padding_seconds: float = 0.3

    def __post_init__(self) -> None:
        if not -40.0 <= self.target_lufs <= -5.0:
            raise MasteringError("target_lufs must be between -40 and -5")
        if not -20.0 <= self.true_peak_ceiling_dbtp <= 0.0:
            raise MasteringError("true_peak_ceiling_dbtp must be between -20 and 0")
        if not 1.0 <= self.limiter_window_ms <= 50.0:
            raise MasteringError("limiter_window_ms must be 1-50")


@dataclass(frozen=True, slots=True, eq=False)
class Master:
    """The mastered programme: mono float32 at 44.1 kHz plus its measurements."""

    samples: F32
    sample_rate: int
    integrated_lufs: float
    true_peak_dbtp: float

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Tags:
    """Metadata written to MP3 (ID3v2.3) and Ogg (Vorbis comments); ADTS has none."""

    title: str
    commune: str
    date: date


@dataclass(frozen=True, slots=True)
class EncodingSettings:
    """Which files :func:`encode` writes, their bit rates (kbit/s) and peak limit.

    ``true_peak_limit_dbtp`` is what every decoded file must meet: 0.5 dB under the
    -1 dBTP delivery limit, so that other meters (FFmpeg's, a broadcaster's) and
    other decoders agree that it does.
    """

    formats: tuple[OutputFormat, ...] = ("mp3", "aac", "opus")
    mp3_bitrate_kbps: int = 96
    aac_bitrate_kbps: int = 64
    opus_bitrate_kbps: int = 32
    true_peak_limit_dbtp: float = -1.5

    def __post_init__(self) -> None:
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise MasteringError("formats must be a non-empty tuple without repeats")
        if any(f not in _CODECS for f in self.formats):
            raise MasteringError(f"formats must be among {sorted(_CODECS)}")
        if self.mp3_bitrate_kbps not in _MP3_BITRATES:
            raise MasteringError(f"mp3_bitrate_kbps must be one of {sorted(_MP3_BITRATES)}")
        if not 32 <= self.aac_bitrate_kbps <= 192:
            raise MasteringError("aac_bitrate_kbps must be 32-192")
        if not 16 <= self.opus_bitrate_kbps <= 128:
            raise MasteringError("opus_bitrate_kbps must be 16-128")
        if not -20.0 <= self.true_peak_limit_dbtp <= 0.0:
            raise MasteringError("true_peak_limit_dbtp must be between -20 and 0")

    def bitrate_kbps(self, fmt: OutputFormat) -> int:
        return {
            "mp3": self.mp3_bitrate_kbps,
            "aac": self.aac_bitrate_kbps,
            "opus": self.opus_bitrate_kbps,
        }[fmt]


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One written file. Loudness and true peak are the master's (before encoding);
    ``decoded_true_peak_dbtp`` is the file's own, decoded, as :func:`encode` checked it."""

    path: Path
    format: OutputFormat
    mime_type: str
    sha256: str
    size_bytes: int
    duration_seconds: float
    bitrate_kbps: int
    sample_rate: int
    integrated_lufs: float
    true_peak_dbtp: float
    decoded_true_peak_dbtp: float


@dataclass(frozen=True, slots=True)
class Rendered:
    """What :func:`render` produced: the master and one file per requested format."""

    master: Master
    outputs: tuple[EncodedAudio, ...]

    def output(self, fmt: OutputFormat) -> EncodedAudio:
        """The output in ``fmt``; KeyError if it was not requested."""
        for candidate in self.outputs:
            if candidate.format == fmt:
                return candidate
        raise KeyError(fmt)


@dataclass(frozen=True, slots=True)
class _Codec:
    container: str
    codec: str
    extension: str
    mime_type: str
    sample_rate: int
    options: Mapping[str, str] = field(default_factory=dict)
    # Samples a decoder gives before the first input sample: ADTS cannot say "skip the
    # priming", while LAME's Info tag and Ogg's pre-skip let decoders trim theirs.
    decoder_delay: int = 0
    # Gain before encoding that makes up for a fixed level change in the codec.
    makeup_db: float = 0.0


_CODECS: Final[Mapping[str, _Codec]] = {
    # LAME quality 7 encodes ~2x faster than its default with no audible loss on
    # speech at 96 kbit/s (and slightly less peak overshoot). LAME's files decode at
    # 0.95x the input (-0.446 dB) at every frequency, level and quality setting, with
    # FFmpeg's float and fixed-point decoders alike: made up so MP3 is not 0.45 LU low.
    "mp3": _Codec(
        "mp3",
        "libmp3lame",
        ".mp3",
        "audio/mpeg",
        MASTER_RATE,
        {"compression_level": "7"},
        makeup_db=0.446,
    ),
    # Raw ADTS for Zalo, which fetches voice messages by an .aac URL. The "fast" coder
    # is 3x quicker than "twoloop" and overshoots peaks less.
    "aac": _Codec(
        "adts",
        "aac",
        ".aac",
        "audio/aac",
        MASTER_RATE,
        {"aac_coder": "fast"},
        decoder_delay=1024,
    ),
    # Telegram voice notes must be Opus in Ogg; Opus runs at 48 kHz. "audio" rather
    # than "voip": voip's speech emphasis overshoots true peak by ~0.5 dB more.
    "opus": _Codec("ogg", "libopus", ".ogg", "audio/ogg", OPUS_RATE, {"application": "audio"}),
}
_FLOAT_FORMATS: Final = frozenset({"flt", "fltp"})  # one channel: the same layout
# ID3v2.3 rather than FFmpeg's default 2.4: older phones and players read only 2.3.
_CONTAINER_OPTIONS: Final[Mapping[str, dict[str, str]]] = {"mp3": {"id3v2_version": "3"}}


# --------------------------------------------------------------------------- measurement


def integrated_loudness(samples: npt.NDArray[np.floating[Any]], sample_rate: int) -> float:
    """Integrated loudness in LUFS (BS.1770-4 via pyloudnorm); -inf for silence.

    Input shorter than one 400 ms gating block is measured padded with silence.
    """
    x = np.asarray(samples, dtype=np.float64)
    minimum = math.ceil(_BLOCK_SECONDS * sample_rate) + 1
    if len(x) < minimum:
        x = np.concatenate([x, np.zeros(minimum - len(x))])
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def _interpolation_phases(factor: int = 4, half_taps: int = 12) -> list[F64]:
    # Kaiser-windowed sinc, 24 taps per phase (BS.1770-4 Annex 2 uses 12): each phase
    # p gives the signal at n + p/factor. Phase 0 would be the samples themselves.
    n = np.arange(-half_taps * factor, half_taps * factor + 1)
    h = np.sinc(n / factor) * np.kaiser(len(n), 8.0)
    phases = []
    for p in range(1, factor):
        taps = h[p::factor][: 2 * half_taps]
        phases.append(taps / taps.sum())
    return phases


_PHASES: Final = _interpolation_phases()
_HALF_TAPS: Final = 12


def _oversampled_abs(x: F64) -> F64:
    """Per-sample max of |x| over the sample and the interpolated points on both sides."""
    env = np.abs(x)
    for taps in _PHASES:
        # Full convolution then slice: y[j] is the value at j + p/4.
        y = np.abs(np.convolve(x, taps)[_HALF_TAPS : _HALF_TAPS + len(x)])
        np.maximum(env, y, out=env)
        np.maximum(env[1:], y[:-1], out=env[1:])
    return env


# An interpolated point is at most this many times the largest sample under its taps.
_PHASE_GAIN: Final = max(float(np.abs(taps).sum()) for taps in _PHASES)  # 2.2 (+6.9 dB)
_SCREEN_BLOCK: Final = 64  # samples; more than the taps reach on either side


def _envelope_above(x: F64, floor: float) -> F64:
    """:func:`_oversampled_abs` wherever it can reach ``floor``; |x| (under it) elsewhere.

    Only blocks whose neighbourhood peaks above floor / _PHASE_GAIN need the filters:
    with ``floor`` near the peak, about a third of speech. They are filtered in one
    pass over their concatenation, so the result there is the same, bit for bit.
    """
    n = len(x)
    env = np.abs(x)
    block = _SCREEN_BLOCK
    n_blocks = -(-n // block)
    padded = np.zeros(n_blocks * block)
    padded[:n] = env
    peaks = padded.reshape(n_blocks, block).max(axis=1)
    near = peaks.copy()
    np.maximum(near[1:], peaks[:-1], out=near[1:])
    np.maximum(near[:-1], peaks[1:], out=near[:-1])
    flags = (near * _PHASE_GAIN >= floor).astype(np.int8)
    edges = np.flatnonzero(np.diff(flags, prepend=0, append=0)) * block
    if not edges.size:
        return env
    starts, ends = edges[::2], np.minimum(edges[1::2], n)
    # Each run with the samples its taps reach; only the first and last can lack some,
    # at the ends of x, where they get the same zeros as the full computation.
    lows, highs = np.maximum(starts - _HALF_TAPS, 0), np.minimum(ends + _HALF_TAPS, n)
    filtered = _oversampled_abs(
        np.concatenate([x[lo:hi] for lo, hi in zip(lows, highs, strict=True)])
    )
    lengths = ends - starts
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    offsets = np.cumsum(highs - lows) - (highs - lows) + (starts - lows)
    env[np.repeat(starts, lengths) + within] = filtered[np.repeat(offsets, lengths) + within]
    return env


def true_peak_dbtp(samples: npt.NDArray[np.floating[Any]]) -> float:
    """True peak in dBTP by 4x oversampling (BS.1770-4 method); -inf for digital silence.

    Accurate to ~0.01 dB for content below 0.45 x the sample rate; like any meter it
    also reports the (real) overshoot of an abrupt start or end.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    # The true peak is at least the sample peak: quieter stretches cannot hold it.
    peak = float(_envelope_above(x, float(np.abs(x).max())).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


# --------------------------------------------------------------------------- processing


def _db(gain: float) -> float:
    return math.pow(10.0, gain / 20.0)


def _as_mono_f64(pcm: PcmLike, what: str) -> F64:
    x = np.asarray(pcm.samples)
    if x.ndim != 1:
        raise MasteringError(f"{what} must be mono (a 1-D array), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise MasteringError(f"{what} must be floating-point PCM in [-1, 1]")
    if pcm.sample_rate < 8000:
        raise MasteringError(f"{what} sample rate {pcm.sample_rate} Hz is too low")
    if x.size == 0:
        raise SilentInputError(f"{what} is empty")
    if not np.all(np.isfinite(x)):
        raise MasteringError(f"{what} holds NaN or infinite samples")
    return resample(x.astype(np.float32), pcm.sample_rate, MASTER_RATE).astype(np.float64)


def resample(samples: F32, rate: int, target: int) -> F32:
    """Resample mono float32 PCM with FFmpeg's swresample (through PyAV)."""
    if rate == target:
        return samples
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    out: list[F32] = []
    step = 1 << 16
    for start in range(0, len(samples), step):
        chunk = np.ascontiguousarray(samples[start : start + step], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.extend(_frame_samples(f) for f in resampler.resample(frame))
    out.extend(_frame_samples(f) for f in resampler.resample(None))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _frame_samples(frame: av.AudioFrame) -> F32:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def _normalised(x: F64, target_lufs: float, what: str) -> F64:
    peak = float(np.max(np.abs(x)))
    if peak < _SILENT_PEAK:
        raise SilentInputError(f"{what} is silent (peak below -80 dBFS)")
    # Peak-normalise first: a very quiet recording would otherwise fall under
    # BS.1770's -70 LUFS absolute gate and measure as silence.
    x = x * (0.5 / peak)
    loudness = integrated_loudness(x, MASTER_RATE)
    if not math.isfinite(loudness) or loudness < _SILENCE_LUFS:
        raise SilentInputError(f"{what} is silent (below {_SILENCE_LUFS:g} LUFS at full scale)")
    return x * _db(target_lufs - loudness)


def _compress(x: F64, c: Compression) -> F64:
    """Feed-forward RMS compressor on 5 ms blocks; block gains are interpolated per sample."""
    block = MASTER_RATE // 200
    n_blocks = -(-len(x) // block)
    padded = np.zeros(n_blocks * block)
    padded[: len(x)] = x
    mean_square = np.mean(padded.reshape(n_blocks, block) ** 2, axis=1)
    mean_square = np.convolve(mean_square, np.ones(4) / 4, mode="same")  # 20 ms RMS
    level = 10.0 * np.log10(mean_square + 1e-12)
    over = level - c.threshold_db
    slope = 1.0 / c.ratio - 1.0
    half = c.knee_db / 2.0
    target_gain = np.where(
        over <= -half,
        0.0,
        # (``or 1``: np.where evaluates every branch, even the knee one a zero knee never uses)
        np.where(over >= half, slope * over, slope * (over + half) ** 2 / (2 * c.knee_db or 1)),
    )
    dt = block / MASTER_RATE
    attack = math.exp(-dt / (c.attack_ms / 1000.0))
    release = math.exp(-dt / (c.release_ms / 1000.0))
    smoothed = np.empty(n_blocks)
    state = 0.0
    # Sequential by nature (attack vs release depends on the running state); a few
    # thousand iterations per minute of audio.
    for i, wanted in enumerate(target_gain.tolist()):
        coeff = attack if wanted < state else release
        state = coeff * state + (1.0 - coeff) * wanted
        smoothed[i] = state
    centres = np.arange(n_blocks) * block + (block - 1) / 2
    # Interpolate linear gain (not dB) so the power of ten runs per block, not per sample.
    gain = np.interp(np.arange(len(x)), centres, 10.0 ** (smoothed / 20.0))
    compressed: F64 = x * gain
    return compressed


def _forward_min(r: F64, window: int) -> F64:
    """min(r[n : n + window]) for every n (van Herk/Gil-Werman, vectorised)."""
    n = len(r)
    blocks = -(-(n + window) // window)
    padded = np.ones(blocks * window)
    padded[:n] = r
    shaped = padded.reshape(blocks, window)
    prefix = np.minimum.accumulate(shaped, axis=1).reshape(-1)
    suffix = np.minimum.accumulate(shaped[:, ::-1], axis=1)[:, ::-1].reshape(-1)
    result: F64 = np.minimum(suffix[:n], prefix[window - 1 : window - 1 + n])
    return result


def _limiter_gain(env: F64, ceiling_dbtp: float, window: int) -> F64 | None:
    """Gain curve of a look-ahead true-peak limiter, or None if nothing passes the ceiling.

    ``env`` is the oversampled peak envelope (:func:`_oversampled_abs`). The needed
    gain r = ceiling / env is reduced to minima over 32-sample blocks (widened by one
    block each side); a forward minimum over the window followed by a moving average
    of the same length gives block gains that are never above r anywhere in their
    own or the neighbouring blocks (every averaged term covers them), so the
    per-sample linear interpolation between block centres stays under r too: no
    sample or inter-sample peak passes the ceiling. Attack and release take
    ``window`` samples (rounded up to blocks). Working on blocks keeps this ~10x
    cheaper than per-sample running minima.
    """
    ceiling = _db(ceiling_dbtp)
    if float(env.max()) <= ceiling:
        return None
    block = _LIMITER_BLOCK
    n_blocks = -(-len(env) // block)
    needed = np.ones(n_blocks * block)
    needed[: len(env)] = np.minimum(1.0, ceiling / np.maximum(env, 1e-12))
    per_block = needed.reshape(n_blocks, block).min(axis=1)
    widened = per_block.copy()
    np.minimum(widened[1:], per_block[:-1], out=widened[1:])
    np.minimum(widened[:-1], per_block[1:], out=widened[:-1])
    span = -(-window // block)
    held = _forward_min(widened, span)
    csum = np.concatenate([np.zeros(span), np.cumsum(np.concatenate([np.ones(span), held]))])
    # Mean of held[k - span + 1 .. k], with ones (no reduction) before the start.
    smoothed = (csum[2 * span : 2 * span + n_blocks] - csum[span : span + n_blocks]) / span
    centres = np.arange(n_blocks) * block + (block - 1) / 2
    gain: F64 = np.interp(np.arange(len(env)), centres, smoothed)
    return gain


def _k_weighted_power(x: F64) -> F64:
    # BS.1770 K-weighting built from pyloudnorm's own filter class and parameters.
    y = x
    for stage in (
        pyloudnorm.IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, MASTER_RATE, "high_shelf"),
        pyloudnorm.IIRfilter(0.0, 0.5, 38.0, MASTER_RATE, "high_pass"),
    ):
        y = stage.apply_filter(y)
    power: F64 = np.square(y)
    return power


def _gated_loudness(power: F64) -> float:
    """BS.1770-4 gated loudness of K-weighted power, vectorised (400 ms blocks, 75 %).

    Agrees with pyloudnorm to 0.001 LU beyond a few seconds; pyloudnorm counts a last
    partial block that this does not, which matters only for sub-second input.
    """
    block = round(_BLOCK_SECONDS * MASTER_RATE)
    hop = block // 4
    if len(power) < block:
        power = np.concatenate([power, np.zeros(block - len(power))])
    csum = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, len(power) - block + 1, hop)
    z = (csum[starts + block] - csum[starts]) / block
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10.0 * np.log10(z)
    z = z[levels >= _SILENCE_LUFS]
    levels = levels[levels >= _SILENCE_LUFS]
    if not z.size:
        return -math.inf
    relative_gate = -0.691 + 10.0 * math.log10(float(z.mean())) - 10.0
    gated = z[levels > relative_gate]
    return -0.691 + 10.0 * math.log10(float(gated.mean()))


def _normalise_and_limit(programme: F64, s: MasteringSettings) -> tuple[F64, float]:
    """Two-pass loudness normalisation under a true-peak limiter; returns (out, LUFS).

    Pass one measures with pyloudnorm. The gain that lands on target once the limiter
    has shaved the peaks is then found by secant steps on a fast estimate: the
    limiter's gain moves slowly, so K-weighting(x * g) ~ K-weighting(x) * g and the
    filtered signal is reused. The result is re-measured with pyloudnorm and the
    estimate re-calibrated if the two disagree by more than the tolerance.
    """
    target = s.target_lufs
    window = max(1, round(s.limiter_window_ms / 1000.0 * MASTER_RATE))
    measured = integrated_loudness(programme, MASTER_RATE)
    power = _k_weighted_power(programme)
    env = _oversampled_abs(programme)  # scales with the gain, so computed once
    offset = measured - _gated_loudness(power)  # fast estimate vs pyloudnorm, ~0
    gain_db = target - measured
    out, loudness = programme, measured
    for _verification in range(3):
        curve = np.ones(1)
        previous: tuple[float, float] | None = None
        for passes in range(1, _MAX_PASSES + 1):
            gain = _db(gain_db)
            # 0.01 dB of margin: the moving gain itself nudges inter-sample peaks ~1e-3 dB.
            limiter = _limiter_gain(env * gain, s.true_peak_ceiling_dbtp - 0.01, window)
            curve = np.full(1, gain) if limiter is None else limiter * gain
            estimate = _gated_loudness(power * np.square(curve)) + offset
            log.debug("limiter pass %d: gain %+.2f dB -> ~%.2f LUFS", passes, gain_db, estimate)
            if abs(estimate - target) <= _LOUDNESS_TOLERANCE_LU / 2:
                break
            # Limiting makes loudness grow by less than 1 LU per dB of gain (about 0.6
            # on speech): secant steps from that guess, slope clamped to a sane range.
            slope = 0.6
            if previous is not None and gain_db != previous[0]:
                slope = min(1.0, max(0.2, (estimate - previous[1]) / (gain_db - previous[0])))
            previous = (gain_db, estimate)
            gain_db += (target - estimate) / slope
        out = programme * curve
        loudness = integrated_loudness(out, MASTER_RATE)
        log.debug("verified: %.3f LUFS (estimate %.3f)", loudness, estimate)
        if abs(loudness - target) <= _LOUDNESS_TOLERANCE_LU:
            break
        offset += loudness - estimate
    return out, loudness


def master(
    body: PcmLike,
    *,
    heading: PcmLike | None = None,
    jingle: PcmLike | Path | None = None,
    settings: MasteringSettings | None = None,
) -> Master:
    """Master speech to 44.1 kHz mono at the target loudness under the true-peak ceiling.

    Order: [padding] jingle, gap, heading, gap, body [padding]. Each part is first
    brought to the target loudness, then the programme is compressed (unless
    ``settings.compression`` is None), normalised and true-peak limited, re-measured
    and corrected to within 0.1 LU. ``jingle`` may be PCM or an audio file path.
    Any level works down to a -80 dBFS peak; parts that are empty or peak below that
    raise SilentInputError. Stereo, integer or non-finite input raises
    MasteringError. Any length works (input under 0.4 s is measured padded with
    silence). Material whose peaks would need more than six limiter passes
    (pathological crest factors) ends below target: check ``integrated_lufs``.
    CPU-bound, ~1 s per minute of audio: run it in a worker thread from async code.
    """
    s = settings or MasteringSettings()
    parts: list[F64] = []
    if jingle is not None:
        jingle_pcm = decode_audio(jingle) if isinstance(jingle, Path) else jingle
        parts.append(
            _normalised(_as_mono_f64(jingle_pcm, "jingle"), s.target_lufs, "jingle")
            * _db(s.jingle_gain_db)
        )
        parts.append(np.zeros(round(s.jingle_gap_seconds * MASTER_RATE)))
    if heading is not None:
        parts.append(_normalised(_as_mono_f64(heading, "heading"), s.target_lufs, "heading"))
        parts.append(np.zeros(round(s.heading_gap_seconds * MASTER_RATE)))
    parts.append(_normalised(_as_mono_f64(body, "body"), s.target_lufs, "body"))
    pad = np.zeros(round(s.padding_seconds * MASTER_RATE))
    programme = np.concatenate([pad, *parts, pad])

    if s.compression is not None:
        programme = _compress(programme, s.compression)

    out, loudness = _normalise_and_limit(programme, s)
    peak = true_peak_dbtp(out)
    if peak > s.true_peak_ceiling_dbtp:
        # Not expected (the limiter keeps 0.01 dB of margin); trim rather than fail.
        out = out * _db(s.true_peak_ceiling_dbtp - peak)
        loudness = integrated_loudness(out, MASTER_RATE)
        peak = true_peak_dbtp(out)
    return Master(
        samples=out.astype(np.float32),
        sample_rate=MASTER_RATE,
        integrated_lufs=loudness,
        true_peak_dbtp=peak,
    )


# --------------------------------------------------------------------------- encoding

_BASENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def encode(
    programme: Master,
    out_dir: Path,
    *,
    basename: str,
    tags: Tags,
    settings: EncodingSettings | None = None,
) -> tuple[EncodedAudio, ...]:
    """Write ``basename``.mp3/.aac/.ogg into ``out_dir``, each atomically, in parallel.

    MP3 is CBR at 44.1 kHz with ID3v2.3 title/artist/album/date; AAC-LC is raw ADTS at
    44.1 kHz (no tags: ADTS has no place for them); Opus is Ogg at 48 kHz with Vorbis
    comments. Every file is decoded and its true peak measured before it is written;
    one over ``settings.true_peak_limit_dbtp`` is encoded again with the gain dipped
    for some tens of milliseconds where it overshot (loudness moves by hundredths of
    a LU at most), up to five encodes; should that fail, the lowest-peaked one is
    written and an error logged.
    Files appear complete or not at all (temp file, fsync, os.replace) and replace
    same-named files. ``duration_seconds`` is the programme's; decoders give the same
    within a frame, except that ADTS keeps the encoder's ~0.05 s priming. One thread
    per format: FFmpeg encoders release the GIL.
    """
    s = settings or EncodingSettings()
    if not _BASENAME.match(basename):
        raise MasteringError("basename must be 1-128 of [A-Za-z0-9._-], not starting with . or -")
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(fmt: OutputFormat) -> EncodedAudio:
        return _encode_file(
            programme, out_dir / basename, fmt, s.bitrate_kbps(fmt), tags, s.true_peak_limit_dbtp
        )

    with ThreadPoolExecutor(max_workers=len(s.formats), thread_name_prefix="encode") as pool:
        return tuple(pool.map(one, s.formats))


def _encode_file(
    programme: Master,
    stem: Path,
    fmt: OutputFormat,
    bitrate_kbps: int,
    tags: Tags,
    limit_dbtp: float,
) -> EncodedAudio:
    codec = _CODECS[fmt]
    path = stem.with_name(stem.name + codec.extension)
    data, decoded_peak = _encode_checked(programme, codec, bitrate_kbps, tags, fmt, limit_dbtp)
    _write_atomically(path, data)
    return EncodedAudio(
        path=path,
        format=fmt,
        mime_type=codec.mime_type,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        duration_seconds=programme.duration_seconds,
        bitrate_kbps=bitrate_kbps,
        sample_rate=codec.sample_rate,
        integrated_lufs=programme.integrated_lufs,
        true_peak_dbtp=programme.true_peak_dbtp,
        decoded_true_peak_dbtp=decoded_peak,
    )


def _encode_checked(
    programme: Master,
    codec: _Codec,
    bitrate_kbps: int,
    tags: Tags,
    fmt: str,
    limit_dbtp: float,
) -> tuple[bytes, float]:
    """Encode until the decoded true peak meets ``limit_dbtp``; (file, its true peak).

    Lossy codecs reshape the waveform, so the decoded file peaks above the master:
    by tenths of a dB as a rule, but libopus at 32 kbit/s lets a frame out 2 dB (and
    more) hotter now and then, depending on the input down to the last sample. A
    lower ceiling for every programme would cost loudness on all of them; measuring
    the real output catches the rare frame whatever its cause. The dip comes from
    the master's own limiter, driven by the decoded envelope mapped back onto the
    encoder's input (shifted by the decoder's delay).
    """
    samples = resample(programme.samples, programme.sample_rate, codec.sample_rate)
    x = samples.astype(np.float64) * _db(codec.makeup_db)
    window = max(1, round(_DIP_WINDOW_MS / 1000.0 * codec.sample_rate))
    dip_target_dbtp = limit_dbtp - _DIP_MARGIN_DB
    attempts: list[tuple[float, bytes]] = []
    while True:
        with io.BytesIO() as buffer:
            _encode_to(buffer, x.astype(np.float32), codec, bitrate_kbps, tags, fmt)
            data = buffer.getvalue()
        decoded = decode_audio(data).samples.astype(np.float64)
        # Exact where it matters: at the peak and wherever a dip would be needed.
        floor = min(float(np.abs(decoded).max(initial=0.0)), _db(dip_target_dbtp))
        env = _envelope_above(decoded, floor)
        peak = 20.0 * math.log10(max(float(env.max(initial=0.0)), 1e-12))
        attempts.append((peak, data))
        if peak <= limit_dbtp:
            if len(attempts) > 1:
                log.info("%s: %.2f dBTP decoded after %d encodes", fmt, peak, len(attempts))
            return data, peak
        if len(attempts) == _MAX_ENCODES:
            break
        log.info("%s: %.2f dBTP decoded, over %.2f: dipping the gain there", fmt, peak, limit_dbtp)
        dip = _limiter_gain(_aligned(env, codec.decoder_delay, len(x)), dip_target_dbtp, window)
        if dip is not None:
            x = x * dip
    peak, data = min(attempts, key=lambda attempt: attempt[0])
    log.error(
        "%s: still %.2f dBTP decoded after %d encodes (limit %.2f); writing that",
        fmt, peak, _MAX_ENCODES, limit_dbtp,
    )  # fmt: skip
    return data, peak


def _aligned(env: F64, delay: int, n: int) -> F64:
    """``env`` of a decoded file on the encoder input's ``n`` samples.

    What the decoder gives before (priming) or after (padding, ringing) the input is
    folded onto the first or last sample, so a peak there still gets a dip.
    """
    out = np.zeros(n)
    body = env[delay : delay + n]
    out[: len(body)] = body
    out[0] = max(out[0], float(env[:delay].max(initial=0.0)))
    out[-1] = max(out[-1], float(env[delay + n :].max(initial=0.0)))
    return out


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def _encode_to(
    fh: BinaryIO, samples: F32, codec: _Codec, bitrate_kbps: int, tags: Tags, fmt: str
) -> None:
    with av.open(
        fh,
        mode="w",
        format=codec.container,
        container_options=dict(_CONTAINER_OPTIONS.get(fmt, {})),
    ) as container:
        if codec.container != "adts":
            container.metadata.update(
                {
                    "title": tags.title,
                    "artist": tags.commune,
                    "album": tags.commune,
                    "date": tags.date.isoformat(),
                }
            )
        stream = container.add_stream(
            codec.codec, rate=codec.sample_rate, options=dict(codec.options)
        )
        if not isinstance(stream, AudioStream):
            raise MasteringError(f"{codec.codec} is not an audio encoder")
        stream.codec_context.layout = "mono"
        stream.codec_context.bit_rate = bitrate_kbps * 1000
        for packet in _encode_frames(stream, samples, codec.sample_rate):
            container.mux(packet)


def _encode_frames(
    stream: AudioStream, samples: F32, rate: int
) -> Iterator[av.Packet[AudioStream]]:
    step = 4096
    for start in range(0, len(samples), step):
        chunk = np.ascontiguousarray(samples[start : start + step])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield from stream.encode(frame)
    yield from stream.encode(None)


def decode_audio(source: Path | bytes) -> Pcm:
    """Decode any FFmpeg-readable file or blob to mono float32 PCM at its own rate.

    Multichannel input is down-mixed by FFmpeg. Raises MasteringError if unreadable.
    """
    pieces: list[F32] = []
    try:
        with av.open(
            str(source) if isinstance(source, Path) else io.BytesIO(source), mode="r"
        ) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                if (
                    frame.format.name in _FLOAT_FORMATS
                    and frame.layout.nb_channels == 1
                    and frame.sample_rate == rate
                ):
                    # Already what we want (MP3, AAC and Opus decoders give mono float):
                    # skipping the resampler halves the decode time of encode()'s checks.
                    pieces.append(
                        np.frombuffer(memoryview(frame.planes[0]), np.float32, frame.samples)
                    )
                else:
                    pieces.extend(_frame_samples(f) for f in resampler.resample(frame))
            pieces.extend(_frame_samples(f) for f in resampler.resample(None))
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise MasteringError(f"cannot decode audio: {exc}") from exc
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Pcm(samples, rate)


def render(
    body: PcmLike,
    out_dir: Path,
    *,
    basename: str,
    tags: Tags,
    heading: PcmLike | None = None,
    jingle: PcmLike | Path | None = None,
    mastering: MasteringSettings | None = None,
    encoding: EncodingSettings | None = None,
) -> Rendered:
    """:func:`master` then :func:`encode`; same limits and errors as those."""
    programme = master(body, heading=heading, jingle=jingle, settings=mastering)
    outputs = encode(programme, out_dir, basename=basename, tags=tags, settings=encoding)
    return Rendered(programme, outputs)


# --------------------------------------------------------------------------- caching


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (date, Path)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def cache_key(text: str, engine_name: str, voice: str, settings: object) -> str:
    """SHA-256 hex over canonical JSON of the inputs that determine the audio.

    Text is NFC-normalised (Vietnamese arrives both composed and decomposed) and
    ``settings`` may be a mapping or dataclasses (e.g. MasteringSettings); key order
    does not matter. Raises TypeError for values JSON cannot represent.
    """
    document = {
        "v": 1,
        "text": unicodedata.normalize("NFC", text),
        "engine": engine_name,
        "voice": voice,
        "settings": _canonical(settings),
    }
    payload = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
