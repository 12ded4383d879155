"""The running service drives the commune stations: an urgent bulletin is heard within 10 s."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from audio.station import LiquidsoapStation, NowPlaying, OnAir, find_station_binaries
from broadcasts import stations
from broadcasts.parts import PartStatus
from db.models import Bulletin, StationPlay
from haidang.runtime import Service, StationPart
from tests.audio.stream import Listener, free_port
from tests.audio.test_station import _running
from tests.bot.harness import running_service, until
from tests.broadcasts.engine import warn_now
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI

COMMUNE = "11914"
HEARD_WITHIN_S = 10.0

FOUND = find_station_binaries()
needs_station = pytest.mark.skipif(
    isinstance(FOUND, str),
    reason=f"station test needs Debian's liquidsoap and icecast2 ({FOUND}): "
    "apt-get install liquidsoap icecast2",
)


async def switch_on(database: Database, code: str) -> None:
    async with database.sessions.begin() as session:
        await stations.switch_on(session, code, dt.datetime.now(dt.UTC))


async def mounted(url: str, within: float = 10.0) -> None:
    """Wait until Liquidsoap's source is connected to the mount (a moment after it starts)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            try:
                async with client.stream("GET", url) as response:
                    if response.status_code == 200:
                        return
            except httpx.ConnectError:
                pass  # Icecast restarting
            assert time.monotonic() < deadline, f"{url} not mounted within {within} s"
            await asyncio.sleep(0.1)


def station_part(service: Service) -> StationPart:
    return next(part for part in service.parts if isinstance(part, StationPart))


@needs_station
async def test_urgent_heard_within_10_s(seeded: Database, tmp_path: Path) -> None:
    await switch_on(seeded, COMMUNE)
    port = free_port()
    work = tmp_path / "var" / "station"
    listener = Listener(f"http://127.0.0.1:{port}/c{COMMUNE}.mp3")
    try:
        async with FakeTelegramAPI() as api, running_service(
            seeded, tmp_path, tts_engine="espeak", station_port=port,
            telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
        ) as service:  # fmt: skip
            part = station_part(service)
            await until(lambda: "1 communes on" in part.status().detail, 30)
            await mounted(listener.url)
            listener.start()
            silence = await listener.wait_for(None, after=0, within=15)

            scheduled = time.time()
            bulletin_id = await warn_now(seeded, [COMMUNE])
            heard = await listener.wait_for_sound(after=silence.arrived, within=20)
            delay = heard.arrived - scheduled
            print(f"\nstation: urgent bulletin heard {delay:.2f} s after approve+schedule")
            assert delay < HEARD_WITHIN_S, f"heard after {delay:.2f} s"

            async with seeded.sessions() as session:
                title = (await session.get_one(Bulletin, bulletin_id)).title
                plays = (await session.scalars(select(StationPlay))).all()
            driver = LiquidsoapStation(work, [COMMUNE], port=port)
            assert await driver.now_playing(COMMUNE) == NowPlaying(OnAir.URGENT, title)
            assert len(plays) == 1 and part.urgent_played == 1
            assert "1 urgent played" in part.status().detail
    finally:
        listener.stop()
        await LiquidsoapStation(work, [COMMUNE], port=port).stop()
    assert not _running(str(work)), "a station process outlived the test"


async def test_without_binaries_the_station_is_off_and_the_service_runs(
    seeded: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("haidang.runtime.find_station_binaries", lambda: "liquidsoap not found")
    await switch_on(seeded, COMMUNE)
    with caplog.at_level(logging.INFO, logger="haidang.serve"):
        async with FakeTelegramAPI() as api, running_service(
            seeded, tmp_path, tts_engine="espeak",
            telegram_bot_token=api.token, telegram_api_base_url=api.base_url,
        ) as service:  # fmt: skip
            assert service.statuses()["station"] == PartStatus(False, "liquidsoap not found")
            assert service.ready()
    assert "station: off (liquidsoap not found)" in caplog.text
