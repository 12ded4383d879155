"""Vessels: the registry, the people aboard, and who on each vessel a bulletin reached."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, case, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from broadcasts import areas, audiences, audit, bulletins
from broadcasts.officials import covers
from broadcasts.reports import BOM, csv_cell
from db.models import (
    Acknowledgement,
    Area,
    AreaKind,
    BroadcastRun,
    Bulletin,
    ChatAddress,
    Delivery,
    DeliveryState,
    MarkMethod,
    Official,
    Subscriber,
    SubscriberStatus,
    Vessel,
    VesselMark,
    VesselMember,
    VesselRelation,
)
from db.text import fold, nfc

MAX_NAME = 120
MAX_NOTE = 500
MAX_IMPORT_ROWS = 100_000
# Who may mark a vessel as told by hand: those who may act on a bulletin (not radio
# operators), within their scope. Border guards are subscribers, not officials: the
# officials working with them (or an admin) mark.
MARKERS = bulletins.AUTHORS | bulletins.APPROVERS

# Letters, then the number, then the kind ("TS", thủy sản): "QNg-90123-TS", "qng 90123 ts".
_TOKENS = re.compile(r"[^\W\d_]+|\d+")
# Province marks written in mixed case on the hull and in the registry (folded → as written);
# any other mark is written in capitals.
_MIXED_CASE_MARKS = {
    fold(mark): mark for mark in ("QNg", "QNa", "ĐNa", "BTh", "BTr", "BĐ", "NĐ", "TTH", "HCM")
}
# Vietnamese numbers: mobiles 0[35789]xxxxxxxx, landlines 02xxxxxxxxx (after +84 → 0).
_MOBILE = re.compile(r"0[35789]\d{8}")
_LANDLINE = re.compile(r"02\d{9}")
_PHONE_JUNK = re.compile(r"[\s.\-()/]")


class VesselError(ValueError):
    """A vessel, a link or a mark cannot be saved as asked; the message says why (it never
    holds a phone number)."""


class MarkRefused(VesselError):
    """The official may not mark this vessel (role or scope); a server-side check."""


class VesselImportError(VesselError):
    """A registry file with bad rows: nothing was imported; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n… and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(f"{len(problems)} bad rows, nothing imported:\n" + "\n".join(shown) + more)
        self.problems = problems


class VesselStatus(enum.StrEnum):
    """Where a vessel stands for one bulletin (the best of its people, then a mark)."""

    acknowledged = "acknowledged"  # someone linked to it tapped "Đã nhận"
    reached = "reached"  # someone linked to it was sent the bulletin in chat
    informed = "informed"  # nobody reached in chat, but an official told it by hand
    not_reached = "not_reached"  # nobody yet: the list border guards work through


STATUS_ORDER = (
    VesselStatus.not_reached,
    VesselStatus.informed,
    VesselStatus.reached,
    VesselStatus.acknowledged,
)


# --- registration numbers and phones --------------------------------------------------------


def normalise_registration(text: str) -> tuple[str, str]:
    """(registration as shown, lookup key) for what was typed: "qng 90123 ts" →
    ("QNg-90123-TS", "qng-90123-ts"). Raises VesselError when it is not a registration
    number (1-4 letters, 3-6 digits, optionally 1-3 letters)."""
    tokens = _TOKENS.findall(nfc(text))
    valid = (
        len(tokens) in (2, 3)
        and tokens[0].isalpha()
        and 1 <= len(tokens[0]) <= 4
        and tokens[1].isdigit()
        and 3 <= len(tokens[1]) <= 6
        and (len(tokens) == 2 or (tokens[2].isalpha() and 1 <= len(tokens[2]) <= 3))
    )
    if not valid:
        raise VesselError(f"not a vessel registration number: {text.strip()[:40]!r}")
    mark = _MIXED_CASE_MARKS.get(fold(tokens[0]), tokens[0].upper())
    parts = [mark, tokens[1], *(t.upper() for t in tokens[2:])]
    registration = "-".join(parts)
    return registration, fold(registration)


def normalise_phone(text: str | None) -> str | None:
    """A Vietnamese number as 0XXXXXXXXX (None for blank); "+84 912 345 678" → "0912345678".

    Raises VesselError (without the number in the message) when it is not one.
    """
    if text is None or not text.strip():
        return None
    digits = _PHONE_JUNK.sub("", text.strip())
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    if not (_MOBILE.fullmatch(digits) or _LANDLINE.fullmatch(digits)):
        raise VesselError("the phone is not a Vietnamese mobile or landline number")
    return digits


def display_phone(phone: str | None) -> str:
    """ "0912 345 678" for a mobile, "0255 3822 123" for a landline; "" for none."""
    if not phone:
        return ""
    if len(phone) == 10:
        return f"{phone[:4]} {phone[4:7]} {phone[7:]}"
    return f"{phone[:4]} {phone[4:8]} {phone[8:]}"


# --- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fields:
    """One vessel's checked values (from a CSV row or a command)."""

    registration: str
    key: str
    name: str
    commune_id: int
    home_port_id: int | None
    phone: str | None


class _Places:
    """The communes and ports named in a registry, read in two queries."""

    def __init__(self) -> None:
        self.communes: dict[str, Area] = {}
        self.ports: dict[str, Area] = {}  # by code
        self.port_names: dict[tuple[int, str], Area] = {}  # (commune id, folded name)

    @classmethod
    async def load(
        cls, session: AsyncSession, commune_texts: Iterable[str], port_texts: Iterable[str]
    ) -> _Places:
        places = cls()
        codes = set()
        for text in (*commune_texts, *(t for t in port_texts if areas.looks_like_code(t))):
            try:
                codes.add(areas.canonical_code(text))
            except areas.AreaError:
                continue
        found = list((await session.scalars(select(Area).where(Area.code.in_(codes)))).all())
        for area in found:
            if area.kind is AreaKind.commune:
                places.communes[area.code] = area
            elif area.kind is AreaKind.port:
                places.ports[area.code] = area
        commune_ids = [area.id for area in places.communes.values()]
        if commune_ids:
            ports = await session.scalars(
                select(Area).where(Area.kind == AreaKind.port, Area.parent_id.in_(commune_ids))
            )
            for port in ports.all():
                if port.parent_id is not None:
                    places.port_names[port.parent_id, port.name_folded] = port
                places.ports.setdefault(port.code, port)
        return places

    def commune(self, text: str) -> Area:
        try:
            code = areas.canonical_code(text)
        except areas.AreaError:
            raise VesselError(f"not a commune code: {text.strip()[:20]!r}") from None
        area = self.communes.get(code)
        if area is None:
            raise VesselError(f"unknown commune code: {text.strip()[:20]!r}")
        return area

    def port(self, text: str, commune: Area) -> Area | None:
        """A port by its code, or by its name among the commune's ports; None for blank."""
        if not text.strip():
            return None
        if areas.looks_like_code(text):
            try:
                found = self.ports.get(areas.canonical_code(text))
            except areas.AreaError:
                found = None
        else:
            folded = fold(text)
            found = self.port_names.get((commune.id, folded)) or self.port_names.get(
                (commune.id, fold("bến cá " + text))
            )
        if found is None:
            raise VesselError(
                f"unknown home port {text.strip()[:40]!r} (a port code, or the name of a "
                f"port of {commune.name}: haidang areas add-port)"
            )
        return found


def _check(
    places: _Places,
    *,
    registration: str,
    name: str,
    commune: str,
    home_port: str | None,
    phone: str | None,
) -> _Fields:
    shown, key = normalise_registration(registration)
    clean_name = nfc(" ".join(name.split()))
    if len(clean_name) > MAX_NAME:
        raise VesselError(f"the name is longer than {MAX_NAME} characters")
    area = places.commune(commune)
    port = places.port(home_port or "", area)
    return _Fields(
        registration=shown,
        key=key,
        name=clean_name,
        commune_id=area.id,
        home_port_id=port.id if port is not None else None,
        phone=normalise_phone(phone),
    )


def _apply(vessel: Vessel, fields: _Fields) -> bool:
    """Write `fields` into `vessel`; whether anything changed."""
    values = {
        "registration": fields.registration,
        "name": fields.name,
        "commune_id": fields.commune_id,
        "home_port_id": fields.home_port_id,
        "phone": fields.phone,
    }
    changed = False
    for attribute, value in values.items():
        if getattr(vessel, attribute) != value:
            setattr(vessel, attribute, value)
            changed = True
    return changed


async def save(
    session: AsyncSession,
    *,
    registration: str,
    name: str,
    commune: str,
    home_port: str | None = None,
    phone: str | None = None,
) -> tuple[Vessel, bool]:
    """Add a vessel, or update the one with this registration; (vessel, True when added).

    `commune` is a commune code; `home_port` a port's code or the name of one of the
    commune's ports. Raises VesselError for a bad registration, area or phone.
    """
    places = await _Places.load(session, [commune], [home_port or ""])
    fields = _check(
        places,
        registration=registration,
        name=name,
        commune=commune,
        home_port=home_port,
        phone=phone,
    )
    vessel = await session.scalar(select(Vessel).where(Vessel.registration_key == fields.key))
    added = vessel is None
    if vessel is None:
        vessel = Vessel(registration_key=fields.key)
        session.add(vessel)
    _apply(vessel, fields)
    await session.flush()
    return vessel, added


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    unchanged: int


# Header names accepted in a registry file (folded, "_" as a space) → the field.
_HEADERS = {
    "registration": "registration",
    "so dang ky": "registration",
    "so dang ky tau": "registration",
    "so dang ky tau ca": "registration",
    "name": "name",
    "ten tau": "name",
    "commune": "commune",
    "commune code": "commune",
    "ma xa": "commune",
    "home port": "home_port",
    "cang": "home_port",
    "cang ca": "home_port",
    "ben ca": "home_port",
    "cang ca/ben ca": "home_port",
    "phone": "phone",
    "dien thoai": "phone",
    "so dien thoai": "phone",
    "sdt": "phone",
}
_REQUIRED = ("registration", "commune")


def _reader(text: str) -> Any:
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    return csv.reader(io.StringIO(text), delimiter=delimiter)


async def import_csv(session: AsyncSession, text: str) -> ImportResult:
    """Import a province's registry: a header row, then one vessel per row.

    Columns (English or Vietnamese names, any order): registration / số đăng ký (required),
    name / tên tàu, commune / mã xã (a commune code, required), home port / cảng cá (a port
    code or the name of one of the commune's ports), phone / điện thoại. Comma, semicolon or
    tab separated; a UTF-8 byte order mark is ignored. A vessel already registered is
    updated. Any bad row (reported with its line number) and nothing is imported:
    VesselImportError. At most MAX_IMPORT_ROWS rows.
    """
    reader = _reader(text.removeprefix(BOM))
    header = next(reader, None)
    if header is None:
        raise VesselImportError(["line 1: the file is empty (a header row is needed)"])
    columns: dict[str, int] = {}
    for index, title in enumerate(header):
        known = _HEADERS.get(fold(title.replace("_", " ")))
        if known is not None and known not in columns:
            columns[known] = index
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise VesselImportError([f"line 1: no {' or '.join(missing)} column in the header"])

    def cell(row: list[str], name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    rows: list[tuple[int, list[str]]] = []
    for row in reader:
        if any(value.strip() for value in row):
            rows.append((reader.line_num, row))
        if len(rows) > MAX_IMPORT_ROWS:
            raise VesselImportError([f"more than {MAX_IMPORT_ROWS} rows: split the file"])
    places = await _Places.load(
        session, [cell(r, "commune") for _, r in rows], [cell(r, "home_port") for _, r in rows]
    )
    problems: list[str] = []
    checked: dict[str, tuple[int, _Fields]] = {}
    for line, row in rows:
        try:
            fields = _check(
                places,
                registration=cell(row, "registration"),
                name=cell(row, "name"),
                commune=cell(row, "commune"),
                home_port=cell(row, "home_port"),
                phone=cell(row, "phone"),
            )
        except VesselError as error:
            problems.append(f"line {line}: {error}")
            continue
        if fields.key in checked:
            first = checked[fields.key][0]
            problems.append(f"line {line}: {fields.registration} is also on line {first}")
            continue
        checked[fields.key] = (line, fields)
    if problems:
        raise VesselImportError(problems)

    existing: dict[str, Vessel] = {}
    keys = list(checked)
    for start in range(0, len(keys), 1000):
        found = await session.scalars(
            select(Vessel).where(Vessel.registration_key.in_(keys[start : start + 1000]))
        )
        existing.update((vessel.registration_key, vessel) for vessel in found.all())
    added = updated = unchanged = 0
    for key, (_line, fields) in checked.items():
        vessel = existing.get(key)
        if vessel is None:
            vessel = Vessel(registration_key=key)
            _apply(vessel, fields)
            session.add(vessel)
            added += 1
        elif _apply(vessel, fields):
            updated += 1
        else:
            unchanged += 1
    await session.flush()
    return ImportResult(added=added, updated=updated, unchanged=unchanged)


async def get(session: AsyncSession, registration: str) -> Vessel:
    """The vessel with this registration (in any spelling); VesselError when unknown."""
    shown, key = normalise_registration(registration)
    vessel = await session.scalar(select(Vessel).where(Vessel.registration_key == key))
    if vessel is None:
        raise VesselError(f"no vessel {shown}")
    return vessel


async def link(
    session: AsyncSession, registration: str, subscriber_id: int, relation: VesselRelation
) -> bool:
    """Tie a person to a vessel (or change how); True when the link is new.

    Raises VesselError for an unknown vessel or person, or one erased by /xoa.
    """
    vessel = await get(session, registration)
    person = await session.get(Subscriber, subscriber_id)
    if person is None or person.status is SubscriberStatus.erased:
        raise VesselError(f"no subscriber {subscriber_id}")
    member = await session.get(VesselMember, (vessel.id, subscriber_id))
    if member is None:
        session.add(
            VesselMember(vessel_id=vessel.id, subscriber_id=subscriber_id, relation=relation)
        )
        await session.flush()
        return True
    member.relation = relation
    return False


async def unlink(session: AsyncSession, registration: str, subscriber_id: int) -> bool:
    """Untie a person from a vessel; False when they were not tied to it."""
    vessel = await get(session, registration)
    result = await session.execute(
        delete(VesselMember).where(
            VesselMember.vessel_id == vessel.id, VesselMember.subscriber_id == subscriber_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class Listed:
    vessel: Vessel
    commune: Area
    home_port: str
    people: int


async def listing(session: AsyncSession, commune: str | None = None) -> list[Listed]:
    """Vessels by registration, with their commune, home port and people tied to them;
    only those of one commune (a code) when given."""
    port = aliased(Area)
    people = (
        select(func.count())
        .where(VesselMember.vessel_id == Vessel.id)
        .correlate(Vessel)
        .scalar_subquery()
    )
    stmt = (
        select(Vessel, Area, port.name, people)
        .join(Area, Area.id == Vessel.commune_id)
        .outerjoin(port, port.id == Vessel.home_port_id)
        .order_by(Vessel.registration_key)
    )
    if commune is not None:
        stmt = stmt.where(Area.code == areas.canonical_code(commune))
    rows: list[Any] = list((await session.execute(stmt)).all())
    return [Listed(v, area, port_name or "", int(n)) for v, area, port_name, n in rows]


# --- a bulletin's vessels -----------------------------------------------------------------------


@dataclass(frozen=True)
class VesselRow:
    """One vessel in a bulletin's audience and how far the bulletin got to it."""

    vessel_id: int
    registration: str
    name: str
    commune_id: int
    commune_code: str
    commune_name: str
    home_port: str
    phone: str | None  # personal data: show only within the official's scope
    people: int  # people tied to the vessel
    people_reached: int  # of them, sent the bulletin in chat
    people_acknowledged: int  # of them, who tapped "Đã nhận"
    status: VesselStatus
    mark_method: MarkMethod | None = None
    mark_note: str = ""
    marked_at: dt.datetime | None = None
    marked_by: str = ""


@dataclass
class VesselReport:
    """A bulletin's vessels: every row, and the totals border guards report."""

    bulletin_id: int
    rows: list[VesselRow]
    by_status: dict[VesselStatus, int] = field(default_factory=dict)
    people: int = 0  # distinct people tied to these vessels
    people_reached: int = 0  # distinct, sent the bulletin in chat
    people_acknowledged: int = 0  # distinct, tapped "Đã nhận"
    # (commune id, code, name, vessels) of every commune with vessels in the audience.
    communes: list[tuple[int, str, str, int]] = field(default_factory=list)

    @property
    def vessels(self) -> int:
        return len(self.rows)

    @property
    def reached_or_informed(self) -> int:
        """Vessels told one way or another: what border guards report as "informed"."""
        return self.vessels - self.by_status.get(VesselStatus.not_reached, 0)


def _audience_vessels(bulletin: Bulletin) -> ColumnElement[bool]:
    """A vessel is in the audience when its commune (or its home port) is an area the
    bulletin's audience follows (audiences.matching_areas: the area, a commune of a
    province, a village or port of a commune)."""
    matching = audiences.matching_areas(bulletin)
    return or_(Vessel.commune_id.in_(matching), Vessel.home_port_id.in_(matching))


async def report(
    session: AsyncSession, bulletin_id: int, *, communes: Iterable[int] | None = None
) -> VesselReport:
    """The vessels in a bulletin's audience, each with its status: acknowledged (anyone tied
    to it tapped "Đã nhận"), reached (anyone's chat was sent it), informed (an official's
    mark), else not reached. A vessel counts once whoever on it was reached.

    `communes` (ids) keeps only the vessels of those communes (an official's scope, a
    filter). Six set-based queries whatever the number of vessels. Raises BulletinError
    for an unknown bulletin.
    """
    bulletin = await bulletins.get(session, bulletin_id)
    conditions: list[ColumnElement[bool]] = [_audience_vessels(bulletin)]
    if communes is not None:
        conditions.append(Vessel.commune_id.in_(list(communes)))
    port = aliased(Area)
    vessel_rows = (
        await session.execute(
            select(
                Vessel.id,
                Vessel.registration,
                Vessel.name,
                Vessel.commune_id,
                Area.code,
                Area.name,
                port.name,
                Vessel.phone,
            )
            .join(Area, Area.id == Vessel.commune_id)
            .outerjoin(port, port.id == Vessel.home_port_id)
            .where(*conditions)
            .order_by(Area.code, Vessel.registration_key)
        )
    ).all()
    in_report = select(Vessel.id).where(*conditions)

    runs = select(BroadcastRun.id).where(BroadcastRun.bulletin_id == bulletin.id)
    # Per person: an EXISTS on deliveries' (run_id, chat_address_id) key and on the
    # acknowledgements' (bulletin_id, subscriber_id) key.
    reached = exists().where(
        ChatAddress.subscriber_id == VesselMember.subscriber_id,
        Delivery.chat_address_id == ChatAddress.id,
        Delivery.run_id.in_(runs),
        Delivery.state == DeliveryState.sent,
    )
    acknowledged = exists().where(
        Acknowledgement.bulletin_id == bulletin.id,
        Acknowledgement.subscriber_id == VesselMember.subscriber_id,
    )
    member_table = _members_subquery(in_report, reached, acknowledged)
    per_vessel = await session.execute(
        select(
            member_table.c.vessel_id,
            func.count(),
            func.sum(member_table.c.was_reached),
            func.sum(member_table.c.has_acknowledged),
        ).group_by(member_table.c.vessel_id)
    )
    tallies: list[Any] = list(per_vessel.all())
    counts = {int(v): (int(n), int(r or 0), int(a or 0)) for v, n, r, a in tallies}
    totals: Any = (
        await session.execute(
            select(
                func.count(member_table.c.subscriber_id.distinct()),
                func.count(
                    case((member_table.c.was_reached == 1, member_table.c.subscriber_id)).distinct()
                ),
                func.count(
                    case(
                        (member_table.c.has_acknowledged == 1, member_table.c.subscriber_id)
                    ).distinct()
                ),
            )
        )
    ).one()
    marks = {
        int(mark.vessel_id): (mark, username)
        for mark, username in (
            await session.execute(
                select(VesselMark, Official.username)
                .outerjoin(Official, Official.id == VesselMark.official_id)
                .where(VesselMark.bulletin_id == bulletin.id, VesselMark.vessel_id.in_(in_report))
            )
        ).all()
    }

    result = VesselReport(bulletin_id=bulletin.id, rows=[])
    result.by_status = dict.fromkeys(STATUS_ORDER, 0)
    per_commune: dict[int, list[Any]] = {}
    for (
        vessel_id,
        registration,
        name,
        commune_id,
        code,
        commune_name,
        port_name,
        phone,
    ) in vessel_rows:
        people, people_reached, people_acked = counts.get(vessel_id, (0, 0, 0))
        found = marks.get(vessel_id)
        if people_acked:
            status = VesselStatus.acknowledged
        elif people_reached:
            status = VesselStatus.reached
        elif found is not None:
            status = VesselStatus.informed
        else:
            status = VesselStatus.not_reached
        mark = found[0] if found else None
        result.rows.append(
            VesselRow(
                vessel_id=vessel_id, registration=registration, name=name, commune_id=commune_id,
                commune_code=code, commune_name=commune_name, home_port=port_name or "",
                phone=phone, people=people, people_reached=people_reached,
                people_acknowledged=people_acked, status=status,
                mark_method=mark.method if mark else None, mark_note=mark.note if mark else "",
                marked_at=mark.marked_at if mark else None,
                marked_by=(found[1] or "") if found else "",
            )
        )  # fmt: skip
        result.by_status[status] += 1
        per_commune.setdefault(commune_id, [commune_id, code, commune_name, 0])[3] += 1
    result.people, result.people_reached, result.people_acknowledged = (int(n) for n in totals)
    result.communes = [tuple(entry) for entry in per_commune.values()]
    return result


def _members_subquery(
    in_report: Select[int], reached: ColumnElement[bool], acknowledged: ColumnElement[bool]
) -> Any:
    """Every link of a vessel in the report, with two 0/1 flags: the person was sent the
    bulletin in chat; the person tapped "Đã nhận"."""
    return (
        select(
            VesselMember.vessel_id,
            VesselMember.subscriber_id,
            case((reached, 1), else_=0).label("was_reached"),
            case((acknowledged, 1), else_=0).label("has_acknowledged"),
        )
        .where(VesselMember.vessel_id.in_(in_report))
        .subquery("members")
    )


async def mark(
    session: AsyncSession,
    *,
    bulletin_id: int,
    vessel_id: int,
    official: Official,
    method: MarkMethod,
    note: str,
    now: dt.datetime,
    via: str,
) -> VesselMark:
    """Record that an official told a vessel about a bulletin by hand (audited; the note
    is not copied to the audit trail, it may name people or numbers). A second marking of
    the same vessel and bulletin updates the first.

    Only officials who may act on bulletins (MARKERS) whose scope covers the vessel's
    commune, only for an approved bulletin whose audience holds the vessel: MarkRefused or
    VesselError otherwise.
    """
    if official.role not in MARKERS:
        raise MarkRefused(f"{official.username} ({official.role.value}) may not mark vessels")
    bulletin = await bulletins.get(session, bulletin_id)
    if bulletin.approved_at is None:
        raise VesselError(f"bulletin {bulletin.id} is not approved")
    vessel = await session.get(Vessel, vessel_id)
    if vessel is None:
        raise VesselError(f"no vessel {vessel_id}")
    commune = await session.get_one(Area, vessel.commune_id)
    if not await covers(session, official, commune):
        raise MarkRefused(f"{official.username} may not mark vessels of {commune.code}")
    in_audience = await session.scalar(
        select(exists().where(Vessel.id == vessel.id, _audience_vessels(bulletin)))
    )
    if not in_audience:
        raise VesselError(f"{vessel.registration} is not in bulletin {bulletin.id}'s audience")
    clean = nfc(note.strip())[:MAX_NOTE]
    existing = await session.scalar(
        select(VesselMark).where(
            and_(VesselMark.bulletin_id == bulletin.id, VesselMark.vessel_id == vessel.id)
        )
    )
    again = existing is not None
    if existing is None:
        existing = VesselMark(bulletin_id=bulletin.id, vessel_id=vessel.id)
        session.add(existing)
    existing.official_id = official.id
    existing.marked_at = now
    existing.method = method
    existing.note = clean
    await session.flush()
    await audit.record(
        session, now=now, official=official, via=via, action="vessel.mark",
        object_type="vessel", object_id=vessel.id,
        details={"bulletin": bulletin.id, "registration": vessel.registration,
                 "method": method.value, "again": again},
    )  # fmt: skip
    return existing


# --- CSV (Vietnamese: opened by officials and border guards in Excel) -------------------------

CSV_HEADERS = (
    "số đăng ký", "tên tàu", "mã xã", "xã/phường", "cảng/bến", "điện thoại", "tình trạng",
    "số người", "đã nhận tin", "đã bấm Đã nhận", "cách báo", "ghi chú", "người đánh dấu",
    "lúc đánh dấu",
)  # fmt: skip
CSV_STATUSES = {
    VesselStatus.acknowledged: "đã bấm Đã nhận",
    VesselStatus.reached: "đã nhận tin",
    VesselStatus.informed: "đã báo trực tiếp",
    VesselStatus.not_reached: "chưa liên lạc được",
}
CSV_METHODS = {
    MarkMethod.radio: "vô tuyến",
    MarkMethod.phone: "điện thoại",
    MarkMethod.in_person: "trực tiếp",
    MarkMethod.other: "khác",
}


def vessel_csv(rows: Iterable[VesselRow], tz: ZoneInfo) -> str:
    """A CSV (UTF-8 with BOM, so Excel shows diacritics) of `rows` with a header row;
    phones as dialled (0912 345 678), times local. Pass only rows the reader may see."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADERS)
    for row in rows:
        writer.writerow(
            [
                csv_cell(row.registration), csv_cell(row.name), row.commune_code,
                csv_cell(row.commune_name), csv_cell(row.home_port), display_phone(row.phone),
                CSV_STATUSES[row.status], row.people, row.people_reached,
                row.people_acknowledged,
                CSV_METHODS[row.mark_method] if row.mark_method else "",
                csv_cell(row.mark_note), csv_cell(row.marked_by),
                row.marked_at.astimezone(tz).strftime("%d/%m/%Y %H:%M") if row.marked_at else "",
            ]
        )  # fmt: skip
    return BOM + out.getvalue()
