"""Areas of the 2025 map: code parsing, diacritic-blind search, villages, ports, coastal flags."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import Area, AreaKind
from db.text import fold, nfc

# c11914 / 11914 → commune; p31 / p01 → province; 11914.2 → village or port under a commune.
_CODE = re.compile(r"^\s*(?:(?P<prefix>[cCpP])\s*)?(?P<number>\d{1,5})(?:\.(?P<sub>\d{1,4}))?\s*$")

# Words people type in front of a name; the stored names carry them too, so a query of only
# "xa binh son" still matches, but "binh son" must not need them.
_DIVISION_WORDS = ("thanh pho", "dac khu", "phuong", "tinh", "xa", "thon", "xom", "ap", "ban")

SUBAREA_KINDS = {AreaKind.village: "thôn", AreaKind.port: "bến cá"}


class AreaError(ValueError):
    """A bad area code or an impossible area change; the message says which."""


def canonical_code(text: str) -> str:
    """The stored code for what a person typed: "c11914" → "11914", "p1" → "p01".

    Raises AreaError for text that is not an area code at all.
    """
    match = _CODE.match(text)
    if not match:
        raise AreaError(f"not an area code: {text!r} (use p<province>, <commune> or c<commune>)")
    prefix = (match["prefix"] or "").lower()
    number = int(match["number"])
    if prefix == "p":
        if match["sub"]:
            raise AreaError(f"not an area code: {text!r}")
        return f"p{number:02d}"
    commune = f"{number:05d}"
    return f"{commune}.{int(match['sub'])}" if match["sub"] else commune


def looks_like_code(text: str) -> bool:
    return bool(_CODE.match(text))


async def get_by_code(session: AsyncSession, text: str) -> Area:
    """The area for a typed code; AreaError when it is malformed or unknown."""
    code = canonical_code(text)
    area = await session.scalar(select(Area).where(Area.code == code))
    if area is None:
        raise AreaError(f"unknown area code: {text.strip()}")
    return area


@dataclass(frozen=True)
class AreaMatch:
    area: Area
    province_name: str | None  # None for a province itself
    commune_name: str | None  # set for villages and ports

    @property
    def label(self) -> str:
        """ "Đặc khu Cát Hải (Thành phố Hải Phòng)": names repeat across provinces."""
        parents = [name for name in (self.commune_name, self.province_name) if name]
        return f"{self.area.name} ({', '.join(parents)})" if parents else self.area.name


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def sort_key(area: Area) -> str:
    """Alphabetical by the name itself: "Thành phố Hà Nội" sorts under H, not T."""
    return _bare(area.name_folded)


def _bare(folded_name: str) -> str:
    for word in _DIVISION_WORDS:
        if folded_name.startswith(word + " "):
            return folded_name[len(word) + 1 :]
    return folded_name


async def search(
    session: AsyncSession,
    text: str,
    *,
    kinds: tuple[AreaKind, ...] = (AreaKind.province, AreaKind.commune),
    province_id: int | None = None,
    limit: int = 50,
    fuzzy: bool = True,
) -> list[AreaMatch]:
    """Areas whose name matches `text`, ignoring case and diacritics (đ = d).

    Every typed word must appear in the name. Exact names rank first, then names that
    start with the text, then the rest, alphabetically. A code ("11914", "c11914", "p31")
    finds that area. With no plain match and `fuzzy`, close spellings are tried (typos).
    """
    province = aliased(Area)
    commune = aliased(Area)
    base = (
        select(Area, province.name, commune.name)
        .outerjoin(province, Area.province_id == province.id)
        .outerjoin(commune, (Area.parent_id == commune.id) & (Area.kind != AreaKind.commune))
        .where(Area.kind.in_(kinds))
    )
    if province_id is not None:
        base = base.where(Area.province_id == province_id)

    query = fold(nfc(text))
    if not query:
        return []
    if looks_like_code(query):
        try:
            code = canonical_code(query)
        except AreaError:
            return []
        found = (await session.execute(base.where(Area.code == code))).all()
        return [_match(row) for row in found]

    stmt = base
    for word in query.split():
        stmt = stmt.where(Area.name_folded.like(f"%{_escape_like(word)}%", escape="\\"))
    rows: list[Any] = list((await session.execute(stmt.limit(2000))).all())
    if not rows and fuzzy:
        rows = await _fuzzy_rows(session, base, query)
    bare_query = _bare(query)
    rows.sort(
        key=lambda row: (
            _rank(row[0].name_folded, query, bare_query),
            row[0].kind != AreaKind.province,
            row[0].name_folded,
            row[1] or "",
        )
    )
    return [_match(row) for row in rows[:limit]]


def _rank(name_folded: str, query: str, bare_query: str) -> int:
    bare_name = _bare(name_folded)
    if name_folded == query or bare_name == bare_query:
        return 0
    if name_folded.startswith(query) or bare_name.startswith(bare_query):
        return 1
    return 2


async def _fuzzy_rows(session: AsyncSession, base: Select[Area, str, str], query: str) -> list[Any]:
    """Close matches for a misspelt name ("cat hia"), by difflib over the folded names.

    3,321 communes fit in memory, and difflib's ratio is good at the one- or two-letter
    typos people make on a phone keyboard; a trigram index would be overkill here.
    """
    names = (await session.execute(select(Area.id, Area.name_folded))).all()
    by_bare: dict[str, list[int]] = {}
    for area_id, name_folded in names:
        by_bare.setdefault(_bare(name_folded), []).append(area_id)
    close = difflib.get_close_matches(_bare(query), list(by_bare), n=10, cutoff=0.75)
    ids = [area_id for name in close for area_id in by_bare[name]]
    if not ids:
        return []
    stmt = base.where(Area.id.in_(ids))
    return list((await session.execute(stmt)).all())


def _match(row: Any) -> AreaMatch:
    area, province_name, commune_name = row
    return AreaMatch(area=area, province_name=province_name, commune_name=commune_name)


async def count_by_kind(session: AsyncSession) -> dict[AreaKind, int]:
    rows = await session.execute(select(Area.kind, func.count()).group_by(Area.kind))
    return {kind: count for kind, count in rows}


async def set_coastal(session: AsyncSession, codes: list[str], coastal: bool = True) -> list[Area]:
    """Flag communes (or every commune of a province) as coastal or not."""
    areas = [await get_by_code(session, code) for code in codes]
    for area in areas:
        if area.kind is AreaKind.province:
            await session.execute(
                update(Area)
                .where(Area.province_id == area.id, Area.kind == AreaKind.commune)
                .values(coastal=coastal)
            )
        area.coastal = coastal
    return areas


MAX_NAME_LENGTH = 120  # Area.name's column


class DuplicateAreaName(AreaError):
    """A commune already has a village or port of that name (diacritics and case ignored)."""

    def __init__(self, commune: Area, existing: Area) -> None:
        super().__init__(f"{commune.name} already has {existing.name} ({existing.code})")
        self.commune = commune
        self.existing = existing


def _subarea_name(name: str) -> str:
    clean = nfc(" ".join(name.split()))
    if not clean:
        raise AreaError("the name is empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise AreaError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    return clean


async def _refuse_duplicate(
    session: AsyncSession, commune: Area, clean: str, *, other_than: int | None = None
) -> None:
    stmt = select(Area).where(Area.parent_id == commune.id, Area.name_folded == fold(clean))
    if other_than is not None:
        stmt = stmt.where(Area.id != other_than)
    duplicate = await session.scalar(stmt.limit(1))
    if duplicate is not None:
        raise DuplicateAreaName(commune, duplicate)


async def add_subarea(session: AsyncSession, commune_code: str, name: str, kind: AreaKind) -> Area:
    """Add a village (thôn, xóm) or a fishing port under a commune; its code is <commune>.<n>."""
    if kind not in SUBAREA_KINDS:
        raise AreaError("only villages and ports can be added under a commune")
    commune = await get_by_code(session, commune_code)
    if commune.kind is not AreaKind.commune:
        raise AreaError(f"{commune.name} is not a commune")
    clean = _subarea_name(name)
    siblings = (await session.scalars(select(Area.code).where(Area.parent_id == commune.id))).all()
    await _refuse_duplicate(session, commune, clean)
    next_number = 1 + max((int(code.split(".")[1]) for code in siblings), default=0)
    area = Area(
        code=f"{commune.code}.{next_number}",
        kind=kind,
        division_type=SUBAREA_KINDS[kind],
        name=clean,
        name_folded=fold(clean),
        parent_id=commune.id,
        province_id=commune.province_id,
        coastal=commune.coastal,
    )
    session.add(area)
    await session.flush()
    return area


async def rename_subarea(session: AsyncSession, area: Area, name: str) -> str:
    """Rename a village or port (its code stays, so subscriptions and audiences keep it).

    Returns the old name. Raises AreaError for a commune or province, an empty or too long
    name, and DuplicateAreaName when a sibling already has the name.
    """
    if area.kind not in SUBAREA_KINDS or area.parent_id is None:
        raise AreaError("only villages and ports can be renamed")
    commune = await session.get_one(Area, area.parent_id)
    clean = _subarea_name(name)
    await _refuse_duplicate(session, commune, clean, other_than=area.id)
    old = area.name
    area.name, area.name_folded = clean, fold(clean)
    return old


async def subareas(session: AsyncSession, commune: Area) -> list[Area]:
    """The villages and ports under a commune, in the order they were added (code number)."""
    rows = (await session.scalars(select(Area).where(Area.parent_id == commune.id))).all()
    return sorted(rows, key=lambda area: int(area.code.rpartition(".")[2]))
