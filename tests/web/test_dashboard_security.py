"""Dashboard security: scope on the server, CSRF, audit trail, signed sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from broadcasts import inbox
from db.models import (
    Area,
    AuditEntry,
    Bulletin,
    BulletinArea,
    BulletinState,
    ChatAddress,
    InboxKind,
    Official,
    Platform,
    Schedule,
)
from tests.broadcasts.engine import add_people
from tests.conftest import Database
from tests.web.dashboard_helpers import SECRET, Client, make_officials, settings
from web.dashboard import make_router
from web.dashboard.auth import COOKIE_NAME


def _app(
    database: Database, clock: Callable[[], dt.datetime] | None = None, **kw: object
) -> FastAPI:
    app = FastAPI()
    extra = {"clock": clock} if clock else {}
    app.include_router(make_router(database.sessions, settings(**kw), **extra))  # type: ignore[arg-type]
    return app


async def _counts(database: Database) -> tuple[int, int, int]:
    async with database.sessions() as session:
        bulletins = await session.scalar(select(func.count()).select_from(Bulletin))
        areas = await session.scalar(select(func.count()).select_from(BulletinArea))
        schedules = await session.scalar(select(func.count()).select_from(Schedule))
        return int(bulletins or 0), int(areas or 0), int(schedules or 0)


async def _create(client: Client, areas: str = "p31", action: str = "submit") -> int:
    response = await client.post(
        "/dashboard/bulletins",
        {"title": "Tuyên truyền Luật Thủy sản", "body": "Nội dung phổ biến pháp luật.",
         "areas": areas, "action": action},
    )  # fmt: skip
    assert response.status_code == 303, response.text
    return int(response.headers["location"].split("/bulletins/")[1].split("?")[0])


async def test_commune_editor_cannot_act_outside_their_commune(seeded: Database) -> None:
    await make_officials(seeded)
    app = _app(seeded)
    async with Client(app) as editor:
        await editor.login("editor")
        province_wide = await _create(editor, "p31")
    before = await _counts(seeded)
    async with Client(app) as commune:
        await commune.login("xa-cathai")
        # A crafted form: the editor form only offers their commune, the POST names another.
        crafted = await commune.post(
            "/dashboard/bulletins",
            {"title": "Giả mạo", "body": "Không được gửi", "areas": "11311", "action": "submit"},
        )
        assert crafted.status_code == 403
        assert "phạm vi" in crafted.text
        # Also by typed codes, and mixed with their own commune.
        mixed = await commune.post(
            "/dashboard/bulletins",
            {"title": "Giả mạo", "body": "x", "areas": "11914", "area_codes": "p31"},
        )
        assert mixed.status_code == 403
        # The province-wide bulletin reaches their commune, so they may read it ...
        assert (await commune.get(f"/dashboard/bulletins/{province_wide}")).status_code == 200
        # ... but not approve, schedule or cancel it.
        for action in ("approve", "cancel"):
            response = await commune.post(f"/dashboard/bulletins/{province_wide}/{action}")
            assert response.status_code in (400, 403), action
        cancel = await commune.post(f"/dashboard/bulletins/{province_wide}/cancel")
        assert cancel.status_code == 403
    async with Client(app) as other:
        await other.login("xa-khac")
        own = await _create(other, "11311", action="draft")
    async with Client(app) as commune:
        await commune.login("xa-cathai")
        # Another commune's draft does not exist for them.
        assert (await commune.get(f"/dashboard/bulletins/{own}")).status_code == 404
        assert (await commune.post(f"/dashboard/bulletins/{own}/submit")).status_code == 404
    assert await _counts(seeded) == (before[0] + 1, before[1] + 1, before[2])
    async with seeded.sessions() as session:
        assert (await session.get_one(Bulletin, province_wide)).state is (
            BulletinState.pending_approval
        )
        assert (await session.get_one(Bulletin, own)).state is BulletinState.draft


async def test_forms_without_the_csrf_token_are_refused(seeded: Database) -> None:
    await make_officials(seeded)
    app = _app(seeded)
    async with Client(app) as editor, Client(app) as approver:
        await editor.login("editor")
        bulletin_id = await _create(editor)
        before = await _counts(seeded)
        missing = await editor.post(
            "/dashboard/bulletins", {"title": "t", "body": "b", "areas": "p31"}, csrf=False
        )
        assert missing.status_code == 403
        wrong = await editor.post(
            "/dashboard/bulletins",
            {"title": "t", "body": "b", "areas": "p31", "csrf_token": "x" * 43},
        )
        assert wrong.status_code == 403
        await approver.login("approver")
        # A valid token of another session is still wrong for this one.
        stolen = await approver.post(
            f"/dashboard/bulletins/{bulletin_id}/approve", {"csrf_token": editor.csrf}
        )
        assert stolen.status_code == 403
        no_token = await approver.post(f"/dashboard/bulletins/{bulletin_id}/approve", csrf=False)
        assert no_token.status_code == 403
        logout = await editor.post("/dashboard/logout", csrf=False)
        assert logout.status_code == 403
        assert await _counts(seeded) == before
    async with seeded.sessions() as session:
        assert (await session.get_one(Bulletin, bulletin_id)).state is (
            BulletinState.pending_approval
        )


async def test_every_official_action_leaves_an_audit_row(seeded: Database) -> None:
    ids = await make_officials(seeded)
    bot_id = await add_people(seeded, Platform.zalo, ["z1"])
    async with seeded.sessions.begin() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "z1"))
        area = await session.scalar(select(Area).where(Area.code == "11914"))
        assert address is not None and area is not None
        message = await inbox.save(
            session, now=dt.datetime.now(dt.UTC), subscriber_id=address.subscriber_id,
            chat_address_id=address.id, area_id=area.id, kind=InboxKind.text, text="Xin hỏi",
        )  # fmt: skip
        message_id = message.id
    app = _app(seeded)
    async with Client(app) as editor, Client(app) as approver, Client(app) as admin:
        await editor.login("editor")
        first = await _create(editor, action="draft")
        await editor.post(f"/dashboard/bulletins/{first}/submit")
        second = await _create(editor)
        await approver.login("approver")
        assert (await approver.post(f"/dashboard/bulletins/{first}/approve")).status_code == 303
        await approver.post(f"/dashboard/bulletins/{first}/schedule", {"mode": "now"})
        await approver.post(f"/dashboard/bulletins/{first}/cancel")
        await approver.post(f"/dashboard/bulletins/{second}/reject", {"comment": "Sửa tiêu đề"})
        await editor.post(f"/dashboard/inbox/{message_id}/read")
        await editor.post(f"/dashboard/inbox/{message_id}/reply", {"reply": "Cảm ơn bà con"})
        await admin.login("root")
        await admin.post(
            f"/dashboard/admin/bots/{bot_id}",
            {"rate_per_second": "10", "quiet_start": "21:00", "quiet_end": "06:00", "enabled": "1"},
        )
        await admin.post("/dashboard/admin/topics/1", {"name": "Pháp luật", "active": "1"})
        await admin.post(f"/dashboard/admin/officials/{ids['xa-khac']}/active", {"active": "0"})
        await admin.post(
            "/dashboard/admin/officials",
            {"username": "moi", "role": "commune_editor", "area": "11914",
             "password": "mot-mat-khau"},
        )  # fmt: skip
        assert (await editor.post("/dashboard/logout")).status_code == 303
    async with seeded.sessions() as session:
        rows = (
            await session.execute(select(AuditEntry.official_id, AuditEntry.action, AuditEntry.via))
        ).all()
    done = {(official_id, action) for official_id, action, _ in rows}
    assert {via for _, _, via in rows} == {"web"}
    expected = {
        (ids["editor"], "official.login"),
        (ids["editor"], "bulletin.create"),
        (ids["editor"], "bulletin.submit"),
        (ids["approver"], "official.login"),
        (ids["approver"], "bulletin.approve"),
        (ids["approver"], "bulletin.schedule"),
        (ids["approver"], "bulletin.cancel"),
        (ids["approver"], "bulletin.reject"),
        (ids["editor"], "inbox.read"),
        (ids["editor"], "inbox.reply"),
        (ids["root"], "bot.update"),
        (ids["root"], "topic.update"),
        (ids["root"], "official.deactivate"),
        (ids["root"], "official.create"),
        (ids["editor"], "official.logout"),
    }
    assert expected <= done, expected - done
    # Nothing secret in the trail: no password or reply text was copied into details.
    async with seeded.sessions() as session:
        details: list[dict[str, Any]] = list(
            (await session.scalars(select(AuditEntry.details))).all()
        )
    flat = repr(details)
    assert "mot-mat-khau" not in flat and "Cảm ơn bà con" not in flat and "x" * 12 not in flat

    # The audit page: an admin sees everyone's actions, an editor only their own.
    async with Client(app) as admin, Client(app) as editor:
        await admin.login("root")
        everything = await admin.get("/dashboard/audit")
        assert 'data-action="bulletin.approve"' in everything.text
        assert 'data-action="bot.update"' in everything.text
        await editor.login("editor")
        own = await editor.get("/dashboard/audit")
        assert 'data-action="bulletin.create"' in own.text
        assert 'data-action="bulletin.approve"' not in own.text


async def test_session_cookie_tampering_is_rejected(seeded: Database) -> None:
    ids = await make_officials(seeded)
    app = _app(seeded, public_base_url="https://haidang.example.vn")
    # Secure cookies only travel over https, as a browser would do.
    async with Client(app, base_url="https://test") as editor:
        response = await editor.login("editor")
        set_cookie = response.headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
        assert "Secure" in set_cookie and "Path=/dashboard" in set_cookie
        good = editor.http.cookies[COOKIE_NAME]
        assert (await editor.get("/dashboard/bulletins")).status_code == 200

        # Flip one character of the payload: the signature no longer matches.
        payload, rest = good.split(".", 1)
        flipped = ("A" if payload[1] != "A" else "B").join((payload[:1], payload[2:]))
        for forged in (
            f"{flipped}.{rest}",
            good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
            # A well-formed cookie for the admin, signed with another key.
            URLSafeTimedSerializer("not-our-secret", salt="haidang.dashboard.session").dumps(
                {"c": "c" * 43, "o": ids["root"], "f": "0" * 32}
            ),
            # Our key, but a made-up fingerprint: guessing the admin's session still fails.
            URLSafeTimedSerializer(SECRET, salt="wrong-salt").dumps(
                {"c": "c" * 43, "o": ids["root"], "f": "0" * 32}
            ),
            "",
        ):
            editor.http.cookies.clear()
            editor.http.cookies.set(COOKIE_NAME, forged)
            page = await editor.get("/dashboard/bulletins")
            assert page.status_code == 303, forged
            assert page.headers["location"].startswith("/dashboard/login")
            assert (await editor.get("/dashboard/audit")).status_code == 303
            assert (await editor.get("/dashboard/bulletins/1/progress.json")).status_code == 401

        # The genuine cookie still works, until the account is deactivated.
        editor.http.cookies.clear()
        editor.http.cookies.set(COOKIE_NAME, good)
        assert (await editor.get("/dashboard/bulletins")).status_code == 200
        async with seeded.sessions.begin() as session:
            (await session.get_one(Official, ids["editor"])).active = False
        assert (await editor.get("/dashboard/bulletins")).status_code == 303


async def test_login_redirect_stays_on_the_dashboard_and_output_is_escaped(
    seeded: Database,
) -> None:
    await make_officials(seeded)
    async with Client(_app(seeded)) as editor:
        await editor.get("/dashboard/login")
        response = await editor.post(
            "/dashboard/login",
            {"username": "editor", "password": "x" * 12, "next": "//evil.example/phish"},
        )
        assert response.headers["location"] == "/dashboard/bulletins"
        await editor.get("/dashboard/bulletins")
        created = await editor.post(
            "/dashboard/bulletins",
            {"title": "<script>alert(1)</script>", "body": "<img src=x onerror=alert(1)>",
             "areas": "p31", "action": "draft"},
        )  # fmt: skip
        page = await editor.get(created.headers["location"])
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<img src=x" not in page.text
