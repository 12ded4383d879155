"""Bulletins: drafting, four-eyes approval, scope checks, cancellation and expiry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas, audit
from broadcasts.officials import covers
from db.models import (
    Area,
    BroadcastRun,
    Bulletin,
    BulletinArea,
    BulletinState,
    BulletinTranslation,
    Delivery,
    DeliveryState,
    Official,
    OfficialRole,
    Platform,
    Priority,
    RunState,
    Schedule,
    SubscriberRole,
    Topic,
)
from db.text import nfc

MAX_TITLE = 200
MAX_BODY = 20_000
# Who may write, and who may approve someone else's bulletin (within their own scope).
AUTHORS = {OfficialRole.admin, OfficialRole.province_editor, OfficialRole.commune_editor}
APPROVERS = {OfficialRole.admin, OfficialRole.approver, OfficialRole.province_editor}
FINAL_STATES = {BulletinState.sent, BulletinState.cancelled, BulletinState.expired}
EDITABLE_STATES = {BulletinState.draft, BulletinState.rejected}


class BulletinError(ValueError):
    """An action on a bulletin is not allowed; the message says why."""


class ScopeError(BulletinError):
    """The official may not act on that area (server-side scope check)."""


async def _check_scope(
    session: AsyncSession, official: Official, targets: Iterable[Area], action: str
) -> None:
    for area in targets:
        if not await covers(session, official, area):
            raise ScopeError(f"{official.username} may not {action} for {area.name} ({area.code})")


async def audience_areas(session: AsyncSession, bulletin_id: int) -> list[Area]:
    rows = await session.scalars(
        select(Area)
        .join(BulletinArea, BulletinArea.area_id == Area.id)
        .where(BulletinArea.bulletin_id == bulletin_id)
        .order_by(Area.code)
    )
    return list(rows.all())


async def create(
    session: AsyncSession,
    *,
    author: Official,
    title: str,
    body: str,
    area_codes: Sequence[str],
    now: dt.datetime,
    topic_slug: str | None = None,
    roles: Sequence[SubscriberRole] = (),
    platforms: Sequence[Platform] = (),
    urgent: bool = False,
    expires_at: dt.datetime | None = None,
    translations: dict[str, tuple[str, str]] | None = None,
    photo_path: str | None = None,
    submit: bool = False,
    via: str = "web",
) -> Bulletin:
    """Write a bulletin (a draft, or submitted for approval when `submit`).

    Every audience area must be inside the author's scope; text is stored NFC.
    """
    if author.role not in AUTHORS:
        raise BulletinError(f"a {author.role.value} cannot write bulletins")
    title, body = nfc(title.strip()), nfc(body.strip())
    if not title or not body:
        raise BulletinError("a bulletin needs a title and a body")
    if len(title) > MAX_TITLE or len(body) > MAX_BODY:
        raise BulletinError(f"title ≤ {MAX_TITLE} and body ≤ {MAX_BODY} characters")
    if not area_codes:
        raise BulletinError("choose at least one area (--area)")
    if expires_at is not None and expires_at <= now:
        raise BulletinError("the expiry is already past")
    targets: list[Area] = []
    for code in area_codes:
        try:
            area = await areas.get_by_code(session, code)
        except areas.AreaError as exc:
            raise BulletinError(str(exc)) from None
        if area not in targets:
            targets.append(area)
    await _check_scope(session, author, targets, "write bulletins")
    topic_id = None
    if topic_slug:
        topic_id = await session.scalar(select(Topic.id).where(Topic.slug == topic_slug))
        if topic_id is None:
            raise BulletinError(f"unknown topic: {topic_slug}")

    bulletin = Bulletin(
        title=title,
        body=body,
        topic_id=topic_id,
        priority=Priority.urgent if urgent else Priority.routine,
        state=BulletinState.pending_approval if submit else BulletinState.draft,
        author_id=author.id,
        expires_at=expires_at,
        audience_roles=sorted({r.value for r in roles}),
        audience_platforms=sorted({p.value for p in platforms}),
        photo_path=photo_path,
        created_at=now,
        updated_at=now,
    )
    session.add(bulletin)
    await session.flush()
    session.add_all(BulletinArea(bulletin_id=bulletin.id, area_id=a.id) for a in targets)
    for language, (t_title, t_body) in (translations or {}).items():
        session.add(
            BulletinTranslation(
                bulletin_id=bulletin.id,
                language=language,
                title=nfc(t_title.strip()),
                body=nfc(t_body.strip()),
            )
        )
    await session.flush()
    await audit.record(
        session, now=now, official=author, via=via, action="bulletin.create",
        object_type="bulletin", object_id=bulletin.id,
        details={"areas": [a.code for a in targets], "urgent": urgent, "submitted": submit},
    )  # fmt: skip
    return bulletin


async def submit(
    session: AsyncSession, bulletin: Bulletin, by: Official, now: dt.datetime, via: str = "web"
) -> None:
    if bulletin.state not in EDITABLE_STATES:
        raise BulletinError(f"only a draft can be submitted (this one is {bulletin.state.value})")
    if by.id != bulletin.author_id and by.role is not OfficialRole.admin:
        raise BulletinError("only the author submits a draft")
    bulletin.state = BulletinState.pending_approval
    bulletin.updated_at = now
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.submit",
        object_type="bulletin", object_id=bulletin.id,
    )  # fmt: skip


async def approve(
    session: AsyncSession, bulletin: Bulletin, by: Official, now: dt.datetime, via: str = "web"
) -> None:
    """Four-eyes: a second official whose scope covers the whole audience approves."""
    if bulletin.state is not BulletinState.pending_approval:
        raise BulletinError(f"only a submitted bulletin can be approved ({bulletin.state.value})")
    if by.id == bulletin.author_id:
        raise BulletinError("the author cannot approve their own bulletin (four-eyes rule)")
    if by.role not in APPROVERS:
        raise BulletinError(f"a {by.role.value} cannot approve bulletins")
    await _check_scope(session, by, await audience_areas(session, bulletin.id), "approve")
    bulletin.state = BulletinState.approved
    bulletin.approved_by_id = by.id
    bulletin.approved_at = now
    bulletin.updated_at = now
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.approve",
        object_type="bulletin", object_id=bulletin.id,
    )  # fmt: skip


async def reject(
    session: AsyncSession,
    bulletin: Bulletin,
    by: Official,
    comment: str,
    now: dt.datetime,
    via: str = "web",
) -> None:
    if bulletin.state is not BulletinState.pending_approval:
        raise BulletinError(f"only a submitted bulletin can be rejected ({bulletin.state.value})")
    if by.id == bulletin.author_id or by.role not in APPROVERS:
        raise BulletinError("only another official who may approve can reject")
    await _check_scope(session, by, await audience_areas(session, bulletin.id), "reject")
    bulletin.state = BulletinState.rejected
    bulletin.review_comment = nfc(comment.strip()) or None
    bulletin.updated_at = now
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.reject",
        object_type="bulletin", object_id=bulletin.id, details={"comment": comment[:500]},
    )  # fmt: skip


async def cancel(
    session: AsyncSession, bulletin: Bulletin, by: Official, now: dt.datetime, via: str = "web"
) -> int:
    """Stop a bulletin: schedules off, open runs cancelled, unsent deliveries cancelled.

    Returns how many deliveries were cancelled. Senders re-read cancelled runs at least
    every second, so nothing new goes out within seconds of this commit.
    """
    if bulletin.state in FINAL_STATES:
        raise BulletinError(f"the bulletin is already {bulletin.state.value}")
    await _check_scope(session, by, await audience_areas(session, bulletin.id), "cancel")
    if by.role not in AUTHORS | APPROVERS:
        raise BulletinError(f"a {by.role.value} cannot cancel bulletins")
    bulletin.state = BulletinState.cancelled
    bulletin.cancelled_at = now
    bulletin.updated_at = now
    await session.execute(
        update(Schedule).where(Schedule.bulletin_id == bulletin.id).values(active=False)
    )
    open_runs = select(BroadcastRun.id).where(
        BroadcastRun.bulletin_id == bulletin.id,
        BroadcastRun.state.in_([RunState.pending, RunState.sending]),
    )
    cancelled = await session.execute(
        update(Delivery)
        .where(Delivery.run_id.in_(open_runs), Delivery.state == DeliveryState.pending)
        .values(state=DeliveryState.cancelled, reason="cancelled")
    )
    await session.execute(
        update(BroadcastRun)
        .where(BroadcastRun.id.in_(open_runs))
        .values(state=RunState.cancelled, finished_at=now)
    )
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.cancel",
        object_type="bulletin", object_id=bulletin.id,
    )  # fmt: skip
    return int(cancelled.rowcount or 0)  # type: ignore[attr-defined]


async def expire_due(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Bulletins past their expiry: state expired, schedules off, unsent deliveries expired."""
    due = (
        await session.scalars(
            select(Bulletin.id).where(
                Bulletin.expires_at.is_not(None),
                Bulletin.expires_at <= now,
                Bulletin.state.not_in(FINAL_STATES),
            )
        )
    ).all()
    if not due:
        return []
    await session.execute(
        update(Bulletin)
        .where(Bulletin.id.in_(due))
        .values(state=BulletinState.expired, updated_at=now)
    )
    await session.execute(
        update(Schedule).where(Schedule.bulletin_id.in_(due)).values(active=False)
    )
    runs = select(BroadcastRun.id).where(BroadcastRun.bulletin_id.in_(due))
    await session.execute(
        update(Delivery)
        .where(Delivery.run_id.in_(runs), Delivery.state == DeliveryState.pending)
        .values(state=DeliveryState.expired, reason="expired")
    )
    return list(due)


async def get(session: AsyncSession, bulletin_id: int) -> Bulletin:
    bulletin = await session.get(Bulletin, bulletin_id)
    if bulletin is None:
        raise BulletinError(f"no bulletin {bulletin_id}")
    return bulletin


async def text_for(session: AsyncSession, bulletin: Bulletin, language: str) -> tuple[str, str]:
    """(title, body) in the person's language when a translation exists, else Vietnamese."""
    if language and language != "vi":
        translation = await session.scalar(
            select(BulletinTranslation).where(
                BulletinTranslation.bulletin_id == bulletin.id,
                BulletinTranslation.language == language,
            )
        )
        if translation is not None:
            return translation.title, translation.body
    return bulletin.title, bulletin.body
