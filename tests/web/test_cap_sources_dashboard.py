"""The CAP sources page (admins only, CSRF, audited) and imported drafts in the dashboard."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from broadcasts import cap_import
from db.models import AuditEntry, Bulletin, CapSource
from tests.conftest import Database
from tests.fakes.cap_feed import cap_alert, cap_feed_server
from tests.web.dashboard_helpers import Client, make_app, make_officials

NOW = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


async def test_sources_page_and_imported_drafts(seeded: Database) -> None:
    ids = await make_officials(seeded)
    app = make_app(seeded)
    with cap_feed_server() as feeds:
        url = feeds.put("/a.xml", cap_alert("A", infos=[{"geocode": "VN-XA=11914", "area": "x"}]))
        async with Client(app) as admin, Client(app) as other:
            await admin.login("root")
            page = await admin.get("/dashboard/admin/cap")
            assert page.status_code == 200 and "Chưa có nguồn nào" in page.text
            refused = await admin.post("/dashboard/admin/cap", {"name": "x", "url": "ftp://x/y"})
            assert refused.status_code == 400 and "http://" in refused.text
            assert (
                await admin.post("/dashboard/admin/cap", {"name": "n"}, csrf=False)
            ).status_code == 403
            added = await admin.post(
                "/dashboard/admin/cap", {"name": "nchmf", "url": url, "poll_seconds": "60"}
            )
            assert added.status_code == 303
            await other.login("editor")
            assert (await other.get("/dashboard/admin/cap")).status_code == 403
            async with seeded.sessions() as session:
                source_id = (await session.scalars(select(CapSource.id))).one()
            async with cap_import.new_client() as client:
                report = await cap_import.poll_source(seeded.sessions, source_id, client, NOW)
            draft_id = report.imported[0].bulletin_id
            assert "nchmf" in (await admin.get("/dashboard/admin/cap")).text

    # Visible to the officials of its area (not elsewhere); one takes it over.
    async with Client(app) as cathai, Client(app) as elsewhere, Client(app) as province:
        await cathai.login("xa-cathai")
        await elsewhere.login("xa-khac")
        await province.login("editor")
        assert (await elsewhere.get(f"/dashboard/bulletins/{draft_id}")).status_code == 404
        shown = await province.get(f"/dashboard/bulletins/{draft_id}")
        assert shown.status_code == 200 and 'id="take-over-bulletin"' in shown.text
        page = await cathai.get(f"/dashboard/bulletins/{draft_id}")
        assert 'id="take-over-bulletin"' in page.text
        taken = await cathai.post(f"/dashboard/bulletins/{draft_id}/take")
        assert taken.status_code == 303
        mine = await cathai.get(f"/dashboard/bulletins/{draft_id}")
        assert 'id="submit-bulletin"' in mine.text and 'id="take-over-bulletin"' not in mine.text
        # Now an ordinary draft of xa-cathai's: the province editor no longer sees it.
        assert (await province.get(f"/dashboard/bulletins/{draft_id}")).status_code == 404
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, draft_id)
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert bulletin.author_id == ids["xa-cathai"]
    assert "cap_source.add" in actions and actions[-1] == "bulletin.take_over"
