"""The service with ASSET_STORE=s3 against a real S3-protocol server: audio downloads with
Range, the podcast feed, library and dashboard files, and media for Telegram uploads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from audio import programmes, studio
from broadcasts import documents
from db.models import AudioAsset, Bulletin
from haidang.runtime import Service, WebPart
from haidang.settings import Settings
from tests.audio.test_programmes import DAY, local, send_at
from tests.broadcasts.engine import NOW, approved_bulletin
from tests.broadcasts.test_documents import OFFICIAL_TEXT, minimal_pdf
from tests.conftest import Database
from tests.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from tests.web.dashboard_helpers import SECRET, Client, make_officials
from tests.web.test_bulletin_editor import _form, _id_of, _png, _post
from web.library import content_disposition

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass
class Site:
    service: Service
    database: Database
    s3: S3Server
    bucket: str
    data_dir: Path
    mp3: AudioAsset
    ogg: AudioAsset
    bulletin_id: int
    programme: AudioAsset

    @property
    def app(self) -> FastAPI:
        """The web app `haidang serve` would run with these settings."""
        return next(part for part in self.service.parts if isinstance(part, WebPart)).app

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://loa")

    def object(self, key: str) -> bytes:
        """The object's bytes as the S3 server holds them (read past our code)."""
        answer = self.s3.client.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"].read()


@pytest.fixture
async def site(seeded: Database, tmp_path: Path, s3_server: S3Server, s3_bucket: str) -> Site:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "var",
        secret_key=SecretStr(SECRET),
        tts_engine="espeak",  # offline: real audio, and no test reaches the internet
        asset_store="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=s3_bucket,
        s3_access_key_id=SecretStr(ACCESS_KEY_ID),
        s3_secret_access_key=SecretStr(SECRET_ACCESS_KEY),
    )
    service = Service(settings, engine=seeded.engine)
    bulletin_id = await approved_bulletin(seeded, body="Gió mạnh cấp 6, biển động.")
    assets = await studio.render_bulletin(
        seeded.sessions, bulletin_id, store=service.store, engine_name="espeak", tz=TZ,
        now=NOW, work_dir=tmp_path / "work",
    )  # fmt: skip
    by_format = {asset.format: asset for asset in assets}
    await send_at(seeded, bulletin_id, local(7))
    programme = await programmes.build_daily_programme(
        seeded.sessions, "11914", DAY, store=service.store, engine_name="espeak", tz=TZ,
        now=NOW, work_dir=tmp_path / "work",
    )  # fmt: skip
    assert programme is not None
    return Site(
        service, seeded, s3_server, s3_bucket, tmp_path / "var",
        by_format["mp3"], by_format["ogg"], bulletin_id, programme,
    )  # fmt: skip


async def test_audio_downloads_and_ranges_are_served_from_the_bucket(site: Site) -> None:
    url = studio.FILES_PATH + site.mp3.store_key
    data = site.object("audio/" + site.mp3.store_key)
    size = len(data)
    assert size == site.mp3.size_bytes and size > 1000
    async with site.client() as client:
        whole = await client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        assert whole.headers["content-type"] == "audio/mpeg"
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["etag"] == f'"{site.mp3.sha256}"'

        part = await client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        assert part.headers["content-length"] == "100"
        assert part.content == data[100:200]

        rest = await client.get(url, headers={"Range": "bytes=100-"})
        assert rest.status_code == 206
        assert rest.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
        assert rest.content == data[100:]

        tail = await client.get(url, headers={"Range": "bytes=-50"})
        assert (tail.status_code, tail.content) == (206, data[-50:])

        beyond = await client.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"

        head = await client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(size)
        assert head.content == b""
        again = await client.get(url, headers={"If-None-Match": whole.headers["etag"]})
        assert again.status_code == 304

        programme = await client.get(studio.FILES_PATH + site.programme.store_key)
        assert programme.content == site.object("audio/" + site.programme.store_key)
    assert not (site.data_dir / "audio").exists()  # nothing was written on this machine


async def test_feed_enclosures_give_each_objects_size(site: Site) -> None:
    async with site.client() as client:
        feed = await client.get("/audio/11914/feed.xml")
        assert feed.status_code == 200
        parsed = feedparser.parse(feed.content)
        enclosures = [entry.enclosures[0] for entry in parsed.entries]
        assert len(enclosures) == 2  # the bulletin and the day's programme
        for enclosure in enclosures:
            path = urlsplit(enclosure.href).path
            key = path.removeprefix(studio.FILES_PATH)
            stored = site.s3.client.head_object(Bucket=site.bucket, Key="audio/" + key)
            download = await client.get(path)
            assert int(enclosure.length) == stored["ContentLength"] == len(download.content)


async def test_library_attachments_are_served_from_the_bucket(site: Site) -> None:
    annex = minimal_pdf(["Phu luc: danh sach ben ca"]) + os.urandom(300)
    async with site.database.sessions.begin() as session:
        imported = await documents.add(
            session,
            documents.load_bytes(OFFICIAL_TEXT.encode(), "qd-1191.txt"),
            now=NOW,
            topics=["phap-luat"],
            attachments=[documents.attachment_file("phụ lục 1.pdf", annex)],
            store=site.service.documents_store,
        )
        row = next(one for one in imported.attachments if not one.is_source)
        annex_id, key, document_id = row.id, row.store_key, imported.document.id
    assert site.object("documents/" + key) == annex
    url = f"/library/files/{annex_id}/{quote('phụ lục 1.pdf')}"
    async with site.client() as client:
        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == annex
        assert whole.headers["content-type"] == "application/pdf"
        assert whole.headers["content-security-policy"].startswith("default-src 'none'")
        disposition = content_disposition("phụ lục 1.pdf", "application/pdf")
        assert whole.headers["content-disposition"] == disposition
        part = await client.get(url, headers={"Range": "bytes=10-19"})
        assert (part.status_code, part.content) == (206, annex[10:20])
        assert (await client.head(url)).headers["content-length"] == str(len(annex))

        await make_officials(site.database)
        async with Client(site.app) as official:
            await official.login("editor")
            file = await official.get(f"/dashboard/documents/{document_id}/files/{annex_id}")
            assert file.status_code == 200 and file.content == annex
    assert not (site.data_dir / "documents").exists()


async def test_dashboard_photo_upload_is_kept_in_the_bucket(site: Site) -> None:
    await make_officials(site.database)
    picture = _png()
    async with Client(site.app) as editor:
        await editor.login("editor")
        await editor.get("/dashboard/bulletins/new")
        created = await _post(
            editor, "/dashboard/bulletins", _form(),
            files={"photo": ("gio.png", picture, "image/png")},
        )  # fmt: skip
        assert created.status_code == 303, created.text
        bulletin_id = _id_of(created)
        async with site.database.sessions() as session:
            key = (await session.get_one(Bulletin, bulletin_id)).photo_path
        assert key is not None and site.object("audio/" + key) == picture
        photo = await editor.get(f"/dashboard/bulletins/{bulletin_id}/photo")
        assert photo.status_code == 200
        assert (photo.headers["content-type"], photo.content) == ("image/png", picture)


async def test_telegram_uploads_read_local_copies_of_the_objects(site: Site) -> None:
    media = await site.service.media.media_for(site.bulletin_id)
    assert media.voice is not None and media.mp3 is not None
    for item, asset in ((media.voice, site.ogg), (media.mp3, site.mp3)):
        assert item.key == asset.store_key
        assert item.path is not None and item.path.is_relative_to(site.data_dir / "cache")
        assert item.path.read_bytes() == site.object("audio/" + asset.store_key)
