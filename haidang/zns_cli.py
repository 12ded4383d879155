"""`haidang zns-template`: the ZNS templates Zalo approved, which urgent bulletins' chains fill."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import bots, zns
from db.models import Platform
from haidang.cli_support import fail, now, run
from haidang.settings import Settings

zns_template_app = typer.Typer(
    help="ZNS templates: Zalo-approved messages an urgent bulletin's fallback chain sends.",
    no_args_is_help=True,
)

TemplateArgument = Annotated[str, typer.Argument(help="Our id, or Zalo's template id.")]


def _params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        name, equals, source = pair.partition("=")
        if not equals or not name.strip():
            raise fail(f"--param takes NAME=SOURCE, not {pair!r}", code=2)
        if name.strip() in params:
            raise fail(f"parameter {name.strip()} given twice", code=2)
        params[name.strip()] = source.strip()
    return params


@zns_template_app.command("add")
def template_add(
    ctx: typer.Context,
    template_id: Annotated[str, typer.Argument(help="Zalo's id of the approved template.")],
    name: Annotated[str, typer.Option(help="A name officials recognise it by.")],
    param: Annotated[
        list[str],
        typer.Option(
            metavar="NAME=SOURCE[:LIMIT]",
            help=f"One of the template's parameters and what fills it ({', '.join(zns.SOURCES)});"
            f" LIMIT: its length at Zalo if not {zns.PARAM_LIMIT} (up to {zns.PARAM_LIMIT_MAX})."
            " Repeat for each parameter.",
        ),
    ],
    price: Annotated[int, typer.Option(help="Đồng per message delivered.")],
    bot: Annotated[
        str | None,
        typer.Option(help="The ZNS bot it belongs to (needed only when there are several)."),
    ] = None,
) -> None:
    """Register a template Zalo approved for a ZNS bot."""
    settings: Settings = ctx.obj
    params = _params(param)

    async def work(session: AsyncSession) -> str:
        if bot is not None:
            account = await bots.get(session, Platform.zns, bot.strip().lower())
        else:
            accounts = [b for b in await bots.listing(session) if b.platform is Platform.zns]
            if len(accounts) != 1:
                raise fail("name the ZNS bot with --bot (haidang bots list)", code=2)
            account = accounts[0]
        template = await zns.add(
            session, bot=account, template_id=template_id, name=name, params=params,
            price_vnd=price, official=None, now=now(), via="cli",
        )  # fmt: skip
        return f"{template.id} {template.template_id} {template.name}: added"

    typer.echo(run(settings, work))


@zns_template_app.command("list")
def template_list(ctx: typer.Context) -> None:
    """Every template: id, Zalo's id, bot, state, price and parameters."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{t.id} {t.template_id} [{'on' if t.enabled else 'off'}] bot={b.name} "
            f"{t.price_vnd} VND {t.name!r} "
            + " ".join(f"{param}={source}" for param, source in t.params.items())
            for t, b in await zns.listing(session)
        ]

    lines = run(settings, work)
    if not lines:
        typer.echo("no ZNS template: haidang zns-template add <zalo id> --name ... --param ...")
    for line in lines:
        typer.echo(line)


@zns_template_app.command("disable")
def template_disable(ctx: typer.Context, template: TemplateArgument) -> None:
    """Switch a template off: chains can no longer choose it (it is never deleted)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        found = await zns.get(session, template)
        changed = await zns.disable(session, found, official=None, now=now(), via="cli")
        return f"{found.template_id}: {'off' if changed else 'already off'}"

    typer.echo(run(settings, work))
