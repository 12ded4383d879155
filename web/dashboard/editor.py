"""The bulletin editor's form: reading and checking it, translations and the photo upload."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from audio.store import AssetStore
from broadcasts import bulletins
from db.models import (
    PHONE_PLATFORMS,
    Bulletin,
    Platform,
    Priority,
    SubscriberRole,
    Topic,
)
from haidang.media import (
    MAX_PHOTO_BYTES,
    MAX_PHOTO_PIXELS,
    TELEGRAM_PHOTO_RATIO,
    MediaError,
    PhotoDimensionsError,
    PhotoTooBigError,
    store_photo,
)
from web.dashboard import texts
from web.dashboard.common import DashboardError, form_list, form_text, parse_local

__all__ = [
    "LIMITS",
    "MAX_PHOTO_BYTES",
    "blank_values",
    "bulletin_values",
    "checked",
    "domain_arguments",
    "form_values",
    "update_values",
]

# Characters per message on each platform: a text message, and a photo's caption. The
# sender sends a photo on its own, before the text, so the text limits apply to the
# text either way; the caption limits are shown so officials know why.
LIMITS: dict[str, dict[str, int]] = {
    Platform.telegram.value: {"text": 4096, "caption": 1024},
    Platform.zalo.value: {"text": 2000, "caption": 2000},
    Platform.zalo_oa.value: {"text": 2000, "caption": 2000},
}
MAX_TRANSLATIONS = len(texts.TRANSLATION_LANGUAGES)
# A key store_photo made: content-addressed, so naming one means having had the picture.
PHOTO_KEY = re.compile(r"photos/[0-9a-f]{2}/[0-9a-f]{64}\.(?:jpg|png)")
_CHUNK = 256 * 1024
UPDATE_PREFIX = "Cập nhật: "  # an update's title starts so; the official may change it
FALLBACK_MINUTES_DEFAULT = 30  # what the chain's wait starts at in an empty editor


@dataclass
class Checked:
    """The parts of the form the domain takes as typed values."""

    roles: list[SubscriberRole] = field(default_factory=list)
    platforms: list[Platform] = field(default_factory=list)
    expires_at: dt.datetime | None = None
    translations: dict[str, tuple[str, str]] = field(default_factory=dict)
    photo_key: str | None = None
    fallback: bulletins.FallbackChain | None = None


def blank_values(area_codes: list[str]) -> dict[str, Any]:
    """An empty editor, its audience preset to the official's own scope."""
    return {
        "title": "", "body": "", "topic": "", "priority": Priority.routine.value,
        "areas": area_codes, "roles": [], "platforms": [], "expires_at": "",
        "translations": [], "photo_key": "", "supersedes": "",
        "fallback_minutes": str(FALLBACK_MINUTES_DEFAULT), "fallback_steps": [],
        "zns_template": "",
    }  # fmt: skip


async def bulletin_values(db: AsyncSession, bulletin: Bulletin, tz: ZoneInfo) -> dict[str, Any]:
    """The editor's fields filled from a saved bulletin."""
    codes = [area.code for area in await bulletins.audience_areas(db, bulletin.id)]
    topic = ""
    if bulletin.topic_id is not None:
        topic = await db.scalar(select(Topic.slug).where(Topic.id == bulletin.topic_id)) or ""
    rows = await bulletins.translations_of(db, bulletin.id)
    expires = bulletin.expires_at
    return {
        "title": bulletin.title,
        "body": bulletin.body,
        "topic": topic,
        "priority": bulletin.priority.value,
        "areas": codes,
        "roles": list(bulletin.audience_roles),
        "platforms": list(bulletin.audience_platforms),
        "expires_at": expires.astimezone(tz).strftime("%Y-%m-%dT%H:%M") if expires else "",
        "translations": [{"language": t.language, "title": t.title, "body": t.body} for t in rows],
        "photo_key": bulletin.photo_path or "",
        "supersedes": str(bulletin.supersedes_id or ""),
        "fallback_minutes": str(bulletin.fallback_minutes or FALLBACK_MINUTES_DEFAULT),
        "fallback_steps": list(bulletin.fallback_platforms),
        "zns_template": str(bulletin.zns_template_id or ""),
    }


async def update_values(
    db: AsyncSession, earlier: Bulletin, tz: ZoneInfo, now: dt.datetime
) -> dict[str, Any]:
    """The editor of an update of `earlier`: its text, audience and translations to
    change, the title marked as an update, an expiry kept only while still ahead."""
    values = await bulletin_values(db, earlier, tz)
    if not values["title"].startswith(UPDATE_PREFIX):
        values["title"] = (UPDATE_PREFIX + values["title"])[: bulletins.MAX_TITLE]
    if earlier.expires_at is not None and earlier.expires_at <= now:
        values["expires_at"] = ""
    values["supersedes"] = str(earlier.id)
    return values


def form_values(form: FormData) -> dict[str, Any]:
    """The editor's fields as posted (strings), to check or to show again after an error."""
    codes = form_list(form, "areas")
    # Typed codes too ("11914, p31"), so the form works without JavaScript.
    for typed in form_text(form, "area_codes").replace(",", " ").split():
        if typed not in codes:
            codes.append(typed)
    languages, titles, bodies = (
        [v if isinstance(v, str) else "" for v in form.getlist(name)]
        for name in ("tr_language", "tr_title", "tr_body")
    )
    rows = []
    for index in range(max(len(languages), len(titles), len(bodies))):
        row = {
            "language": languages[index] if index < len(languages) else "",
            "title": titles[index] if index < len(titles) else "",
            "body": bodies[index] if index < len(bodies) else "",
        }
        if any(value.strip() for value in (row["title"], row["body"])):
            rows.append(row)  # a row left blank (or only a language picked) is no translation
    return {
        "title": form_text(form, "title"),
        "body": form_text(form, "body"),
        "topic": form_text(form, "topic"),
        "priority": form_text(form, "priority", Priority.routine.value),
        "areas": codes[:200],
        "roles": form_list(form, "roles"),
        "platforms": form_list(form, "platforms"),
        "expires_at": form_text(form, "expires_at"),
        "translations": rows[: MAX_TRANSLATIONS + 1],
        "photo_key": "" if form_text(form, "remove_photo") else form_text(form, "photo_key"),
        "supersedes": form_text(form, "supersedes"),
        # The chain's steps in order: one select per phone platform, blanks skipped.
        "fallback_minutes": form_text(form, "fallback_minutes"),
        "fallback_steps": [
            step
            for index in range(1, len(PHONE_PLATFORMS) + 1)
            if (step := form_text(form, f"fallback_step_{index}").strip())
        ],
        "zns_template": form_text(form, "zns_template"),
    }


async def checked(
    form: FormData, values: dict[str, Any], store: AssetStore, tz: ZoneInfo
) -> Checked:
    """Typed values from the form, or DashboardError with a Vietnamese message.

    An uploaded photo is stored first and its key put in `values`, so a form shown again
    after another error keeps the photo without a second upload.
    """
    try:
        roles = [SubscriberRole(r) for r in values["roles"]]
        platforms = [Platform(p) for p in values["platforms"]]
        if values["priority"] not in {p.value for p in Priority}:
            raise ValueError(values["priority"])
    except ValueError:
        raise DashboardError(texts.BAD_CHOICE) from None
    upload = form.get("photo")
    if isinstance(upload, UploadFile) and upload.filename:
        values["photo_key"] = await _store_upload(upload, store)
    photo_key = values["photo_key"] or None
    # exists() in a worker thread: for an object store it is a request.
    if photo_key is not None and (
        PHOTO_KEY.fullmatch(photo_key) is None
        or not await asyncio.to_thread(store.exists, photo_key)
    ):
        raise DashboardError(texts.BAD_CHOICE)
    translations: dict[str, tuple[str, str]] = {}
    for row in values["translations"]:
        language = row["language"]
        if language not in texts.TRANSLATION_LANGUAGES:
            raise DashboardError(
                texts.TRANSLATION_INCOMPLETE if not language else texts.TRANSLATION_LANGUAGE_BAD
            )
        if language in translations:
            raise DashboardError(texts.TRANSLATION_DUPLICATE)
        if not row["title"].strip() or not row["body"].strip():
            raise DashboardError(texts.TRANSLATION_INCOMPLETE)
        translations[language] = (row["title"], row["body"])
    return Checked(
        roles=roles,
        platforms=platforms,
        expires_at=parse_local(values["expires_at"], tz),
        translations=translations,
        photo_key=photo_key,
        fallback=_fallback(values),
    )


def _fallback(values: dict[str, Any]) -> bulletins.FallbackChain | None:
    """The chain as typed values (None without steps); bulletins checks the rest."""
    if not values["fallback_steps"]:
        return None
    try:
        steps = tuple(Platform(step) for step in values["fallback_steps"])
    except ValueError:
        raise DashboardError(texts.BAD_CHOICE) from None
    try:
        minutes = int(values["fallback_minutes"].strip())
    except ValueError:
        raise DashboardError(texts.FALLBACK_MINUTES_BAD) from None
    template = values["zns_template"].strip()
    if template and not template.isdigit():
        raise DashboardError(texts.BAD_CHOICE)
    return bulletins.FallbackChain(
        minutes=minutes, platforms=steps, zns_template_id=int(template) if template else None
    )


def domain_arguments(
    values: dict[str, Any], checked: Checked, *, now: dt.datetime, submit: bool
) -> dict[str, Any]:
    """The keyword arguments bulletins.create and bulletins.edit share, from the form."""
    return {
        "title": values["title"],
        "body": values["body"],
        "area_codes": values["areas"],
        "now": now,
        "topic_slug": values["topic"] or None,
        "roles": checked.roles,
        "platforms": checked.platforms,
        "urgent": values["priority"] == Priority.urgent.value,
        "expires_at": checked.expires_at,
        "translations": checked.translations,
        "photo_path": checked.photo_key,
        "fallback": checked.fallback,
        "submit": submit,
        "via": "web",
    }


async def _store_upload(upload: UploadFile, store: AssetStore) -> str:
    # Read in chunks and stop past the limit: a huge upload never sits in memory whole.
    with tempfile.TemporaryDirectory(prefix="haidang-photo-") as work:
        path = Path(work) / "upload"
        size = 0
        with path.open("wb") as out:
            while chunk := await upload.read(_CHUNK):
                size += len(chunk)
                if size > MAX_PHOTO_BYTES:
                    raise DashboardError(
                        texts.PHOTO_TOO_BIG.format(mb=MAX_PHOTO_BYTES // 1_000_000)
                    )
                out.write(chunk)
        try:
            # Decoding, re-encoding and hashing up to 52 megapixels: off the event loop.
            return await asyncio.to_thread(store_photo, store, path)
        except PhotoTooBigError:
            # Under the limit as uploaded, over it re-encoded (a PNG squeezed harder).
            raise DashboardError(
                texts.PHOTO_TOO_BIG.format(mb=MAX_PHOTO_BYTES // 1_000_000)
            ) from None
        except PhotoDimensionsError:
            raise DashboardError(
                texts.PHOTO_DIMENSIONS_BAD.format(
                    mp=MAX_PHOTO_PIXELS // 1_000_000, ratio=TELEGRAM_PHOTO_RATIO
                )
            ) from None
        except MediaError:
            # Not a JPEG or PNG, or one that does not decode (truncated, a disguised script).
            raise DashboardError(texts.PHOTO_NOT_IMAGE) from None
