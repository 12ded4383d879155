"""`haidang bots`: register a deployment's bots, set their tokens, provinces and rates."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import audit, bots
from db.models import Area, Bot, Platform
from haidang.cli_support import fail, now, run
from haidang.settings import Settings

bots_app = typer.Typer(
    help="The bots: several per platform (e.g. one per province), tokens kept sealed.",
    no_args_is_help=True,
)

PlatformArgument = Annotated[
    Platform, typer.Argument(help="telegram, zalo, zalo_oa (Official Account), zns or sms.")
]
OptionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        metavar="KEY=VALUE",
        help=(
            "A gateway's option, repeated. sms: host, port, system_id, brandname, "
            "cost_per_part_vnd, carrier, encoding, throughput; zalo_oa and zns: app_id "
            "(and oa_id, api_base_url ...)."
        ),
    ),
]
NameArgument = Annotated[str, typer.Argument(help='The bot\'s name; "default" is the first bot.')]
TokenStdinOption = Annotated[
    bool,
    typer.Option(
        "--token-stdin",
        help=(
            "Read the bot's token from standard input (a gateway's secret: the SMPP "
            "password; for zalo_oa and zns the app's secret key, then on a second line "
            "the Official Account's refresh token)."
        ),
    ),
]
LinkOption = Annotated[
    str | None,
    typer.Option(metavar="URL", help='Public https:// link for posters ("" clears it).'),
]


def _read_token(token_stdin: bool) -> str:
    if not token_stdin:
        raise fail("pass the bot's token on standard input with --token-stdin")
    return sys.stdin.read().strip()


def _options(pairs: list[str] | None) -> dict[str, object]:
    """KEY=VALUE pairs; whole numbers become integers (a port, a price)."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise fail(f"--option {pair!r}: expected KEY=VALUE", code=2)
        value = value.strip()
        options[key.strip()] = int(value) if value.isdigit() and len(value) < 10 else value
    return options


def _oa_secret(platform: Platform, read: str) -> tuple[str, str | None]:
    """An Official Account app's secret key and the refresh token that came with it."""
    if platform not in (Platform.zalo_oa, Platform.zns):
        return read, None
    lines = [line.strip() for line in read.splitlines() if line.strip()]
    if len(lines) != 2:
        raise fail("give the app's secret key, then the OA's refresh token, on two lines")
    return lines[0], lines[1]


async def _province_code(session: AsyncSession, bot: Bot) -> str | None:
    return None if bot.area_id is None else (await session.get_one(Area, bot.area_id)).code


async def _settings_of(session: AsyncSession, bot: Bot) -> dict[str, Any]:
    """What the audit row records of a bot (never its token)."""
    recorded: dict[str, Any] = {
        "rate": bot.rate_per_second,
        "enabled": bot.enabled,
        "link": bot.link,
        "province": await _province_code(session, bot),
    }
    if bot.options:  # a gateway's; its secret is not among them
        recorded["options"] = dict(bot.options)
    return recorded


async def _record(session: AsyncSession, action: str, bot: Bot, details: dict[str, Any]) -> None:
    await audit.record(
        session, now=now(), official=None, via="cli", action=action, object_type="bot",
        object_id=bot.id, details={"platform": bot.platform.value, "name": bot.name, **details},
    )  # fmt: skip


def _token_place(settings: Settings, bot: Bot) -> str:
    if bots.is_first(bot):
        state = "set" if settings.first_bot_tokens(bot.platform) else "not set"
        return f"env {bots.token_variable(bot.platform)} ({state})"
    return "stored" if bot.token_sealed is not None else "none"


@bots_app.command("list")
def bots_list(ctx: typer.Context) -> None:
    """Every bot: platform, name, @username, province, rate, state and where its token is."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> list[str]:
        listed = await bots.listing(session)
        ids = {bot.area_id for bot in listed if bot.area_id is not None}
        provinces = {
            area.id: f"{area.code} {area.name}"
            for area in (await session.scalars(select(Area).where(Area.id.in_(ids)))).all()
        }
        return [
            "  ".join(
                (
                    f"{bot.platform.value:<8}",
                    f"{bot.name:<20}",
                    f"@{bot.username}" if bot.username else "(username not known yet)",
                    provinces[bot.area_id] if bot.area_id is not None else "any province",
                    f"{bot.rate_per_second:g}/s",
                    "enabled" if bot.enabled else "disabled",
                    f"token: {_token_place(settings, bot)}",
                )
            )
            for bot in listed
        ]

    lines = run(settings, work)
    if not lines:
        typer.echo("no bots yet: each platform's first bot is created when the service starts")
    for line in lines:
        typer.echo(line)


@bots_app.command("add")
def bots_add(
    ctx: typer.Context,
    platform: PlatformArgument,
    name: NameArgument,
    token_stdin: TokenStdinOption = False,
    rate: Annotated[float, typer.Option(help="Messages per second for the bot as a whole.")] = 30.0,
    province: Annotated[
        str | None, typer.Option(metavar="CODE", help="The province it serves, e.g. p51.")
    ] = None,
    link: LinkOption = None,
    option: OptionsOption = None,
) -> None:
    """Register another bot; its token, read from standard input, is stored sealed. A
    gateway (zalo_oa, zns, sms) gives its options with --option."""
    settings: Settings = ctx.obj
    token, refresh = _oa_secret(platform, _read_token(token_stdin))
    box = bots.TokenBox(settings.secret_key.get_secret_value())

    async def work(session: AsyncSession) -> str:
        bot = await bots.add(
            session, box, platform=platform, name=name, token=token, rate_per_second=rate,
            link=link, province=province, taken=settings.first_bot_tokens(platform),
            options=_options(option),
        )  # fmt: skip
        if refresh is not None:
            from bot import zalo_oauth  # only a deployment with an Official Account needs it

            await zalo_oauth.seed(session, box, str(bot.options["app_id"]), refresh)
        await _record(session, "bot.create", bot, {"after": await _settings_of(session, bot)})
        return f"added {bots.label(bot)}; a running service starts it within seconds"

    typer.echo(run(settings, work))


@bots_app.command("set")
def bots_set(
    ctx: typer.Context,
    platform: PlatformArgument,
    name: NameArgument,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second for the bot as a whole.")
    ] = None,
    province: Annotated[
        str | None, typer.Option(metavar="CODE", help="The province it serves, e.g. p51.")
    ] = None,
    no_province: Annotated[
        bool, typer.Option("--no-province", help="Serve no province in particular.")
    ] = False,
    link: LinkOption = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Run the bot, or stop it.")
    ] = None,
    token_stdin: TokenStdinOption = False,
) -> None:
    """Change a bot: only what is given changes; --token-stdin replaces its token."""
    settings: Settings = ctx.obj
    if province is not None and no_province:
        raise fail("give --province or --no-province, not both", code=2)
    token = _read_token(token_stdin) if token_stdin else None
    box = bots.TokenBox(settings.secret_key.get_secret_value())

    async def work(session: AsyncSession) -> str:
        bot = await bots.get(session, platform, name.strip().lower())
        before = await _settings_of(session, bot)
        if rate is not None:
            bot.rate_per_second = bots.check_rate(rate)
        if enabled is not None:
            bot.enabled = enabled
        if link is not None or province is not None or no_province:
            await bots.set_place(
                session, bot,
                link=bot.link if link is None else link,
                province=None if no_province else province or before["province"],
            )  # fmt: skip
        await session.flush()
        after = await _settings_of(session, bot)
        changed = []
        if after != before:
            await _record(session, "bot.update", bot, {"before": before, "after": after})
            changed.append("settings")
        if token is not None:
            await bots.set_token(
                session, box, bot, token, taken=settings.first_bot_tokens(platform)
            )
            await _record(session, "bot.token", bot, {})
            changed.append("token")
        if not changed:
            return f"{bots.label(bot)}: nothing changed"
        return f"{bots.label(bot)}: {' and '.join(changed)} saved"

    typer.echo(run(settings, work))
