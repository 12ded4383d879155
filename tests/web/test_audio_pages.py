"""Public audio: the commune page, its podcast feed (read by feedparser), and Range downloads."""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest
from fastapi import FastAPI

from audio import programmes, studio
from audio.store import LocalStore
from broadcasts.parts import PartStatus
from db.models import AudioAsset
from tests.audio.test_programmes import DAY, local, send_at
from tests.broadcasts.engine import NOW, approved_bulletin
from tests.conftest import Database
from web.app import create_app
from web.audio import Unsatisfiable, make_router, parse_range

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PUBLIC = "https://loa.example.vn"


@dataclass
class Site:
    database: Database
    store: LocalStore
    bulletins: list[dict[str, AudioAsset]]  # oldest first
    titles: list[str]
    programme: AudioAsset

    def app(self, public_base_url: str | None = None) -> FastAPI:
        router = make_router(self.database.sessions, self.store, public_base_url, tz=TZ)
        return create_app(
            engine=self.database.engine,
            parts=lambda: {"web": PartStatus(active=True, detail="test")},
            routers=[router],
        )

    def data(self, asset: AudioAsset) -> bytes:
        path = self.store.path_for(asset.store_key)
        assert path is not None
        return path.read_bytes()


@pytest.fixture
async def site(seeded: Database, tmp_path: Path) -> Site:
    store = LocalStore(tmp_path / "audio")
    sent = [
        (await approved_bulletin(seeded, body="Gió mạnh cấp 6, biển động."), local(7)),
        (await approved_bulletin(seeded, body="Sóng cao 3 mét.", areas=("p31",)), local(9, 30)),
    ]
    rendered = []  # before fan-out, as the service does
    for bulletin_id, _ in sent:
        assets = await studio.render_bulletin(
            seeded.sessions, bulletin_id, store=store, engine_name="espeak", tz=TZ, now=NOW,
            work_dir=tmp_path / "work",
        )  # fmt: skip
        rendered.append({a.format: a for a in assets})
    for bulletin_id, at in sent:
        await send_at(seeded, bulletin_id, at)
    programme = await programmes.build_daily_programme(
        seeded.sessions, "11914", DAY, store=store, engine_name="espeak", tz=TZ, now=NOW,
        work_dir=tmp_path / "work",
    )  # fmt: skip
    assert programme is not None
    titles = ["Thông báo gió mạnh trên biển"] * 2
    return Site(seeded, store, rendered, titles, programme)


@dataclass
class One:
    """A single rendered and sent bulletin, without a programme: enough for downloads."""

    database: Database
    store: LocalStore
    assets: dict[str, AudioAsset]

    def app(self) -> FastAPI:
        return bare_app(self.database, self.store)

    def data(self, asset: AudioAsset) -> bytes:
        path = self.store.path_for(asset.store_key)
        assert path is not None
        return path.read_bytes()


@pytest.fixture
async def one(seeded: Database, tmp_path: Path) -> One:
    store = LocalStore(tmp_path / "audio")
    bulletin_id = await approved_bulletin(seeded, body="Biển động.")
    assets = await studio.render_bulletin(
        seeded.sessions, bulletin_id, store=store, engine_name="espeak", tz=TZ, now=NOW,
        work_dir=tmp_path / "work",
    )  # fmt: skip
    await send_at(seeded, bulletin_id, local(8))
    return One(seeded, store, {a.format: a for a in assets})


async def get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


# --- the page --------------------------------------------------------------------------------


async def test_commune_page_lists_bulletins_newest_first_with_players(site: Site) -> None:
    response = await get(site.app(), "/audio/11914")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'lang="vi"' in page and 'name="viewport"' in page
    assert "Đài truyền thanh Đặc khu Cát Hải" in page and "Thành phố Hải Phòng" in page
    assert page.count("<audio") == 3  # two bulletins and the day's programme
    older, newer = (b["mp3"].store_key for b in site.bulletins)
    assert page.index(newer) < page.index(older)  # newest first
    assert "Phát lúc 09:30, 25/11/2026" in page and "Phát lúc 07:00, 25/11/2026" in page
    for bulletin in site.bulletins:
        for asset in bulletin.values():
            assert f'href="/audio/files/{asset.store_key}" download' in page
    assert "Chương trình phát thanh ngày 25/11/2026" in page
    assert f'src="/audio/files/{site.programme.store_key}"' in page
    assert "http://test/audio/11914/feed.xml" in page
    # "c11914" is the code as written on the QR posters.
    assert (await get(site.app(), "/audio/c11914")).status_code == 200


def bare_app(database: Database, store: LocalStore) -> FastAPI:
    return create_app(
        engine=database.engine,
        parts=lambda: {},
        routers=[make_router(database.sessions, store, None)],
    )


async def test_unknown_communes_are_a_vietnamese_404(seeded: Database, tmp_path: Path) -> None:
    app = bare_app(seeded, LocalStore(tmp_path / "audio"))
    for code in ("99999", "p31", "cat-hai", "11914.1"):
        for path in (f"/audio/{code}", f"/audio/{code}/feed.xml"):
            response = await get(app, path)
            assert response.status_code == 404, path
            assert "Không tìm thấy xã, phường hoặc đặc khu" in response.text
            assert 'lang="vi"' in response.text
    # The service's other pages are still there.
    assert (await get(app, "/healthz")).status_code == 200
    assert (await get(app, "/")).status_code == 200


async def test_a_commune_without_audio_has_an_empty_page_and_feed(
    seeded: Database, tmp_path: Path
) -> None:
    app = bare_app(seeded, LocalStore(tmp_path / "audio"))
    page = await get(app, "/audio/11914")
    assert page.status_code == 200
    assert "<audio" not in page.text and "Chưa có bản tin nào" in page.text
    feed = feedparser.parse((await get(app, "/audio/11914/feed.xml")).content)
    assert not feed.bozo and feed.entries == []
    assert feed.feed.title == "Đài truyền thanh Đặc khu Cát Hải"


# --- the feed --------------------------------------------------------------------------------


async def test_feed_is_a_podcast_with_exact_enclosures(site: Site) -> None:
    for public_base_url in (None, PUBLIC, PUBLIC + "/"):
        await check_feed(site, public_base_url)


async def check_feed(site: Site, public_base_url: str | None) -> None:
    response = await get(site.app(public_base_url), "/audio/11914/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "rss20"
    assert "http://www.itunes.com/dtds/podcast-1.0.dtd" in feed.namespaces.values()
    base = (public_base_url or "http://test").rstrip("/")
    channel = feed.feed
    assert channel.title == "Đài truyền thanh Đặc khu Cát Hải"
    assert channel.language == "vi"
    assert channel.author == "Hải Đăng"  # itunes:author
    assert channel.tags[0].term == "Government"  # itunes:category
    # feedparser reads only "yes"/"true" (True) and "clean" (False); Apple now asks for "false".
    assert channel.itunes_explicit is not True
    assert "<itunes:explicit>false</itunes:explicit>" in response.text
    assert channel.link == f"{base}/audio/11914"

    expected = [site.programme, site.bulletins[1]["mp3"], site.bulletins[0]["mp3"]]
    assert [e.id for e in feed.entries] == [a.sha256 for a in expected]
    for entry, asset in zip(feed.entries, expected, strict=True):
        assert entry.guidislink is False
        (enclosure,) = entry.enclosures
        assert enclosure.href == f"{base}/audio/files/{asset.store_key}"
        assert enclosure.type == "audio/mpeg"
        assert int(enclosure.length) == asset.size_bytes == len(site.data(asset))
        seconds = round(asset.duration_seconds)
        assert entry.itunes_duration == f"00:{seconds // 60:02d}:{seconds % 60:02d}"
        # The enclosure URL serves exactly those bytes.
        path = enclosure.href.removeprefix(base)
        download = await get(site.app(public_base_url), path)
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == asset.sha256
    newest_bulletin = feed.entries[1]
    assert newest_bulletin.title == site.titles[1]
    assert "Sóng cao 3 mét." in newest_bulletin.summary
    sent = dt.datetime.fromtimestamp(calendar.timegm(newest_bulletin.published_parsed), dt.UTC)
    assert sent == local(9, 30).astimezone(dt.UTC)
    assert newest_bulletin.published.endswith("GMT")  # RFC 2822
    assert feed.entries[0].title == "Chương trình phát thanh ngày 25/11/2026"


# --- downloads -------------------------------------------------------------------------------


async def test_range_requests(one: One) -> None:
    asset = one.assets["mp3"]
    data, size = one.data(asset), asset.size_bytes
    url = f"/audio/files/{asset.store_key}"
    app = one.app()

    whole = await get(app, url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(size)
    assert whole.headers["content-type"] == "audio/mpeg"
    assert whole.headers["etag"] == f'"{asset.sha256}"'

    cases = {
        "bytes=0-99": (0, 99),
        "bytes=-100": (size - 100, size - 1),
        "bytes=100-": (100, size - 1),
        f"bytes=1000-{size + 5000}": (1000, size - 1),
        f"bytes={size - 1}-{size - 1}": (size - 1, size - 1),
    }
    for header, (first, last) in cases.items():
        part = await get(app, url, Range=header)
        assert part.status_code == 206, header
        assert part.content == data[first : last + 1], header
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert part.headers["content-length"] == str(last - first + 1), header
        assert part.headers["content-type"] == "audio/mpeg"

    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        refused = await get(app, url, Range=header)
        assert refused.status_code == 416, header
        assert refused.headers["content-range"] == f"bytes */{size}"

    # Several ranges, another unit, nonsense or a stale If-Range: the whole file.
    for headers in (
        {"Range": "bytes=0-9,20-29"},
        {"Range": "items=0-9"},
        {"Range": "bytes=9-0"},
        {"Range": "bytes=0-9", "If-Range": '"not-the-etag"'},
    ):
        full = await get(app, url, **headers)
        assert full.status_code == 200 and full.content == data, headers
    matching = await get(app, url, Range="bytes=0-9", **{"If-Range": f'"{asset.sha256}"'})
    assert matching.status_code == 206 and matching.content == data[:10]

    cached = await get(app, url, **{"If-None-Match": f'"{asset.sha256}"'})
    assert cached.status_code == 304 and cached.content == b""


async def test_downloads_have_the_right_types_and_refuse_unknown_keys(one: One) -> None:
    app = one.app()
    for fmt, mime in (("mp3", "audio/mpeg"), ("aac", "audio/aac"), ("ogg", "audio/ogg")):
        asset = one.assets[fmt]
        response = await get(app, f"/audio/files/{asset.store_key}")
        assert response.status_code == 200
        assert response.headers["content-type"] == mime
        assert response.content == one.data(asset)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        head = await client.head(f"/audio/files/{one.assets['mp3'].store_key}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(one.assets["mp3"].size_bytes)
    assert head.headers["accept-ranges"] == "bytes"

    known_name = one.assets["mp3"].store_key.replace(".mp3", ".wav")
    for path in (
        "/audio/files/bulletins/00/nothing.mp3",
        f"/audio/files/{known_name}",
        "/audio/files/..%2F..%2Fetc%2Fpasswd",
        "/audio/files/.hidden",
    ):
        missing = await get(app, path)
        assert missing.status_code == 404, path
    # A recorded file that has gone from the store is a 404, not a server error.
    lost = one.assets["aac"]
    one.store.delete(lost.store_key)
    assert (await get(app, f"/audio/files/{lost.store_key}")).status_code == 404


def test_parse_range() -> None:
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes = 10 - 19", 1000) == (10, 19)
    assert parse_range("BYTES=-1", 1000) == (999, 999)
    assert parse_range("bytes=-5000", 1000) == (0, 999)
    assert parse_range("bytes=990-", 1000) == (990, 999)
    for ignored in ("bytes=-", "bytes=a-b", "bytes=5-1", "bytes=0-1,3-4", "pages=0-1", ""):
        assert parse_range(ignored, 1000) is None, ignored
    for refused in ("bytes=1000-", "bytes=-0", "bytes=2000-3000"):
        with pytest.raises(Unsatisfiable):
            parse_range(refused, 1000)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=-10", 0)
