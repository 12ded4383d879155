"""Listening to a station's mount like a loudspeaker receiver: decode, classify, wait."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

RATE = 44_100
WINDOW_S = 0.25  # tone detection resolution


def tone(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    samples = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None, :]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Window:
    arrived: float  # wall-clock time (time.time()) the window's last byte arrived
    tone: float | None  # the dominant frequency, or None for silence


@dataclass
class Listener:
    """Reads a mount like a loudspeaker receiver, decoding and classifying as bytes arrive.

    The reading and decoding run in a child process: in the test's own process, the
    service's rendering and mastering (numpy, holding the GIL) would delay the reads and
    so the arrival times measured. A thread here collects the windows it reports.
    """

    url: str
    windows: list[Window] = field(default_factory=list)
    received: int = 0
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        reports: multiprocessing.Queue[tuple[str, object]] = context.Queue()
        stop = context.Event()
        self._process = context.Process(
            target=_listen, args=(self.url, reports, stop), name="listener", daemon=True
        )
        self._process.start()
        self._thread = threading.Thread(
            target=self._collect, args=(reports, stop), name="listener", daemon=True
        )
        self._thread.start()

    def _collect(self, reports: multiprocessing.Queue[tuple[str, object]], stop: Any) -> None:
        while True:
            if self._stop.is_set():
                stop.set()
                return
            try:
                kind, value = reports.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "window":
                assert isinstance(value, tuple)
                arrived: float = value[0]
                tone_hz: float | None = value[1]
                with self._lock:
                    self.windows.append(Window(arrived, tone_hz))
                    self.received = int(value[2])
            elif not self._stop.is_set():
                self.error = RuntimeError(str(value))
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()

    def snapshot(self) -> list[Window]:
        with self._lock:
            return list(self.windows)

    async def wait_for(self, hz: float | None, *, after: float, within: float) -> Window:
        """The first window of ``hz`` (None: silence) that arrived after ``after``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.error is None, f"the listener failed: {self.error!r}"
            for window in self.snapshot():
                if window.arrived > after and same(window.tone, hz):
                    return window
            await asyncio.sleep(0.05)
        heard = [(round(w.arrived - after, 2), w.tone) for w in self.snapshot()[-40:]]
        raise AssertionError(f"no {hz} Hz within {within} s; last windows: {heard}")

    async def wait_for_sound(self, *, after: float, within: float, run_s: float = 0.5) -> Window:
        """The first of ``run_s`` of sound (any tone, not silence) arrived after ``after``."""
        needed = max(1, round(run_s / WINDOW_S))
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.error is None, f"the listener failed: {self.error!r}"
            recent = [w for w in self.snapshot() if w.arrived > after]
            for i in range(len(recent) - needed + 1):
                if all(w.tone is not None for w in recent[i : i + needed]):
                    return recent[i]
            await asyncio.sleep(0.05)
        heard = [(round(w.arrived - after, 2), w.tone) for w in self.snapshot()[-40:]]
        raise AssertionError(f"no sound within {within} s; last windows: {heard}")


def _listen(url: str, reports: Any, stop: Any) -> None:
    """The child process: read ``url``, report each window (arrival, tone, bytes so far)."""
    codec = av.CodecContext.create("mp3", "r")
    pending = np.zeros(0)
    received = 0
    size = int(WINDOW_S * RATE)
    try:
        with httpx.Client(timeout=10) as client, client.stream("GET", url) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                arrived = time.time()
                received += len(chunk)
                for packet in codec.parse(chunk):
                    for frame in codec.decode(packet):
                        data = frame.to_ndarray().astype(np.float64)
                        pending = np.concatenate([pending, data.reshape(-1)])
                while len(pending) >= size:
                    window, pending = pending[:size], pending[size:]
                    reports.put(("window", (arrived, dominant(window), received)))
                if stop.is_set():
                    return
    except BaseException as exc:
        if not stop.is_set():
            reports.put(("error", repr(exc)))


def dominant(window: np.ndarray) -> float | None:
    if np.sqrt(np.mean(window**2)) < 0.01:
        return None
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.argmax(spectrum) * RATE / len(window))


def same(tone: float | None, hz: float | None) -> bool:
    if tone is None or hz is None:
        return tone is hz
    return abs(tone - hz) < 10
