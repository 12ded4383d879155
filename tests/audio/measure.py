"""Independent audio meters for tests: PyAV decoding, pyloudnorm, FFmpeg's ebur128, MP3 frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyloudnorm

from audio import mastering

DELIVERY_TRUE_PEAK = -1.0  # dBTP every decoded file must meet
# The codecs' lowpass shifts K-weighted loudness by up to ~0.5 LU; delivery allows 1.
LOUDNESS_TOLERANCE = 1.0
TARGET_LUFS = -16.0


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float64, mono
    sample_rate: int
    container: str
    codec: str
    channels: int
    bit_rate: int | None
    metadata: dict[str, str]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(path: Path) -> Decoded:
    """Decode with PyAV, without any help from audio.mastering."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        channels = ctx.layout.nb_channels
        pieces = [frame.to_ndarray().astype(np.float64) for frame in container.decode(stream)]
        # Ogg keeps its comments (OpusTags) on the stream, MP3's ID3 is container-wide.
        metadata = {**container.metadata, **stream.metadata}
        container_name = container.format.name
    data = np.concatenate(pieces, axis=1)  # (channels, samples) for planar formats
    if data.shape[0] != channels:  # packed formats come as (1, samples * channels)
        data = data.reshape(-1, channels).T
    return Decoded(
        data[0], ctx.sample_rate, container_name, ctx.name, channels, ctx.bit_rate, metadata
    )


def pyloudnorm_lufs(samples: np.ndarray, rate: int) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(np.asarray(samples, np.float64)))


def ffmpeg_ebur128(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) from FFmpeg's ebur128 filter (peak=true)."""
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        sample_rate=rate, format="flt", layout="mono", time_base=Fraction(1, rate)
    )
    meter = graph.add("ebur128", "peak=true:metadata=1")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    peak, integrated = 0.0, math.nan

    def drain() -> None:
        nonlocal peak, integrated
        while True:
            try:
                frame = sink.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            # FFmpeg publishes the true peak as a linear value, the loudness in LUFS.
            peak = max(peak, float(frame.metadata.get("lavfi.r128.true_peak", 0.0)))
            integrated = float(frame.metadata.get("lavfi.r128.I", integrated))

    x = np.ascontiguousarray(samples, dtype=np.float32)
    for start in range(0, len(x), 4800):
        frame = av.AudioFrame.from_ndarray(
            x[start : start + 4800].reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        source.push(frame)
        drain()
    source.push(None)
    drain()
    return integrated, 20 * math.log10(peak) if peak > 0 else -math.inf


def mp3_frames(data: bytes) -> list[tuple[int, int, int]]:
    """(bitrate kbps, sample rate, channel mode) of every MPEG-1 Layer III frame."""
    pos = 0
    if data[:3] == b"ID3":  # skip the ID3v2 tag; its size is "syncsafe" (7 bits a byte)
        size = data[6:10]
        pos = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    bitrates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    rates = [44100, 48000, 32000]
    frames = []
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        if header >> 21 != 0x7FF:
            break
        assert (header >> 19) & 3 == 3 and (header >> 17) & 3 == 1  # MPEG-1, Layer III
        kbps, rate = bitrates[(header >> 12) & 0xF], rates[(header >> 10) & 3]
        frames.append((kbps, rate, (header >> 6) & 3))
        pos += 144_000 * kbps // rate + ((header >> 9) & 1)
    assert pos == len(data) or data[pos : pos + 3] == b"TAG", "trailing garbage after MP3 frames"
    return frames


@dataclass(frozen=True)
class Delivery:
    """What the meters say about one delivered file."""

    decoded: Decoded
    lufs: float  # pyloudnorm
    ebur128_lufs: float
    ebur128_peak_dbtp: float
    own_peak_dbtp: float  # audio.mastering's meter, cross-checked against FFmpeg's


def measure_delivery(path: Path) -> Delivery:
    """Decode ``path`` and assert the delivery targets: -16 +/- 1 LUFS, true peak <= -1 dBTP."""
    decoded = decode(path)
    lufs = pyloudnorm_lufs(decoded.samples, decoded.sample_rate)
    ff_lufs, ff_peak = ffmpeg_ebur128(decoded.samples, decoded.sample_rate)
    own_peak = mastering.true_peak_dbtp(decoded.samples)
    assert abs(lufs - TARGET_LUFS) <= LOUDNESS_TOLERANCE, (path.name, lufs)
    assert abs(ff_lufs - TARGET_LUFS) <= LOUDNESS_TOLERANCE, (path.name, ff_lufs)
    assert ff_peak <= DELIVERY_TRUE_PEAK, (path.name, ff_peak)
    assert own_peak <= DELIVERY_TRUE_PEAK, (path.name, own_peak)
    assert decoded.channels == 1
    return Delivery(decoded, lufs, ff_lufs, ff_peak, own_peak)
