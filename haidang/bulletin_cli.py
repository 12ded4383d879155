"""`haidang bulletin`: write, approve, schedule, cancel and report bulletins from scripts."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import bulletins, readout, reports, schedules, zns
from db.models import DeliveryState, Platform, SubscriberRole
from haidang.cli_support import active_official as _official
from haidang.cli_support import fail as _fail
from haidang.cli_support import now as _now
from haidang.cli_support import run as run_committed
from haidang.media import MediaError, store_photo
from haidang.settings import Settings
from haidang.stores import audio_store

bulletin_app = typer.Typer(
    help="Bulletins: write, approve, schedule, cancel and follow delivery (for scripts).",
    no_args_is_help=True,
)

T = TypeVar("T")

IdArgument = Annotated[int, typer.Argument(metavar="ID", help="The bulletin's id.")]
ByOption = Annotated[
    str, typer.Option("--by", metavar="USERNAME", help="The official acting (must be active).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NEXT_RUNS_SHOWN = 3


def _run(ctx: typer.Context, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings: Settings = ctx.obj
    return run_committed(settings, work)


def _parse_time(text: str, settings: Settings, option: str) -> dt.datetime:
    """An ISO date-time; without a zone it is local time (settings.tz)."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise _fail(
            f"{option} is not an ISO date-time: {text!r} "
            "(e.g. 2026-11-26T06:00 for local time, or 2026-11-26T06:00+07:00)"
        ) from None
    return value.replace(tzinfo=settings.tz) if value.tzinfo is None else value


def _local(moment: dt.datetime, settings: Settings) -> str:
    return moment.astimezone(settings.tz).isoformat(timespec="minutes")


@bulletin_app.command("create")
def create(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="The title (at most 200 characters).")],
    body: Annotated[str, typer.Option(help='The text; "-" reads it from standard input.')],
    area: Annotated[
        list[str],
        typer.Option(
            "--area", metavar="CODE", help="Audience: p<province> or a commune code; repeatable."
        ),
    ],
    by: ByOption,
    topic: Annotated[str | None, typer.Option(metavar="SLUG", help="A topic slug.")] = None,
    role: Annotated[
        list[SubscriberRole] | None, typer.Option(help="Only these subscriber roles; repeatable.")
    ] = None,
    platform: Annotated[
        list[Platform] | None, typer.Option(help="Only these platforms; repeatable.")
    ] = None,
    urgent: Annotated[
        bool, typer.Option("--urgent", help="Khẩn: goes first, asks for Đã nhận.")
    ] = (False),
    expires: Annotated[
        str | None, typer.Option(metavar="ISO", help="Expiry; local time unless a zone is given.")
    ] = None,
    photo: Annotated[
        Path | None, typer.Option(metavar="PATH", help="A JPEG or PNG sent with the text.")
    ] = None,
    supersedes: Annotated[
        int | None,
        typer.Option(metavar="ID", help="An update of this approved warning (CAP Update)."),
    ] = None,
    fallback: Annotated[
        str | None,
        typer.Option(
            metavar="zns,sms",
            help="With --urgent: who has not acknowledged gets these next, in order, at "
            "their consented phone.",
        ),
    ] = None,
    fallback_minutes: Annotated[
        int, typer.Option(help="Minutes without an acknowledgement before each step (5-720).")
    ] = 30,
    zns_template: Annotated[
        str | None,
        typer.Option(metavar="ID", help="The ZNS template a zns step fills (ours or Zalo's id)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a bulletin and submit it for approval; prints its id."""
    settings: Settings = ctx.obj
    steps: tuple[Platform, ...] = ()
    if fallback:
        try:
            steps = tuple(Platform(step.strip()) for step in fallback.split(",") if step.strip())
        except ValueError:
            raise _fail("--fallback takes zns and/or sms, e.g. zns,sms", code=2) from None
    text = sys.stdin.read() if body == "-" else body
    expires_at = _parse_time(expires, settings, "--expires") if expires else None
    now = _now()
    photo_key = None
    if photo is not None:
        try:
            photo_key = store_photo(audio_store(settings), photo)
        except (MediaError, OSError) as exc:  # OSError: the store could not take it
            raise _fail(str(exc)) from None

    async def work(session: AsyncSession) -> tuple[int, str]:
        author = await _official(session, by)
        earlier = await bulletins.get(session, supersedes) if supersedes is not None else None
        chain = None
        if steps:
            template = await zns.get(session, zns_template) if zns_template else None
            chain = bulletins.FallbackChain(
                fallback_minutes, steps, template.id if template is not None else None
            )
        bulletin = await bulletins.create(
            session,
            author=author,
            title=title,
            body=text,
            area_codes=area,
            now=now,
            topic_slug=topic,
            roles=role or (),
            platforms=platform or (),
            urgent=urgent,
            expires_at=expires_at,
            photo_path=photo_key,
            supersedes=earlier,
            fallback=chain,
            submit=True,
            via="cli",
        )
        return bulletin.id, bulletin.state.value

    bulletin_id, state = _run(ctx, work)
    typer.echo(json.dumps({"id": bulletin_id, "state": state}) if as_json else str(bulletin_id))


@bulletin_app.command("approve")
def approve(ctx: typer.Context, bulletin_id: IdArgument, by: ByOption) -> None:
    """Approve someone else's submitted bulletin (four-eyes rule, within your scope)."""
    now = _now()

    async def work(session: AsyncSession) -> None:
        official = await _official(session, by)
        bulletin = await bulletins.get(session, bulletin_id)
        await bulletins.approve(session, bulletin, official, now, via="cli")

    _run(ctx, work)
    typer.echo(f"approved bulletin {bulletin_id}")


@bulletin_app.command("reject")
def reject(
    ctx: typer.Context,
    bulletin_id: IdArgument,
    by: ByOption,
    comment: Annotated[str, typer.Option(help="Why, for the author.")],
) -> None:
    """Send a submitted bulletin back to its author with a comment."""
    now = _now()

    async def work(session: AsyncSession) -> None:
        official = await _official(session, by)
        bulletin = await bulletins.get(session, bulletin_id)
        await bulletins.reject(session, bulletin, official, comment, now, via="cli")

    _run(ctx, work)
    typer.echo(f"rejected bulletin {bulletin_id}")


@bulletin_app.command("schedule")
def schedule(
    ctx: typer.Context,
    bulletin_id: IdArgument,
    by: ByOption,
    send_now: Annotated[bool, typer.Option("--now", help="Send as soon as possible.")] = False,
    at: Annotated[
        str | None, typer.Option(metavar="ISO", help="Send once at this time (local by default).")
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option(metavar="EXPR", help='Recurring, in local time, e.g. "0 6 * * *".'),
    ] = None,
    until: Annotated[
        str | None, typer.Option(metavar="ISO", help="With --cron: no firing after this time.")
    ] = None,
) -> None:
    """Schedule an approved bulletin: --now, --at a time, or --cron; prints when it fires."""
    settings: Settings = ctx.obj
    chosen = [
        name
        for name, given in (
            ("--now", send_now),
            ("--at", at is not None),
            ("--cron", cron is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        got = f" (got {' and '.join(chosen)})" if chosen else ""
        raise _fail(f"choose exactly one of --now, --at or --cron{got}")
    at_time = _parse_time(at, settings, "--at") if at is not None else None
    until_time = _parse_time(until, settings, "--until") if until is not None else None
    now = _now()

    async def work(session: AsyncSession) -> list[dt.datetime]:
        official = await _official(session, by)
        bulletin = await bulletins.get(session, bulletin_id)
        row = await schedules.schedule(
            session,
            bulletin,
            official,
            now=now,
            tz=settings.tz,
            at=at_time,
            cron=cron,
            until=until_time,
            via="cli",
        )
        if row.cron is not None:
            return schedules.next_fire_times(
                row.cron, settings.tz, now, NEXT_RUNS_SHOWN, until_time
            )
        return [row.next_fire_at or now]

    fire_times = _run(ctx, work)
    if cron is None:
        when = "now" if send_now else "at"
        typer.echo(f"scheduled bulletin {bulletin_id} {when} {_local(fire_times[0], settings)}")
        return
    typer.echo(f"scheduled bulletin {bulletin_id}: {cron!r} in {settings.timezone}; next runs:")
    for moment in fire_times:
        typer.echo(f"  {_local(moment, settings)}")
    if not fire_times:
        typer.echo("  (none before --until)")


@bulletin_app.command("cancel")
def cancel(ctx: typer.Context, bulletin_id: IdArgument, by: ByOption) -> None:
    """Stop a bulletin: schedules off, unsent deliveries cancelled; prints how many."""
    now = _now()

    async def work(session: AsyncSession) -> int:
        official = await _official(session, by)
        bulletin = await bulletins.get(session, bulletin_id)
        return await bulletins.cancel(session, bulletin, official, now, via="cli")

    cancelled = _run(ctx, work)
    typer.echo(f"cancelled bulletin {bulletin_id}: {cancelled} deliveries cancelled")


def _nonzero(counts: dict[str, int]) -> str:
    parts = [f"{counts[s.value]} {s.value}" for s in DeliveryState if counts.get(s.value)]
    return ", ".join(parts) or "none"


def _percent(rate: float | None) -> str:
    return "" if rate is None else f" ({rate * 100:.1f}%)"


def _run_json(run: reports.RunReport, settings: Settings) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "fire_at": run.fire_at.astimezone(settings.tz).isoformat(),
        "state": run.state.value,
        "total": run.total,
        "counts": run.counts,
        "acknowledgements": run.acknowledgements,
        "ack_rate": run.ack_rate,
        "failure_reasons": run.failure_reasons,
    }


def _bot_json(row: reports.BotRow) -> dict[str, Any]:
    return {
        "id": row.bot_id,
        "platform": row.platform.value if row.platform is not None else None,
        "name": row.name,
        "counts": row.counts,
        "sent": row.sent,
        "acknowledgements": row.acknowledgements,
        "ack_rate": row.ack_rate,
    }


@bulletin_app.command("status")
def status(ctx: typer.Context, bulletin_id: IdArgument, as_json: JsonOption = False) -> None:
    """State, deliveries by state, acknowledgements (rate for urgent ones) and runs."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await reports.bulletin_report(session, bulletin_id)

    report = _run(ctx, work)
    runs: list[reports.RunReport] = report["runs"]
    if as_json:
        payload = {
            key: report[key]
            for key in ("id", "title", "state", "priority", "counts", "failure_reasons")
        }
        payload.update(
            sent=report["sent"],
            acknowledgements=report["acknowledgements"],
            ack_rate=report["ack_rate"],
            runs=[_run_json(run, settings) for run in runs],
            bots=[_bot_json(row) for row in report["bots"]],
        )
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    typer.echo(f"bulletin {report['id']} ({report['priority']}): {report['title']}")
    typer.echo(f"state: {report['state']}")
    typer.echo(f"deliveries: {_nonzero(report['counts'])}")
    if report["failure_reasons"]:
        reasons = ", ".join(f"{k} {v}" for k, v in report["failure_reasons"].items())
        typer.echo(f"failure reasons: {reasons}")
    typer.echo(
        f"acknowledgements: {report['acknowledgements']} of {report['sent']} reached"
        + _percent(report["ack_rate"])
    )
    for run in runs:
        typer.echo(
            f"run {run.run_id} at {_local(run.fire_at, settings)} ({run.state.value}): "
            f"{_nonzero(run.counts)}; {run.acknowledgements} acknowledged" + _percent(run.ack_rate)
        )
    bot_rows: list[reports.BotRow] = report["bots"]
    for row in bot_rows:  # each bot's share (several bots per platform)
        acknowledged = (
            "" if row.acknowledgements is None
            else f"; {row.acknowledgements} acknowledged" + _percent(row.ack_rate)
        )  # fmt: skip
        platform = row.platform.value if row.platform is not None else "?"
        typer.echo(
            f"bot {platform}:{row.name}: {_nonzero(row.counts)}; {row.sent} reached{acknowledged}"
        )


@bulletin_app.command("readout")
def readout_command(
    ctx: typer.Context, bulletin_id: IdArgument, as_json: JsonOption = False
) -> None:
    """The radio read-out of an urgent bulletin: ≤ 160 plain characters for VMS terminals
    and SMS, and a text to read aloud in ≤ 60 s. Fails for a routine bulletin (none)."""
    settings: Settings = ctx.obj

    async def work(session: AsyncSession) -> readout.Readout | None:
        bulletin = await bulletins.get(session, bulletin_id)
        return await readout.for_bulletin(session, bulletin, settings.tz)

    relay = _run(ctx, work)
    if relay is None:
        raise _fail(f"bulletin {bulletin_id} is routine: only urgent bulletins have a read-out")
    if as_json:
        typer.echo(json.dumps(readout.as_json(bulletin_id, relay), ensure_ascii=False))
        return
    typer.echo(f"short ({relay.short_chars}/{readout.SHORT_LIMIT} characters):")
    typer.echo(relay.short)
    typer.echo(f"spoken (about {relay.spoken_seconds:.0f} s of {readout.SPOKEN_LIMIT:.0f}):")
    typer.echo(relay.spoken)


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp makes the file private; a report is for sharing, so honour the umask instead.
        umask = os.umask(0)
        os.umask(umask)
        Path(temporary).chmod(0o666 & ~umask)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@bulletin_app.command("report")
def report(
    ctx: typer.Context,
    bulletin_id: IdArgument,
    csv_path: Annotated[
        Path, typer.Option("--csv", metavar="PATH", help="Where to write the CSV.")
    ],
) -> None:
    """Write the per-commune report as CSV (UTF-8 with BOM: opens in Excel with diacritics)."""

    async def work(session: AsyncSession) -> list[reports.CommuneRow]:
        return await reports.commune_rows(session, bulletin_id)

    rows = _run(ctx, work)
    try:
        write_atomically(csv_path, reports.commune_csv(rows))
    except OSError as exc:
        raise _fail(f"cannot write {csv_path}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {len(rows)} areas to {csv_path}")
