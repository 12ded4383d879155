"""Bulletins and audiences: four-eyes, scopes, filters, idempotent fan-out, preview, expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, select, update

from broadcasts import audiences, bulletins, officials, runs
from db.models import (
    Area,
    AuditEntry,
    Bot,
    BroadcastRun,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    Official,
    OfficialRole,
    Platform,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
    Topic,
)
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, officials_pair, start_run
from tests.conftest import Database


async def _official(database: Database, username: str) -> Official:
    async with database.sessions() as session:
        official = await session.scalar(select(Official).where(Official.username == username))
        assert official is not None
        return official


async def test_four_eyes_and_scope_refusals(seeded: Database) -> None:
    await officials_pair(seeded)
    async with seeded.sessions.begin() as session:
        await officials.create(
            session, username="catba", role=OfficialRole.commune_editor,
            password="z" * 12, area_code="11914",
        )  # fmt: skip
        await officials.create(
            session, username="quangngai", role=OfficialRole.approver,
            password="q" * 12, area_code="p51",
        )  # fmt: skip
    editor = await _official(seeded, "editor")
    commune_editor = await _official(seeded, "catba")
    outsider = await _official(seeded, "quangngai")
    approver = await _official(seeded, "approver")
    async with seeded.sessions.begin() as session:
        # A commune editor writes only for their commune (and its villages).
        with pytest.raises(bulletins.ScopeError, match="may not write bulletins"):
            await bulletins.create(
                session, author=commune_editor, title="T", body="B",
                area_codes=["p31"], now=NOW,
            )  # fmt: skip
        bulletin = await bulletins.create(
            session, author=editor, title="Tin", body="Nội dung", area_codes=["11914"],
            now=NOW, submit=True,
        )  # fmt: skip
        with pytest.raises(bulletins.BulletinError, match="four-eyes"):
            await bulletins.approve(session, bulletin, editor, NOW)
        with pytest.raises(bulletins.ScopeError, match="may not approve"):
            await bulletins.approve(session, bulletin, outsider, NOW)
        await bulletins.approve(session, bulletin, approver, NOW)
        assert bulletin.state is BulletinState.approved
        with pytest.raises(bulletins.BulletinError, match="only a submitted"):
            await bulletins.approve(session, bulletin, approver, NOW)
        with pytest.raises(bulletins.ScopeError):
            await bulletins.cancel(session, bulletin, outsider, NOW)
        await bulletins.cancel(session, bulletin, commune_editor, NOW)  # within their commune
        assert bulletin.state.value == "cancelled"
    async with seeded.sessions() as session:
        actions = (await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))).all()
    # Every official action left an audit row; refused ones changed nothing.
    assert actions == ["bulletin.create", "bulletin.approve", "bulletin.cancel"]


async def test_audience_union_filters_and_one_delivery_per_address(seeded: Database) -> None:
    telegram = await add_people(seeded, Platform.telegram, ["t1", "t2", "t3"])
    await add_people(seeded, Platform.zalo, ["z1"])
    await add_people(seeded, Platform.telegram, ["lyson"], area_code="21548")  # Quảng Ngãi
    await add_people(seeded, Platform.telegram, ["guard"], role=SubscriberRole.border_guard)
    async with seeded.sessions.begin() as session:
        # t2 also follows a second commune of Hải Phòng: still one delivery.
        t2 = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "t2"))
        bach_long_vi = await session.scalar(select(Area).where(Area.code == "11948"))
        assert t2 is not None and bach_long_vi is not None
        session.add(Subscription(subscriber_id=t2.subscriber_id, area_id=bach_long_vi.id))
        # t3 stopped (/huy); its address stays but it must not be reached.
        t3 = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "t3"))
        assert t3 is not None
        await session.execute(
            update(Subscriber)
            .where(Subscriber.id == t3.subscriber_id)
            .values(status=SubscriberStatus.stopped)
        )
        # t1 dropped the weather topic.
        t1 = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == "t1"))
        weather = await session.scalar(select(Topic.id).where(Topic.slug == "thoi-tiet"))
        assert t1 is not None
        await session.execute(
            delete(SubscriberTopic).where(
                SubscriberTopic.subscriber_id == t1.subscriber_id,
                SubscriberTopic.topic_id == weather,
            )
        )
        await session.execute(update(Bot).where(Bot.id == telegram).values(rate_per_second=2.0))
    async with seeded.sessions.begin() as session:
        admin = await officials.create(
            session, username="root", role=OfficialRole.admin, password="r" * 12
        )

    async def reached(**audience: object) -> set[str]:
        async with seeded.sessions.begin() as session:
            author = await session.get_one(Official, admin.id)
            bulletin = await bulletins.create(
                session,
                author=author,
                title="T",
                body="B",
                now=NOW,
                **audience,  # type: ignore[arg-type]
            )
            rows = (await session.execute(audiences.recipients(bulletin))).all()
            chat_ids = (
                await session.scalars(
                    select(ChatAddress.chat_id).where(ChatAddress.id.in_([r[0] for r in rows]))
                )
            ).all()
            return {str(c) for c in chat_ids}  # an erased address would show as "None"

    everyone_hp = {"t1", "t2", "z1", "guard"}
    assert await reached(area_codes=["p31"]) == everyone_hp  # province covers its communes
    assert await reached(area_codes=["11948"]) == {"t2"}
    assert await reached(area_codes=["11948", "21548"]) == {"t2", "lyson"}  # a union
    assert await reached(area_codes=["p31"], roles=[SubscriberRole.border_guard]) == {"guard"}
    assert await reached(area_codes=["p31"], platforms=[Platform.zalo]) == {"z1"}
    assert await reached(area_codes=["p31"], topic_slug="thoi-tiet") == everyone_hp - {"t1"}

    async with seeded.sessions() as session:
        bulletin = await session.scalar(select(Bulletin).order_by(Bulletin.id))
        assert bulletin is not None
        preview = await audiences.preview(session, bulletin)
    assert preview.total == 4
    assert preview.by_platform == {"telegram": 3, "zalo": 1}
    assert preview.estimated_seconds == pytest.approx(1.5)  # 3 at 2/s; Zalo in parallel


async def test_fan_out_is_idempotent_and_a_firing_makes_one_run(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, [str(n) for n in range(50)])
    bulletin_id = await approved_bulletin(seeded)
    run_id = await start_run(seeded, bulletin_id)
    async with seeded.sessions.begin() as session:
        again = await runs.create_run(
            session, bulletin_id=bulletin_id, schedule_id=None, fire_at=NOW, now=NOW
        )
        assert again is None  # the same firing twice is one run
        run = await session.get_one(BroadcastRun, run_id)
        assert await runs.fan_out(session, run, NOW, chunk=7) == 50  # again, in small chunks
    async with seeded.sessions() as session:
        count = await session.scalar(select(func.count()).where(Delivery.run_id == run_id))
        assert count == 50
        areas = set((await session.scalars(select(Delivery.area_id))).all())
        cat_hai = await session.scalar(select(Area.id).where(Area.code == "11914"))
        assert areas == {cat_hai}


async def test_fan_out_again_adds_only_what_is_missing(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, [f"m{n}" for n in range(30)])
    run_id = await start_run(seeded, await approved_bulletin(seeded))
    async with seeded.sessions.begin() as session:
        kept = (await session.scalars(select(Delivery.id).where(Delivery.run_id == run_id))).all()
        assert len(kept) == 30
        await session.execute(delete(Delivery).where(Delivery.id.in_(kept[::3])))
        # Someone new subscribes after the first fan-out: a later call reaches them too.
    await add_people(seeded, Platform.telegram, ["late"])
    async with seeded.sessions.begin() as session:
        run = await session.get_one(BroadcastRun, run_id)
        assert await runs.fan_out(session, run, NOW, chunk=4) == 31
    async with seeded.sessions() as session:
        addresses = (
            await session.scalars(select(Delivery.chat_address_id).where(Delivery.run_id == run_id))
        ).all()
        everyone = (await session.scalars(select(ChatAddress.id))).all()
    assert len(addresses) == len(set(addresses)) == 31  # each address once: nothing doubled
    assert set(addresses) == set(everyone)


async def test_expiry_expires_unsent_deliveries(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, ["e1", "e2"])
    bulletin_id = await approved_bulletin(seeded, expires_at=NOW + dt.timedelta(hours=1))
    run_id = await start_run(seeded, bulletin_id)
    async with seeded.sessions.begin() as session:
        assert await bulletins.expire_due(session, NOW) == []
        assert await bulletins.expire_due(session, NOW + dt.timedelta(hours=2)) == [bulletin_id]
    async with seeded.sessions() as session:
        states = (
            await session.scalars(select(Delivery.state).where(Delivery.run_id == run_id))
        ).all()
        assert {s.value for s in states} == {"expired"}
        bulletin = await session.get_one(Bulletin, bulletin_id)
        assert bulletin.state is BulletinState.expired
