"""Zalo front end on python-zalo-bot, wrapped so no API error is ever silent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
from fastapi import Request, Response
from zalo_bot import Bot, Update
from zalo_bot.error import BadRequest, Forbidden, RetryAfter, ZaloError
from zalo_bot.request import HTTPXRequest
from zalo_bot.request._request_data import RequestData
from zalo_bot.request._request_parameter import RequestParameter

from bot import texts
from bot.answers import Answers, Call, Owed, Received
from bot.conversation import EventKind, Inbound, Option
from bot.telegram import webhook_secret_ok
from bot.webhooks import (
    BadBody,
    NotAnUpdate,
    checked_id,
    checked_optional_text,
    dropped,
    one_line,
    read_object,
)
from broadcasts.channels import FailureKind, MediaKind, Outbound, SendFailure
from broadcasts.pacing import Lane, request_written
from broadcasts.parts import PartStatus
from db.models import Platform
from db.text import split_message

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/zalo"
SECRET_HEADER = "X-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
MAX_TEXT = 2000  # Zalo's sendMessage limit
POLL_TIMEOUT_S = 25
NO_UPDATE_CODES = {408}  # getUpdates answers "timeout" as ok:false 408 when nothing came


class ZaloApiError(ZaloError):  # type: ignore[misc]  # the SDK ships no type hints
    """An `ok: false` answer from the Zalo Bot API (the SDK alone would return None)."""

    def __init__(self, method: str, error_code: int | None, description: str) -> None:
        super().__init__(f"{method}: {error_code} {description}")
        self.method = method
        self.error_code = error_code
        self.description = description


class CheckedRequest(HTTPXRequest):  # type: ignore[misc]
    """The SDK's HTTP transport, with `ok: false` turned into ZaloApiError.

    The SDK reads only `result` from a 200 answer, so an API error comes back as None and
    a failed send looks like a success. HTTP-level errors (403, 429, 5xx) were already
    raised by the SDK as Forbidden / RetryAfter / NetworkError and still are.
    """

    async def post(self, url: str, request_data: RequestData | None = None, **timeouts: Any) -> Any:
        raw = await self._request_wrapper(
            url=url, method="POST", request_data=request_data, **timeouts
        )
        payload = self.parse_json_payload(raw)
        if not payload.get("ok", False):
            method = url.rsplit("/", 1)[-1]
            raise ZaloApiError(
                method, payload.get("error_code"), str(payload.get("description", ""))
            )
        return payload.get("result")


async def _written(event: str, info: dict[str, Any]) -> None:
    # httpcore's trace: the request's headers, then its body, are on the wire. The pacer
    # counts the send from then, not from its grant: opening a connection first can take
    # longer than the pacer's margin, and the platform counts arrivals (broadcasts.pacing).
    if event.endswith(("send_request_headers.complete", "send_request_body.complete")):
        request_written()


async def _traced(request: httpx.Request) -> None:
    request.extensions["trace"] = _written


def checked_bot(token: str, api_base_url: str) -> Bot:
    """An SDK bot whose API errors raise (see CheckedRequest)."""
    bot = Bot(token, base_url=api_base_url.rstrip("/"))
    # Two requests as the SDK keeps them: one for long polls, one for everything else.
    bot._request = (
        CheckedRequest(read_timeout=10),  # get_update adds the poll timeout to it
        CheckedRequest(httpx_kwargs={"event_hooks": {"request": [_traced]}}),
    )
    return bot


def numbered(text: str, options: tuple[Option, ...]) -> str:
    """Zalo has no buttons: options become a numbered list answered with the number."""
    if not options:
        return text
    lines = [text, ""]
    lines += [f"{n}. {option.label}" for n, option in enumerate(options, start=1)]
    lines += ["", texts.PICK_BY_NUMBER]
    return "\n".join(lines)


def to_inbound(update: Update | None, bot_id: int) -> Inbound | None:
    """Describe a Zalo update for the conversation core; None for what we ignore.

    Raises NotAnUpdate when a field the core reads has a type Zalo never sends: the SDK
    builds its objects from the JSON unchecked, so this is where a malformed update stops.
    """
    message = update.message if update is not None else None
    if message is None or message.chat is None:
        return None
    user = message.from_user
    display_name = getattr(user, "display_name", None) if user else None
    chat_type = checked_optional_text(message.chat.type, "message.chat.chat_type")
    common: dict[str, Any] = {
        "bot_id": bot_id,
        # Kept in columns of 64 (chat id) and 80 characters ("m:" + message id).
        "chat_id": checked_id(message.chat.id, "message.chat.id", max_length=64),
        "update_key": f"m:{checked_id(message.message_id, 'message.message_id', max_length=78)}",
        "display_name": checked_optional_text(display_name, "message.from.display_name"),
        "is_group": (chat_type or "PRIVATE").upper() != "PRIVATE",
        "text_limit": MAX_TEXT,
        "voice_by_url": True,
    }
    said = checked_optional_text(message.text, "message.text")
    if said:
        return Inbound(kind=EventKind.text, text=said, **common)
    # "zalo:" + the URL is kept in a column of 255 characters.
    photo_url = checked_optional_text(message.photo_url, "message.photo_url", max_length=250)
    if photo_url:
        return Inbound(kind=EventKind.photo, file_ref=f"zalo:{photo_url}", **common)
    if message.sticker:
        return Inbound(kind=EventKind.sticker, **common)
    # Voice, location and the rest arrive as "unsupported" events with no payload.
    return Inbound(kind=EventKind.other, **common)


class ZaloFrontEnd:
    """Runs one Zalo bot: polling loop or webhook, numbered menus, checked API calls."""

    name = "zalo"

    def __init__(
        self,
        *,
        token: str,
        api_base_url: str,
        answers: Answers,
        bot_id: int,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self._base = api_base_url.rstrip("/")
        self.bot = checked_bot(token, self._base)
        self._token = token
        self._answers = answers
        answers.attach(self)
        self._bot_id = bot_id
        self._webhook_url = webhook_url
        self._secret = webhook_secret
        self._poller: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._running = False
        self._account: str | None = None

    @property
    def mode(self) -> str:
        return "webhook" if self._webhook_url else "polling"

    def status(self) -> PartStatus:
        if not self._running:
            return PartStatus(active=False, detail="stopped")
        return PartStatus(active=True, detail=f"{self._account or 'bot'} via {self.mode}")

    async def call(self, method: str, **params: Any) -> Any:
        """Call a Bot API method over the SDK's checked transport.

        Used where the SDK lacks an async call: its set_webhook / delete_webhook /
        get_webhook_info wrap `asyncio.run` and fail inside our running loop.
        """
        data = RequestData(
            parameters=[RequestParameter.from_input(k, v) for k, v in params.items()]
        )
        return await self.bot._request[1].post(
            url=f"{self._base}/bot{self._token}/{method}", request_data=data
        )

    async def start(self) -> None:
        await self.bot.initialize()  # getMe: a wrong token fails here, loudly
        me = await self.call("getMe")
        self._account = str(me.get("account_name")) if isinstance(me, dict) else None
        await self._answers.start()
        if self._webhook_url is not None:
            await self.call("setWebhook", url=self._webhook_url, secret_token=self._secret)
        else:
            with contextlib.suppress(ZaloApiError):  # "no webhook set" is fine here
                await self.call("deleteWebhook")
            self._poller = asyncio.create_task(self._poll(), name="zalo-poll")
        self._running = True

    async def stop(self) -> None:
        self._running = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._answers.stop()
        await self.bot.shutdown()

    def channel(self) -> ZaloChannel:
        """Outbound sends for broadcasts, over the same checked transport."""
        return ZaloChannel(self.bot)

    async def _poll(self) -> None:
        backoff = 1.0
        while True:
            try:
                update = await self.bot.get_update(timeout=POLL_TIMEOUT_S)
            except ZaloApiError as exc:
                if exc.error_code not in NO_UPDATE_CODES:
                    log.warning("zalo: getUpdates: %s", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                continue
            except ZaloError as exc:
                log.warning("zalo: getUpdates failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception as exc:
                # The SDK parses the update inside get_update (KeyError, TypeError on a
                # malformed one); uncaught, it would end this loop and polling with it.
                # The update is gone from the queue once handed out, so it cannot recur.
                log.warning("zalo: getUpdates gave no update: %s", one_line(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            await self._take(update)

    async def _take(self, update: Update | None) -> None:
        """An update from long polling: checked, then kept (see _keep)."""
        try:
            event = to_inbound(update, self._bot_id)
        except NotAnUpdate as exc:
            log.warning("zalo: update dropped: %s", one_line(exc))
            return
        if event is not None:
            await self._keep(Received(event))

    async def _keep(self, arrival: Received) -> None:
        """Keep an update from polling before asking for the next: Zalo hands an update out
        once, so until it is kept the poller asks for nothing else."""
        delay = 1.0
        while True:
            try:
                await self._answers.receive([arrival])
                return
            except Exception as exc:
                log.warning("zalo: update %s not kept yet (%s)", arrival.event.update_key,
                            one_line(exc))  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # Each update in its own task: one slow or flooding chat never blocks the others.
        task = asyncio.create_task(work)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/zalo: a wrong or missing secret gets 403 and is not read."""
        if self._secret is None or not webhook_secret_ok(
            self._secret, request.headers.get(SECRET_HEADER)
        ):
            return Response(status_code=403)
        try:
            body: Any = await read_object(request)
        except BadBody as refused:
            return refused.response
        if "result" in body and "ok" in body:
            body = body["result"]  # some deliveries wrap the update like an API answer
        try:
            update = Update.de_json(body, self.bot)
            event = to_inbound(update, self._bot_id)
        except Exception as exc:  # malformed body from someone who knows the secret
            return dropped("zalo", exc)
        if event is not None:
            try:
                await self._answers.receive([Received(event)])
            except Exception as exc:  # not kept: Zalo redelivers after a 5xx
                log.warning("zalo: webhook update not kept (%s)", one_line(exc))
                return Response(status_code=503)
        return Response(status_code=200)

    # --- answers (bot.answers.Renderer) ---------------------------------------------------

    def calls(self, owed: Owed) -> list[Call]:
        """An answer as Zalo messages: each reply's text with its options numbered."""
        return [
            Call(self._say(owed.chat_id, part))
            for reply in owed.replies
            for part in split_message(numbered(reply.text, reply.options), MAX_TEXT)
        ]

    def after(self, owed: Owed) -> None:
        for reply in owed.replies:
            if reply.audio_document is not None:
                self._spawn(self._send_voice(owed.chat_id, reply.audio_document))

    def _say(self, chat_id: str, text: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            try:
                return await self.bot.send_message(chat_id, text)
            except ZaloError as exc:
                raise send_failure(exc) from None

        return call

    async def _send_voice(self, chat_id: str, document_id: int) -> None:
        """A document's voice as a link to its AAC (Zalo takes no uploads and fetches audio
        by URL; the core does not offer it without PUBLIC_BASE_URL). The message is an
        answer like any other: paced, retried, recorded if it fails."""
        voices = self._answers.conversation.voices
        media = texts.LISTEN_OFF if voices is None else await voices.voice_or_note(document_id)
        if isinstance(media, str):
            text = media
        elif media.url is None:
            text = texts.LISTEN_NO_LINK
        else:
            text = texts.LISTEN_AT.format(title=media.title, url=media.url)
        owed = Owed(
            chat_id,
            (),
            calls=(Call(self._say(chat_id, text)),),
            what=f"voice of document {document_id}",
        )
        self._answers.give(owed, Lane.reply)


class ZaloChannel:
    """Outbound sends for the broadcast sender over the checked transport.

    Zalo has no buttons: an urgent bulletin ends with how to acknowledge it in words.
    """

    platform = Platform.zalo
    max_text = MAX_TEXT - len(texts.ACK_HINT) - 2  # room for the hint on the last part

    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def send(self, chat_id: str, message: Outbound) -> str:
        try:
            sent = await self._deliver(chat_id, message)
        except ZaloError as exc:
            raise send_failure(exc) from None
        return str(getattr(sent, "message_id", "") or "")

    async def _deliver(self, chat_id: str, message: Outbound) -> Any:
        media = message.media
        if media is None:
            text = message.text
            if message.ack_bulletin_id is not None:
                text = f"{text}\n\n{texts.ACK_HINT}"
            return await self._bot.send_message(chat_id, text)
        # Zalo takes no uploads: a photo goes by URL, and audio as a link to listen to.
        if media.url is None:
            if media.kind is MediaKind.photo:
                return None  # nothing to show without a public address; the text went
            return await self._bot.send_message(chat_id, texts.AUDIO_ON_LOUDSPEAKER_PAGE)
        if media.kind is MediaKind.photo:
            return await self._bot.send_photo(chat_id, message.text[:MAX_TEXT], media.url)
        return await self._bot.send_message(
            chat_id, texts.LISTEN_AT.format(title=media.title or "bản tin", url=media.url)
        )


def send_failure(exc: ZaloError) -> SendFailure:
    """What the sender and the outbox make of an error from the Zalo Bot API."""
    if isinstance(exc, ZaloApiError):
        return SendFailure(_kind(exc.error_code, exc.description), exc.description)
    if isinstance(exc, RetryAfter):
        return SendFailure(FailureKind.rate_limited, str(exc), retry_after=float(exc.retry_after))
    if isinstance(exc, Forbidden):
        return SendFailure(FailureKind.blocked, str(exc))
    if isinstance(exc, BadRequest):
        return SendFailure(_kind(400, str(exc)), str(exc))
    # NetworkError and the rest: 5xx, timeouts, connection errors
    return SendFailure(FailureKind.transient, str(exc) or type(exc).__name__)


def _kind(code: int | None, description: str) -> FailureKind:
    """Classify an `ok: false` answer by its error code (Zalo documents few of them)."""
    if code == 429:
        return FailureKind.rate_limited
    if code == 403:
        return FailureKind.blocked
    if code in (400, 404):
        lowered = description.lower()
        if "chat" in lowered or "user" in lowered or "not found" in lowered:
            return FailureKind.chat_not_found
        return FailureKind.bad_request
    return FailureKind.transient
