"""Dashboard sign-in: signed session cookies, per-session CSRF tokens, throttled sign-in."""

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
from web.dashboard import throttle

COOKIE_NAME = "hd_session"
SESSION_MAX_AGE = dt.timedelta(hours=12)
DEVICE_COOKIE = "hd_device"
DEVICE_MAX_AGE = dt.timedelta(days=180)
CSRF_FIELD = "csrf_token"
_SALT = "haidang.dashboard.session"
_DEVICE_SALT = "haidang.dashboard.device"


@dataclass(frozen=True)
class SessionData:
    """What the cookie carries: who (or nobody yet) and the session's CSRF token."""

    csrf: str
    official_id: int | None = None
    # Ties the session to the password hash and the session generation: a password
    # change or a sign-out ends every older session on the server.
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
    signed = f"{official.id}:{official.session_generation}:{official.password_hash}"
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256)
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
    # Verifying against a throwaway hash when no real one is checked (an unknown name, a
    # delayed attempt) keeps every refusal as slow as a wrong password: the time tells
    # nothing about which names exist.
    return officials.hash_password(secrets.token_urlsafe(16))


class DeviceCodec:
    """The device cookie: which names signed in from this browser before (OWASP's device
    cookie). Such a browser is throttled by its own failures only (see throttle)."""

    MAX_NAMES = 5  # a commune's shared computer signs in as a few officials

    def __init__(self, secret: str, *, secure: bool, path: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_DEVICE_SALT)
        self._secure = secure
        self._path = path

    def read(self, token: str | None) -> DeviceData | None:
        if not token:
            return None
        try:
            payload = self._serializer.loads(token, max_age=int(DEVICE_MAX_AGE.total_seconds()))
        except BadSignature:
            return None
        device, names = (payload.get("d"), payload.get("u")) if isinstance(payload, dict) else (
            None, None
        )  # fmt: skip
        if not isinstance(device, str) or not isinstance(names, list):
            return None
        return DeviceData(device, tuple(n for n in names if isinstance(n, str)))

    def store(self, response: Response, known: DeviceData | None, name: str) -> None:
        device = known.device if known else secrets.token_urlsafe(16)
        names = [name, *(n for n in (known.names if known else ()) if n != name)]
        value = self._serializer.dumps({"d": device, "u": names[: self.MAX_NAMES]})
        response.set_cookie(
            DEVICE_COOKIE, str(value), max_age=int(DEVICE_MAX_AGE.total_seconds()),
            path=self._path, httponly=True, samesite="lax", secure=self._secure,
        )  # fmt: skip


@dataclass(frozen=True)
class DeviceData:
    device: str  # a random id, made at this browser's first sign-in
    names: tuple[str, ...]  # the names that signed in from it, newest first


def login_name(username: str) -> str:
    return username.strip().lower()[:60]


async def attempt_login(
    session: AsyncSession,
    *,
    username: str,
    password: str,
    now: dt.datetime,
    client: str,
    device: DeviceData | None,
    secret: str,
) -> Official | None:
    """Check a name and password; the official on success, None on any refusal.

    Every refusal (unknown name, wrong password, a delay still running, a deactivated
    account) looks the same to the client: the same answer after one password hash
    check each. Failures raise growing delays (throttle), never a lock. Every outcome
    writes an audit row in `session` (the caller commits whatever happens).
    """
    name = login_name(username)
    known = device if device is not None and name in device.names else None
    keys = throttle.keys_for(
        secret, client=client, name=name, device=known.device if known else None
    )
    delayed = await throttle.waiting(session, keys, now)
    official = await session.scalar(select(Official).where(Official.username == name))
    usable = official is not None and official.active and not delayed
    checked = official.password_hash if usable and official else _dummy_hash()
    if officials.verify_password(checked, password) and usable and official:
        if officials.needs_rehash(official.password_hash):
            official.password_hash = officials.hash_password(password)
        official.last_login_at = now
        await throttle.forget(session, keys)
        await audit.record(
            session, now=now, official=official, via="web", action="official.login",
            object_type="official", object_id=official.id,
        )  # fmt: skip
        return official
    await throttle.record_failure(session, keys, now)
    await audit.record(
        session, now=now, official=official, via="web", action="official.login_failed",
        object_type="official", object_id=official.id if official else None,
        details={"delayed": True} if delayed else None,
    )  # fmt: skip
    return None
