"""A commune station on real Liquidsoap and Icecast 2: programme, urgent interruption, restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import html
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from audio.station import (
    LiquidsoapStation,
    NowPlaying,
    OnAir,
    StationBinaries,
    StationError,
    find_station_binaries,
    make_station,
)
from tests.audio.stream import Listener
from tests.audio.stream import free_port as _free_port
from tests.audio.stream import same as _same
from tests.audio.stream import tone as _tone

COMMUNE = "11914"
PROGRAMME_HZ, URGENT_HZ, SECOND_URGENT_HZ = 440.0, 880.0, 1320.0
MAX_INTERRUPTION_S = 10.0

FOUND = find_station_binaries()
needs_station = pytest.mark.skipif(
    isinstance(FOUND, str),
    reason=f"station test needs Debian's liquidsoap and icecast2 ({FOUND}): "
    "apt-get install liquidsoap icecast2",
)


@pytest.fixture
def binaries() -> StationBinaries:
    assert isinstance(FOUND, StationBinaries)
    return FOUND


@pytest.fixture
async def station(tmp_path: Path, binaries: StationBinaries) -> AsyncIterator[LiquidsoapStation]:
    work = tmp_path / "station"
    made = LiquidsoapStation(work, [COMMUNE], port=_free_port(), binaries=binaries)
    try:
        yield made
    finally:
        await LiquidsoapStation(work, [COMMUNE], port=made.port, binaries=binaries).stop()
        assert not _running(str(work)), "a station process outlived the test"


def _running(marker: str) -> list[str]:
    ps = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [line for line in ps.stdout.splitlines() if "pgrep" not in line]


@pytest.fixture
def listener(station: LiquidsoapStation) -> Iterator[Listener]:
    made = Listener(station.stream_url(COMMUNE))
    yield made
    made.stop()


async def _icecast_title(station: LiquidsoapStation, expected: str) -> str:
    """The mount's title on Icecast once it is ``expected`` (Liquidsoap updates it
    asynchronously), or the last one seen after 5 s."""
    title = ""
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(50):
            response = await client.get(f"http://127.0.0.1:{station.port}/status-json.xsl")
            # Icecast's XSLT writes non-ASCII letters as character references.
            title = html.unescape(str(response.json()["icestats"]["source"]["title"]))
            if title == expected:
                break
            await asyncio.sleep(0.1)
    return title


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_station_binaries() == "liquidsoap and icecast2 not found"
    with pytest.raises(StationError, match="no station: liquidsoap and icecast2 not found"):
        LiquidsoapStation(tmp_path, [COMMUNE])


@needs_station
async def test_programme_urgent_interruption_and_driver_restart(
    station: LiquidsoapStation, listener: Listener, tmp_path: Path
) -> None:
    programme = _tone(tmp_path / "programme.mp3", PROGRAMME_HZ, 20)
    urgent = _tone(tmp_path / "urgent.mp3", URGENT_HZ, 4)
    second = _tone(tmp_path / "second.mp3", SECOND_URGENT_HZ, 3)
    started = time.monotonic()

    await station.ensure_running()
    listener.start()
    first_silence = await listener.wait_for(None, after=0, within=15)
    assert (await station.now_playing(COMMUNE)).on_air is OnAir.FILLER

    # The programme plays at its slot, handed to Liquidsoap in advance.
    slot = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    await station.queue_programme(COMMUNE, programme, "Chương trình ngày 07/12", slot)
    await station.queue_programme(COMMUNE, programme, "Chương trình ngày 07/12", slot)  # repeat
    heard = await listener.wait_for(PROGRAMME_HZ, after=first_silence.arrived, within=15)
    programme_lag = heard.arrived - slot.timestamp()
    assert -1.0 < programme_lag < 5.0, f"programme heard {programme_lag:.2f} s after its slot"
    playing = await station.now_playing(COMMUNE)
    assert playing == NowPlaying(OnAir.PROGRAMME, "Chương trình ngày 07/12")
    await asyncio.sleep(2)

    # An urgent bulletin interrupts it within seconds; then the programme resumes.
    pushed = time.time()
    await station.play_urgent(COMMUNE, urgent, 'Bão số 3 "khẩn"')
    cut_in = await listener.wait_for(URGENT_HZ, after=pushed, within=MAX_INTERRUPTION_S + 5)
    delay = cut_in.arrived - pushed
    assert delay < MAX_INTERRUPTION_S
    assert await station.now_playing(COMMUNE) == NowPlaying(OnAir.URGENT, 'Bão số 3 "khẩn"')
    assert await _icecast_title(station, 'Bão số 3 "khẩn"') == 'Bão số 3 "khẩn"'
    resumed = await listener.wait_for(PROGRAMME_HZ, after=cut_in.arrived, within=10)
    urgent_heard = resumed.arrived - cut_in.arrived
    assert 3.0 < urgent_heard < 6.0, f"urgent audio lasted {urgent_heard:.2f} s on the stream"

    # Hải Đăng "restarts": the driver goes away; the stream keeps playing the programme.
    liquidsoap_pid = station._liquidsoap_pid.read_text()
    port = station.port
    del station
    gc.collect()
    received = listener.received
    await asyncio.sleep(2.5)
    assert listener.received - received > 2 * 64_000 / 8, "the stream stalled without us"
    recent = [w.tone for w in listener.snapshot()[-8:]]
    assert all(_same(tone, PROGRAMME_HZ) for tone in recent), recent

    again = make_station("liquidsoap", work_dir=tmp_path / "station", communes=[COMMUNE], port=port)
    assert isinstance(again, LiquidsoapStation)
    await again.ensure_running()
    assert again._liquidsoap_pid.read_text() == liquidsoap_pid, "attached, not restarted"
    pushed_again = time.time()
    await again.play_urgent(COMMUNE, second, "Bản tin khẩn thứ hai")
    second_in = await listener.wait_for(SECOND_URGENT_HZ, after=pushed_again, within=15)
    second_delay = second_in.arrived - pushed_again
    assert second_delay < MAX_INTERRUPTION_S
    await listener.wait_for(PROGRAMME_HZ, after=second_in.arrived, within=10)

    print(
        f"\nstation: programme heard {programme_lag:.2f} s after its slot; "
        f"urgent interruption delay {delay:.2f} s (push -> 880 Hz at the client), "
        f"urgent on air {urgent_heard:.2f} s, after driver restart {second_delay:.2f} s; "
        f"run {time.monotonic() - started:.1f} s"
    )
