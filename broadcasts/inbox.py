"""The officials' inbox: what subscribers write, routed to the officials of their commune."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import InboxKind, InboxMessage
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
