"""What the runtime needs from a bot's front end, and what it hands the gateway platforms.

Telegram and Zalo bots take their token and API URL from the environment; the gateway
platforms (Zalo Official Account, ZNS, SMS) are registered by an administrator with their
options (broadcasts.bots) and are made by a factory in FRONT_ENDS from FrontEndArgs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from broadcasts.channels import Channel
from broadcasts.parts import PartStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bot.answers import Answers
    from broadcasts.bots import TokenBox


class FrontEnd(Protocol):
    """One running bot: started under the bot's lease, stopped when the lease goes."""

    async def start(self) -> None:
        """Connect (and bind, log in, set the webhook); raise when it cannot: the part
        retries with a growing delay and reports the reason."""
        ...

    async def stop(self) -> None: ...

    def status(self) -> PartStatus: ...

    def channel(self) -> Channel:
        """What the bot's sender sends broadcasts through."""
        ...

    async def webhook(self, request: Request) -> Response:
        """An inbound event or callback posted to /webhooks/<platform>/<bot id>."""
        ...


@dataclass(frozen=True)
class FrontEndArgs:
    """What a gateway platform's front end is made from."""

    bot_id: int
    secret: str  # the bot's opened token_sealed: an SMPP password, an OA app's secret key
    options: Mapping[str, Any]  # bots.options: host, port, brandname, app id, API URLs ...
    answers: Answers  # the conversation: attach a renderer, start and stop it with the bot
    sessions: async_sessionmaker[AsyncSession]  # receipts, callbacks, rotating OA tokens
    box: TokenBox  # seals what the front end keeps (an OA's rotated refresh token)
    webhook_url: str | None  # where the platform posts events (None: no PUBLIC_BASE_URL)
    webhook_secret: str  # a secret of this bot, derived from SECRET_KEY


FrontEndFactory = Callable[[FrontEndArgs], FrontEnd]
