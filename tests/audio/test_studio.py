"""Bulletin rendering through the studio: real espeak, real mastering, real databases, the cache."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import statistics
import time
import urllib.parse
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select

from audio import studio, tts
from audio.store import LocalStore
from audio.tts import EspeakEngine, Speech
from audio.tts import base as tts_base
from db.models import AssetKind, AudioAsset, Bulletin
from haidang.media import production
from haidang.settings import Settings, SettingsError, load_settings
from tests.audio.measure import decode, measure_delivery, mp3_frames
from tests.audio.test_tts import FakeTranslate, fake_translate
from tests.broadcasts.engine import NOW, approved_bulletin
from tests.conftest import Database

__all__ = ["fake_translate"]  # the fixture, imported for pytest

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
BODY = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn."
CACHE_HIT_LIMIT_S = 0.050


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "audio")


async def _render(
    database: Database,
    store: LocalStore,
    bulletin_id: int,
    work_dir: Path,
    engine_name: str = "espeak",
    force: bool = False,
) -> list[AudioAsset]:
    return await studio.render_bulletin(
        database.sessions,
        bulletin_id,
        store=store,
        engine_name=engine_name,
        tz=TZ,
        now=NOW,
        work_dir=work_dir,
        force=force,
    )


def _files(store: LocalStore) -> dict[str, tuple[int, int]]:
    """Every stored file (temporary ones included) with its size and mtime."""
    return {
        str(p.relative_to(store.root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in store.root.rglob("*")
        if p.is_file()
    }


async def _rows(database: Database) -> list[tuple[Any, ...]]:
    async with database.sessions() as session:
        rows = await session.scalars(select(AudioAsset).order_by(AudioAsset.id))
        return [
            (r.id, r.content_hash, r.format, r.store_key, r.sha256, r.size_bytes, r.created_at)
            for r in rows.all()
        ]


@pytest.fixture
def counting_engine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Registers "counting": espeak that records every text it is asked to speak."""
    spoken: list[str] = []

    class Counting:
        name = "counting"

        def __init__(self) -> None:
            self.inner = EspeakEngine()

        async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
            spoken.append(text)
            return await self.inner.synthesize(text, language=language)

    monkeypatch.setattr(tts_base, "_registry", dict(tts_base._registry))
    tts.register("counting", Counting)
    return spoken


async def test_render_masters_every_format_to_the_delivery_targets(
    seeded: Database, store: LocalStore, tmp_path: Path
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    assets = await _render(seeded, store, bulletin_id, tmp_path / "work")

    assert [a.format for a in assets] == ["mp3", "aac", "ogg"]
    (content_hash,) = {a.content_hash for a in assets}
    expected_codecs = {
        "mp3": ("mp3", "mp3float", 44_100),
        "aac": ("aac", "aac", 44_100),
        "ogg": ("ogg", "opus", 48_000),
    }
    for asset in assets:
        assert asset.store_key == f"bulletins/{content_hash[:2]}/{content_hash}.{asset.format}"
        path = store.path_for(asset.store_key)
        assert path is not None
        data = path.read_bytes()
        assert (asset.size_bytes, asset.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert (asset.kind, asset.bulletin_id, asset.engine) == (
            AssetKind.bulletin,
            bulletin_id,
            "espeak",
        )
        # The row records the master's own measurements ...
        assert asset.loudness_lufs == pytest.approx(-16.0, abs=0.1)
        assert asset.true_peak_dbtp is not None and asset.true_peak_dbtp <= -2.5
        # ... and the delivered file meets the targets by independent meters.
        delivered = measure_delivery(path)
        decoded = delivered.decoded
        print(
            f"{asset.format}: {delivered.lufs:.2f} LUFS, {delivered.ebur128_peak_dbtp:.2f} dBTP, "
            f"{decoded.duration:.2f} s"
        )
        assert (decoded.container, decoded.codec, decoded.sample_rate) == expected_codecs[
            asset.format
        ]
        # ADTS keeps the AAC encoder's priming (~0.05 s); the others decode to the master.
        assert decoded.duration == pytest.approx(asset.duration_seconds, abs=0.1)
    # Heading + title + body of espeak speech: several seconds, well under a minute.
    assert 4.0 < assets[0].duration_seconds < 30.0

    mp3 = store.path_for(assets[0].store_key)
    assert mp3 is not None
    assert {f[0] for f in mp3_frames(mp3.read_bytes())} == {96}  # constant bit rate
    tags = decode(mp3).metadata
    assert tags["title"] == "Thông báo gió mạnh trên biển"
    assert tags["artist"] == "Đặc khu Cát Hải"
    assert tags["date"] == "2026-11-25"  # approval day, local time

    # Zalo fetches the AAC by URL, which needs PUBLIC_BASE_URL.
    aac = assets[1]
    assert studio.public_url(None, aac) is None
    assert studio.public_url("", aac) is None
    for base in ("https://loa.example.vn", "https://loa.example.vn/"):
        assert studio.public_url(base, aac) == f"https://loa.example.vn/audio/files/{aac.store_key}"


async def test_the_second_render_is_a_cache_hit(
    seeded: Database, store: LocalStore, tmp_path: Path, counting_engine: list[str]
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    first = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting")
    assert len(counting_engine) == 2  # body and heading
    files, rows = _files(store), await _rows(seeded)
    assert len(files) == 3 and len(rows) == 3

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        again = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting")
        timings.append(time.perf_counter() - started)
        assert [a.id for a in again] == [a.id for a in first]
    print("cache hits (ms):", [round(t * 1000, 1) for t in timings])
    assert len(counting_engine) == 2  # no TTS
    assert _files(store) == files  # no file written, none left behind
    assert await _rows(seeded) == rows
    assert min(timings) <= CACHE_HIT_LIMIT_S
    assert statistics.median(timings) <= 4 * CACHE_HIT_LIMIT_S  # a slow CI box, not a render
    assert list((tmp_path / "work").iterdir()) == []  # temporary render dirs are gone


async def test_a_lost_file_or_force_renders_again_into_the_same_rows(
    seeded: Database, store: LocalStore, tmp_path: Path, counting_engine: list[str]
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    first = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting")
    store.delete(first[2].store_key)  # the Ogg file is lost
    again = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting")
    assert len(counting_engine) == 4
    assert [a.id for a in again] == [a.id for a in first]
    assert all(store.exists(a.store_key) for a in again)
    ogg = store.path_for(again[2].store_key)
    assert ogg is not None
    assert again[2].sha256 == hashlib.sha256(ogg.read_bytes()).hexdigest()
    assert len(await _rows(seeded)) == 3

    forced = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting", force=True)
    assert len(counting_engine) == 6
    assert [a.id for a in forced] == [a.id for a in first]


async def test_engine_voice_and_settings_are_part_of_the_key(
    seeded: Database, store: LocalStore, tmp_path: Path, counting_engine: list[str]
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    espeak = await _render(seeded, store, bulletin_id, tmp_path / "work", "espeak")
    counted = await _render(seeded, store, bulletin_id, tmp_path / "work", "counting")
    assert espeak[0].content_hash != counted[0].content_hash
    # Same words in another bulletin: its own rows (an asset belongs to one bulletin).
    twin_id = await approved_bulletin(seeded, body=BODY)
    twin = await _render(seeded, store, twin_id, tmp_path / "work", "espeak")
    assert twin[0].content_hash != espeak[0].content_hash
    assert {a.bulletin_id for a in twin} == {twin_id}
    async with seeded.sessions() as session:
        latest = await studio.bulletin_assets(session, bulletin_id)
        assert {fmt: a.id for fmt, a in latest.items()} == {a.format: a.id for a in counted}
        assert await studio.bulletin_assets(session, 999_999) == {}


async def test_spoken_script_names_the_station_only_for_one_commune(seeded: Database) -> None:
    one = await approved_bulletin(seeded, body="Gió cấp 6 lúc 10:30.")
    province = await approved_bulletin(seeded, body="Gió cấp 6.", areas=("p31",))
    two_communes = await approved_bulletin(seeded, body="Gió cấp 6.", areas=("11914", "p31"))
    async with seeded.sessions() as session:
        scripts = {
            name: await studio.bulletin_script(session, await session.get_one(Bulletin, i), TZ)
            for name, i in (("one", one), ("province", province), ("two", two_communes))
        }
    assert scripts["one"].heading == "Đài truyền thanh đặc khu Cát Hải xin thông báo."
    assert scripts["one"].text.startswith("Thông báo gió mạnh trên biển.")
    assert "cấp sáu lúc mười giờ ba mươi phút" in scripts["one"].text
    assert scripts["province"].heading == "Hải Đăng xin thông báo."
    assert scripts["province"].tags.commune == "Thành phố Hải Phòng"
    assert scripts["two"].heading == "Hải Đăng xin thông báo."


async def test_rendering_leaves_the_event_loop_free(
    seeded: Database, store: LocalStore, tmp_path: Path
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY + " " + BODY + " " + BODY)
    gaps: list[float] = []
    busy: list[float] = []  # the loop thread's own CPU time within each gap
    done = asyncio.Event()

    async def heartbeat() -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now, cpu = time.perf_counter(), time.thread_time()
            gaps.append(now - last)
            busy.append(cpu - last_cpu)
            last, last_cpu = now, cpu

    beat = asyncio.create_task(heartbeat())
    await _render(seeded, store, bulletin_id, tmp_path / "work")
    done.set()
    await beat
    print(f"{len(gaps)} beats, longest gap {max(gaps) * 1000:.0f} ms, "
          f"longest busy {max(busy) * 1000:.0f} ms")  # fmt: skip
    assert len(gaps) > 20
    # TTS, mastering and file copies run in worker threads, so the loop's own thread never
    # works for long between two beats. Its CPU time, not the wall clock, says so: on a
    # loaded machine a thread waits for a core for 0.3 s now and then (seen in CI) without
    # running anything; work on the loop would show here as CPU time.
    assert max(busy) < 0.1


@dataclass
class Gate:
    """Registered as engine "gated": espeak that stops mid-render until released."""

    entered: asyncio.Event
    release: asyncio.Event


@pytest.fixture
def gated_engine(monkeypatch: pytest.MonkeyPatch) -> Gate:
    gate = Gate(asyncio.Event(), asyncio.Event())

    class Gated:
        name = "gated"

        def __init__(self) -> None:
            self.inner = EspeakEngine()

        async def synthesize(self, text: str, *, language: str = "vi") -> Speech:
            gate.entered.set()
            await gate.release.wait()
            return await self.inner.synthesize(text, language=language)

    monkeypatch.setattr(tts_base, "_registry", dict(tts_base._registry))
    tts.register("gated", Gated)
    return gate


async def test_a_render_holds_no_transaction_so_other_writers_go_ahead(
    seeded: Database, store: LocalStore, tmp_path: Path, gated_engine: Gate
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    render = asyncio.create_task(
        _render(seeded, store, bulletin_id, tmp_path / "work", engine_name="gated")
    )
    await asyncio.wait_for(gated_engine.entered.wait(), 30)
    # Mid-render: no connection is checked out, so no transaction (nor SQLite lock) is held.
    assert seeded.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    started = time.perf_counter()
    # A writer (BEGIN IMMEDIATE on SQLite) commits while the render waits. Before the
    # split it would have waited for the render, here forever (busy_timeout, then failure).
    async with asyncio.timeout(5), seeded.sessions.begin() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        bulletin.review_comment = "written during the render"
    write_seconds = time.perf_counter() - started
    assert not render.done()
    gated_engine.release.set()
    assets = await render
    print(f"a write committed in {write_seconds * 1000:.1f} ms during the render")
    assert write_seconds < 1.0
    assert [a.format for a in assets] == ["mp3", "aac", "ogg"]
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        assert bulletin.review_comment == "written during the render"
        assert len((await session.scalars(select(AudioAsset))).all()) == 3


async def test_unknown_bulletins_are_refused(
    seeded: Database, store: LocalStore, tmp_path: Path
) -> None:
    with pytest.raises(studio.StudioError, match="no bulletin 424242"):
        await studio.render_bulletin(
            seeded.sessions, 424242, store=store, engine_name="espeak", tz=TZ, now=NOW,
            work_dir=tmp_path / "w",
        )  # fmt: skip


async def test_auto_speaks_online_when_gtts_answers(
    seeded: Database, store: LocalStore, tmp_path: Path, fake_translate: FakeTranslate
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    assets = await _render(seeded, store, bulletin_id, tmp_path / "work", "auto")
    assert {a.engine for a in assets} == {"gtts"}
    assert fake_translate.hosts and set(fake_translate.hosts) == {"translate.google.com"}
    for asset in assets:
        path = store.path_for(asset.store_key)
        assert path is not None
        measure_delivery(path)


async def test_auto_falls_back_to_espeak_in_one_voice(
    seeded: Database, store: LocalStore, tmp_path: Path, fake_translate: FakeTranslate
) -> None:
    # Google answers the heading but fails the body: everything must end up in one voice.
    real = fake_translate.send

    def body_fails(adapter: Any, request: Any, **kwargs: Any) -> Any:
        form = urllib.parse.parse_qs(request.body)
        text = json.loads(json.loads(form["f.req"][0])[0][0][1])[0]
        fake_translate.mode = "ok" if text.startswith("Đài truyền thanh") else "http500"
        return real(adapter, request, **kwargs)

    fake_translate.send = body_fails  # type: ignore[method-assign]
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    assets = await _render(seeded, store, bulletin_id, tmp_path / "work", "auto")
    assert {a.engine for a in assets} == {"espeak"}
    assert any(t.startswith("Đài truyền thanh") for t in fake_translate.texts)
    for asset in assets:
        path = store.path_for(asset.store_key)
        assert path is not None
        measure_delivery(path)


# --- the command line ------------------------------------------------------------------------


def test_cli_renders_prints_paths_and_reports_cache_hits(tmp_path: Path) -> None:
    # In-process on SQLite: the bulletins come from the broadcast builders, which need a
    # session on the database the CLI reads.
    from typer.testing import CliRunner

    from db.engine import make_engine, make_sessionmaker
    from haidang.cli import app
    from haidang.settings import normalise_database_url
    from tests.audio.test_programmes import local, send_at

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"DATA_DIR": str(tmp_path / "var"), "DATABASE_URL": url, "TTS_ENGINE": "espeak"}
    env["LOG_LEVEL"] = "WARNING"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0

    async def bulletin() -> int:
        engine = make_engine(normalise_database_url(url))
        try:
            database = Database("sqlite", url, engine, make_sessionmaker(engine))
            bulletin_id = await approved_bulletin(database, body=BODY)
            await send_at(database, bulletin_id, local(8))
            return bulletin_id
        finally:
            await engine.dispose()

    bulletin_id = asyncio.run(bulletin())
    audio_dir = (tmp_path / "var" / "audio").resolve()

    first = runner.invoke(app, ["audio", "render", str(bulletin_id)], env=env)
    assert first.exit_code == 0, first.output
    paths = [Path(line) for line in first.stdout.splitlines()]
    assert [p.suffix for p in paths] == [".mp3", ".aac", ".ogg"]
    for path in paths:
        assert path.is_relative_to(audio_dir / "bulletins") and path.stat().st_size > 1000
    measure_delivery(paths[0])

    again = runner.invoke(app, ["audio", "render", str(bulletin_id)], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == ["cache hit: nothing re-rendered", *map(str, paths)]
    forced = runner.invoke(app, ["audio", "render", str(bulletin_id), "--force"], env=env)
    assert forced.stdout.splitlines() == [str(p) for p in paths]

    missing = runner.invoke(app, ["audio", "render", "999"], env=env)
    assert missing.exit_code == 1 and "no bulletin 999" in missing.output

    programme = runner.invoke(app, ["audio", "programme", "11914", "--date", "2026-11-25"], env=env)
    assert programme.exit_code == 0, programme.output
    (line,) = programme.stdout.splitlines()
    assert line.startswith(str(audio_dir / "programmes" / "11914" / "2026-11-25"))
    measure_delivery(Path(line))
    cached = runner.invoke(app, ["audio", "programme", "c11914", "--date", "2026-11-25"], env=env)
    assert cached.stdout.splitlines() == ["cache hit: nothing re-rendered", line]

    empty = runner.invoke(app, ["audio", "programme", "11914", "--date", "2026-11-24"], env=env)
    assert empty.exit_code == 0
    assert empty.stdout.strip() == "no bulletins for 11914 on 2026-11-24: no programme"
    bad_date = runner.invoke(app, ["audio", "programme", "11914", "--date", "hôm nay"], env=env)
    assert bad_date.exit_code == 1 and "not a date" in bad_date.output
    unknown = runner.invoke(app, ["audio", "programme", "99999"], env=env)
    assert unknown.exit_code == 1 and "unknown commune code: 99999" in unknown.output
    voice = {**env, "TTS_ENGINE": "auto", "TTS_ONLINE_ENGINE": "nobody"}
    no_voice = runner.invoke(app, ["audio", "render", str(bulletin_id)], env=voice)
    assert no_voice.exit_code == 1 and "unknown TTS engine 'nobody'" in no_voice.output


def _jingle(path: Path, seconds: float = 2.0) -> Path:
    """A two-note chime as a 16-bit WAV file (what an operator might configure)."""
    rate = 22_050
    t = np.arange(round(seconds * rate)) / rate
    notes = np.where(t < seconds / 2, 660.0, 880.0)
    tone = 0.4 * np.sin(2 * np.pi * notes * t) * np.minimum(1.0, (seconds - t) * 4)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return path


async def test_jingle_heading_and_compression_are_configured_and_keyed(
    seeded: Database, store: LocalStore, tmp_path: Path, counting_engine: list[str]
) -> None:
    bulletin_id = await approved_bulletin(seeded, body=BODY)
    jingle = _jingle(tmp_path / "nhac-hieu.wav")
    variants = {
        "default": studio.PRODUCTION,
        "jingle": studio.Production(jingle=jingle),
        "no heading": studio.Production(heading=False),
        "no compression": studio.Production(
            mastering=dataclasses.replace(studio.MASTERING, compression=None)
        ),
    }
    made: dict[str, list[AudioAsset]] = {}
    spoken: dict[str, list[str]] = {}
    for name, variant in variants.items():
        counting_engine.clear()
        made[name] = await studio.render_bulletin(
            seeded.sessions, bulletin_id, store=store, engine_name="counting", tz=TZ, now=NOW,
            work_dir=tmp_path / "work", production=variant,
        )  # fmt: skip
        spoken[name] = list(counting_engine)
        for asset in made[name]:
            path = store.path_for(asset.store_key)
            assert path is not None
            measure_delivery(path)  # every variant meets the loudness targets
    # Each variant is its own cache entry with its own files.
    assert len({assets[0].content_hash for assets in made.values()}) == 4
    assert len({assets[0].sha256 for assets in made.values()}) == 4
    seconds = {name: assets[0].duration_seconds for name, assets in made.items()}
    gap = studio.MASTERING.jingle_gap_seconds
    assert seconds["jingle"] == pytest.approx(seconds["default"] + 2.0 + gap, abs=0.05)
    assert seconds["no heading"] < seconds["default"] - 1.5
    # The same speech, only compressed differently. espeak-ng carries state from one text
    # to the next, so two renders of one text can differ by a few milliseconds (CI once saw
    # 14 ms): "the same length" within 50 ms, far below the heading's 1.5 s.
    assert seconds["no compression"] == pytest.approx(seconds["default"], abs=0.05)
    # Without the heading, "Đài truyền thanh … xin thông báo." is not even spoken.
    assert len(spoken["default"]) == 2 and spoken["default"][1].startswith("Đài truyền thanh")
    assert len(spoken["no heading"]) == 1 and "xin thông báo" not in spoken["no heading"][0]

    # The same production again is a cache hit; an edited jingle file is a new key.
    counting_engine.clear()
    again = await studio.render_bulletin(
        seeded.sessions, bulletin_id, store=store, engine_name="counting", tz=TZ, now=NOW,
        work_dir=tmp_path / "work", production=studio.Production(jingle=jingle),
    )  # fmt: skip
    assert counting_engine == [] and again[0].id == made["jingle"][0].id
    _jingle(jingle, seconds=1.0)
    shorter = await studio.render_bulletin(
        seeded.sessions, bulletin_id, store=store, engine_name="counting", tz=TZ, now=NOW,
        work_dir=tmp_path / "work", production=studio.Production(jingle=jingle),
    )  # fmt: skip
    assert shorter[0].content_hash != made["jingle"][0].content_hash
    assert shorter[0].duration_seconds == pytest.approx(seconds["jingle"] - 1.0, abs=0.05)


def test_settings_configure_the_production(tmp_path: Path) -> None:
    jingle = _jingle(tmp_path / "nhac-hieu.wav")
    configured = production(
        Settings(
            _env_file=None,
            audio_jingle=str(jingle),
            audio_heading="false",
            audio_compression_ratio=4.0,
        )
    )
    assert configured.jingle == jingle and configured.heading is False
    assert configured.mastering.compression is not None
    assert configured.mastering.compression.ratio == 4.0
    off = production(Settings(_env_file=None, audio_compression=False))
    assert off.mastering.compression is None and off.jingle is None and off.heading
    assert production(Settings(_env_file=None)) == studio.PRODUCTION
    with pytest.raises(SettingsError, match="AUDIO_JINGLE: no such file"):
        load_settings(_env_file=None, audio_jingle=str(tmp_path / "missing.mp3"))
    with pytest.raises(SettingsError, match="AUDIO_COMPRESSION_RATIO"):
        load_settings(_env_file=None, audio_compression_ratio=50)
