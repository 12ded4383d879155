"""Vessels: registrations, the registry import, people aboard, and a bulletin's vessel report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from broadcasts import areas, subscribers, vessels
from broadcasts.vessels import VesselError, VesselImportError, VesselStatus
from db.models import (
    Acknowledgement,
    Area,
    AreaKind,
    AuditEntry,
    Bot,
    ChatAddress,
    Delivery,
    DeliveryState,
    MarkMethod,
    Official,
    OfficialRole,
    Platform,
    Subscriber,
    Subscription,
    Vessel,
    VesselMark,
    VesselMember,
    VesselRelation,
)
from tests.broadcasts.engine import NOW, approved_bulletin, start_run
from tests.conftest import Database
from tests.web.dashboard_helpers import make_officials

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CAT_HAI, HONG_BANG = "11914", "11311"  # two communes of Hải Phòng (p31)


@pytest.mark.parametrize(
    ("typed", "shown", "key"),
    [
        ("QNg-90123-TS", "QNg-90123-TS", "qng-90123-ts"),
        ("qng 90123 ts", "QNg-90123-TS", "qng-90123-ts"),
        ("QNG90123TS", "QNg-90123-TS", "qng-90123-ts"),
        ("  hp-1234-ts ", "HP-1234-TS", "hp-1234-ts"),
        ("bđ 98765 ts", "BĐ-98765-TS", "bd-98765-ts"),
        ("BD.98765.TS", "BĐ-98765-TS", "bd-98765-ts"),
        ("KG 91234", "KG-91234", "kg-91234"),
    ],
)
def test_registration_numbers_are_normalised(typed: str, shown: str, key: str) -> None:
    assert vessels.normalise_registration(typed) == (shown, key)


@pytest.mark.parametrize("typed", ["", "90123", "QNg", "QNg-12-TS", "Q-N-g", "QNg-90123-TS-1"])
def test_bad_registration_numbers_are_refused(typed: str) -> None:
    with pytest.raises(VesselError):
        vessels.normalise_registration(typed)


def test_phones_are_validated_and_normalised_without_echoing_them() -> None:
    assert vessels.normalise_phone("+84 912 345 678") == "0912345678"
    assert vessels.normalise_phone("0912.345.678") == "0912345678"
    assert vessels.normalise_phone("84912345678") == "0912345678"
    assert vessels.normalise_phone("(0225) 3822 123") == "02253822123"
    assert vessels.normalise_phone("  ") is None
    with pytest.raises(VesselError) as refused:
        vessels.normalise_phone("0123 45")
    assert "0123" not in str(refused.value)
    assert vessels.display_phone("0912345678") == "0912 345 678"


async def test_save_adds_then_updates_by_registration(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        await areas.add_subarea(session, CAT_HAI, "Bến cá Cát Hải", AreaKind.port)
        vessel, added = await vessels.save(
            session, registration="hp 1234 ts", name="Tàu  Hải  Âu", commune="c11914",
            home_port="Cát Hải", phone="+84912345678",
        )  # fmt: skip
        assert added and vessel.registration == "HP-1234-TS" and vessel.name == "Tàu Hải Âu"
        assert vessel.phone == "0912345678" and vessel.home_port_id is not None
        again, added = await vessels.save(
            session, registration="HP-1234-TS", name="Hải Âu 2", commune=HONG_BANG
        )
        assert not added and again.id == vessel.id and again.home_port_id is None
        with pytest.raises(VesselError, match="unknown commune"):
            await vessels.save(session, registration="HP-1001-TS", name="", commune="99999")
        with pytest.raises(VesselError, match="commune"):
            await vessels.save(session, registration="HP-1111-TS", name="", commune="p31")
        assert await session.scalar(select(func.count()).select_from(Vessel)) == 1


REGISTRY = (
    "\ufeffsố đăng ký;tên tàu;mã xã;cảng cá;điện thoại\n"
    "HP-1001-TS;Hải Âu;11914;{port};0912 345 678\n"
    "hp 1002 ts;Bình Minh;c11914;;\n"
    "\n"
    "HP-1003-TS;Sao Biển;11311;;+84 987 654 321\n"
)


async def test_import_registry_then_reimport_updates(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        port = await areas.add_subarea(session, CAT_HAI, "Bến cá Cát Hải", AreaKind.port)
        result = await vessels.import_csv(session, REGISTRY.format(port=port.code))
        assert (result.added, result.updated, result.unchanged) == (3, 0, 0)
    async with seeded.sessions.begin() as session:
        changed = REGISTRY.format(port="Cát Hải").replace("Bình Minh", "Bình Minh 68")
        result = await vessels.import_csv(session, changed)
        assert (result.added, result.updated, result.unchanged) == (0, 1, 2)
        listed = await vessels.listing(session, CAT_HAI)
        assert [(row.vessel.registration, row.vessel.name, row.home_port) for row in listed] == [
            ("HP-1001-TS", "Hải Âu", "Bến cá Cát Hải"),
            ("HP-1002-TS", "Bình Minh 68", ""),
        ]


async def test_a_registry_with_bad_rows_imports_nothing(seeded: Database) -> None:
    text = (
        "registration,name,commune,home_port,phone\n"
        "HP-2001-TS,Một,11914,,\n"
        "not a number,Hai,11914,,\n"  # line 3
        "HP-2003-TS,Ba,99999,,\n"  # line 4
        "HP-2004-TS,Bốn,11914,,0123\n"  # line 5
        "hp 2001 ts,Năm,11914,,\n"  # line 6: the same vessel as line 2
        "HP-2006-TS,Sáu,11914,Bến Không Có,\n"  # line 7
    )
    async with seeded.sessions.begin() as session:
        with pytest.raises(VesselImportError) as refused:
            await vessels.import_csv(session, text)
        problems = refused.value.problems
        assert [p.split(":", 1)[0] for p in problems] == [
            "line 3", "line 4", "line 5", "line 6", "line 7",
        ]  # fmt: skip
        assert "line 2" in problems[3] and "0123" not in problems[2]
        assert await session.scalar(select(func.count()).select_from(Vessel)) == 0
        with pytest.raises(VesselImportError, match="no registration"):
            await vessels.import_csv(session, "tên tàu,mã xã\nA,11914\n")


async def test_link_unlink_and_erasure_removes_links(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        vessel, _ = await vessels.save(session, registration="HP-3001-TS", name="", commune=CAT_HAI)
        person = Subscriber(consent_at=NOW, display_name="Nguyễn Văn A")
        other = Subscriber(consent_at=NOW)
        session.add_all([person, other])
        await session.flush()
        assert await vessels.link(session, "hp 3001 ts", person.id, VesselRelation.captain)
        assert not await vessels.link(session, "HP-3001-TS", person.id, VesselRelation.owner)
        assert await vessels.link(session, "HP-3001-TS", other.id, VesselRelation.crew)
        assert await vessels.unlink(session, "HP-3001-TS", other.id)
        assert not await vessels.unlink(session, "HP-3001-TS", other.id)
        with pytest.raises(VesselError, match="no subscriber"):
            await vessels.link(session, "HP-3001-TS", 999_999, VesselRelation.crew)
        member = await session.get_one(VesselMember, (vessel.id, person.id))
        assert member.relation is VesselRelation.owner

        await subscribers.erase(session, person, NOW)
        links = await session.scalar(select(func.count()).select_from(VesselMember))
        assert links == 0
        assert await session.get(Vessel, vessel.id) is not None  # the vessel stays
        with pytest.raises(VesselError, match="no subscriber"):
            await vessels.link(session, "HP-3001-TS", person.id, VesselRelation.crew)


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    bulletin_id: int
    vessel_ids: list[int]  # index i: vessel i
    expected: dict[VesselStatus, int]
    people: int
    people_reached: int
    people_acknowledged: int


def _plan(i: int) -> str:
    """What happens on vessel i: "ack" (the last aboard taps Đã nhận, everyone was sent it),
    "reached" (only the first aboard was sent it), "mark" (nobody, an official tells it),
    "none"."""
    return ("ack", "reached", "none", "mark" if i % 8 == 3 else "none")[i % 4]


async def _fleet(database: Database, count: int = 300) -> Fleet:
    """`count` vessels with 1-5 people each over two communes, an urgent bulletin for the
    province, one run whose deliveries are sent, failed or pending by plan, and taps."""
    async with database.sessions.begin() as session:
        bot = Bot(platform=Platform.telegram, name="default")
        session.add(bot)
        commune_ids = {
            code: (await areas.get_by_code(session, code)).id for code in (CAT_HAI, HONG_BANG)
        }
        elsewhere = await session.scalar(
            select(Area)
            .where(
                Area.kind == AreaKind.commune,
                Area.province_id != (await areas.get_by_code(session, "p31")).id,
            )
            .limit(1)
        )
        assert elsewhere is not None
        await session.flush()
        fleet = [
            Vessel(
                registration=f"HP-{5000 + i}-TS", registration_key=f"hp-{5000 + i}-ts",
                name=f"Tàu {i}", commune_id=commune_ids[CAT_HAI if i % 2 == 0 else HONG_BANG],
                phone=f"09{i:08d}",
            )
            for i in range(count)
        ]  # fmt: skip
        outside = Vessel(
            registration="HN-1-TS", registration_key="hn-1-ts", name="Ngoài vùng",
            commune_id=elsewhere.id,
        )  # fmt: skip
        session.add_all([*fleet, outside])
        await session.flush()
        crews: list[list[Subscriber]] = []
        for i in range(count):
            crew = [Subscriber(consent_at=NOW) for _ in range(1 + i % 5)]
            session.add_all(crew)
            crews.append(crew)
        stranger = Subscriber(consent_at=NOW)  # on no vessel: must not count anywhere
        session.add(stranger)
        await session.flush()
        addresses: dict[int, ChatAddress] = {}
        for i, crew in enumerate(crews):
            for person in crew:
                address = ChatAddress(
                    subscriber_id=person.id, bot_id=bot.id, chat_id=f"c{person.id}"
                )
                addresses[person.id] = address
                session.add(address)
                session.add(Subscription(subscriber_id=person.id, area_id=fleet[i].commune_id))
                role = VesselRelation.captain if person is crew[0] else VesselRelation.crew
                session.add(
                    VesselMember(vessel_id=fleet[i].id, subscriber_id=person.id, relation=role)
                )
        session.add(ChatAddress(subscriber_id=stranger.id, bot_id=bot.id, chat_id="stranger"))
        session.add(Subscription(subscriber_id=stranger.id, area_id=commune_ids[CAT_HAI]))
        await session.flush()
        # The outside vessel's captain is reached, but the vessel is not in the audience.
        far = Subscriber(consent_at=NOW)
        session.add(far)
        await session.flush()
        session.add(
            VesselMember(
                vessel_id=outside.id, subscriber_id=far.id, relation=VesselRelation.captain
            )
        )
        vessel_ids = [vessel.id for vessel in fleet]
    bulletin_id = await approved_bulletin(database, urgent=True, areas=("p31",))
    run_id = await start_run(database, bulletin_id)

    sent: list[int] = []
    failed: list[int] = []
    acked: list[int] = []
    people = reached_people = acked_people = 0
    expected = dict.fromkeys(VesselStatus, 0)
    for i, crew in enumerate(crews):
        plan = _plan(i)
        people += len(crew)
        ids = [addresses[p.id].id for p in crew]
        if plan == "ack":
            sent += ids
            acked.append(crew[-1].id)
            reached_people += len(crew)
            acked_people += 1
            expected[VesselStatus.acknowledged] += 1
        elif plan == "reached":
            sent.append(ids[0])
            failed += ids[1:]
            reached_people += 1
            expected[VesselStatus.reached] += 1
        else:
            failed += ids[: len(ids) // 2]  # the rest stay pending
            status = VesselStatus.informed if plan == "mark" else VesselStatus.not_reached
            expected[status] += 1
    async with database.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.run_id == run_id, Delivery.chat_address_id.in_(sent))
            .values(state=DeliveryState.sent, sent_at=NOW)
        )
        await session.execute(
            update(Delivery)
            .where(Delivery.run_id == run_id, Delivery.chat_address_id.in_(failed))
            .values(state=DeliveryState.failed, reason="test")
        )
        session.add_all(
            Acknowledgement(bulletin_id=bulletin_id, run_id=run_id, subscriber_id=s) for s in acked
        )
        await session.execute(
            update(Delivery)
            .where(
                Delivery.run_id == run_id,
                Delivery.chat_address_id.in_(
                    select(ChatAddress.id).where(ChatAddress.chat_id == "stranger")
                ),
            )
            .values(state=DeliveryState.sent, sent_at=NOW)
        )
    return Fleet(bulletin_id, vessel_ids, expected, people, reached_people, acked_people)


async def test_report_counts_each_vessel_once_whoever_aboard_was_reached(
    seeded: Database,
) -> None:
    ids = await make_officials(seeded)
    fleet = await _fleet(seeded)
    async with seeded.sessions.begin() as session:
        editor = await session.get_one(Official, ids["editor"])
        for i, vessel_id in enumerate(fleet.vessel_ids):
            if _plan(i) == "mark" or i == 0:  # vessel 0 acknowledged: a mark changes nothing
                await vessels.mark(
                    session, bulletin_id=fleet.bulletin_id, vessel_id=vessel_id, official=editor,
                    method=MarkMethod.radio, note="Gọi qua đài Cát Hải", now=NOW, via="web",
                )  # fmt: skip
    async with seeded.sessions() as session:
        report = await vessels.report(session, fleet.bulletin_id)
    assert report.vessels == 300
    assert report.by_status == fleet.expected
    assert fleet.expected[VesselStatus.not_reached] == 112
    assert (report.people, report.people_reached, report.people_acknowledged) == (
        fleet.people, fleet.people_reached, fleet.people_acknowledged,
    )  # fmt: skip
    assert report.reached_or_informed == 300 - 112
    assert "HN-1-TS" not in {row.registration for row in report.rows}
    by_id = {row.vessel_id: row for row in report.rows}
    first = by_id[fleet.vessel_ids[0]]
    assert first.status is VesselStatus.acknowledged and first.mark_method is MarkMethod.radio
    informed = by_id[fleet.vessel_ids[3]]
    assert informed.status is VesselStatus.informed and informed.marked_by == "editor"
    five = by_id[fleet.vessel_ids[4]]  # plan "ack", five aboard, one tapped
    assert (five.people, five.people_reached, five.people_acknowledged) == (5, 5, 1)
    assert sorted(c[1] for c in report.communes) == [HONG_BANG, CAT_HAI]

    async with seeded.sessions() as session:
        cat_hai = await areas.get_by_code(session, CAT_HAI)
        only = await vessels.report(session, fleet.bulletin_id, communes=[cat_hai.id])
    assert only.vessels == 150 and {row.commune_code for row in only.rows} == {CAT_HAI}

    text = vessels.vessel_csv(
        [row for row in report.rows if row.status is VesselStatus.not_reached], TZ
    )
    assert text.startswith("\ufeffsố đăng ký,tên tàu,mã xã")
    lines = text.splitlines()
    assert len(lines) == 1 + 112
    assert "chưa liên lạc được" in lines[1] and "0900 000 002" in text


async def test_marks_are_scoped_audited_and_updated_in_place(seeded: Database) -> None:
    ids = await make_officials(seeded)
    async with seeded.sessions.begin() as session:
        cat_hai, _ = await vessels.save(
            session, registration="HP-7001-TS", name="", commune=CAT_HAI, phone="0912345678"
        )
        hong_bang, _ = await vessels.save(
            session, registration="HP-7002-TS", name="", commune=HONG_BANG
        )
        radio = Official(
            username="loa", role=OfficialRole.radio_operator, password_hash="x",
            area_id=cat_hai.commune_id,
        )  # fmt: skip
        session.add(radio)
        await session.flush()
        radio_id = radio.id
    bulletin_id = await approved_bulletin(seeded, urgent=True, areas=(CAT_HAI,))
    draft_only = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    async with seeded.sessions.begin() as session:
        commune_editor = await session.get_one(Official, ids["xa-khac"])  # Hồng Bàng
        with pytest.raises(vessels.MarkRefused):
            await vessels.mark(
                session, bulletin_id=bulletin_id, vessel_id=cat_hai.id, official=commune_editor,
                method=MarkMethod.phone, note="", now=draft_only, via="web",
            )  # fmt: skip
        with pytest.raises(vessels.MarkRefused):
            await vessels.mark(
                session, bulletin_id=bulletin_id, vessel_id=cat_hai.id,
                official=await session.get_one(Official, radio_id),
                method=MarkMethod.phone, note="", now=draft_only, via="web",
            )  # fmt: skip
        editor = await session.get_one(Official, ids["xa-cathai"])
        with pytest.raises(VesselError, match="not in bulletin"):
            await vessels.mark(
                session, bulletin_id=bulletin_id, vessel_id=hong_bang.id,
                official=await session.get_one(Official, ids["editor"]),
                method=MarkMethod.phone, note="", now=draft_only, via="web",
            )  # fmt: skip
        await vessels.mark(
            session, bulletin_id=bulletin_id, vessel_id=cat_hai.id, official=editor,
            method=MarkMethod.phone, note="Gọi 0912345678, thuyền trưởng nghe máy", now=NOW,
            via="web",
        )  # fmt: skip
        await vessels.mark(
            session, bulletin_id=bulletin_id, vessel_id=cat_hai.id, official=editor,
            method=MarkMethod.in_person, note="Báo tại bến", now=NOW, via="cli",
        )  # fmt: skip
    async with seeded.sessions() as session:
        marks = (await session.scalars(select(VesselMark))).all()
        assert [(m.method, m.note) for m in marks] == [(MarkMethod.in_person, "Báo tại bến")]
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "vessel.mark").order_by(AuditEntry.id)
            )
        ).all()
    assert [(e.via, e.details["method"], e.details["again"]) for e in entries] == [
        ("web", "phone", False), ("cli", "in_person", True),
    ]  # fmt: skip
    assert all("0912345678" not in str(e.details) for e in entries)
