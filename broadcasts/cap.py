"""CAP 1.2 alerts for approved warnings, derived from the bulletin rows (no table of their own).

A warning is an urgent bulletin, or any bulletin of the weather/disaster topic. Once
approved it is published as a CAP message derived from the bulletin alone, so the same
bulletin always gives the same bytes:

- Alert: identifier ``<sender>:bulletin:<id>:alert``, sent at ``approved_at``.
- Update: a bulletin written as an update of an approved warning (``supersedes_id``, a
  storm's next position, say) is published instead as ``...:update``, sent at its own
  approval, ``<references>`` naming every earlier message of its line (the first Alert
  and the Updates since), so a consumer replaces what it showed.
- Cancel: when the bulletin is cancelled after approval; identifier ``...:cancel``, sent at
  ``cancelled_at``, ``<references>`` naming the line's earlier messages and the
  bulletin's own Alert or Update, and the same info blocks so a consumer can still match
  the area.

A published message never changes: ``bulletins.edit`` refuses anything past draft or
rejected, the expiry is fixed at approval (its passing is what ``<expires>`` already
says), and scheduling and sending change who got it, not the warning. A change to a
warning is a new bulletin, approved by a second official like any other: an update
(Update) or, after a cancel, a new warning (Alert). The alert uses only values that
cannot change either: commune and province names and codes of the official map (a
village or port target is published as its commune, since their names can be edited),
and fixed event texts rather than the (renamable) topic name.

Geocodes: ``VN-XA`` holds a commune's five-digit official code, ``VN-TINH`` a province's
two-digit one (the codes of the 2025 map, as in ``Area.code`` without the ``p``). A
province target is one area with the province's code, not its communes one by one.
"""

from __future__ import annotations

import datetime as dt
import enum
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import (
    Area,
    AreaKind,
    Bulletin,
    BulletinArea,
    BulletinState,
    BulletinTranslation,
    Priority,
    Topic,
)

CAP_NS: Final = "urn:oasis:names:tc:emergency:cap:1.2"
MEDIA_TYPE: Final = "application/cap+xml"
WEATHER_TOPIC: Final = "thoi-tiet"  # db/seed.py: "Thời tiết – thiên tai"
COMMUNE_GEOCODE: Final = "VN-XA"
PROVINCE_GEOCODE: Final = "VN-TINH"

# The words of the alerts, reviewed with the rest of the copy: <event> per language, for
# a weather/disaster bulletin and for any other urgent one. A translation in a language
# not listed here uses its own title as the event.
EVENTS: Final[dict[str, dict[str, str]]] = {
    "vi": {"weather": "Thời tiết, thiên tai", "urgent": "Cảnh báo khẩn"},
    "en": {"weather": "Weather and disaster warning", "urgent": "Urgent warning"},
}
CANCEL_NOTE: Final = "Bản tin cảnh báo này đã bị hủy."
MAX_LINE: Final = 200  # earlier messages an Update references at most (a guard, not a rule)


class MsgType(enum.StrEnum):
    alert = "Alert"  # the approved warning
    update = "Update"  # an approved update of an earlier warning; references its line
    cancel = "Cancel"  # cancelled after approval; references the Alert or Update


@dataclass(frozen=True, slots=True)
class AlertArea:
    """One <area>: what it is called and its one geocode."""

    description: str
    geocode_name: str
    code: str


@dataclass(frozen=True, slots=True)
class AlertSource:
    """The rows one warning's CAP messages are built from (the caller loads them)."""

    bulletin: Bulletin
    topic_slug: str | None
    translations: Sequence[BulletinTranslation]
    areas: Sequence[AlertArea]
    # The approved warnings this one updates, oldest first (empty for a first warning).
    earlier: Sequence[Bulletin] = ()

    @property
    def first(self) -> MsgType:
        """The bulletin's own message at approval: Alert, or Update when it updates one."""
        return MsgType.update if self.earlier else MsgType.alert

    def messages(self) -> list[MsgType]:
        """The messages published so far, oldest first: Alert or Update, then Cancel if
        cancelled."""
        if self.bulletin.state is BulletinState.cancelled and self.bulletin.cancelled_at:
            return [self.first, MsgType.cancel]
        return [self.first]

    def references(self, msg_type: MsgType, sender: str, tz: ZoneInfo) -> list[str]:
        """What ``msg_type``'s <references> names: every earlier message it follows."""
        line = [
            reference(sender, bulletin, MsgType.update if position else MsgType.alert, tz)
            for position, bulletin in enumerate(self.earlier)
        ]
        if msg_type is MsgType.cancel:
            line.append(reference(sender, self.bulletin, self.first, tz))
        return line

    @property
    def current(self) -> MsgType:
        """The message that stands now (the last one)."""
        return self.messages()[-1]


def is_warning(bulletin: Bulletin, topic_slug: str | None) -> bool:
    """Urgent, or of the weather/disaster topic: what is published as CAP once approved."""
    return bulletin.priority is Priority.urgent or topic_slug == WEATHER_TOPIC


def has_alert(bulletin: Bulletin, topic_slug: str | None) -> bool:
    """Whether the bulletin has CAP messages: a warning that was approved."""
    return bulletin.approved_at is not None and is_warning(bulletin, topic_slug)


def identifier(sender: str, bulletin_id: int, msg_type: MsgType) -> str:
    return f"{sender}:bulletin:{bulletin_id}:{msg_type.name}"


def sent_at(bulletin: Bulletin, msg_type: MsgType) -> dt.datetime:
    """When the message was issued: approval for the Alert or Update, cancellation for
    the Cancel."""
    stamp = bulletin.cancelled_at if msg_type is MsgType.cancel else bulletin.approved_at
    if stamp is None:
        raise ValueError(f"bulletin {bulletin.id} has no {msg_type.value} message")
    return stamp


def cap_time(value: dt.datetime, tz: ZoneInfo) -> str:
    """CAP's dateTime: local time, whole seconds, numeric offset (2026-12-07T10:00:00+07:00)."""
    return value.astimezone(tz).replace(microsecond=0).isoformat()


def reference(sender: str, bulletin: Bulletin, msg_type: MsgType, tz: ZoneInfo) -> str:
    """The message as <references> names it: "sender,identifier,sent"."""
    sent = cap_time(sent_at(bulletin, msg_type), tz)
    return f"{sender},{identifier(sender, bulletin.id, msg_type)},{sent}"


def alert_areas(targets: Sequence[Area], by_id: dict[int, Area]) -> list[AlertArea]:
    """One area per target commune or province, in the targets' order, without repeats.

    A village or port counts as its commune. `by_id` holds every target's commune and
    province (the caller loads them); names carry the province, since commune names
    repeat across provinces.
    """
    result: list[AlertArea] = []
    for target in targets:
        area = target
        if target.kind in (AreaKind.village, AreaKind.port) and target.parent_id is not None:
            area = by_id[target.parent_id]
        if area.kind is AreaKind.province:
            item = AlertArea(area.name, PROVINCE_GEOCODE, area.code.removeprefix("p"))
        else:
            province = by_id.get(area.province_id) if area.province_id else None
            name = f"{area.name}, {province.name}" if province else area.name
            item = AlertArea(name, COMMUNE_GEOCODE, area.code)
        if item not in result:
            result.append(item)
    return result


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    element.text = value
    return element


def _info(
    parent: ET.Element, warning: AlertSource, language: str, title: str, body: str, tz: ZoneInfo
) -> None:
    bulletin = warning.bulletin
    weather = warning.topic_slug == WEATHER_TOPIC
    urgent = bulletin.priority is Priority.urgent
    info = ET.SubElement(parent, f"{{{CAP_NS}}}info")
    _text(info, "language", language)
    _text(info, "category", "Met" if weather else "Safety")
    _text(info, "event", EVENTS.get(language, {}).get("weather" if weather else "urgent", title))
    # From the priority: khẩn is acted on now and endangers life or property; thường is
    # the expected, moderate case. An official's warning is taken as likely either way.
    _text(info, "urgency", "Immediate" if urgent else "Expected")
    _text(info, "severity", "Severe" if urgent else "Moderate")
    _text(info, "certainty", "Likely")
    if bulletin.expires_at is not None:
        _text(info, "expires", cap_time(bulletin.expires_at, tz))
    _text(info, "headline", title)
    _text(info, "description", body)
    for item in warning.areas:
        area = ET.SubElement(info, f"{{{CAP_NS}}}area")
        _text(area, "areaDesc", item.description)
        geocode = ET.SubElement(area, f"{{{CAP_NS}}}geocode")
        _text(geocode, "valueName", item.geocode_name)
        _text(geocode, "value", item.code)


def to_xml(warning: AlertSource, msg_type: MsgType, *, sender: str, tz: ZoneInfo) -> bytes:
    """The CAP 1.2 message `msg_type` of the warning, UTF-8 with an XML declaration.

    One info block in Vietnamese, then one per translation (in its language code).
    ValueError when the bulletin has no such message (not approved, not cancelled).
    """
    bulletin = warning.bulletin
    if not has_alert(bulletin, warning.topic_slug) or msg_type not in warning.messages():
        raise ValueError(f"bulletin {bulletin.id} has no CAP {msg_type.value}")
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _text(alert, "identifier", identifier(sender, bulletin.id, msg_type))
    _text(alert, "sender", sender)
    _text(alert, "sent", cap_time(sent_at(bulletin, msg_type), tz))
    _text(alert, "status", "Actual")
    _text(alert, "msgType", msg_type.value)
    _text(alert, "scope", "Public")
    if msg_type is MsgType.cancel:
        _text(alert, "note", CANCEL_NOTE)
    if references := warning.references(msg_type, sender, tz):
        _text(alert, "references", " ".join(references))
    _info(alert, warning, "vi", bulletin.title, bulletin.body, tz)
    for translation in warning.translations:
        _info(alert, warning, translation.language, translation.title, translation.body, tz)
    body: bytes = ET.tostring(
        alert, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS
    )
    return body


# --- loading ---------------------------------------------------------------------------------


def _warnings_only() -> ColumnElement[bool]:
    weather = select(Topic.id).where(Topic.slug == WEATHER_TOPIC).scalar_subquery()
    return and_(
        Bulletin.approved_at.is_not(None),
        or_(Bulletin.priority == Priority.urgent, Bulletin.topic_id == weather),
    )


async def _warnings(session: AsyncSession, statement: Select[Bulletin]) -> list[AlertSource]:
    """The AlertSource of each bulletin `statement` selects, in its order (four more queries)."""
    rows = list((await session.scalars(statement)).all())
    ids = [b.id for b in rows]
    if not ids:
        return []
    slugs = {
        topic_id: slug for topic_id, slug in await session.execute(select(Topic.id, Topic.slug))
    }
    translations: dict[int, list[BulletinTranslation]] = {i: [] for i in ids}
    for t in await session.scalars(
        select(BulletinTranslation)
        .where(BulletinTranslation.bulletin_id.in_(ids))
        .order_by(BulletinTranslation.language)
    ):
        translations[t.bulletin_id].append(t)
    targets: dict[int, list[Area]] = {i: [] for i in ids}
    for bulletin_id, area in await session.execute(
        select(BulletinArea.bulletin_id, Area)
        .join(Area, Area.id == BulletinArea.area_id)
        .where(BulletinArea.bulletin_id.in_(ids))
        .order_by(Area.code)
    ):
        targets[bulletin_id].append(area)
    wanted = {a.id for group in targets.values() for a in group}
    wanted |= {
        ref for group in targets.values() for a in group
        for ref in (a.parent_id, a.province_id) if ref is not None
    }  # fmt: skip
    # A village's province is its commune's, so its commune's province is loaded too.
    by_id = {a.id: a for a in await session.scalars(select(Area).where(Area.id.in_(wanted)))}
    return [
        AlertSource(
            bulletin=b,
            topic_slug=slugs.get(b.topic_id) if b.topic_id is not None else None,
            translations=translations[b.id],
            areas=alert_areas(targets[b.id], by_id),
            earlier=await _line(session, b),
        )
        for b in rows
    ]


async def _line(session: AsyncSession, bulletin: Bulletin) -> list[Bulletin]:
    """The approved warnings `bulletin` updates, oldest first (a query per step: a line of
    updates is a storm's few days, not a long chain)."""
    line: list[Bulletin] = []
    earlier_id = bulletin.supersedes_id
    while earlier_id is not None and len(line) < MAX_LINE:
        earlier = await session.get(Bulletin, earlier_id)
        if earlier is None or earlier.approved_at is None:
            break
        line.append(earlier)
        earlier_id = earlier.supersedes_id
    return line[::-1]


async def load(session: AsyncSession, bulletin_id: int) -> AlertSource | None:
    """The warning of that bulletin; None when it has no CAP alert (or does not exist)."""
    found = await _warnings(
        session, select(Bulletin).where(Bulletin.id == bulletin_id, _warnings_only())
    )
    return found[0] if found else None


async def recent(
    session: AsyncSession,
    *,
    now: dt.datetime,
    province: Area | None = None,
    days: int = 30,
    limit: int = 100,
) -> list[AlertSource]:
    """Warnings for a feed, newest message first: issued (approved, or cancelled) within
    `days`, not past their expiry and not replaced by an approved update (whose Update
    stands for the line), at most `limit`; those with an area in `province` (the
    province itself, or a commune, village or port in it) when one is given."""
    issued = func.coalesce(Bulletin.cancelled_at, Bulletin.approved_at)
    later = aliased(Bulletin)
    updated = select(later.supersedes_id).where(
        later.supersedes_id.is_not(None), later.approved_at.is_not(None)
    )
    statement = (
        select(Bulletin)
        .where(
            _warnings_only(),
            issued > now - dt.timedelta(days=days),
            or_(Bulletin.expires_at.is_(None), Bulletin.expires_at > now),
            Bulletin.id.not_in(updated),
        )
        .order_by(issued.desc(), Bulletin.id.desc())
        .limit(limit)
    )
    if province is not None:
        inside = (
            select(BulletinArea.bulletin_id)
            .join(Area, Area.id == BulletinArea.area_id)
            .where(or_(Area.id == province.id, Area.province_id == province.id))
        )
        statement = statement.where(Bulletin.id.in_(inside))
    return await _warnings(session, statement)
