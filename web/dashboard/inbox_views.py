"""The inbox (subscribers' messages by commune, read and reply) and the audit log view."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import audit, inbox
from db.models import (
    Area,
    AuditEntry,
    InboxMessage,
    InboxStatus,
    Official,
    OfficialRole,
    Subscriber,
)
from web.dashboard import texts
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_text,
    scope_condition,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100


def inbox_scope(actor: Actor) -> ColumnElement[bool]:
    """Messages the official may see: those routed to areas in their scope."""
    if actor.is_admin:
        return InboxMessage.id.is_not(None)
    return InboxMessage.area_id.in_(select(Area.id).where(scope_condition(actor)))


async def _message(db: AsyncSession, actor: Actor, message_id: int) -> InboxMessage:
    message = await db.scalar(
        select(InboxMessage).where(InboxMessage.id == message_id, inbox_scope(actor))
    )
    if message is None:
        raise NotFound
    return message


def _page(request: Request) -> int:
    try:
        return max(int(request.query_params.get("page", "1")), 1)
    except ValueError:
        return 1


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the inbox and audit routes to the dashboard router."""

    @router.get("/inbox")
    @dash.view
    async def inbox_list(request: Request) -> Response:
        status = request.query_params.get("status", "open")
        page = _page(request)
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            stmt = (
                select(InboxMessage, Area.name, Subscriber.display_name, Official.username)
                .outerjoin(Area, Area.id == InboxMessage.area_id)
                .outerjoin(Subscriber, Subscriber.id == InboxMessage.subscriber_id)
                .outerjoin(Official, Official.id == InboxMessage.replied_by_id)
                .where(inbox_scope(actor))
            )
            if status == "open":
                stmt = stmt.where(InboxMessage.status.in_([InboxStatus.new, InboxStatus.read]))
            elif status in texts.INBOX_STATUSES:
                stmt = stmt.where(InboxMessage.status == InboxStatus(status))
            rows = (
                await db.execute(
                    stmt.order_by(
                        InboxMessage.urgent.desc(),
                        InboxMessage.created_at.desc(),
                        InboxMessage.id.desc(),
                    )
                    .limit(PAGE_SIZE + 1)
                    .offset((page - 1) * PAGE_SIZE)
                )
            ).all()
        more = len(rows) > PAGE_SIZE
        items = [
            {"m": m, "area": area, "name": name, "replied_by": by}
            for m, area, name, by in rows[:PAGE_SIZE]
        ]
        return dash.render(
            request,
            "dashboard/inbox.html",
            {"items": items, "status": status, "page": page, "more": more,
             "max_reply": inbox.MAX_TEXT_LENGTH},
            actor=actor,
        )  # fmt: skip

    @router.post("/inbox/{message_id}/read")
    @dash.view
    async def inbox_read(request: Request, message_id: int) -> Response:
        await dash.form(request)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            message = await _message(db, actor, message_id)
            if message.status is InboxStatus.new:
                message.status = InboxStatus.read
                await audit.record(
                    db, now=dash.now(), official=actor.official, via="web", action="inbox.read",
                    object_type="inbox_message", object_id=message.id,
                )  # fmt: skip
        return dash.redirect("/inbox", "read")

    @router.post("/inbox/{message_id}/reply")
    @dash.view
    async def inbox_reply(request: Request, message_id: int) -> Response:
        form = await dash.form(request)
        reply = form_text(form, "reply").strip()
        if not reply:
            raise DashboardError(texts.REPLY_EMPTY)
        now = dash.now()
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            if actor.official.role is OfficialRole.radio_operator:
                raise Forbidden(texts.FORBIDDEN)
            await _message(db, actor, message_id)  # out of scope: 404, as if it did not exist
            try:
                await inbox.reply(
                    db, message_id=message_id, text=reply, by=actor.official, now=now, via="web"
                )
            except inbox.InboxError as error:
                raise DashboardError(texts.explain(error)) from None
        notice = "replied"
        if dash.send_reply is not None:
            try:
                if not await dash.send_reply(message_id):
                    notice = "reply_queued"
            except Exception:
                log.exception("dashboard: sending the reply to inbox message %d failed", message_id)
                notice = "reply_not_sent"
        return dash.redirect("/inbox", notice)

    @router.get("/audit")
    @dash.view
    async def audit_log(request: Request) -> Response:
        page = _page(request)
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            stmt = select(AuditEntry, Official.username).outerjoin(
                Official, Official.id == AuditEntry.official_id
            )
            if not actor.is_admin:
                stmt = stmt.where(AuditEntry.official_id == actor.official.id)
            action = request.query_params.get("action", "")
            if action in texts.AUDIT_ACTIONS:
                stmt = stmt.where(AuditEntry.action == action)
            rows = (
                await db.execute(
                    stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                    .limit(AUDIT_PAGE_SIZE + 1)
                    .offset((page - 1) * AUDIT_PAGE_SIZE)
                )
            ).all()
        more = len(rows) > AUDIT_PAGE_SIZE
        return dash.render(
            request,
            "dashboard/audit.html",
            {"rows": rows[:AUDIT_PAGE_SIZE], "page": page, "more": more, "action": action},
            actor=actor,
        )
