"""Fake Telegram Bot API server that python-telegram-bot can talk to over 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from tests.fakes._common import (
    ApiError,
    ChatId,
    FakeBotAPI,
    FileInfo,
    JSONDict,
    LatencySpec,
    Params,
    WebhookDelivery,
    snapshot,
)

DEFAULT_TOKEN = "7012345678:AAHaiDangFakeTelegramTokenForTests_x1"
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
_CONFLICT_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_STATUS_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# getUpdates without allowed_updates skips these, like the real server.
_OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_FILE_EXTENSIONS = {"photo": "jpg", "voice": "oga", "audio": "mp3", "document": "bin"}
_DEFAULT_MIME = {"photo": "image/jpeg", "voice": "audio/ogg", "audio": "audio/mpeg"}
# Just enough of a JPEG / Ogg header to look right to code sniffing magic bytes.
_FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 256 + b"\xff\xd9"
_FAKE_OGG = b"OggS\x00\x02" + b"\x00" * 256


def _utf16_len(text: str) -> int:
    """Telegram counts entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str) -> list[JSONDict]:
    return [
        {
            "offset": _utf16_len(text[: match.start()]),
            "length": _utf16_len(match.group()),
            "type": "bot_command",
        }
        for match in _BOT_COMMAND.finditer(text)
    ]


class _TelegramHTML(HTMLParser):
    """Checks a parse_mode=HTML text like Telegram does and collects its plain text."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0]
        for index, char in enumerate(source):
            if char == "\n":
                self._line_starts.append(index + 1)
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.error: str | None = None

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        index = self._line_starts[line - 1] + column
        return len(self._source[:index].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error is not None:
            return
        if tag not in _HTML_TAGS:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'
            return
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Telegram has no self-closing tags: "<br/>" is as unsupported as "<br>".
        if self.error is None:
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'

    def handle_endtag(self, tag: str) -> None:
        if self.error is not None:
            return
        if not self.stack or self.stack[-1] != tag:
            self.error = f"Unexpected end tag at byte offset {self._byte_offset()}"
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def plain_text(self) -> str:
        self.feed(self._source)
        self.close()
        if self.error is None and self.stack:
            self.error = f'Can\'t find end tag corresponding to start tag "{self.stack[-1]}"'
        if self.error is not None:
            raise ApiError(400, f"Bad Request: can't parse entities: {self.error}")
        return "".join(self.parts)


@dataclass
class StoredFile:
    """A file the fake knows by file_id: uploaded by the bot or sent by a user."""

    file_id: str
    file_unique_id: str
    kind: str
    size: int | None
    mime_type: str | None
    filename: str | None
    data: bytes | None
    file_path: str
    meta: JSONDict = field(default_factory=dict)

    def as_object(self) -> JSONDict:
        obj: JSONDict = {"file_id": self.file_id, "file_unique_id": self.file_unique_id}
        if self.size is not None:
            obj["file_size"] = self.size
        if self.mime_type is not None and self.kind != "photo":
            obj["mime_type"] = self.mime_type
        if self.filename is not None and self.kind in {"document", "audio"}:
            obj["file_name"] = self.filename
        obj.update(self.meta)
        return obj


class FakeTelegramAPI(FakeBotAPI):
    """Telegram Bot API at ``{base_url}/bot{token}/{method}``; files at ``{base_url}/file/bot``.

    Point python-telegram-bot at it with
    ``Bot(api.token, base_url=api.bot_base_url, base_file_url=api.file_base_url)``.
    """

    SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendAudio", "sendVoice", "sendDocument"})
    CHAT_METHODS = SEND_METHODS | {"sendChatAction", "editMessageText", "editMessageReplyMarkup"}
    # Edits count against a bot's limits like sends; callback answers and chat actions
    # are not messages and are left out, as Telegram appears to treat them.
    LIMITED_METHODS = SEND_METHODS | {"editMessageText", "editMessageReplyMarkup"}
    WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "haidang_test_bot",
        bot_first_name: str = "Hải Đăng",
        require_known_chats: bool = False,
        port: int = 0,
        latency: LatencySpec = None,
        rate_limit_per_second: int | None = None,
        chat_rate_limit: int | None = None,
        chat_rate_window: float = 1.0,
    ) -> None:
        super().__init__(
            token=token,
            port=port,
            latency=latency,
            rate_limit_per_second=rate_limit_per_second,
            chat_rate_limit=chat_rate_limit,
            chat_rate_window=chat_rate_window,
        )
        bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 7012345678
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.require_known_chats = require_known_chats
        self._update_ids = itertools.count(100_001)
        self._callback_ids = itertools.count(4_382_000_000_000_000_001)
        self._file_numbers = itertools.count(1)
        self._users: dict[int, JSONDict] = {}
        self._chats: dict[ChatId, JSONDict] = {}
        self._message_ids: dict[ChatId, int] = {}
        self._bot_messages: dict[tuple[ChatId, int], JSONDict] = {}
        self._open_callbacks: set[str] = set()
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._allowed_updates: frozenset[str] | None = None
        self._poll_generation = 0
        self._webhook_last_error: tuple[int, str] | None = None
        handlers: dict[str, Callable[[Params], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook_method,
            "deleteWebhook": self._delete_webhook_method,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendAudio": self._send_audio,
            "sendVoice": self._send_voice,
            "sendDocument": self._send_document,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getFile": self._get_file,
            "close": self._trivial,
            "logOut": self._trivial,
        }
        self._handlers.update(handlers)

    # ------------------------------------------------------------------ URLs

    @property
    def bot_base_url(self) -> str:
        """Value for python-telegram-bot's ``base_url`` (it appends the token)."""
        return f"{self.base_url}/bot"

    @property
    def file_base_url(self) -> str:
        """Value for python-telegram-bot's ``base_file_url``."""
        return f"{self.base_url}/file/bot"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    # ------------------------------------------------------- platform hooks

    def normalize_chat_id(self, chat_id: ChatId) -> ChatId:
        if isinstance(chat_id, int):
            return chat_id
        text = chat_id.strip()
        return int(text) if text.lstrip("-").isdigit() else text

    def _default_description(self, status: int, retry_after: int | None) -> str:
        if status == 429:
            return f"Too Many Requests: retry after {retry_after or 1}"
        return _STATUS_DESCRIPTIONS.get(status) or super()._default_description(status, retry_after)

    def _after_delivery(self, delivery: WebhookDelivery) -> None:
        if delivery.status is not None and 200 <= delivery.status < 300:
            return
        reason = delivery.error or f"Wrong response from the webhook: {delivery.status}"
        with self._lock:
            self._webhook_last_error = (int(delivery.timestamp), reason)

    # ------------------------------------------------------ user-side helpers

    def register_chat(
        self,
        chat_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
        title: str | None = None,
    ) -> None:
        """Make a chat known (as if the user had pressed Start) without an update."""
        with self._lock:
            if chat_id > 0:
                user = self._user(chat_id, first_name, None, username, "vi")
                self._chats[chat_id] = self._private_chat(user)
            else:
                self._chats[chat_id] = self._group_chat(chat_id, title or "Nhóm ngư dân")

    def user_sends(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str = "vi",
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        """A user writes ``text`` in a private chat; commands get bot_command entities."""
        extra: JSONDict = {"text": text}
        entities = _command_entities(text)
        if entities:
            extra["entities"] = entities
        return self._incoming(
            chat_id,
            extra,
            user_id=user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
            reply_to_message_id=reply_to_message_id,
        )

    def user_sends_in_group(
        self,
        group_id: int,
        user_id: int,
        text: str,
        *,
        title: str = "Tổ đoàn kết ngư dân",
        first_name: str | None = None,
        username: str | None = None,
    ) -> JSONDict:
        """A user writes in a group chat (negative id; -100… makes a supergroup)."""
        if group_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._lock:
            if group_id not in self._chats:
                self._chats[group_id] = self._group_chat(group_id, title)
        extra: JSONDict = {"text": text}
        entities = _command_entities(text)
        if entities:
            extra["entities"] = entities
        return self._incoming(
            group_id, extra, user_id=user_id, first_name=first_name, username=username
        )

    def user_presses(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int | None = None,
        user_id: int | None = None,
        check_button: bool = True,
    ) -> JSONDict:
        """A user presses an inline button of a bot message (the latest with a keyboard by
        default); ``check_button`` insists the message really has a button with ``data``."""
        with self._lock:
            message = self._keyboard_message(chat_id, message_id)
            if check_button:
                buttons = [
                    button.get("callback_data")
                    for row in message.get("reply_markup", {}).get("inline_keyboard", [])
                    for button in row
                ]
                if data not in buttons:
                    raise ValueError(f"message {message['message_id']} has no button {data!r}")
            if user_id is None and chat_id < 0:
                raise ValueError("button presses in a group need a user_id")
            uid = user_id if user_id is not None else chat_id
            user = self._user(uid, None, None, None, "vi")
            query_id = str(next(self._callback_ids))
            self._open_callbacks.add(query_id)
            update = {
                "update_id": next(self._update_ids),
                "callback_query": {
                    "id": query_id,
                    "from": user,
                    "message": snapshot(message),
                    "chat_instance": str(abs(hash((self.bot_user["id"], chat_id)))),
                    "data": data,
                },
            }
            self._enqueue_update(update)
            return snapshot(update)

    def user_sends_photo(
        self,
        chat_id: int,
        *,
        caption: str | None = None,
        data: bytes = _FAKE_JPEG,
        width: int = 1280,
        height: int = 960,
        user_id: int | None = None,
    ) -> JSONDict:
        """A user sends a photo; like the real API it comes in a thumbnail and a full size."""
        with self._lock:
            thumb = self._store_file("photo", data[:64], None, None, {"width": 90, "height": 68})
            full = self._store_file("photo", data, None, None, {"width": width, "height": height})
        extra: JSONDict = {"photo": [thumb.as_object(), full.as_object()]}
        if caption is not None:
            extra["caption"] = caption
        return self._incoming(chat_id, extra, user_id=user_id)

    def user_sends_voice(
        self,
        chat_id: int,
        *,
        duration: int = 3,
        data: bytes = _FAKE_OGG,
        user_id: int | None = None,
    ) -> JSONDict:
        with self._lock:
            voice = self._store_file("voice", data, "audio/ogg", None, {"duration": duration})
        return self._incoming(chat_id, {"voice": voice.as_object()}, user_id=user_id)

    def user_sends_sticker(
        self, chat_id: int, *, emoji: str = "👍", user_id: int | None = None
    ) -> JSONDict:
        meta: JSONDict = {
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "HaiDangFakeStickers",
        }
        with self._lock:
            sticker = self._store_file(
                "sticker", b"RIFF\x00\x00\x00\x00WEBP", "image/webp", None, meta
            )
        return self._incoming(chat_id, {"sticker": sticker.as_object()}, user_id=user_id)

    def user_sends_location(
        self, chat_id: int, latitude: float, longitude: float, *, user_id: int | None = None
    ) -> JSONDict:
        location = {"latitude": latitude, "longitude": longitude}
        return self._incoming(chat_id, {"location": location}, user_id=user_id)

    def user_sends_contact(
        self,
        chat_id: int,
        phone_number: str,
        *,
        first_name: str | None = None,
        user_id: int | None = None,
    ) -> JSONDict:
        """A user shares their own phone number (a request_contact keyboard button)."""
        uid = user_id if user_id is not None else chat_id
        with self._lock:
            user = self._user(uid, None, None, None, "vi")
        contact = {
            "phone_number": phone_number,
            "first_name": first_name or user["first_name"],
            "user_id": uid,
        }
        return self._incoming(chat_id, {"contact": contact}, user_id=user_id)

    def user_blocks_bot(self, chat_id: int) -> JSONDict:
        """The user blocks the bot: a my_chat_member update, then 403 on every send."""
        self.fail_chat(chat_id, status=403, description="Forbidden: bot was blocked by the user")
        return self._chat_member_update(chat_id, "member", "kicked")

    def user_unblocks_bot(self, chat_id: int) -> JSONDict:
        self.clear_faults(chat_id)
        return self._chat_member_update(chat_id, "kicked", "member")

    # -------------------------------------------------------- test inspection

    def bot_message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """The bot's message as it stands now (after edits), or None."""
        with self._lock:
            message = self._bot_messages.get((chat_id, message_id))
            return snapshot(message) if message is not None else None

    def commands(self, *, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        with self._lock:
            return snapshot(self._commands.get((self._scope_key(scope), language_code), []))

    def file_bytes(self, file_id: str) -> bytes | None:
        """Bytes the bot uploaded (or a user sent) under ``file_id``."""
        with self._lock:
            stored = self._files.get(file_id)
            return stored.data if stored is not None else None

    # ------------------------------------------------------------- internals

    def _user(
        self,
        user_id: int,
        first_name: str | None,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ) -> JSONDict:
        user = self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": "Ngư dân"}
            self._users[user_id] = user
        if first_name is not None:
            user["first_name"] = first_name
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        return user

    @staticmethod
    def _private_chat(user: JSONDict) -> JSONDict:
        chat: JSONDict = {"id": user["id"], "first_name": user["first_name"], "type": "private"}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat

    @staticmethod
    def _group_chat(chat_id: int, title: str) -> JSONDict:
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "title": title, "type": kind}

    def _next_message_id(self, chat_id: ChatId) -> int:
        # One counter per chat shared by both directions, as in Telegram private chats.
        message_id = self._message_ids.get(chat_id, 0) + 1
        self._message_ids[chat_id] = message_id
        return message_id

    def _incoming(
        self,
        chat_id: int,
        extra: JSONDict,
        *,
        user_id: int | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "vi",
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        with self._lock:
            if user_id is None:
                if chat_id < 0:
                    raise ValueError("group messages need a user_id")
                user_id = chat_id
            user = self._user(user_id, first_name, last_name, username, language_code)
            if chat_id > 0:
                self._chats[chat_id] = self._private_chat(user)
            chat = self._chats.setdefault(chat_id, self._group_chat(chat_id, "Nhóm ngư dân"))
            message: JSONDict = {
                "message_id": self._next_message_id(chat_id),
                "from": snapshot(user),
                "chat": snapshot(chat),
                "date": int(time.time()),
                **extra,
            }
            if reply_to_message_id is not None:
                replied = self._bot_messages.get((chat_id, reply_to_message_id))
                if replied is not None:
                    message["reply_to_message"] = snapshot(replied)
            update = {"update_id": next(self._update_ids), "message": message}
            self._enqueue_update(update)
            return snapshot(update)

    def _chat_member_update(self, chat_id: int, old: str, new: str) -> JSONDict:
        with self._lock:
            user = self._user(chat_id, None, None, None, None)
            chat = self._chats.setdefault(chat_id, self._private_chat(user))
            new_member: JSONDict = {"user": snapshot(self.bot_user), "status": new}
            if new == "kicked":
                new_member["until_date"] = 0
            update = {
                "update_id": next(self._update_ids),
                "my_chat_member": {
                    "chat": snapshot(chat),
                    "from": snapshot(user),
                    "date": int(time.time()),
                    "old_chat_member": {"user": snapshot(self.bot_user), "status": old},
                    "new_chat_member": new_member,
                },
            }
            self._enqueue_update(update)
            return snapshot(update)

    def _keyboard_message(self, chat_id: int, message_id: int | None) -> JSONDict:
        if message_id is not None:
            message = self._bot_messages.get((chat_id, message_id))
            if message is None:
                raise LookupError(f"the bot sent no message {message_id} to chat {chat_id}")
            return message
        for (chat, _), message in reversed(self._bot_messages.items()):
            if chat == chat_id and "reply_markup" in message:
                return message
        raise LookupError(f"the bot sent no message with an inline keyboard to chat {chat_id}")

    def _store_file(
        self,
        kind: str,
        data: bytes | None,
        mime_type: str | None,
        filename: str | None,
        meta: JSONDict,
    ) -> StoredFile:
        number = next(self._file_numbers)
        prefix = {
            "photo": "AgACAgUAAxkBAAI",
            "voice": "AwACAgUAAxkBAAI",
            "sticker": "CAACAgUAAxkBAAI",
        }
        file_id = prefix.get(kind, "BQACAgUAAxkBAAI") + f"{number:06d}" + secrets.token_urlsafe(24)
        extension = _FILE_EXTENSIONS.get(kind, "bin")
        stored = StoredFile(
            file_id=file_id,
            file_unique_id="AgAD" + secrets.token_urlsafe(9),
            kind=kind,
            size=None if data is None else len(data),
            mime_type=mime_type or _DEFAULT_MIME.get(kind),
            filename=filename,
            data=data,
            file_path=f"{kind}s/file_{number}.{extension}",
            meta=meta,
        )
        self._files[file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope or {"type": "default"}, sort_keys=True)

    def _chat_for_send(self, params: Params) -> tuple[ChatId, JSONDict]:
        raw = params.get_str("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat_id = self.normalize_chat_id(raw)
        chat = self._chats.get(chat_id)
        if chat is None:
            if self.require_known_chats or isinstance(chat_id, str):
                raise ApiError(400, "Bad Request: chat not found")
            if chat_id > 0:
                chat = self._private_chat(self._user(chat_id, None, None, None, None))
            else:
                chat = self._group_chat(chat_id, "Nhóm ngư dân")
            self._chats[chat_id] = chat
        return chat_id, chat

    def _checked_text(
        self, text: str | None, parse_mode: str | None, *, limit: int, too_long: str
    ) -> str:
        """The text as the client shows it (HTML checked and stripped), within ``limit``."""
        if text is None:
            return ""
        plain = text
        if parse_mode is not None and parse_mode.upper() == "HTML":
            plain = _TelegramHTML(text).plain_text()
        if len(plain) > limit:
            raise ApiError(400, too_long)
        return plain

    @staticmethod
    def _checked_markup(params: Params) -> JSONDict | None:
        markup = params.get_json("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _new_bot_message(
        self, chat_id: ChatId, chat: JSONDict, extra: JSONDict, markup: JSONDict | None
    ) -> JSONDict:
        message: JSONDict = {
            "message_id": self._next_message_id(chat_id),
            "from": snapshot(self.bot_user),
            "chat": snapshot(chat),
            "date": int(time.time()),
            **extra,
        }
        # The real API echoes only inline keyboards; reply keyboards are not part of a Message.
        if markup is not None and "inline_keyboard" in markup:
            message["reply_markup"] = snapshot(markup)
        self._bot_messages[(chat_id, message["message_id"])] = message
        return snapshot(message)

    def _input_file(self, params: Params, kind: str) -> tuple[StoredFile, FileInfo]:
        """Resolve a media parameter: multipart upload, known file_id, or URL."""
        upload = params.files.get(kind)
        value = params.get_str(kind)
        if upload is None and value is not None and value.startswith("attach://"):
            upload = params.files.get(value.removeprefix("attach://"))
        if upload is not None:
            meta = self._media_meta(params, kind)
            mime_type = upload.content_type
            if kind in {"photo", "voice"} or mime_type in {None, "application/octet-stream"}:
                # Telegram re-types voice notes and photos whatever the client claimed.
                mime_type = _DEFAULT_MIME.get(kind)
            stored = self._store_file(kind, upload.data, mime_type, upload.filename, meta)
            info = FileInfo(
                kind=kind,
                source="upload",
                file_id=stored.file_id,
                file_unique_id=stored.file_unique_id,
                size=len(upload.data),
                filename=upload.filename,
                mime_type=stored.mime_type,
            )
            return stored, info
        if not value:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        known = self._files.get(value)
        if known is not None:
            if known.kind != kind:
                raise ApiError(
                    400,
                    f"Bad Request: can't use file of type {known.kind.title()} as {kind.title()}",
                )
            info = FileInfo(
                kind=kind,
                source="file_id",
                file_id=known.file_id,
                file_unique_id=known.file_unique_id,
                size=known.size,
                filename=known.filename,
                mime_type=known.mime_type,
            )
            return known, info
        if value.startswith(("http://", "https://")):
            # The real server would download it; the fake stays offline and keeps the URL.
            stored = self._store_file(kind, None, None, value.rsplit("/", 1)[-1], {})
            stored.meta.update(self._media_meta(params, kind))
            return stored, FileInfo(
                kind=kind,
                source="url",
                file_id=stored.file_id,
                file_unique_id=stored.file_unique_id,
                filename=value,
            )
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    @staticmethod
    def _media_meta(params: Params, kind: str) -> JSONDict:
        if kind in {"voice", "audio"}:
            meta: JSONDict = {"duration": params.get_int("duration") or 1}
            if kind == "audio":
                for key in ("title", "performer"):
                    value = params.get_str(key)
                    if value is not None:
                        meta[key] = value
            return meta
        if kind == "photo":
            return {"width": 1280, "height": 960}
        return {}

    # -------------------------------------------------------------- handlers

    async def _trivial(self, params: Params) -> bool:
        return True

    async def _get_me(self, params: Params) -> JSONDict:
        return snapshot(self.bot_user)

    async def _get_updates(self, params: Params) -> list[JSONDict]:
        offset = params.get_int("offset")
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        timeout = max(params.get_float("timeout") or 0.0, 0.0)
        allowed = params.get_json("allowed_updates")
        with self._lock:
            if self._webhook_url is not None:
                raise ApiError(409, _CONFLICT_WEBHOOK)
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(allowed) or None
            self._confirm(offset)
            self._poll_generation += 1
            generation = self._poll_generation
        # A newer getUpdates cuts an older one off with 409, like two running bot instances.
        self._wake_pollers()

        def probe() -> list[JSONDict] | None:
            with self._lock:
                if generation != self._poll_generation:
                    raise ApiError(409, _CONFLICT_OTHER_POLL)
                if self._webhook_url is not None:
                    raise ApiError(409, _CONFLICT_WEBHOOK)
                self._drop_unwanted()
                return snapshot(self._pending[:limit]) or None

        return await self._wait_for(probe, timeout) or []

    def _confirm(self, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            self._pending = self._pending[offset:]
        else:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]

    def _drop_unwanted(self) -> None:
        allowed = self._allowed_updates

        def wanted(update: JSONDict) -> bool:
            kind = next(key for key in update if key != "update_id")
            return kind in allowed if allowed else kind not in _OPT_IN_UPDATE_TYPES

        self._pending = [u for u in self._pending if wanted(u)]

    async def _set_webhook_method(self, params: Params) -> bool:
        url = params.get_str("url") or ""
        secret = params.get_str("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        drop = params.get_bool("drop_pending_updates")
        allowed = params.get_json("allowed_updates")
        connections = params.get_int("max_connections")
        if connections is not None and not 1 <= connections <= 100:
            raise ApiError(400, "Bad Request: invalid max_connections specified")
        with self._lock:
            # Telegram POSTs over up to max_connections connections at once (default 40).
            self._webhook_connections = 40 if connections is None else connections
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(allowed) or None
            self._webhook_last_error = None
        if url:
            self._set_webhook(url, secret, drop_pending=drop)
        else:
            # setWebhook with an empty url is how the real API removes a webhook.
            self._delete_webhook(drop_pending=drop)
        return True

    async def _delete_webhook_method(self, params: Params) -> bool:
        self._delete_webhook(drop_pending=params.get_bool("drop_pending_updates"))
        return True

    async def _get_webhook_info(self, params: Params) -> JSONDict:
        with self._lock:
            info: JSONDict = {
                "url": self._webhook_url or "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._pending) + len(self._outbox),
            }
            if self._webhook_url is not None:
                info["max_connections"] = self._webhook_connections
                info["ip_address"] = "127.0.0.1"
                if self._allowed_updates:
                    info["allowed_updates"] = sorted(self._allowed_updates)
                if self._webhook_last_error is not None:
                    info["last_error_date"], info["last_error_message"] = self._webhook_last_error
            return info

    async def _send_message(self, params: Params) -> JSONDict:
        with self._lock:
            text = params.get_str("text")
            if not text:
                raise ApiError(400, "Bad Request: message text is empty")
            plain = self._checked_text(
                text,
                params.get_str("parse_mode"),
                limit=MAX_TEXT_LENGTH,
                too_long="Bad Request: message is too long",
            )
            markup = self._checked_markup(params)
            chat_id, chat = self._chat_for_send(params)
            message = self._new_bot_message(chat_id, chat, {"text": plain}, markup)
            self._record_sent(
                "sendMessage",
                params,
                chat_id=chat_id,
                text=text,
                reply_markup=markup,
                message_id=message["message_id"],
            )
            return message

    async def _send_media(self, params: Params, kind: str, method: str) -> JSONDict:
        with self._lock:
            caption = params.get_str("caption")
            self._checked_text(
                caption,
                params.get_str("parse_mode"),
                limit=MAX_CAPTION_LENGTH,
                too_long="Bad Request: message caption is too long",
            )
            markup = self._checked_markup(params)
            chat_id, chat = self._chat_for_send(params)
            stored, info = self._input_file(params, kind)
            media: Any = stored.as_object()
            if kind == "photo":
                media = [media]
            extra: JSONDict = {kind: media}
            if caption:
                extra["caption"] = caption
            message = self._new_bot_message(chat_id, chat, extra, markup)
            self._record_sent(
                method,
                params,
                chat_id=chat_id,
                text=caption,
                reply_markup=markup,
                file=info,
                message_id=message["message_id"],
            )
            return message

    async def _send_photo(self, params: Params) -> JSONDict:
        return await self._send_media(params, "photo", "sendPhoto")

    async def _send_audio(self, params: Params) -> JSONDict:
        return await self._send_media(params, "audio", "sendAudio")

    async def _send_voice(self, params: Params) -> JSONDict:
        return await self._send_media(params, "voice", "sendVoice")

    async def _send_document(self, params: Params) -> JSONDict:
        return await self._send_media(params, "document", "sendDocument")

    async def _send_chat_action(self, params: Params) -> bool:
        with self._lock:
            action = params.get_str("action")
            if action not in _CHAT_ACTIONS:
                raise ApiError(400, "Bad Request: wrong parameter action in request")
            chat_id, _ = self._chat_for_send(params)
            self._record_sent("sendChatAction", params, chat_id=chat_id, text=action)
            return True

    async def _answer_callback_query(self, params: Params) -> bool:
        with self._lock:
            query_id = params.get_str("callback_query_id") or ""
            if query_id not in self._open_callbacks:
                raise ApiError(
                    400,
                    "Bad Request: query is too old and response timeout expired "
                    "or query ID is invalid",
                )
            self._open_callbacks.discard(query_id)
            self._record_sent(
                "answerCallbackQuery", params, chat_id=None, text=params.get_str("text")
            )
            return True

    def _message_to_edit(self, params: Params) -> tuple[ChatId, JSONDict]:
        raw_chat = params.get_str("chat_id")
        message_id = params.get_int("message_id")
        if raw_chat is None or message_id is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        chat_id = self.normalize_chat_id(raw_chat)
        message = self._bot_messages.get((chat_id, message_id))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return chat_id, message

    async def _edit_message_text(self, params: Params) -> JSONDict | bool:
        with self._lock:
            if params.get_str("inline_message_id"):
                return True
            text = params.get_str("text")
            if not text:
                raise ApiError(400, "Bad Request: message text is empty")
            chat_id, message = self._message_to_edit(params)
            if "text" not in message:
                raise ApiError(400, "Bad Request: there is no text in the message to edit")
            plain = self._checked_text(
                text,
                params.get_str("parse_mode"),
                limit=MAX_TEXT_LENGTH,
                too_long="Bad Request: message is too long",
            )
            markup = self._checked_markup(params)
            new_markup = markup if markup and "inline_keyboard" in markup else None
            if plain == message["text"] and new_markup == message.get("reply_markup"):
                raise ApiError(400, _NOT_MODIFIED)
            message["text"] = plain
            self._set_markup(message, new_markup)
            message["edit_date"] = int(time.time())
            self._record_sent(
                "editMessageText",
                params,
                chat_id=chat_id,
                text=text,
                reply_markup=markup,
                message_id=message["message_id"],
            )
            return snapshot(message)

    async def _edit_message_reply_markup(self, params: Params) -> JSONDict | bool:
        with self._lock:
            if params.get_str("inline_message_id"):
                return True
            chat_id, message = self._message_to_edit(params)
            markup = self._checked_markup(params)
            new_markup = markup if markup and "inline_keyboard" in markup else None
            if new_markup == message.get("reply_markup"):
                raise ApiError(400, _NOT_MODIFIED)
            self._set_markup(message, new_markup)
            message["edit_date"] = int(time.time())
            self._record_sent(
                "editMessageReplyMarkup",
                params,
                chat_id=chat_id,
                reply_markup=markup,
                message_id=message["message_id"],
            )
            return snapshot(message)

    @staticmethod
    def _set_markup(message: JSONDict, markup: JSONDict | None) -> None:
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = snapshot(markup)

    async def _set_my_commands(self, params: Params) -> bool:
        commands = params.get_json("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            description = command.get("description", "") if isinstance(command, dict) else ""
            if not _COMMAND_NAME.fullmatch(name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            self._commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        return True

    async def _get_my_commands(self, params: Params) -> list[JSONDict]:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            return snapshot(self._commands.get(key, []))

    async def _delete_my_commands(self, params: Params) -> bool:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        with self._lock:
            self._commands.pop(key, None)
        return True

    async def _get_file(self, params: Params) -> JSONDict:
        with self._lock:
            stored = self._files.get(params.get_str("file_id") or "")
            if stored is None:
                raise ApiError(400, "Bad Request: invalid file_id")
            result: JSONDict = {
                "file_id": stored.file_id,
                "file_unique_id": stored.file_unique_id,
                "file_path": stored.file_path,
            }
            if stored.size is not None:
                result["file_size"] = stored.size
            return result

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            raise web.HTTPUnauthorized()
        with self._lock:
            stored = self._files_by_path.get(request.match_info["path"])
        if stored is None or stored.data is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )
