"""TTS: chunking, registry, offline espeak-ng, gTTS over an intercepted transport, fallback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
import requests
from urllib3 import HTTPResponse

from audio import tts
from audio.tts import EngineError, EspeakEngine, FallbackEngine, GttsEngine, Speech, TtsEngine
from audio.tts import base as tts_base
from audio.tts import espeak as espeak_module
from audio.tts.chunks import split_sentences

STORM = "Bão số 3 đang di chuyển vào vùng biển Quảng Ninh – Hải Phòng, gió giật cấp mười."

# --- chunking --------------------------------------------------------------------------------


def test_split_sentences_packs_whole_sentences_up_to_the_limit() -> None:
    text = "Trời mưa to. Gió mạnh cấp 6! Biển động?  Tàu thuyền về bến;\nCẩn thận."
    assert split_sentences(text, 1000) == [
        "Trời mưa to. Gió mạnh cấp 6! Biển động? Tàu thuyền về bến; Cẩn thận."
    ]
    assert split_sentences(text, 30) == [
        "Trời mưa to. Gió mạnh cấp 6!",
        "Biển động? Tàu thuyền về bến;",
        "Cẩn thận.",
    ]


def test_split_sentences_keeps_decimals_and_cuts_long_sentences_at_clauses() -> None:
    assert split_sentences("Sóng cao 3.5 mét. Gió cấp 7.", 12) == [
        "Sóng cao 3.5",
        "mét.",
        "Gió cấp 7.",
    ]
    chunks = split_sentences(STORM, 60)
    assert chunks == [
        "Bão số 3 đang di chuyển vào vùng biển Quảng Ninh –",
        "Hải Phòng, gió giật cấp mười.",
    ]
    assert split_sentences("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert split_sentences("  \n ", 10) == []
    with pytest.raises(ValueError):
        split_sentences("x", 0)


def test_split_sentences_never_exceeds_the_limit_and_loses_no_words() -> None:
    text = " ".join(f"Câu số {i} nói về thời tiết vùng biển, gió và sóng." for i in range(40))
    for limit in (20, 57, 100, 400):
        chunks = split_sentences(text, limit)
        assert all(len(c) <= limit for c in chunks)
        assert " ".join(chunks).split() == text.split()


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_builds_and_rejects() -> None:
    assert {"auto", "espeak", "gtts"} <= set(tts.available())
    engine = tts.create("espeak", speed=170, pitch=40)
    assert isinstance(engine, EspeakEngine)
    assert (engine.name, engine.speed, engine.pitch) == ("espeak", 170, 40)
    auto = tts.create("auto", chunk_timeout=2.5, offline={"speed": 120})
    assert isinstance(auto, FallbackEngine) and isinstance(auto, TtsEngine)
    assert isinstance(auto.primary, GttsEngine) and auto.primary.timeout == 2.5
    assert isinstance(auto.secondary, EspeakEngine) and auto.secondary.speed == 120
    with pytest.raises(LookupError, match="unknown TTS engine 'nope'"):
        tts.create("nope")
    with pytest.raises(ValueError):
        tts.create("espeak", speed=10)
    with pytest.raises(TypeError):
        tts.create("gtts", colour="blue")


def test_register_refuses_a_taken_name_unless_replacing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_base, "_registry", dict(tts_base._registry))
    with pytest.raises(ValueError, match="already registered"):
        tts.register("espeak", EspeakEngine)
    tts.register("slow-espeak", lambda **kw: EspeakEngine(speed=100, **kw))
    assert "slow-espeak" in tts.available()
    engine = tts.create("slow-espeak", pitch=30)
    assert isinstance(engine, EspeakEngine) and engine.speed == 100
    tts.register("espeak", lambda **kw: EspeakEngine(voice="vi", **kw), replace=True)
    assert isinstance(tts.create("espeak"), EspeakEngine)


# --- offline: espeak-ng ----------------------------------------------------------------------


async def test_espeak_speaks_vietnamese_at_22050_hz() -> None:
    speech = await EspeakEngine().synthesize(STORM)
    assert (speech.engine, speech.voice, speech.sample_rate) == ("espeak", "vi", 22050)
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert 3.0 < speech.duration_seconds < 12.0
    assert float(np.max(np.abs(speech.samples))) <= 1.0
    rms = float(np.sqrt(np.mean(speech.samples**2)))
    assert rms > 0.02  # real speech, not silence
    assert speech.fallback_reason is None


async def test_espeak_options_change_the_speech() -> None:
    normal = await EspeakEngine(speed=150).synthesize(STORM)
    fast = await EspeakEngine(speed=300).synthesize(STORM)
    assert fast.duration_seconds < 0.7 * normal.duration_seconds
    low = await EspeakEngine(pitch=10).synthesize(STORM)
    assert not np.array_equal(low.samples, normal.samples)
    with pytest.raises(EngineError, match="no voice"):
        await EspeakEngine(voice="xx-nonexistent").synthesize(STORM)
    with pytest.raises(EngineError, match="nothing to speak"):
        await EspeakEngine().synthesize("   ")


async def test_espeak_chunks_long_text_and_serialises_concurrent_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str]] = []
    real_synth = espeak_module._Library.synth

    def spy(self: Any, text: str, **kw: Any) -> Any:
        assert self.lock.locked()  # the C library's globals are only touched under the lock
        seen.append((threading.current_thread().name, text))
        return real_synth(self, text, **kw)

    monkeypatch.setattr(espeak_module._Library, "synth", spy)
    text = " ".join([STORM] * 12)  # ~1000 characters
    engine = EspeakEngine(max_chars=250)
    results = await asyncio.gather(*(engine.synthesize(text) for _ in range(3)))
    assert all(r.chunks == 4 for r in results)
    # libespeak-ng carries a little state between utterances: equal within milliseconds.
    durations = [r.duration_seconds for r in results]
    assert max(durations) - min(durations) < 0.1
    assert all(len(chunk) <= 250 and chunk.endswith(".") for _, chunk in seen)
    # Synthesis runs in worker threads, never on the event loop's thread.
    assert threading.main_thread().name not in {name for name, _ in seen}


# --- online: gTTS over an intercepted transport ----------------------------------------------


def _mp3(samples: np.ndarray, rate: int) -> bytes:
    """Real MP3 bytes, made offline with PyAV (what Google would send: 24 kHz mono)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.codec_context.layout = "mono"
        stream.codec_context.bit_rate = 32_000
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _tone(seconds: float, rate: int = 24_000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@dataclass
class FakeTranslate:
    """Stands in for translate.google.com at requests' transport (HTTPAdapter.send)."""

    mode: str = "ok"  # ok | http500 | hang | no-audio | empty | refused
    seconds_per_request: float = 0.5
    texts: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def send(self, adapter: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        url = urllib.parse.urlsplit(request.url)
        self.hosts.append(url.hostname or "")
        form = urllib.parse.parse_qs(request.body)
        text, lang, _speed, _ = json.loads(json.loads(form["f.req"][0])[0][0][1])
        assert lang == "vi"
        self.texts.append(text)
        if self.mode == "hang":
            self.release.wait(30)  # released by the fixture's teardown
            status, body = 504, b""
        elif self.mode == "refused":
            raise requests.ConnectionError("connection refused")
        elif self.mode == "http500":
            status, body = 500, b"Internal Server Error"
        elif self.mode == "no-audio":
            status, body = 200, b')]}\'\n\n[["wrb.fr","jQ1olc","[]",null,null,null,"generic"]]\n'
        elif self.mode == "empty":
            status, body = 200, b')]}\'\n\n[["wrb.fr","other",null]]\n'
        else:
            encoded = _mp3(_tone(self.seconds_per_request), 24_000)
            payload = base64.b64encode(encoded).decode()
            line = f'[["wrb.fr","jQ1olc","[\\"{payload}\\"]",null,null,null,"generic"]]'
            status, body = 200, f")]}}'\n\n{len(line)}\n{line}\n".encode()
        raw = HTTPResponse(
            body=io.BytesIO(body),
            status=status,
            headers={"Content-Type": "application/json; charset=utf-8"},
            preload_content=False,
        )
        return adapter.build_response(request, raw)


@pytest.fixture
def fake_translate(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTranslate]:
    fake = FakeTranslate()

    def send(self: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        return fake.send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    yield fake
    fake.release.set()


async def test_gtts_returns_decoded_speech_from_real_mp3(fake_translate: FakeTranslate) -> None:
    speech = await GttsEngine(timeout=5).synthesize(STORM)
    assert fake_translate.texts == [STORM]
    assert fake_translate.hosts == ["translate.google.com"]
    assert (speech.engine, speech.voice, speech.sample_rate) == ("gtts", "vi", 24_000)
    assert speech.samples.dtype == np.float32
    # MP3 adds under one frame of padding; the decoded tone has the tone's level.
    assert speech.duration_seconds == pytest.approx(0.5, abs=0.08)
    assert float(np.max(np.abs(speech.samples))) == pytest.approx(0.3, abs=0.03)


async def test_gtts_chunks_text_at_sentence_boundaries(fake_translate: FakeTranslate) -> None:
    sentences = [
        f"Bản tin số {i}: gió mạnh cấp {i % 5 + 6}, sóng cao {i % 3 + 2} mét." for i in range(7)
    ]
    speech = await GttsEngine(timeout=5, gap_seconds=0.1).synthesize(" ".join(sentences))
    assert len(fake_translate.texts) >= 4
    assert all(len(t) <= 100 and t.endswith(".") for t in fake_translate.texts)
    assert " ".join(fake_translate.texts) == " ".join(sentences)
    n = len(fake_translate.texts)
    assert speech.chunks == n
    assert speech.duration_seconds == pytest.approx(n * 0.5 + (n - 1) * 0.1, abs=0.08 * n)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("http500", "500"),
        ("no-audio", "gTTS failed"),
        ("empty", "empty audio response"),
        ("refused", "gTTS failed"),
    ],
)
async def test_gtts_failures_raise_engine_error(
    fake_translate: FakeTranslate, mode: str, message: str
) -> None:
    fake_translate.mode = mode
    with pytest.raises(EngineError, match=message):
        await GttsEngine(timeout=5).synthesize(STORM)


async def test_gtts_hang_raises_engine_error_at_its_deadline(fake_translate: FakeTranslate) -> None:
    fake_translate.mode = "hang"
    started = time.monotonic()
    with pytest.raises(EngineError, match="timed out"):
        await GttsEngine(timeout=0.5).synthesize(STORM)
    assert time.monotonic() - started < 1.5


async def test_gtts_without_interception_fails_cleanly() -> None:
    # The test harness blocks every non-loopback address, as the machine has no internet.
    with pytest.raises(EngineError, match="gTTS failed"):
        await GttsEngine(timeout=2).synthesize(STORM)


# --- auto: online with offline fallback ------------------------------------------------------


async def test_auto_uses_the_online_voice_when_it_answers(fake_translate: FakeTranslate) -> None:
    speech = await tts.create("auto", chunk_timeout=5).synthesize(f"{STORM} {STORM}")
    assert (speech.engine, speech.sample_rate, speech.fallback_reason) == ("gtts", 24_000, None)
    assert len(fake_translate.texts) == 2


async def test_auto_falls_back_to_espeak_on_http_500(fake_translate: FakeTranslate) -> None:
    fake_translate.mode = "http500"
    speech = await tts.create("auto", chunk_timeout=5).synthesize(STORM)
    assert (speech.engine, speech.sample_rate) == ("espeak", 22_050)
    assert speech.fallback_reason is not None and "500" in speech.fallback_reason
    offline = await EspeakEngine().synthesize(STORM)
    assert speech.duration_seconds == pytest.approx(offline.duration_seconds, abs=0.05)


async def test_auto_falls_back_to_espeak_when_gtts_hangs(fake_translate: FakeTranslate) -> None:
    fake_translate.mode = "hang"
    timeout = 0.6
    started = time.monotonic()
    speech = await tts.create("auto", chunk_timeout=timeout).synthesize(STORM)
    elapsed = time.monotonic() - started
    assert speech.engine == "espeak"
    assert speech.fallback_reason == f"gtts: timed out after {timeout:g} s"
    assert timeout <= elapsed < timeout + 1.0
    assert speech.duration_seconds > 3.0


async def test_auto_gives_up_on_the_online_voice_midway(fake_translate: FakeTranslate) -> None:
    # The second chunk fails: the whole text is re-spoken offline, never a mix of voices.
    calls = 0
    real = fake_translate.send

    def flaky(adapter: Any, request: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        fake_translate.mode = "ok" if calls == 1 else "http500"
        return real(adapter, request, **kwargs)

    fake_translate.send = flaky  # type: ignore[method-assign]
    speech = await tts.create("auto", chunk_timeout=5).synthesize(f"{STORM} {STORM} {STORM}")
    assert calls == 2
    assert speech.engine == "espeak" and speech.chunks == 1


async def test_fallback_engine_is_generic_over_engines() -> None:
    class Broken:
        name = "broken"

        async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
            raise RuntimeError("boom")

    engine = FallbackEngine(Broken(), EspeakEngine(), chunk_timeout=1)
    speech = await engine.synthesize(STORM)
    assert speech.engine == "espeak" and speech.fallback_reason == "broken: boom"
    with pytest.raises(EngineError):
        await FallbackEngine(Broken(), Broken()).synthesize(STORM)
