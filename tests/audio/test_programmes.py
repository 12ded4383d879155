"""Daily programmes: which bulletins, in what order, mastered once more, cached and rebuilt."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from audio import programmes
from audio.store import LocalStore
from broadcasts import bulletins, runs
from db.models import (
    Area,
    AreaKind,
    AssetKind,
    AudioAsset,
    Bulletin,
    Official,
    Platform,
    SubscriberRole,
)
from tests.audio.measure import measure_delivery, mp3_frames
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, officials_pair
from tests.conftest import Database

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = dt.date(2026, 11, 25)


def local(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=TZ)


async def send_at(database: Database, bulletin_id: int, at: dt.datetime) -> None:
    """A run of the bulletin that started at ``at`` (fanned out to whoever follows)."""
    async with database.sessions.begin() as session:
        run = await runs.create_run(
            session, bulletin_id=bulletin_id, schedule_id=None, fire_at=at, now=at
        )
        assert run is not None
        await runs.fan_out(session, run, at)


async def internal_bulletin(database: Database) -> int:
    """An approved bulletin for border guards only: not for the public loudspeaker."""
    editor_id, approver_id = await officials_pair(database)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        bulletin = await bulletins.create(
            session, author=editor, title="Lịch tuần tra", body="Tuần tra lúc 5 giờ.",
            area_codes=["11914"], now=NOW, roles=[SubscriberRole.border_guard], submit=True,
        )  # fmt: skip
        await bulletins.approve(
            session, bulletin, await session.get_one(Official, approver_id), NOW
        )
        return bulletin.id


async def cancel(database: Database, bulletin_id: int, at: dt.datetime = NOW) -> None:
    editor_id, _ = await officials_pair(database)
    async with database.sessions.begin() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        await bulletins.cancel(session, bulletin, await session.get_one(Official, editor_id), at)


async def other_commune(database: Database) -> str:
    """A commune of Hải Phòng other than Cát Hải (the editors' scope is the province)."""
    async with database.sessions() as session:
        province = await session.scalar(select(Area).where(Area.code == "p31"))
        assert province is not None
        code = await session.scalar(
            select(Area.code)
            .where(Area.province_id == province.id, Area.kind == AreaKind.commune)
            .where(Area.code != "11914")
            .order_by(Area.code)
            .limit(1)
        )
        assert code is not None
        return code


async def build(
    database: Database, store: LocalStore, work: Path, code: str = "11914", day: dt.date = DAY
) -> AudioAsset | None:
    return await programmes.build_daily_programme(
        database.sessions, code, day, store=store, engine_name="espeak", tz=TZ, now=NOW,
        work_dir=work,
    )  # fmt: skip


async def day_items(database: Database, day: dt.date = DAY) -> list[int]:
    async with database.sessions() as session:
        commune = await programmes.commune_by_code(session, "11914")
        found = await programmes.day_bulletins(session, commune, day, tz=TZ, now=NOW)
        return [bulletin.id for bulletin, _ in found]


async def programme_rows(database: Database) -> list[AudioAsset]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(AudioAsset).where(AudioAsset.kind == AssetKind.programme)
        )
        return list(rows.all())


async def test_the_day_holds_the_communes_public_bulletins_in_send_order(
    seeded: Database,
) -> None:
    late = await approved_bulletin(seeded, body="Tin gửi riêng cho đặc khu.")
    early = await approved_bulletin(seeded, body="Tin cho cả thành phố.", areas=("p31",))
    elsewhere = await approved_bulletin(
        seeded, body="Tin xã khác.", areas=(await other_commune(seeded),)
    )
    internal = await internal_bulletin(seeded)
    yesterday = await approved_bulletin(seeded, body="Tin hôm qua.")
    never_sent = await approved_bulletin(seeded, body="Chưa gửi.")
    await send_at(seeded, late, local(14))
    await send_at(seeded, late, local(18))  # sent twice: listed once, at its first send
    await send_at(
        seeded, early, local(0, 5)
    )  # just after local midnight (17:05 UTC the day before)
    await send_at(seeded, elsewhere, local(9))
    await send_at(seeded, internal, local(9))
    await send_at(seeded, yesterday, local(23, 55, DAY - dt.timedelta(days=1)))
    assert never_sent

    assert await day_items(seeded) == [early, late]
    assert await day_items(seeded, DAY - dt.timedelta(days=1)) == [yesterday]
    assert await day_items(seeded, DAY + dt.timedelta(days=1)) == []


async def test_programme_is_mastered_cached_and_rebuilt_when_bulletins_change(
    seeded: Database, tmp_path: Path
) -> None:
    store, work = LocalStore(tmp_path / "audio"), tmp_path / "work"
    first = await approved_bulletin(seeded, body="Gió mạnh cấp 6, biển động.")
    second = await approved_bulletin(seeded, body="Sóng cao 3 mét.", areas=("p31",))
    await send_at(seeded, first, local(7))
    await send_at(seeded, second, local(9))

    started = time.perf_counter()
    programme = await build(seeded, store, work)
    print(f"built in {time.perf_counter() - started:.2f} s")
    assert programme is not None
    assert (programme.kind, programme.format, programme.bulletin_id) == (
        AssetKind.programme,
        "mp3",
        None,
    )
    assert programme.store_key == f"programmes/11914/2026-11-25/{programme.content_hash}.mp3"
    path = store.path_for(programme.store_key)
    assert path is not None
    delivered = measure_delivery(path)
    print(
        f"programme: {delivered.lufs:.2f} LUFS, {delivered.ebur128_peak_dbtp:.2f} dBTP, "
        f"{delivered.decoded.duration:.1f} s"
    )
    assert programme.loudness_lufs == pytest.approx(-16.0, abs=0.1)
    assert programme.true_peak_dbtp is not None and programme.true_peak_dbtp <= -2.5
    decoded = delivered.decoded
    assert (decoded.container, decoded.sample_rate) == ("mp3", 44_100)
    assert decoded.duration == pytest.approx(programme.duration_seconds, abs=0.08)
    assert {f[0] for f in mp3_frames(path.read_bytes())} == {96}
    assert decoded.metadata["title"] == "Chương trình phát thanh ngày 25/11/2026"
    assert decoded.metadata["artist"] == "Đặc khu Cát Hải"
    # Both bulletins, their cues, an opening and a closing.
    async with seeded.sessions() as session:
        rows = await session.scalars(
            select(AudioAsset).where(
                AudioAsset.kind == AssetKind.bulletin, AudioAsset.format == "mp3"
            )
        )
        bulletin_seconds = sum(a.duration_seconds for a in rows.all())
    assert programme.duration_seconds > bulletin_seconds + 2 * programmes.ITEM_GAP_SECONDS + 3

    # Unchanged day: a cache hit, same row and file.
    mtime = path.stat().st_mtime_ns
    started = time.perf_counter()
    again = await build(seeded, store, work)
    hit_seconds = time.perf_counter() - started
    assert again is not None and (again.id, again.content_hash) == (
        programme.id,
        programme.content_hash,
    )
    assert path.stat().st_mtime_ns == mtime
    assert hit_seconds < 0.5

    # Cancelling a bulletin rebuilds without it; the old programme row and file go.
    await cancel(seeded, second)
    shorter = await build(seeded, store, work)
    assert shorter is not None and shorter.content_hash != programme.content_hash
    assert shorter.duration_seconds < programme.duration_seconds - 2
    assert not store.exists(programme.store_key)
    assert [r.id for r in await programme_rows(seeded)] == [shorter.id]
    new_path = store.path_for(shorter.store_key)
    assert new_path is not None
    measure_delivery(new_path)

    # Adding one rebuilds with it.
    added = await approved_bulletin(seeded, body="Tàu thuyền về bến trước 17 giờ.")
    await send_at(seeded, added, local(11))
    longer = await build(seeded, store, work)
    assert longer is not None
    assert longer.content_hash not in {programme.content_hash, shorter.content_hash}
    assert longer.duration_seconds > shorter.duration_seconds + 2
    assert [r.id for r in await programme_rows(seeded)] == [longer.id]
    async with seeded.sessions() as session:
        commune = await programmes.commune_by_code(session, "c11914")
        listed = await programmes.daily_programmes(session, commune)
    assert [(day, asset.id) for day, asset in listed] == [(DAY, longer.id)]

    # A day left with nothing: no programme, and the stale one is removed.
    await cancel(seeded, first)
    await cancel(seeded, added)
    assert await build(seeded, store, work) is None
    assert await programme_rows(seeded) == []
    assert not store.exists(longer.store_key)


async def test_empty_days_and_bad_codes(seeded: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "audio")
    assert await build(seeded, store, tmp_path / "work") is None
    assert not store.root.exists() or not any(store.root.rglob("*.mp3"))
    for code in ("99999", "p31", "abc", "11914.1", ""):
        with pytest.raises(programmes.ProgrammeError):
            await build(seeded, store, tmp_path / "work", code=code)


async def test_programme_communes_are_the_ones_that_play_it(
    seeded: Database, tmp_path: Path
) -> None:
    local_id = await approved_bulletin(seeded, body="Tin riêng.")
    province_id = await approved_bulletin(seeded, body="Tin toàn thành phố.", areas=("p31",))
    async with seeded.sessions() as session:
        assert await programmes.programme_communes(session, local_id, DAY) == ["11914"]
        assert await programmes.programme_communes(session, province_id, DAY) == []

    await send_at(seeded, province_id, local(8))
    assert await build(seeded, LocalStore(tmp_path / "audio"), tmp_path / "work") is not None
    operator_commune = await other_commune(seeded)
    await add_people(
        seeded, Platform.telegram, ["op-1"], area_code=operator_commune,
        role=SubscriberRole.radio_operator,
    )  # fmt: skip
    async with seeded.sessions() as session:
        touched = await programmes.programme_communes(session, province_id, DAY)
        other_day = await programmes.programme_communes(
            session, province_id, DAY + dt.timedelta(days=1)
        )
    assert touched == sorted(["11914", operator_commune])
    assert other_day == [operator_commune]
