"""What a sender needs from a chat platform: a Protocol, its error kinds, and a registry."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from db.models import Platform


class FailureKind(enum.StrEnum):
    rate_limited = "rate_limited"  # 429: pause the whole bot for retry_after; not an attempt
    blocked = "blocked"  # 403: the person blocked the bot or deleted the account
    chat_not_found = "chat_not_found"  # 400 "chat not found": the address is gone
    bad_request = "bad_request"  # other 400s: our message is wrong; retrying will not help
    transient = "transient"  # 5xx, timeouts, network: retry with backoff, bounded


class SendFailure(Exception):
    """A send that the platform did not accept, classified for the sender."""

    def __init__(self, kind: FailureKind, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.kind = kind
        self.reason = reason[:80]
        self.retry_after = retry_after


class MediaKind(enum.StrEnum):
    photo = "photo"  # a picture that goes with the bulletin
    voice = "voice"  # the spoken bulletin as a voice message (Telegram: OGG/Opus)
    audio = "audio"  # the loudspeaker MP3 as a file, for radio operators


@dataclass(frozen=True)
class Media:
    """A file to send. Platforms that take uploads use `path`; Zalo fetches `url`."""

    kind: MediaKind
    key: str  # a stable identity (the store key): platform file ids are cached by it
    path: Path | None = None
    url: str | None = None
    title: str = ""


@dataclass(frozen=True)
class Outbound:
    """One message of a delivery: text (with the "Đã nhận" control when
    `ack_bulletin_id` is set) or a media file."""

    text: str = ""
    ack_bulletin_id: int | None = None
    media: Media | None = None
    # A ZNS message: Zalo's id of an approved template and its parameters' values (the
    # text is then only what the preview and logs show).
    template_id: str | None = None
    template_data: Mapping[str, str] | None = None


class Channel(Protocol):
    """A bot on a platform as the sender sees it; implemented in bot/ per platform."""

    platform: Platform
    max_text: int  # characters in one message (Telegram 4096, Zalo 2000)

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send one message; return the platform's message id or raise SendFailure.

        A medium the platform cannot take (Zalo without a public URL) is replaced by a
        short note or skipped, never an error: the text must not suffer for the audio.
        """
        ...


@runtime_checkable
class BriefChannel(Protocol):
    """A channel every message of which is paid for (SMS): a bulletin goes out as one
    brief text (broadcasts.sms.bulletin_text in the channel's encoding), no media."""

    def brief(self, title: str, body: str, *, short: str | None) -> str:
        """The text to send; `short` is an urgent bulletin's read-out (None: routine)."""
        ...


class FileIds(Protocol):
    """One bot's platform file ids for media it uploaded, by Media.key, kept where a
    restarted process finds them (a channel keeps its own copy in memory as well)."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, file_id: str) -> None: ...

    async def forget(self, key: str) -> None:
        """Drop an id the platform refused (another bot's, or one it no longer knows)."""
        ...


class ChannelRegistry:
    """Channels by bot id, filled at start-up by the composition root."""

    def __init__(self) -> None:
        self._channels: dict[int, Channel] = {}

    def register(self, bot_id: int, channel: Channel) -> None:
        self._channels[bot_id] = channel

    def unregister(self, bot_id: int) -> None:
        self._channels.pop(bot_id, None)

    def get(self, bot_id: int) -> Channel | None:
        return self._channels.get(bot_id)

    def bot_ids(self) -> list[int]:
        return sorted(self._channels)
