"""The officials' inbox: what subscribers write, routed to the officials of their commune."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import audit
from broadcasts.officials import covers
from db.models import (
    Area,
    ChatAddress,
    InboxKind,
    InboxMessage,
    InboxStatus,
    Official,
    OfficialRole,
)
from db.text import fold, nfc

MAX_TEXT_LENGTH = 4000

# Folded words that make a message urgent for the officials: distress, accidents, foreign
# vessels, injuries. Matching is on folded text, so "Cấp cứu" and "cap cuu" both count.
URGENT_WORDS = (
    "cap cuu", "cuu", "sos", "tai nan", "chim", "mac can", "hoa hoan", "chay tau", "bi thuong",
    "mat tich", "tau la", "tau nuoc ngoai", "xam pham", "bat giu", "khan cap", "nguy hiem",
    "duoi nuoc", "troi dat",
)  # fmt: skip
_URGENT = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in URGENT_WORDS) + r")\b")


def is_urgent(text: str) -> bool:
    return bool(_URGENT.search(fold(text)))


async def save(
    session: AsyncSession,
    *,
    now: dt.datetime,
    subscriber_id: int | None,
    chat_address_id: int | None,
    area_id: int | None,
    kind: InboxKind,
    text: str = "",
    attachment_ref: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
) -> InboxMessage:
    """Store a message for the officials (text cut to MAX_TEXT_LENGTH, NFC)."""
    clean = nfc(text.strip())[:MAX_TEXT_LENGTH]
    message = InboxMessage(
        created_at=now,
        subscriber_id=subscriber_id,
        chat_address_id=chat_address_id,
        area_id=area_id,
        kind=kind,
        text=clean,
        attachment_ref=attachment_ref,
        latitude=latitude,
        longitude=longitude,
        urgent=is_urgent(clean),
    )
    session.add(message)
    await session.flush()
    return message


class InboxError(ValueError):
    """A reply cannot be made; the message says why."""


@dataclass(frozen=True)
class ReplyTarget:
    """Where an official's reply goes: a chat on a bot, and the commune it came from."""

    bot_id: int
    chat_id: str
    area_name: str | None
    text: str


async def reply(
    session: AsyncSession,
    *,
    message_id: int,
    text: str,
    by: Official,
    now: dt.datetime,
    via: str = "web",
) -> ReplyTarget:
    """Record an official's answer to an inbox message; the caller sends it in chat.

    The official's scope must cover the message's commune (admins: any). A person who
    erased their data (/xoa) can no longer be answered.
    """
    message = await session.get(InboxMessage, message_id)
    if message is None:
        raise InboxError(f"no inbox message {message_id}")
    clean = nfc(text.strip())[:MAX_TEXT_LENGTH]
    if not clean:
        raise InboxError("the reply is empty")
    area = await session.get(Area, message.area_id) if message.area_id else None
    if area is not None and not await covers(session, by, area):
        raise InboxError(f"{by.username} may not answer messages from {area.name}")
    if area is None and by.role is not OfficialRole.admin:
        raise InboxError("only an admin answers messages that came with no commune")
    address = (
        await session.get(ChatAddress, message.chat_address_id) if message.chat_address_id else None
    )
    if address is None or address.chat_id is None:  # erased by /xoa
        raise InboxError("the person erased their data; the message can no longer be answered")
    message.reply_text = clean
    message.replied_by_id = by.id
    message.replied_at = now
    message.status = InboxStatus.answered
    await audit.record(
        session, now=now, official=by, via=via, action="inbox.reply",
        object_type="inbox_message", object_id=message.id,
    )  # fmt: skip
    await session.flush()
    target = await reply_target(session, message_id)
    if target is None:  # not reached: the message, its answer and its chat were checked
        raise InboxError(f"no chat to answer inbox message {message_id} in")
    return target


async def reply_target(session: AsyncSession, message_id: int) -> ReplyTarget | None:
    """Where the stored answer to an inbox message goes; None without an answer or a chat
    (erased by /xoa)."""
    message = await session.get(InboxMessage, message_id)
    if message is None or not message.reply_text or message.chat_address_id is None:
        return None
    address = await session.get(ChatAddress, message.chat_address_id)
    if address is None or address.chat_id is None:
        return None
    area = await session.get(Area, message.area_id) if message.area_id else None
    return ReplyTarget(
        bot_id=address.bot_id,
        chat_id=address.chat_id,
        area_name=area.name if area else None,
        text=message.reply_text,
    )
