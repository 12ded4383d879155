"""Zalo Official Account front end: followers' events in, consultation messages out.

The conversation is the Zalo bot's (numbered options in text, "đã nhận" as a keyword);
only the transport differs: events arrive signed at the webhook (follow, user_send_text)
and every message goes out as a consultation message (`/v3.0/oa/message/cs`), which Zalo
refuses outside a window since the follower's last interaction and beyond a number of
messages per interaction. Those rules are Zalo's to change, so refusals are mapped to
clear, permanent reasons rather than retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bot import texts
from bot.answers import Received
from bot.conversation import EventKind, Inbound
from bot.front_end import FrontEndArgs
from bot.listening import Background
from bot.webhooks import (
    MAX_BODY,
    BadBody,
    checked_id,
    checked_optional_text,
    checked_text,
    dropped,
    one_line,
    webhook_secret_ok,
)
from bot.zalo import NumberedAnswers
from bot.zalo_oauth import OAuthError, ZaloApp, app_for, error_code
from broadcasts.channels import FailureKind, MediaKind, Outbound, SendFailure
from broadcasts.parts import PartStatus
from db.models import Platform

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://openapi.zalo.me"
CS_PATH = "/v3.0/oa/message/cs"
SIGNATURE_HEADER = "X-ZEvent-Signature"
MAX_TEXT = 2000  # characters in one OA text message
# Zalo sends no retry-after with its rate-limit error: the bot pauses this long (option
# `rate_limited_pause_s`).
RATE_LIMITED_PAUSE_S = 5.0

# OA v3 error codes (Zalo documents them loosely; these are what it answers with).
TOKEN_INVALID = -216
RATE_LIMITED = -32
NOT_FOLLOWER = -213
BLOCKED = -217
OUTSIDE_WINDOW = -230
USER_QUOTA = (-232, -211)  # messages beyond the allowance of one interaction / the OA's
INVALID_PARAMS = (-201, -210)


def event_signature(app_id: str, body: bytes, timestamp: str, secret: str) -> str:
    """What Zalo puts in X-ZEvent-Signature: mac=sha256(app id + body + timestamp + key)."""
    digest = hashlib.sha256(
        app_id.encode() + body + timestamp.encode() + secret.encode()
    ).hexdigest()
    return f"mac={digest}"


async def signed_event(request: Request, *, app_id: str, secret: str) -> dict[str, Any]:
    """A Zalo event whose signature holds (compared in constant time); raises BadBody:
    403 for a missing or wrong signature, 413 for a body over MAX_BODY, 400 for no JSON
    object (the signature covers the raw body and the timestamp inside it)."""
    given = request.headers.get(SIGNATURE_HEADER)
    if not given:
        raise BadBody(403)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BadBody(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadBody(413)
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        raise BadBody(403) from None  # unsigned garbage gets no hint that it was parsed
    if not isinstance(event, dict):
        raise BadBody(403)
    timestamp = event.get("timestamp")
    if not isinstance(timestamp, str | int) or isinstance(timestamp, bool):
        raise BadBody(403)
    expected = event_signature(app_id, bytes(body), str(timestamp), secret)
    if not webhook_secret_ok(expected, given):
        raise BadBody(403)
    return event  # a dict: only a dict has a timestamp


def to_inbound(event: dict[str, Any], bot_id: int) -> Inbound | None:
    """A follower's event for the conversation core; None for what we ignore (our own
    messages echoed back, receipts, unfollow, ZNS callbacks). Raises NotAnUpdate for a
    field of a type Zalo never sends."""
    name = event.get("event_name")
    if not isinstance(name, str):
        return None
    common: dict[str, Any] = {"bot_id": bot_id, "text_limit": MAX_TEXT, "voice_by_url": True}
    if name == "follow":
        follower = event.get("follower")
        user = checked_id(
            follower.get("id") if isinstance(follower, dict) else None,
            "follower.id", max_length=64,
        )  # fmt: skip
        stamp = checked_id(event.get("timestamp"), "timestamp", max_length=13)
        # Following is opening the bot: the conversation starts as a deep link would.
        return Inbound(chat_id=user, kind=EventKind.text, text="/start",
                       update_key=f"f:{user}:{stamp}", **common)  # fmt: skip
    if not name.startswith("user_send_"):
        return None
    sender = event.get("sender")
    user = checked_id(
        sender.get("id") if isinstance(sender, dict) else None, "sender.id", max_length=64
    )
    message = event.get("message")
    if not isinstance(message, dict):
        return None
    msg_id = checked_id(message.get("msg_id"), "message.msg_id", max_length=78)
    common.update(chat_id=user, update_key=f"m:{msg_id}")
    if name == "user_send_text":
        said = checked_text(message.get("text"), "message.text")
        return Inbound(kind=EventKind.text, text=said, **common)
    if name == "user_send_image":
        url = _attachment_url(message)
        if url is not None:
            return Inbound(kind=EventKind.photo, file_ref=f"zalo:{url}", **common)
    if name == "user_send_sticker":
        return Inbound(kind=EventKind.sticker, **common)
    return Inbound(kind=EventKind.other, **common)


def _attachment_url(message: dict[str, Any]) -> str | None:
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return None
    payload = attachments[0].get("payload") if isinstance(attachments[0], dict) else None
    url = payload.get("url") if isinstance(payload, dict) else None
    # "zalo:" + the URL is kept in a column of 255 characters.
    return checked_optional_text(url, "attachments.payload.url", max_length=250)


def oa_failure(body: dict[str, Any], pause_s: float) -> SendFailure:
    """What the sender and the outbox make of an OA API refusal."""
    code = error_code(body)
    if code == RATE_LIMITED:
        return SendFailure(FailureKind.rate_limited, "oa_rate_limited", retry_after=pause_s)
    if code == OUTSIDE_WINDOW:
        # The follower has not written within Zalo's window: no consultation message can
        # reach them until they do, so retrying is pointless (a fallback step may).
        return SendFailure(FailureKind.bad_request, "oa_outside_window")
    if code in USER_QUOTA:
        return SendFailure(FailureKind.bad_request, "oa_quota_exceeded")
    if code == NOT_FOLLOWER:
        return SendFailure(FailureKind.chat_not_found, "oa_not_follower")
    if code == BLOCKED:
        return SendFailure(FailureKind.blocked, "oa_blocked")
    if code in INVALID_PARAMS:
        return SendFailure(FailureKind.bad_request, f"oa_error {code}")
    # Token still refused after a refresh, and codes nobody documented: bounded retries.
    return SendFailure(FailureKind.transient, f"oa_error {code}")


class ZaloOaFrontEnd(NumberedAnswers):
    """Runs one Official Account: signed webhook events in, consultation messages out.

    Options: app_id, oa_id, api_base_url, oauth_base_url, rate_limited_pause_s; the
    secret is the app's secret key (see bot.zalo_oauth.split_secret). The app's tokens
    must have been seeded (bot.zalo_oauth.seed) at registration.
    """

    name = "zalo_oa"

    def __init__(self, args: FrontEndArgs) -> None:
        options = args.options
        self._bot_id = args.bot_id
        self._app_id = str(options["app_id"])
        self._oa_id = str(options.get("oa_id") or "")
        self._api = str(options.get("api_base_url") or DEFAULT_API_BASE_URL).rstrip("/")
        self._pause_s = float(options.get("rate_limited_pause_s") or RATE_LIMITED_PAUSE_S)
        self._args = args
        self._answers = args.answers
        self._answers.attach(self)
        # Webhooks are checked whether or not this process runs the bot (a web replica).
        self._app = app_for(self._args)
        self._background = Background()
        self._running = False
        self._failure: str | None = None

    @property
    def app(self) -> ZaloApp:
        return self._app

    @property
    def bot_id(self) -> int:
        return self._bot_id

    def status(self) -> PartStatus:
        if not self._running:
            return PartStatus(active=False, detail=self._failure or "stopped")
        return PartStatus(active=True, detail=f"OA {self._oa_id or self._app_id} via webhook")

    async def start(self) -> None:
        """Get an access token (a refresh token refused, or none seeded, fails here with
        a clear reason) and start answering."""
        if self._app.client.is_closed:
            self._app = app_for(self._args)
        try:
            await self._app.oauth.access_token()
        except OAuthError as exc:
            self._failure = str(exc)
            raise
        self._failure = None
        if self._args.webhook_url is None:
            log.warning("zalo_oa: no PUBLIC_BASE_URL: Zalo cannot post followers' events")
        await self._answers.start()
        self._running = True

    async def stop(self) -> None:
        self._running = False
        await self._background.close()
        await self._answers.stop()
        await self._app.aclose()

    def channel(self) -> ZaloOaChannel:
        return ZaloOaChannel(self)

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/zalo_oa/<bot id>: signature checked (403, unread otherwise), the
        event kept before the 200 (503 when it could not be: Zalo posts it again)."""
        try:
            event = await signed_event(request, app_id=self._app_id, secret=self._app.event_secret)
        except BadBody as refused:
            return refused.response
        try:
            inbound = to_inbound(event, self._bot_id)
        except Exception as exc:  # signed, yet not an event we can read
            return dropped("zalo_oa", exc)
        if inbound is not None:
            try:
                await self._answers.receive([Received(inbound)])
            except Exception as exc:
                log.warning("zalo_oa: event not kept (%s)", one_line(exc))
                return Response(status_code=503)
        return Response(status_code=200)

    async def send(self, user_id: str, message: dict[str, Any]) -> str:
        """One consultation message; Zalo's message id, or SendFailure."""
        payload = {"recipient": {"user_id": user_id}, "message": message}
        body = await self._app.post(f"{self._api}{CS_PATH}", payload, token_refused=TOKEN_INVALID)
        if error_code(body) != 0:
            raise oa_failure(body, self._pause_s)
        data = body.get("data")
        return str(data.get("message_id", "")) if isinstance(data, dict) else ""

    # --- answers (bot.answers.Renderer) ---------------------------------------------------

    def _say(self, chat_id: str, text: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            return await self.send(chat_id, {"text": text})

        return call


class ZaloOaChannel:
    """Broadcasts to followers as consultation messages (the only kind Zalo lets an OA
    send a follower free of charge); an urgent one ends with how to acknowledge it."""

    platform = Platform.zalo_oa
    max_text = MAX_TEXT - len(texts.ACK_HINT) - 2  # room for the hint on the last part

    def __init__(self, front_end: ZaloOaFrontEnd) -> None:
        self._front_end = front_end

    async def send(self, chat_id: str, message: Outbound) -> str:
        media = message.media
        if media is None:
            text = message.text
            if message.ack_bulletin_id is not None:
                text = f"{text}\n\n{texts.ACK_HINT}"
            return await self._front_end.send(chat_id, {"text": text})
        # Zalo fetches media by URL: without a public address a photo is skipped (the
        # text went) and audio becomes a note.
        if media.url is None:
            if media.kind is MediaKind.photo:
                return ""
            return await self._front_end.send(chat_id, {"text": texts.AUDIO_ON_LOUDSPEAKER_PAGE})
        if media.kind is MediaKind.photo:
            element = {"media_type": "image", "url": media.url}
            attachment = {
                "type": "template",
                "payload": {"template_type": "media", "elements": [element]},
            }
            photo: dict[str, Any] = {"attachment": attachment}
            if message.text:
                photo["text"] = message.text[:MAX_TEXT]
            return await self._front_end.send(chat_id, photo)
        title = media.title or "bản tin"
        text = texts.LISTEN_AT.format(title=title, url=media.url)
        return await self._front_end.send(chat_id, {"text": text})
