"""Area codes, diacritic-blind search with provinces shown, villages, ports, coastal flags."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from broadcasts import areas
from db.models import Area, AreaKind
from tests.conftest import Database


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("11914", "11914"),
        ("c11914", "11914"),
        ("C11914", "11914"),
        (" 4 ", "00004"),
        ("p31", "p31"),
        ("P1", "p01"),
        ("p01", "p01"),
        ("11914.2", "11914.2"),
    ],
)
def test_canonical_codes(typed: str, code: str) -> None:
    assert areas.canonical_code(typed) == code


@pytest.mark.parametrize("bad", ["", "cat hai", "x11914", "p31.1", "123456", "c"])
def test_bad_codes_are_refused(bad: str) -> None:
    with pytest.raises(areas.AreaError):
        areas.canonical_code(bad)


@pytest.mark.parametrize("typed", ["cat hai", "Cát Hải", "CAT HAI", "cát hải", "dac khu cat hai"])
async def test_cat_hai_is_found_however_it_is_typed(seeded: Database, typed: str) -> None:
    async with seeded.sessions() as session:
        matches = await areas.search(session, typed)
    assert matches[0].area.code == "11914"
    assert matches[0].label == "Đặc khu Cát Hải (Thành phố Hải Phòng)"


async def test_repeated_names_show_their_provinces(seeded: Database) -> None:
    async with seeded.sessions() as session:
        matches = await areas.search(session, "binh son")
    labels = {m.label for m in matches}
    assert {
        "Xã Bình Sơn (Ninh Bình)",
        "Xã Bình Sơn (Quảng Ngãi)",
        "Xã Bình Sơn (An Giang)",
    } <= labels
    exact = [m for m in matches if m.area.name == "Xã Bình Sơn"]
    assert matches[: len(exact)] == exact  # exact names rank before "Bình Sơn Tây"-like ones


async def test_province_filter_and_codes(seeded: Database) -> None:
    async with seeded.sessions() as session:
        quang_ngai = await areas.get_by_code(session, "p51")
        only = await areas.search(session, "binh son", province_id=quang_ngai.id)
        assert [m.label for m in only] == ["Xã Bình Sơn (Quảng Ngãi)"]
        by_code = await areas.search(session, "c11914")
        assert [m.area.name for m in by_code] == ["Đặc khu Cát Hải"]
        province = await areas.search(session, "hai phong")
        assert province[0].area.code == "p31" and province[0].province_name is None
        with pytest.raises(areas.AreaError, match="unknown area code"):
            await areas.get_by_code(session, "99999")


async def test_typos_fall_back_to_close_matches(seeded: Database) -> None:
    async with seeded.sessions() as session:
        matches = await areas.search(session, "cat hia")
        assert matches and matches[0].area.code == "11914"
        assert await areas.search(session, "zzzz qqqq") == []


async def test_villages_and_ports_under_a_commune(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        village = await areas.add_subarea(session, "c11914", "Thôn  Liên Minh", AreaKind.village)
        port = await areas.add_subarea(session, "11914", "Cảng cá Cát Bà", AreaKind.port)
        assert (village.code, port.code) == ("11914.1", "11914.2")
        assert village.division_type == "thôn" and port.division_type == "bến cá"
        assert village.name == "Thôn Liên Minh"
        assert village.coastal  # inherits the commune's flag
        with pytest.raises(areas.AreaError, match="already has"):
            await areas.add_subarea(session, "11914", "thon lien minh", AreaKind.village)
        with pytest.raises(areas.AreaError, match="not a commune"):
            await areas.add_subarea(session, "p31", "Thôn X", AreaKind.village)
    async with seeded.sessions() as session:
        found = await areas.search(session, "lien minh", kinds=(AreaKind.village,))
        assert [m.label for m in found] == ["Thôn Liên Minh (Đặc khu Cát Hải, Thành phố Hải Phòng)"]


async def test_coastal_flags(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        await areas.set_coastal(session, ["p22"])  # Quảng Ninh: every commune
        await areas.set_coastal(session, ["11914"], coastal=False)
    async with seeded.sessions() as session:
        quang_ninh = await areas.get_by_code(session, "p22")
        total = await session.scalar(select(func.count()).where(Area.province_id == quang_ninh.id))
        flagged = await session.scalar(
            select(func.count()).where(Area.province_id == quang_ninh.id, Area.coastal.is_(True))
        )
        assert total and flagged == total
        cat_hai = await areas.get_by_code(session, "11914")
        assert cat_hai.coastal is False
