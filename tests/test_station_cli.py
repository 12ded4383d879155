"""`haidang station on/off/list`, and which urgent runs reach a switched-on commune."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from broadcasts import areas, stations
from db.engine import make_engine, make_sessionmaker
from db.models import Area, AreaKind, AuditEntry, BroadcastRun, RunState
from haidang.cli import app
from tests.broadcasts.engine import approved_bulletin
from tests.conftest import Database
from tests.test_cli import upgraded_and_seeded

NOW = dt.datetime(2026, 12, 7, 1, 0, tzinfo=dt.UTC)


def test_switch_on_list_off_audited(database_url: str, tmp_path: Path) -> None:
    url = upgraded_and_seeded(database_url)
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path), "STATION_PORT": "8123"}
    runner = CliRunner()
    assert "no station switched on" in runner.invoke(app, ["station", "list"], env=env).output
    on = runner.invoke(app, ["station", "on", "c11914"], env=env)
    assert on.exit_code == 0, on.output
    assert "11914 Đặc khu Cát Hải: on" in on.output and "127.0.0.1:8123/c11914.mp3" in on.output
    again = runner.invoke(app, ["station", "on", "11914"], env=env)
    assert "already on" in again.output
    listing = runner.invoke(app, ["station", "list"], env=env)
    assert "11914" in listing.output and "http://127.0.0.1:8123/c11914.mp3" in listing.output
    province = runner.invoke(app, ["station", "on", "p31"], env=env)
    assert province.exit_code == 1 and "not a province's" in province.output
    off = runner.invoke(app, ["station", "off", "11914"], env=env)
    assert off.exit_code == 0 and "11914 Đặc khu Cát Hải: off" in off.output
    assert "no station switched on" in runner.invoke(app, ["station", "list"], env=env).output

    async def audited() -> list[str]:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        await engine.dispose()
        return [f"{row.action} {row.via} {row.details['commune']}" for row in rows]

    assert asyncio.run(audited()) == ["station.on cli 11914", "station.off cli 11914"]


async def test_urgent_runs_reach_a_commune_directly_by_province_and_by_village(
    seeded: Database,
) -> None:
    async with seeded.sessions.begin() as session:
        await areas.add_subarea(session, "11914", "Thôn Một", AreaKind.village)
        village = (await areas.subareas(session, await areas.get_by_code(session, "11914")))[0]
        commune, _ = await stations.switch_on(session, "11914", NOW)
        neighbour = await session.scalar(
            select(Area.code).where(
                Area.province_id == commune.province_id,
                Area.kind == AreaKind.commune,
                Area.code != "11914",
            )
        )
        assert neighbour is not None
    direct = await approved_bulletin(seeded, urgent=True, areas=("11914",))
    by_province = await approved_bulletin(seeded, urgent=True, areas=("p31",))
    by_village = await approved_bulletin(seeded, urgent=True, areas=(village.code,))
    elsewhere = await approved_bulletin(seeded, urgent=True, areas=(neighbour,))
    routine = await approved_bulletin(seeded, urgent=False, areas=("11914",))
    async with seeded.sessions.begin() as session:
        for bulletin_id in (direct, by_province, by_village, elsewhere, routine):
            session.add(
                BroadcastRun(
                    bulletin_id=bulletin_id, fire_at=NOW, state=RunState.sending, started_at=NOW
                )
            )
        session.add(  # too old to interrupt a stream now
            BroadcastRun(
                bulletin_id=direct, fire_at=NOW - dt.timedelta(hours=1), state=RunState.done,
                started_at=NOW - dt.timedelta(hours=1),
            )
        )  # fmt: skip
    since = NOW - dt.timedelta(minutes=10)
    async with seeded.sessions() as session:
        plays = await stations.urgent_plays(session, [commune], since=since)
    assert sorted(p.bulletin_id for p in plays) == sorted([direct, by_province, by_village])
    assert {p.commune for p in plays} == {"11914"}
    async with seeded.sessions.begin() as session:
        await stations.record_play(session, plays[0], NOW)
        await stations.record_play(session, plays[0], NOW)  # a repeat is a no-op
    async with seeded.sessions() as session:
        left = await stations.urgent_plays(session, [commune], since=since)
    assert [p.run_id for p in left] == [p.run_id for p in plays[1:]]
