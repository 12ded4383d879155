"""Administration (admins only): official accounts, bot settings and topics."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from broadcasts import audit, officials
from db.models import Area, Bot, Official, OfficialRole, Topic
from db.text import nfc
from web.dashboard import texts
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    NotFound,
    form_text,
    require_admin,
)

Row = TypeVar("Row", Official, Bot, Topic)


@dataclass
class Admin:
    """An admin's session on the administration pages: load rows, record what they did."""

    db: AsyncSession
    actor: Actor
    clock: Callable[[], dt.datetime]

    async def get(self, model: type[Row], row_id: int) -> Row:
        """The row, or NotFound."""
        row = await self.db.get(model, row_id)
        if row is None:
            raise NotFound
        return row

    async def audit(
        self, action: str, target: Official | Bot | Topic, details: dict[str, Any] | None = None
    ) -> None:
        """The audit row of an action on `target`, in this session's transaction."""
        await audit.record(
            self.db, now=self.clock(), official=self.actor.official, via="web", action=action,
            object_type=target.__tablename__.removesuffix("s"), object_id=target.id,
            details=details,
        )  # fmt: skip


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


def _bot_settings(bot: Bot) -> dict[str, object]:
    """What the audit row records of a bot, before and after a change."""
    return {"rate": bot.rate_per_second, "paid": bot.paid_broadcast,
            "quiet_start": _iso(bot.quiet_start), "quiet_end": _iso(bot.quiet_end),
            "enabled": bot.enabled}  # fmt: skip


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the administration routes to the dashboard router."""

    @asynccontextmanager
    async def admin_session(request: Request, *, write: bool) -> AsyncIterator[Admin]:
        """A session (a transaction when `write`) for a signed-in admin, else Forbidden."""
        async with dash.sessions.begin() if write else dash.sessions() as db:
            actor = await dash.actor(request, db)
            require_admin(actor)
            yield Admin(db, actor, dash.now)

    def list_route(name: str, stmt: Select[Any]) -> None:
        """GET /admin/<name>: every row of `stmt` on the page admin_<name>.html."""

        async def page(request: Request) -> Response:
            async with admin_session(request, write=False) as admin:
                rows = (await admin.db.scalars(stmt)).all()
            return dash.render(
                request, f"dashboard/admin_{name}.html", {name: rows}, actor=admin.actor
            )

        page.__name__ = f"{name}_list"
        router.add_api_route(f"/admin/{name}", dash.view(page), methods=["GET"], name=page.__name__)

    list_route("bots", select(Bot).order_by(Bot.platform, Bot.name))
    list_route("topics", select(Topic).order_by(Topic.position, Topic.id))

    async def _officials_page(request: Request, error: str | None = None, status: int = 200,
                              values: dict[str, str] | None = None) -> Response:  # fmt: skip
        async with admin_session(request, write=False) as admin:
            scope = aliased(Area)
            rows = (
                await admin.db.execute(
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
            actor=admin.actor, status_code=status,
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
        async with admin_session(request, write=False) as admin:
            try:
                role = OfficialRole(values["role"])
                created = await officials.create(
                    admin.db, username=values["username"], role=role,
                    password=form_text(form, "password"), area_code=values["area"].strip() or None,
                    display_name=values["display_name"],
                )  # fmt: skip
            except officials.OfficialError as exc:
                error = texts.explain(exc)
            except ValueError:  # not one of the roles
                error = texts.BAD_CHOICE
            else:
                await admin.audit(
                    "official.create", created,
                    {"username": created.username, "role": role.value,
                     "area": values["area"].strip() or None},
                )  # fmt: skip
                await admin.db.commit()
        if error is not None:
            # After the session closed: on SQLite a second one would wait for its write lock.
            return await _officials_page(request, error, 400, values)
        return dash.redirect("/admin/officials", "official_created")

    @router.post("/admin/officials/{official_id}/active")
    @dash.view
    async def official_active(request: Request, official_id: int) -> Response:
        form = await dash.form(request)
        active = form_text(form, "active") == "1"
        async with admin_session(request, write=True) as admin:
            target = await admin.get(Official, official_id)
            if target.id == admin.actor.official.id and not active:
                raise DashboardError(texts.CANNOT_DEACTIVATE_SELF)
            if target.active != active:
                target.active = active
                if active:  # reactivating also lifts a lock-out
                    target.failed_logins = 0
                    target.locked_until = None
                await admin.audit("official.activate" if active else "official.deactivate", target)
        return dash.redirect("/admin/officials", "official_changed")

    @router.post("/admin/bots/{bot_id}")
    @dash.view
    async def bot_update(request: Request, bot_id: int) -> Response:
        form = await dash.form(request)
        rate = _rate(form_text(form, "rate_per_second"), 0.1, 1000)
        quiet_start = _time(form_text(form, "quiet_start"))
        quiet_end = _time(form_text(form, "quiet_end"))
        async with admin_session(request, write=True) as admin:
            bot = await admin.get(Bot, bot_id)
            before = _bot_settings(bot)
            bot.rate_per_second = rate
            bot.paid_broadcast = form_text(form, "paid_broadcast") == "1"
            bot.quiet_start, bot.quiet_end = quiet_start, quiet_end
            bot.enabled = form_text(form, "enabled") == "1"
            await admin.audit("bot.update", bot, {"before": before, "after": _bot_settings(bot)})
        return dash.redirect("/admin/bots", "bot_saved")

    @router.post("/admin/topics/{topic_id}")
    @dash.view
    async def topic_update(request: Request, topic_id: int) -> Response:
        form = await dash.form(request)
        name = nfc(" ".join(form_text(form, "name").split()))[:120]
        if not name:
            raise DashboardError(texts.TOPIC_NAME_EMPTY)
        async with admin_session(request, write=True) as admin:
            topic = await admin.get(Topic, topic_id)
            before = {"name": topic.name, "active": topic.active}
            topic.name = name
            topic.active = form_text(form, "active") == "1"
            after = {"name": topic.name, "active": topic.active}
            await admin.audit("topic.update", topic, {"before": before, "after": after})
        return dash.redirect("/admin/topics", "topic_saved")


def _iso(value: dt.time | None) -> str | None:
    return value.isoformat(timespec="minutes") if value is not None else None
