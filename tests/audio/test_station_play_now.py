"""An operator's "play now": the running service puts the bulletin on the commune's stream."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from sqlalchemy import select

from broadcasts import areas, stations
from db.models import Area, Station, StationOnAir, StationRequest, StationRequestState
from tests.audio.test_station_service import (
    COMMUNE,
    HEARD_WITHIN_S,
    needs_station,
    rendered,
    station_service,
)
from tests.bot.harness import until_async
from tests.broadcasts.engine import approved_bulletin
from tests.conftest import Database

# Long enough (about 10 s of speech) for the driver to see it on air.
BODY = (
    "Ban chỉ huy phòng chống thiên tai thông báo: gió mạnh cấp 6, giật cấp 8, biển động. "
    "Đề nghị bà con ngư dân theo dõi bản tin, giữ liên lạc với bờ và chuẩn bị về nơi trú ẩn."
)


async def on_air(database: Database) -> tuple[StationOnAir | None, str | None]:
    async with database.sessions() as session:
        row = (
            await session.execute(
                select(Station.on_air, Station.on_air_title)
                .join(Area, Area.id == Station.area_id)
                .where(Area.code == COMMUNE)
            )
        ).one()
        return row[0], row[1]


@needs_station
async def test_play_now_is_heard_and_shown_on_air(seeded: Database, tmp_path: Path) -> None:
    async with station_service(seeded, tmp_path) as station:
        # The driver records what the stream plays: filler between programmes.
        await until_async(lambda: _is(seeded, StationOnAir.filler), 10)

        # An approved routine bulletin: never aired by itself; the audio part renders it.
        bulletin_id = await approved_bulletin(seeded, body=BODY)
        await until_async(lambda: rendered(seeded, bulletin_id), 60)
        asked = time.time()
        async with seeded.sessions.begin() as session:
            commune = await areas.get_by_code(session, COMMUNE)
            await stations.request_play(
                session, commune, bulletin_id, None, dt.datetime.now(dt.UTC), via="web"
            )
        heard = await station.listener.wait_for_sound(after=station.silence.arrived, within=20)
        delay = heard.arrived - asked
        print(f"\nstation: play-now heard {delay:.2f} s after the request")
        assert delay < HEARD_WITHIN_S, f"heard after {delay:.2f} s"

        title = "Thông báo gió mạnh trên biển"  # approved_bulletin's title
        await until_async(lambda: _is(seeded, StationOnAir.urgent, title), 10)
        async with seeded.sessions() as session:
            [request] = (await session.scalars(select(StationRequest))).all()
        assert request.state is StationRequestState.played
        assert request.played_at is not None
        assert station.part.requests_played == 1 and station.part.urgent_played == 0
        # Back to the filler once the bulletin ended.
        await until_async(lambda: _is(seeded, StationOnAir.filler), 30)


async def _is(database: Database, kind: StationOnAir, title: str | None = None) -> bool:
    got_kind, got_title = await on_air(database)
    return got_kind is kind and (title is None or got_title == title)
