"""Mastering and encoding, checked by decoding every file and measuring it independently."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import unicodedata
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from audio import mastering
from audio.mastering import (
    Compression,
    EncodingSettings,
    Master,
    MasteringError,
    MasteringSettings,
    Pcm,
    Rendered,
    SilentInputError,
    Tags,
)
from audio.tts import EspeakEngine
from tests.audio.measure import (
    DELIVERY_TRUE_PEAK,
    LOUDNESS_TOLERANCE,
    Decoded,
    decode,
    ffmpeg_ebur128,
    mp3_frames,
    pyloudnorm_lufs,
)

BODY = (
    "Bão số 3 đang di chuyển vào vùng biển Quảng Ninh – Hải Phòng, gió giật cấp mười. "
    "Đề nghị tàu thuyền khẩn trương vào nơi tránh trú an toàn."
)
HEADING = "Đài truyền thanh xã Cát Hải xin thông báo."
TAGS = Tags(title="Tin bão số 3", commune="Cát Hải", date=dt.date(2025, 7, 20))

# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> tuple[Pcm, Pcm]:
    async def both() -> tuple[Pcm, Pcm]:
        engine = EspeakEngine()
        body = await engine.synthesize(BODY)
        heading = await engine.synthesize(HEADING)
        return Pcm(body.samples, body.sample_rate), Pcm(heading.samples, heading.sample_rate)

    return asyncio.run(both())


@pytest.fixture(scope="module")
def rendered(speech: tuple[Pcm, Pcm], tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    body, heading = speech
    out = tmp_path_factory.mktemp("render")
    return mastering.render(body, out, basename="bao-so-3", tags=TAGS, heading=heading)


# --- the delivered files ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp3", "aac", "opus"])
def test_every_file_decodes_to_target_loudness_under_the_true_peak_limit(
    rendered: Rendered, fmt: str
) -> None:
    output = rendered.output(fmt)  # type: ignore[arg-type]
    decoded = decode(output.path)
    lufs = pyloudnorm_lufs(decoded.samples, decoded.sample_rate)
    ff_lufs, ff_peak = ffmpeg_ebur128(decoded.samples, decoded.sample_rate)
    own_peak = mastering.true_peak_dbtp(decoded.samples)
    print(f"{fmt}: {lufs:.2f} LUFS (ebur128 {ff_lufs:.2f}), true peak {ff_peak:.2f} dBTP")
    assert abs(lufs - -16.0) <= LOUDNESS_TOLERANCE
    assert abs(ff_lufs - -16.0) <= LOUDNESS_TOLERANCE
    assert ff_peak <= DELIVERY_TRUE_PEAK
    assert own_peak <= DELIVERY_TRUE_PEAK
    # Two independent true-peak meters agree.
    assert own_peak == pytest.approx(ff_peak, abs=0.3)
    # encode() measured the file it wrote, and held it to its stricter limit.
    assert output.decoded_true_peak_dbtp == pytest.approx(own_peak, abs=0.01)
    assert output.decoded_true_peak_dbtp <= EncodingSettings().true_peak_limit_dbtp
    assert decoded.duration == pytest.approx(rendered.master.duration_seconds, abs=0.08)
    assert output.duration_seconds == pytest.approx(rendered.master.duration_seconds, abs=1e-6)
    assert decoded.channels == 1


def test_master_meets_its_own_targets_by_independent_meters(rendered: Rendered) -> None:
    master = rendered.master
    assert master.sample_rate == 44_100 and master.samples.dtype == np.float32
    assert master.integrated_lufs == pytest.approx(-16.0, abs=0.1)
    assert pyloudnorm_lufs(master.samples, 44_100) == pytest.approx(
        master.integrated_lufs, abs=0.01
    )
    ff_lufs, ff_peak = ffmpeg_ebur128(master.samples, 44_100)
    assert ff_lufs == pytest.approx(-16.0, abs=0.2)
    # The master keeps 1.5 dB under the delivery limit for codec overshoot.
    assert master.true_peak_dbtp <= -2.5
    assert ff_peak <= -2.4
    for output in rendered.outputs:
        assert (output.integrated_lufs, output.true_peak_dbtp) == (
            master.integrated_lufs,
            master.true_peak_dbtp,
        )


def test_heading_comes_first_with_padding_and_gap(
    rendered: Rendered, speech: tuple[Pcm, Pcm]
) -> None:
    body, heading = speech
    s = MasteringSettings()
    expected = (
        2 * s.padding_seconds
        + heading.duration_seconds
        + s.heading_gap_seconds
        + body.duration_seconds
    )
    assert rendered.master.duration_seconds == pytest.approx(expected, abs=0.01)
    lead = rendered.master.samples[: round(0.9 * s.padding_seconds * 44_100)]
    assert float(np.max(np.abs(lead))) < 1e-3  # silent lead-in before the heading


def test_mp3_is_cbr_at_44k1_mono_with_id3_tags(rendered: Rendered) -> None:
    output = rendered.output("mp3")
    data = output.path.read_bytes()
    assert data[:4] == b"ID3\x03"  # ID3v2.3
    frames = mp3_frames(data)
    assert len(frames) > 100
    assert {f[0] for f in frames} == {96}  # every frame, the Info frame included, at 96 kbit/s
    assert {f[1] for f in frames} == {44_100}
    assert {f[2] for f in frames} == {3}  # single channel
    assert b"Info" in data[:2000] and b"Xing" not in data[:2000]  # LAME's CBR marker
    decoded = decode(output.path)
    assert (decoded.container, decoded.codec, decoded.sample_rate) == ("mp3", "mp3float", 44_100)
    assert decoded.metadata["title"] == "Tin bão số 3"
    assert decoded.metadata["artist"] == "Cát Hải"
    assert decoded.metadata["album"] == "Cát Hải"
    assert decoded.metadata["date"].startswith("2025")
    assert (output.format, output.mime_type, output.bitrate_kbps) == ("mp3", "audio/mpeg", 96)


def test_aac_is_adts_lc_at_44k1_mono(rendered: Rendered) -> None:
    output = rendered.output("aac")
    data = output.path.read_bytes()
    assert output.path.suffix == ".aac"
    assert data[0] == 0xFF and data[1] & 0xF6 == 0xF0  # ADTS sync word, layer 0
    assert (data[2] >> 6) & 3 == 1  # profile: AAC LC
    assert (data[2] >> 2) & 0xF == 4  # sampling index 4 = 44.1 kHz
    assert ((data[2] & 1) << 2 | data[3] >> 6) == 1  # channel configuration: mono
    decoded = decode(output.path)
    assert (decoded.container, decoded.codec, decoded.sample_rate) == ("aac", "aac", 44_100)
    # FFmpeg's native AAC encoder is ABR: within a band around the request, not exact.
    kbps = output.size_bytes * 8 / output.duration_seconds / 1000
    assert 40 <= kbps <= 110
    assert output.mime_type == "audio/aac"


def test_opus_is_ogg_48k_mono_for_telegram_voice(rendered: Rendered) -> None:
    output = rendered.output("opus")
    data = output.path.read_bytes()
    assert data[:4] == b"OggS" and b"OpusHead" in data[:100]
    decoded = decode(output.path)
    assert (decoded.container, decoded.codec, decoded.sample_rate) == ("ogg", "opus", 48_000)
    tags = {k.lower(): v for k, v in decoded.metadata.items()}
    assert tags["title"] == "Tin bão số 3" and tags["artist"] == "Cát Hải"
    assert output.mime_type == "audio/ogg" and output.path.suffix == ".ogg"


def test_outputs_are_hashed_sized_and_written_atomically(rendered: Rendered) -> None:
    directory = rendered.outputs[0].path.parent
    assert sorted(p.name for p in directory.iterdir()) == [
        "bao-so-3.aac",
        "bao-so-3.mp3",
        "bao-so-3.ogg",
    ]
    for output in rendered.outputs:
        data = output.path.read_bytes()
        assert output.size_bytes == len(data)
        assert output.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("failing", ["encoder", "disk"])
def test_a_failed_encode_leaves_the_previous_file_and_no_temp_file(
    rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    (tmp_path / "x.mp3").write_bytes(b"previous")

    def broken_encoder(fh, *args, **kwargs):
        fh.write(b"half a file")
        raise OSError("disk full")

    def broken_disk(fd):
        raise OSError("disk full")  # the encoded file is being written out

    if failing == "encoder":
        monkeypatch.setattr(mastering, "_encode_to", broken_encoder)
    else:
        monkeypatch.setattr("audio.mastering.os.fsync", broken_disk)
    with pytest.raises(OSError, match="disk full"):
        mastering.encode(
            rendered.master,
            tmp_path,
            basename="x",
            tags=TAGS,
            settings=EncodingSettings(formats=("mp3",)),
        )
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp3"]
    assert (tmp_path / "x.mp3").read_bytes() == b"previous"


@pytest.mark.parametrize("kbps", [64, 128])
def test_mp3_bitrate_is_configurable(rendered: Rendered, tmp_path: Path, kbps: int) -> None:
    short = Master(rendered.master.samples[: 44_100 * 3], 44_100, -16.0, -2.5)
    (output,) = mastering.encode(
        short,
        tmp_path,
        basename="b",
        tags=TAGS,
        settings=EncodingSettings(formats=("mp3",), mp3_bitrate_kbps=kbps),
    )
    assert {f[0] for f in mp3_frames(output.path.read_bytes())} == {kbps}


def test_encoding_settings_are_validated(rendered: Rendered, tmp_path: Path) -> None:
    for bad in (
        dict(mp3_bitrate_kbps=100),
        dict(mp3_bitrate_kbps=160),
        dict(formats=()),
        dict(formats=("wav",)),
        dict(true_peak_limit_dbtp=0.5),
    ):
        with pytest.raises(MasteringError):
            EncodingSettings(**bad)
    with pytest.raises(MasteringError, match="basename"):
        mastering.encode(rendered.master, tmp_path, basename="../evil", tags=TAGS)


# --- levels in, levels out -------------------------------------------------------------------


def _master_and_mp3(
    pcm: Pcm, tmp_path: Path, settings: MasteringSettings | None = None
) -> tuple[Master, Decoded]:
    result = mastering.render(
        pcm,
        tmp_path,
        basename="t",
        tags=TAGS,
        mastering=settings,
        encoding=EncodingSettings(formats=("mp3",)),
    )
    return result.master, decode(result.outputs[0].path)


@pytest.mark.parametrize(
    ("label", "transform"),
    [
        ("very quiet (-60 dB, under BS.1770's -70 LUFS gate)", lambda x: x * 10 ** (-60 / 20)),
        ("clipping (+30 dB, hard-clipped)", lambda x: np.clip(x * 10 ** (30 / 20), -1.0, 1.0)),
    ],
)
def test_quiet_and_clipping_inputs_end_at_target(
    speech: tuple[Pcm, Pcm],
    tmp_path: Path,
    label: str,
    transform: Callable[[np.ndarray], np.ndarray],
) -> None:
    body, _ = speech
    master, mp3 = _master_and_mp3(
        Pcm(transform(body.samples).astype(np.float32), body.sample_rate), tmp_path
    )
    assert pyloudnorm_lufs(master.samples, 44_100) == pytest.approx(-16.0, abs=0.15), label
    assert abs(pyloudnorm_lufs(mp3.samples, mp3.sample_rate) - -16.0) <= LOUDNESS_TOLERANCE, label
    assert ffmpeg_ebur128(mp3.samples, mp3.sample_rate)[1] <= DELIVERY_TRUE_PEAK, label


def _level_spread(samples: np.ndarray) -> float:
    """Standard deviation (dB) of 20 ms RMS levels over the active part of the speech."""
    n = len(samples) // 882 * 882
    levels = 10 * np.log10(
        np.mean(samples[:n].reshape(-1, 882).astype(np.float64) ** 2, axis=1) + 1e-12
    )
    active = levels[levels > levels.max() - 30]
    return float(active.std())


def test_compression_tightens_dynamics_and_can_be_switched_off(
    speech: tuple[Pcm, Pcm], tmp_path: Path
) -> None:
    body, _ = speech
    on = mastering.master(body)
    off = mastering.master(body, settings=MasteringSettings(compression=None))
    heavy = mastering.master(
        body, settings=MasteringSettings(compression=Compression(threshold_db=-26, ratio=6))
    )
    for result in (on, off, heavy):
        assert result.integrated_lufs == pytest.approx(-16.0, abs=0.1)
        assert result.true_peak_dbtp <= -2.5
    assert _level_spread(heavy.samples) < _level_spread(on.samples) < _level_spread(off.samples)


def test_jingle_from_a_file_is_prepended(speech: tuple[Pcm, Pcm], tmp_path: Path) -> None:
    body, _ = speech
    rate = 48_000
    t = np.arange(rate * 2) / rate
    chime = (0.5 * np.sin(2 * np.pi * 880 * t) * np.exp(-2 * t)).astype(np.float32)
    path = tmp_path / "jingle.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.codec_context.layout = "stereo"  # a stereo file: mastering down-mixes it
        frame = av.AudioFrame.from_ndarray(
            np.stack([chime, chime]).reshape(1, -1, order="F"), format="flt", layout="stereo"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = mastering.master(body, jingle=path)
    s = MasteringSettings()
    expected = 2 * s.padding_seconds + 2.0 + s.jingle_gap_seconds + body.duration_seconds
    assert result.duration_seconds == pytest.approx(expected, abs=0.01)
    assert result.integrated_lufs == pytest.approx(-16.0, abs=0.1)
    # The chime (880 Hz) dominates the first second after the lead-in.
    start = round(s.padding_seconds * 44_100)
    head = result.samples[start : start + 44_100].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(head))
    assert np.argmax(spectrum) == pytest.approx(880, abs=2)


# --- edges -----------------------------------------------------------------------------------


def test_silence_and_empty_input_raise_clearly() -> None:
    with pytest.raises(SilentInputError, match="silent"):
        mastering.master(Pcm(np.zeros(22_050 * 3, dtype=np.float32), 22_050))
    hiss = np.random.default_rng(1).uniform(-5e-5, 5e-5, 22_050 * 3).astype(np.float32)
    with pytest.raises(SilentInputError, match="-80 dBFS"):
        mastering.master(Pcm(hiss, 22_050))  # dither-level noise is not a programme
    with pytest.raises(SilentInputError, match="empty"):
        mastering.master(Pcm(np.zeros(0, dtype=np.float32), 22_050))
    with pytest.raises(SilentInputError, match="heading is silent"):
        mastering.master(
            Pcm(np.full(22_050, 0.1, dtype=np.float32), 22_050),
            heading=Pcm(np.zeros(1000, dtype=np.float32), 22_050),
        )


def test_bad_input_is_refused() -> None:
    stereo = np.zeros((2, 1000), dtype=np.float32)
    with pytest.raises(MasteringError, match="mono"):
        mastering.master(Pcm(stereo, 22_050))
    with pytest.raises(MasteringError, match="floating-point"):
        mastering.master(Pcm(np.ones(1000, dtype=np.int16), 22_050))
    nan = np.full(22_050, np.nan, dtype=np.float32)
    with pytest.raises(MasteringError, match="NaN"):
        mastering.master(Pcm(nan, 22_050))
    with pytest.raises(MasteringError):
        MasteringSettings(target_lufs=3.0)


def test_very_short_input_is_mastered(tmp_path: Path) -> None:
    rate = 16_000
    t = np.arange(rate // 10) / rate  # 0.1 s, shorter than one 400 ms loudness block
    beep = (0.05 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    result = mastering.render(Pcm(beep, rate), tmp_path, basename="beep", tags=TAGS)
    assert result.master.duration_seconds == pytest.approx(0.1 + 2 * 0.3, abs=0.01)
    assert result.master.integrated_lufs == pytest.approx(-16.0, abs=0.1)
    assert result.master.true_peak_dbtp <= -2.5
    for output in result.outputs:
        assert decode(output.path).duration > 0.5


def test_true_peak_meter_catches_inter_sample_peaks() -> None:
    rate = 44_100
    n = np.arange(rate)
    # A quarter-rate sine sampled 45 degrees off its crests: samples at -3.01 dB, peak at 0.
    x = np.sin(2 * np.pi * n / 4 + np.pi / 4)
    fade = np.hanning(2000)  # fades: an abrupt edge has a (real) overshoot of its own
    x[:1000] *= fade[:1000]
    x[-1000:] *= fade[1000:]
    assert 20 * np.log10(np.max(np.abs(x))) == pytest.approx(-3.01, abs=0.01)
    assert mastering.true_peak_dbtp(x) == pytest.approx(0.0, abs=0.02)
    assert ffmpeg_ebur128(x, rate)[1] == pytest.approx(0.0, abs=0.2)
    assert mastering.true_peak_dbtp(np.zeros(10)) == -math.inf


def test_limiter_holds_the_ceiling_on_hostile_material() -> None:
    rng = np.random.default_rng(7)
    bursts = rng.standard_normal(44_100 * 4) * np.repeat(
        rng.uniform(0.01, 1.0, 40), 44_100 * 4 // 40
    )
    clicks = np.zeros(44_100 * 4)
    clicks[::5000] = 1.0
    for signal in (bursts, bursts + clicks):
        result = mastering.master(
            Pcm(signal.astype(np.float32) * 0.3, 44_100),
            settings=MasteringSettings(compression=None),
        )
        _, ff_peak = ffmpeg_ebur128(result.samples, 44_100)
        assert ff_peak <= -2.4
        assert result.true_peak_dbtp <= -2.5
        assert result.integrated_lufs == pytest.approx(-16.0, abs=0.1)


# --- cache keys ------------------------------------------------------------------------------


def test_cache_key_is_canonical() -> None:
    settings = {"mastering": MasteringSettings(), "encoding": EncodingSettings(), "speed": 150}
    key = mastering.cache_key(BODY, "espeak", "vi", settings)
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = {"speed": 150, "encoding": EncodingSettings(), "mastering": MasteringSettings()}
    assert mastering.cache_key(BODY, "espeak", "vi", reordered) == key
    decomposed = unicodedata.normalize("NFD", BODY)
    assert decomposed != BODY
    assert mastering.cache_key(decomposed, "espeak", "vi", settings) == key
    assert mastering.cache_key(BODY + " ", "espeak", "vi", settings) != key
    assert mastering.cache_key(BODY, "gtts", "vi", settings) != key
    assert mastering.cache_key(BODY, "espeak", "vi+f2", settings) != key
    louder = {**settings, "mastering": MasteringSettings(target_lufs=-14.0)}
    assert mastering.cache_key(BODY, "espeak", "vi", louder) != key
