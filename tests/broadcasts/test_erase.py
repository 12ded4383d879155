"""/xoa blanks the person's chat addresses: their data is gone, the run's counts stay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from broadcasts import queue, reports, runs, subscribers
from db.models import (
    BroadcastRun,
    ChatAddress,
    Delivery,
    DeliveryState,
    InboxKind,
    InboxMessage,
    InboxStatus,
    Platform,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
)
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run
from tests.conftest import Database

CHATS = ["900001", "900002", "900003"]


async def _person(database: Database, chat_id: str) -> tuple[Subscriber, ChatAddress]:
    async with database.sessions() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == chat_id))
        assert address is not None
        return await session.get_one(Subscriber, address.subscriber_id), address


async def test_erase_blanks_the_person_and_keeps_the_counts(seeded: Database) -> None:
    bot_id = await add_people(seeded, Platform.telegram, CHATS)
    async with seeded.sessions.begin() as session:
        for address in await session.scalars(select(ChatAddress)):
            person = await session.get_one(Subscriber, address.subscriber_id)
            await subscribers.record_consent(session, person, NOW, f"Nguyễn Văn {address.id}")
            await subscribers.set_phone(session, person, f"09123456{address.id:02d}", NOW)
            address.last_seen_at = NOW
            address.dialog = {"step": "communes", "typed": "cat hai"}
    run_id = await start_run(seeded, await approved_bulletin(seeded))

    # The first delivery goes out; then its person and a person still waiting erase.
    async with seeded.sessions.begin() as session:
        [first] = await queue.claim(
            session, bot_id=bot_id, now=NOW, limit=1, lease=dt.timedelta(minutes=1)
        )
        await queue.record(
            session,
            [queue.Outcome(id=first.id, state=DeliveryState.sent, parts_sent=1, attempts=1)],
        )
    reached_chat = first.chat_id
    waiting_chat, other_chat = [c for c in CHATS if c != reached_chat]
    async with seeded.sessions() as session:
        before = await reports.run_report(session, run_id)
    assert (before.total, before.counts["sent"], before.counts["pending"]) == (3, 1, 2)

    erased: dict[str, tuple[int, int]] = {}  # chat id -> (subscriber id, address id)
    for chat_id in (reached_chat, waiting_chat):
        person, address = await _person(seeded, chat_id)
        erased[chat_id] = (person.id, address.id)
        async with seeded.sessions.begin() as session:
            await subscribers.erase(session, await session.get_one(Subscriber, person.id), NOW)

    async with seeded.sessions() as session:
        for chat_id, (person_id, address_id) in erased.items():
            # The person's data is gone: no chat id, name, dialog, communes or topics.
            assert await session.scalar(
                select(ChatAddress.id).where(ChatAddress.chat_id == chat_id)
            ) is None  # fmt: skip
            address = await session.get_one(ChatAddress, address_id)
            assert (address.chat_id, address.dialog, address.last_seen_at) == (None, {}, None)
            assert (address.active, address.inactive_reason) == (False, subscribers.ERASED)
            person = await session.get_one(Subscriber, person_id)
            assert (person.display_name, person.consent_at) == (None, None)
            assert (person.phone, person.phone_consent_at) == (None, None)
            assert person.status is SubscriberStatus.erased
            for table in (Subscription, SubscriberTopic):
                assert not await session.scalar(
                    select(func.count()).where(table.subscriber_id == person_id)
                )
        # Deliveries still point at the blank address: nothing dangles, the counts stay.
        delivered = dict(
            (await session.execute(select(Delivery.id, Delivery.chat_address_id))).all()
        )
        assert delivered[first.id] == erased[reached_chat][1]
        assert len(delivered) == 3
        after = await reports.run_report(session, run_id)
        assert (after.total, after.counts) == (before.total, before.counts)
        assert (await reports.bulletin_report(session, after.bulletin_id))["sent"] == 1

    # A blank address is never sent to: its pending delivery fails at the claim.
    async with seeded.sessions.begin() as session:
        claimed = await queue.claim(
            session, bot_id=bot_id, now=NOW, limit=10, lease=dt.timedelta(minutes=1)
        )
    assert [c.chat_id for c in claimed] == [other_chat]
    async with seeded.sessions() as session:
        waiting = await session.scalar(
            select(Delivery).where(Delivery.chat_address_id == erased[waiting_chat][1])
        )
        assert waiting is not None
        assert (waiting.state, waiting.reason) == (DeliveryState.failed, "address erased")

    # Writing to the bot again starts afresh (the blank row never matches the chat), and
    # a new run does not reach the erased people.
    async with seeded.sessions.begin() as session:
        contact = await subscribers.contact_for(
            session, bot_id=bot_id, chat_id=reached_chat, display_name="Nguyễn Văn A", now=NOW
        )
        assert contact.is_new
        assert contact.address.id != erased[reached_chat][1]
        assert contact.subscriber.display_name is None  # no name before consent
    second = await start_run(seeded, await approved_bulletin(seeded), NOW + dt.timedelta(hours=1))
    async with seeded.sessions() as session:
        chats = (
            await session.scalars(
                select(ChatAddress.chat_id)
                .join(Delivery, Delivery.chat_address_id == ChatAddress.id)
                .where(Delivery.run_id == second)
            )
        ).all()
    assert chats == [other_chat]
    async with seeded.sessions.begin() as session:
        run = await session.get_one(BroadcastRun, second)
        assert await runs.fan_out(session, run, NOW) == 1  # idempotent: adds nothing


async def test_erase_blanks_what_the_person_wrote_and_the_answers(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, CHATS)
    erased_person, erased_address = await _person(seeded, CHATS[0])
    _, kept_address = await _person(seeded, CHATS[1])
    wrote = "Tôi là Trần Văn Bảy, tàu QNg-90123-TS, số 0912 345 678"
    async with seeded.sessions.begin() as session:
        for address, text in ((erased_address, wrote), (kept_address, "Bao giờ có bão?")):
            session.add(
                InboxMessage(
                    subscriber_id=address.subscriber_id,
                    chat_address_id=address.id,
                    area_id=None,
                    kind=InboxKind.location,
                    text=text,
                    attachment_ref="telegram:AgACAgUAAx",
                    latitude=20.72,
                    longitude=106.78,
                    status=InboxStatus.answered,
                    reply_text="Chào anh Bảy, đồn biên phòng đã nhận.",
                )
            )
    async with seeded.sessions.begin() as session:
        person = await session.get_one(Subscriber, erased_person.id)
        await subscribers.erase(session, person, NOW)

    async with seeded.sessions() as session:
        rows = (await session.scalars(select(InboxMessage).order_by(InboxMessage.id))).all()
    erased, kept = rows
    assert (erased.subscriber_id, erased.chat_address_id) == (None, None)
    assert (erased.text, erased.attachment_ref, erased.reply_text) == ("", None, None)
    assert (erased.latitude, erased.longitude) == (None, None)
    assert erased.status is InboxStatus.answered  # still counted as a message that was answered
    # Someone else's message is untouched.
    assert kept.text == "Bao giờ có bão?"
    assert kept.reply_text is not None and kept.latitude == 20.72
