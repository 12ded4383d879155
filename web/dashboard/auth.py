"""Dashboard sign-in: signed session cookies, per-session CSRF tokens and login lock-out."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from broadcasts import audit, officials
from db.models import Official

COOKIE_NAME = "hd_session"
SESSION_MAX_AGE = dt.timedelta(hours=12)
MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
CSRF_FIELD = "csrf_token"
_SALT = "haidang.dashboard.session"


@dataclass(frozen=True)
class SessionData:
    """What the cookie carries: who (or nobody yet) and the session's CSRF token."""

    csrf: str
    official_id: int | None = None
    # Ties the session to the password hash: a password change ends older sessions.
    fingerprint: str | None = None


def new_session(official: Official | None = None, *, secret: str = "") -> SessionData:
    """A fresh session (new CSRF token), signed in as `official` when given."""
    token = secrets.token_urlsafe(32)
    if official is None:
        return SessionData(csrf=token)
    return SessionData(
        csrf=token, official_id=official.id, fingerprint=fingerprint(secret, official)
    )


def fingerprint(secret: str, official: Official) -> str:
    digest = hmac.new(
        secret.encode(), f"{official.id}:{official.password_hash}".encode(), hashlib.sha256
    )
    return digest.hexdigest()[:32]


class SessionCodec:
    """Signs and reads the session cookie (HttpOnly, SameSite=Lax, Secure behind https)."""

    def __init__(self, secret: str, *, secure: bool, path: str) -> None:
        self.secret = secret
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._secure = secure
        self._path = path

    def encode(self, data: SessionData) -> str:
        payload: dict[str, Any] = {"c": data.csrf}
        if data.official_id is not None:
            payload["o"] = data.official_id
            payload["f"] = data.fingerprint
        return str(self._serializer.dumps(payload))

    def decode(self, token: str | None) -> SessionData | None:
        """The session in a cookie value; None when absent, tampered with or too old."""
        if not token:
            return None
        try:
            payload = self._serializer.loads(token, max_age=int(SESSION_MAX_AGE.total_seconds()))
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(payload, dict):
            return None
        csrf, official_id, print_ = payload.get("c"), payload.get("o"), payload.get("f")
        if not isinstance(csrf, str) or len(csrf) < 32:
            return None
        if official_id is not None and (
            not isinstance(official_id, int) or not isinstance(print_, str)
        ):
            return None
        return SessionData(csrf=csrf, official_id=official_id, fingerprint=print_)

    def store(self, response: Response, data: SessionData) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self.encode(data),
            max_age=int(SESSION_MAX_AGE.total_seconds()),
            path=self._path,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE_NAME, path=self._path, httponly=True, samesite="lax", secure=self._secure
        )


def csrf_matches(session: SessionData | None, submitted: object) -> bool:
    """Constant-time comparison of the form's token with the session's."""
    if session is None or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())


@cache
def _dummy_hash() -> str:
    # Verifying against a throwaway hash for unknown names keeps their timing like a real miss.
    return officials.hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class LoginResult:
    official: Official | None  # set only on success
    locked_until: dt.datetime | None = None  # set when the account is (now) locked


async def attempt_login(
    session: AsyncSession, *, username: str, password: str, now: dt.datetime
) -> LoginResult:
    """Check a username and password; count failures and lock after MAX_FAILED_LOGINS.

    Every outcome writes an audit row in `session` (the caller commits whatever happens).
    A locked account is refused without looking at the password, so guessing stops.
    """
    name = username.strip().lower()[:60]
    official = await session.scalar(select(Official).where(Official.username == name))
    if official is None or not official.active:
        officials.verify_password(_dummy_hash(), password)
        await audit.record(
            session, now=now, official=official, via="web", action="official.login_failed",
            object_type="official", object_id=official.id if official else None,
        )  # fmt: skip
        return LoginResult(official=None)
    if official.locked_until is not None and official.locked_until > now:
        await audit.record(
            session, now=now, official=official, via="web", action="official.login_failed",
            object_type="official", object_id=official.id, details={"locked": True},
        )  # fmt: skip
        return LoginResult(official=None, locked_until=official.locked_until)
    if not officials.verify_password(official.password_hash, password):
        official.failed_logins += 1
        await audit.record(
            session, now=now, official=official, via="web", action="official.login_failed",
            object_type="official", object_id=official.id,
            details={"failed_logins": official.failed_logins},
        )  # fmt: skip
        if official.failed_logins >= MAX_FAILED_LOGINS:
            official.locked_until = now + LOCKOUT
            official.failed_logins = 0
            await audit.record(
                session, now=now, official=official, via="web", action="official.lockout",
                object_type="official", object_id=official.id,
                details={"until": official.locked_until.isoformat()},
            )  # fmt: skip
            return LoginResult(official=None, locked_until=official.locked_until)
        return LoginResult(official=None)
    if officials.needs_rehash(official.password_hash):
        official.password_hash = officials.hash_password(password)
    official.failed_logins = 0
    official.locked_until = None
    official.last_login_at = now
    await audit.record(
        session, now=now, official=official, via="web", action="official.login",
        object_type="official", object_id=official.id,
    )  # fmt: skip
    return LoginResult(official=official)
