"""`haidang inbox`: read subscribers' messages and answer them in their chat."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.answers import store as store_answer
from bot.replies import inbox_answer, send_reply, standalone_channel
from broadcasts import areas, inbox, leases
from broadcasts.channels import SendFailure
from broadcasts.sender import sender_lease
from db.models import Area, Bot, InboxMessage, InboxStatus, Platform
from haidang.cli_support import active_official, fail, now, run
from haidang.settings import Settings

inbox_app = typer.Typer(help="The officials' inbox: messages from subscribers, replies.")


@inbox_app.command("list")
def inbox_list(
    ctx: typer.Context,
    area: Annotated[str | None, typer.Option(help="Only this commune (or p<province>).")] = None,
    status: Annotated[InboxStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Newest messages first, urgent ones marked."""

    async def work(session: AsyncSession) -> list[dict[str, object]]:
        query = select(InboxMessage, Area.name).outerjoin(Area, Area.id == InboxMessage.area_id)
        if area is not None:
            scope = await areas.get_by_code(session, area)
            query = query.where((Area.id == scope.id) | (Area.province_id == scope.id))
        if status is not None:
            query = query.where(InboxMessage.status == status)
        rows = await session.execute(query.order_by(InboxMessage.id.desc()).limit(limit))
        return [_item(message, name) for message, name in rows.all()]

    items = run(ctx.obj, work)
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    for item in items:
        mark = "🚨" if item["urgent"] else "  "
        typer.echo(
            f"{item['id']:>6} {mark} [{item['status']}] {item['area'] or '-'}: {item['text']}"
        )


def _item(message: InboxMessage, area_name: str | None) -> dict[str, object]:
    return {
        "id": message.id,
        "at": message.created_at.isoformat(),
        "area": area_name,
        "kind": message.kind.value,
        "urgent": message.urgent,
        "status": message.status.value,
        "text": message.text,
    }


@inbox_app.command("reply")
def inbox_reply(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(metavar="ID", help="The inbox message.")],
    text: Annotated[str, typer.Argument(help="The answer, in Vietnamese.")],
    by: Annotated[str, typer.Option("--by", metavar="USERNAME", help="The official.")],
) -> None:
    """Store the answer (audited) and send it to the person's chat.

    While the service runs the person's bot, the answer joins that bot's queue (one
    budget for everything the bot sends); otherwise this command sends it itself.
    """
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> tuple[inbox.ReplyTarget, Platform, bool]:
        official = await active_official(session, by)
        moment = now()
        target = await inbox.reply(
            session, message_id=message_id, text=text, by=official, now=moment, via="cli"
        )
        platform = (await session.get_one(Bot, target.bot_id)).platform
        running = await leases.held(session, sender_lease(target.bot_id), moment)
        if running:  # the bot's process picks it up (holder None) within a second
            owed = inbox_answer(target)
            await store_answer(session, bot_id=target.bot_id, owed=owed, holder=None, now=moment)
        return target, platform, running

    target, platform, queued = run(settings, work)
    if queued:
        typer.echo(f"replied to message {message_id}; queued for the running {platform.value} bot")
        return
    telegram = platform is Platform.telegram
    token = settings.telegram_bot_token if telegram else settings.zalo_bot_token
    if token is None:
        variable = f"{platform.value.upper()}_BOT_TOKEN"
        raise fail(f"reply stored, but not delivered: {variable} is not set")
    base = settings.telegram_api_base_url if telegram else settings.zalo_api_base_url

    async def deliver() -> str:
        async with standalone_channel(platform, token.get_secret_value(), str(base)) as channel:
            return await send_reply(channel, target)

    try:
        asyncio.run(deliver())
    except SendFailure as exc:
        raise fail(f"reply stored, but not delivered: {exc}") from None
    typer.echo(f"replied to message {message_id} on {platform.value}")
