"""CAP ingestion: configured sources, safe fetching and parsing, each new alert as a draft.

An administrator adds CAP sources (an ATOM feed whose entries link CAP 1.2 messages, as
our own /cap/*.atom, or the URL of one bare CAP message). The scheduler role polls each
enabled source at its interval (haidang.runtime.CapImportPart, one process by lease):

- Fetching: http(s) only, a timeout, at most MAX_BYTES per document, a conditional GET
  (ETag / Last-Modified) for the feed; the validators are kept only when every entry of
  the feed was handled, so an entry that failed is fetched again next time.
- Parsing: defusedxml with DTDs forbidden, so entity expansion ("billion laughs") and
  external entities (XXE) are refused before anything is read; a refused document is an
  error on the source, nothing else.
- Each message is seen once per (sender, identifier) (`cap_imports`, unique), whatever
  the source or the poll. An Alert or Update becomes a *draft* bulletin in the communes
  and provinces it names: geocodes VN-XA / VN-TINH first, else its areaDesc names
  compared without diacritics, else the source's default area, else it is skipped with
  the reason. Nothing is ever submitted or approved here: four-eyes stays with officials.
- Drafts are written by the inactive account SYSTEM_USERNAME (it cannot sign in). The
  dashboard shows such drafts to every official whose scope reaches their areas; one of
  them takes the draft over (`take_over`: they become its author), edits and submits it,
  and a second official approves it, as for any bulletin.
- A Cancel withdraws the earlier import's bulletin while nobody has approved it yet
  (state cancelled, with the reason); an approved one is never touched, the Cancel is
  recorded (status noted, audit entry) for officials to act on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from sqlalchemy import ScalarSelect, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import areas, audit
from broadcasts.bulletins import (
    AUTHORS,
    EDITABLE_STATES,
    LANGUAGE_CODE,
    MAX_BODY,
    MAX_TITLE,
    BulletinError,
    audience_areas,
)
from broadcasts.cap import CAP_NS, COMMUNE_GEOCODE, PROVINCE_GEOCODE, WEATHER_TOPIC, is_warning
from broadcasts.officials import covers
from db.models import (
    Area,
    AreaKind,
    Bulletin,
    BulletinArea,
    BulletinState,
    BulletinTranslation,
    CapImport,
    CapImportStatus,
    CapSource,
    Official,
    OfficialRole,
    Priority,
    Topic,
)
from db.text import fold, nfc

log = logging.getLogger(__name__)

ATOM_NS: Final = "http://www.w3.org/2005/Atom"
CAP_NAMESPACES: Final = (CAP_NS, "urn:oasis:names:tc:emergency:cap:1.1")
MAX_BYTES: Final = 1_000_000  # a feed or one message; a national feed is far smaller
MAX_ENTRIES: Final = 50  # entries read from one feed body, newest first as feeds list them
TIMEOUT_S: Final = 10.0
MIN_POLL_SECONDS: Final = 10
MAX_POLL_SECONDS: Final = 86_400
MAX_ERROR: Final = 2000
SYSTEM_USERNAME: Final = "cap-import"
SYSTEM_DISPLAY_NAME: Final = "Nhập cảnh báo CAP"
# An argon2 hash never has this form: verify_password answers False, so nobody signs in.
UNUSABLE_PASSWORD: Final = "!"  # noqa: S105 (not a password: no hash has this form)
# CAP urgency × severity that make a bulletin khẩn (urgent); anything else is thường.
URGENT_URGENCY: Final = frozenset({"Immediate", "Expected"})
URGENT_SEVERITY: Final = frozenset({"Extreme", "Severe"})
# CAP categories that belong to the weather/disaster topic (broadcasts.cap.WEATHER_TOPIC).
WEATHER_CATEGORIES: Final = frozenset({"Met", "Geo", "Env", "Fire"})
# Words in front of a place name, folded (an areaDesc may carry them or not).
_DIVISION_WORDS: Final = ("thanh pho", "tp.", "tp", "tinh", "dac khu", "phuong", "xa", "thi tran")
_STILL_UNAPPROVED: Final = (*EDITABLE_STATES, BulletinState.pending_approval)

# What officials read about an imported bulletin (its review comment): Vietnamese copy.
NOTE_IMPORTED: Final = (
    "Nhập tự động từ nguồn CAP «{source}» ({sender}). Cần cán bộ kiểm tra, gửi duyệt."
)
NOTE_UPDATE: Final = " Đây là tin cập nhật của cảnh báo đã nhập trước (bản tin #{bulletin})."
NOTE_NO_VIETNAMESE: Final = " Cảnh báo không có bản tiếng Việt: cần dịch trước khi gửi duyệt."
NOTE_WITHDRAWN: Final = "Nguồn CAP «{source}» đã hủy cảnh báo này ({identifier})."


class CapImportError(ValueError):
    """A source setting, a feed or a CAP message is refused; the message says why."""


# --- parsing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertArea:
    description: str
    geocodes: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AlertInfo:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    headline: str
    description: str
    instruction: str
    expires: dt.datetime | None
    areas: tuple[AlertArea, ...]


@dataclass(frozen=True, slots=True)
class Alert:
    """The parts of a CAP message an import uses."""

    identifier: str
    sender: str
    sent: dt.datetime
    status: str
    msg_type: str
    scope: str
    references: tuple[tuple[str, str], ...]  # (sender, identifier) of earlier messages
    infos: tuple[AlertInfo, ...]


def _parse_xml(body: bytes) -> ET.Element:
    """The root element; CapImportError for malformed XML or any DTD (entities, XXE)."""
    try:
        root: ET.Element = safe_fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise CapImportError(f"refused XML ({type(exc).__name__}: DTDs and entities)") from None
    except ET.ParseError as exc:
        raise CapImportError(f"malformed XML: {exc}") from None
    return root


def _time(value: str, what: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise CapImportError(f"bad CAP time in <{what}>: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise CapImportError(f"CAP time without an offset in <{what}>: {value[:40]!r}")
    return parsed.astimezone(dt.UTC)


def _alert(root: ET.Element) -> Alert:
    ns = root.tag[1:].partition("}")[0]

    def text(parent: ET.Element, tag: str) -> str:
        found = parent.find(f"{{{ns}}}{tag}")
        return nfc((found.text or "").strip()) if found is not None else ""

    def texts(parent: ET.Element, tag: str) -> list[str]:
        return [nfc((e.text or "").strip()) for e in parent.findall(f"{{{ns}}}{tag}")]

    identifier, sender, sent = text(root, "identifier"), text(root, "sender"), text(root, "sent")
    if not identifier or not sender or not sent:
        raise CapImportError("a CAP alert needs <identifier>, <sender> and <sent>")
    if len(identifier) > 255 or len(sender) > 255:
        raise CapImportError("CAP <identifier> or <sender> longer than 255 characters")
    references = []
    for item in text(root, "references").split():
        parts = item.split(",")
        if len(parts) == 3:
            references.append((parts[0], parts[1]))
    infos = []
    for info in root.findall(f"{{{ns}}}info"):
        expires = text(info, "expires")
        infos.append(
            AlertInfo(
                language=text(info, "language") or "en-US",  # CAP's default
                categories=tuple(texts(info, "category")),
                event=text(info, "event"),
                urgency=text(info, "urgency"),
                severity=text(info, "severity"),
                headline=text(info, "headline"),
                description=text(info, "description"),
                instruction=text(info, "instruction"),
                expires=_time(expires, "expires") if expires else None,
                areas=tuple(
                    AlertArea(
                        text(area, "areaDesc"),
                        tuple(
                            (text(g, "valueName"), text(g, "value"))
                            for g in area.findall(f"{{{ns}}}geocode")
                        ),
                    )
                    for area in info.findall(f"{{{ns}}}area")
                ),
            )
        )
    return Alert(
        identifier=identifier, sender=sender, sent=_time(sent, "sent"),
        status=text(root, "status"), msg_type=text(root, "msgType"), scope=text(root, "scope"),
        references=tuple(references), infos=tuple(infos),
    )  # fmt: skip


def parse_alert(body: bytes) -> Alert:
    """A CAP 1.2 (or 1.1) message; CapImportError for anything else or unsafe XML."""
    root = _parse_xml(body)
    if root.tag not in {f"{{{ns}}}alert" for ns in CAP_NAMESPACES}:
        raise CapImportError(f"not a CAP alert: <{root.tag}>")
    return _alert(root)


def feed_links(root: ET.Element, base_url: str) -> list[str]:
    """The CAP message URL of each ATOM entry (at most MAX_ENTRIES), absolute.

    Per entry: a link typed application/cap+xml, else its alternate link, else its first.
    """
    found: list[str] = []
    for entry in root.findall(f"{{{ATOM_NS}}}entry")[:MAX_ENTRIES]:
        links = entry.findall(f"{{{ATOM_NS}}}link")
        chosen = next((x for x in links if "cap+xml" in x.get("type", "")), None)
        alternate = (x for x in links if x.get("rel", "alternate") == "alternate")
        chosen = chosen or next(alternate, None)
        chosen = chosen or (links[0] if links else None)
        if chosen is not None and chosen.get("href"):
            found.append(urljoin(base_url, chosen.get("href", "").strip()))
    return found


# --- sources -------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The URL stripped; CapImportError unless it is an absolute http(s) URL with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise CapImportError(f"a CAP source must be an http(s) URL: {shown_url(url)}")
    return url


def shown_url(url: str) -> str:
    """The URL for logs and pages: no user, password, query or fragment (they may hold keys)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unreadable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:300]


async def add_source(
    session: AsyncSession,
    *,
    name: str,
    url: str,
    now: dt.datetime,
    poll_seconds: int = 300,
    default_area: str | None = None,
    enabled: bool = True,
) -> CapSource:
    """A new source; names are unique, the interval MIN_POLL_SECONDS..MAX_POLL_SECONDS,
    the default area a province or a commune."""
    name = nfc(" ".join(name.split()))
    if not name or len(name) > 120:
        raise CapImportError("a CAP source needs a name of 1-120 characters")
    if await session.scalar(select(CapSource.id).where(CapSource.name == name)):
        raise CapImportError(f"a CAP source named {name!r} already exists")
    if not MIN_POLL_SECONDS <= poll_seconds <= MAX_POLL_SECONDS:
        raise CapImportError(f"the poll interval is {MIN_POLL_SECONDS}-{MAX_POLL_SECONDS} seconds")
    area_id = None
    if default_area:
        area = await areas.get_by_code(session, default_area)
        if area.kind not in (AreaKind.province, AreaKind.commune):
            raise CapImportError("the default area is a province or a commune")
        area_id = area.id
    source = CapSource(
        name=name, url=check_url(url), enabled=enabled, poll_seconds=poll_seconds,
        default_area_id=area_id, created_at=now,
    )  # fmt: skip
    session.add(source)
    await session.flush()
    return source


async def get_source(session: AsyncSession, key: str) -> CapSource:
    """The source by id or by name; CapImportError when there is none."""
    key = key.strip()
    found = await session.scalar(select(CapSource).where(CapSource.name == nfc(key)))
    if found is None and key.isdigit():
        found = await session.get(CapSource, int(key))
    if found is None:
        raise CapImportError(f"no CAP source {key!r}")
    return found


async def remove_source(session: AsyncSession, source: CapSource) -> None:
    """Delete the source; what it imported stays (source NULL), drafts included."""
    await session.execute(
        update(CapImport).where(CapImport.source_id == source.id).values(source_id=None)
    )
    await session.delete(source)
    await session.flush()


async def list_sources(session: AsyncSession) -> list[tuple[CapSource, str | None]]:
    """Every source by name, with its default area's code."""
    rows = await session.execute(
        select(CapSource, Area.code)
        .outerjoin(Area, Area.id == CapSource.default_area_id)
        .order_by(CapSource.name)
    )
    return [(source, code) for source, code in rows.all()]


def due(source: CapSource, now: dt.datetime) -> bool:
    last = source.last_polled_at
    interval = dt.timedelta(seconds=source.poll_seconds)
    return source.enabled and (last is None or now - last >= interval)


# --- the import account and taking drafts over ---------------------------------------------


def import_account() -> ScalarSelect[int]:
    """The id of SYSTEM_USERNAME, as a subquery (the dashboard's visibility filter)."""
    return select(Official.id).where(Official.username == SYSTEM_USERNAME).scalar_subquery()


async def system_official(session: AsyncSession) -> Official:
    """The account imported drafts are written by: inactive, no scope, no usable password."""
    found = await session.scalar(select(Official).where(Official.username == SYSTEM_USERNAME))
    if found is None:
        found = Official(
            username=SYSTEM_USERNAME, display_name=SYSTEM_DISPLAY_NAME,
            password_hash=UNUSABLE_PASSWORD, role=OfficialRole.commune_editor, area_id=None,
            active=False,
        )  # fmt: skip
        session.add(found)
        await session.flush()
    return found


async def is_imported_draft(session: AsyncSession, bulletin: Bulletin) -> bool:
    account = await session.scalar(select(Official.id).where(Official.username == SYSTEM_USERNAME))
    return bulletin.state in EDITABLE_STATES and bulletin.author_id == account


async def take_over(
    session: AsyncSession,
    bulletin: Bulletin,
    official: Official,
    now: dt.datetime,
    via: str = "web",
) -> None:
    """The official becomes the author of an imported draft, to edit and submit it.

    Only an official who writes bulletins and whose scope covers every area of the draft;
    the approval still needs a second official (four-eyes), as for any bulletin.
    """
    if not await is_imported_draft(session, bulletin):
        raise BulletinError("only an imported draft can be taken over")
    if official.role not in AUTHORS:
        raise BulletinError(f"a {official.role.value} cannot write bulletins")
    for area in await audience_areas(session, bulletin.id):
        if not await covers(session, official, area):
            raise BulletinError(f"{official.username} may not write for {area.name} ({area.code})")
    bulletin.author_id = official.id
    bulletin.updated_at = now
    await audit.record(
        session, now=now, official=official, via=via, action="bulletin.take_over",
        object_type="bulletin", object_id=bulletin.id,
    )  # fmt: skip


# --- areas -----------------------------------------------------------------------------------


def _bare(name: str) -> str:
    folded = fold(name)
    for word in _DIVISION_WORDS:
        if folded.startswith(word + " "):
            return folded[len(word) + 1 :].strip()
    return folded


@dataclass
class AreaIndex:
    """Provinces and communes by code and by bare folded name (loaded once per poll)."""

    by_code: dict[str, Area] = field(default_factory=dict)
    provinces: dict[str, Area] = field(default_factory=dict)
    communes: dict[str, list[Area]] = field(default_factory=dict)
    # By the whole folded name, division word included ("xa bien dong").
    communes_full: dict[str, list[Area]] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession) -> AreaIndex:
        index = cls()
        kinds = (AreaKind.province, AreaKind.commune)
        for area in await session.scalars(select(Area).where(Area.kind.in_(kinds))):
            index.by_code[area.code] = area
            if area.kind is AreaKind.province:
                index.provinces[_bare(area.name)] = area
            else:
                index.communes.setdefault(_bare(area.name), []).append(area)
                index.communes_full.setdefault(area.name_folded, []).append(area)
        return index

    def _by_name(self, description: str) -> list[Area]:
        found: list[Area] = []
        for piece in description.split(";"):
            parts = [p.strip() for p in piece.split(",") if p.strip()]
            if not parts:
                continue
            province = self.provinces.get(_bare(parts[-1]))
            if len(parts) == 1:
                # A name alone is a province, or a commune only when named as one ("Xã Biển
                # Đông", not the sea "Biển Đông") and unique across provinces.
                candidates = self.communes_full.get(fold(parts[0]), [])
                if province is not None:
                    found.append(province)
                elif len(candidates) == 1:
                    found.append(candidates[0])
            elif province is not None:
                communes = self.communes.get(_bare(parts[0]), [])
                inside = [c for c in communes if c.province_id == province.id]
                # An unknown commune in a known province is not widened to the province.
                found.extend(inside[:1])
        return found

    def match(self, area: AlertArea) -> list[Area]:
        """Our areas for one CAP area: by geocode if any is ours, else by its names."""
        found: list[Area] = []
        for name, value in area.geocodes:
            code = None
            if name == COMMUNE_GEOCODE and value.isdigit() and len(value) == 5:
                code = value
            elif name == PROVINCE_GEOCODE and value.isdigit() and len(value) <= 2:
                code = f"p{int(value):02d}"
            if code is not None and code in self.by_code:
                found.append(self.by_code[code])
        return found or self._by_name(area.description)


# --- importing -----------------------------------------------------------------------------


def _language(info: AlertInfo) -> str:
    return info.language.split("-")[0].strip().lower()


def _texts(info: AlertInfo) -> tuple[str, str]:
    title = (info.headline or info.event or info.description[:MAX_TITLE]).strip()[:MAX_TITLE]
    body = "\n\n".join(part for part in (info.description, info.instruction) if part)
    return title, (body or title)[:MAX_BODY]


async def _seen(session: AsyncSession, sender: str, identifier: str) -> CapImport | None:
    return await session.scalar(
        select(CapImport).where(CapImport.sender == sender, CapImport.identifier == identifier)
    )


async def _earlier(session: AsyncSession, alert: Alert) -> CapImport | None:
    """The latest import among the messages `alert` references (that became a bulletin)."""
    found: CapImport | None = None
    for sender, identifier in alert.references:
        row = await _seen(session, sender, identifier)
        if row is not None and row.bulletin_id is not None and (found is None or row.id > found.id):
            found = row
    return found


async def import_alert(
    session: AsyncSession,
    source: CapSource,
    alert: Alert,
    now: dt.datetime,
    index: AreaIndex,
) -> CapImport | None:
    """Record one message from `source`; None when it was seen before (any source).

    An Alert or Update becomes a draft bulletin (never submitted); a Cancel withdraws
    the earlier import's bulletin while it is unapproved, else it is only recorded.
    Tests, exercises, acknowledgements and messages with no area of ours are skipped
    with their reason. Every outcome has an audit entry naming the source.
    """
    if await _seen(session, alert.sender, alert.identifier) is not None:
        return None
    row = CapImport(
        source_id=source.id, sender=alert.sender, identifier=alert.identifier, sent=alert.sent,
        msg_type=alert.msg_type[:16], status=CapImportStatus.skipped, imported_at=now,
    )  # fmt: skip
    earlier = await _earlier(session, alert)
    row.references_id = earlier.id if earlier is not None else None
    if alert.status != "Actual":
        row.reason = f"status {alert.status or 'missing'}: not a real alert"
    elif alert.msg_type == "Cancel":
        await _cancel(session, source, alert, row, earlier, now)
    elif alert.msg_type not in ("Alert", "Update"):
        row.reason = f"msgType {alert.msg_type or 'missing'} is not imported"
    elif not alert.infos:
        row.reason = "no <info> block"
    else:
        await _draft(session, source, alert, row, earlier, now, index)
    session.add(row)
    await session.flush()
    details = {
        "source": source.name, "source_id": source.id, "sender": alert.sender,
        "identifier": alert.identifier, "msg_type": alert.msg_type, "status": row.status.value,
        "import_id": row.id,
    } | ({"reason": row.reason} if row.reason else {})  # fmt: skip
    action = {
        CapImportStatus.drafted: "bulletin.import",
        CapImportStatus.withdrawn: "bulletin.import_cancel",
        CapImportStatus.noted: "cap_import.cancel_noted",
        CapImportStatus.skipped: "cap_import.skip",
    }[row.status]
    await audit.record(
        session, now=now, official=None, via="system", action=action,
        object_type="bulletin" if row.bulletin_id else "cap_import",
        object_id=row.bulletin_id or row.id, details=details,
    )  # fmt: skip
    return row


async def _cancel(
    session: AsyncSession,
    source: CapSource,
    alert: Alert,
    row: CapImport,
    earlier: CapImport | None,
    now: dt.datetime,
) -> None:
    if earlier is None or earlier.bulletin_id is None:
        row.reason = "cancels a message that was never imported"
        return
    bulletin = await session.get_one(Bulletin, earlier.bulletin_id)
    row.bulletin_id = bulletin.id
    if bulletin.state in _STILL_UNAPPROVED and bulletin.approved_at is None:
        # Nothing of it went out: withdrawing it takes nothing from the officials.
        bulletin.state = BulletinState.cancelled
        bulletin.cancelled_at = now
        bulletin.updated_at = now
        bulletin.review_comment = NOTE_WITHDRAWN.format(
            source=source.name, identifier=alert.identifier
        )
        row.status = CapImportStatus.withdrawn
    else:
        row.status = CapImportStatus.noted
        row.reason = f"bulletin {bulletin.id} is {bulletin.state.value}: left to officials"


async def _draft(
    session: AsyncSession,
    source: CapSource,
    alert: Alert,
    row: CapImport,
    earlier: CapImport | None,
    now: dt.datetime,
    index: AreaIndex,
) -> None:
    vietnamese = [i for i in alert.infos if _language(i) == "vi"]
    main = vietnamese[0] if vietnamese else alert.infos[0]
    targets: list[Area] = []
    for area in (a for info in alert.infos for a in info.areas):
        targets.extend(t for t in index.match(area) if t not in targets)
    if not targets and source.default_area_id is not None:
        targets = [await session.get_one(Area, source.default_area_id)]
    if not targets:
        described = "; ".join(a.description for i in alert.infos for a in i.areas)[:300]
        row.reason = f"no area of ours (areaDesc: {described or 'none'})"
        return
    expires = min((i.expires for i in alert.infos if i.expires), default=None)
    if expires is not None and expires <= now:
        row.reason = "already expired"
        return
    title, body = _texts(main)
    if not title:
        row.reason = "no headline, event or description"
        return
    urgent = any(i.urgency in URGENT_URGENCY and i.severity in URGENT_SEVERITY for i in alert.infos)
    weather = any(c in WEATHER_CATEGORIES for i in alert.infos for c in i.categories)
    topic_id = None
    if weather:
        topic_id = await session.scalar(select(Topic.id).where(Topic.slug == WEATHER_TOPIC))
    note = NOTE_IMPORTED.format(source=source.name, sender=alert.sender)
    if not vietnamese:
        note += NOTE_NO_VIETNAMESE
    bulletin = Bulletin(
        title=title, body=body, topic_id=topic_id,
        priority=Priority.urgent if urgent else Priority.routine, state=BulletinState.draft,
        author_id=(await system_official(session)).id, expires_at=expires, review_comment=note,
        audience_roles=[], audience_platforms=[], created_at=now, updated_at=now,
    )  # fmt: skip
    if earlier is not None and earlier.bulletin_id is not None:
        before = await session.get_one(Bulletin, earlier.bulletin_id)
        bulletin.review_comment = note + NOTE_UPDATE.format(bulletin=before.id)
        if await _updatable(session, before, bulletin):
            bulletin.supersedes_id = before.id
    session.add(bulletin)
    await session.flush()
    session.add_all(BulletinArea(bulletin_id=bulletin.id, area_id=a.id) for a in targets)
    languages = set()
    for info in alert.infos:
        language = _language(info)
        if info is main or language in languages or not LANGUAGE_CODE.fullmatch(language):
            continue
        if language == "vi":
            continue
        t_title, t_body = _texts(info)
        if t_title:
            languages.add(language)
            session.add(
                BulletinTranslation(
                    bulletin_id=bulletin.id, language=language, title=t_title, body=t_body
                )
            )
    await session.flush()
    row.status = CapImportStatus.drafted
    row.bulletin_id = bulletin.id


async def _updatable(session: AsyncSession, before: Bulletin, update_: Bulletin) -> bool:
    """Whether the new draft may name `before` as the warning it supersedes: an approved
    warning still live, and the draft a warning too (bulletins checks it again at approval)."""
    ended = (BulletinState.cancelled, BulletinState.expired)
    if before.approved_at is None or before.state in ended:
        return False
    slug = None
    if before.topic_id is not None:
        slug = await session.scalar(select(Topic.slug).where(Topic.id == before.topic_id))
    new_slug = WEATHER_TOPIC if update_.topic_id is not None else None
    return is_warning(before, slug) and is_warning(update_, new_slug)


# --- polling -------------------------------------------------------------------------------


@dataclass
class PollReport:
    """What one poll of a source did."""

    not_modified: bool = False
    messages: int = 0  # CAP messages read (new or seen before)
    imported: list[CapImport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Fetched:
    body: bytes | None  # None: 304 Not Modified
    etag: str | None
    last_modified: str | None


async def _fetch(
    client: httpx.AsyncClient, url: str, *, etag: str | None = None, modified: str | None = None
) -> _Fetched:
    check_url(url)
    headers = {"Accept": "application/atom+xml, application/cap+xml, application/xml;q=0.9"}
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    try:
        async with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return _Fetched(None, etag, modified)
            if response.status_code != 200:
                raise CapImportError(f"HTTP {response.status_code} from {shown_url(url)}")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_BYTES:
                raise CapImportError(f"larger than {MAX_BYTES} bytes: {shown_url(url)}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise CapImportError(f"larger than {MAX_BYTES} bytes: {shown_url(url)}")
                chunks.append(chunk)
            return _Fetched(
                b"".join(chunks), response.headers.get("etag"),
                response.headers.get("last-modified"),
            )  # fmt: skip
    except httpx.HTTPError as exc:
        raise CapImportError(f"{type(exc).__name__} fetching {shown_url(url)}") from None


def new_client() -> httpx.AsyncClient:
    """The HTTP client a poller keeps: TIMEOUT_S, at most 3 redirects, no cookies kept."""
    return httpx.AsyncClient(
        timeout=TIMEOUT_S, follow_redirects=True, max_redirects=3,
        headers={"User-Agent": "HaiDang-CAP-import/1"},
    )  # fmt: skip


async def _messages(
    client: httpx.AsyncClient, url: str, body: bytes, report: PollReport
) -> tuple[list[Alert], bool]:
    """The alerts a fetched body holds (itself, or its feed's entries); and whether
    every entry could be read (errors go to `report`)."""
    root = _parse_xml(body)
    if root.tag in {f"{{{ns}}}alert" for ns in CAP_NAMESPACES}:
        return [_alert(root)], True
    if root.tag != f"{{{ATOM_NS}}}feed":
        raise CapImportError(f"neither an ATOM feed nor a CAP alert: <{root.tag[:80]}>")
    alerts: list[Alert] = []
    complete = True
    for link in feed_links(root, url):
        try:
            fetched = await _fetch(client, link)  # no validators sent: never a 304
            alerts.append(parse_alert(fetched.body or b""))
        except CapImportError as exc:
            report.errors.append(str(exc))
            complete = False
    return alerts, complete


async def poll_source(
    sessions: async_sessionmaker[AsyncSession],
    source_id: int,
    client: httpx.AsyncClient,
    now: dt.datetime,
) -> PollReport:
    """Fetch one source and import what is new, in short transactions (none held while
    fetching). Errors are recorded on the source (last_error) and returned, never raised
    for a feed's fault; the source's URL is logged without its query (keys)."""
    report = PollReport()
    async with sessions() as session:
        source = await session.get_one(CapSource, source_id)
        url, etag, modified, name = source.url, source.etag, source.last_modified, source.name
    complete = False
    alerts: list[Alert] = []
    fetched: _Fetched | None = None
    try:
        fetched = await _fetch(client, url, etag=etag, modified=modified)
        if fetched.body is None:
            report.not_modified = True
        else:
            alerts, complete = await _messages(client, url, fetched.body, report)
    except CapImportError as exc:
        report.errors.append(str(exc))
    report.messages = len(alerts)
    async with sessions.begin() as session:
        source = await session.get_one(CapSource, source_id)
        index = await AreaIndex.load(session) if alerts else AreaIndex()
        for alert in alerts:
            row = await import_alert(session, source, alert, now, index)
            if row is not None:
                report.imported.append(row)
        source.last_polled_at = now
        if fetched is not None and (report.not_modified or complete):
            source.etag, source.last_modified = fetched.etag, fetched.last_modified
        if report.errors:
            source.last_error = "; ".join(report.errors)[:MAX_ERROR]
        else:
            source.last_error = None
            source.last_success_at = now
    if report.errors:
        log.warning("CAP source %r (%s): %s", name, shown_url(url), "; ".join(report.errors)[:500])
    elif report.imported:
        log.info("CAP source %r: %d new messages", name, len(report.imported))
    return report


async def poll_due(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    now: dt.datetime,
    *,
    stop: asyncio.Event | None = None,
) -> list[PollReport]:
    """Poll every enabled source whose interval has passed, one after another."""
    async with sessions() as session:
        sources = list((await session.scalars(select(CapSource).order_by(CapSource.id))).all())
    reports: list[PollReport] = []
    for source in sources:
        if stop is not None and stop.is_set():
            break
        if due(source, now):
            reports.append(await poll_source(sessions, source.id, client, now))
    return reports


def describe(rows: Iterable[CapImport]) -> list[str]:
    """One line per import, for the CLI."""
    return [
        f"{r.sender} {r.identifier}: {r.status.value}"
        + (f" (bulletin {r.bulletin_id})" if r.bulletin_id else "")
        + (f": {r.reason}" if r.reason else "")
        for r in rows
    ]


async def recent_imports(session: AsyncSession, limit: int = 50) -> Sequence[CapImport]:
    """The latest imports, newest first."""
    rows = await session.scalars(select(CapImport).order_by(CapImport.id.desc()).limit(limit))
    return rows.all()
