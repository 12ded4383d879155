"""A platform's final word on a message it accepted: a delivery receipt, a callback.

SMS delivery receipts and ZNS callbacks arrive after the send, by the message id the
platform returned (deliveries.platform_message_id). A delivered message stays `sent`; one
the platform could not deliver becomes `failed` with the platform's reason, so reports
count it as not reached and a fallback chain moves the person on to its next step.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Delivery, DeliveryState


async def record(
    session: AsyncSession,
    bot_id: int,
    message_id: str,
    state: DeliveryState,
    reason: str | None,
) -> bool:
    """Apply one receipt; True when it matched a delivery still counted as sent.

    Only `sent` rows change (a receipt for a message we never recorded, or one repeated,
    changes nothing); the caller owns the transaction.
    """
    if state is DeliveryState.sent or not message_id:
        return False
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.bot_id == bot_id,
            Delivery.platform_message_id == message_id,
            Delivery.state == DeliveryState.sent,
        )
        .values(state=state, reason=(reason or "undelivered")[:80])
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
