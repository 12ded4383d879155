"""Bulletins: drafting, four-eyes approval, scope checks, cancellation and expiry."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas, audit
from broadcasts.cap import WEATHER_TOPIC, is_warning
from broadcasts.officials import covers
from db.models import (
    PHONE_PLATFORMS,
    Area,
    AudioAsset,
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
    ZnsTemplate,
)
from db.text import nfc

MAX_TITLE = 200
MAX_BODY = 20_000
# Who may write, and who may approve someone else's bulletin (within their own scope).
AUTHORS = {OfficialRole.admin, OfficialRole.province_editor, OfficialRole.commune_editor}
APPROVERS = {OfficialRole.admin, OfficialRole.approver, OfficialRole.province_editor}
FINAL_STATES = {BulletinState.sent, BulletinState.cancelled, BulletinState.expired}
EDITABLE_STATES = {BulletinState.draft, BulletinState.rejected}
# BCP 47 primary language subtags as the bots store them (subscribers.language).
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
# Minutes an urgent bulletin's fallback chain waits for "Đã nhận" before its next step:
# less than 5 reaches people still reading the chat; more than 12 hours is no warning.
FALLBACK_MINUTES = range(5, 721)


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


async def translations_of(session: AsyncSession, bulletin_id: int) -> list[BulletinTranslation]:
    """The bulletin's translations, by language code."""
    rows = await session.scalars(
        select(BulletinTranslation)
        .where(BulletinTranslation.bulletin_id == bulletin_id)
        .order_by(BulletinTranslation.language)
    )
    return list(rows.all())


@dataclass
class _Content:
    """A bulletin's checked, normalised content (shared by create and edit)."""

    title: str
    body: str
    targets: list[Area]
    topic_id: int | None
    translations: dict[str, tuple[str, str]]

    def columns(
        self,
        *,
        urgent: bool,
        expires_at: dt.datetime | None,
        roles: Sequence[SubscriberRole],
        platforms: Sequence[Platform],
        photo_path: str | None,
    ) -> dict[str, Any]:
        """The Bulletin columns that create sets and edit compares and updates."""
        return {
            "title": self.title,
            "body": self.body,
            "topic_id": self.topic_id,
            "priority": Priority.urgent if urgent else Priority.routine,
            "expires_at": expires_at,
            "audience_roles": sorted({r.value for r in roles}),
            "audience_platforms": sorted({p.value for p in platforms}),
            "photo_path": photo_path,
        }


@dataclass(frozen=True)
class FallbackChain:
    """An urgent bulletin's fallback chain: who has not acknowledged `minutes` after a
    step was sent gets the next of `platforms` (in order, each once) at their consented
    phone; `zns_template_id` is the template the ZNS step fills (required with ZNS)."""

    minutes: int
    platforms: tuple[Platform, ...]
    zns_template_id: int | None = None


async def _fallback_columns(
    session: AsyncSession, chain: FallbackChain | None, *, urgent: bool
) -> dict[str, Any]:
    """The chain's Bulletin columns once checked; None (or no platforms) clears them."""
    if chain is None or not chain.platforms:
        return {"fallback_minutes": None, "fallback_platforms": [], "zns_template_id": None}
    if not urgent:
        raise BulletinError("only an urgent bulletin has a fallback chain")
    if any(p not in PHONE_PLATFORMS for p in chain.platforms):
        raise BulletinError("a fallback step is zns or sms")
    if len(set(chain.platforms)) != len(chain.platforms):
        raise BulletinError("each fallback platform at most once")
    if chain.minutes not in FALLBACK_MINUTES:
        raise BulletinError(
            f"fallback minutes must be {FALLBACK_MINUTES.start}-{FALLBACK_MINUTES.stop - 1}"
        )
    template_id = None
    if Platform.zns in chain.platforms:
        if chain.zns_template_id is None:
            raise BulletinError("a ZNS fallback step needs a ZNS template")
        template = await session.get(ZnsTemplate, chain.zns_template_id)
        if template is None or not template.enabled:
            raise BulletinError(f"no enabled ZNS template #{chain.zns_template_id}")
        template_id = template.id
    return {
        "fallback_minutes": chain.minutes,
        "fallback_platforms": [p.value for p in chain.platforms],
        "zns_template_id": template_id,
    }


async def _validated(
    session: AsyncSession,
    author: Official,
    *,
    title: str,
    body: str,
    area_codes: Sequence[str],
    now: dt.datetime,
    topic_slug: str | None,
    expires_at: dt.datetime | None,
    translations: dict[str, tuple[str, str]] | None,
) -> _Content:
    # Every check comes before any write, so a refused call leaves nothing behind.
    title, body = nfc(title.strip()), nfc(body.strip())
    if not title or not body:
        raise BulletinError("a bulletin needs a title and a body")
    if len(title) > MAX_TITLE or len(body) > MAX_BODY:
        raise BulletinError(f"title ≤ {MAX_TITLE} and body ≤ {MAX_BODY} characters")
    clean: dict[str, tuple[str, str]] = {}
    for language, (t_title, t_body) in (translations or {}).items():
        if not LANGUAGE_CODE.fullmatch(language) or language == "vi":
            raise BulletinError(f"translation language must be a code like en or km: {language!r}")
        t_title, t_body = nfc(t_title.strip()), nfc(t_body.strip())
        if not t_title or not t_body:
            raise BulletinError(f"the {language} translation needs a title and a body")
        if len(t_title) > MAX_TITLE or len(t_body) > MAX_BODY:
            raise BulletinError(f"title ≤ {MAX_TITLE} and body ≤ {MAX_BODY} characters")
        clean[language] = (t_title, t_body)
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
    return _Content(title, body, targets, topic_id, clean)


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
    supersedes: Bulletin | None = None,
    fallback: FallbackChain | None = None,
    submit: bool = False,
    via: str = "web",
) -> Bulletin:
    """Write a bulletin (a draft, or submitted for approval when `submit`).

    Every audience area must be inside the author's scope; text is stored NFC. With
    `supersedes`, the bulletin is an update of that approved warning (see _check_update).
    `fallback`: an urgent bulletin's chain to ZNS and SMS (FallbackChain).
    """
    if author.role not in AUTHORS:
        raise BulletinError(f"a {author.role.value} cannot write bulletins")
    content = await _validated(
        session, author, title=title, body=body, area_codes=area_codes, now=now,
        topic_slug=topic_slug, expires_at=expires_at, translations=translations,
    )  # fmt: skip
    chain = await _fallback_columns(session, fallback, urgent=urgent)
    if supersedes is not None:
        await _check_update(session, author, supersedes, urgent=urgent, topic_slug=topic_slug)
    targets = content.targets
    bulletin = Bulletin(
        **content.columns(
            urgent=urgent, expires_at=expires_at, roles=roles, platforms=platforms,
            photo_path=photo_path,
        ),
        **chain,
        state=BulletinState.pending_approval if submit else BulletinState.draft,
        author_id=author.id,
        supersedes_id=supersedes.id if supersedes is not None else None,
        created_at=now,
        updated_at=now,
    )  # fmt: skip
    session.add(bulletin)
    await session.flush()
    session.add_all(BulletinArea(bulletin_id=bulletin.id, area_id=a.id) for a in targets)
    session.add_all(
        BulletinTranslation(bulletin_id=bulletin.id, language=lang, title=t_title, body=t_body)
        for lang, (t_title, t_body) in content.translations.items()
    )
    await session.flush()
    await audit.record(
        session, now=now, official=author, via=via, action="bulletin.create",
        object_type="bulletin", object_id=bulletin.id,
        details={"areas": [a.code for a in targets], "urgent": urgent, "submitted": submit}
        | ({"supersedes": supersedes.id} if supersedes is not None else {})
        | ({"fallback": chain} if chain["fallback_platforms"] else {}),
    )  # fmt: skip
    return bulletin


async def _check_update(
    session: AsyncSession,
    author: Official,
    earlier: Bulletin,
    *,
    urgent: bool,
    topic_slug: str | None,
    pending: Bulletin | None = None,
) -> None:
    """An update must follow the latest message of a live warning, and be a warning itself.

    The earlier bulletin is an approved warning, not cancelled or expired (an ended
    warning gets a new one, not an update), inside the author's scope, and no other
    update of it is approved yet (updates form one line, as CAP's references do).
    `pending` is the update being approved, which does not count against itself.
    """
    if not urgent and topic_slug != WEATHER_TOPIC:
        raise BulletinError("an update of a warning must be urgent or of the weather topic")
    earlier_slug = None
    if earlier.topic_id is not None:
        earlier_slug = await session.scalar(select(Topic.slug).where(Topic.id == earlier.topic_id))
    if earlier.approved_at is None or not is_warning(earlier, earlier_slug):
        raise BulletinError(f"bulletin {earlier.id} is not an approved warning to update")
    if earlier.state in (BulletinState.cancelled, BulletinState.expired):
        raise BulletinError(
            f"bulletin {earlier.id} has ended ({earlier.state.value}); write a new one"
        )
    await _check_scope(session, author, await audience_areas(session, earlier.id), "update")
    later = await session.scalar(
        select(Bulletin.id).where(
            Bulletin.supersedes_id == earlier.id,
            Bulletin.approved_at.is_not(None),
            *([Bulletin.id != pending.id] if pending is not None else []),
        )
    )
    if later is not None:
        raise BulletinError(
            f"bulletin {earlier.id} already has an update (#{later}); update that one"
        )


async def edit(
    session: AsyncSession,
    bulletin: Bulletin,
    *,
    editor: Official,
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
    fallback: FallbackChain | None = None,
    submit: bool = False,
    via: str = "web",
) -> list[str]:
    """Rewrite a draft or a rejected bulletin in place; returns the names of changed fields.

    Only the author (or an admin) edits, and only before approval. Both the old and the
    new audience must be inside the editor's scope. The result is a draft again, or
    submitted for approval when `submit`. A changed title or body drops the rendered
    voice, so the audio part renders the new text. `fallback` replaces the chain (None:
    no chain).
    """
    if bulletin.state not in EDITABLE_STATES:
        raise BulletinError(f"only a draft can be edited (this one is {bulletin.state.value})")
    if editor.role not in AUTHORS:
        raise BulletinError(f"a {editor.role.value} cannot write bulletins")
    if editor.id != bulletin.author_id and editor.role is not OfficialRole.admin:
        raise BulletinError("only the author edits a draft")
    old_targets = await audience_areas(session, bulletin.id)
    await _check_scope(session, editor, old_targets, "edit bulletins")
    content = await _validated(
        session, editor, title=title, body=body, area_codes=area_codes, now=now,
        topic_slug=topic_slug, expires_at=expires_at, translations=translations,
    )  # fmt: skip
    old_translations = {
        t.language: (t.title, t.body) for t in await translations_of(session, bulletin.id)
    }
    chain = await _fallback_columns(session, fallback, urgent=urgent)
    new_values = content.columns(
        urgent=urgent, expires_at=expires_at, roles=roles, platforms=platforms,
        photo_path=photo_path,
    ) | chain  # fmt: skip
    changed = [name for name, value in new_values.items() if getattr(bulletin, name) != value]
    if {a.id for a in old_targets} != {a.id for a in content.targets}:
        changed.append("areas")
        await session.execute(delete(BulletinArea).where(BulletinArea.bulletin_id == bulletin.id))
        session.add_all(
            BulletinArea(bulletin_id=bulletin.id, area_id=a.id) for a in content.targets
        )
    if old_translations != content.translations:
        changed.append("translations")
        await session.execute(
            delete(BulletinTranslation).where(BulletinTranslation.bulletin_id == bulletin.id)
        )
        session.add_all(
            BulletinTranslation(bulletin_id=bulletin.id, language=lang, title=t, body=b)
            for lang, (t, b) in content.translations.items()
        )
    if "title" in changed or "body" in changed:
        # The files stay in the content-addressed store; only the link to this bulletin goes.
        await session.execute(delete(AudioAsset).where(AudioAsset.bulletin_id == bulletin.id))
    for name, value in new_values.items():
        setattr(bulletin, name, value)
    bulletin.state = BulletinState.pending_approval if submit else BulletinState.draft
    bulletin.updated_at = now
    await session.flush()
    await audit.record(
        session, now=now, official=editor, via=via, action="bulletin.edit",
        object_type="bulletin", object_id=bulletin.id,
        details={"changed": changed, "areas": [a.code for a in content.targets],
                 "submitted": submit}
        | ({"fallback": chain} if chain["fallback_platforms"] else {}),
    )  # fmt: skip
    return changed


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
    details: dict[str, Any] = {}
    if bulletin.supersedes_id is not None:
        # Checked again: the earlier warning may have ended or been updated meanwhile.
        earlier = await get(session, bulletin.supersedes_id)
        slug = None
        if bulletin.topic_id is not None:
            slug = await session.scalar(select(Topic.slug).where(Topic.id == bulletin.topic_id))
        await _check_update(
            session, by, earlier, urgent=bulletin.priority is Priority.urgent, topic_slug=slug,
            pending=bulletin,
        )  # fmt: skip
        # The earlier warning's repeats would now send outdated news; runs already going
        # out finish (people then get the update). The scheduler's tick settles its state.
        stopped = await session.execute(
            update(Schedule)
            .where(Schedule.bulletin_id == earlier.id, Schedule.active.is_(True))
            .values(active=False)
        )
        stopped_count = int(stopped.rowcount or 0)  # type: ignore[attr-defined]
        details = {"supersedes": earlier.id, "schedules_stopped": stopped_count}
    bulletin.state = BulletinState.approved
    bulletin.approved_by_id = by.id
    bulletin.approved_at = now
    bulletin.updated_at = now
    await audit.record(
        session, now=now, official=by, via=via, action="bulletin.approve",
        object_type="bulletin", object_id=bulletin.id, details=details or None,
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


def _past_expiry(now: dt.datetime) -> Select[int]:
    return select(Bulletin.id).where(
        Bulletin.expires_at.is_not(None),
        Bulletin.expires_at <= now,
        Bulletin.state.not_in(FINAL_STATES),
    )


async def any_to_expire(session: AsyncSession, now: dt.datetime) -> bool:
    """Whether `expire_due` would expire something now (a read)."""
    return bool(await session.scalar(select(exists(_past_expiry(now)))))


async def expire_due(session: AsyncSession, now: dt.datetime) -> list[int]:
    """Bulletins past their expiry: state expired, schedules off, unsent deliveries expired."""
    due = (await session.scalars(_past_expiry(now))).all()
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
