"""Zalo Notification Service: an approved template to a phone number, and its callbacks.

ZNS only sends (a step of an urgent bulletin's fallback chain, to a phone a person
consented to): no conversation. Zalo posts a delivery callback for each message it
delivered; the ones it gave up on become `failed` (broadcasts.receipts), recorded in
batches and acknowledged only once written, so a crash does not lose one (except a failure
that came before the sender's record of its send: that one is retried in memory).

Zalo posts all of an app's events to one webhook URL: where an app has both an OA bot and
a ZNS bot, each ignores the other's events, so whatever receives the app's URL must
hand each event to both (or the two bots use two apps of the same OA).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bot.answers import Call, Owed
from bot.front_end import FrontEndArgs
from bot.webhooks import BadBody, dropped, one_line
from bot.zalo_oa import RATE_LIMITED, signed_event
from bot.zalo_oauth import OAuthError, ZaloApp, app_for, error_code
from broadcasts import receipts, sms
from broadcasts.channels import FailureKind, Outbound, SendFailure
from broadcasts.parts import PartStatus
from db.models import DeliveryState, Platform

log = logging.getLogger(__name__)

DEFAULT_ZNS_BASE_URL = "https://business.openapi.zalo.me"
SEND_PATH = "/message/template"
DELIVERED_EVENT = "user_received_message"
# Zalo documents no callback for a message it could not deliver; this event (with
# message.error) is what a relay or a later API would post, and what the tests' fake does.
FAILED_EVENT = "zns_delivery_failed"
RATE_LIMITED_PAUSE_S = 5.0
# Callbacks are written together: the first one waits this long for company, at most
# BATCH of them go in one transaction.
BATCH_WAIT_S = 0.05
BATCH = 200
# A callback can beat the sender's record of the send (outcomes are written about once a
# second): a failure that matched no `sent` row yet is tried again every UNMATCHED_RETRY_S
# for UNMATCHED_KEEP_S, in memory (a crash meanwhile loses it; the row then stays `sent`).
UNMATCHED_RETRY_S = 1.0
UNMATCHED_KEEP_S = 120.0
STOP_GRACE_S = 10.0  # at stop, how long the callbacks under way may take to be written

# ZNS error codes.
TOKEN_INVALID = -124
NO_RECIPIENT = (-108, -118, -119)  # phone invalid, no Zalo account, account cannot receive
REFUSES_ZNS = (-114, -139)  # the person turned ZNS off, or refused this OA's
TEMPLATE_DATA = (-111, -112)
TEMPLATE = (-109, -131)
DAILY_QUOTA = (-144, -147)  # the OA's, or the template's, daily quota is used up
NO_BALANCE = -115


def zns_failure(body: dict[str, Any], pause_s: float) -> SendFailure:
    """What the sender makes of a ZNS refusal."""
    code = error_code(body)
    if code == RATE_LIMITED:
        return SendFailure(FailureKind.rate_limited, "zns_rate_limited", retry_after=pause_s)
    if code in NO_RECIPIENT:
        return SendFailure(FailureKind.chat_not_found, f"zns_no_recipient {code}")
    if code in REFUSES_ZNS:
        return SendFailure(FailureKind.blocked, f"zns_refused {code}")
    if code in TEMPLATE_DATA:
        return SendFailure(FailureKind.bad_request, "zns_template_data")
    if code in TEMPLATE:
        return SendFailure(FailureKind.bad_request, "zns_template")
    if code in DAILY_QUOTA:
        # Permanent, not a pause: the quota comes back only at midnight, and an urgent
        # warning must not wait for it. Failing lets the fallback chain move the person on
        # to SMS at once.
        return SendFailure(FailureKind.bad_request, "zns_daily_quota")
    if code == NO_BALANCE:
        return SendFailure(FailureKind.bad_request, "zns_no_balance")
    return SendFailure(FailureKind.transient, f"zns_error {code}")


@dataclass
class _Callback:
    message_id: str
    state: DeliveryState
    reason: str | None
    written: asyncio.Future[None] | None  # None: a retry nobody waits for
    until: float = 0.0  # monotonic: when an unmatched failure is given up


def callback_outcome(event: dict[str, Any]) -> tuple[str, DeliveryState, str | None] | None:
    """A delivery callback as (message id, state, reason); None for other events."""
    name = event.get("event_name")
    message = event.get("message")
    if name not in (DELIVERED_EVENT, FAILED_EVENT) or not isinstance(message, dict):
        return None
    msg_id = message.get("msg_id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > 64:
        raise ValueError("message.msg_id is not a message id")
    if name == DELIVERED_EVENT:
        return msg_id, DeliveryState.sent, None
    error = message.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return msg_id, DeliveryState.failed, f"zns_undelivered {code}" if code else "zns_undelivered"


class ZnsFrontEnd:
    """One ZNS account (the app's OA): template messages out, delivery callbacks in.

    Options: app_id (its tokens are shared with the OA bot of the same app), zns_base_url,
    oauth_base_url, rate_limited_pause_s; secret as bot.zalo_oa's. No conversation: the
    answers it is given are refused if ever asked for (nobody writes to a ZNS sender).
    """

    name = "zns"

    def __init__(self, args: FrontEndArgs) -> None:
        options = args.options
        self._args = args
        self._bot_id = args.bot_id
        self._app_id = str(options["app_id"])
        self._base = str(options.get("zns_base_url") or DEFAULT_ZNS_BASE_URL).rstrip("/")
        self._pause_s = float(options.get("rate_limited_pause_s") or RATE_LIMITED_PAUSE_S)
        args.answers.attach(self)
        self._app = app_for(self._args)
        self._pending: list[_Callback] = []
        self._unmatched: list[_Callback] = []
        self._closing = False
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._running = False
        self._failure: str | None = None
        self.recorded = 0  # callbacks that changed a delivery

    @property
    def app(self) -> ZaloApp:
        return self._app

    def status(self) -> PartStatus:
        if not self._running:
            return PartStatus(active=False, detail=self._failure or "stopped")
        return PartStatus(active=True, detail=f"ZNS of app {self._app_id}")

    async def start(self) -> None:
        if self._app.client.is_closed:
            self._app = app_for(self._args)
        try:
            await self._app.oauth.access_token()
        except OAuthError as exc:
            self._failure = str(exc)
            raise
        self._failure = None
        self._running = True

    async def stop(self) -> None:
        """Write the callbacks that came in (each webhook call waits for its own), drop the
        unmatched ones still being retried, close the HTTP client."""
        self._running = False
        if self._writer is not None:
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(self._writer, STOP_GRACE_S)
            except TimeoutError:
                log.warning("zns: callbacks still being written at stop")
            self._writer = None
            self._closing = False
        if self._unmatched:
            log.warning("zns: %d failure callbacks matched no sent message", len(self._unmatched))
            self._unmatched = []
        await self._app.aclose()

    def channel(self) -> ZnsChannel:
        return ZnsChannel(self)

    # --- sending ----------------------------------------------------------------------

    async def send(self, chat_id: str, message: Outbound) -> str:
        """The template message to the phone `chat_id`; Zalo's msg_id."""
        if message.template_id is None:
            if message.media is not None:
                return ""  # ZNS carries no media; the template said it all
            raise SendFailure(FailureKind.bad_request, "zns_no_template")
        try:
            phone = sms.msisdn(chat_id)
        except ValueError:
            raise SendFailure(FailureKind.chat_not_found, "zns_invalid_phone") from None
        payload = {
            "phone": phone,
            "template_id": message.template_id,
            "template_data": dict(message.template_data or {}),
            "tracking_id": secrets.token_hex(8),
        }
        body = await self._app.post(
            f"{self._base}{SEND_PATH}", payload, token_refused=TOKEN_INVALID
        )
        if error_code(body) != 0:
            failure = zns_failure(body, self._pause_s)
            log.info("zns: %s refused (%s)", sms.mask(phone), failure.reason)
            raise failure
        data = body.get("data")
        msg_id = data.get("msg_id") if isinstance(data, dict) else None
        if not msg_id:
            raise SendFailure(FailureKind.transient, "zns answer without msg_id")
        return str(msg_id)

    # --- callbacks ----------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/zns/<bot id>: a signed delivery callback, answered 200 once it is
        written (503 if it could not be: Zalo posts it again)."""
        try:
            event = await signed_event(request, app_id=self._app_id, secret=self._app.event_secret)
        except BadBody as refused:
            return refused.response
        try:
            outcome = callback_outcome(event)
        except Exception as exc:
            return dropped("zns", exc)
        if outcome is None:
            return Response(status_code=200)
        written = asyncio.get_running_loop().create_future()
        self._pending.append(_Callback(*outcome, written))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name=f"zns:{self._bot_id}")
        try:
            await written
        except Exception as exc:
            log.warning("zns: callback not written (%s)", one_line(exc))
            return Response(status_code=503)
        return Response(status_code=200)

    def _take(self) -> list[_Callback]:
        batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
        return batch

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = UNMATCHED_RETRY_S if self._unmatched else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            if not self._closing:
                await asyncio.sleep(BATCH_WAIT_S)  # let callbacks arriving together gather
            while batch := self._take():
                await self._write(batch)
            if self._closing:
                return
            if self._unmatched:
                now = loop.time()
                retry = [c for c in self._unmatched if c.until > now]
                dropped_count = len(self._unmatched) - len(retry)
                if dropped_count:
                    log.warning("zns: %d failure callbacks matched no sent message", dropped_count)
                self._unmatched = []
                await self._write(retry)

    async def _write(self, batch: list[_Callback]) -> None:
        """One transaction for the batch; each webhook call learns the outcome."""
        if not batch:
            return
        unmatched: list[_Callback] = []
        changed = 0
        try:
            async with self._args.sessions.begin() as session:
                for callback in batch:
                    if await receipts.record(
                        session, self._bot_id, callback.message_id, callback.state,
                        callback.reason,
                    ):  # fmt: skip
                        changed += 1
                    elif callback.state is not DeliveryState.sent:
                        unmatched.append(callback)
        except Exception as exc:
            for callback in batch:
                if callback.written is None:
                    self._unmatched.append(callback)  # a retry: kept until given up
                elif not callback.written.done():
                    callback.written.set_exception(exc)
            return
        self.recorded += changed
        deadline = asyncio.get_running_loop().time() + UNMATCHED_KEEP_S
        for callback in unmatched:
            until = callback.until or deadline
            self._unmatched.append(
                _Callback(callback.message_id, callback.state, callback.reason, None, until)
            )
        for callback in batch:
            if callback.written is not None and not callback.written.done():
                callback.written.set_result(None)

    # --- answers (bot.answers.Renderer): nobody talks to a ZNS sender --------------------

    def calls(self, owed: Owed) -> list[Call]:
        async def refuse() -> object:
            raise SendFailure(FailureKind.bad_request, "zns takes no conversation")

        return [Call(refuse)]

    def after(self, owed: Owed) -> None:
        return None


class ZnsChannel:
    """The sender's view of a ZNS account: Outbound.template_id and template_data."""

    platform = Platform.zns
    max_text = 2000  # what the preview shows; the template decides what Zalo sends

    def __init__(self, front_end: ZnsFrontEnd) -> None:
        self._front_end = front_end

    async def send(self, chat_id: str, message: Outbound) -> str:
        return await self._front_end.send(chat_id, message)
