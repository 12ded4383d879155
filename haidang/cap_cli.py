"""`haidang cap-source`: the CAP feeds whose alerts become draft bulletins."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import audit, cap_import
from db.models import CapSource
from haidang.cli_support import now, run, run_with_sessions
from haidang.settings import Settings

cap_source_app = typer.Typer(
    help="CAP sources: feeds polled by the scheduler role; each new alert becomes a draft.",
    no_args_is_help=True,
)

SourceArgument = Annotated[str, typer.Argument(help="The source's name or id.")]


async def _record(
    session: AsyncSession, action: str, source: CapSource, details: dict[str, Any]
) -> None:
    await audit.record(
        session, now=now(), official=None, via="cli", action=action, object_type="cap_source",
        object_id=source.id, details={"name": source.name, **details},
    )  # fmt: skip


@cap_source_app.command("add")
def source_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for officials, e.g. nchmf.")],
    url: Annotated[str, typer.Argument(help="http(s) URL of an ATOM feed of CAP, or of one CAP.")],
    interval: Annotated[int, typer.Option(help="Seconds between polls (10-86400).", min=1)] = 300,
    default_area: Annotated[
        str | None,
        typer.Option(help="Province (p31) or commune (11914) for alerts with no area of ours."),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
) -> None:
    """Add a CAP source (a running scheduler polls it within its interval)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        source = await cap_import.add_source(
            session, name=name, url=url, now=now(), poll_seconds=interval,
            default_area=default_area, enabled=not disabled,
        )  # fmt: skip
        await _record(
            session, "cap_source.add", source,
            {"url": cap_import.shown_url(source.url), "interval": interval,
             "default_area": default_area, "enabled": source.enabled},
        )  # fmt: skip
        return f"{source.id} {source.name}: added ({cap_import.shown_url(source.url)})"

    typer.echo(run(settings, work))


@cap_source_app.command("list")
def source_list(ctx: typer.Context) -> None:
    """Every source: state, interval, last poll and last error."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> list[str]:
        lines = []
        for source, area in await cap_import.list_sources(session):
            state = "on" if source.enabled else "off"
            polled = source.last_polled_at.isoformat() if source.last_polled_at else "never"
            line = (
                f"{source.id} {source.name} [{state}] every {source.poll_seconds}s "
                f"{cap_import.shown_url(source.url)} default={area or '-'} polled={polled}"
            )
            if source.last_error:
                line += f" error={source.last_error[:200]}"
            lines.append(line)
        return lines

    lines = run(settings, work)
    if not lines:
        typer.echo("no CAP source: haidang cap-source add <name> <url>")
    for line in lines:
        typer.echo(line)


def _switch(ctx: typer.Context, key: str, enabled: bool) -> None:
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        source = await cap_import.get_source(session, key)
        if source.enabled == enabled:
            return f"{source.name}: already {'on' if enabled else 'off'}"
        source.enabled = enabled
        await _record(session, "cap_source.enable" if enabled else "cap_source.disable", source, {})
        return f"{source.name}: {'on' if enabled else 'off'}"

    typer.echo(run(settings, work))


@cap_source_app.command("enable")
def source_enable(ctx: typer.Context, source: SourceArgument) -> None:
    """Switch a source on."""
    _switch(ctx, source, True)


@cap_source_app.command("disable")
def source_disable(ctx: typer.Context, source: SourceArgument) -> None:
    """Switch a source off (nothing is polled; its drafts stay)."""
    _switch(ctx, source, False)


@cap_source_app.command("remove")
def source_remove(ctx: typer.Context, source: SourceArgument) -> None:
    """Remove a source; the drafts it brought and its import records stay."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        found = await cap_import.get_source(session, source)
        await _record(session, "cap_source.remove", found, {})
        await cap_import.remove_source(session, found)
        return f"{found.name}: removed"

    typer.echo(run(settings, work))


@cap_source_app.command("poll")
def source_poll(ctx: typer.Context, source: SourceArgument) -> None:
    """Poll one source now (as the scheduler would) and print what it imported."""
    settings: Settings = ctx.obj

    async def work(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
        async with sessions() as session:
            source_id = (await cap_import.get_source(session, source)).id
        async with cap_import.new_client() as client:
            report = await cap_import.poll_source(sessions, source_id, client, now())
        lines = ["not modified"] if report.not_modified else []
        lines += cap_import.describe(report.imported)
        lines += [f"error: {e}" for e in report.errors]
        return lines or ["nothing new"]

    for line in run_with_sessions(settings, work):
        typer.echo(line)
