"""A fake of Zalo's Official Account Open API, its OAuth v4 and ZNS, on 127.0.0.1.

One aiohttp server serves all three (the real ones are three hosts: oauth.zaloapp.com,
openapi.zalo.me, business.openapi.zalo.me; point each base URL option at `base_url`):

- OAuth v4 `POST /v4/oa/access_token`: a refresh rotates the refresh token (the old one is
  refused from then on) and gives an access token that expires after `access_ttl_s`.
- OA v3 `POST /v3.0/oa/message/cs`: a consultation message to a follower, refused outside
  `window_s` since the follower's last interaction and beyond `cs_per_window` messages
  per interaction; `storm()` answers the next calls with Zalo's rate-limit error.
- ZNS `POST /message/template`: checks the template, every parameter, the phone and the
  daily quota; returns a msg_id, then posts a delivery callback after `callback_delay_s`.
- Helpers a test uses as the people: `follow`, `send_text` post OA webhook events signed
  like Zalo's (`X-ZEvent-Signature: mac=sha256(app_id + body + timestamp + OA secret)`).

Zalo's rules (window, quotas, rate limits) are not stable public facts, so each is a
setting here. Error codes are those Zalo answers with as far as public integrations
show; ZNS has no documented failure callback, so ZNS_FAILED_EVENT is this fake's (and
bot.zns's) stand-in for "the platform gave up on this message".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.fakes._common import RateWindow

SIGNATURE_HEADER = "X-ZEvent-Signature"
ZNS_DELIVERED_EVENT = "user_received_message"
ZNS_FAILED_EVENT = "zns_delivery_failed"  # a stand-in: see the module docstring

# OA v3 answers (HTTP 200 with {"error": <code>, "message": ...}).
OA_INVALID_PARAMS = -201
OA_NOT_FOLLOWER = -213
OA_INVALID_TOKEN = -216
OA_BLOCKED = -217
OA_OUTSIDE_WINDOW = -230
OA_QUOTA = -232  # consultation messages beyond the allowance of one interaction
RATE_LIMITED = -32
# ZNS answers.
ZNS_INVALID_PHONE = -108
ZNS_INVALID_TEMPLATE = -109
ZNS_TEMPLATE_DATA = -112
ZNS_NO_ACCOUNT = -118
ZNS_INVALID_TOKEN = -124
ZNS_DAILY_QUOTA = -144
# OAuth answers.
OAUTH_INVALID_REFRESH = -14014
OAUTH_INVALID_SECRET = -14002

_PHONE = re.compile(r"84\d{9}")


def signature(app_id: str, body: str, timestamp: str, secret: str) -> str:
    """The X-ZEvent-Signature value Zalo sends with each event."""
    digest = hashlib.sha256(f"{app_id}{body}{timestamp}{secret}".encode()).hexdigest()
    return f"mac={digest}"


@dataclass
class Follower:
    last_interaction: float  # monotonic
    sent_since: int = 0  # consultation messages since that interaction
    blocked: bool = False


@dataclass(frozen=True)
class Callback:
    """One POST of an event to a webhook; status None when it could not be delivered."""

    url: str
    event: dict[str, Any]
    status: int | None


@dataclass
class ZnsMessage:
    msg_id: str
    phone: str
    template_id: str
    template_data: dict[str, Any]
    tracking_id: str | None


@dataclass
class _State:
    refresh_tokens: set[str] = field(default_factory=set)
    access: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    followers: dict[str, Follower] = field(default_factory=dict)
    cs_sent: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    cs_errors: list[tuple[str, int]] = field(default_factory=list)
    zns_sent: list[ZnsMessage] = field(default_factory=list)
    zns_errors: list[tuple[str, int]] = field(default_factory=list)
    callbacks: list[Callback] = field(default_factory=list)


class FakeZaloOA:
    """The Official Account of one app (`app_id`, secret `app_secret`), as Zalo serves it."""

    def __init__(
        self,
        *,
        app_id: str = "4318836101223456789",
        app_secret: str = "FakeAppSecretKey0123",  # noqa: S107 - a fake's
        oa_id: str = "579745863508352884",
        oa_secret: str | None = None,
        access_ttl_s: float = 90000.0,
        window_s: float = 7 * 86400.0,
        cs_per_window: int | None = None,
        rate_limit_per_second: int | None = None,
        templates: Mapping[str, tuple[str, ...]] | None = None,
        zns_daily_quota: int = 500,
        callback_delay_s: float = 0.05,
        no_zalo_account: set[str] | None = None,
        undeliverable: set[str] | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.oa_id = oa_id
        # The key events are signed with: the app's secret key unless told otherwise.
        self.oa_secret = oa_secret or app_secret
        self.access_ttl_s = access_ttl_s
        self.window_s = window_s
        self.cs_per_window = cs_per_window
        self.templates = dict(templates or {"231456": ("title", "area", "time")})
        self.zns_daily_quota = zns_daily_quota
        self.callback_delay_s = callback_delay_s
        self.no_zalo_account = set(no_zalo_account or ())
        self.undeliverable = set(undeliverable or ())
        self.latency_s = latency_s
        self.oa_webhook_url: str | None = None
        self.zns_webhook_url: str | None = None
        self._rate = RateWindow(rate_limit_per_second) if rate_limit_per_second else None
        self._storm = 0
        self._lock = threading.RLock()
        self._state = _State()
        self.refresh_token = self._new_refresh_token()
        self.refreshes = 0
        self.refused_refreshes = 0
        self.rate_limited = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._session: aiohttp.ClientSession | None = None
        self._posts: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeZaloOA is not running")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v4/oa/access_token", self._oauth)
        app.router.add_post("/v3.0/oa/message/cs", self._cs)
        app.router.add_post("/message/template", self._zns)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._posts):
            task.cancel()
        await asyncio.gather(*self._posts, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --------------------------------------------------------------- test controls

    def _new_refresh_token(self) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        self._state.refresh_tokens = {token}
        return token

    def expire_access_tokens(self) -> None:
        """Every access token given so far stops working (calls get -216 / -124)."""
        with self._lock:
            self._state.access.clear()

    def storm(self, calls: int) -> None:
        """The next `calls` API calls are refused with Zalo's rate-limit error."""
        with self._lock:
            self._storm = calls

    def idle(self, user_id: str, seconds: float) -> None:
        """Make the follower's last interaction `seconds` older."""
        with self._lock:
            self._state.followers[user_id].last_interaction -= seconds

    def block(self, user_id: str) -> None:
        with self._lock:
            self._state.followers[user_id].blocked = True

    def add_followers(self, user_ids: list[str]) -> None:
        """Followers who interacted just now, without posting their events."""
        now = time.monotonic()
        with self._lock:
            for user_id in user_ids:
                self._state.followers[user_id] = Follower(now)

    def texts_to(self, user_id: str) -> list[str]:
        """The consultation texts the OA sent the follower, in order."""
        with self._lock:
            return [m.get("text", "") for m in self._state.cs_sent.get(user_id, [])]

    def messages_to(self, user_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._state.cs_sent.get(user_id, [])]

    @property
    def cs_recipients(self) -> dict[str, int]:
        """How many messages each follower got."""
        with self._lock:
            return {user: len(sent) for user, sent in self._state.cs_sent.items() if sent}

    @property
    def cs_errors(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._state.cs_errors)

    @property
    def zns_sent(self) -> list[ZnsMessage]:
        with self._lock:
            return list(self._state.zns_sent)

    @property
    def zns_errors(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._state.zns_errors)

    @property
    def callbacks(self) -> list[Callback]:
        with self._lock:
            return list(self._state.callbacks)

    # --------------------------------------------------------- people's side

    async def follow(self, user_id: str) -> Callback:
        """The person follows the OA: an interaction, and a `follow` event."""
        with self._lock:
            self._state.followers[user_id] = Follower(time.monotonic())
        event = {
            "oa_id": self.oa_id, "follower": {"id": user_id}, "user_id_by_app": f"a{user_id}",
            "event_name": "follow", "source": "oa_profile", "app_id": self.app_id,
            "timestamp": self._timestamp(),
        }  # fmt: skip
        return await self._post(self.oa_webhook_url, event)

    async def send_text(self, user_id: str, text: str) -> Callback:
        """The person writes to the OA: an interaction, and a `user_send_text` event."""
        with self._lock:
            follower = self._state.followers.setdefault(user_id, Follower(time.monotonic()))
            follower.last_interaction = time.monotonic()
            follower.sent_since = 0
        event = {
            "app_id": self.app_id, "sender": {"id": user_id}, "user_id_by_app": f"a{user_id}",
            "recipient": {"id": self.oa_id}, "event_name": "user_send_text",
            "message": {"text": text, "msg_id": secrets.token_hex(16)},
            "timestamp": self._timestamp(),
        }  # fmt: skip
        return await self._post(self.oa_webhook_url, event)

    async def post_raw(self, url: str, body: str, *, signature_header: str | None) -> int:
        """POST any body with any signature (None: no header) and return the status."""
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if signature_header is not None:
            headers[SIGNATURE_HEADER] = signature_header
        async with self._session.post(url, data=body.encode(), headers=headers) as response:
            return response.status

    def _timestamp(self) -> str:
        return str(int(time.time() * 1000))

    async def _post(self, url: str | None, event: dict[str, Any]) -> Callback:
        assert self._session is not None
        if url is None:
            raise RuntimeError("no webhook registered with the fake")
        body = json.dumps(event, ensure_ascii=False)
        mac = signature(self.app_id, body, str(event["timestamp"]), self.oa_secret)
        status: int | None = None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.post(
                url, data=body.encode(),
                headers={"Content-Type": "application/json", SIGNATURE_HEADER: mac},
            ) as response:  # fmt: skip
                status = response.status
        callback = Callback(url, event, status)
        with self._lock:
            self._state.callbacks.append(callback)
        return callback

    # ----------------------------------------------------------------- handlers

    async def _pause(self) -> None:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def _throttled(self) -> bool:
        """Storm mode, or more calls in the last second than the rate limit allows."""
        with self._lock:
            if self._storm > 0:
                self._storm -= 1
                self.rate_limited += 1
                return True
            if self._rate is not None and self._rate.acquire(time.monotonic()) is not None:
                self.rate_limited += 1
                return True
        return False

    def _token_ok(self, request: web.Request) -> bool:
        token = request.headers.get("access_token", "")
        with self._lock:
            expiry = self._state.access.get(token)
            return expiry is not None and expiry > time.monotonic()

    async def _oauth(self, request: web.Request) -> web.Response:
        await self._pause()
        form = await request.post()
        with self._lock:
            if request.headers.get("secret_key") != self.app_secret:
                return _json({"error": OAUTH_INVALID_SECRET, "error_name": "Invalid secret key"})
            refresh = str(form.get("refresh_token", ""))
            if (
                form.get("grant_type") != "refresh_token"
                or form.get("app_id") != self.app_id
                or refresh not in self._state.refresh_tokens
            ):
                self.refused_refreshes += 1
                return _json(
                    {"error": OAUTH_INVALID_REFRESH, "error_name": "Invalid refresh token",
                     "error_description": "refresh token is invalid or was used"}
                )  # fmt: skip
            self.refresh_token = self._new_refresh_token()  # the old one is dead now
            access = "at-" + secrets.token_urlsafe(24)
            self._state.access[access] = time.monotonic() + self.access_ttl_s
            self.refreshes += 1
            return _json(
                {"access_token": access, "refresh_token": self.refresh_token,
                 "expires_in": str(int(self.access_ttl_s))}
            )  # fmt: skip

    async def _cs(self, request: web.Request) -> web.Response:
        await self._pause()
        try:
            body = await request.json()
            user_id = str(body["recipient"]["user_id"])
            message = dict(body["message"])
        except (ValueError, KeyError, TypeError):
            return _json({"error": OA_INVALID_PARAMS, "message": "Parameters are invalid"})
        if not self._token_ok(request):
            return self._cs_error(user_id, OA_INVALID_TOKEN, "Access token is invalid")
        if self._throttled():
            return self._cs_error(user_id, RATE_LIMITED, "Request exceeded the rate limit")
        text = message.get("text")
        if text is not None and not 1 <= len(str(text)) <= 2000:
            return self._cs_error(user_id, OA_INVALID_PARAMS, "Text length is invalid")
        with self._lock:
            follower = self._state.followers.get(user_id)
            if follower is None:
                return self._cs_error(user_id, OA_NOT_FOLLOWER, "User has not followed the OA")
            if follower.blocked:
                return self._cs_error(user_id, OA_BLOCKED, "User has blocked the OA")
            if time.monotonic() - follower.last_interaction > self.window_s:
                return self._cs_error(
                    user_id, OA_OUTSIDE_WINDOW,
                    "User has not interacted with the OA in the allowed time",
                )  # fmt: skip
            if self.cs_per_window is not None and follower.sent_since >= self.cs_per_window:
                return self._cs_error(user_id, OA_QUOTA, "Out of quota for this user")
            follower.sent_since += 1
            self._state.cs_sent[user_id].append(message)
            message_id = f"oa{next(self._ids):08d}"
        return _json({"error": 0, "message": "Success",
                      "data": {"message_id": message_id, "user_id": user_id}})  # fmt: skip

    def _cs_error(self, user_id: str, code: int, text: str) -> web.Response:
        with self._lock:
            self._state.cs_errors.append((user_id, code))
        return _json({"error": code, "message": text})

    async def _zns(self, request: web.Request) -> web.Response:
        await self._pause()
        try:
            body = await request.json()
            phone = str(body["phone"])
            template_id = str(body["template_id"])
            data = body.get("template_data")
            tracking_id = body.get("tracking_id")
        except (ValueError, KeyError, TypeError):
            return _json({"error": -100, "message": "Body is invalid"})
        if not self._token_ok(request):
            return self._zns_error(phone, ZNS_INVALID_TOKEN, "Access token is invalid")
        if self._throttled():
            return self._zns_error(phone, RATE_LIMITED, "Request exceeded the rate limit")
        if not _PHONE.fullmatch(phone):
            return self._zns_error(phone, ZNS_INVALID_PHONE, "Phone number is invalid")
        params = self.templates.get(template_id)
        if params is None:
            return self._zns_error(phone, ZNS_INVALID_TEMPLATE, "Template id is invalid")
        if not isinstance(data, dict) or any(str(data.get(p, "")).strip() == "" for p in params):
            return self._zns_error(phone, ZNS_TEMPLATE_DATA, "Template data is invalid")
        if phone in self.no_zalo_account:
            return self._zns_error(phone, ZNS_NO_ACCOUNT, "Zalo account does not exist")
        with self._lock:
            if len(self._state.zns_sent) >= self.zns_daily_quota:
                return self._zns_error(phone, ZNS_DAILY_QUOTA, "Exceeded the daily quota")
            message = ZnsMessage(
                secrets.token_hex(16), phone, template_id, dict(data),
                str(tracking_id) if tracking_id is not None else None,
            )  # fmt: skip
            self._state.zns_sent.append(message)
            remaining = self.zns_daily_quota - len(self._state.zns_sent)
        task = asyncio.create_task(self._zns_callback(message))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)
        return _json(
            {"error": 0, "message": "Success",
             "data": {"msg_id": message.msg_id, "sent_time": self._timestamp(),
                      "quota": {"dailyQuota": str(self.zns_daily_quota),
                                "remainingQuota": str(remaining)}}}
        )  # fmt: skip

    def _zns_error(self, phone: str, code: int, text: str) -> web.Response:
        with self._lock:
            self._state.zns_errors.append((phone, code))
        return _json({"error": code, "message": text})

    async def _zns_callback(self, message: ZnsMessage) -> None:
        await asyncio.sleep(self.callback_delay_s)
        failed = message.phone in self.undeliverable
        event: dict[str, Any] = {
            "app_id": self.app_id, "sender": {"id": self.oa_id},
            "recipient": {"id": f"u{message.phone[-6:]}"},
            "event_name": ZNS_FAILED_EVENT if failed else ZNS_DELIVERED_EVENT,
            "message": {"msg_id": message.msg_id, "tracking_id": message.tracking_id,
                        "delivery_time": self._timestamp()},
            "timestamp": self._timestamp(),
        }  # fmt: skip
        if failed:
            event["message"]["error"] = {"code": -114, "description": "User cannot receive ZNS"}
        await self._post(self.zns_webhook_url or self.oa_webhook_url, event)


def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))
