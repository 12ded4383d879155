"""CAP ingestion against feeds on 127.0.0.1: our own feed round trip, foreign alerts,
duplicates, Update and Cancel, unsafe XML, 304, and the poller in the running service."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from broadcasts import bulletins, cap_import
from broadcasts.bulletins import BulletinError
from db.models import (
    AuditEntry,
    Bulletin,
    BulletinState,
    BulletinTranslation,
    CapImport,
    CapImportStatus,
    CapSource,
    Official,
    Priority,
)
from haidang.roles import Role
from haidang.settings import Settings
from tests.bot.harness import free_port, running_service, until, until_async
from tests.broadcasts.engine import officials_pair
from tests.cap import approved, cancel
from tests.conftest import Database
from tests.fakes.cap_feed import cap_alert, cap_feed_server
from web.cap import make_router

NOW = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)
SENDER = "nchmf.example.vn"


async def _source(database: Database, url: str, default_area: str | None = None) -> int:
    async with database.sessions.begin() as session:
        source = await cap_import.add_source(
            session, name="nchmf", url=url, now=NOW, poll_seconds=60, default_area=default_area
        )
        return source.id


async def _poll(
    database: Database, source_id: int, now: dt.datetime = LATER
) -> cap_import.PollReport:
    async with cap_import.new_client() as client:
        return await cap_import.poll_source(database.sessions, source_id, client, now)


async def _areas(database: Database, bulletin_id: int) -> list[str]:
    async with database.sessions() as session:
        return [a.code for a in await bulletins.audience_areas(session, bulletin_id)]


async def _count(database: Database, model: type[Bulletin] | type[CapImport]) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_our_own_feed_round_trips_to_a_draft(seeded: Database, tmp_path: Path) -> None:
    database = seeded
    published = await approved(
        database, areas=("11914", "p31"), urgent=True, at=NOW,
        translations={"en": ("Tropical depression", "Strong winds. Stay in port.")},
    )  # fmt: skip
    settings = Settings(_env_file=None, data_dir=tmp_path, cap_sender=SENDER)
    app = FastAPI()
    app.include_router(make_router(database.sessions, settings, clock=lambda: LATER))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started)
        source_id = await _source(database, f"http://127.0.0.1:{port}/cap/national.atom")
        report = await _poll(database, source_id)
        assert not report.errors and len(report.imported) == 1
        row = report.imported[0]
        assert row.status is CapImportStatus.drafted and row.sender == SENDER
        assert row.identifier == f"{SENDER}:bulletin:{published}:alert"
        async with database.sessions() as session:
            draft = await session.get_one(Bulletin, row.bulletin_id)
            original = await session.get_one(Bulletin, published)
            author = await session.get_one(Official, draft.author_id)
            translations = (await session.scalars(select(BulletinTranslation).where(
                BulletinTranslation.bulletin_id == draft.id))).all()  # fmt: skip
        assert draft.state is BulletinState.draft and draft.approved_at is None
        assert (draft.title, draft.body) == (original.title, original.body)
        assert draft.priority is Priority.urgent
        assert author.username == cap_import.SYSTEM_USERNAME and not author.active
        assert [(t.language, t.title) for t in translations] == [("en", "Tropical depression")]
        assert await _areas(database, draft.id) == ["11914", "p31"]

        # Unchanged feed: a conditional GET, 304, nothing new.
        again = await _poll(database, source_id, LATER + dt.timedelta(minutes=2))
        assert again.not_modified and not again.imported and not again.errors

        # Cancelled at home: the feed's entry now links the Cancel, which withdraws the draft.
        await cancel(database, published, LATER)
        third = await _poll(database, source_id, LATER + dt.timedelta(minutes=4))
        assert [r.status for r in third.imported] == [CapImportStatus.withdrawn]
        assert third.imported[0].references_id == row.id
        async with database.sessions() as session:
            withdrawn = await session.get_one(Bulletin, draft.id)
        assert withdrawn.state is BulletinState.cancelled and withdrawn.review_comment
    finally:
        server.should_exit = True
        await task


async def test_foreign_alerts_dedupe_update_cancel_and_four_eyes(seeded: Database) -> None:
    database = seeded
    editor_id, approver_id = await officials_pair(database)
    with cap_feed_server() as feeds:
        feeds.put("/a.xml", cap_alert("A", sender=SENDER, infos=[
            {"language": "vi-VN", "headline": "Bão số 3 gần Cát Hải", "area": "Cát Hải, Hải Phòng",
             "instruction": "Tàu thuyền vào nơi tránh trú.",
             "expires": "2026-12-09T10:00:00+07:00"},
            {"language": "en-US", "headline": "Typhoon near Cat Hai", "area": "Cat Hai, Hai Phong"},
        ]))  # fmt: skip
        feeds.put("/nowhere.xml", cap_alert("N", sender=SENDER, infos=[
            {"area": "Vịnh Bắc Bộ", "urgency": "Future", "severity": "Moderate",
             "category": "Safety"}]))  # fmt: skip
        feeds.put("/test.xml", cap_alert("T", sender=SENDER, status="Exercise", infos=[
            {"area": "Hải Phòng"}]))  # fmt: skip
        feed = feeds.feed("/feed.atom", ["/a.xml", "/nowhere.xml", "/test.xml"])
        source_id = await _source(database, feed)
        first = await _poll(database, source_id)
        assert not first.errors
        by_id = {r.identifier: r for r in first.imported}
        assert by_id["A"].status is CapImportStatus.drafted
        assert by_id["N"].status is CapImportStatus.skipped and "Vịnh Bắc Bộ" in (
            by_id["N"].reason or ""
        )
        assert by_id["T"].status is CapImportStatus.skipped and "Exercise" in (
            by_id["T"].reason or ""
        )
        draft_a = by_id["A"].bulletin_id
        assert draft_a is not None and await _areas(database, draft_a) == ["11914"]
        async with database.sessions() as session:
            a = await session.get_one(Bulletin, draft_a)
            assert a.priority is Priority.urgent and a.expires_at == dt.datetime(
                2026, 12, 9, 3, tzinfo=dt.UTC)  # fmt: skip
            assert a.body == "Gió mạnh cấp 10.\n\nTàu thuyền vào nơi tránh trú."
            audits = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "bulletin.import"))).all()  # fmt: skip
            assert [(e.via, e.official_id, e.details["source"]) for e in audits] == [
                ("system", None, "nchmf")
            ]

        # The same alerts again (the feed changed, so it is read): nothing twice.
        feeds.put("/b.xml", cap_alert("B", sender=SENDER, msg_type="Update",
            references=f"{SENDER},A,2026-12-07T10:00:00+07:00", infos=[
            {"headline": "Bão số 3 cập nhật", "geocode": "VN-XA=11914", "area": "x"}]))  # fmt: skip
        feeds.feed("/feed.atom", ["/b.xml", "/a.xml", "/nowhere.xml", "/test.xml"])
        second = await _poll(database, source_id, LATER + dt.timedelta(minutes=1))
        assert [(r.identifier, r.status) for r in second.imported] == [
            ("B", CapImportStatus.drafted)
        ]
        assert second.imported[0].references_id == by_id["A"].id
        assert await _count(database, CapImport) == 4

        # An official takes A over, submits it; the author cannot approve, a second one does.
        async with database.sessions.begin() as session:
            editor = await session.get_one(Official, editor_id)
            a = await session.get_one(Bulletin, draft_a)
            with pytest.raises(BulletinError):
                await bulletins.submit(session, a, editor, LATER)  # not theirs yet
            await cap_import.take_over(session, a, editor, LATER)
            await bulletins.submit(session, a, editor, LATER)
            with pytest.raises(BulletinError, match="four-eyes"):
                await bulletins.approve(session, a, editor, LATER)
            await bulletins.approve(session, a, await session.get_one(Official, approver_id), LATER)

        # Cancels: B is still a draft (withdrawn); A is approved (only noted, left alone).
        feeds.put("/cb.xml", cap_alert("CB", sender=SENDER, msg_type="Cancel",
            references=f"{SENDER},B,2026-12-07T10:00:00+07:00"))  # fmt: skip
        feeds.put("/ca.xml", cap_alert("CA", sender=SENDER, msg_type="Cancel",
            references=f"{SENDER},A,2026-12-07T10:00:00+07:00"))  # fmt: skip
        feeds.feed("/feed.atom", ["/ca.xml", "/cb.xml", "/b.xml", "/a.xml"])
        third = await _poll(database, source_id, LATER + dt.timedelta(minutes=2))
        assert {r.identifier: r.status for r in third.imported} == {
            "CA": CapImportStatus.noted, "CB": CapImportStatus.withdrawn,
        }  # fmt: skip
        async with database.sessions() as session:
            assert (await session.get_one(Bulletin, draft_a)).state is BulletinState.approved
            b = await session.get_one(Bulletin, second.imported[0].bulletin_id)
            assert b.state is BulletinState.cancelled
            noted = await session.scalar(select(AuditEntry).where(
                AuditEntry.action == "cap_import.cancel_noted"))  # fmt: skip
            assert noted is not None and noted.object_id == str(draft_a)

        # An Update of the approved warning names it as superseded.
        feeds.put("/a2.xml", cap_alert("A2", sender=SENDER, msg_type="Update",
            references=f"{SENDER},A,2026-12-07T10:00:00+07:00", infos=[
            {"headline": "Bão số 3: tin tiếp theo", "area": "Cát Hải, Hải Phòng"}]))  # fmt: skip
        feeds.feed("/feed.atom", ["/a2.xml"])
        fourth = await _poll(database, source_id, LATER + dt.timedelta(minutes=3))
        async with database.sessions() as session:
            update = await session.get_one(Bulletin, fourth.imported[0].bulletin_id)
        assert update.supersedes_id == draft_a and update.state is BulletinState.draft


async def test_default_area_and_bare_cap(seeded: Database) -> None:
    with cap_feed_server() as feeds:
        url = feeds.put("/one.xml", cap_alert("X", infos=[{"area": "Biển Đông"}]))
        source_id = await _source(seeded, url, default_area="p31")
        report = await _poll(seeded, source_id)
        assert [r.status for r in report.imported] == [CapImportStatus.drafted]
        assert await _areas(seeded, report.imported[0].bulletin_id or 0) == ["p31"]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier>
<sender>evil</sender><sent>2026-12-07T10:00:00+07:00</sent><status>Actual</status>
<msgType>Alert</msgType><scope>Public</scope><info><language>vi</language><event>x</event>
<urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>
<headline>&xxe;</headline><area><areaDesc>Hai Phong</areaDesc></area></info></alert>"""
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"""


async def test_unsafe_and_malformed_xml_are_refused(seeded: Database) -> None:
    with cap_feed_server() as feeds:
        feeds.put("/xxe.xml", XXE)
        feeds.put("/bomb.xml", BOMB)
        feeds.put("/broken.xml", b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><ident")
        feed = feeds.feed("/feed.atom", ["/xxe.xml", "/bomb.xml", "/broken.xml", "/gone.xml"])
        source_id = await _source(seeded, feed)
        report = await _poll(seeded, source_id)
        assert not report.imported and len(report.errors) == 4
        bare = feeds.put("/bare.xml", XXE)
        async with seeded.sessions.begin() as session:
            (await session.get_one(CapSource, source_id)).url = bare
        second = await _poll(seeded, source_id)
        assert second.errors and "refused XML" in second.errors[0]
        async with seeded.sessions() as session:
            source = await session.get_one(CapSource, source_id)
        assert source.last_error and "refused XML" in source.last_error
        assert "root:" not in source.last_error
        # A feed with errors keeps no validators: its entries are read again next time.
        assert source.etag is None
    assert await _count(seeded, Bulletin) == 0
    assert await _count(seeded, CapImport) == 0


async def test_only_http_sources(seeded: Database) -> None:
    async with seeded.sessions() as session:
        for url in ("ftp://example.vn/cap.xml", "file:///etc/passwd", "javascript:x", "/cap"):
            with pytest.raises(cap_import.CapImportError, match="http"):
                await cap_import.add_source(session, name="x", url=url, now=NOW)


async def test_poller_in_the_running_service(seeded: Database, tmp_path: Path) -> None:
    database = seeded
    editor_id, approver_id = await officials_pair(database)
    with cap_feed_server() as feeds:
        storm = {"headline": "Gió mạnh trên biển", "geocode": "VN-TINH=31", "area": "Hải Phòng"}
        feeds.put("/s.xml", cap_alert("S", sender=SENDER, infos=[storm]))
        feeds.put("/broken.xml", b"not xml")
        source_id = await _source(database, feeds.feed("/feed.atom", ["/s.xml"]))
        async with database.sessions.begin() as session:
            broken = await cap_import.add_source(
                session, name="broken", url=feeds.url("/broken.xml"), now=NOW, poll_seconds=60
            )
        async with running_service(database, tmp_path, roles=[Role.scheduler]) as service:
            assert "cap-import" in service.statuses()

            async def drafted() -> int | None:
                async with database.sessions() as session:
                    return await session.scalar(
                        select(CapImport.bulletin_id).where(CapImport.identifier == "S")
                    )

            bulletin_id = await until_async(drafted)

            async def failed() -> str | None:
                async with database.sessions() as session:
                    return (await session.get_one(CapSource, broken.id)).last_error

            assert "malformed XML" in await until_async(failed)
            assert service.statuses()["cap-import"].active
        async with database.sessions.begin() as session:
            draft = await session.get_one(Bulletin, bulletin_id)
            assert draft.state is BulletinState.draft  # never submitted by itself
            editor = await session.get_one(Official, editor_id)
            await cap_import.take_over(session, draft, editor, LATER)
            await bulletins.submit(session, draft, editor, LATER)
            with pytest.raises(BulletinError):
                await bulletins.approve(session, draft, editor, LATER)
            await bulletins.approve(
                session, draft, await session.get_one(Official, approver_id), LATER
            )
            assert (draft.approved_by_id, draft.author_id) == (approver_id, editor_id)
        assert await _areas(database, bulletin_id) == ["p31"]
        assert source_id
