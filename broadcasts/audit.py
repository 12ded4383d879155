"""The audit trail: one row for every official action (web, CLI or system)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditEntry, Official


async def record(
    session: AsyncSession,
    *,
    now: dt.datetime,
    official: Official | None,
    via: str,
    action: str,
    object_type: str | None = None,
    object_id: object = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit row in the caller's transaction (so it commits with the action or not at all).

    `details` must not hold passwords, tokens or phone numbers.
    """
    entry = AuditEntry(
        at=now,
        official_id=official.id if official is not None else None,
        via=via,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=details or {},
    )
    session.add(entry)
    await session.flush()
    return entry
