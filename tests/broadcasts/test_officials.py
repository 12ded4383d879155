"""Official accounts: argon2 hashes, role scopes, audit rows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from broadcasts import audit, officials
from db.models import AuditEntry, Official, OfficialRole
from tests.conftest import Database

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)


async def test_create_hashes_with_argon2_and_verifies(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        official = await officials.create(
            session,
            username="Lan.Nguyen",
            role=OfficialRole.commune_editor,
            password="mật khẩu dài 123",
            area_code="c11914",
        )
        await audit.record(
            session, now=NOW, official=None, via="cli", action="official.create",
            object_type="official", object_id=official.id,
        )  # fmt: skip
    async with seeded.sessions() as session:
        stored = await session.scalar(select(Official).where(Official.username == "lan.nguyen"))
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
        assert "mật khẩu" not in stored.password_hash
        assert officials.verify_password(stored.password_hash, "mật khẩu dài 123")
        assert not officials.verify_password(stored.password_hash, "wrong password")
        assert not officials.verify_password("not-a-hash", "anything")
        entry = await session.scalar(select(AuditEntry))
        assert entry is not None
        assert (entry.action, entry.via, entry.object_id) == (
            "official.create",
            "cli",
            str(stored.id),
        )
        assert entry.at == NOW


@pytest.mark.parametrize(
    ("role", "area", "message"),
    [
        (OfficialRole.commune_editor, "p31", "scoped to a commune"),
        (OfficialRole.province_editor, "11914", "scoped to a province"),
        (OfficialRole.commune_editor, None, "needs --area"),
        (OfficialRole.admin, "p31", "admin has no area"),
        (OfficialRole.approver, "99999", "unknown area code"),
    ],
)
async def test_scopes_must_fit_the_role(
    seeded: Database, role: OfficialRole, area: str | None, message: str
) -> None:
    async with seeded.sessions() as session:
        with pytest.raises(officials.OfficialError, match=message):
            await officials.create(
                session, username="someone", role=role, password="x" * 12, area_code=area
            )


async def test_bad_usernames_passwords_and_duplicates(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        with pytest.raises(officials.OfficialError, match="at least 10"):
            await officials.create(
                session, username="abc", role=OfficialRole.admin, password="short"
            )
        with pytest.raises(officials.OfficialError, match="username"):
            await officials.create(
                session, username="a b", role=OfficialRole.admin, password="x" * 12
            )
        await officials.create(session, username="root", role=OfficialRole.admin, password="x" * 12)
        with pytest.raises(officials.OfficialError, match="already exists"):
            await officials.create(
                session, username="ROOT", role=OfficialRole.admin, password="y" * 12
            )
