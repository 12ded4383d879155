"""Daily programmes rebuilt by the running service as bulletins go out, are cancelled, expire."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest
from sqlalchemy import select

from audio import programmes
from broadcasts import bulletins, schedules
from db.models import AudioAsset, Lease, Official, Platform, SubscriberRole
from haidang.runtime import AudioPart, Service
from haidang.settings import Settings
from tests.audio.test_programmes import (
    DAY,
    cancel,
    local,
    other_commune,
    programme_rows,
    send_at,
)
from tests.bot.harness import eventually, running_service
from tests.broadcasts.engine import NOW, add_people, approved_bulletin
from tests.broadcasts.test_lifecycle import schedule_now
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


async def schedule_at(database: Database, bulletin_id: int, at: dt.datetime) -> None:
    async with database.sessions.begin() as session:
        bulletin = await bulletins.get(session, bulletin_id)
        editor = await session.scalar(select(Official).where(Official.username == "editor"))
        assert editor is not None
        await schedules.schedule(
            session, bulletin, editor, now=dt.datetime.now(dt.UTC), tz=TZ, at=at
        )


def audio_part(service: Service) -> AudioPart:
    return next(part for part in service.parts if isinstance(part, AudioPart))


async def current_programme(database: Database) -> AudioAsset | None:
    rows = await programme_rows(database)
    assert len(rows) <= 1, "a day keeps one programme"
    return rows[0] if rows else None


async def programme_key(database: Database) -> str | None:
    programme = await current_programme(database)
    return programme.store_key if programme else None


async def mp3_seconds(database: Database, bulletin_ids: list[int]) -> float:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(AudioAsset).where(
                AudioAsset.bulletin_id.in_(bulletin_ids), AudioAsset.format == "mp3"
            )
        )
        return sum(row.duration_seconds for row in rows.all())


async def test_the_service_rebuilds_the_days_programme_once_per_burst_and_on_cancel(
    seeded: Database, tmp_path: Path
) -> None:
    async with FakeTelegramAPI() as api, running_service(
        seeded, tmp_path, tts_engine="espeak", telegram_bot_token=api.token,
        telegram_api_base_url=api.base_url,
    ) as service:  # fmt: skip
        part = audio_part(service)
        base = f"http://127.0.0.1:{service.settings.http_port}"
        first = await approved_bulletin(seeded, body="Gió mạnh cấp 6, biển động.")
        second = await approved_bulletin(seeded, body="Sóng cao 3 mét.", areas=("p31",))
        # A burst: two bulletins go out within a second or two; the second is to be
        # repeated tonight, so it can still be cancelled after its first run.
        await schedule_now(seeded, first)
        await schedule_now(seeded, second)
        await schedule_at(seeded, second, dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))

        async def built() -> int:
            return part.programmes_built

        await eventually(built, 1, timeout=60)
        programme = await current_programme(seeded)
        assert programme is not None and programme.area_id is not None
        # Both bulletins are in it (with the cues around them), built in one go.
        both = await mp3_seconds(seeded, [first, second])
        assert programme.duration_seconds > both + 2 * programmes.ITEM_GAP_SECONDS
        assert part.programmes_built == 1
        today = dt.datetime.now(dt.UTC).astimezone(TZ).date()
        assert programme.store_key.startswith(f"programmes/11914/{today.isoformat()}/")

        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/audio/11914")
            feed = await client.get("/audio/11914/feed.xml")
        assert page.status_code == 200 and programme.store_key in page.text
        entries = feedparser.parse(feed.content).entries
        assert any(programme.store_key in e.enclosures[0].href for e in entries)

        # Cancelling one bulletin: a new programme without it replaces the old one.
        await cancel(seeded, second, at=dt.datetime.now(dt.UTC))
        old_key = programme.store_key

        async def key_changed() -> bool:
            return await programme_key(seeded) not in (old_key, None)

        await eventually(key_changed, True, timeout=60)
        shorter = await current_programme(seeded)
        assert shorter is not None
        assert shorter.duration_seconds < programme.duration_seconds - 2
        assert part.programmes_built == 2
        assert not service.store.exists(old_key)
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/audio/11914")
            feed = await client.get("/audio/11914/feed.xml")
            download = await client.get(f"/audio/files/{shorter.store_key}")
            gone = await client.get(f"/audio/files/{old_key}")
        assert shorter.store_key in page.text and old_key not in page.text
        enclosures = [e.enclosures[0].href for e in feedparser.parse(feed.content).entries]
        assert any(shorter.store_key in href for href in enclosures)
        assert not any(old_key in href for href in enclosures)
        assert (download.status_code, len(download.content)) == (200, shorter.size_bytes)
        assert gone.status_code == 404
        assert "2 programmes built" in part.status().detail

    # Stopping gave the lease back for another process to take at once.
    async with seeded.sessions() as session:
        assert await session.scalar(select(Lease).where(Lease.name == AudioPart.LEASE)) is None


async def test_changes_name_each_event_and_the_programmes_it_touches(
    seeded: Database, tmp_path: Path
) -> None:
    local_id = await approved_bulletin(seeded, body="Tin riêng.")
    expiring = await approved_bulletin(
        seeded, body="Tin có hạn.", expires_at=local(12), areas=("p31",)
    )
    operator_commune = await other_commune(seeded)
    await add_people(
        seeded, Platform.telegram, ["op-1"], area_code=operator_commune,
        role=SubscriberRole.radio_operator,
    )  # fmt: skip
    await send_at(seeded, local_id, local(7))
    await send_at(seeded, expiring, local(8))
    await send_at(seeded, local_id, local(7, day=DAY + dt.timedelta(days=1)))

    async def changes(since: dt.datetime, now: dt.datetime) -> list[programmes.ProgrammeChange]:
        async with seeded.sessions() as session:
            return await programmes.programme_changes(session, since=since, now=now, tz=TZ)

    morning = await changes(local(6), local(9))
    assert [c.key.split(":")[0] for c in morning] == ["run", "run"]
    assert morning[0].programmes == {("11914", DAY)}
    # A province-wide bulletin touches only communes a radio operator follows (or built).
    assert morning[1].programmes == {(operator_commune, DAY)}
    assert morning[0].at == local(7)

    # The expiry at noon takes it off that day's programme.
    noon = await changes(local(9), local(13))
    assert [(c.key, set(c.programmes)) for c in noon] == [
        (f"expire:{expiring}:{local(12).astimezone(dt.UTC).isoformat()}",
         {(operator_commune, DAY)}),
    ]  # fmt: skip
    # Nothing in a window without events; events at its end are in, at its start out.
    assert await changes(local(13), local(23)) == []
    assert [c.key for c in await changes(local(7), local(8))] == [morning[1].key]

    # A cancel (at the test's NOW clock) touches every day the bulletin went out on.
    await cancel(seeded, local_id)
    cancelled = await changes(NOW - dt.timedelta(seconds=1), NOW)
    assert [(c.key, set(c.programmes)) for c in cancelled] == [
        (f"cancel:{local_id}", {("11914", DAY), ("11914", DAY + dt.timedelta(days=1))})
    ]


def test_pending_rebuilds_let_a_burst_out_once() -> None:
    pending = programmes.PendingRebuilds(quiet=3.0, max_wait=10.0)
    a, b = ("11914", DAY), ("11915", DAY - dt.timedelta(days=1))
    pending.add([a], 0.0)
    pending.add([a, b], 2.0)
    assert pending.due(4.0) == []  # a changed 2 s ago: not settled
    assert len(pending) == 2
    assert pending.due(5.0) == [a, b]  # newest day first
    assert pending.due(5.0) == [] and len(pending) == 0
    # A steady trickle still gets out after max_wait.
    for second in range(0, 12, 2):
        pending.add([a], float(second))
        due = pending.due(float(second))
        if second < 10:
            assert due == []
    assert due == [a]
    pending.add([b], 20.0)
    pending.clear()
    assert pending.due(100.0) == []
    with pytest.raises(ValueError, match="quiet"):
        programmes.PendingRebuilds(quiet=5.0, max_wait=1.0)


async def test_one_process_builds_and_another_takes_over_when_it_stops(
    seeded: Database, tmp_path: Path
) -> None:
    # Two processes' audio parts sharing the database and the audio store (passes driven
    # by hand, not by their timers).
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", tts_engine="espeak")
    parts = [audio_part(Service(settings, engine=seeded.engine)) for _ in range(2)]
    first, second = parts
    bulletin_id = await approved_bulletin(seeded, body="Gió mạnh cấp 6.")
    await send_at(seeded, bulletin_id, dt.datetime.now(dt.UTC))

    async def both_passes() -> None:
        for part in parts:
            await part._rebuild_programmes()

    await both_passes()  # the first takes the lease and sees the run; the second waits
    await asyncio.sleep(AudioPart.QUIET_S + 0.1)
    await both_passes()
    assert (first.programmes_built, second.programmes_built) == (1, 0)
    built = await current_programme(seeded)
    assert built is not None

    # The first stops and gives the lease back; the second takes over, looks back over
    # the day, and finds the programme up to date (a cache hit, nothing rebuilt).
    await first.stop()
    await second._rebuild_programmes()
    async with seeded.sessions() as session:
        lease = await session.scalar(select(Lease).where(Lease.name == AudioPart.LEASE))
        assert lease is not None and lease.holder == second._service.holder
    await asyncio.sleep(AudioPart.QUIET_S + 0.1)
    await second._rebuild_programmes()
    assert second.programmes_built == 0
    again = await current_programme(seeded)
    assert again is not None and again.id == built.id
    await second.stop()
