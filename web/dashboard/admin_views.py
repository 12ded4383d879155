"""Administration: official accounts, bots and topics (admins); villages, ports (editors too)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from broadcasts import areas, audit, bots, officials
from db.models import (
    Answer,
    AnswerState,
    Area,
    AreaKind,
    Bot,
    Official,
    OfficialRole,
    Platform,
    Topic,
)
from db.text import nfc
from web.dashboard import texts
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_text,
    require_admin,
)

Row = TypeVar("Row", Official, Bot, Topic, Area)

# Villages and ports are local knowledge: the commune's own editors know its thôn and bến,
# so every editor may keep them, inside their scope (checked with officials.covers).
# Approvers and radio operators do not write, so they do not change the map either.
AREA_EDITORS = frozenset(
    {OfficialRole.admin, OfficialRole.province_editor, OfficialRole.commune_editor}
)
# The coastal flag classifies a commune for province-wide targeting, so it is the
# province's call (and an admin's), not the commune's own.
COASTAL_EDITORS = frozenset({OfficialRole.admin, OfficialRole.province_editor})


def require_area_editor(actor: Actor) -> None:
    if actor.official.role not in AREA_EDITORS:
        raise Forbidden(texts.AREAS_ROLE_ONLY)


@dataclass
class Admin:
    """An official's session on the administration pages: load rows, record what they did."""

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
        self,
        action: str,
        target: Official | Bot | Topic | Area,
        details: dict[str, Any] | None = None,
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


def _bot_place(bot: Bot, province: str | None) -> dict[str, object]:
    """What the audit row records of where a bot points: its link and its province."""
    return {"link": bot.link, "province": province}


def _bot_error(error: bots.BotError) -> DashboardError:
    return DashboardError(texts.BOT_PROBLEMS[error.problem])


FAILED_ANSWERS_SHOWN = 200


def _answer_summary(payload: dict[str, Any]) -> str:
    """The start of what an answer said (or what it was: a document's voice)."""
    texts_said = [str(r.get("text", "")) for r in payload.get("replies", [])]
    said = " / ".join(t for t in texts_said if t) or str(payload.get("what", ""))
    return said if len(said) <= 160 else said[:157] + "…"


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the administration routes to the dashboard router."""

    @asynccontextmanager
    async def admin_session(
        request: Request, *, write: bool, check: Callable[[Actor], None] = require_admin
    ) -> AsyncIterator[Admin]:
        """A session (a transaction when `write`) for an official `check` lets in (admins)."""
        async with dash.sessions.begin() if write else dash.sessions() as db:
            actor = await dash.actor(request, db)
            check(actor)
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

    def token_box() -> bots.TokenBox:
        return bots.TokenBox(dash.settings.secret_key.get_secret_value())

    async def province_code(db: AsyncSession, bot: Bot) -> str | None:
        return None if bot.area_id is None else (await db.get_one(Area, bot.area_id)).code

    @router.get("/admin/bots")
    @dash.view
    async def bots_list(request: Request) -> Response:
        async with admin_session(request, write=False) as admin:
            rows = (await admin.db.scalars(select(Bot).order_by(Bot.platform, Bot.name))).all()
            provinces = (
                await admin.db.scalars(
                    select(Area).where(Area.kind == AreaKind.province).order_by(Area.code)
                )
            ).all()
        # Never the token itself: only where it is kept.
        token_states = {
            bot.id: (
                texts.BOT_TOKEN_FROM_ENV.format(variable=bots.token_variable(bot.platform))
                if bots.is_first(bot)
                else texts.BOT_TOKEN_STORED
                if bot.token_sealed is not None
                else texts.BOT_TOKEN_NONE
            )
            for bot in rows
        }
        return dash.render(
            request, "dashboard/admin_bots.html",
            {"bots": rows, "provinces": provinces,
             "province_codes": {area.id: area.code for area in provinces},
             "token_states": token_states, "is_first": bots.is_first},
            actor=admin.actor,
        )  # fmt: skip

    @router.post("/admin/bots")
    @dash.view
    async def bot_create(request: Request) -> Response:
        form = await dash.form(request)
        try:
            platform = Platform(form_text(form, "platform"))
        except ValueError:
            raise DashboardError(texts.BAD_CHOICE) from None
        rate = _rate(form_text(form, "rate_per_second", "30"), bots.RATE_MIN, bots.RATE_MAX)
        async with admin_session(request, write=True) as admin:
            try:
                bot = await bots.add(
                    admin.db, token_box(), platform=platform, name=form_text(form, "name"),
                    token=form_text(form, "token"), rate_per_second=rate,
                    link=form_text(form, "link"), province=form_text(form, "province") or None,
                    taken=dash.settings.first_bot_tokens(platform),
                )  # fmt: skip
            except bots.BotError as exc:
                raise _bot_error(exc) from None
            after = {
                "platform": platform.value, "name": bot.name, **_bot_settings(bot),
                **_bot_place(bot, await province_code(admin.db, bot)),
            }  # fmt: skip
            await admin.audit("bot.create", bot, {"after": after})
        return dash.redirect("/admin/bots", "bot_added")

    @router.post("/admin/bots/{bot_id}/place")
    @dash.view
    async def bot_place(request: Request, bot_id: int) -> Response:
        """A bot's link, province and (when one is typed) new token."""
        form = await dash.form(request)
        token = form_text(form, "token").strip()
        async with admin_session(request, write=True) as admin:
            bot = await admin.get(Bot, bot_id)
            before = _bot_place(bot, await province_code(admin.db, bot))
            try:
                await bots.set_place(
                    admin.db, bot, link=form_text(form, "link"),
                    province=form_text(form, "province") or None,
                )  # fmt: skip
                if token:  # blank: the token stays as it is
                    await bots.set_token(
                        admin.db, token_box(), bot, token,
                        taken=dash.settings.first_bot_tokens(bot.platform),
                    )  # fmt: skip
            except bots.BotError as exc:
                raise _bot_error(exc) from None
            after = _bot_place(bot, await province_code(admin.db, bot))
            if after != before:
                await admin.audit("bot.update", bot, {"before": before, "after": after})
            if token:
                await admin.audit("bot.token", bot)
        return dash.redirect("/admin/bots", "bot_token_saved" if token else "bot_saved")

    @router.get("/admin/answers")
    @dash.view
    async def failed_answers(request: Request) -> Response:
        """Answers to people that could not be sent after their retries, newest first."""
        async with admin_session(request, write=False) as admin:
            rows = (
                await admin.db.execute(
                    select(Answer, Bot.platform, Bot.name)
                    .join(Bot, Bot.id == Answer.bot_id)
                    .where(Answer.state == AnswerState.failed)
                    .order_by(Answer.failed_at.desc(), Answer.id.desc())
                    .limit(FAILED_ANSWERS_SHOWN)
                )
            ).all()
        answers = [
            {
                "at": answer.failed_at,
                "bot": f"{texts.PLATFORMS[platform]} · {name}",
                # Enough of the chat id to tell two people apart, not to reach them.
                "chat": "…" + answer.chat_id[-3:],
                "what": _answer_summary(answer.payload),
                "reason": answer.reason or "",
            }
            for answer, platform, name in rows
        ]
        return dash.render(
            request, "dashboard/admin_answers.html", {"answers": answers}, actor=admin.actor
        )

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
             "values": values or {"username": "", "display_name": "", "role": "", "area": ""}},
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
                target.session_generation += 1  # deactivation ends the sessions for good
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

    _register_areas(router, dash, admin_session)


def _iso(value: dt.time | None) -> str | None:
    return value.isoformat(timespec="minutes") if value is not None else None


AdminSession = Callable[..., AbstractAsyncContextManager[Admin]]


async def _commune_in_scope(admin: Admin, code: str) -> Area:
    """The commune of `code` if the official's scope covers it: NotFound, or Forbidden."""
    try:
        commune = await areas.get_by_code(admin.db, code)
    except areas.AreaError:
        raise NotFound from None
    if commune.kind is not AreaKind.commune:
        raise DashboardError(texts.NOT_A_COMMUNE)
    await _require_covers(admin, commune)
    return commune


async def _require_covers(admin: Admin, area: Area) -> None:
    if not await officials.covers(admin.db, admin.actor.official, area):
        raise Forbidden(texts.FORBIDDEN_SCOPE)


def _explain_area(error: areas.AreaError) -> str:
    if isinstance(error, areas.DuplicateAreaName):
        return texts.SUBAREA_DUPLICATE.format(
            commune=error.commune.name, name=error.existing.name, code=error.existing.code
        )
    if "longer than" in str(error):
        return texts.SUBAREA_NAME_TOO_LONG.format(limit=areas.MAX_NAME_LENGTH)
    if "is empty" in str(error):
        return texts.SUBAREA_NAME_EMPTY
    return texts.explain(error)


def _register_areas(router: APIRouter, dash: Dashboard, admin_session: AdminSession) -> None:
    """Villages, ports and the coastal flag of a commune (GET /admin/areas?commune=<code>)."""

    def editor_session(request: Request, *, write: bool) -> AbstractAsyncContextManager[Admin]:
        return admin_session(request, write=write, check=require_area_editor)

    async def page(
        request: Request, *, error: str | None = None, status: int = 200,
        commune_code: str | None = None, name: str = "", kind: str = "village",
    ) -> Response:  # fmt: skip
        query = request.query_params.get("q", "")[:80]
        code = commune_code or request.query_params.get("commune", "").strip()
        async with editor_session(request, write=False) as admin:
            actor = admin.actor
            if not code and actor.scope is not None and actor.scope.kind is AreaKind.commune:
                code = actor.scope.code  # a commune editor has only the one commune
            commune = await _commune_in_scope(admin, code) if code else None
            found: list[areas.AreaMatch] = []
            if query.strip():
                province_id = (
                    actor.scope.id
                    if actor.scope is not None and actor.scope.kind is AreaKind.province
                    else None
                )
                matches = await areas.search(
                    admin.db, query, kinds=(AreaKind.commune,), province_id=province_id, limit=20
                )
                found = [m for m in matches if await officials.covers(
                    admin.db, actor.official, m.area)]  # fmt: skip
            rows = await areas.subareas(admin.db, commune) if commune is not None else []
            province = (
                await admin.db.get(Area, commune.province_id)
                if commune is not None and commune.province_id is not None
                else None
            )
        return dash.render(
            request, "dashboard/admin_areas.html",
            {"commune": commune, "province": province, "rows": rows, "q": query,
             "found": found, "error": error, "values": {"name": name, "kind": kind},
             "kinds": texts.SUBAREA_KINDS,
             "can_coastal": actor.official.role in COASTAL_EDITORS},
            actor=actor, status_code=status,
        )  # fmt: skip

    @router.get("/admin/areas")
    @dash.view
    async def areas_page(request: Request) -> Response:
        return await page(request)

    @router.post("/admin/areas/{commune_code}/subareas")
    @dash.view
    async def subarea_add(request: Request, commune_code: str) -> Response:
        form = await dash.form(request)
        name, kind_value = form_text(form, "name"), form_text(form, "kind")
        try:
            kind = AreaKind(kind_value)
        except ValueError:
            raise DashboardError(texts.BAD_CHOICE) from None
        if kind not in areas.SUBAREA_KINDS:
            raise DashboardError(texts.BAD_CHOICE)
        error: str | None = None
        async with editor_session(request, write=True) as admin:
            commune = await _commune_in_scope(admin, commune_code)
            try:
                area = await areas.add_subarea(admin.db, commune.code, name, kind)
            except areas.AreaError as exc:
                error = _explain_area(exc)
            else:
                await admin.audit(
                    f"area.add_{kind.value}", area, {"code": area.code, "name": area.name}
                )
        if error is not None:  # after the session closed, as for accounts above
            return await page(
                request, error=error, status=400, commune_code=commune.code, name=name,
                kind=kind.value,
            )  # fmt: skip
        return dash.redirect(f"/admin/areas?commune={commune.code}", "subarea_added")

    @router.post("/admin/areas/subareas/{area_id}")
    @dash.view
    async def subarea_rename(request: Request, area_id: int) -> Response:
        form = await dash.form(request)
        error: str | None = None
        async with editor_session(request, write=True) as admin:
            area = await admin.get(Area, area_id)
            # The village's own place decides, whatever commune the form claims.
            await _require_covers(admin, area)
            commune_code = area.code.partition(".")[0]
            try:
                old = await areas.rename_subarea(admin.db, area, form_text(form, "name"))
            except areas.AreaError as exc:
                error = _explain_area(exc)
            else:
                if old != area.name:
                    await admin.audit(
                        "area.rename", area, {"code": area.code, "before": old, "after": area.name}
                    )
        if error is not None:
            return await page(request, error=error, status=400, commune_code=commune_code)
        return dash.redirect(f"/admin/areas?commune={commune_code}", "subarea_renamed")

    @router.post("/admin/areas/{commune_code}/coastal")
    @dash.view
    async def commune_coastal(request: Request, commune_code: str) -> Response:
        form = await dash.form(request)
        coastal = form_text(form, "coastal") == "1"
        async with editor_session(request, write=True) as admin:
            if admin.actor.official.role not in COASTAL_EDITORS:
                raise Forbidden(texts.COASTAL_ROLE_ONLY)
            commune = await _commune_in_scope(admin, commune_code)
            if commune.coastal != coastal:
                await areas.set_coastal(admin.db, [commune.code], coastal=coastal)
                action = "area.coastal_on" if coastal else "area.coastal_off"
                await admin.audit(action, commune, {"code": commune.code})
        return dash.redirect(f"/admin/areas?commune={commune.code}", "coastal_saved")
