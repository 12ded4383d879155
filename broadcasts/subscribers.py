"""Subscribers and their chat addresses, communes, topics and phones: subscribe, stop, erase."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Integer, delete, exists, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import fallback, sms
from db.engine import insert_for
from db.models import (
    Acknowledgement,
    Answer,
    Area,
    Bot,
    Bulletin,
    BulletinArea,
    BulletinState,
    ChatAddress,
    InboxMessage,
    Platform,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
    Topic,
    VesselMember,
)
from db.text import nfc

MAX_NAME_LENGTH = 120
# ChatAddress.inactive_reason of an address blanked by /xoa.
ERASED = "erased"


async def ensure_bot(session: AsyncSession, platform: Platform, name: str = "default") -> Bot:
    """The bot row for a platform (created on first start with the platform's defaults)."""
    bot = await session.scalar(select(Bot).where(Bot.platform == platform, Bot.name == name))
    if bot is None:
        bot = Bot(platform=platform, name=name)
        session.add(bot)
        await session.flush()
    return bot


@dataclass
class Contact:
    """A chat address with its person, as the conversation core sees them."""

    address: ChatAddress
    subscriber: Subscriber
    is_new: bool


async def contact_for(
    session: AsyncSession,
    *,
    bot_id: int,
    chat_id: str,
    display_name: str | None,
    now: dt.datetime,
) -> Contact:
    """Find or create the chat address (and its person) for a chat on a bot."""
    # Both in one statement: every message a person sends starts here.
    found = (
        await session.execute(
            select(ChatAddress, Subscriber)
            .join(Subscriber, Subscriber.id == ChatAddress.subscriber_id)
            .where(ChatAddress.bot_id == bot_id, ChatAddress.chat_id == chat_id)
        )
    ).first()
    if found is not None:
        address, subscriber = found
        address.last_seen_at = now
        if subscriber.consent_at is not None and display_name:
            subscriber.display_name = _clean_name(display_name)  # people rename themselves
        return Contact(address=address, subscriber=subscriber, is_new=False)
    # No name until the person consents: a first "hello" must not keep personal data.
    subscriber = Subscriber(display_name=None, role=SubscriberRole.fisherman, language="vi")
    session.add(subscriber)
    await session.flush()
    address = ChatAddress(
        subscriber_id=subscriber.id, bot_id=bot_id, chat_id=chat_id, last_seen_at=now, dialog={}
    )
    session.add(address)
    await session.flush()
    return Contact(address=address, subscriber=subscriber, is_new=True)


def _clean_name(name: str | None) -> str | None:
    if not name:
        return None
    return nfc(" ".join(name.split()))[:MAX_NAME_LENGTH] or None


async def record_consent(
    session: AsyncSession, subscriber: Subscriber, now: dt.datetime, display_name: str | None
) -> None:
    """The person agreed to the data statement: keep their display name from now on."""
    if subscriber.consent_at is None:
        subscriber.consent_at = now
    subscriber.display_name = _clean_name(display_name) or subscriber.display_name
    subscriber.status = SubscriberStatus.active
    subscriber.stopped_at = None


async def communes_of(session: AsyncSession, subscriber_id: int) -> list[Area]:
    """The areas a person follows, in the order they were added."""
    rows = await session.scalars(
        select(Area)
        .join(Subscription, Subscription.area_id == Area.id)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Subscription.id)
    )
    return list(rows.all())


async def follow(session: AsyncSession, subscriber_id: int, area_id: int) -> bool:
    """Follow an area; False when already followed."""
    insert_ = insert_for(session)
    added = await session.scalar(
        insert_(Subscription)
        .values(subscriber_id=subscriber_id, area_id=area_id)
        .on_conflict_do_nothing(index_elements=["subscriber_id", "area_id"])
        .returning(Subscription.id)
    )
    return added is not None


async def unfollow(session: AsyncSession, subscriber_id: int, area_id: int) -> None:
    await session.execute(
        delete(Subscription).where(
            Subscription.subscriber_id == subscriber_id, Subscription.area_id == area_id
        )
    )


async def active_topics(session: AsyncSession) -> list[Topic]:
    rows = await session.scalars(
        select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)
    )
    return list(rows.all())


async def topic_ids_of(session: AsyncSession, subscriber_id: int) -> set[int]:
    rows = await session.scalars(
        select(SubscriberTopic.topic_id).where(SubscriberTopic.subscriber_id == subscriber_id)
    )
    return set(rows.all())


async def set_topics(session: AsyncSession, subscriber_id: int, topic_ids: set[int]) -> None:
    await session.execute(
        delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == subscriber_id)
    )
    if topic_ids:
        await session.execute(
            insert(SubscriberTopic),
            [{"subscriber_id": subscriber_id, "topic_id": t} for t in sorted(topic_ids)],
        )


async def follow_all_topics(session: AsyncSession, subscriber_id: int) -> None:
    """Set the person's topics to every active one (reading them in the INSERT itself)."""
    await session.execute(
        delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == subscriber_id)
    )
    active = select(literal(subscriber_id), Topic.id).where(Topic.active.is_(True))
    await session.execute(
        insert(SubscriberTopic).from_select(
            ["subscriber_id", "topic_id"], active.order_by(Topic.id)
        )
    )


async def stop(session: AsyncSession, subscriber: Subscriber, now: dt.datetime) -> None:
    """/huy: no more bulletins; everything is kept so /batdau can resume."""
    subscriber.status = SubscriberStatus.stopped
    subscriber.stopped_at = now


async def resume(session: AsyncSession, subscriber: Subscriber) -> None:
    subscriber.status = SubscriberStatus.active
    subscriber.stopped_at = None


async def set_phone(
    session: AsyncSession, subscriber: Subscriber, number: str, now: dt.datetime
) -> str:
    """/sdt: keep the person's mobile (they consented just now) and return it as stored.

    `number` is as typed (0912 345 678, +84 912 345 678, 84912345678); raises ValueError
    (the message never holds the number) for anything but a Vietnamese mobile. Not
    audited: the audit trail is for officials' actions, and `phone_consent_at` is the
    record of the person's. The caller owns the transaction.
    """
    phone = sms.msisdn(number)
    subscriber.phone = phone
    subscriber.phone_consent_at = now
    return phone


async def remove_phone(session: AsyncSession, subscriber: Subscriber) -> bool:
    """/sdt xoa: forget the person's mobile and their consent to it, and blank their
    fallback addresses for it (fallback.forget_phone); False if none was kept."""
    await fallback.forget_phone(session, subscriber.id)
    had = subscriber.phone is not None
    subscriber.phone = None
    subscriber.phone_consent_at = None
    return had


async def erase(session: AsyncSession, subscriber: Subscriber, now: dt.datetime) -> None:
    """/xoa: remove the name, phone, chat ids, communes, topics and vessel links; keep
    anonymous rows.

    The person's chat addresses stay as blank rows (no chat id, no dialog, switched off),
    so deliveries keep pointing at them and the per-run counts stay right without
    touching the delivery table; a blank address is never sent to (the claim skips it)
    and never matches an incoming chat (NULL equals nothing), so writing to the bot again
    starts afresh. Acknowledgements and inbox messages stay for the officials' counts but
    lose their link to the person; what the person wrote or sent (text, photo, location)
    and the officials' answers to it are blanked, since either can identify them.
    """
    await session.execute(
        update(InboxMessage)
        .where(InboxMessage.subscriber_id == subscriber.id)
        .values(
            subscriber_id=None,
            chat_address_id=None,
            text="",
            attachment_ref=None,
            latitude=None,
            longitude=None,
            reply_text=None,
        )
    )
    await session.execute(
        update(Acknowledgement)
        .where(Acknowledgement.subscriber_id == subscriber.id)
        .values(subscriber_id=None)
    )
    await session.execute(delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    await session.execute(
        delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == subscriber.id)
    )
    # Which vessels they sail on or own says who they are: the links go (the vessel stays).
    await session.execute(delete(VesselMember).where(VesselMember.subscriber_id == subscriber.id))
    # What the bots still owe the person, or failed to send them (with their chat id and
    # maybe their words): gone too. The answer to /xoa itself is stored after this.
    chats = select(ChatAddress.bot_id, ChatAddress.chat_id).where(
        ChatAddress.subscriber_id == subscriber.id, ChatAddress.chat_id.is_not(None)
    )
    await session.execute(delete(Answer).where(tuple_(Answer.bot_id, Answer.chat_id).in_(chats)))
    await session.execute(
        update(ChatAddress)
        .where(ChatAddress.subscriber_id == subscriber.id)
        .values(
            chat_id=None,
            active=False,
            inactive_reason=ERASED,
            dialog={},
            last_seen_at=None,
        )
    )
    subscriber.display_name = None
    await remove_phone(session, subscriber)
    subscriber.status = SubscriberStatus.erased
    subscriber.erased_at = now
    subscriber.consent_at = None


async def latest_bulletins(
    session: AsyncSession, subscriber_id: int, limit: int = 5
) -> list[Bulletin]:
    """The newest bulletins sent to the person's communes or their provinces."""
    followed = await communes_of(session, subscriber_id)
    area_ids = {a.id for a in followed} | {a.province_id for a in followed if a.province_id}
    area_ids |= {a.parent_id for a in followed if a.parent_id}
    if not area_ids:
        return []
    targeted = select(BulletinArea.bulletin_id).where(BulletinArea.area_id.in_(area_ids))
    rows = await session.scalars(
        select(Bulletin)
        .where(
            Bulletin.id.in_(targeted),
            Bulletin.state.in_([BulletinState.sending, BulletinState.sent]),
        )
        .order_by(Bulletin.updated_at.desc(), Bulletin.id.desc())
        .limit(limit)
    )
    return list(rows.all())


async def acknowledge(
    session: AsyncSession,
    *,
    bulletin_id: int,
    subscriber: Subscriber,
    now: dt.datetime,
    bot_id: int | None = None,
) -> bool | None:
    """Record a "Đã nhận" tap once per person per bulletin (and the bot it came through).

    True when recorded now, False when it already was, None when there is no such bulletin.
    """
    # One statement for a first tap (thousands come at once after a storm warning): the
    # bulletin's existence and the person's first area are read in the INSERT itself.
    first_area = (
        select(Subscription.area_id)
        .where(Subscription.subscriber_id == subscriber.id)
        .order_by(Subscription.id)
        .limit(1)
        .scalar_subquery()
    )
    row = select(
        literal(bulletin_id),
        literal(subscriber.id),
        first_area,
        literal(now, Acknowledgement.created_at.type),
        literal(bot_id, Integer()),
    ).where(exists().where(Bulletin.id == bulletin_id))
    insert_ = insert_for(session)
    added = await session.scalar(
        insert_(Acknowledgement)
        .from_select(["bulletin_id", "subscriber_id", "area_id", "created_at", "bot_id"], row)
        .on_conflict_do_nothing(index_elements=["bulletin_id", "subscriber_id"])
        .returning(Acknowledgement.id)
    )
    if added is not None:
        return True
    known = await session.scalar(select(exists().where(Bulletin.id == bulletin_id)))
    return False if known else None
