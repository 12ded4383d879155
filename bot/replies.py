"""Officials' replies to the inbox, delivered into the person's chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import telegram

from bot import texts
from bot.answers import Owed
from bot.conversation import Reply
from bot.telegram import TelegramChannel
from bot.zalo import ZaloChannel, checked_bot
from broadcasts.channels import Channel, Outbound
from broadcasts.inbox import ReplyTarget
from db.models import Platform


def inbox_text(target: ReplyTarget) -> str:
    return texts.INBOX_REPLY.format(area=target.area_name or "xã", text=target.text)


def inbox_answer(target: ReplyTarget) -> Owed:
    """The reply as an answer of the person's bot (sent through its outbox)."""
    return Owed(target.chat_id, (Reply(inbox_text(target)),))


async def send_reply(channel: Channel, target: ReplyTarget) -> str:
    """Send the reply as one message (cut to the platform's limit) from a process that
    runs no bot (the CLI when the service is not running); the message id."""
    return await channel.send(target.chat_id, Outbound(inbox_text(target)[: channel.max_text]))


@asynccontextmanager
async def standalone_channel(
    platform: Platform, token: str, api_base_url: str
) -> AsyncIterator[Channel]:
    """A channel for a process that runs no bot (the CLI), closed on exit."""
    base = api_base_url.rstrip("/")
    if platform is Platform.telegram:
        async with telegram.Bot(token, base_url=f"{base}/bot") as bot:
            yield TelegramChannel(bot)
    else:
        async with checked_bot(token, base) as zalo:
            yield ZaloChannel(zalo)
