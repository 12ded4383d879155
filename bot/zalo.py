"""Zalo front end on python-zalo-bot, wrapped so no API error is ever silent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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
from bot.listening import Background
from bot.webhooks import (
    checked_id,
    checked_optional_text,
    one_line,
    receive,
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
# Long polls in flight at once. Zalo's getUpdates hands out one update per request and a
# poller asks again only once its update is kept, so one poller takes in one update per
# round trip (~10/s at 80 ms). Eight take in some 60 a second at 80 ms (a round trip, up
# to GATHER_S, a keep), twice the 30 msg/s a bot may answer, so a crowd waits on the
# sending limit, not on intake; and a crash loses at most eight updates handed out but not
# yet kept (README, "Delivery guarantees"). More would add little but that loss and
# connections the platform documents nothing about.
POLLERS = 8
# How long the keeper waits, after an update comes in, for polls already in flight to
# bring theirs, so that two updates of a chat that concurrent polls brought back swapped
# are sorted by date before they are kept. Network jitter between two answers sent a few
# ms apart is that small; every poller in the batch waits this long before it may ask
# again, so a longer window would slow intake (each poll cycle is a round trip + this).
GATHER_S = 0.03
POLL_BACKOFF_MAX_S = 30.0
POLL_FAILURE_REPEAT_S = 300.0  # the same polling failure is logged again after this long
KEEP_BACKOFF_MAX_S = 30.0


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
    # Two requests as the SDK keeps them: one for long polls (a connection per poller),
    # one for everything else.
    bot._request = (
        CheckedRequest(read_timeout=10, connection_pool_size=POLLERS),
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


def message_date(raw: Any) -> float | None:
    """The `date` of a raw update's message (ms since the epoch); None when it is missing
    or no finite number."""
    message = raw.get("message") if isinstance(raw, dict) else None
    date = message.get("date") if isinstance(message, dict) else None
    if isinstance(date, bool) or not isinstance(date, int | float) or not math.isfinite(date):
        return None
    return float(date)


@dataclass
class _Arrival:
    """An update a poller brought, waiting to be kept; the poller waits on `kept`."""

    received: Received
    date: float | None  # the message's date (ms since the epoch); None: none usable
    seq: int  # the order it reached the keeper in
    kept: asyncio.Future[None]


def in_turn_order(batch: list[_Arrival]) -> list[_Arrival]:
    """The batch by (message date, arrival); an update without a usable date keeps its
    place in arrival order (nothing says where else it belongs)."""
    by_arrival = sorted(batch, key=lambda a: a.seq)
    dated = iter(sorted((a for a in batch if a.date is not None), key=lambda a: (a.date, a.seq)))
    return [next(dated) if a.date is not None else a for a in by_arrival]


Keep = Callable[[Sequence[Received]], Awaitable[object]]


async def handle_webhook(
    request: Request, *, secret: str | None, bot_id: int, keep: Keep
) -> Response:
    """POST /webhooks/zalo, wherever it is served (see bot.webhooks.receive)."""

    def parse(body: dict[str, Any]) -> Received | None:
        if "result" in body and "ok" in body:
            body = body["result"]  # some deliveries wrap the update like an API answer
        event = to_inbound(Update.de_json(body, None), bot_id)
        return Received(event) if event is not None else None

    return await receive(
        request, platform="zalo", secret=secret, header=SECRET_HEADER, parse=parse, keep=keep
    )


class NumberedAnswers:
    """How both Zalo front ends (the bot, an Official Account) render answers
    (bot.answers.Renderer): each reply's text with its options numbered, cut to
    MAX_TEXT, and a document's voice as a link; each says a text its own way (`_say`)."""

    _answers: Answers
    _background: Background

    def _say(self, chat_id: str, text: str) -> Callable[[], Awaitable[object]]:
        raise NotImplementedError

    def calls(self, owed: Owed) -> list[Call]:
        return [
            Call(self._say(owed.chat_id, part))
            for reply in owed.replies
            for part in split_message(numbered(reply.text, reply.options), MAX_TEXT)
        ]

    def after(self, owed: Owed) -> None:
        for reply in owed.replies:
            if reply.audio_document is not None:
                self._background.spawn(self._send_voice(owed.chat_id, reply.audio_document))

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
            chat_id, (), calls=(Call(self._say(chat_id, text)),),
            what=f"voice of document {document_id}",
        )  # fmt: skip
        self._answers.give(owed, Lane.reply)


class ZaloFrontEnd(NumberedAnswers):
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
        self._pollers: list[asyncio.Task[None]] = []
        self._keeper: asyncio.Task[None] | None = None
        # What the pollers brought, for the keeper; None: stop, nothing more will come.
        self._arrived: asyncio.Queue[_Arrival | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._arrivals = itertools.count()
        self._poll_failure: tuple[str, float] | None = None  # the last kind logged, when
        self._background = Background()  # voices being sent after a reply
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
            self._stopping.clear()
            self._arrived = asyncio.Queue()
            self._keeper = asyncio.create_task(self._keep_arrivals(), name="zalo-keep")
            self._pollers = [
                asyncio.create_task(self._poll(), name=f"zalo-poll-{n}") for n in range(POLLERS)
            ]
        self._running = True

    async def stop(self) -> None:
        """Stop polling; what the pollers brought and is not kept yet is kept first (one
        try if the database fails: Zalo will not hand it out again)."""
        self._running = False
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        self._pollers = []
        if self._keeper is not None:
            self._stopping.set()
            self._arrived.put_nowait(None)  # after the last arrival: no poller is left
            (failed,) = await asyncio.gather(self._keeper, return_exceptions=True)
            if isinstance(failed, Exception):
                log.error("zalo: the keeper of polled updates failed", exc_info=failed)
            self._keeper = None
        await self._background.close()
        await self._answers.stop()
        await self.bot.shutdown()

    def channel(self) -> ZaloChannel:
        """Outbound sends for broadcasts, over the same checked transport."""
        return ZaloChannel(self.bot)

    async def _poll(self) -> None:
        """One of POLLERS long polls: fetch an update, hand it to the keeper, and ask for
        the next only once it is kept (Zalo hands an update out once: until it is kept, a
        crash would lose it, so each poller holds at most one such update)."""
        backoff = 1.0
        while True:
            try:
                raw = await self.bot._post(
                    "getUpdates", {"timeout": POLL_TIMEOUT_S}, read_timeout=POLL_TIMEOUT_S + 10
                )
            except ZaloApiError as exc:
                if exc.error_code in NO_UPDATE_CODES:
                    continue
                self._polling_failed(exc)
            except Exception as exc:  # network, 5xx, a body that is no JSON, the unforeseen
                self._polling_failed(exc)
            else:
                backoff = 1.0
                received = self._read(raw)
                if received is not None:
                    arrival = _Arrival(
                        received, message_date(raw), next(self._arrivals),
                        asyncio.get_running_loop().create_future(),
                    )  # fmt: skip
                    self._arrived.put_nowait(arrival)
                    await arrival.kept
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, POLL_BACKOFF_MAX_S)

    def _read(self, raw: Any) -> Received | None:
        """A raw update from getUpdates, checked; None for what we ignore. A malformed one
        is dropped with one line in the log: it is gone from Zalo once handed out, so it
        cannot come back (parsed here, not in the SDK's get_update, which would log it
        with a traceback and keep the date from us)."""
        try:
            event = to_inbound(Update.de_json(raw, self.bot), self._bot_id)
        except Exception as exc:  # the SDK builds objects unchecked: any error, one line
            log.warning("zalo: update dropped: %s", one_line(exc))
            return None
        return Received(event) if event is not None else None

    def _polling_failed(self, error: Exception) -> None:
        # POLLERS polls meet the same failure at once, and a platform down for an hour
        # would fill the log: one line per kind of failure (an API error code, or the
        # exception's type), again after POLL_FAILURE_REPEAT_S; polling goes on.
        if isinstance(error, ZaloApiError):
            kind = f"error {error.error_code}"
        else:
            kind = type(error).__name__
        now = time.monotonic()
        last = self._poll_failure
        if last is None or last[0] != kind or now - last[1] >= POLL_FAILURE_REPEAT_S:
            log.warning("zalo: polling failed (%s: %s); retrying", kind, one_line(error))
            self._poll_failure = (kind, now)

    async def _keep_arrivals(self) -> None:
        """The one keeper of polled updates: gathers what came in within GATHER_S, keeps it
        in one transaction in turn order (the turns are taken in the order kept, and a
        chat's turns one after another), then lets its pollers ask again."""
        while True:
            batch, stopping = await self._gather()
            if batch:
                await self._keep(in_turn_order(batch))
                for arrival in batch:
                    if not arrival.kept.done():  # its poller may be cancelled (stop)
                        arrival.kept.set_result(None)
            if stopping:
                return

    async def _gather(self) -> tuple[list[_Arrival], bool]:
        """The next batch, and whether stop() came (nothing follows its sentinel)."""
        first = await self._arrived.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = asyncio.get_running_loop().time() + GATHER_S
        # Each poller has at most one update waiting: with all of them in, none can come.
        while len(batch) < POLLERS:
            try:
                async with asyncio.timeout_at(deadline):
                    arrival = await self._arrived.get()
            except TimeoutError:
                break
            if arrival is None:
                return batch, True
            batch.append(arrival)
        return batch, False

    async def _keep(self, batch: list[_Arrival]) -> None:
        """Keep a batch (Answers.receive), retrying with backoff: its pollers wait, so
        nothing more is taken from Zalo meanwhile. Once stopping, one more try."""
        delay = 1.0
        while True:
            try:
                await self._answers.receive([arrival.received for arrival in batch])
                return
            except Exception as exc:
                log.warning("zalo: %d polled updates not kept yet (%s)", len(batch),
                            one_line(exc))  # fmt: skip
            if self._stopping.is_set():
                log.error("zalo: %d polled updates were not kept before stopping; lost",
                          len(batch))  # fmt: skip
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)  # stop: try again now
            delay = min(delay * 2, KEEP_BACKOFF_MAX_S)

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/zalo: a wrong or missing secret gets 403 and is not read."""
        return await handle_webhook(
            request, secret=self._secret, bot_id=self._bot_id, keep=self._answers.receive
        )

    # --- answers (bot.answers.Renderer) ---------------------------------------------------

    def _say(self, chat_id: str, text: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            try:
                return await self.bot.send_message(chat_id, text)
            except ZaloError as exc:
                raise send_failure(exc) from None

        return call


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
