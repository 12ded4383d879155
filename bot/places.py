"""The map's provinces and communes as chat turns use them, kept in memory between turns."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas
from db.models import Area, AreaKind

# What the map keeps; villages and ports are always read from the database (see Map).
KEPT = (AreaKind.province, AreaKind.commune)


@dataclass(frozen=True, slots=True)
class Place:
    """An area as the chat shows it: enough to name it, follow it and find its province."""

    id: int
    code: str
    kind: AreaKind
    name: str
    province_id: int | None

    @classmethod
    def of(cls, area: Area) -> Place:
        return cls(area.id, area.code, area.kind, area.name, area.province_id)


class Map:
    """Provinces and communes, loaded once (in the first turn that needs them).

    Why: sign-up turns read them on every turn: a poster's code and then its province
    (two of a QR sign-up's 19 statements), the province list, and a province's hundred
    or so communes, loaded as ORM rows and sorted by folded name each time.

    Why a cache is safe: provinces and communes do not change while the service runs.
    db.seed only inserts the ones missing (Service.prepare, before any bot starts, and
    `haidang db upgrade`), and nothing renames, moves or deletes them; officials add and
    rename villages and ports, which are not kept here. A code or id the map does not
    know is read from the database (that is how villages and ports are found); if that
    finds a province or commune, the map is out of date (seeded after it was loaded) and
    is loaded again. A map without provinces (a database not seeded yet) is not kept.
    """

    def __init__(self) -> None:
        self._by_code: dict[str, Place] = {}
        self._by_id: dict[int, Place] = {}
        self._provinces: list[Place] = []
        self._communes: dict[int, list[Place]] = {}  # by parent (province) id, sorted
        self._loaded = False
        self._loading = asyncio.Lock()

    async def find(self, session: AsyncSession, text: str) -> Place | None:
        """The area for a typed code (as broadcasts.areas.get_by_code reads it); None when
        the code is malformed or unknown."""
        try:
            code = areas.canonical_code(text)
        except areas.AreaError:
            return None
        await self._load(session)
        place = self._by_code.get(code)
        if place is not None:
            return place
        area = await session.scalar(select(Area).where(Area.code == code))
        return self._fetched(area)

    async def get(self, session: AsyncSession, area_id: int) -> Place | None:
        """The area with that id; None when there is none."""
        await self._load(session)
        place = self._by_id.get(area_id)
        if place is not None:
            return place
        return self._fetched(await session.get(Area, area_id))

    async def provinces(self, session: AsyncSession) -> list[Place]:
        """Every province, alphabetically by name (broadcasts.areas.sort_key)."""
        await self._load(session)
        return self._provinces

    async def communes(self, session: AsyncSession, parent_id: int) -> list[Place]:
        """The communes of a province, alphabetically by name; [] for any other id."""
        await self._load(session)
        return self._communes.get(parent_id, [])

    def _fetched(self, area: Area | None) -> Place | None:
        if area is None:
            return None
        if area.kind in KEPT:  # seeded after the map was loaded: load it again next time
            self._loaded = False
        return Place.of(area)

    async def _load(self, session: AsyncSession) -> None:
        if self._loaded:
            return
        async with self._loading:  # turns that need it at the same time load it once
            if not self._loaded:
                await self._read(session)

    async def _read(self, session: AsyncSession) -> None:
        rows = await session.scalars(select(Area).where(Area.kind.in_(KEPT)).order_by(Area.id))
        # Sorted as the lists were before (by sort_key; ties keep id order).
        loaded = sorted(rows.all(), key=areas.sort_key)
        places = [Place.of(area) for area in loaded]
        self._by_code = {p.code: p for p in places}
        self._by_id = {p.id: p for p in places}
        self._provinces = [p for p in places if p.kind is AreaKind.province]
        communes: dict[int, list[Place]] = {}
        for area, place in zip(loaded, places, strict=True):
            if area.kind is AreaKind.commune and area.parent_id is not None:
                communes.setdefault(area.parent_id, []).append(place)
        self._communes = communes
        self._loaded = bool(self._provinces)
