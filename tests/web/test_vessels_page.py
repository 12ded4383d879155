"""The vessels page of a bulletin: totals, the "not reached" list, marks by hand, CSV, scope."""

from __future__ import annotations

from sqlalchemy import select

from broadcasts import vessels
from db.models import (
    Acknowledgement,
    AuditEntry,
    Subscriber,
    VesselMark,
    VesselMember,
    VesselRelation,
)
from tests.broadcasts.engine import NOW, approved_bulletin
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials

CAT_HAI_PHONE, HONG_BANG_PHONE = "0912345678", "0987654321"


async def _setup(database: Database) -> tuple[int, dict[str, int]]:
    """Three vessels of Hải Phòng (two in Cát Hải, one in Hồng Bàng; one acknowledged) and
    an urgent bulletin for the province; (bulletin id, vessel ids by registration)."""
    await make_officials(database)
    async with database.sessions.begin() as session:
        first, _ = await vessels.save(
            session, registration="HP-1001-TS", name="Hải Âu", commune="11914", phone=CAT_HAI_PHONE
        )
        second, _ = await vessels.save(
            session, registration="HP-1002-TS", name="Bình Minh", commune="11914"
        )
        third, _ = await vessels.save(
            session, registration="HP-1003-TS", name="Sao Biển", commune="11311",
            phone=HONG_BANG_PHONE,
        )  # fmt: skip
        captain = Subscriber(consent_at=NOW)
        session.add(captain)
        await session.flush()
        session.add(
            VesselMember(
                vessel_id=second.id, subscriber_id=captain.id, relation=VesselRelation.captain
            )
        )
        ids = {v.registration: v.id for v in (first, second, third)}
        captain_id = captain.id
    bulletin_id = await approved_bulletin(database, urgent=True, areas=("p31",))
    async with database.sessions.begin() as session:
        session.add(Acknowledgement(bulletin_id=bulletin_id, subscriber_id=captain_id))
    return bulletin_id, ids


async def test_province_editor_sees_every_vessel_marks_one_and_downloads_csv(
    seeded: Database,
) -> None:
    bulletin_id, ids = await _setup(seeded)
    async with Client(make_app(seeded)) as client:
        await client.login("editor")
        detail = await client.get(f"/dashboard/bulletins/{bulletin_id}")
        assert f"/bulletins/{bulletin_id}/vessels" in detail.text
        progress = await client.get(f"/dashboard/bulletins/{bulletin_id}/progress")
        assert 'id="vessels-link"' in progress.text

        page = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels")
        assert page.status_code == 200
        assert 'id="vessels-total">3<' in page.text
        assert 'id="vessels-acknowledged">1<' in page.text
        assert 'id="vessels-not_reached">2<' in page.text
        assert "Chưa liên lạc được (2 tàu)" in page.text
        assert "0912 345 678" in page.text and "0987 654 321" in page.text
        assert page.text.count("Đã báo</button>") == 2

        marked = await client.post(
            f"/dashboard/bulletins/{bulletin_id}/vessels/{ids['HP-1001-TS']}/mark",
            {"method": "radio", "note": "Gọi qua đài biên phòng", "commune": "11914"},
        )
        assert marked.status_code == 303
        assert marked.headers["location"].endswith(
            f"/bulletins/{bulletin_id}/vessels?commune=11914&ok=vessel_marked"
        )
        filtered = await client.get(marked.headers["location"])
        assert "Đã ghi nhận tàu đã được báo." in filtered.text
        assert "HP-1003-TS" not in filtered.text  # Hồng Bàng filtered out
        assert "Đã báo trực tiếp (1 tàu)" in filtered.text
        assert "Gọi qua đài biên phòng" in filtered.text and "Vô tuyến điện" in filtered.text
        assert "Chưa liên lạc được (0 tàu)" in filtered.text
        assert '<option value="11311"' in filtered.text  # still offered in the filter

        bad = await client.post(
            f"/dashboard/bulletins/{bulletin_id}/vessels/{ids['HP-1003-TS']}/mark",
            {"method": "pigeon"},
        )
        assert bad.status_code == 400

        csv = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels.csv")
        assert csv.headers["content-type"].startswith("text/csv")
        assert "tau-ca.csv" in csv.headers["content-disposition"]
        text = csv.content.decode("utf-8")
        assert text.startswith("\ufeffsố đăng ký,tên tàu")
        lines = text.splitlines()
        assert len(lines) == 4
        assert "HP-1001-TS,Hải Âu,11914" in text and "đã báo trực tiếp,0,0,0,vô tuyến" in text
        assert "HP-1002-TS" in text and "đã bấm Đã nhận,1,0,1" in text
        waiting = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels.csv?not_reached=1")
        assert waiting.content.decode("utf-8").splitlines()[1:] == [
            line for line in lines[1:] if "chưa liên lạc được" in line
        ]
        assert "0987 654 321" in waiting.text

    async with seeded.sessions() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "vessel.mark"))
        assert entry is not None and entry.via == "web"
        assert entry.details["registration"] == "HP-1001-TS"
        assert CAT_HAI_PHONE not in str(entry.details)


async def test_commune_editor_sees_and_marks_only_their_commune(seeded: Database) -> None:
    bulletin_id, ids = await _setup(seeded)
    async with Client(make_app(seeded)) as client:
        await client.login("xa-khac")  # Hồng Bàng (11311)
        page = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels")
        assert page.status_code == 200
        assert "HP-1003-TS" in page.text and "0987 654 321" in page.text
        assert "HP-1001-TS" not in page.text and "0912 345 678" not in page.text
        assert 'id="vessels-total">1<' in page.text
        other = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels?commune=11914")
        assert "HP-1001-TS" not in other.text and 'id="vessels-total">0<' in other.text
        csv = await client.get(f"/dashboard/bulletins/{bulletin_id}/vessels.csv?commune=11914")
        assert "HP-1001-TS" not in csv.text and CAT_HAI_PHONE not in csv.text

        refused = await client.post(
            f"/dashboard/bulletins/{bulletin_id}/vessels/{ids['HP-1001-TS']}/mark",
            {"method": "phone"},
        )
        assert refused.status_code == 403
        no_token = await client.post(
            f"/dashboard/bulletins/{bulletin_id}/vessels/{ids['HP-1003-TS']}/mark",
            {"method": "phone"},
            csrf=False,
        )
        assert no_token.status_code == 403
        allowed = await client.post(
            f"/dashboard/bulletins/{bulletin_id}/vessels/{ids['HP-1003-TS']}/mark",
            {"method": "phone", "note": ""},
        )
        assert allowed.status_code == 303
    async with seeded.sessions() as session:
        marks = (await session.scalars(select(VesselMark))).all()
        assert [m.vessel_id for m in marks] == [ids["HP-1003-TS"]]

    async with Client(make_app(seeded)) as anonymous:
        csv = await anonymous.get(f"/dashboard/bulletins/{bulletin_id}/vessels.csv")
        assert csv.status_code == 401
        missing = await anonymous.get("/dashboard/bulletins/999999/vessels")
        assert missing.status_code == 303  # to the sign-in page
