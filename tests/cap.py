"""Checks for every CAP message the tests produce: the OASIS CAP 1.2 schema, then capparser."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import capparser
from lxml import etree

from broadcasts import bulletins
from db.models import Official
from tests.broadcasts.engine import NOW, officials_pair
from tests.conftest import Database

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "cap" / "CAP-v1.2.xsd")))
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SENDER = "canhbao.example.vn"


def checked(body: bytes) -> Any:
    """The message parsed back by capparser, after it validated against the CAP 1.2 schema
    (AssertionError with the schema's complaints otherwise)."""
    document = etree.fromstring(body)
    assert SCHEMA.validate(document), SCHEMA.error_log
    return capparser.parse(stringXML=body)


def infos(alert: Any) -> list[Any]:
    return list(alert.info[0])


def areas(info: Any) -> list[tuple[str, str, str]]:
    """(areaDesc, geocode valueName, geocode value) of each area of a parsed info block."""
    return [
        (area.areaDesc[0], geocode.valueName[0], geocode.value[0])
        for area in info.area[0]
        for geocode in area.geocode[0]
    ]


async def approved(
    database: Database,
    *,
    title: str = "Áp thấp nhiệt đới trên Biển Đông",
    body: str = "Gió mạnh cấp 7, giật cấp 9. Tàu thuyền không ra khơi.",
    areas: tuple[str, ...] = ("11914",),
    topic: str | None = None,
    urgent: bool = False,
    expires_at: dt.datetime | None = None,
    translations: dict[str, tuple[str, str]] | None = None,
    approve: bool = True,
    at: dt.datetime = NOW,
    supersedes: int | None = None,
) -> int:
    """A bulletin written by Hải Phòng's editor and (unless not `approve`) approved at `at`;
    an update of bulletin `supersedes` when given."""
    editor_id, approver_id = await officials_pair(database)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        earlier = await bulletins.get(session, supersedes) if supersedes is not None else None
        bulletin = await bulletins.create(
            session, author=editor, title=title, body=body, area_codes=list(areas), now=at,
            topic_slug=topic, urgent=urgent, expires_at=expires_at, translations=translations,
            supersedes=earlier, submit=True,
        )  # fmt: skip
        if approve:
            approver = await session.get_one(Official, approver_id)
            await bulletins.approve(session, bulletin, approver, at)
        return bulletin.id


async def cancel(database: Database, bulletin_id: int, at: dt.datetime) -> None:
    editor_id, _ = await officials_pair(database)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        await bulletins.cancel(session, await bulletins.get(session, bulletin_id), editor, at)
