"""CAP 1.2 alerts of approved warnings: schema-valid, read back by capparser, following the
bulletin's lifecycle (Alert on approval, Cancel referencing it on cancellation)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from broadcasts import areas, bulletins, cap, officials, schedules
from db.models import Area, AreaKind, AuditEntry, Official, OfficialRole, Schedule
from tests.broadcasts.engine import NOW, officials_pair
from tests.cap import SENDER, TZ, approved, cancel, checked, infos
from tests.cap import areas as areas_of
from tests.conftest import Database

CAT_HAI = ("Đặc khu Cát Hải, Thành phố Hải Phòng", "VN-XA", "11914")


async def load(database: Database, bulletin_id: int) -> cap.AlertSource | None:
    async with database.sessions() as session:
        return await cap.load(session, bulletin_id)


async def message(database: Database, bulletin_id: int, msg_type: cap.MsgType) -> bytes:
    warning = await load(database, bulletin_id)
    assert warning is not None
    return cap.to_xml(warning, msg_type, sender=SENDER, tz=TZ)


async def test_an_urgent_bulletin_is_an_alert_in_vietnamese_and_each_translation(
    seeded: Database,
) -> None:
    bulletin_id = await approved(
        seeded, urgent=True, topic="dia-phuong",
        translations={"en": ("Tropical depression", "Strong winds, level 7."),
                      "km": ("សម្ពាធទាប", "ខ្យល់បក់ខ្លាំង")},
    )  # fmt: skip
    body = await message(seeded, bulletin_id, cap.MsgType.alert)
    alert = checked(body)
    assert alert.identifier[0] == f"{SENDER}:bulletin:{bulletin_id}:alert"
    assert alert.sender[0] == SENDER
    assert alert.sent[0] == "2026-11-25T10:00:00+07:00"  # approved_at, local time
    assert (alert.status[0], alert.msgType[0], alert.scope[0]) == ("Actual", "Alert", "Public")
    assert alert.references[0] is None
    vi, en, km = infos(alert)
    assert [vi.language[0], en.language[0], km.language[0]] == ["vi", "en", "km"]
    assert vi.headline[0] == "Áp thấp nhiệt đới trên Biển Đông"
    assert vi.description[0] == "Gió mạnh cấp 7, giật cấp 9. Tàu thuyền không ra khơi."
    assert (vi.event[0], en.event[0]) == ("Cảnh báo khẩn", "Urgent warning")
    assert km.event[0] == "សម្ពាធទាប"  # no Khmer event text: the translated title
    assert (en.headline[0], en.description[0]) == ("Tropical depression", "Strong winds, level 7.")
    for info in (vi, en, km):
        assert info.category[0] == "Safety"
        assert (info.urgency[0], info.severity[0], info.certainty[0]) == (
            "Immediate", "Severe", "Likely",
        )  # fmt: skip
        assert info.expires[0] is None
        assert areas_of(info) == [CAT_HAI]
    # Derived from the rows alone: the same message every time.
    assert await message(seeded, bulletin_id, cap.MsgType.alert) == body
    warning = await load(seeded, bulletin_id)
    assert warning is not None and warning.messages() == [cap.MsgType.alert]
    with pytest.raises(ValueError, match="no CAP Cancel"):
        cap.to_xml(warning, cap.MsgType.cancel, sender=SENDER, tz=TZ)


async def test_a_routine_weather_bulletin_is_an_alert_other_routine_ones_are_not(
    seeded: Database,
) -> None:
    weather = await approved(seeded, topic="thoi-tiet")
    alert = checked(await message(seeded, weather, cap.MsgType.alert))
    (vi,) = infos(alert)
    assert (vi.category[0], vi.event[0]) == ("Met", "Thời tiết, thiên tai")
    assert (vi.urgency[0], vi.severity[0], vi.certainty[0]) == ("Expected", "Moderate", "Likely")

    local = await approved(seeded, topic="dia-phuong")
    untopical = await approved(seeded)
    unapproved = await approved(seeded, topic="thoi-tiet", urgent=True, approve=False)
    for bulletin_id in (local, untopical, unapproved):
        assert await load(seeded, bulletin_id) is None
    async with seeded.sessions() as session:
        bulletin = await bulletins.get(session, unapproved)
        assert cap.is_warning(bulletin, "thoi-tiet")
        assert not cap.has_alert(bulletin, "thoi-tiet")


async def test_a_cancelled_warning_publishes_a_cancel_referencing_the_alert(
    seeded: Database,
) -> None:
    bulletin_id = await approved(seeded, urgent=True, translations={"en": ("Storm", "Go home.")})
    first = await message(seeded, bulletin_id, cap.MsgType.alert)
    await cancel(seeded, bulletin_id, NOW + dt.timedelta(minutes=45, microseconds=250))

    warning = await load(seeded, bulletin_id)
    assert warning is not None
    assert warning.messages() == [cap.MsgType.alert, cap.MsgType.cancel]
    assert warning.current is cap.MsgType.cancel
    # The Alert is still published as it was.
    assert await message(seeded, bulletin_id, cap.MsgType.alert) == first
    original = checked(first)
    cancelled = checked(await message(seeded, bulletin_id, cap.MsgType.cancel))
    assert cancelled.msgType[0] == "Cancel"
    assert cancelled.identifier[0] == f"{SENDER}:bulletin:{bulletin_id}:cancel"
    assert cancelled.sent[0] == "2026-11-25T10:45:00+07:00"  # cancelled_at, whole seconds
    assert cancelled.references[0] == ",".join(
        (original.sender[0], original.identifier[0], original.sent[0])
    )
    assert cancelled.note[0] == cap.CANCEL_NOTE
    # The same info blocks, so a consumer can still tell where the warning was.
    assert [i.language[0] for i in infos(cancelled)] == ["vi", "en"]
    assert all(areas_of(i) == [CAT_HAI] for i in infos(cancelled))

    # Cancelled before anyone approved it: never published, so nothing to cancel.
    draft = await approved(seeded, urgent=True, approve=False)
    await cancel(seeded, draft, NOW + dt.timedelta(minutes=5))
    assert await load(seeded, draft) is None


async def test_the_expiry_is_the_alerts_expires_and_ends_its_place_in_the_feeds(
    seeded: Database,
) -> None:
    expires = NOW + dt.timedelta(hours=6, seconds=30)
    bulletin_id = await approved(seeded, urgent=True, expires_at=expires)
    (vi,) = infos(checked(await message(seeded, bulletin_id, cap.MsgType.alert)))
    assert vi.expires[0] == "2026-11-25T16:00:30+07:00"
    async with seeded.sessions() as session:
        before = await cap.recent(session, now=expires - dt.timedelta(seconds=1))
        after = await cap.recent(session, now=expires)
        # Passing its expiry is no new message: the Alert stays the current one.
        await bulletins.expire_due(session, expires)
        warning = await cap.load(session, bulletin_id)
    assert [w.bulletin.id for w in before] == [bulletin_id]
    assert after == []
    assert warning is not None and warning.messages() == [cap.MsgType.alert]


async def test_areas_are_communes_and_provinces_with_their_official_codes(
    seeded: Database,
) -> None:
    async with seeded.sessions.begin() as session:
        village = await areas.add_subarea(session, "11914", "Thôn Bến Bèo", AreaKind.village)
        port = await areas.add_subarea(session, "11914", "Bến cá Cát Bà", AreaKind.port)
    bulletin_id = await approved(
        seeded, topic="thoi-tiet", areas=("p31", village.code, port.code, "11311")
    )
    (vi,) = infos(checked(await message(seeded, bulletin_id, cap.MsgType.alert)))
    # By code: the communes (a village or port is published as its commune, once), then
    # the province as one area (not its communes one by one).
    assert areas_of(vi) == [
        ("Phường Hồng Bàng, Thành phố Hải Phòng", "VN-XA", "11311"),
        CAT_HAI,
        ("Thành phố Hải Phòng", "VN-TINH", "31"),
    ]


async def test_recent_warnings_by_province(seeded: Database) -> None:
    async with seeded.sessions() as session:
        hai_phong = await areas.get_by_code(session, "p31")
        ha_noi = await areas.get_by_code(session, "p01")
        ha_noi_commune = await session.scalar(
            select(Area).where(Area.province_id == ha_noi.id, Area.kind == AreaKind.commune)
        )
    assert ha_noi_commune is not None
    commune = await approved(seeded, urgent=True, at=NOW)
    province = await approved(seeded, topic="thoi-tiet", areas=("p31",), at=NOW + dt.timedelta(1))
    routine = await approved(seeded, areas=("p31",), at=NOW + dt.timedelta(2))
    cancelled = await approved(seeded, urgent=True, at=NOW - dt.timedelta(days=3))
    await cancel(seeded, cancelled, NOW + dt.timedelta(days=3))
    old = await approved(seeded, urgent=True, at=NOW - dt.timedelta(days=40))
    elsewhere = await _ha_noi_warning(seeded, ha_noi_commune.code)
    now = NOW + dt.timedelta(days=4)
    async with seeded.sessions() as session:
        national = [w.bulletin.id for w in await cap.recent(session, now=now)]
        in_hai_phong = [
            w.bulletin.id for w in await cap.recent(session, now=now, province=hai_phong)
        ]
        in_ha_noi = [w.bulletin.id for w in await cap.recent(session, now=now, province=ha_noi)]
    # Newest message first (a Cancel counts from its cancellation); routine and 40-day-old
    # warnings are not listed.
    assert national == [cancelled, elsewhere, province, commune]
    assert in_hai_phong == [cancelled, province, commune]
    assert in_ha_noi == [elsewhere]
    assert routine not in national and old not in national


async def _ha_noi_warning(database: Database, commune_code: str) -> int:
    """An urgent bulletin for a commune of Hà Nội, by Hà Nội's own officials."""
    async with database.sessions.begin() as session:
        writer = await officials.create(
            session, username="hanoi", role=OfficialRole.province_editor,
            password="z" * 12, area_code="p01",
        )  # fmt: skip
        checker = await officials.create(
            session, username="hanoi-approver", role=OfficialRole.approver,
            password="w" * 12, area_code="p01",
        )  # fmt: skip
        at = NOW + dt.timedelta(days=2, hours=1)
        bulletin = await bulletins.create(
            session, author=writer, title="Mưa lớn", body="Mưa lớn diện rộng.",
            area_codes=[commune_code], now=at, urgent=True, submit=True,
        )  # fmt: skip
        await bulletins.approve(session, bulletin, checker, at)
        return bulletin.id


def _named(alert: object) -> str:
    """A parsed message as <references> names it: "sender,identifier,sent"."""
    return ",".join((alert.sender[0], alert.identifier[0], alert.sent[0]))  # type: ignore[attr-defined]


async def test_updates_publish_an_update_referencing_the_line_and_replace_it_in_the_feeds(
    seeded: Database,
) -> None:
    storm = await approved(seeded, urgent=True, title="Bão số 3 cách Cát Hải 300 km")
    later = NOW + dt.timedelta(hours=3)
    first_update = await approved(
        seeded, urgent=True, title="Bão số 3 cách Cát Hải 150 km", supersedes=storm, at=later
    )
    latest = NOW + dt.timedelta(hours=6)
    second_update = await approved(
        seeded, topic="thoi-tiet", urgent=True, title="Bão số 3 đã đổ bộ",
        supersedes=first_update, at=latest, translations={"en": ("Landfall", "Stay inside.")},
    )  # fmt: skip

    original = checked(await message(seeded, storm, cap.MsgType.alert))
    one = checked(await message(seeded, first_update, cap.MsgType.update))
    two = checked(await message(seeded, second_update, cap.MsgType.update))
    assert (original.msgType[0], one.msgType[0], two.msgType[0]) == ("Alert", "Update", "Update")
    assert one.identifier[0] == f"{SENDER}:bulletin:{first_update}:update"
    assert one.sent[0] == "2026-11-25T13:00:00+07:00"  # its own approval
    # Each Update names every earlier message of its line, oldest first.
    assert one.references[0] == _named(original)
    assert two.references[0] == f"{_named(original)} {_named(one)}"
    assert [i.language[0] for i in infos(two)] == ["vi", "en"]
    warning = await load(seeded, second_update)
    assert warning is not None and warning.messages() == [cap.MsgType.update]
    with pytest.raises(ValueError, match="no CAP Alert"):
        await message(seeded, second_update, cap.MsgType.alert)

    # Only the line's newest message stands in the feeds.
    async with seeded.sessions() as session:
        feed = [w.bulletin.id for w in await cap.recent(session, now=latest)]
    assert feed == [second_update]

    # Cancelling the latest update: a Cancel naming the whole line and the Update itself.
    await cancel(seeded, second_update, latest + dt.timedelta(minutes=30))
    cancelled = checked(await message(seeded, second_update, cap.MsgType.cancel))
    assert cancelled.msgType[0] == "Cancel"
    assert cancelled.references[0] == f"{_named(original)} {_named(one)} {_named(two)}"
    # The Update stays published as it was.
    assert checked(await message(seeded, second_update, cap.MsgType.update)).sent == two.sent


async def test_an_update_follows_the_latest_message_of_a_live_warning(seeded: Database) -> None:
    storm = await approved(seeded, urgent=True)
    routine = await approved(seeded)
    unapproved = await approved(seeded, urgent=True, approve=False)
    refused = {
        "is not an approved warning": [dict(supersedes=routine), dict(supersedes=unapproved)],
        "must be urgent or of the weather topic": [dict(supersedes=storm, urgent=False)],
    }
    for message_part, attempts in refused.items():
        for kwargs in attempts:
            with pytest.raises(bulletins.BulletinError, match=message_part):
                await approved(seeded, **{"urgent": True, **kwargs})  # type: ignore[arg-type]

    # Two drafts may update the same warning; the first approved wins, the second must
    # then update it instead (one line, as CAP's references are).
    first = await approved(seeded, urgent=True, supersedes=storm, approve=False)
    second = await approved(seeded, urgent=True, supersedes=storm, approve=False)
    _, approver_id = await officials_pair(seeded)
    async with seeded.sessions.begin() as session:
        approver = await session.get_one(Official, approver_id)
        await bulletins.approve(session, await bulletins.get(session, first), approver, NOW)
    with pytest.raises(bulletins.BulletinError, match=f"already has an update \\(#{first}\\)"):
        async with seeded.sessions.begin() as session:
            approver = await session.get_one(Official, approver_id)
            await bulletins.approve(session, await bulletins.get(session, second), approver, NOW)

    # An ended warning gets a new warning, not an update.
    await cancel(seeded, first, NOW + dt.timedelta(minutes=1))
    with pytest.raises(bulletins.BulletinError, match="has ended"):
        await approved(seeded, urgent=True, supersedes=first)


async def test_approving_an_update_stops_the_earlier_warnings_repeats(seeded: Database) -> None:
    storm = await approved(seeded, urgent=True)
    _, approver_id = await officials_pair(seeded)
    async with seeded.sessions.begin() as session:
        approver = await session.get_one(Official, approver_id)
        repeat = await schedules.schedule(
            session, await bulletins.get(session, storm), approver, now=NOW, tz=TZ,
            cron="0 */3 * * *",
        )  # fmt: skip
    update = await approved(seeded, urgent=True, supersedes=storm, at=NOW + dt.timedelta(hours=1))
    async with seeded.sessions() as session:
        assert (await session.get_one(Schedule, repeat.id)).active is False
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "bulletin.approve", AuditEntry.object_id == str(update)
            )
        )
    assert entry is not None
    assert entry.details == {"supersedes": storm, "schedules_stopped": 1}
