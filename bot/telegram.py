"""Telegram front end on python-telegram-bot: polling or webhook, inline keyboards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request, Response
from telegram import (
    Bot,
    BotCommand,
    Chat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    User,
)
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import Application
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from bot import texts
from bot.answers import Answers, Call, Owed, Received
from bot.conversation import EventKind, Inbound, Option, ack_option
from bot.listening import Background
from bot.telegram_http import AiohttpRequest
from bot.webhooks import (
    NotAnUpdate,
    checked_coordinate,
    checked_int,
    checked_optional_text,
    checked_text,
    one_line,
    receive,
)
from broadcasts.channels import FailureKind, FileIds, Media, MediaKind, Outbound, SendFailure
from broadcasts.pacing import Lane
from broadcasts.parts import PartStatus
from db.models import Platform
from db.text import split_message

log = logging.getLogger(__name__)

POLL_FAILURE_REPEAT_S = 300.0  # the same polling failure is logged again after this long
POLL_TIMEOUT_S = 10  # seconds a getUpdates long poll waits for updates
POLL_BACKOFF_MAX_S = 30.0
ALLOWED_UPDATES = ["message", "callback_query"]

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
MAX_TEXT = 4096  # Telegram's limit for one message
MAX_CAPTION = 1024  # and for a media caption
CONNECTION_POOL = 256  # above a paid broadcast's requests in flight (1000/s x latency)


def keyboard(options: Sequence[Option], columns: int = 1) -> InlineKeyboardMarkup | None:
    """Options as an inline keyboard, `columns` buttons a row."""
    if not options:
        return None
    buttons = [InlineKeyboardButton(o.label, callback_data=o.data) for o in options]
    rows = [buttons[i : i + max(1, columns)] for i in range(0, len(buttons), max(1, columns))]
    return InlineKeyboardMarkup(rows)


def to_inbound(update: Update, bot_id: int) -> Inbound | None:
    """Describe a Telegram update for the conversation core; None for updates we ignore.

    Raises NotAnUpdate when a field the core reads has a type Telegram never sends: PTB
    builds its objects from the JSON unchecked, so this is where a malformed update stops.
    """
    key = str(checked_int(update.update_id, "update_id"))
    query = update.callback_query
    if query is not None and query.message is not None:
        chat = _chat(query.message.chat, "callback_query.message.chat")
        checked_text(query.id, "callback_query.id")
        if isinstance(query.message, Message):  # its buttons are edited afterwards
            checked_int(query.message.message_id, "callback_query.message.message_id")
        return Inbound(
            bot_id=bot_id, chat_id=str(chat.id), kind=EventKind.button, update_key=key,
            data=checked_optional_text(query.data, "callback_query.data") or "",
            display_name=_full_name(query.from_user), is_group=chat.type != "private",
            text_limit=MAX_TEXT,
        )  # fmt: skip
    message = update.message
    if message is None:
        return None  # edits, member changes, channel posts: nothing to answer
    chat = _chat(message.chat, "message.chat")
    common = {
        "bot_id": bot_id,
        "chat_id": str(chat.id),
        "update_key": key,
        "display_name": _full_name(message.from_user),
        "is_group": chat.type != "private",
        "text_limit": MAX_TEXT,
    }
    if message.text is not None:
        said = checked_text(message.text, "message.text")
        return Inbound(kind=EventKind.text, text=said, **common)  # type: ignore[arg-type]
    caption = checked_optional_text(message.caption, "message.caption") or ""
    if message.photo:
        if not isinstance(message.photo, tuple | list):
            raise NotAnUpdate("message.photo is no list")
        # The core keeps "telegram:<file id>" in a column of 255 characters.
        file_id = checked_text(message.photo[-1].file_id, "message.photo.file_id", max_length=200)
        return Inbound(
            kind=EventKind.photo, text=caption,
            file_ref=f"telegram:{file_id}", **common,  # type: ignore[arg-type]
        )  # fmt: skip
    if message.location is not None:
        return Inbound(
            kind=EventKind.location,
            latitude=checked_coordinate(message.location.latitude, "message.location.latitude", 90),
            longitude=checked_coordinate(
                message.location.longitude, "message.location.longitude", 180
            ),
            **common,  # type: ignore[arg-type]
        )
    if message.sticker is not None:
        return Inbound(kind=EventKind.sticker, **common)  # type: ignore[arg-type]
    if message.voice is not None or message.audio is not None:
        return Inbound(kind=EventKind.voice, **common)  # type: ignore[arg-type]
    return Inbound(kind=EventKind.other, **common)  # type: ignore[arg-type]


def _chat(chat: Chat | None, field: str) -> Chat:
    """The chat, with the id and type the core relies on checked."""
    if chat is None:  # PTB makes a Message without its (required) chat
        raise NotAnUpdate(f"{field} is missing")
    checked_int(chat.id, f"{field}.id")
    checked_text(chat.type, f"{field}.type")
    return chat


def _full_name(user: User | None) -> str | None:
    if user is None:
        return None
    first = checked_optional_text(user.first_name, "from.first_name")
    last = checked_optional_text(user.last_name, "from.last_name")
    return f"{first} {last}" if first and last else first or None


def build_application(token: str, api_base_url: str) -> Application:  # type: ignore[type-arg]
    """The PTB application of one bot (its `bot` is what TelegramChannel sends with).

    Updates do not go through PTB's updater and handlers: see TelegramFrontEnd._poll.
    """
    base = api_base_url.rstrip("/")
    return (
        Application.builder()
        .token(token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        # Sends and replies over aiohttp: httpx costs about 1 ms of CPU a request, too
        # much for paid broadcasts at 1000 msg/s (long polling keeps PTB's default).
        .request(AiohttpRequest(connection_pool_size=CONNECTION_POOL))
        .updater(None)
        .build()
    )


def received(update: Update, bot_id: int) -> Received | None:
    """The event of an update with what answering a pressed button needs; None for an
    update we ignore. Raises NotAnUpdate (see to_inbound)."""
    event = to_inbound(update, bot_id)
    if event is None:
        return None
    query = update.callback_query
    if query is None:
        return Received(event)
    pressed = query.message.message_id if isinstance(query.message, Message) else None
    return Received(event, query.id, pressed)


Keep = Callable[[Sequence[Received]], Awaitable[object]]


async def handle_webhook(
    request: Request, *, secret: str | None, bot_id: int, keep: Keep
) -> Response:
    """POST /webhooks/telegram, wherever it is served (see bot.webhooks.receive)."""

    def parse(body: dict[str, Any]) -> Received | None:
        return received(Update.de_json(body, None), bot_id)

    return await receive(
        request, platform="telegram", secret=secret, header=SECRET_HEADER, parse=parse,
        keep=keep,
    )  # fmt: skip


class TelegramFrontEnd:
    """Runs one Telegram bot: receives updates, hands them to the core, renders replies."""

    name = "telegram"

    def __init__(
        self,
        *,
        token: str,
        api_base_url: str,
        answers: Answers,
        bot_id: int,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        file_ids: FileIds | None = None,
    ) -> None:
        self.application = build_application(token, api_base_url)
        self._answers = answers
        answers.attach(self)
        self._bot_id = bot_id
        self._webhook_url = webhook_url
        self._secret = webhook_secret
        self._running = False
        self._username: str | None = None
        # One channel for broadcasts and for documents read aloud, so a voice uploaded
        # once is sent by file id afterwards, whoever asks.
        self._channel = TelegramChannel(self.application.bot, file_ids=file_ids)
        self._background = Background()  # voices being rendered and sent after a reply
        self._poll_failure: tuple[str, float] | None = None  # the last kind logged, when
        self._poller: asyncio.Task[None] | None = None

    @property
    def mode(self) -> str:
        return "webhook" if self._webhook_url else "polling"

    def status(self) -> PartStatus:
        if not self._running:
            return PartStatus(active=False, detail="stopped")
        who = f"@{self._username}" if self._username else "bot"
        return PartStatus(active=True, detail=f"{who} via {self.mode}")

    async def start(self) -> None:
        app = self.application
        await app.initialize()  # getMe: a wrong token fails here, loudly
        self._username = app.bot.username
        await app.bot.set_my_commands(
            [BotCommand(command, description) for command, description in texts.COMMANDS.items()]
        )
        await self._answers.start()
        if self._webhook_url is not None:
            await app.bot.set_webhook(
                url=self._webhook_url, secret_token=self._secret, allowed_updates=ALLOWED_UPDATES
            )
        else:
            await app.bot.delete_webhook()
            self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
        self._running = True

    async def _poll(self) -> None:
        """Long polling, by hand rather than PTB's updater: Telegram counts an update as
        received once the next getUpdates asks past it, so each batch is kept (Answers.
        receive) before that next call, and a crash cannot lose what was fetched."""
        offset: int | None = None
        backoff = 1.0
        while True:
            try:
                batch = await self._get_updates(offset)
                arrivals, next_offset = self._read_batch(batch, offset)
                await self._answers.receive(arrivals)
            except TelegramError as exc:
                self._polling_failed(exc)
            except Exception as exc:  # the database, or a batch that is no list
                # The batch is fetched again (the offset did not move), kept next time.
                log.warning("telegram: updates not kept (%s); retrying", one_line(exc))
            else:
                offset, backoff = next_offset, 1.0
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, POLL_BACKOFF_MAX_S)

    async def _get_updates(self, offset: int | None) -> Any:
        # The raw updates (get_updates parses a whole batch at once, and one malformed
        # update would then fail every poll, for ever); PTB warns that get_updates exists.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PTBUserWarning)
            return await self.application.bot.do_api_request(
                "getUpdates",
                api_kwargs={
                    "offset": offset, "timeout": POLL_TIMEOUT_S,
                    "allowed_updates": ALLOWED_UPDATES,
                },
                read_timeout=POLL_TIMEOUT_S + 10,
            )  # fmt: skip

    def _read_batch(self, batch: Any, offset: int | None) -> tuple[list[Received], int | None]:
        """The events of a batch of raw updates, and the offset that confirms them all;
        a malformed update is dropped with one line in the log."""
        if not isinstance(batch, list):
            raise NotAnUpdate(f"getUpdates gave {type(batch).__name__}, not a list")
        arrivals: list[Received] = []
        for raw in batch:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if isinstance(update_id, int) and not isinstance(update_id, bool):
                offset = max(offset or 0, update_id + 1)
            try:
                arrival = received(Update.de_json(raw, self.application.bot), self._bot_id)
            except Exception as exc:  # PTB builds objects unchecked: any error, one line
                log.warning("telegram: update dropped: %s", one_line(exc))
                continue
            if arrival is not None:
                arrivals.append(arrival)
        return arrivals, offset

    def _polling_failed(self, error: TelegramError) -> None:
        # The platform blocked mid-run would otherwise fill the log: one line per kind of
        # failure (a network error is one kind, whether the server hung up mid-poll or no
        # longer takes connections), again after POLL_FAILURE_REPEAT_S; polling goes on.
        kind = type(error).__name__
        now = time.monotonic()
        last = self._poll_failure
        if last is None or last[0] != kind or now - last[1] >= POLL_FAILURE_REPEAT_S:
            log.warning("telegram: polling failed (%s: %s); retrying", kind, error)
            self._poll_failure = (kind, now)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self._background.close()
        await self._answers.stop()
        await self.application.shutdown()
        self._running = False

    def channel(self) -> TelegramChannel:
        """Outbound sends for broadcasts, over the application's bot and connection pool."""
        return self._channel

    async def webhook(self, request: Request) -> Response:
        """POST /webhooks/telegram: a wrong or missing secret gets 403 and is not read."""
        return await handle_webhook(
            request, secret=self._secret, bot_id=self._bot_id, keep=self._answers.receive
        )

    # --- answers (bot.answers.Renderer) ---------------------------------------------------

    def calls(self, owed: Owed) -> list[Call]:
        """An answer as Telegram calls: the tap's toast first (Telegram does not count
        it, and the button spins until it comes), then edits and messages in order, then
        the spent buttons removed."""
        bot = self.application.bot
        chat_id = int(owed.chat_id)
        query, pressed = owed.query_id, owed.pressed_message_id
        calls: list[Call] = []
        notice = next((r for r in owed.replies if r.notice), None) if query else None
        if query is not None:
            toast = notice.text[:200] if notice is not None else None
            # Optional: a query answered late (a restart) only loses its toast.
            answer = _call(bot.answer_callback_query, query, toast, show_alert=False)
            calls.append(Call(answer, counted=False, optional=True))
        for reply in owed.replies:
            if reply is notice:
                continue
            markup = keyboard(reply.options, reply.columns)
            if reply.replace and pressed is not None:
                edit = _call(
                    bot.edit_message_text, reply.text[:MAX_TEXT], chat_id=chat_id,
                    message_id=pressed, reply_markup=markup,
                )  # fmt: skip
                calls.append(Call(edit))
                continue
            for part in split_message(reply.text, MAX_TEXT):
                calls.append(Call(_call(bot.send_message, chat_id, part, reply_markup=markup)))
        spent = not any(r.replace or r.keep_buttons for r in owed.replies)
        if query is not None and pressed is not None and spent:
            # The old buttons are spent; removing them stops stale presses.
            remove = _call(bot.edit_message_reply_markup, chat_id, pressed)
            calls.append(Call(remove, optional=True))
        return calls

    def after(self, owed: Owed) -> None:
        for reply in owed.replies:
            if reply.audio_document is not None:
                self._background.spawn(self._send_voice(int(owed.chat_id), reply.audio_document))

    async def _send_voice(self, chat_id: int, document_id: int) -> None:
        """Render (or reuse) a document's voice and send it: uploaded the first time, by
        file id afterwards. Runs after the reply, so no chat waits for the render; the
        send itself is an answer like any other (paced, retried, recorded if it fails)."""
        voices = self._answers.conversation.voices
        with contextlib.suppress(TelegramError):  # "sending a voice message…" while it renders
            await self.application.bot.send_chat_action(chat_id, ChatAction.UPLOAD_VOICE)
        media = texts.LISTEN_OFF if voices is None else await voices.voice_or_note(document_id)
        if isinstance(media, str):
            call = _call(self.application.bot.send_message, chat_id, media)
        else:
            caption = texts.LISTEN_CAPTION.format(title=media.title)[:MAX_CAPTION]
            message = Outbound(caption, media=media)

            async def call() -> object:
                return await self._channel.send(str(chat_id), message)

        what = f"voice of document {document_id}"
        owed = Owed(str(chat_id), (), calls=(Call(call),), what=what)
        self._answers.give(owed, Lane.reply)


def send_failure(exc: TelegramError) -> SendFailure:
    """What the sender and the outbox make of an error from the Bot API."""
    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():
            # PTB 22 warns that retry_after becomes a timedelta; we accept either.
            warnings.simplefilter("ignore", PTBDeprecationWarning)
            wait = exc.retry_after
        seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
        return SendFailure(FailureKind.rate_limited, exc.message, retry_after=seconds)
    if isinstance(exc, Forbidden):  # blocked, or the account was deleted
        return SendFailure(FailureKind.blocked, exc.message)
    if isinstance(exc, BadRequest):  # (a NetworkError subclass in PTB: checked first)
        gone = "chat not found" in exc.message.lower()
        kind = FailureKind.chat_not_found if gone else FailureKind.bad_request
        return SendFailure(kind, exc.message)
    # NetworkError and the rest: 5xx, timeouts, connection errors
    return SendFailure(FailureKind.transient, exc.message or type(exc).__name__)


def _call(
    method: Callable[..., Awaitable[object]], *args: object, **kwargs: object
) -> Callable[[], Awaitable[object]]:
    """A Bot API call to make later, its errors as SendFailure. An edit that changes
    nothing ("message is not modified": a button pressed twice) counts as done."""

    async def call() -> object:
        try:
            return await method(*args, **kwargs)
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return None
            raise send_failure(exc) from None
        except TelegramError as exc:
            raise send_failure(exc) from None

    return call


class TelegramChannel:
    """Outbound sends for the broadcast sender, with Telegram's errors classified.

    Media are uploaded once per bot; later sends reuse Telegram's file id.
    """

    platform = Platform.telegram
    max_text = MAX_TEXT

    def __init__(
        self, bot: Bot, *, paid_broadcast: bool = False, file_ids: FileIds | None = None
    ) -> None:
        self._bot = bot
        # File ids by Media.key: in memory (the fast path), and in `file_ids` when given,
        # so a restarted process sends by id instead of uploading again.
        self._file_ids: dict[str, str] = {}
        self._stored = file_ids
        self._uploading: dict[str, asyncio.Lock] = {}
        # Text goes through the bot's own aiohttp transport (initialised and shut down with
        # the bot) without PTB building a Message from each answer: see AiohttpRequest.call.
        transport = bot.request
        self._lean = transport if isinstance(transport, AiohttpRequest) else None
        self._send_message_url = f"{bot.base_url}/sendMessage"
        # Telegram lifts a bot to 1000 msg/s only for sends that ask for it (and pays in Stars).
        # None leaves the parameter out of the request, as for an ordinary bot.
        self._paid: bool | None = True if paid_broadcast else None

    def for_paid_broadcast(self) -> TelegramChannel:
        """The same bot and file ids, every send asking for the paid-broadcast limit."""
        paid = TelegramChannel(self._bot, paid_broadcast=True, file_ids=self._stored)
        paid._file_ids, paid._uploading = self._file_ids, self._uploading
        return paid

    async def send(self, chat_id: str, message: Outbound) -> str:
        try:
            return await self._deliver(int(chat_id), message)
        except TelegramError as exc:
            raise send_failure(exc) from None
        except OSError as exc:  # the media file could not be read
            raise SendFailure(FailureKind.bad_request, f"media: {exc}") from None

    async def _deliver(self, chat_id: int, message: Outbound) -> str:
        """Send one message; Telegram's message id."""
        media = message.media
        if media is None:
            markup = None
            if message.ack_bulletin_id is not None:
                markup = keyboard([ack_option(message.ack_bulletin_id)])
            if self._lean is not None:
                parameters = {
                    "chat_id": chat_id, "text": message.text, "allow_paid_broadcast": self._paid,
                    "reply_markup": markup.to_dict() if markup is not None else None,
                }  # fmt: skip
                result = await self._lean.call(self._send_message_url, parameters)
                return str(result["message_id"])
            sent = await self._bot.send_message(
                chat_id, message.text, reply_markup=markup, allow_paid_broadcast=self._paid
            )
            return str(sent.message_id)
        return str((await self._send_file(chat_id, media, message.text or None)).message_id)

    # -------------------------------------------------------------- file ids

    async def _known_file_id(self, key: str) -> str | None:
        file_id = self._file_ids.get(key)
        if file_id is None and self._stored is not None:
            file_id = await self._stored.get(key)
            if file_id is not None:
                self._file_ids[key] = file_id
        return file_id

    async def _send_file(self, chat_id: int, media: Media, caption: str | None) -> Message:
        """Send by file id when this bot has one, else upload once and keep the id.

        Concurrent first sends of one file wait for the one upload. An id Telegram
        refuses (a token changed to another bot, a file it dropped) is forgotten and
        the file uploaded again.
        """
        lock = self._uploading.setdefault(media.key, asyncio.Lock())
        async with lock:
            file_id = await self._known_file_id(media.key)
            if file_id is None:
                return await self._upload(chat_id, media, caption)
        try:
            sent, _ = await self._send_media(chat_id, media, file_id, caption)
        except BadRequest as exc:
            if "file identifier" not in exc.message.lower():
                raise
            log.warning("telegram: a stored file id was refused (%s); uploading again", exc)
            async with lock:
                if self._file_ids.get(media.key) == file_id:
                    self._file_ids.pop(media.key, None)
                    if self._stored is not None:
                        await self._stored.forget(media.key)
                if (known := self._file_ids.get(media.key)) is None:
                    return await self._upload(chat_id, media, caption)
            sent, _ = await self._send_media(chat_id, media, known, caption)
        return sent

    async def _upload(self, chat_id: int, media: Media, caption: str | None) -> Message:
        if media.path is None:
            raise OSError(f"no file for {media.key}")
        sent, file_id = await self._send_media(chat_id, media, media.path.read_bytes(), caption)
        if file_id is not None:
            self._file_ids[media.key] = file_id
            if self._stored is not None:
                await self._stored.put(media.key, file_id)
        return sent

    async def _send_media(
        self, chat_id: int, media: Media, source: str | bytes, caption: str | None
    ) -> tuple[Message, str | None]:
        """Send the file (bytes to upload, or a file id); the message and the file's id."""
        if media.kind is MediaKind.photo:
            sent = await self._bot.send_photo(
                chat_id, source, caption=caption, allow_paid_broadcast=self._paid
            )
            return sent, sent.photo[-1].file_id if sent.photo else None
        if media.kind is MediaKind.voice:
            sent = await self._bot.send_voice(
                chat_id, source, caption=caption, allow_paid_broadcast=self._paid
            )
            return sent, sent.voice.file_id if sent.voice else None
        sent = await self._bot.send_audio(
            chat_id, source, caption=caption, title=media.title or None,
            filename=f"{media.title or 'ban-tin'}.mp3", allow_paid_broadcast=self._paid,
        )  # fmt: skip
        return sent, sent.audio.file_id if sent.audio else None
