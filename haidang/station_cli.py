"""`haidang station`: switch communes' loudspeaker streams on and off."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from audio.station import find_station_binaries, mount_for
from broadcasts import audit, stations
from db.models import Area
from haidang.cli_support import now, run
from haidang.settings import Settings

station_app = typer.Typer(
    help="Commune loudspeaker streams (Liquidsoap + Icecast 2), one mount per commune.",
    no_args_is_help=True,
)

CommuneArgument = Annotated[str, typer.Argument(help="The commune's code, e.g. 11914 or c11914.")]


def _url(settings: Settings, code: str) -> str:
    base = (
        str(settings.station_public_url).rstrip("/")
        if settings.station_public_url is not None
        else f"http://{settings.station_host}:{settings.station_port}"
    )
    return base + mount_for(code)


async def _record(session: AsyncSession, action: str, area: Area) -> None:
    await audit.record(
        session, now=now(), official=None, via="cli", action=action, object_type="area",
        object_id=area.id, details={"commune": area.code, "name": area.name},
    )  # fmt: skip


@station_app.command("on")
def station_on(ctx: typer.Context, commune: CommuneArgument) -> None:
    """Switch a commune's stream on: its daily programme, urgent bulletins, filler."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        area, changed = await stations.switch_on(session, commune, now())
        if not changed:
            return f"{area.code} {area.name}: already on ({_url(settings, area.code)})"
        await _record(session, "station.on", area)
        url = _url(settings, area.code)
        return f"{area.code} {area.name}: on; a running worker streams it at {url}"

    typer.echo(run(settings, work))
    found = find_station_binaries()
    if isinstance(found, str):
        typer.echo(
            f"note: no station on this machine ({found}): apt-get install liquidsoap icecast2"
        )


@station_app.command("off")
def station_off(ctx: typer.Context, commune: CommuneArgument) -> None:
    """Switch a commune's stream off (the other communes' streams restart for a few seconds)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        area, changed = await stations.switch_off(session, commune)
        if not changed:
            return f"{area.code} {area.name}: already off"
        await _record(session, "station.off", area)
        return f"{area.code} {area.name}: off"

    typer.echo(run(settings, work))


@station_app.command("list")
def station_list(ctx: typer.Context) -> None:
    """The communes switched on, with their stream's URL."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{area.code}  {area.name:<30}  {_url(settings, area.code)}"
            for area in await stations.enabled_communes(session)
        ]

    lines = run(settings, work)
    if not lines:
        typer.echo("no station switched on: haidang station on <commune>")
    for line in lines:
        typer.echo(line)
