"""Fake Zalo Bot API server that the zalo_bot SDK (python-zalo-bot) can talk to over 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from tests.fakes._common import (
    NO_RESULT,
    ApiError,
    ChatId,
    FakeBotAPI,
    FileInfo,
    JSONDict,
    LatencySpec,
    NoResult,
    Params,
    now_ms,
    snapshot,
)

DEFAULT_TOKEN = "1459232241454765289:HaiDangFakeZaloAccessToken"
MAX_TEXT_LENGTH = 2000
DEFAULT_POLL_TIMEOUT = 30.0
_CHAT_ACTIONS = frozenset({"typing", "upload_photo"})
_STATUS_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request timeout",
    429: "Quota exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _zalo_id() -> str:
    """Zalo ids (users, chats, messages) are 20 hex characters."""
    return secrets.token_hex(10)


class FakeZaloAPI(FakeBotAPI):
    """Zalo Bot API at ``{base_url}/bot{token}/{method}``: ``zalo_bot.Bot(token, base_url=...)``.

    API-level errors (unknown chat, text too long, poll timeout...) are answered the way the
    real platform does it by default: HTTP 200 with ``{"ok": false, "error_code": ...}``,
    which the SDK turns into ``None``. ``errors_as_http_200=False`` sends them with the error
    code as the HTTP status instead (the SDK then raises). Injected faults are HTTP-level
    unless ``http_200=True``.
    """

    SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendSticker", "sendVoice"})
    CHAT_METHODS = SEND_METHODS | {"sendChatAction"}
    LIMITED_METHODS = SEND_METHODS  # Zalo documents no limits; the sends are what we pace
    WEBHOOK_SECRET_HEADER = "X-Bot-Api-Secret-Token"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        account_name: str = "bot.HaiDangTest",
        require_known_chats: bool = True,
        errors_as_http_200: bool = True,
        webhook_envelope: bool = True,
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
        self.bot_info: JSONDict = {
            "id": token.split(":", 1)[0],
            "account_name": account_name,
            "account_type": "BASIC",
            "can_join_groups": False,
        }
        self.require_known_chats = require_known_chats
        self.errors_as_http_200 = errors_as_http_200
        # The platform docs show webhook bodies as {"ok": true, "result": <update>}.
        self.webhook_envelope = webhook_envelope
        self._known_chats: set[str] = set()
        self._webhook_updated_at = now_ms()
        handlers: dict[str, Callable[[Params], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook_method,
            "deleteWebhook": self._delete_webhook_method,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendSticker": self._send_sticker,
            "sendVoice": self._send_voice,
            "sendChatAction": self._send_chat_action,
        }
        self._handlers.update(handlers)

    # ------------------------------------------------------- platform hooks

    def normalize_chat_id(self, chat_id: ChatId) -> ChatId:
        return str(chat_id)

    def _default_description(self, status: int, retry_after: int | None) -> str:
        return _STATUS_DESCRIPTIONS.get(status) or super()._default_description(status, retry_after)

    def _error(self, status: int, description: str) -> ApiError:
        return ApiError(status, description, http_200=self.errors_as_http_200)

    def _unauthorized(self) -> ApiError:
        return self._error(401, "Unauthorized")

    def _unknown_method(self, method: str) -> ApiError:
        # The platform answers an unknown function name with 400 (wrong path / API name).
        return self._error(400, "Bad Request: invalid API name")

    def _webhook_body(self, update: JSONDict) -> JSONDict:
        return {"ok": True, "result": update} if self.webhook_envelope else update

    # ------------------------------------------------------ user-side helpers

    def register_chat(self, chat_id: str) -> None:
        """Make a chat known (as if the user had written before) without an update."""
        with self._lock:
            self._known_chats.add(chat_id)

    def user_sends(
        self,
        chat_id: str,
        text: str,
        *,
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        """A user writes ``text`` to the bot in a private chat (user id = chat id)."""
        return self._incoming(
            chat_id, chat_id, "message.text.received", {"text": text}, display_name
        )

    def user_sends_in_group(
        self,
        group_id: str,
        user_id: str,
        text: str,
        *,
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        return self._incoming(
            group_id,
            user_id,
            "message.text.received",
            {"text": text},
            display_name,
            chat_type="GROUP",
        )

    def user_sends_photo(
        self,
        chat_id: str,
        *,
        photo_url: str = "https://photo-stal.zadn.vn/fake/haidang.jpg",
        caption: str | None = None,
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        # The SDK reads photo_url, the platform docs name the field photo: carry both.
        extra: JSONDict = {"photo_url": photo_url, "photo": photo_url}
        if caption is not None:
            extra["caption"] = caption
        return self._incoming(chat_id, chat_id, "message.image.received", extra, display_name)

    def user_sends_sticker(
        self,
        chat_id: str,
        *,
        sticker: str = "0e078a2fb66a5f34067b",
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        extra: JSONDict = {
            "sticker": sticker,
            "url": f"https://zalo-api.zadn.vn/api/emoticon/sticker/webpc?eid={sticker}",
        }
        return self._incoming(chat_id, chat_id, "message.sticker.received", extra, display_name)

    def user_sends_voice(
        self,
        chat_id: str,
        *,
        voice_url: str = "https://voice-stal.zadn.vn/fake/haidang.aac",
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        extra: JSONDict = {"voice_url": voice_url}
        return self._incoming(chat_id, chat_id, "message.voice.received", extra, display_name)

    def user_sends_location(
        self,
        chat_id: str,
        latitude: float,
        longitude: float,
        *,
        display_name: str = "Nguyen Van A",
    ) -> JSONDict:
        """The Bot API has no location event: the bot only learns that an unsupported
        message arrived (the coordinates are not delivered)."""
        del latitude, longitude
        return self._incoming(chat_id, chat_id, "message.unsupported.received", {}, display_name)

    def _incoming(
        self,
        chat_id: str,
        user_id: str,
        event_name: str,
        extra: JSONDict,
        display_name: str,
        *,
        chat_type: str = "PRIVATE",
    ) -> JSONDict:
        update: JSONDict = {
            "event_name": event_name,
            "message": {
                "from": {"id": user_id, "display_name": display_name, "is_bot": False},
                "chat": {"id": chat_id, "chat_type": chat_type},
                **extra,
                "message_id": _zalo_id(),
                "date": now_ms(),
            },
        }
        with self._lock:
            self._known_chats.add(chat_id)
            self._enqueue_update(update)
        return snapshot(update)

    # ------------------------------------------------------------- handlers

    async def _get_me(self, params: Params) -> JSONDict:
        return snapshot(self.bot_info)

    async def _get_updates(self, params: Params) -> JSONDict:
        timeout = params.get_float("timeout")
        timeout = DEFAULT_POLL_TIMEOUT if timeout is None else max(timeout, 0.0)

        def probe() -> JSONDict | None:
            with self._lock:
                if self._webhook_url is not None:
                    raise self._error(
                        409, "Conflict: getUpdates is unavailable while a webhook is set"
                    )
                # One update per answer; it is gone once handed out (no offset to confirm).
                return self._pending.pop(0) if self._pending else None

        update = await self._wait_for(probe, timeout)
        if update is None:
            # What the platform answers when the long poll ends empty; well-behaved
            # clients treat error_code 408 as "no update".
            raise self._error(408, "Request timeout")
        return update

    async def _set_webhook_method(self, params: Params) -> JSONDict:
        url = params.get_str("url")
        secret = params.get_str("secret_token")
        if not url:
            raise self._error(400, "Bad Request: url is required")
        if secret is None or not 8 <= len(secret) <= 256:
            raise self._error(400, "Bad Request: secret_token must be 8-256 characters")
        self._set_webhook(url, secret, drop_pending=False)
        with self._lock:
            self._webhook_updated_at = now_ms()
            return {"url": url, "updated_at": self._webhook_updated_at}

    async def _delete_webhook_method(self, params: Params) -> JSONDict:
        self._delete_webhook(drop_pending=False)
        with self._lock:
            self._webhook_updated_at = now_ms()
            return {"url": "", "updated_at": self._webhook_updated_at}

    async def _get_webhook_info(self, params: Params) -> JSONDict:
        with self._lock:
            return {"url": self._webhook_url or "", "updated_at": self._webhook_updated_at}

    def _known_chat(self, params: Params) -> str:
        chat_id = params.get_str("chat_id")
        if not chat_id:
            raise self._error(400, "Bad Request: chat_id is required")
        if self.require_known_chats and chat_id not in self._known_chats:
            raise self._error(400, "Bad Request: chat_id is invalid or has not messaged the bot")
        return chat_id

    def _checked_text(self, text: str | None, name: str, *, required: bool) -> str | None:
        if text is None or text == "":
            if required:
                raise self._error(400, f"Bad Request: {name} is required")
            return text
        if len(text) > MAX_TEXT_LENGTH:
            raise self._error(400, f"Bad Request: {name} must be 1-{MAX_TEXT_LENGTH} characters")
        return text

    def _accepted(
        self,
        method: str,
        params: Params,
        chat_id: str,
        *,
        text: str | None = None,
        file: FileInfo | None = None,
    ) -> JSONDict:
        result: JSONDict = {"message_id": _zalo_id(), "date": now_ms()}
        self._record_sent(
            method, params, chat_id=chat_id, text=text, file=file, message_id=result["message_id"]
        )
        return result

    async def _send_message(self, params: Params) -> JSONDict:
        with self._lock:
            chat_id = self._known_chat(params)
            text = self._checked_text(params.get_str("text"), "text", required=True)
            return self._accepted("sendMessage", params, chat_id, text=text)

    async def _send_photo(self, params: Params) -> JSONDict:
        with self._lock:
            chat_id = self._known_chat(params)
            caption = self._checked_text(params.get_str("caption"), "caption", required=False)
            photo = params.get_str("photo") or ""
            if not photo.startswith(("http://", "https://")):
                raise self._error(400, "Bad Request: photo must be an image URL")
            file = FileInfo(kind="photo", source="url", file_id=photo)
            return self._accepted("sendPhoto", params, chat_id, text=caption or None, file=file)

    async def _send_sticker(self, params: Params) -> JSONDict:
        with self._lock:
            chat_id = self._known_chat(params)
            sticker = params.get_str("sticker")
            if not sticker:
                raise self._error(400, "Bad Request: sticker is required")
            file = FileInfo(kind="sticker", source="file_id", file_id=sticker)
            return self._accepted("sendSticker", params, chat_id, file=file)

    async def _send_voice(self, params: Params) -> JSONDict:
        with self._lock:
            chat_id = self._known_chat(params)
            voice_url = params.get_str("voice_url") or ""
            if not voice_url.startswith(("http://", "https://")):
                raise self._error(400, "Bad Request: voice_url must be a URL of an .aac file")
            file = FileInfo(kind="voice", source="url", file_id=voice_url)
            return self._accepted("sendVoice", params, chat_id, file=file)

    async def _send_chat_action(self, params: Params) -> NoResult:
        with self._lock:
            chat_id = self._known_chat(params)
            action = params.get_str("action")
            if action not in _CHAT_ACTIONS:
                raise self._error(400, "Bad Request: action is invalid")
            self._record_sent("sendChatAction", params, chat_id=chat_id, text=action)
            return NO_RESULT
