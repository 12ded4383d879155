"""Official accounts: creation with argon2 password hashes, roles and their area scopes."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas
from db.models import Area, AreaKind, Official, OfficialRole

MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,59}$")

# Which kind of area each role is scoped to; admins have no scope (everything).
SCOPE_KINDS: dict[OfficialRole, tuple[AreaKind, ...]] = {
    OfficialRole.admin: (),
    OfficialRole.province_editor: (AreaKind.province,),
    OfficialRole.commune_editor: (AreaKind.commune,),
    OfficialRole.approver: (AreaKind.province, AreaKind.commune),
    OfficialRole.radio_operator: (AreaKind.commune,),
}

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


class OfficialError(ValueError):
    """An official account cannot be created or changed as asked; the message says why."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches; never raises for a wrong password or a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


async def create(
    session: AsyncSession,
    *,
    username: str,
    role: OfficialRole,
    password: str,
    area_code: str | None = None,
    display_name: str = "",
) -> Official:
    """Create an official; the area must match the role's scope (a province or a commune)."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise OfficialError(
            "username must be 3-60 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OfficialError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if await session.scalar(select(Official.id).where(Official.username == username)):
        raise OfficialError(f"an official named {username!r} already exists")

    area: Area | None = None
    allowed = SCOPE_KINDS[role]
    if area_code is not None:
        if not allowed:
            raise OfficialError("an admin has no area scope; leave --area out")
        try:
            area = await areas.get_by_code(session, area_code)
        except areas.AreaError as exc:
            raise OfficialError(str(exc)) from None
        if area.kind not in allowed:
            kinds = " or ".join(kind.value for kind in allowed)
            raise OfficialError(f"a {role.value} is scoped to a {kinds}; {area.name} is not")
    elif allowed:
        raise OfficialError(f"a {role.value} needs --area (a {allowed[0].value} code)")

    official = Official(
        username=username,
        role=role,
        password_hash=hash_password(password),
        area_id=area.id if area is not None else None,
        display_name=display_name.strip(),
    )
    session.add(official)
    await session.flush()
    return official


async def covers(session: AsyncSession, official: Official, area: Area) -> bool:
    """Whether `official`'s scope includes `area` (admins cover everything)."""
    if official.role is OfficialRole.admin:
        return True
    if official.area_id is None:
        return False
    if area.id == official.area_id:
        return True
    scope = await session.get_one(Area, official.area_id)
    if scope.kind is AreaKind.province:
        return area.province_id == scope.id
    # A commune scope covers its villages and ports.
    return area.parent_id == scope.id
