"""The `haidang` command line: serve, database, areas, topics and official accounts."""

from __future__ import annotations

import enum
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer
from typer.core import TyperGroup
from typer.main import get_group

from haidang.roles import Role as ProcessRole

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from typer._click import Command  # typer vendors click: the types its groups use
    from typer._click import Context as ClickContext

    from broadcasts import areas
    from db.models import AreaKind, Topic
    from haidang.settings import Settings

# Start-up time is the product here: a radio operator checking a text runs `haidang audio
# normalize` and waits for it. Importing the service (SQLAlchemy, FastAPI, the bots, SciPy for
# mastering) took about five seconds, so this module imports only typer at the top: each
# command imports what it needs when it runs, and the command groups that live in other modules
# are imported only when named (_LazyGroups).


class _LazyGroups(TyperGroup):
    """The root group: command groups from other modules are imported when first named.

    Help for the whole CLI still lists them (and imports them then); `haidang audio normalize`
    never does.
    """

    lazy: ClassVar[dict[str, str]] = {
        "bots": "haidang.bots_cli:bots_app",
        "bulletin": "haidang.bulletin_cli:bulletin_app",
        "cap-source": "haidang.cap_cli:cap_source_app",
        "docs": "haidang.docs_cli:docs_app",
        "inbox": "haidang.inbox_cli:inbox_app",
        "station": "haidang.station_cli:station_app",
        "vessels": "haidang.vessel_cli:vessels_app",
        "zns-template": "haidang.zns_cli:zns_template_app",
    }

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: ClickContext, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            group = get_group(getattr(importlib.import_module(module), attribute))
            group.name = cmd_name
            self.add_command(group, cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_LazyGroups,
    help="Hải Đăng: official bulletins to fishermen over Telegram, Zalo and loudspeakers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema and backups.", no_args_is_help=True)
areas_app = typer.Typer(
    help="The 2025 map: search, coastal flags, villages, ports.", no_args_is_help=True
)
topics_app = typer.Typer(help="Bulletin topics.", no_args_is_help=True)
officials_app = typer.Typer(help="Official accounts.", no_args_is_help=True)
audio_app = typer.Typer(help="Audio: spoken text, rendering.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(areas_app, name="areas")
app.add_typer(topics_app, name="topics")
app.add_typer(officials_app, name="officials")
app.add_typer(audio_app, name="audio")

# Commands that need no settings, database or logging: pure text work an operator runs often.
_STANDALONE = {"audio": frozenset({"normalize"})}


@app.callback()
def main(ctx: typer.Context) -> None:
    """Build Settings once (environment and .env) and hand them to every command."""
    if ctx.invoked_subcommand not in _STANDALONE:
        _load_settings(ctx)


@audio_app.callback()
def audio_main(ctx: typer.Context) -> None:
    """Audio: spoken text, rendering."""
    if ctx.invoked_subcommand not in _STANDALONE["audio"]:
        _load_settings(ctx)


def _load_settings(ctx: typer.Context) -> None:
    from haidang import logs
    from haidang.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc), code=2) from None
    logs.configure(settings.log_level, secrets=_secrets(settings))
    ctx.obj = settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    # The shared `error: …` exit, fetched on failure only: cli_support imports SQLAlchemy.
    from haidang.cli_support import fail

    return fail(message, code=code)


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.secret_key,
        settings.telegram_bot_token,
        settings.telegram_webhook_secret,
        settings.zalo_bot_token,
        settings.zalo_webhook_secret,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
    ]
    return [value.get_secret_value() for value in values if value is not None]


# --- serve ---------------------------------------------------------------------------------


@app.command()
def serve(
    ctx: typer.Context,
    role: Annotated[
        list[ProcessRole] | None,
        typer.Option(
            "--role",
            help="Run only this part (repeatable): web (dashboard, pages, webhooks), worker "
            "(bots, senders, audio), scheduler. None: all of them. Split roles need "
            "PostgreSQL.",
            case_sensitive=False,
        ),
    ] = None,
) -> None:
    """Run the service: by default everything in one process (web app, bots, scheduler,
    senders, audio work); with --role, only those parts (several processes, one PostgreSQL).

    Each part starts only where it is configured; the log says which parts are off and why.
    Stops cleanly on Ctrl+C (SIGINT) or SIGTERM.
    """
    import asyncio
    import logging

    from haidang.roles import RoleError, chosen_roles
    from haidang.runtime import StartupError
    from haidang.runtime import serve as run_service

    settings: Settings = ctx.obj
    try:
        roles = chosen_roles(role or (), sqlite=settings.is_sqlite)
    except RoleError as exc:
        raise _fail(str(exc), code=2) from None
    try:
        asyncio.run(run_service(settings, roles))
    except StartupError as exc:
        raise _fail(str(exc)) from None
    except Exception:
        # Through the logging handler, so the traceback passes the redaction: Python's own
        # report would print exception messages verbatim, and PTB's InvalidToken quotes the
        # token it was given.
        logging.getLogger("haidang.serve").critical("the service stopped", exc_info=True)
        raise typer.Exit(1) from None


# --- db ------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema, then seed the map and topics where missing."""
    from db import schema
    from db.seed import seed_all
    from haidang.cli_support import run as _run

    settings: Settings = ctx.obj
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schema.upgrade(settings.database_url)
    report = _run(settings, seed_all)
    typer.echo(
        f"schema at {schema.head_revision()}; added {report.provinces_added} provinces, "
        f"{report.communes_added} communes, {report.topics_added} topics"
    )


@db_app.command("backup")
def db_backup(
    ctx: typer.Context, path: Annotated[Path, typer.Argument(help="File to write.")]
) -> None:
    """Write a consistent backup (SQLite online backup; pg_dump custom format on PostgreSQL)."""
    from db.backup import BackupError, backup

    settings: Settings = ctx.obj
    try:
        written = backup(settings.database_url, path)
    except BackupError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"backup written to {written} ({written.stat().st_size} bytes)")


# --- areas ---------------------------------------------------------------------------------


@areas_app.command("search")
def areas_search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='A name or a code: "cat hai", "11914", "p31".')],
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Find provinces and communes; case and diacritics are ignored ("cat hai" = "Cát Hải")."""
    from broadcasts import areas
    from db.models import AreaKind
    from haidang.cli_support import run as _run

    async def work(session: AsyncSession) -> list[areas.AreaMatch]:
        kinds = (AreaKind.province, AreaKind.commune, AreaKind.village, AreaKind.port)
        return await areas.search(session, text, kinds=kinds, limit=limit)

    matches = _run(ctx.obj, work)
    if not matches:
        raise _fail(f"no area matches {text!r}")
    for match in matches:
        flag = "  [ven biển]" if match.area.coastal else ""
        typer.echo(f"{match.area.code:>9}  {match.label}{flag}")


@areas_app.command("stats")
def areas_stats(ctx: typer.Context) -> None:
    """Count the areas by kind (34 provinces and 3,321 communes after seeding)."""
    from broadcasts import areas
    from db.models import AreaKind
    from haidang.cli_support import run as _run

    counts = _run(ctx.obj, areas.count_by_kind)
    for kind in AreaKind:
        typer.echo(f"{kind.value:>9}: {counts.get(kind, 0)}")


@areas_app.command("coastal")
def areas_coastal(
    ctx: typer.Context,
    codes: Annotated[list[str], typer.Argument(help="Commune codes, or p<code> for a province.")],
    off: Annotated[bool, typer.Option("--off", help="Clear the flag instead.")] = False,
) -> None:
    """Flag communes as coastal (a province code flags all its communes)."""
    from broadcasts import areas, audit
    from haidang.cli_support import now as _now
    from haidang.cli_support import run as _run

    async def work(session: AsyncSession) -> list[str]:
        changed = await areas.set_coastal(session, codes, coastal=not off)
        await audit.record(
            session,
            now=_now(),
            official=None,
            via="cli",
            action="area.coastal_off" if off else "area.coastal_on",
            object_type="area",
            object_id=",".join(area.code for area in changed),
        )
        return [area.name for area in changed]

    names = _run(ctx.obj, work)
    typer.echo(("cleared: " if off else "flagged coastal: ") + ", ".join(names))


def _add_subarea(ctx: typer.Context, commune: str, name: str, kind: AreaKind) -> None:
    from broadcasts import areas, audit
    from haidang.cli_support import now as _now
    from haidang.cli_support import run as _run

    async def work(session: AsyncSession) -> str:
        area = await areas.add_subarea(session, commune, name, kind)
        await audit.record(
            session,
            now=_now(),
            official=None,
            via="cli",
            action=f"area.add_{kind.value}",
            object_type="area",
            object_id=area.code,
            details={"name": area.name},
        )
        return f"{area.code}  {area.name}"

    typer.echo(_run(ctx.obj, work))


@areas_app.command("add-village")
def areas_add_village(
    ctx: typer.Context,
    commune: Annotated[str, typer.Argument(help="The commune's code, e.g. 11914.")],
    name: Annotated[str, typer.Argument(help='e.g. "Thôn Liên Minh".')],
) -> None:
    """Add a village (thôn, xóm, ấp, bản) under a commune; prints its new code."""
    from db.models import AreaKind

    _add_subarea(ctx, commune, name, AreaKind.village)


@areas_app.command("add-port")
def areas_add_port(
    ctx: typer.Context,
    commune: Annotated[str, typer.Argument(help="The commune's code, e.g. 11914.")],
    name: Annotated[str, typer.Argument(help='e.g. "Cảng cá Cát Bà".')],
) -> None:
    """Add a fishing port or landing under a commune; prints its new code."""
    from db.models import AreaKind

    _add_subarea(ctx, commune, name, AreaKind.port)


# --- topics --------------------------------------------------------------------------------


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List topics in display order."""
    from sqlalchemy import select

    from db.models import Topic
    from haidang.cli_support import run as _run

    async def work(session: AsyncSession) -> list[Topic]:
        return list((await session.scalars(select(Topic).order_by(Topic.position))).all())

    for topic in _run(ctx.obj, work):
        state = "" if topic.active else "  (tắt)"
        typer.echo(f"{topic.slug:>12}  {topic.name}{state}")


@topics_app.command("set")
def topics_set(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument(help="Short id, e.g. thoi-tiet (new or existing).")],
    name: Annotated[str, typer.Argument(help="The name people see, in Vietnamese.")],
    description: Annotated[str | None, typer.Option(help="One line shown in menus.")] = None,
    active: Annotated[bool, typer.Option("--active/--inactive")] = True,
) -> None:
    """Add a topic or rename / describe / switch an existing one."""
    from sqlalchemy import select

    from broadcasts import audit
    from db.models import Topic
    from db.text import nfc
    from haidang.cli_support import now as _now
    from haidang.cli_support import run as _run

    async def work(session: AsyncSession) -> str:
        clean_slug = slug.strip().lower()
        if not clean_slug or not clean_slug.replace("-", "").isalnum() or not clean_slug.isascii():
            raise ValueError("slug must be ASCII letters, digits and '-'")
        topic = await session.scalar(select(Topic).where(Topic.slug == clean_slug))
        created = topic is None
        if topic is None:
            position = len((await session.scalars(select(Topic.id))).all())
            topic = Topic(slug=clean_slug, position=position)
            session.add(topic)
        topic.name = nfc(name.strip())
        if description is not None:
            topic.description = nfc(description.strip())
        topic.active = active
        await session.flush()
        await audit.record(
            session,
            now=_now(),
            official=None,
            via="cli",
            action="topic.create" if created else "topic.update",
            object_type="topic",
            object_id=topic.id,
            details={"slug": topic.slug, "name": topic.name, "active": active},
        )
        return ("added " if created else "updated ") + f"{topic.slug}: {topic.name}"

    typer.echo(_run(ctx.obj, work))


# --- officials -----------------------------------------------------------------------------


class Role(enum.StrEnum):
    """The choices of `--role`: db.models.OfficialRole, mirrored here.

    Typer reads an option's type when it builds the CLI, on every run, and importing the models
    means importing SQLAlchemy (half a second); tests/test_cli_startup.py checks the two agree.
    """

    admin = "admin"
    province_editor = "province_editor"
    commune_editor = "commune_editor"
    approver = "approver"
    radio_operator = "radio_operator"


@officials_app.command("add")
def officials_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Login name (lower-case).")],
    role: Annotated[Role, typer.Option(help="What the official may do.")],
    area: Annotated[
        str | None, typer.Option(help="Scope: p<province> or a commune code (not for admin).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create an official account; the password is hashed with argon2 and never echoed."""
    from broadcasts import audit, officials
    from db.models import OfficialRole
    from haidang.cli_support import now as _now
    from haidang.cli_support import run as _run

    if not password_stdin:
        raise _fail("pass the password on standard input with --password-stdin")
    password = sys.stdin.read().rstrip("\r\n")
    official_role = OfficialRole(role.value)

    async def work(session: AsyncSession) -> str:
        official = await officials.create(
            session,
            username=username,
            role=official_role,
            password=password,
            area_code=area,
            display_name=name,
        )
        await audit.record(
            session,
            now=_now(),
            official=None,
            via="cli",
            action="official.create",
            object_type="official",
            object_id=official.id,
            details={"username": official.username, "role": role.value, "area": area},
        )
        return f"created {official.username} ({role.value})"

    typer.echo(_run(ctx.obj, work))


# --- audio ---------------------------------------------------------------------------------


@audio_app.command("normalize")
def audio_normalize(
    text: Annotated[
        str | None,
        typer.Argument(
            help='Bulletin text as officials write it. "-", or nothing with input piped in: '
            "read standard input, one text a line."
        ),
    ] = None,
) -> None:
    """Print the spoken form of TEXT: numbers, dates, codes and abbreviations read out.

    With standard input, prints one spoken line for each line read, in order (an empty line
    stays empty), so a whole file is checked in one call. Needs no settings or database.
    """
    from audio.spoken import to_spoken

    if text is not None and text != "-":
        typer.echo(to_spoken(text))
        return
    if text is None and (sys.stdin is None or sys.stdin.isatty()):
        raise _fail("give TEXT, or pipe texts in on standard input (one a line)", code=2)
    # Written straight to the stream: 1,000 lines through typer.echo cost more than the work.
    sys.stdout.writelines(to_spoken(line.rstrip("\r\n")) + "\n" for line in sys.stdin)
    sys.stdout.flush()


@audio_app.command("render")
def audio_render(
    ctx: typer.Context,
    bulletin_id: Annotated[int, typer.Argument(metavar="BULLETIN_ID", help="The bulletin's id.")],
    force: Annotated[bool, typer.Option("--force", help="Render even when cached.")] = False,
) -> None:
    """Render a bulletin's MP3, AAC and Ogg/Opus files with TTS_ENGINE; print their paths.

    Prints "cache hit" first when the same words, voice and settings were rendered
    before (nothing is re-rendered then; the paths are those of the existing files).
    """
    from audio import studio, tts
    from haidang.cli_support import now as _now
    from haidang.cli_support import run_with_sessions
    from haidang.media import engine_name, production
    from haidang.stores import audio_store

    settings: Settings = ctx.obj
    store = audio_store(settings)
    started = _now()

    async def work(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, bool]]:
        assets = await studio.render_bulletin(
            sessions,
            bulletin_id,
            store=store,
            engine_name=engine_name(settings),
            tz=settings.tz,
            now=started,
            work_dir=settings.data_dir / "tmp",
            force=force,
            production=production(settings),
        )
        # A (re)written file's row carries this run's clock; a cached one an older time.
        return [(a.store_key, a.created_at == started) for a in assets]

    try:
        rendered = run_with_sessions(settings, work)
    except (tts.EngineError, OSError) as exc:
        raise _fail(f"cannot render bulletin {bulletin_id}: {exc}") from None
    if not any(written for _, written in rendered):
        typer.echo("cache hit: nothing re-rendered")
    for key, _ in rendered:
        typer.echo(str(store.path_for(key) or key))


@audio_app.command("programme")
def audio_programme(
    ctx: typer.Context,
    commune_code: Annotated[
        str, typer.Argument(metavar="COMMUNE_CODE", help="The commune, e.g. 11914.")
    ],
    date: Annotated[
        str | None, typer.Option("--date", metavar="YYYY-MM-DD", help="Default: today (local).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Build even when cached.")] = False,
) -> None:
    """Build a commune's daily programme (the day's bulletins in one MP3); print its path.

    Prints "cache hit" first when the day is unchanged since the last build, and says
    so (exit 0, no path) when no bulletin went out to the commune that day.
    """
    import datetime as dt

    from audio import programmes, tts
    from haidang.cli_support import now as _now
    from haidang.cli_support import run_with_sessions
    from haidang.media import engine_name, production
    from haidang.stores import audio_store

    settings: Settings = ctx.obj
    started = _now()
    try:
        day = dt.date.fromisoformat(date) if date else started.astimezone(settings.tz).date()
    except ValueError:
        raise _fail(f"not a date: {date!r} (use YYYY-MM-DD)") from None
    store = audio_store(settings)

    async def work(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, bool] | None:
        asset = await programmes.build_daily_programme(
            sessions,
            commune_code,
            day,
            store=store,
            engine_name=engine_name(settings),
            tz=settings.tz,
            now=started,
            work_dir=settings.data_dir / "tmp",
            force=force,
            production=production(settings),
        )
        return None if asset is None else (asset.store_key, asset.created_at == started)

    try:
        built = run_with_sessions(settings, work)
    except (tts.EngineError, OSError) as exc:
        raise _fail(f"cannot build the programme: {exc}") from None
    if built is None:
        typer.echo(f"no bulletins for {commune_code} on {day.isoformat()}: no programme")
        return
    key, written = built
    if not written:
        typer.echo("cache hit: nothing re-rendered")
    typer.echo(str(store.path_for(key) or key))


if __name__ == "__main__":
    app()
