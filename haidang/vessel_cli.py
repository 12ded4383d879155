"""`haidang vessels`: the vessel registry, people aboard, and a bulletin's vessel report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import audit, vessels
from db.models import VesselRelation
from haidang.bulletin_cli import write_atomically
from haidang.cli_support import fail, now, run
from haidang.settings import Settings

vessels_app = typer.Typer(
    help="Fishing vessels: the registry, who sails on them, who a bulletin reached.",
    no_args_is_help=True,
)

RegistrationArgument = Annotated[
    str, typer.Argument(metavar="REGISTRATION", help="e.g. QNg-90123-TS (any spelling).")
]
SubscriberArgument = Annotated[int, typer.Argument(metavar="SUBSCRIBER", help="A person's id.")]


async def _audit(session: AsyncSession, action: str, vessel_id: int, **details: object) -> None:
    # Never the phone: it is personal data (only whether there is one).
    await audit.record(
        session, now=now(), official=None, via="cli", action=action, object_type="vessel",
        object_id=vessel_id, details=dict(details),
    )  # fmt: skip


@vessels_app.command("add")
def vessels_add(
    ctx: typer.Context,
    registration: RegistrationArgument,
    commune: Annotated[str, typer.Option(help="The vessel's commune code, e.g. 11914.")],
    name: Annotated[str, typer.Option(help="The vessel's name.")] = "",
    home_port: Annotated[
        str | None, typer.Option("--home-port", help="A port's code or name in the commune.")
    ] = None,
    phone: Annotated[
        str | None, typer.Option(help="A Vietnamese number to reach the vessel (personal data).")
    ] = None,
) -> None:
    """Add a vessel, or update the one with this registration."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        vessel, added = await vessels.save(
            session, registration=registration, name=name, commune=commune,
            home_port=home_port, phone=phone,
        )  # fmt: skip
        await _audit(
            session, "vessel.create" if added else "vessel.update", vessel.id,
            registration=vessel.registration, commune=commune, phone=vessel.phone is not None,
        )  # fmt: skip
        return ("added " if added else "updated ") + vessel.registration

    typer.echo(run(settings, work))


@vessels_app.command("import")
def vessels_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A CSV of the province's registry.")],
) -> None:
    """Import a registry CSV (registration, name, commune, home port, phone; English or
    Vietnamese headers). Any bad row and nothing is imported: every bad line is listed."""
    settings: Settings = ctx.obj
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None

    async def work(session: AsyncSession) -> str:
        result = await vessels.import_csv(session, text)
        await audit.record(
            session, now=now(), official=None, via="cli", action="vessel.import",
            object_type="vessel", details={"file": path.name, "added": result.added,
                                           "updated": result.updated},
        )  # fmt: skip
        return f"imported {path.name}: {result.added} added, {result.updated} updated, " + (
            f"{result.unchanged} unchanged"
        )

    typer.echo(run(settings, work))


@vessels_app.command("link")
def vessels_link(
    ctx: typer.Context,
    registration: RegistrationArgument,
    subscriber: SubscriberArgument,
    relation: Annotated[
        VesselRelation, typer.Option(help="How the person is tied to the vessel.")
    ] = VesselRelation.crew,
) -> None:
    """Tie a person to a vessel (captain, crew, owner or family ashore)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        added = await vessels.link(session, registration, subscriber, relation)
        vessel = await vessels.get(session, registration)
        await _audit(
            session, "vessel.link", vessel.id, subscriber=subscriber, relation=relation.value
        )
        verb = "linked" if added else "now"
        return f"{vessel.registration}: subscriber {subscriber} {verb} {relation.value}"

    typer.echo(run(settings, work))


@vessels_app.command("unlink")
def vessels_unlink(
    ctx: typer.Context, registration: RegistrationArgument, subscriber: SubscriberArgument
) -> None:
    """Untie a person from a vessel."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> str:
        vessel = await vessels.get(session, registration)
        if not await vessels.unlink(session, registration, subscriber):
            return f"{vessel.registration}: subscriber {subscriber} was not linked"
        await _audit(session, "vessel.unlink", vessel.id, subscriber=subscriber)
        return f"{vessel.registration}: subscriber {subscriber} unlinked"

    typer.echo(run(settings, work))


@vessels_app.command("list")
def vessels_list(
    ctx: typer.Context,
    commune: Annotated[str | None, typer.Option(help="Only this commune's vessels.")] = None,
    phones: Annotated[bool, typer.Option("--phones", help="Show the phone numbers.")] = False,
) -> None:
    """The registry: registration, name, commune, home port, people tied to each vessel."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> list[vessels.Listed]:
        return await vessels.listing(session, commune)

    rows = run(settings, work)
    if not rows:
        typer.echo("no vessels: haidang vessels import <registry.csv>")
    for row in rows:
        phone = vessels.display_phone(row.vessel.phone) if phones else ""
        typer.echo(
            f"{row.vessel.registration:<14} {row.vessel.name:<24} {row.commune.code} "
            f"{row.commune.name:<24} {row.home_port:<20} {row.people} people {phone}".rstrip()
        )


@vessels_app.command("report")
def vessels_report(
    ctx: typer.Context,
    bulletin_id: Annotated[int, typer.Argument(metavar="ID", help="The bulletin's id.")],
    csv_path: Annotated[
        Path | None, typer.Option("--csv", metavar="PATH", help="Write the vessels as CSV.")
    ] = None,
    not_reached: Annotated[
        bool, typer.Option("--not-reached", help="Only the vessels nobody reached yet.")
    ] = False,
) -> None:
    """A bulletin's vessels: totals, and with --csv each vessel with its phone and status
    (UTF-8 with BOM: opens in Excel with diacritics)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> vessels.VesselReport:
        return await vessels.report(session, bulletin_id)

    report = run(settings, work)
    status = report.by_status
    typer.echo(
        f"bulletin {bulletin_id}: {report.vessels} vessels, "
        f"{report.reached_or_informed} reached or informed "
        f"({status[vessels.VesselStatus.acknowledged]} acknowledged, "
        f"{status[vessels.VesselStatus.reached]} reached, "
        f"{status[vessels.VesselStatus.informed]} informed by hand), "
        f"{status[vessels.VesselStatus.not_reached]} not reached"
    )
    typer.echo(
        f"people aboard: {report.people}, reached {report.people_reached}, "
        f"acknowledged {report.people_acknowledged}"
    )
    if csv_path is None:
        return
    rows = [
        row
        for row in report.rows
        if not not_reached or row.status is vessels.VesselStatus.not_reached
    ]
    try:
        write_atomically(csv_path, vessels.vessel_csv(rows, settings.tz))
    except OSError as exc:
        raise fail(f"cannot write {csv_path}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {len(rows)} vessels to {csv_path}")
