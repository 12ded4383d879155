"""Bulletin pages: the list, the editor with its preview, approval, scheduling, cancelling."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from broadcasts import (
    areas,
    audiences,
    bulletins,
    cap,
    cap_import,
    officials,
    readout,
    schedules,
    zns,
)
from broadcasts.bulletins import BulletinError, ScopeError
from db.models import (
    Area,
    Bulletin,
    BulletinArea,
    BulletinState,
    Official,
    Priority,
    Schedule,
    Topic,
)
from db.text import split_message
from haidang.stores import audio_store
from web.cap import alert_path
from web.dashboard import editor, texts
from web.dashboard.cache import TtlCache
from web.dashboard.common import (
    Actor,
    Dashboard,
    DashboardError,
    Forbidden,
    NotFound,
    form_text,
    ordered_topics,
    parse_local,
    scope_condition,
)
from web.downloads import stored_file

log = logging.getLogger(__name__)

PAGE_SIZE = 50
TELEGRAM_LIMIT = 4096
ZALO_LIMIT = 2000
# What the sender puts before the title (broadcasts/sender.py), so previews count the same.
MARKS = {Priority.urgent: "🚨", Priority.routine: "📢"}
NEXT_RUNS_SHOWN = 5


def visible(actor: Actor) -> ColumnElement[bool]:
    """Bulletins the official may see: their own, and others' (not drafts) in their scope.

    Drafts imported from CAP sources (written by cap_import's account) are everyone's in
    their scope: one official takes such a draft over (cap_views) to edit and submit it.
    """
    me = actor.official.id
    not_draft = or_(
        Bulletin.state != BulletinState.draft,
        Bulletin.author_id == me,
        Bulletin.author_id == cap_import.import_account(),
    )
    if actor.is_admin:
        return not_draft
    in_scope = (
        select(BulletinArea.bulletin_id)
        .join(Area, Area.id == BulletinArea.area_id)
        .where(scope_condition(actor, reaching=True))
    )
    return and_(not_draft, or_(Bulletin.author_id == me, Bulletin.id.in_(in_scope)))


async def load_visible(db: AsyncSession, actor: Actor, bulletin_id: int) -> Bulletin:
    bulletin = await db.scalar(select(Bulletin).where(Bulletin.id == bulletin_id, visible(actor)))
    if bulletin is None:
        raise NotFound
    return bulletin


def chat_text(bulletin_title: str, body: str, priority: Priority) -> str:
    return f"{MARKS[priority]} {bulletin_title}\n\n{body}"


def _chat_preview(text: str, label: str, language: str) -> dict[str, Any]:
    """One language's chat text: its Telegram parts (as shown), length and parts per platform."""
    return {
        "label": label, "language": language, "length": len(text),
        "telegram_parts": split_message(text, TELEGRAM_LIMIT),
        "zalo_count": len(split_message(text, ZALO_LIMIT)),
    }  # fmt: skip


def _scope_denied(actor: Actor, error: ScopeError, what: str) -> Forbidden:
    # The English message names areas and the username: fine for the server log.
    log.warning("dashboard: official %d refused (%s): %s", actor.official.id, what, error)
    return Forbidden(texts.FORBIDDEN_SCOPE)


async def _areas_of(db: AsyncSession, bulletin_ids: list[int]) -> dict[int, list[Area]]:
    found: dict[int, list[Area]] = {bid: [] for bid in bulletin_ids}
    if not bulletin_ids:
        return found
    rows = await db.execute(
        select(BulletinArea.bulletin_id, Area)
        .join(Area, Area.id == BulletinArea.area_id)
        .where(BulletinArea.bulletin_id.in_(bulletin_ids))
        .order_by(Area.code)
    )
    for bulletin_id, area in rows.all():
        found[bulletin_id].append(area)
    return found


def _canonical(code: str) -> str:
    try:
        return areas.canonical_code(code)
    except areas.AreaError:
        return code.strip()


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def register(router: APIRouter, dash: Dashboard) -> None:
    """Add the bulletin routes to the dashboard router."""
    # Where `haidang bulletin create --photo` puts photos too, so both reach the senders.
    photos = audio_store(dash.settings)
    # A recipient count is a pass over the whole audience (0.2-0.4 s at 100,000 on a busy
    # machine): computed at most once a minute per audience, shared by equal audiences.
    previews: TtlCache[audiences.Preview] = TtlCache(60.0)

    @router.get("/bulletins")
    @dash.view
    async def bulletin_list(request: Request) -> Response:
        params = request.query_params
        state = params.get("state", "")
        topic = params.get("topic", "")
        area_code = params.get("area", "").strip()
        date_from, date_to = _date(params.get("from", "")), _date(params.get("to", ""))
        try:
            page = max(int(params.get("page", "1")), 1)
        except ValueError:
            page = 1
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            conditions: list[ColumnElement[bool]] = [visible(actor)]
            if state in texts.BULLETIN_STATES:
                conditions.append(Bulletin.state == BulletinState(state))
            if topic:
                conditions.append(
                    Bulletin.topic_id.in_(select(Topic.id).where(Topic.slug == topic))
                )
            if area_code:
                with_area = (
                    select(BulletinArea.bulletin_id)
                    .join(Area, Area.id == BulletinArea.area_id)
                    .where(Area.code == _canonical(area_code))
                )
                conditions.append(Bulletin.id.in_(with_area))
            if date_from is not None:
                start = dt.datetime.combine(date_from, dt.time(), dash.tz)
                conditions.append(Bulletin.created_at >= start)
            if date_to is not None:
                end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dash.tz)
                conditions.append(Bulletin.created_at < end)
            rows = (
                await db.execute(
                    select(Bulletin, Topic.name, Official.username)
                    .outerjoin(Topic, Topic.id == Bulletin.topic_id)
                    .join(Official, Official.id == Bulletin.author_id)
                    .where(*conditions)
                    .order_by(Bulletin.created_at.desc(), Bulletin.id.desc())
                    .limit(PAGE_SIZE + 1)
                    .offset((page - 1) * PAGE_SIZE)
                )
            ).all()
            more = len(rows) > PAGE_SIZE
            rows = rows[:PAGE_SIZE]
            area_map = await _areas_of(db, [row[0].id for row in rows])
            topics = await ordered_topics(db, active_only=False)
        items = [
            {"bulletin": b, "topic": topic_name, "author": author, "areas": area_map[b.id]}
            for b, topic_name, author in rows
        ]
        filters = {
            "state": state,
            "topic": topic,
            "area": area_code,
            "from": params.get("from", ""),
            "to": params.get("to", ""),
        }
        query = urlencode({k: v for k, v in filters.items() if v})
        return dash.render(
            request,
            "dashboard/bulletins.html",
            {"items": items, "topics": topics, "filters": filters, "page": page, "more": more,
             "query": query},
            actor=actor,
        )  # fmt: skip

    async def _editor(
        request: Request,
        db: AsyncSession,
        actor: Actor,
        values: dict[str, Any],
        error: str | None = None,
        status_code: int = 200,
        editing: Bulletin | None = None,
    ) -> Response:
        chosen = await _chosen_areas(db, values.get("areas", []))
        updating = None
        if values.get("supersedes"):
            updating = await _earlier(db, actor, values["supersedes"])
        return dash.render(
            request,
            "dashboard/bulletin_new.html",
            {"topics": await ordered_topics(db), "values": values, "error": error, "chosen": chosen,
             "roles": texts.SUBSCRIBER_ROLES, "platforms": texts.AUDIENCE_PLATFORMS,
             "languages": texts.TRANSLATION_LANGUAGES, "limits": editor.LIMITS,
             "marks": MARKS, "editing": editing, "updating": updating,
             "max_photo_mb": editor.MAX_PHOTO_BYTES // 1_000_000,
             "zns_templates": await zns.enabled_templates(db)},
            actor=actor, status_code=status_code,
        )  # fmt: skip

    @router.get("/bulletins/new")
    @dash.view
    async def bulletin_new(request: Request) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            if actor.official.role not in bulletins.AUTHORS:
                raise Forbidden(texts.FORBIDDEN)
            values = editor.blank_values([actor.scope.code] if actor.scope is not None else [])
            return await _editor(request, db, actor, values)

    async def _earlier(db: AsyncSession, actor: Actor, bulletin_id: str | int) -> Bulletin:
        """The bulletin an update follows, if the official may see it."""
        try:
            return await load_visible(db, actor, int(bulletin_id))
        except (ValueError, NotFound):
            raise DashboardError(texts.BAD_CHOICE) from None

    @router.get("/bulletins/{bulletin_id}/update")
    @dash.view
    async def bulletin_update_form(request: Request, bulletin_id: int) -> Response:
        """The editor of an update of a warning, filled from it (bulletins._check_update
        says on saving whether it may be updated)."""
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            if actor.official.role not in bulletins.AUTHORS:
                raise Forbidden(texts.FORBIDDEN)
            earlier = await load_visible(db, actor, bulletin_id)
            values = await editor.update_values(db, earlier, dash.tz, dash.now())
            return await _editor(request, db, actor, values)

    async def _editable(db: AsyncSession, actor: Actor, bulletin_id: int) -> Bulletin:
        bulletin = await load_visible(db, actor, bulletin_id)
        if bulletin.author_id != actor.official.id and not actor.is_admin:
            raise Forbidden(texts.NOT_YOUR_DRAFT)
        if bulletin.state not in bulletins.EDITABLE_STATES:
            raise DashboardError(texts.NOT_EDITABLE)
        return bulletin

    async def _save(request: Request, bulletin_id: int | None) -> Response:
        """Create a bulletin (`bulletin_id` None) or rewrite a draft from the editor's form."""
        form = await dash.form(request)
        values = editor.form_values(form)
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await _editable(db, actor, bulletin_id) if bulletin_id else None
            if actor.official.role not in bulletins.AUTHORS:
                raise Forbidden(texts.FORBIDDEN)  # before a photo is stored for nothing
            try:
                checked = await editor.checked(form, values, photos, dash.tz)
                submit = form_text(form, "action") == "submit"
                content = editor.domain_arguments(values, checked, now=dash.now(), submit=submit)
                if bulletin is None:
                    earlier = None
                    if values["supersedes"]:
                        earlier = await _earlier(db, actor, values["supersedes"])
                    bulletin = await bulletins.create(
                        db, author=actor.official, supersedes=earlier, **content
                    )
                    notice = "created"
                else:
                    await bulletins.edit(db, bulletin, editor=actor.official, **content)
                    notice = "edited"
            except ScopeError as error:
                raise _scope_denied(actor, error, "edit" if bulletin_id else "create") from None
            except (BulletinError, DashboardError) as error:
                # Every check precedes the first write: closing the session discards nothing.
                return await _editor(
                    request, db, actor, values, _message_of(error), 400, editing=bulletin
                )
            if bulletin.state is BulletinState.pending_approval:
                notice = "submitted"
            saved_id = bulletin.id
            await db.commit()
        return dash.redirect(f"/bulletins/{saved_id}", notice)

    @router.post("/bulletins")
    @dash.view
    async def bulletin_create(request: Request) -> Response:
        return await _save(request, None)

    @router.get("/bulletins/{bulletin_id}/edit")
    @dash.view
    async def bulletin_edit_form(request: Request, bulletin_id: int) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await _editable(db, actor, bulletin_id)
            values = await editor.bulletin_values(db, bulletin, dash.tz)
            return await _editor(request, db, actor, values, editing=bulletin)

    @router.post("/bulletins/{bulletin_id}/edit")
    @dash.view
    async def bulletin_update(request: Request, bulletin_id: int) -> Response:
        return await _save(request, bulletin_id)

    @router.get("/bulletins/{bulletin_id}/photo")
    @dash.view
    async def bulletin_photo(request: Request, bulletin_id: int) -> Response:
        """The bulletin's photo, for the editor and the preview (same visibility as the page)."""
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            key = bulletin.photo_path
        if key is None:
            raise NotFound
        media_type = "image/png" if key.endswith(".png") else "image/jpeg"
        headers = {"Cache-Control": "private"}
        path = photos.path_for(key)
        if path is not None:  # a local store
            if not await asyncio.to_thread(path.is_file):
                raise NotFound
            return FileResponse(path, media_type=media_type, headers=headers)
        # An object store: streamed through the dashboard (no signed URL to hand out: the
        # photo stays behind the official's session). The key is the photo's hash.
        etag = '"' + key.rsplit("/", 1)[-1].split(".", 1)[0] + '"'
        response = await stored_file(
            request, photos, key, etag=etag, media_type=media_type, headers=headers
        )
        if response is None:
            raise NotFound
        return response

    @router.get("/bulletins/{bulletin_id}")
    @dash.view
    async def bulletin_detail(request: Request, bulletin_id: int) -> Response:
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            audience = await bulletins.audience_areas(db, bulletin.id)
            topic = await db.get(Topic, bulletin.topic_id) if bulletin.topic_id else None
            author = await db.get_one(Official, bulletin.author_id)
            approver = (
                await db.get(Official, bulletin.approved_by_id) if bulletin.approved_by_id else None
            )
            preview = None
            if bulletin.state in {
                BulletinState.draft, BulletinState.pending_approval, BulletinState.approved,
                BulletinState.scheduled, BulletinState.rejected,
            }:  # fmt: skip
                key = audiences.audience_key(bulletin, [area.id for area in audience])
                cached = await previews.get(key, lambda: audiences.preview(db, bulletin))
                preview = cached.value
            rows = (
                await db.scalars(
                    select(Schedule)
                    .where(Schedule.bulletin_id == bulletin.id)
                    .order_by(Schedule.id)
                )
            ).all()
            covered = all([await officials.covers(db, actor.official, a) for a in audience])
            # The page's one query for translations (the detail page is benchmarked).
            translated = await bulletins.translations_of(db, bulletin.id)
            # The warning it updates and the updates of it, for links both ways.
            line = (
                await db.scalars(
                    select(Bulletin)
                    .where(
                        or_(
                            Bulletin.id == bulletin.supersedes_id,
                            Bulletin.supersedes_id == bulletin.id,
                        )
                    )
                    .order_by(Bulletin.id)
                )
            ).all()
            relay = await readout.for_bulletin(db, bulletin, dash.tz)  # urgent ones only
            # What its ZNS and SMS steps would cost if nobody acknowledged (chains only).
            phone = (
                await zns.phone_preview(db, bulletin, tz=dash.tz, relay=relay)
                if bulletin.fallback_platforms
                else None
            )
        now = dash.now()
        schedule_rows = []
        for row in rows:
            upcoming: list[dt.datetime] = []
            if row.cron and row.active:
                upcoming = schedules.next_fire_times(
                    row.cron, dash.tz, max(now, row.next_fire_at or now) - dt.timedelta(seconds=1),
                    NEXT_RUNS_SHOWN, row.until,
                )  # fmt: skip
            schedule_rows.append({"row": row, "upcoming": upcoming})
        text = chat_text(bulletin.title, bulletin.body, bulletin.priority)
        # Each translation as the sender sends it to a subscriber who chose that language.
        translations = [
            _chat_preview(
                chat_text(t.title, t.body, bulletin.priority),
                texts.TRANSLATION_LANGUAGES.get(t.language, t.language),
                t.language,
            )
            for t in translated
        ]
        has_cap = cap.has_alert(bulletin, topic.slug if topic else None)
        role = actor.official.role
        updated_by = [row for row in line if row.supersedes_id == bulletin.id]
        mine = bulletin.author_id == actor.official.id
        can = {
            "submit": bulletin.state in bulletins.EDITABLE_STATES and (mine or actor.is_admin),
            "review": bulletin.state is BulletinState.pending_approval
            and not mine and role in bulletins.APPROVERS and covered,
            "schedule": bulletin.state in schedules.SCHEDULABLE_STATES
            and role in bulletins.AUTHORS | bulletins.APPROVERS and covered,
            "cancel": bulletin.state not in bulletins.FINAL_STATES
            and role in bulletins.AUTHORS | bulletins.APPROVERS and covered,
            # A live warning with no approved update yet (drafts of one may exist).
            "write_update": has_cap and role in bulletins.AUTHORS and covered
            and bulletin.state not in {BulletinState.cancelled, BulletinState.expired}
            and not any(row.approved_at is not None for row in updated_by),
        }  # fmt: skip
        return dash.render(
            request,
            "dashboard/bulletin_detail.html",
            {"b": bulletin, "audience": audience, "topic": topic, "author": author,
             "approver": approver, "preview": preview, "schedules": schedule_rows,
             "vietnamese": _chat_preview(text, texts.VIETNAMESE, "vi"),
             "translations": translations, "limits": (TELEGRAM_LIMIT, ZALO_LIMIT), "can": can,
             "estimate": texts.duration(preview.estimated_seconds) if preview else "",
             "now_local": now.astimezone(dash.tz).strftime("%Y-%m-%dT%H:%M"),
             "cap_url": alert_path(bulletin.id) if has_cap else None,
             "imported_by": cap_import.SYSTEM_USERNAME,
             "updates": [row for row in line if row.supersedes_id == bulletin.id],
             "updated": next((row for row in line if row.id == bulletin.supersedes_id), None),
             "readout": relay, "readout_limits": (readout.SHORT_LIMIT, int(readout.SPOKEN_LIMIT)),
             "readout_estimate": texts.duration(relay.spoken_seconds) if relay else "",
             "phone": phone},
            actor=actor,
        )  # fmt: skip

    async def _act(request: Request, bulletin_id: int, action: str) -> Response:
        form = await dash.form(request)
        now = dash.now()
        async with dash.sessions.begin() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            by = actor.official
            try:
                if action == "submit":
                    await bulletins.submit(db, bulletin, by, now, via="web")
                elif action == "approve":
                    await bulletins.approve(db, bulletin, by, now, via="web")
                elif action == "reject":
                    comment = form_text(form, "comment").strip()
                    if not comment:
                        raise DashboardError(texts.REJECT_COMMENT_NEEDED)
                    await bulletins.reject(db, bulletin, by, comment, now, via="web")
                elif action == "cancel":
                    await bulletins.cancel(db, bulletin, by, now, via="web")
                elif action == "schedule":
                    await _schedule(db, form, bulletin, actor, now)
            except ScopeError as error:
                raise _scope_denied(actor, error, action) from None
            except BulletinError as error:
                raise DashboardError(texts.explain(error)) from None
        notices = {"submit": "submitted", "approve": "approved", "reject": "rejected",
                   "cancel": "cancelled", "schedule": "scheduled"}  # fmt: skip
        return dash.redirect(f"/bulletins/{bulletin_id}", notices[action])

    async def _schedule(
        db: AsyncSession, form: FormData, bulletin: Bulletin, actor: Actor, now: dt.datetime
    ) -> None:
        mode = form_text(form, "mode", "now")
        at = cron = until = None
        if mode == "at":
            at = parse_local(form_text(form, "at"), dash.tz)
            if at is None:
                raise DashboardError(texts.BAD_DATETIME)
        elif mode == "cron":
            cron = form_text(form, "cron").strip()
            until = parse_local(form_text(form, "until"), dash.tz)
        elif mode != "now":
            raise DashboardError(texts.BAD_CHOICE)
        await schedules.schedule(
            db, bulletin, actor.official, now=now, tz=dash.tz, at=at, cron=cron, until=until,
            via="web",
        )  # fmt: skip

    for action in ("submit", "approve", "reject", "cancel", "schedule"):
        router.add_api_route(
            f"/bulletins/{{bulletin_id}}/{action}",
            dash.view(_action_endpoint(_act, action)),
            methods=["POST"],
            name=f"bulletin_{action}",
        )

    @router.get("/bulletins/{bulletin_id}/readout.json")
    @dash.view
    async def bulletin_readout(request: Request, bulletin_id: int) -> Response:
        """The radio/VMS read-out of an urgent bulletin (same visibility as the page, like
        progress.json); 404 for a routine bulletin, which has none."""
        async with dash.sessions() as db:
            actor = await dash.actor(request, db)
            bulletin = await load_visible(db, actor, bulletin_id)
            relay = await readout.for_bulletin(db, bulletin, dash.tz)
        if relay is None:
            raise NotFound
        return JSONResponse(readout.as_json(bulletin.id, relay))

    @router.get("/api/cron")
    @dash.view
    async def cron_preview(request: Request) -> Response:
        """The next firings of a cron expression in local time, for the schedule form."""
        expression = request.query_params.get("expr", "")[:120]
        async with dash.sessions() as db:
            await dash.actor(request, db)
        try:
            until = parse_local(request.query_params.get("until", ""), dash.tz)
            times = schedules.next_fire_times(
                " ".join(expression.split()), dash.tz, dash.now(), NEXT_RUNS_SHOWN, until
            )
        except (BulletinError, DashboardError) as error:
            return JSONResponse({"error": _message_of(error), "runs": []})
        return JSONResponse(
            {
                "error": None,
                "runs": [
                    f"{texts.WEEKDAYS[t.weekday()]} {t:%d/%m/%Y %H:%M}"
                    for t in (x.astimezone(dash.tz) for x in times)
                ],
            }
        )


def _action_endpoint(act: Any, action: str) -> Any:
    # One endpoint per action with the signature FastAPI reads (request, bulletin_id).
    async def endpoint(request: Request, bulletin_id: int) -> Response:
        response: Response = await act(request, bulletin_id, action)
        return response

    endpoint.__name__ = f"bulletin_{action}"
    return endpoint


async def _chosen_areas(db: AsyncSession, codes: list[str]) -> list[dict[str, str]]:
    chosen = []
    for code in codes:
        area = await db.scalar(select(Area).where(Area.code == _canonical(code)))
        chosen.append({"code": code, "name": area.name if area is not None else code})
    return chosen


def _message_of(error: Exception) -> str:
    return error.message if isinstance(error, DashboardError) else texts.explain(error)
