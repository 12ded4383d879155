"""An Official Account app's access token, shared by its processes and bots through one row.

Zalo's OAuth v4 rotates the refresh token at every refresh and the old one stops working,
so two processes (or the OA and the ZNS bot of one app) refreshing at once would leave one
of them, and then everyone, with a dead token. Hence one row per app (db.models.OAuthToken)
and a refresh only under that row's lock (SELECT ... FOR UPDATE on PostgreSQL, the
write lock of BEGIN IMMEDIATE on SQLite): whoever gets the lock second finds the fresh
token and uses it. The HTTP call is made inside that transaction: refreshes are rare (an
access token lives about 25 hours) and holding the lock is what keeps them single.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.front_end import FrontEndArgs
from broadcasts.bots import TokenBox
from broadcasts.channels import FailureKind, SendFailure
from broadcasts.pacing import request_written
from db.engine import reading
from db.models import OAuthToken

log = logging.getLogger(__name__)

TOKEN_PATH = "/v4/oa/access_token"  # noqa: S105 - a path, not a secret
# An access token is refreshed when less than this is left of it: a send started just
# before the expiry must not arrive with a dead token.
REFRESH_MARGIN = dt.timedelta(minutes=5)
DEFAULT_LIFETIME_S = 90000  # what Zalo gives when its answer carries no usable expires_in
TIMEOUT_S = 15.0


class OAuthError(RuntimeError):
    """The app's tokens cannot be refreshed (a refresh token refused, no row seeded).

    An administrator must seed a new refresh token (`seed`); the front end reports this
    as its reason and the part retries, so a fixed row is picked up without a restart.
    """


async def seed(session: AsyncSession, box: TokenBox, app_id: str, refresh_token: str) -> None:
    """Store an app's refresh token (from Zalo's developer console) at registration.

    Replaces whatever the row held: the next send refreshes the access token from it.
    The caller owns the transaction.
    """
    row = await session.get(OAuthToken, app_id, with_for_update=True)
    sealed = box.seal(refresh_token.strip())
    if row is None:
        session.add(OAuthToken(app_id=app_id, refresh_sealed=sealed))
        return
    row.refresh_sealed = sealed
    row.access_sealed = None
    row.expires_at = None


class ZaloOAuth:
    """Access tokens of one app: from memory while fresh, else from the shared row, else
    refreshed under the row's lock. One per front end; any number may share an app."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: TokenBox,
        *,
        app_id: str,
        secret_key: str,
        oauth_base_url: str,
        client: httpx.AsyncClient,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._sessions = sessions
        self._box = box
        self.app_id = app_id
        self._secret_key = secret_key
        self._url = oauth_base_url.rstrip("/") + TOKEN_PATH
        self._client = client
        self._clock = clock
        self._token: str | None = None
        self._expires_at: dt.datetime | None = None
        self._lock = asyncio.Lock()  # one refresh at a time in this front end
        self.refreshes = 0  # refreshes this instance made (the others' are not counted)

    def _fresh(self, expires_at: dt.datetime | None) -> bool:
        if expires_at is None:
            return False
        if expires_at.tzinfo is None:  # SQLite gives naive datetimes back (stored as UTC)
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        return expires_at - REFRESH_MARGIN > self._clock()

    async def access_token(self) -> str:
        """A live access token; refreshes it when it is expired or about to be.

        Raises OAuthError when Zalo refuses the refresh token (or none is seeded), and
        httpx errors when Zalo cannot be reached (the caller's send is then transient).
        """
        if self._token is not None and self._fresh(self._expires_at):
            return self._token
        async with self._lock:
            if self._token is not None and self._fresh(self._expires_at):
                return self._token  # refreshed while this call waited
            async with reading(self._sessions) as session:
                row = await session.get(OAuthToken, self.app_id)
                if row is None:
                    raise OAuthError(f"no OAuth token seeded for app {self.app_id}")
                if row.access_sealed is not None and self._fresh(row.expires_at):
                    return self._keep(self._box.open(row.access_sealed), row.expires_at)
            return await self._refresh(refused=None)

    async def refused(self, token: str) -> str:
        """Zalo refused `token` as invalid (-216, -124) before its expiry (revoked, or a
        refresh elsewhere replaced it): a token to retry with, refreshed unless someone
        already has."""
        async with self._lock:
            if self._token is not None and self._token != token:
                return self._token
            return await self._refresh(refused=token)

    def _keep(self, token: str, expires_at: dt.datetime | None) -> str:
        self._token = token
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=dt.UTC)
        self._expires_at = expires_at
        return token

    async def _refresh(self, *, refused: str | None) -> str:
        """Under the row's lock: use a token another process refreshed meanwhile, or
        refresh and store the rotated refresh token in the same transaction."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(OAuthToken).where(OAuthToken.app_id == self.app_id).with_for_update()
            )
            if row is None:
                raise OAuthError(f"no OAuth token seeded for app {self.app_id}")
            current = self._box.open(row.access_sealed) if row.access_sealed else None
            if current is not None and current != refused and self._fresh(row.expires_at):
                return self._keep(current, row.expires_at)
            answer = await self._call(self._box.open(row.refresh_sealed))
            now = self._clock()
            expires_at = now + dt.timedelta(seconds=_lifetime(answer.get("expires_in")))
            access = str(answer["access_token"])
            row.access_sealed = self._box.seal(access)
            row.refresh_sealed = self._box.seal(str(answer["refresh_token"]))
            row.expires_at = expires_at
            row.refreshed_at = now
        self.refreshes += 1
        log.info("zalo oauth: refreshed the access token of app %s", self.app_id)
        return self._keep(access, expires_at)

    async def _call(self, refresh_token: str) -> dict[str, Any]:
        response = await self._client.post(
            self._url,
            headers={"secret_key": self._secret_key},
            data={
                "refresh_token": refresh_token,
                "app_id": self.app_id,
                "grant_type": "refresh_token",
            },
            timeout=TIMEOUT_S,
        )
        if response.status_code >= 500:
            response.raise_for_status()  # an HTTPStatusError: transient for the caller
        try:
            answer = response.json()
        except ValueError:
            raise OAuthError(f"refresh answered HTTP {response.status_code}, no JSON") from None
        if not isinstance(answer, dict) or not answer.get("access_token"):
            # Never the body as a whole: it may echo what we sent. Its code and name only.
            code = answer.get("error") if isinstance(answer, dict) else None
            name = answer.get("error_name") if isinstance(answer, dict) else None
            raise OAuthError(
                f"Zalo refused the refresh token of app {self.app_id} ({code} {name}); "
                "seed a new one"
            )
        if not answer.get("refresh_token"):
            raise OAuthError(f"refresh of app {self.app_id} gave no new refresh token")
        return answer


def _lifetime(value: object) -> int:
    """Zalo's expires_in: seconds, sent as a string."""
    try:
        seconds = int(str(value))
    except ValueError:
        return DEFAULT_LIFETIME_S
    return seconds if seconds > 0 else DEFAULT_LIFETIME_S


async def _written(event: str, info: dict[str, Any]) -> None:
    # httpcore's trace: the request is on the wire; the pacer counts the send from now
    # (broadcasts.pacing), as bot.zalo's transport does.
    if event.endswith(("send_request_headers.complete", "send_request_body.complete")):
        request_written()


async def _traced(request: httpx.Request) -> None:
    request.extensions["trace"] = _written


def split_secret(secret: str) -> tuple[str, str]:
    """The app's secret key, and the key its webhook events are signed with.

    A bot's sealed secret is the app's secret key, or "<app secret key> <OA secret key>"
    when Zalo shows the webhook's OA secret key apart from the app's (neither has spaces).
    """
    parts = secret.split()
    if not parts:
        raise OAuthError("the app's secret key is empty")
    return parts[0], parts[-1]


DEFAULT_OAUTH_BASE_URL = "https://oauth.zaloapp.com"


def app_for(args: FrontEndArgs) -> ZaloApp:
    """The app of an OA or ZNS bot, from its options (app_id, oauth_base_url) and secret."""
    return ZaloApp(
        args.sessions, args.box, app_id=str(args.options["app_id"]), secret=args.secret,
        oauth_base_url=str(args.options.get("oauth_base_url") or DEFAULT_OAUTH_BASE_URL),
    )  # fmt: skip


class ZaloApp:
    """HTTP calls of one app's APIs with its access token (header `access_token`), for
    the OA and ZNS front ends; one httpx client per running front end.

    A thin adapter rather than an SDK: the only Zalo packages on PyPI are a sync 2021
    SDK of the older API (zalo-official-sdk, requests), a personal-account client
    (zalo-api: no Official Account at all) and a Bot Platform wrapper (pyzalo); none
    does OAuth v4 with rotating refresh tokens, ZNS, or asyncio.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: TokenBox,
        *,
        app_id: str,
        secret: str,
        oauth_base_url: str,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.client = httpx.AsyncClient(
            timeout=timeout_s, event_hooks={"request": [_traced]},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=64),
        )  # fmt: skip
        app_secret, self.event_secret = split_secret(secret)
        self.oauth = ZaloOAuth(
            sessions, box, app_id=app_id, secret_key=app_secret,
            oauth_base_url=oauth_base_url, client=self.client,
        )  # fmt: skip

    async def aclose(self) -> None:
        await self.client.aclose()

    async def post(
        self, url: str, payload: dict[str, Any], *, token_refused: int
    ) -> dict[str, Any]:
        """POST `payload` as JSON; Zalo's answer, whatever its `error` (the caller maps it).

        An answer `token_refused` (-216 on the OA API, -124 on ZNS) is retried once with a
        token refreshed unless someone already had. Raises SendFailure for what is not
        Zalo's answer: network and 5xx (transient), HTTP 429 (rate_limited), no tokens.
        """
        if self.client.is_closed:  # the front end stopped; a restart makes a new client
            raise SendFailure(FailureKind.transient, "the bot is stopped")
        try:
            token = await self.oauth.access_token()
        except OAuthError as exc:
            raise SendFailure(FailureKind.transient, f"oauth: {exc}") from None
        except httpx.HTTPError as exc:
            raise SendFailure(FailureKind.transient, f"oauth: {type(exc).__name__}") from None
        for attempt in (1, 2):
            try:
                response = await self.client.post(
                    url, json=payload, headers={"access_token": token}
                )
            except httpx.HTTPError as exc:
                raise SendFailure(FailureKind.transient, type(exc).__name__) from None
            if response.status_code == 429:
                raise SendFailure(FailureKind.rate_limited, "HTTP 429", retry_after=1.0)
            if response.status_code >= 500:
                raise SendFailure(FailureKind.transient, f"HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise SendFailure(FailureKind.transient, "answer is no JSON") from None
            if not isinstance(body, dict):
                raise SendFailure(FailureKind.transient, "answer is no JSON object")
            if error_code(body) == token_refused and attempt == 1:
                try:
                    token = await self.oauth.refused(token)
                except OAuthError as exc:
                    raise SendFailure(FailureKind.transient, f"oauth: {exc}") from None
                except httpx.HTTPError as exc:
                    raise SendFailure(
                        FailureKind.transient, f"oauth: {type(exc).__name__}"
                    ) from None
                continue
            return body
        raise AssertionError("unreachable")  # pragma: no cover


def error_code(body: dict[str, Any]) -> int:
    """Zalo's `error` field: 0 for success."""
    value = body.get("error", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
