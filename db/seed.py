"""Reference data seeded at first start: the 2025 map and the topics (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from vietnam_provinces import Province, VietNamDivisionType, Ward

from db.models import Area, AreaKind, Topic
from db.text import fold, nfc

# (slug, name, description) — officials may rename or add topics later; the seed only
# inserts slugs that are missing and never overwrites an edit.
TOPICS: tuple[tuple[str, str, str], ...] = (
    ("phap-luat", "Phổ biến pháp luật", "Luật Thủy sản, Luật Biển Việt Nam và các quy định mới"),
    ("bien-dao", "Chủ quyền biển đảo", "Tuyên truyền về chủ quyền biển, đảo Việt Nam"),
    ("doi-ngoai", "Thông tin đối ngoại", "Thông tin đối ngoại của Đảng và Nhà nước"),
    ("thoi-tiet", "Thời tiết – thiên tai", "Tin bão, áp thấp nhiệt đới, gió mạnh trên biển"),
    ("iuu", "Chống khai thác IUU", "Chống khai thác hải sản bất hợp pháp, không báo cáo"),
    ("dia-phuong", "Thông báo địa phương", "Thông báo của xã, phường, đặc khu"),
)

# The 13 đặc khu of the 2025 reform are all island zones, so they start flagged coastal;
# mainland communes are flagged by officials (`haidang areas coastal`).
_COASTAL_TYPES = {VietNamDivisionType.DAC_KHU}


@dataclass(frozen=True)
class SeedReport:
    provinces_added: int
    communes_added: int
    topics_added: int


def _clean(name: str) -> str:
    return nfc(" ".join(name.split()))


async def seed_map(session: AsyncSession) -> tuple[int, int]:
    """Insert the provinces and communes that are missing; returns how many were added."""
    existing = set((await session.scalars(select(Area.code))).all())
    provinces = [
        {
            "code": f"p{int(p.code):02d}",
            "kind": AreaKind.province,
            "division_type": p.division_type.value,
            "name": _clean(p.name),
            "name_folded": fold(p.name),
            "coastal": False,
        }
        for p in Province.iter_all()
        if f"p{int(p.code):02d}" not in existing
    ]
    if provinces:
        await session.execute(insert(Area), provinces)
    rows = await session.execute(select(Area.code, Area.id).where(Area.kind == AreaKind.province))
    province_ids = dict(rows.all())
    communes = [
        {
            "code": f"{int(w.code):05d}",
            "kind": AreaKind.commune,
            "division_type": w.division_type.value,
            "name": _clean(w.name),
            "name_folded": fold(w.name),
            "parent_id": province_ids[f"p{int(w.province_code):02d}"],
            "province_id": province_ids[f"p{int(w.province_code):02d}"],
            "coastal": w.division_type in _COASTAL_TYPES,
        }
        for w in Ward.iter_all()
        if f"{int(w.code):05d}" not in existing
    ]
    if communes:
        await session.execute(insert(Area), communes)
    return len(provinces), len(communes)


async def seed_topics(session: AsyncSession) -> int:
    existing = set((await session.scalars(select(Topic.slug))).all())
    rows = [
        {"slug": slug, "name": name, "description": description, "position": position}
        for position, (slug, name, description) in enumerate(TOPICS)
        if slug not in existing
    ]
    if rows:
        await session.execute(insert(Topic), rows)
    return len(rows)


async def seed_all(session: AsyncSession) -> SeedReport:
    """Seed everything missing; the caller commits."""
    provinces, communes = await seed_map(session)
    topics = await seed_topics(session)
    return SeedReport(provinces_added=provinces, communes_added=communes, topics_added=topics)
