"""ZNS templates on the dashboard (administrators), the fallback chain in the bulletin
editor, and the chain's cost preview on the bulletin page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from broadcasts import readout, sms
from broadcasts.subscribers import ensure_bot
from db.models import AuditEntry, Bot, Bulletin, ChatAddress, Platform, Subscriber, ZnsTemplate
from tests.broadcasts.engine import NOW, add_people
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_officials
from tests.web.test_bulletin_editor import _app, _form, _id_of, _post
from web.dashboard import texts

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TEMPLATE_FORM: dict[str, Any] = {
    "template_id": "367891",
    "name": "Cảnh báo khẩn",
    "price_vnd": "440",
    "param_name": ["tieu_de", "noi_dung", ""],
    "param_source": ["title", "summary", "title"],
    "param_limit": ["", "200", ""],
}


async def _zns_bot(database: Database) -> int:
    async with database.sessions.begin() as session:
        return (await ensure_bot(session, Platform.zns)).id


async def _audits(database: Database, object_type: str) -> list[AuditEntry]:
    async with database.sessions() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.object_type == object_type).order_by(AuditEntry.id)
        )
        return list(rows.all())


async def test_admins_register_list_and_disable_templates(seeded: Database, tmp_path: Path) -> None:
    ids = await make_officials(seeded)
    app = _app(seeded, tmp_path)
    async with Client(app) as admin:
        await admin.login("root")
        empty = await admin.get("/dashboard/admin/zns")
        assert empty.status_code == 200 and 'id="zns-no-bot"' in empty.text
        assert 'href="/dashboard/admin/zns"' in empty.text  # in the administration tabs

        bot_id = await _zns_bot(seeded)
        page = await admin.get("/dashboard/admin/zns")
        assert 'id="zns-template-form"' in page.text and "Chưa có mẫu ZNS nào." in page.text
        form = {**TEMPLATE_FORM, "bot_id": str(bot_id)}
        forged = await admin.post("/dashboard/admin/zns", form, csrf=False)
        assert forged.status_code == 403 and texts.CSRF_FAILED in forged.text
        added = await admin.post("/dashboard/admin/zns", form)
        assert added.status_code == 303
        assert added.headers["location"] == "/dashboard/admin/zns?ok=zns_template_added"
        listed = await admin.get(added.headers["location"])
        assert texts.NOTICES["zns_template_added"] in listed.text
        assert 'data-template-id="367891"' in listed.text and "440 đ" in listed.text
        assert "<code>noi_dung</code>: Tóm tắt nội dung" in listed.text
        assert "(tối đa 200 ký tự)" in listed.text and "(tối đa 30 ký tự)" in listed.text

        # Refusals come back in Vietnamese and store nothing.
        for change, message in (
            ({"template_id": "36-78"}, texts.ZNS_PROBLEMS["bad_template_id"]),
            ({}, texts.ZNS_PROBLEMS["duplicate"]),
            ({"template_id": "2", "param_name": [""]}, texts.ZNS_PROBLEMS["no_params"]),
            ({"template_id": "2", "param_limit": ["", "500", ""]}, texts.ZNS_PROBLEMS["bad_limit"]),
            ({"template_id": "2", "param_source": ["title", "phone", ""]},
             texts.ZNS_PROBLEMS["unknown_source"]),
            ({"template_id": "2", "price_vnd": "ba trăm"}, texts.BAD_NUMBER),
            ({"template_id": "2", "param_name": ["a", "a", ""]},
             texts.ZNS_PARAM_TWICE.format(name="a")),
        ):  # fmt: skip
            refused = await admin.post("/dashboard/admin/zns", {**form, **change})
            assert refused.status_code == 400, change
            assert html.escape(message) in refused.text, change
        async with seeded.sessions() as session:
            template = (await session.scalars(select(ZnsTemplate))).one()
        assert template.params == {"tieu_de": "title", "noi_dung": "summary:200"}
        assert template.created_by_id == ids["root"]

        # Officials other than administrators neither see nor change templates.
        async with Client(app) as editor:
            await editor.login("editor")
            assert (await editor.get("/dashboard/admin/zns")).status_code == 403
            sneaked = await editor.post("/dashboard/admin/zns", {**form, "template_id": "9"})
            assert sneaked.status_code == 403
            switched = await editor.post(f"/dashboard/admin/zns/{template.id}/disable")
            assert switched.status_code == 403

        missing = await admin.post("/dashboard/admin/zns/999/disable")
        assert missing.status_code == 404
        off = await admin.post(f"/dashboard/admin/zns/{template.id}/disable")
        assert off.headers["location"] == "/dashboard/admin/zns?ok=zns_template_disabled"
        assert "Đã tắt" in (await admin.get("/dashboard/admin/zns")).text

    entries = await _audits(seeded, "zns_template")
    assert [(e.action, e.via, e.official_id) for e in entries] == [
        ("zns_template.add", "web", ids["root"]),
        ("zns_template.disable", "web", ids["root"]),
    ]
    async with seeded.sessions() as session:
        assert not (await session.get_one(ZnsTemplate, template.id)).enabled


async def _template(database: Database, *, enabled: bool = True) -> int:
    bot_id = await _zns_bot(database)
    async with database.sessions.begin() as session:
        template = ZnsTemplate(
            bot_id=bot_id, template_id="367891" if enabled else "111", name="Cảnh báo khẩn",
            params={"tieu_de": "title"}, price_vnd=440, enabled=enabled, created_at=NOW,
        )  # fmt: skip
        session.add(template)
        await session.flush()
        return template.id


def _chain(template_id: int | str = "", **fields: Any) -> dict[str, Any]:
    chain = {
        "priority": "urgent", "fallback_minutes": "15", "fallback_step_1": "zns",
        "fallback_step_2": "sms", "zns_template": str(template_id),
    }  # fmt: skip
    return _form(**{**chain, **fields})


async def test_the_editor_saves_or_refuses_a_chain(seeded: Database, tmp_path: Path) -> None:
    await make_officials(seeded)
    template_id = await _template(seeded)
    disabled_id = await _template(seeded, enabled=False)
    app = _app(seeded, tmp_path)
    async with Client(app) as editor:
        await editor.login("editor")
        page = await editor.get("/dashboard/bulletins/new")
        assert 'id="fallback-chain"' in page.text and 'name="fallback_step_2"' in page.text
        assert f'<option value="{template_id}" >Cảnh báo khẩn (367891, 440 đ/tin)' in page.text
        assert f'value="{disabled_id}"' not in page.text  # a disabled template is not offered

        created = await _post(editor, "/dashboard/bulletins", _chain(template_id))
        assert created.status_code == 303, created.text
        bulletin_id = _id_of(created)

        refusals = [
            (_chain(template_id, priority="routine"), "Bản tin thường không có chuỗi gửi dự phòng"),
            (_chain(template_id, fallback_minutes="4"), "từ 5 đến 720 phút"),
            (_chain(template_id, fallback_minutes="mười"), texts.FALLBACK_MINUTES_BAD),
            (_chain(template_id, fallback_step_2="zns"), "chỉ dùng một lần trong chuỗi"),
            (_chain(), "Chuỗi có bước ZNS: hãy chọn mẫu tin ZNS."),
            (_chain(disabled_id), "không còn dùng được"),
            (_chain(template_id, fallback_step_1="fax"), texts.BAD_CHOICE),
        ]
        for fields, message in refusals:
            refused = await _post(editor, "/dashboard/bulletins", fields)
            assert refused.status_code == 400, fields
            assert html.escape(message) in refused.text, (fields, refused.text[-3000:])
            # The form comes back as typed, so nothing is lost.
            assert f'value="{fields["fallback_minutes"]}"' in refused.text

        # The edit form shows the chain; saving it with SMS alone keeps no template.
        form = await editor.get(f"/dashboard/bulletins/{bulletin_id}/edit")
        assert 'value="15"' in form.text
        assert '<option value="zns" selected>ZNS (Zalo)</option>' in form.text
        assert '<option value="sms" selected>SMS</option>' in form.text
        edited = await _post(
            editor, f"/dashboard/bulletins/{bulletin_id}/edit",
            _chain(template_id, fallback_step_1="sms", fallback_step_2="", fallback_minutes="60"),
        )  # fmt: skip
        assert edited.status_code == 303, edited.text
        # Routine with no steps chosen: no chain, and nothing refused.
        plain = await _post(editor, "/dashboard/bulletins", _form(fallback_minutes="15"))
        assert plain.status_code == 303

    async with seeded.sessions() as session:
        saved = await session.get_one(Bulletin, bulletin_id)
        assert saved.fallback_minutes == 60 and saved.fallback_platforms == ["sms"]
        assert saved.zns_template_id is None
        routine = await session.get_one(Bulletin, _id_of(plain))
        assert routine.fallback_platforms == [] and routine.fallback_minutes is None
        count = len((await session.scalars(select(Bulletin))).all())
    assert count == 2  # every refusal stored nothing
    entries = [e for e in await _audits(seeded, "bulletin") if e.object_id == str(bulletin_id)]
    assert entries[0].action == "bulletin.create"
    assert entries[0].details["fallback"] == {
        "fallback_minutes": 15, "fallback_platforms": ["zns", "sms"],
        "zns_template_id": template_id,
    }  # fmt: skip
    assert entries[1].action == "bulletin.edit"
    assert {"fallback_minutes", "fallback_platforms", "zns_template_id"} <= set(
        entries[1].details["changed"]
    )


async def test_the_bulletin_page_shows_what_the_chain_costs(
    seeded: Database, tmp_path: Path
) -> None:
    await make_officials(seeded)
    template_id = await _template(seeded)
    telegram = await add_people(seeded, Platform.telegram, ["a", "b", "c"])
    async with seeded.sessions.begin() as session:
        people = (
            await session.scalars(
                select(Subscriber)
                .join(ChatAddress, ChatAddress.subscriber_id == Subscriber.id)
                .where(ChatAddress.bot_id == telegram)
            )
        ).all()
        for person in people[:2]:  # two consented phones, one person without
            person.phone = f"8491234{person.id:04d}"
            person.phone_consent_at = NOW
        session.add(
            Bot(
                platform=Platform.sms, name="viettel",
                options={"cost_per_part_vnd": 700, "carrier": "viettel"},
            )
        )  # fmt: skip
    app = _app(seeded, tmp_path)
    async with Client(app) as editor:
        await editor.login("editor")
        created = await _post(editor, "/dashboard/bulletins", _chain(template_id))
        bulletin_id = _id_of(created)
        page = await editor.get(f"/dashboard/bulletins/{bulletin_id}")
        plain = await _post(editor, "/dashboard/bulletins", _form())
        routine_page = await editor.get(f"/dashboard/bulletins/{_id_of(plain)}")
    assert page.status_code == 200
    text = page.text
    assert 'id="phone-preview"' in text
    assert "Nếu chưa xác nhận sau 15 phút trên ứng dụng chat, gửi qua: ZNS (Zalo), rồi SMS." in text
    assert "<strong>2</strong> người nhận có số điện thoại đã đồng ý nhận tin." in text
    assert "Mẫu «Cảnh báo khẩn»: 440 đ/tin × 2 người = <strong>880 đ</strong>" in text
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        relay = await readout.for_bulletin(session, bulletin, TZ)
    assert relay is not None
    tariff = sms.tariff_from({"cost_per_part_vnd": 700, "carrier": "viettel"})
    unaccented = sms.plan(
        sms.bulletin_text(bulletin.title, bulletin.body, short=relay.short,
                          encoding=sms.Encoding.gsm7_unaccented, tariff=tariff),
        sms.Encoding.gsm7_unaccented, tariff,
    )  # fmt: skip
    accented = sms.plan(
        sms.bulletin_text(bulletin.title, bulletin.body, short=relay.short,
                          encoding=sms.Encoding.ucs2, tariff=tariff),
        sms.Encoding.ucs2, tariff,
    )  # fmt: skip
    rows = text.split('class="phone-sms-way"')[1:]
    assert 'data-encoding="gsm7_unaccented"' in rows[0] and "(cổng đang dùng)" in rows[0]
    assert f"<td>{unaccented.count} ({unaccented.characters} ký tự)</td>" in rows[0]
    assert f"<td>{700 * unaccented.count} đ</td>" in rows[0]
    assert f"<td>{html.escape(f'{1400 * unaccented.count:,}'.replace(',', '.'))} đ</td>" in rows[0]
    assert 'data-encoding="ucs2"' in rows[1] and "(cổng đang dùng)" not in rows[1]
    assert f"<td>{accented.count} ({accented.characters} ký tự)</td>" in rows[1]
    total = 880 + 2 * 700 * unaccented.count
    shown_total = f"{total:,}".replace(",", ".")
    assert f"Tổng tối đa: <strong>{shown_total} đ</strong>" in text
    assert html.escape(unaccented.text) in text
    assert 'id="phone-preview"' not in routine_page.text
