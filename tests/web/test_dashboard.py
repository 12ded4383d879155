"""The officials' dashboard end to end over HTTP: write, approve, schedule, follow, answer."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select, update

from broadcasts import inbox
from db.models import (
    Area,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    DeliveryState,
    InboxKind,
    InboxMessage,
    InboxStatus,
    Platform,
    Schedule,
    ScheduleKind,
)
from tests.broadcasts.engine import add_people, approved_bulletin, start_run
from tests.broadcasts.population import build_population
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials

BODY = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ."


def _bulletin_id(location: str) -> int:
    found = re.search(r"/bulletins/(\d+)", location)
    assert found, location
    return int(found.group(1))


async def test_write_approve_schedule_follow(seeded: Database) -> None:
    await make_officials(seeded)
    await add_people(seeded, Platform.telegram, [f"tg{i}" for i in range(6)])
    app = make_app(seeded)
    async with Client(app) as editor, Client(app) as approver:
        assert (await editor.login("editor")).status_code == 303

        form = await editor.get("/dashboard/bulletins/new")
        assert form.status_code == 200
        assert "Soạn bản tin" in form.text
        created = await editor.post(
            "/dashboard/bulletins",
            {"title": "Thông báo gió mạnh", "body": BODY, "topic": "thoi-tiet",
             "priority": "urgent", "areas": "11914", "action": "draft"},
        )  # fmt: skip
        assert created.status_code == 303, created.text
        bulletin_id = _bulletin_id(created.headers["location"])
        detail = await editor.get(f"/dashboard/bulletins/{bulletin_id}")
        assert "Bản nháp" in detail.text
        assert 'id="preview-count"><strong>6</strong>' in detail.text  # six recipients
        assert "🚨 Thông báo gió mạnh" in detail.text  # the text as it appears in chat

        submitted = await editor.post(f"/dashboard/bulletins/{bulletin_id}/submit")
        assert submitted.status_code == 303
        # The author cannot approve their own bulletin (four-eyes).
        own = await editor.post(f"/dashboard/bulletins/{bulletin_id}/approve")
        assert own.status_code == 400
        assert "hai người" in own.text

        assert (await approver.login("approver")).status_code == 303
        listed = await approver.get("/dashboard/bulletins?state=pending_approval")
        assert f'data-bulletin-id="{bulletin_id}"' in listed.text
        await approver.get(f"/dashboard/bulletins/{bulletin_id}")
        approved = await approver.post(f"/dashboard/bulletins/{bulletin_id}/approve")
        assert approved.status_code == 303
        scheduled = await approver.post(
            f"/dashboard/bulletins/{bulletin_id}/schedule", {"mode": "now"}
        )
        assert scheduled.status_code == 303
        assert scheduled.headers["location"].endswith("ok=scheduled")

    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        assert bulletin.state is BulletinState.scheduled
        rows = (
            await session.scalars(select(Schedule).where(Schedule.bulletin_id == bulletin_id))
        ).all()
        assert len(rows) == 1 and rows[0].kind is ScheduleKind.once and rows[0].active

    # Deliveries as the scheduler and sender would leave them: 4 sent, 1 failed, 1 pending.
    run_id = await start_run(seeded, bulletin_id)
    async with seeded.sessions.begin() as session:
        ids = (
            await session.scalars(
                select(Delivery.id).where(Delivery.run_id == run_id).order_by(Delivery.id)
            )
        ).all()
        sent_at = dt.datetime.now(dt.UTC)
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:4]))
            .values(state=DeliveryState.sent, sent_at=sent_at)
        )
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids[4])
            .values(state=DeliveryState.failed, reason="chat_not_found")
        )

    async with Client(app) as editor:
        await editor.login("editor")
        progress = (await editor.get(f"/dashboard/bulletins/{bulletin_id}/progress.json")).json()
        assert progress["total"] == 6
        assert progress["counts"]["sent"] == 4
        assert progress["counts"]["failed"] == 1
        assert progress["counts"]["pending"] == 1
        assert progress["failure_reasons"] == {"chat_not_found": 1}
        assert progress["ack_rate"] == 0.0  # urgent: the rate is shown, nobody tapped yet
        assert progress["finished"] is False

        page = await editor.get(f"/dashboard/bulletins/{bulletin_id}/progress")
        assert page.status_code == 200
        assert 'id="count-sent" data-state="sent">4<' in page.text
        assert 'data-area-code="11914"' in page.text
        chart = await editor.get(f"/dashboard/bulletins/{bulletin_id}/chart.svg")
        assert chart.headers["content-type"].startswith("image/svg+xml")
        assert chart.text.count('class="bar"') == 1  # all four sent in the same minute
        csv = await editor.get(f"/dashboard/bulletins/{bulletin_id}/communes.csv")
        assert csv.text.startswith("\ufeffmã,xã/phường")
        assert "11914" in csv.text


async def test_inbox_reply_is_stored_and_handed_to_the_sender(seeded: Database) -> None:
    await make_officials(seeded)
    await add_people(seeded, Platform.zalo, ["z1"])
    async with seeded.sessions.begin() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "z1"))
        area = await session.scalar(select(Area).where(Area.code == "11914"))
        assert address is not None and area is not None
        message = await inbox.save(
            session, now=dt.datetime.now(dt.UTC), subscriber_id=address.subscriber_id,
            chat_address_id=address.id, area_id=area.id, kind=InboxKind.text,
            text="Tàu lạ neo gần đảo, xin báo đồn biên phòng",
        )  # fmt: skip
        message_id = message.id
    handed: list[int] = []

    async def send_reply(inbox_message_id: int) -> bool:
        handed.append(inbox_message_id)
        return True

    async with Client(make_app(seeded, send_reply=send_reply)) as official:
        await official.login("xa-cathai")
        page = await official.get("/dashboard/inbox")
        assert f'id="message-{message_id}"' in page.text
        assert "Khẩn" in page.text  # "tàu lạ" makes it urgent
        read = await official.post(f"/dashboard/inbox/{message_id}/read")
        assert read.status_code == 303
        replied = await official.post(
            f"/dashboard/inbox/{message_id}/reply", {"reply": "Đã báo Đồn Biên phòng Cát Hải."}
        )
        assert replied.status_code == 303
        assert replied.headers["location"].endswith("ok=replied")
    assert handed == [message_id]
    async with seeded.sessions() as session:
        stored = await session.get_one(InboxMessage, message_id)
        assert stored.status is InboxStatus.answered
        assert stored.reply_text == "Đã báo Đồn Biên phòng Cát Hải."
        assert stored.replied_at is not None
        assert stored.replied_by_id is not None


async def test_pages_render_for_each_area(seeded: Database) -> None:
    await make_officials(seeded)
    await add_people(seeded, Platform.telegram, ["a", "b"])
    async with Client(make_app(seeded)) as admin:
        await admin.login("root")
        for path, marker in (
            ("/dashboard/bulletins", "Bản tin"),
            ("/dashboard/subscribers", 'id="subscriber-total"><strong>2</strong>'),
            ("/dashboard/inbox", "Hộp thư"),
            ("/dashboard/audit", "Đăng nhập"),
            ("/dashboard/admin/officials", "xa-cathai"),
            ("/dashboard/admin/bots", "Telegram"),
            ("/dashboard/admin/topics", "thoi-tiet"),
        ):
            response = await admin.get(path)
            assert response.status_code == 200, path
            assert marker in response.text, path
            assert "default-src 'self'" in response.headers["content-security-policy"]
        found = (await admin.get("/dashboard/api/areas", params={"q": "cat hai"})).json()
        assert any(item["code"] == "11914" for item in found["results"])
        runs = (await admin.get("/dashboard/api/cron", params={"expr": "0 6 * * 1"})).json()
        assert runs["error"] is None and len(runs["runs"]) == 5
        assert all(text.startswith("Thứ Hai") and text.endswith("06:00") for text in runs["runs"])
        bad = (await admin.get("/dashboard/api/cron", params={"expr": "nonsense"})).json()
        assert bad["error"] and bad["runs"] == []


async def test_admin_changes_bots_topics_and_accounts(seeded: Database) -> None:
    ids = await make_officials(seeded)
    bot_id = await add_people(seeded, Platform.telegram, ["a"])
    async with Client(make_app(seeded)) as admin:
        await admin.login("root")
        await admin.get("/dashboard/admin/bots")
        saved = await admin.post(
            f"/dashboard/admin/bots/{bot_id}",
            {"rate_per_second": "25", "paid_broadcast": "1", "quiet_start": "22:00",
             "quiet_end": "05:30", "enabled": "1"},
        )  # fmt: skip
        assert saved.status_code == 303
        created = await admin.post(
            "/dashboard/admin/officials",
            {"username": "duyet-hp", "display_name": "Người duyệt", "role": "approver",
             "area": "p31", "password": "mat-khau-dai-1"},
        )  # fmt: skip
        assert created.status_code == 303
        refused = await admin.post(
            "/dashboard/admin/officials",
            {"username": "x", "role": "approver", "area": "p31", "password": "short"},
        )
        assert refused.status_code == 400
        assert "Tên đăng nhập" in refused.text
        off = await admin.post(
            f"/dashboard/admin/officials/{ids['xa-khac']}/active", {"active": "0"}
        )
        assert off.status_code == 303
    async with Client(make_app(seeded)) as gone:
        assert (await gone.login("xa-khac")).status_code == 401
    async with Client(make_app(seeded)) as fresh:
        assert (await fresh.login("duyet-hp", "mat-khau-dai-1")).status_code == 303


async def test_subscriber_page_counts_within_scope_with_growth(seeded: Database) -> None:
    await make_officials(seeded)
    await build_population(seeded)
    app = make_app(seeded)
    async with Client(app) as admin, Client(app) as commune:
        await admin.login("root")
        page = (await admin.get("/dashboard/subscribers")).text
        assert 'id="subscriber-total"><strong>5</strong>' in page
        assert 'id="counted-at">Số liệu lúc' in page
        # Growth by local month: B's consent (31/10 18:30 UTC) falls in November.
        november = re.search(r'data-month="2026-11">(.*?)</tr>', page)
        assert november is not None
        assert 'data-col="joined">2<' in november.group(1)
        assert 'data-col="left">1<' in november.group(1)
        assert 'data-col="receiving">5<' in november.group(1)

        await commune.login("xa-cathai")
        page = (await commune.get("/dashboard/subscribers")).text
        assert 'id="subscriber-total"><strong>3</strong>' in page  # A, B (village), F
        assert "Thôn Thử" in page and "p31" in page
        receiving = re.findall(r'data-col="receiving">(\d+)<', page)
        assert receiving == ["2", "3", "3"]  # September, October, November in Cát Hải
        # Admin figures come from their own cache entry, not the commune's.
        again = (await admin.get("/dashboard/subscribers")).text
        assert 'id="subscriber-total"><strong>5</strong>' in again


async def test_preview_shows_each_translation_as_sent_in_chat(seeded: Database) -> None:
    await make_officials(seeded)
    english_body = "Strong wind, force 6. " * 120  # over Zalo's 2000 characters, under 4096
    bulletin_id = await approved_bulletin(
        seeded, translations={"en": ("Strong wind warning", english_body.strip())}
    )
    async with Client(make_app(seeded)) as editor:
        await editor.login("editor")
        page = (await editor.get(f"/dashboard/bulletins/{bulletin_id}")).text
    english = page.split('id="chat-preview-en"')[1].split("</div>\n")[0]
    assert "Tiếng Anh" in page.split('id="chat-preview-en"')[0].rsplit("<h3", 1)[1]
    assert "📢 Strong wind warning" in english and "Strong wind, force 6." in english
    sent = f"📢 Strong wind warning\n\n{english_body.strip()}"
    counts = page.split('class="muted chat-counts" data-language="en">')[1].split("</p>")[0]
    assert f"{len(sent):,} ký tự".replace(",", ".") in counts
    assert "Telegram: 1 tin" in counts and "Zalo: 2 tin" in counts
    assert 'id="chat-preview"' in page and "Tiếng Việt" in page
