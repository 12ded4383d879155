"""The loudspeaker pages: on air, next, the mount URL and "play now", each within scope."""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from broadcasts import areas, bulletins, leases, officials, stations
from db.models import (
    AssetKind,
    AudioAsset,
    AuditEntry,
    Official,
    OfficialRole,
    StationOnAir,
    StationRequest,
    StationRequestState,
    SubscriberRole,
)
from tests.broadcasts.engine import NOW
from tests.conftest import Database
from tests.web.dashboard_helpers import PASSWORDS, Client, make_officials, settings
from web.dashboard import make_router

COMMUNE = "11914"  # Đặc khu Cát Hải, Hải Phòng
OTHER = "11311"  # Phường Hồng Bàng, Hải Phòng
HANOI = "00070"  # Phường Hoàn Kiếm, Hà Nội
OPERATORS = {"loa-cathai": COMMUNE, "loa-hongbang": OTHER}
PASSWORD = "operator-pass-1"
# 10:00 in Hải Phòng; the programme slots are 06:00 and 17:00.
CLOCK = NOW + dt.timedelta(hours=1)


def app_for(database: Database, **overrides: object) -> FastAPI:
    app = FastAPI()
    router = make_router(database.sessions, settings(**overrides), clock=lambda: CLOCK)
    app.include_router(router)
    return app


async def add_mp3(database: Database, bulletin_id: int) -> None:
    """The bulletin's rendered loudspeaker MP3, as the audio part records it."""
    digest = hashlib.sha256(str(bulletin_id).encode()).hexdigest()
    async with database.sessions.begin() as session:
        session.add(
            AudioAsset(
                content_hash=digest, kind=AssetKind.bulletin, format="mp3",
                bulletin_id=bulletin_id, engine="espeak", store_key=f"bulletins/{digest}.mp3",
                sha256=digest, size_bytes=1000, duration_seconds=4.0,
            )
        )  # fmt: skip


async def written(
    database: Database,
    title: str,
    areas: list[str],
    *,
    author: str = "editor",
    approver: str | None = None,
    roles: tuple[SubscriberRole, ...] = (),
) -> int:
    """A bulletin by `author`: a draft, or approved by `approver`."""
    async with database.sessions.begin() as session:
        by = await session.scalar(select(Official).where(Official.username == author))
        assert by is not None
        bulletin = await bulletins.create(
            session, author=by, title=title, body="Nội dung phổ biến.", area_codes=areas,
            now=NOW, roles=roles, submit=approver is not None,
        )  # fmt: skip
        if approver is not None:
            checker = await session.scalar(select(Official).where(Official.username == approver))
            assert checker is not None
            await bulletins.approve(session, bulletin, checker, NOW)
        return bulletin.id


@dataclass
class Setup:
    app: FastAPI
    here: int  # approved, for the commune, with an MP3
    province: int  # approved, for the whole province, with an MP3
    elsewhere: int  # approved, for another province, with an MP3
    draft: int  # a draft with an MP3: not playable
    silent: int  # approved, no MP3 yet
    internal: int  # approved, for border guards only, with an MP3


@pytest.fixture
async def setup(seeded: Database) -> Setup:
    await make_officials(seeded)
    async with seeded.sessions.begin() as session:
        for username, code in OPERATORS.items():
            await officials.create(
                session, username=username, role=OfficialRole.radio_operator,
                password=PASSWORD, area_code=code,
            )  # fmt: skip
        await officials.create(
            session, username="root-2", role=OfficialRole.admin, password=PASSWORD
        )
        await stations.switch_on(session, COMMUNE, NOW)
    here = await written(seeded, "Tin của đặc khu", [COMMUNE], approver="approver")
    province = await written(seeded, "Tin của thành phố", ["p31"], approver="approver")
    elsewhere = await written(seeded, "Tin nơi khác", ["p01"], author="root", approver="root-2")
    silent = await written(seeded, "Chưa có âm thanh", [COMMUNE], approver="approver")
    draft_id = await written(seeded, "Bản nháp chưa duyệt", [COMMUNE])
    internal = await written(
        seeded, "Tin nội bộ biên phòng", [COMMUNE], approver="approver",
        roles=(SubscriberRole.border_guard,),
    )  # fmt: skip
    for bulletin_id in (here, province, elsewhere, draft_id, internal):
        await add_mp3(seeded, bulletin_id)
    return Setup(app_for(seeded), here, province, elsewhere, draft_id, silent, internal)


async def login(app: FastAPI, username: str) -> Client:
    client = Client(app)
    response = await client.login(username, PASSWORDS.get(username, PASSWORD))
    assert response.status_code == 303, response.text
    return client


async def play_requests(database: Database) -> list[StationRequest]:
    async with database.sessions() as session:
        return list(
            (await session.scalars(select(StationRequest).order_by(StationRequest.id))).all()
        )


async def test_the_operator_sees_their_station_and_what_comes_next(
    seeded: Database, setup: Setup
) -> None:
    async with await login(setup.app, "loa-cathai") as operator:
        listing = await operator.get("/dashboard/loa")
        assert listing.status_code == 200
        assert 'id="nav-loa"' in listing.text and "Loa truyền thanh" in listing.text
        assert "Đặc khu Cát Hải" in listing.text
        assert "http://127.0.0.1:8010/c11914.mp3" in listing.text
        # No driver holds the station's lease in this test: the page says so.
        assert 'id="station-driver-down"' in listing.text

        page = await operator.get(f"/dashboard/loa/{COMMUNE}")
        assert page.status_code == 200, page.text
        text = page.text
        assert unicodedata.is_normalized("NFC", text)
        assert 'id="on-air-none"' in text and "Trạm chưa phát" in text
        assert 'value="http://127.0.0.1:8010/c11914.mp3" readonly' in text
        assert "loa IP" in text
        # The next slot is 17:00 today; no programme was built for the day.
        assert "17:00 ngày 25/11/2026" in text
        assert "chưa được dựng" in text
        # Published bulletins with an MP3: the commune's and its province's first.
        options = [text.index(f'<option value="{i}">') for i in (setup.here, setup.province)]
        assert max(options) < text.index(f'<option value="{setup.elsewhere}">')
        assert "bản tin nơi khác" in text
        for hidden in (setup.draft, setup.silent, setup.internal):
            assert f'<option value="{hidden}">' not in text
        assert 'name="csrf_token"' in text and "Phát ngay" in text


async def test_play_now_is_audited_and_queued_for_the_station(
    seeded: Database, setup: Setup
) -> None:
    async with await login(setup.app, "loa-cathai") as operator:
        await operator.get(f"/dashboard/loa/{COMMUNE}")
        answer = await operator.post(f"/dashboard/loa/{COMMUNE}/play", {"bulletin_id": setup.here})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == f"/dashboard/loa/{COMMUNE}?ok=play_requested"
        page = await operator.get(answer.headers["location"])
        assert "Đã gửi lệnh phát ngay" in page.text
        assert 'id="pending-plays"' in page.text and "Tin của đặc khu" in page.text
        assert "Đang chờ phát" in page.text

    [request] = await play_requests(seeded)
    async with seeded.sessions() as session:
        operator_id = await session.scalar(
            select(Official.id).where(Official.username == "loa-cathai")
        )
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "station.play_now")
        )
        pending = await stations.pending_plays(session)
    assert request.state is StationRequestState.pending and request.played_at is None
    assert request.bulletin_id == setup.here and request.requested_by_id == operator_id
    assert request.requested_at == CLOCK
    assert entry is not None and entry.official_id == operator_id and entry.via == "web"
    assert entry.object_id == str(request.id)
    assert entry.details == {
        "commune": COMMUNE,
        "bulletin_id": setup.here,
        "title": "Tin của đặc khu",
    }
    # What the station's driver reads each second: the request and the bulletin's MP3.
    [play] = pending
    assert (play.request_id, play.commune, play.title) == (request.id, COMMUNE, "Tin của đặc khu")
    assert play.store_key is not None and play.store_key.endswith(".mp3")

    # The driver marks it; switching the station off drops what still waits.
    async with seeded.sessions.begin() as session:
        await stations.mark_played(session, request.id, CLOCK)
        commune = await areas.get_by_code(session, COMMUNE)
        again = await stations.request_play(
            session, commune, setup.province, None, CLOCK, via="cli"
        )
    async with seeded.sessions.begin() as session:
        await stations.switch_off(session, COMMUNE)
    states = {r.id: (r.state, r.reason) for r in await play_requests(seeded)}
    assert states == {
        request.id: (StationRequestState.played, None),
        again.id: (StationRequestState.dropped, "station_off"),
    }


async def test_scope_csrf_and_refusals(seeded: Database, setup: Setup) -> None:
    async with await login(setup.app, "loa-hongbang") as other:
        # Another commune's operator: refused on the server, whatever the form says.
        assert (await other.get(f"/dashboard/loa/{COMMUNE}")).status_code == 403
        crafted = await other.post(f"/dashboard/loa/{COMMUNE}/play", {"bulletin_id": setup.here})
        assert crafted.status_code == 403 and "phạm vi" in crafted.text
        listing = await other.get("/dashboard/loa")
        assert "Đặc khu Cát Hải" not in listing.text and 'id="station-none"' in listing.text
        # Their own commune has no station switched on.
        assert (await other.get(f"/dashboard/loa/{OTHER}")).status_code == 404
    async with await login(setup.app, "loa-cathai") as operator:
        await operator.get(f"/dashboard/loa/{COMMUNE}")
        # No CSRF token: refused before anything is read.
        forged = await operator.post(
            f"/dashboard/loa/{COMMUNE}/play", {"bulletin_id": setup.here}, csrf=False
        )
        assert forged.status_code == 403
        assert (await operator.get("/dashboard/loa/99999")).status_code == 404
        assert (await operator.get("/dashboard/loa/p31")).status_code == 404
        # Not published, not for the public, no audio, no such bulletin, no choice.
        for bulletin_id, message in (
            (setup.draft, "đã duyệt"),
            (setup.internal, "biên phòng"),
            (setup.silent, "MP3"),
            (10**6, "Không tìm thấy"),
            ("", "Hãy chọn"),
        ):
            refused = await operator.post(
                f"/dashboard/loa/{COMMUNE}/play", {"bulletin_id": bulletin_id}
            )
            assert refused.status_code in (400, 404), refused.text
            assert message in refused.text
    async with await login(setup.app, "approver") as approver:
        listing = await approver.get("/dashboard/bulletins")
        assert 'id="nav-loa"' not in listing.text
        assert (await approver.get("/dashboard/loa")).status_code == 403
    assert await play_requests(seeded) == []
    async with seeded.sessions() as session:
        audited = await session.scalar(
            select(func.count()).where(AuditEntry.action == "station.play_now")
        )
    assert audited == 0


async def test_province_editor_and_admin_see_the_province(seeded: Database, setup: Setup) -> None:
    async with seeded.sessions.begin() as session:
        await stations.switch_on(session, OTHER, NOW)
        await stations.switch_on(session, HANOI, NOW)
    for username, expected, hidden in (
        ("editor", [COMMUNE, OTHER], [HANOI]),
        ("root", [HANOI, OTHER, COMMUNE], []),
    ):
        async with await login(setup.app, username) as official:
            listing = await official.get("/dashboard/loa")
            assert listing.status_code == 200
            for code in expected:
                assert f'data-code="{code}"' in listing.text
            for code in hidden:
                assert f'data-code="{code}"' not in listing.text
                assert (await official.get(f"/dashboard/loa/{code}")).status_code == 403


async def test_on_air_state_and_public_url(seeded: Database, setup: Setup) -> None:
    async with seeded.sessions.begin() as session:
        area = await areas.get_by_code(session, COMMUNE)
        assert await stations.record_on_air(
            session, area.id, StationOnAir.urgent, "Tin của đặc khu", CLOCK
        )
        # The same again is not a change: "since" keeps the first time.
        later = CLOCK + dt.timedelta(seconds=30)
        assert not await stations.record_on_air(
            session, area.id, StationOnAir.urgent, "Tin của đặc khu", later
        )
        await leases.acquire(session, stations.LEASE, "worker-1", CLOCK, dt.timedelta(seconds=15))
    app = app_for(seeded, station_public_url="https://loa.example.vn/radio/")
    async with await login(app, "loa-cathai") as operator:
        page = await operator.get(f"/dashboard/loa/{COMMUNE}")
    text = page.text
    assert 'id="on-air-kind">Bản tin khẩn / phát ngay</span>' in text
    assert 'id="on-air-title">Tin của đặc khu</strong>' in text
    assert "Từ 11:00:00 ngày 25/11/2026" in text
    assert 'id="station-driver-down"' not in text  # the lease is held
    assert 'value="https://loa.example.vn/radio/c11914.mp3"' in text
