"""Villages, ports and coastal flags in the dashboard: scope on the server, CSRF, audit rows."""

from __future__ import annotations

from sqlalchemy import func, select

from db.models import Area, AreaKind, AuditEntry, Official
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials

CAT_HAI = "11914"  # xa-cathai's commune, in Hải Phòng (p31)
ADD_CAT_HAI = f"/dashboard/admin/areas/{CAT_HAI}/subareas"
HONG_BANG = "11311"  # xa-khac's commune, also in Hải Phòng


async def _children(database: Database, commune_code: str) -> dict[str, str]:
    """code → name of the villages and ports under a commune."""
    async with database.sessions() as session:
        commune = await session.scalar(select(Area).where(Area.code == commune_code))
        assert commune is not None
        rows = await session.execute(
            select(Area.code, Area.name).where(Area.parent_id == commune.id)
        )
        return {code: name for code, name in rows.all()}


async def _area(database: Database, code: str) -> Area:
    async with database.sessions() as session:
        area = await session.scalar(select(Area).where(Area.code == code))
        assert area is not None
        return area


async def _audit(database: Database, username: str) -> list[tuple[object, ...]]:
    """(action, object id, details) of the area actions an official did, in order."""
    async with database.sessions() as session:
        rows = await session.execute(
            select(AuditEntry.action, AuditEntry.object_id, AuditEntry.details)
            .join(Official, Official.id == AuditEntry.official_id)
            .where(Official.username == username, AuditEntry.action.like("area.%"))
            .order_by(AuditEntry.id)
        )
        return [(action, object_id, details) for action, object_id, details in rows.all()]


async def _other_province_commune(database: Database) -> str:
    """Any commune outside Hải Phòng (p31), found in the seeded map."""
    async with database.sessions() as session:
        province = await session.scalar(select(Area).where(Area.code == "p31"))
        assert province is not None
        code = await session.scalar(
            select(Area.code)
            .where(Area.kind == AreaKind.commune, Area.province_id != province.id)
            .order_by(Area.code)
            .limit(1)
        )
        assert code is not None
        return code


async def test_commune_editor_keeps_the_villages_and_ports_of_their_commune(
    seeded: Database,
) -> None:
    await make_officials(seeded)
    async with Client(make_app(seeded)) as client:
        await client.login("xa-cathai")
        page = await client.get("/dashboard/admin/areas")
        # A commune editor lands on their own commune: no search needed.
        assert page.status_code == 200
        assert f'id="commune" data-code="{CAT_HAI}"' in page.text
        assert 'id="coastal-form"' not in page.text  # the flag is the province's call
        assert "/admin/officials" not in page.text.split('id="admin-nav"')[1].split("</nav>")[0]

        village = await client.post(
            ADD_CAT_HAI,
            {"kind": "village", "name": "  Thôn   Liên Minh "},
        )
        assert village.status_code == 303
        port = await client.post(ADD_CAT_HAI, {"kind": "port", "name": "Cảng cá Cát Bà"})
        assert port.status_code == 303
        children = await _children(seeded, CAT_HAI)
        assert sorted(children.values()) == ["Cảng cá Cát Bà", "Thôn Liên Minh"]
        codes = {name: code for code, name in children.items()}
        listed = (await client.get(port.headers["location"].removeprefix("http://test"))).text
        assert "Đã thêm vào danh sách thôn và bến cá." in listed
        for code in codes.values():
            assert f'class="subarea-row" data-code="{code}"' in listed
        port_area = await _area(seeded, codes["Cảng cá Cát Bà"])
        assert port_area.kind is AreaKind.port and port_area.division_type == "bến cá"

        # The same name typed without diacritics is a duplicate; an empty name is refused.
        duplicate = await client.post(
            ADD_CAT_HAI,
            {"kind": "village", "name": "thon lien minh"},
        )
        assert duplicate.status_code == 400
        assert "đã có «Thôn Liên Minh»" in duplicate.text
        assert 'value="thon lien minh"' in duplicate.text  # what they typed is kept
        empty = await client.post(ADD_CAT_HAI, {"kind": "port", "name": "   "})
        assert empty.status_code == 400
        assert "Tên thôn hoặc bến cá không được để trống." in empty.text
        bad_kind = await client.post(ADD_CAT_HAI, {"kind": "province", "name": "Tỉnh Mới"})
        assert bad_kind.status_code == 400
        assert len(await _children(seeded, CAT_HAI)) == 2

        village_area = await _area(seeded, codes["Thôn Liên Minh"])
        renamed = await client.post(
            f"/dashboard/admin/areas/subareas/{village_area.id}", {"name": "Thôn Liên Minh Mới"}
        )
        assert renamed.status_code == 303
        clash = await client.post(
            f"/dashboard/admin/areas/subareas/{village_area.id}", {"name": "cang ca cat ba"}
        )
        assert clash.status_code == 400
        assert "đã có «Cảng cá Cát Bà»" in clash.text
        after = await _area(seeded, village_area.code)
        assert (after.name, after.name_folded) == ("Thôn Liên Minh Mới", "thon lien minh moi")

        # The coastal flag: not a commune editor's to change, whatever the form says.
        refused = await client.post(f"/dashboard/admin/areas/{CAT_HAI}/coastal", {"coastal": "0"})
        assert refused.status_code == 403
        assert (await _area(seeded, CAT_HAI)).coastal is True

    assert await _audit(seeded, "xa-cathai") == [
        ("area.add_village", str(village_area.id),
         {"code": village_area.code, "name": "Thôn Liên Minh"}),
        ("area.add_port", str(port_area.id), {"code": port_area.code, "name": "Cảng cá Cát Bà"}),
        ("area.rename", str(village_area.id),
         {"code": village_area.code, "before": "Thôn Liên Minh", "after": "Thôn Liên Minh Mới"}),
    ]  # fmt: skip


async def test_a_crafted_form_for_another_commune_is_refused(seeded: Database) -> None:
    await make_officials(seeded)
    app = make_app(seeded)
    async with Client(app) as owner:
        await owner.login("xa-cathai")
        await owner.get("/dashboard/admin/areas")
        added = await owner.post(ADD_CAT_HAI, {"kind": "village", "name": "Thôn Đông"})
        assert added.status_code == 303
    (code, name), = (await _children(seeded, CAT_HAI)).items()  # fmt: skip
    village = await _area(seeded, code)
    async with seeded.sessions() as session:
        hong_bang = await session.scalar(select(Area).where(Area.code == HONG_BANG))
        assert hong_bang is not None
        hong_bang_id = hong_bang.id
    audit_before = await _audit(seeded, "xa-khac")

    async with Client(app) as other:
        await other.login("xa-khac")
        await other.get("/dashboard/admin/areas")
        rename = await other.post(
            f"/dashboard/admin/areas/subareas/{village.id}", {"name": "Của tôi"}
        )
        assert rename.status_code == 403
        assert "ngoài phạm vi" in rename.text
        add = await other.post(ADD_CAT_HAI, {"kind": "port", "name": "Bến lạ"})
        assert add.status_code == 403
        look = await other.get("/dashboard/admin/areas", params={"commune": CAT_HAI})
        assert look.status_code == 403
        # Their own commune is covered, but it is not a village: renaming it is refused.
        commune_itself = await other.post(
            f"/dashboard/admin/areas/subareas/{hong_bang_id}", {"name": "Phường Mới"}
        )
        assert commune_itself.status_code == 400
        # The commune search shows only what their scope covers.
        search = await other.get("/dashboard/admin/areas", params={"q": "cat hai"})
        assert search.status_code == 200
        assert 'id="commune-search"' not in search.text  # a commune editor has one commune

    assert await _children(seeded, CAT_HAI) == {code: name}
    assert (await _area(seeded, HONG_BANG)).name != "Phường Mới"
    assert await _audit(seeded, "xa-khac") == audit_before == []


async def test_forms_without_the_csrf_token_change_nothing(seeded: Database) -> None:
    await make_officials(seeded)
    async with Client(make_app(seeded)) as admin:
        await admin.login("root")
        await admin.get("/dashboard/admin/areas", params={"commune": CAT_HAI})
        for path, form in (
            (ADD_CAT_HAI, {"kind": "village", "name": "Thôn Tây"}),
            (f"/dashboard/admin/areas/{CAT_HAI}/coastal", {"coastal": "0"}),
        ):
            refused = await admin.post(path, form, csrf=False)
            assert refused.status_code == 403, path
            forged = await admin.post(path, {**form, "csrf_token": "not-the-token"})
            assert forged.status_code == 403, path
    assert await _children(seeded, CAT_HAI) == {}
    assert (await _area(seeded, CAT_HAI)).coastal is True
    assert await _audit(seeded, "root") == []


async def test_province_editor_and_admin_scopes(seeded: Database) -> None:
    await make_officials(seeded)
    elsewhere = await _other_province_commune(seeded)
    app = make_app(seeded)
    async with Client(app) as editor:
        await editor.login("editor")  # province editor of Hải Phòng
        found = await editor.get("/dashboard/admin/areas", params={"q": "cat hai"})
        assert found.status_code == 200
        assert f'class="commune-result" data-code="{CAT_HAI}"' in found.text
        page = await editor.get("/dashboard/admin/areas", params={"commune": CAT_HAI})
        assert 'id="coastal-form"' in page.text
        off = await editor.post(f"/dashboard/admin/areas/{CAT_HAI}/coastal", {})
        assert off.status_code == 303
        assert (await _area(seeded, CAT_HAI)).coastal is False
        on = await editor.post(f"/dashboard/admin/areas/{CAT_HAI}/coastal", {"coastal": "1"})
        assert on.status_code == 303
        assert (await _area(seeded, CAT_HAI)).coastal is True
        # Saving the flag unchanged writes no audit row.
        same = await editor.post(f"/dashboard/admin/areas/{CAT_HAI}/coastal", {"coastal": "1"})
        assert same.status_code == 303
        outside = await editor.post(f"/dashboard/admin/areas/{elsewhere}/coastal", {"coastal": "1"})
        assert outside.status_code == 403
        add_outside = await editor.post(
            f"/dashboard/admin/areas/{elsewhere}/subareas", {"kind": "port", "name": "Bến Xa"}
        )
        assert add_outside.status_code == 403
        province = await editor.get("/dashboard/admin/areas", params={"commune": "p31"})
        assert province.status_code == 400  # a province has no villages of its own
    cat_hai = await _area(seeded, CAT_HAI)
    assert await _audit(seeded, "editor") == [
        ("area.coastal_off", str(cat_hai.id), {"code": CAT_HAI}),
        ("area.coastal_on", str(cat_hai.id), {"code": CAT_HAI}),
    ]
    assert await _children(seeded, elsewhere) == {}

    async with Client(app) as admin:
        await admin.login("root")
        nav = (await admin.get("/dashboard/admin/officials")).text
        assert "/dashboard/admin/areas" in nav
        added = await admin.post(
            f"/dashboard/admin/areas/{elsewhere}/subareas", {"kind": "port", "name": "Bến Xa"}
        )
        assert added.status_code == 303
    assert list((await _children(seeded, elsewhere)).values()) == ["Bến Xa"]

    async with Client(app) as approver:
        await approver.login("approver")
        refused = await approver.get("/dashboard/admin/areas", params={"commune": CAT_HAI})
        assert refused.status_code == 403
    async with seeded.sessions() as session:
        total = await session.scalar(
            select(func.count()).select_from(Area).where(Area.kind.in_([AreaKind.port]))
        )
    assert total == 1
