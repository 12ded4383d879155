"""Administration (admins only): official accounts, bot settings and topics."""

from __future__ import annotations

import datetime as dt
import math

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import aliased

from broadcasts import audit, officials
from db.models import Area, Bot, Official, OfficialRole, Topic
from db.text import nfc
from web.dashboard import texts
from web.dashboard.common import Dashboard, DashboardError, NotFound, form_text, require_admin


def _time(value: str) -> dt.time | None:
    value = value.strip()
    if not value:
        return None
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise DashboardError(texts.BAD_DATETIME) from None


def _rate(value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DashboardError(texts.BAD_NUMBER) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise DashboardError(texts.BAD_NUMBER)
    return number


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the administration routes to the dashboard router."""

    async def _officials_page(request: Request, error: str | None = None, status: int = 200,
                              values: dict[str, str] | None = None) -> Response:  # fmt: skip
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            scope = aliased(Area)
            rows = (
                await db.execute(
                    select(Official, scope.code, scope.name)
                    .outerjoin(scope, scope.id == Official.area_id)
                    .order_by(Official.username)
                )
            ).all()
        return dash.render(
            request,
            "dashboard/admin_officials.html",
            {"rows": rows, "error": error, "roles": texts.OFFICIAL_ROLES,
             "values": values or {"username": "", "display_name": "", "role": "", "area": ""},
             "now": dash.now()},
            actor=actor, status_code=status,
        )  # fmt: skip

    @router.get("/admin/officials")
    @dash.view
    async def officials_list(request: Request) -> Response:
        return await _officials_page(request)

    @router.post("/admin/officials")
    @dash.view
    async def official_create(request: Request) -> Response:
        form = await dash.form(request)
        values = {
            "username": form_text(form, "username"),
            "display_name": form_text(form, "display_name"),
            "role": form_text(form, "role"),
            "area": form_text(form, "area"),
        }
        error: str | None = None
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            try:
                role = OfficialRole(values["role"])
                created = await officials.create(
                    db, username=values["username"], role=role,
                    password=form_text(form, "password"), area_code=values["area"].strip() or None,
                    display_name=values["display_name"],
                )  # fmt: skip
            except officials.OfficialError as exc:
                error = texts.explain(exc)
            except ValueError:  # not one of the roles
                error = texts.BAD_CHOICE
            else:
                await audit.record(
                    db, now=dash.now(), official=actor.official, via="web",
                    action="official.create", object_type="official", object_id=created.id,
                    details={"username": created.username, "role": role.value,
                             "area": values["area"].strip() or None},
                )  # fmt: skip
                await db.commit()
        if error is not None:
            # After the session closed: on SQLite a second one would wait for its write lock.
            return await _officials_page(request, error, 400, values)
        return dash.redirect("/admin/officials", "official_created")

    @router.post("/admin/officials/{official_id}/active")
    @dash.view
    async def official_active(request: Request, official_id: int) -> Response:
        form = await dash.form(request)
        active = form_text(form, "active") == "1"
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            target = await db.get(Official, official_id)
            if target is None:
                raise NotFound
            if target.id == actor.official.id and not active:
                raise DashboardError(texts.CANNOT_DEACTIVATE_SELF)
            if target.active != active:
                target.active = active
                if active:  # reactivating also lifts a lock-out
                    target.failed_logins = 0
                    target.locked_until = None
                await audit.record(
                    db, now=dash.now(), official=actor.official, via="web",
                    action="official.activate" if active else "official.deactivate",
                    object_type="official", object_id=target.id,
                )  # fmt: skip
        return dash.redirect("/admin/officials", "official_changed")

    @router.get("/admin/bots")
    @dash.view
    async def bots_list(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            bots = (await db.scalars(select(Bot).order_by(Bot.platform, Bot.name))).all()
        return dash.render(request, "dashboard/admin_bots.html", {"bots": bots}, actor=actor)

    @router.post("/admin/bots/{bot_id}")
    @dash.view
    async def bot_update(request: Request, bot_id: int) -> Response:
        form = await dash.form(request)
        rate = _rate(form_text(form, "rate_per_second"), 0.1, 1000)
        quiet_start = _time(form_text(form, "quiet_start"))
        quiet_end = _time(form_text(form, "quiet_end"))
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            bot = await db.get(Bot, bot_id)
            if bot is None:
                raise NotFound
            before = {"rate": bot.rate_per_second, "paid": bot.paid_broadcast,
                      "quiet_start": _iso(bot.quiet_start), "quiet_end": _iso(bot.quiet_end),
                      "enabled": bot.enabled}  # fmt: skip
            bot.rate_per_second = rate
            bot.paid_broadcast = form_text(form, "paid_broadcast") == "1"
            bot.quiet_start, bot.quiet_end = quiet_start, quiet_end
            bot.enabled = form_text(form, "enabled") == "1"
            after = {"rate": bot.rate_per_second, "paid": bot.paid_broadcast,
                     "quiet_start": _iso(bot.quiet_start), "quiet_end": _iso(bot.quiet_end),
                     "enabled": bot.enabled}  # fmt: skip
            await audit.record(
                db, now=dash.now(), official=actor.official, via="web", action="bot.update",
                object_type="bot", object_id=bot.id, details={"before": before, "after": after},
            )  # fmt: skip
        return dash.redirect("/admin/bots", "bot_saved")

    @router.get("/admin/topics")
    @dash.view
    async def topics_list(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            topics = (await db.scalars(select(Topic).order_by(Topic.position, Topic.id))).all()
        return dash.render(request, "dashboard/admin_topics.html", {"topics": topics}, actor=actor)

    @router.post("/admin/topics/{topic_id}")
    @dash.view
    async def topic_update(request: Request, topic_id: int) -> Response:
        form = await dash.form(request)
        name = nfc(" ".join(form_text(form, "name").split()))[:120]
        if not name:
            raise DashboardError(texts.TOPIC_NAME_EMPTY)
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            topic = await db.get(Topic, topic_id)
            if topic is None:
                raise NotFound
            details = {"before": {"name": topic.name, "active": topic.active}}
            topic.name = name
            topic.active = form_text(form, "active") == "1"
            details["after"] = {"name": topic.name, "active": topic.active}
            await audit.record(
                db, now=dash.now(), official=actor.official, via="web", action="topic.update",
                object_type="topic", object_id=topic.id, details=details,
            )  # fmt: skip
        return dash.redirect("/admin/topics", "topic_saved")


def _iso(value: dt.time | None) -> str | None:
    return value.isoformat(timespec="minutes") if value is not None else None
