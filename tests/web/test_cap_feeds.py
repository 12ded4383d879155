"""Public CAP 1.2: ATOM feeds (read by feedparser) nationally and per province, each message
(schema-valid, read back by capparser), and the download link on the bulletin page."""

from __future__ import annotations

import datetime as dt
from typing import Any

import feedparser
import httpx
import pytest
from fastapi import FastAPI
from pydantic import AnyHttpUrl, SecretStr, ValidationError
from sqlalchemy import select

from broadcasts import areas, bulletins, officials
from db.models import Area, AreaKind, OfficialRole
from haidang.settings import Settings
from tests.broadcasts.engine import NOW
from tests.cap import SENDER, approved, cancel, checked
from tests.conftest import Database
from tests.web.dashboard_helpers import SECRET, Client, make_officials
from web.cap import make_router
from web.dashboard import make_router as make_dashboard

PUBLIC = f"https://{SENDER}"
LATER = NOW + dt.timedelta(days=4)


def app_for(database: Database, **settings: Any) -> FastAPI:
    config = Settings(_env_file=None, secret_key=SecretStr(SECRET), **settings)
    app = FastAPI()
    app.include_router(make_dashboard(database.sessions, config))
    app.include_router(make_router(database.sessions, config, clock=lambda: LATER))
    return app


async def get(app: FastAPI, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


async def ha_noi_warning(database: Database) -> int:
    """An urgent bulletin for a commune of Hà Nội, written and approved by Hà Nội."""
    async with database.sessions.begin() as session:
        ha_noi = await areas.get_by_code(session, "p01")
        commune = await session.scalar(
            select(Area.code).where(Area.province_id == ha_noi.id, Area.kind == AreaKind.commune)
        )
        assert commune is not None
        writer, checker = [
            await officials.create(
                session, username=name, role=role, password=name * 4, area_code="p01"
            )
            for name, role in (("hanoi", OfficialRole.province_editor),
                               ("hn-ok", OfficialRole.approver))
        ]  # fmt: skip
        at = NOW + dt.timedelta(days=2)
        bulletin = await bulletins.create(
            session, author=writer, title="Mưa lớn ở Hà Nội", body="Mưa lớn diện rộng.",
            area_codes=[commune], now=at, urgent=True, submit=True,
        )  # fmt: skip
        await bulletins.approve(session, bulletin, checker, at)
        return bulletin.id


async def read_feed(app: FastAPI, path: str) -> Any:
    response = await get(app, path)
    assert response.status_code == 200, path
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    # Every message a feed links is a valid CAP 1.2 message.
    for entry in feed.entries:
        (link,) = [link for link in entry.links if link.rel == "alternate"]
        assert link.type == "application/cap+xml"
        assert link.href.startswith(PUBLIC + "/cap/alerts/")
        message = await get(app, link.href.removeprefix(PUBLIC))
        assert message.status_code == 200
        alert = checked(message.content)
        assert entry.id == link.href
        assert entry.updated == alert.sent[0]
    return feed


def bulletin_ids(feed: Any) -> list[int]:
    return [int(entry.id.split("/")[-1].split(".")[0]) for entry in feed.entries]


async def test_feeds_list_each_provinces_warnings_and_the_nation_all(seeded: Database) -> None:
    commune = await approved(seeded, urgent=True, at=NOW)
    province = await approved(seeded, topic="thoi-tiet", areas=("p31",), at=NOW + dt.timedelta(1))
    routine = await approved(seeded, areas=("p31",), at=NOW + dt.timedelta(hours=1))
    elsewhere = await ha_noi_warning(seeded)
    cancelled = await approved(seeded, urgent=True, at=NOW - dt.timedelta(days=1))
    await cancel(seeded, cancelled, NOW + dt.timedelta(days=3))
    app = app_for(seeded, public_base_url=PUBLIC)

    national = await read_feed(app, "/cap/national.atom")
    assert national.feed.title == "Cảnh báo (CAP) trên cả nước"
    assert national.feed.id == PUBLIC + "/cap/national.atom"
    assert bulletin_ids(national) == [cancelled, elsewhere, province, commune]
    assert routine not in bulletin_ids(national)
    hai_phong = await read_feed(app, "/cap/p31.atom")
    assert hai_phong.feed.title == "Cảnh báo (CAP): Thành phố Hải Phòng"
    assert bulletin_ids(hai_phong) == [cancelled, province, commune]
    assert bulletin_ids(await read_feed(app, "/cap/p01.atom")) == [elsewhere]
    assert bulletin_ids(await read_feed(app, "/cap/p04.atom")) == []

    # The cancelled warning's entry is its Cancel, newest first by the cancellation.
    first = national.entries[0]
    assert first.title.startswith("Đã hủy: ")
    assert first.id.endswith(f"/cap/alerts/{cancelled}.xml?msg=cancel")
    assert first.updated == "2026-11-28T10:00:00+07:00"
    assert national.feed.updated == first.updated
    assert first.summary == "Đặc khu Cát Hải, Thành phố Hải Phòng"

    for path in ("/cap/p99.atom", "/cap/11914.atom", "/cap/hai-phong.atom"):
        response = await get(app, path)
        assert response.status_code == 404, path
        assert "Không tìm thấy tỉnh, thành phố" in response.text


async def test_each_message_by_bulletin_with_cache_headers(seeded: Database) -> None:
    active = await approved(seeded, topic="thoi-tiet", translations={"en": ("Storm", "Stay in.")})
    cancelled = await approved(seeded, urgent=True)
    await cancel(seeded, cancelled, NOW + dt.timedelta(hours=2))
    routine = await approved(seeded)
    app = app_for(seeded, cap_sender="canhbao.gov.example")

    response = await get(app, f"/cap/alerts/{active}.xml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/cap+xml; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=60"
    alert = checked(response.content)
    assert (alert.sender[0], alert.msgType[0]) == ("canhbao.gov.example", "Alert")
    same = await get(
        app, f"/cap/alerts/{active}.xml", **{"If-None-Match": response.headers["etag"]}
    )
    assert same.status_code == 304 and same.content == b""

    current = checked((await get(app, f"/cap/alerts/{cancelled}.xml")).content)
    issued = await get(app, f"/cap/alerts/{cancelled}.xml?msg=alert")
    assert issued.headers["cache-control"] == "public, max-age=86400"
    original = checked(issued.content)
    assert (current.msgType[0], original.msgType[0]) == ("Cancel", "Alert")
    assert current.references[0] == (
        f"{original.sender[0]},{original.identifier[0]},{original.sent[0]}"
    )
    assert (await get(app, f"/cap/alerts/{cancelled}.xml?msg=cancel")).content == (
        (await get(app, f"/cap/alerts/{cancelled}.xml")).content
    )

    for path in (f"/cap/alerts/{active}.xml?msg=cancel", f"/cap/alerts/{active}.xml?msg=update",
                 f"/cap/alerts/{routine}.xml", "/cap/alerts/999999.xml"):  # fmt: skip
        missing = await get(app, path)
        assert missing.status_code == 404, path
        assert missing.text == "Không tìm thấy cảnh báo."


async def test_the_bulletin_page_offers_the_cap_download(seeded: Database) -> None:
    await make_officials(seeded)
    urgent = await approved(seeded, urgent=True)
    routine = await approved(seeded, topic="dia-phuong")
    waiting = await approved(seeded, urgent=True, approve=False)
    cancelled = await approved(seeded, urgent=True)
    await cancel(seeded, cancelled, NOW + dt.timedelta(hours=1))
    app = app_for(seeded)
    async with Client(app) as browser:
        await browser.login("editor")
        page = (await browser.get(f"/dashboard/bulletins/{urgent}")).text
        assert f'href="/cap/alerts/{urgent}.xml" id="cap-download"' in page
        link = (await browser.get(f"/dashboard/bulletins/{cancelled}")).text
        assert f'href="/cap/alerts/{cancelled}.xml" id="cap-download"' in link
        assert "bản hủy" in link
        for without in (routine, waiting):
            assert (
                'id="cap-download"'
                not in (await browser.get(f"/dashboard/bulletins/{without}")).text
            )
        # The link's target is public: no sign-in needed to download it.
        download = await browser.http.get(f"/cap/alerts/{urgent}.xml")
    assert download.status_code == 200
    checked(download.content)


def test_the_sender_is_configured_or_the_public_host_or_a_reserved_name() -> None:
    assert Settings(_env_file=None).cap_sender_name == "haidang.invalid"
    public = AnyHttpUrl("https://loa.example.vn/app")
    assert Settings(_env_file=None, public_base_url=public).cap_sender_name == "loa.example.vn"
    chosen = Settings(_env_file=None, cap_sender="vn.canhbao", public_base_url=public)
    assert chosen.cap_sender_name == "vn.canhbao"
    assert Settings(_env_file=None, cap_sender=" ").cap_sender_name == "haidang.invalid"
    for bad in ("có dấu cách", "a,b", "a<b", "a&b"):
        with pytest.raises(ValidationError, match="cap_sender"):
            Settings(_env_file=None, cap_sender=bad)


async def test_an_official_writes_an_update_and_the_feed_carries_it(seeded: Database) -> None:
    await make_officials(seeded)
    storm = await approved(seeded, urgent=True, title="Bão số 3 cách Cát Hải 300 km")
    routine = await approved(seeded, topic="dia-phuong")
    app = app_for(seeded)
    async with Client(app) as browser:
        await browser.login("editor")
        page = (await browser.get(f"/dashboard/bulletins/{storm}")).text
        assert f'href="/dashboard/bulletins/{storm}/update" id="update-bulletin"' in page
        routine_page = (await browser.get(f"/dashboard/bulletins/{routine}")).text
        assert 'id="update-bulletin"' not in routine_page
        form = await browser.get(f"/dashboard/bulletins/{storm}/update")
        assert 'value="Cập nhật: Bão số 3 cách Cát Hải 300 km"' in form.text
        assert f'name="supersedes" value="{storm}"' in form.text
        fields = {
            "title": "Cập nhật: Bão số 3 cách Cát Hải 150 km",
            "body": "Bão số 3 đã tiến gần. Tàu thuyền ở lại nơi trú ẩn.",
            "priority": "urgent", "areas": "11914", "supersedes": str(storm),
            "action": "submit",
        }  # fmt: skip
        created = await browser.post("/dashboard/bulletins", fields)
        assert created.status_code == 303, created.text
        update = int(created.headers["location"].split("?")[0].rsplit("/", 1)[-1])
        # An update that is not a warning is refused in Vietnamese, the form kept.
        refused = await browser.post(
            "/dashboard/bulletins", fields | {"priority": "routine", "topic": ""}
        )
        assert refused.status_code == 400
        assert "phải là tin khẩn hoặc thuộc chủ đề thời tiết" in refused.text
        assert f'name="supersedes" value="{storm}"' in refused.text

        await browser.login("approver")
        detail = (await browser.get(f"/dashboard/bulletins/{update}")).text
        assert f'href="/dashboard/bulletins/{storm}">#{storm} ' in detail
        approved_page = await browser.post(f"/dashboard/bulletins/{update}/approve")
        assert approved_page.status_code == 303
        earlier = (await browser.get(f"/dashboard/bulletins/{storm}")).text
        assert 'id="updated-by"' in earlier and f"#{update} " in earlier
        # Updated: the warning itself can no longer be updated (its update can).
        assert 'id="update-bulletin"' not in earlier

    feed = feedparser.parse((await get(app, "/cap/p31.atom")).content)
    # The update stands for the line: the warning it replaced left the feed.
    assert [entry.link.rsplit("/", 1)[-1] for entry in feed.entries] == [f"{update}.xml?msg=update"]
    message = checked((await get(app, f"/cap/alerts/{update}.xml")).content)
    assert message.msgType[0] == "Update"
    assert f":bulletin:{storm}:alert," in message.references[0]
