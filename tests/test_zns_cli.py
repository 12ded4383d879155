"""`haidang zns-template add/list/disable`, and `haidang bulletin create --fallback`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from broadcasts import officials
from db.engine import make_engine, make_sessionmaker
from db.models import AuditEntry, Bot, Bulletin, OfficialRole, Platform, ZnsTemplate
from haidang.cli import app
from tests.test_cli import upgraded_and_seeded


def _run(url: str, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
    async def go() -> None:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                await work(session)
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_zns_templates_by_cli(database_url: str, tmp_path: Path) -> None:
    url = upgraded_and_seeded(database_url)

    async def setup(session: AsyncSession) -> None:
        session.add(Bot(platform=Platform.zns, name="default"))
        await officials.create(
            session, username="lan", role=OfficialRole.commune_editor,
            password="một mật khẩu dài", area_code="11914",
        )  # fmt: skip

    _run(url, setup)
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert "no ZNS template" in runner.invoke(app, ["zns-template", "list"], env=env).output

    add = ["zns-template", "add", "367891", "--name", "Cảnh báo khẩn", "--price", "440"]
    params = ["--param", "tieu_de=title", "--param", "noi_dung=summary:200"]
    added = runner.invoke(app, [*add, *params], env=env)
    assert added.exit_code == 0, added.output
    assert "1 367891 Cảnh báo khẩn: added" in added.output
    again = runner.invoke(app, [*add, *params], env=env)
    assert again.exit_code == 1 and "already registered" in again.output
    unknown = runner.invoke(app, [*add[:2], "1", *add[3:], "--param", "x=weather"], env=env)
    assert unknown.exit_code == 1 and "unknown source 'weather'" in unknown.output
    malformed = runner.invoke(app, [*add[:2], "1", *add[3:], "--param", "title"], env=env)
    assert malformed.exit_code == 2 and "NAME=SOURCE" in malformed.output
    no_bot = runner.invoke(app, [*add, *params, "--bot", "other"], env=env)
    assert no_bot.exit_code == 1

    listing = runner.invoke(app, ["zns-template", "list"], env=env).output
    assert "367891 [on] bot=default 440 VND" in listing
    assert "tieu_de=title noi_dung=summary:200" in listing

    # An urgent bulletin with a chain through it, then one refused for lack of a template.
    create = [
        "bulletin", "create", "--title", "Bão số 15", "--body", "Tàu thuyền không ra khơi.",
        "--area", "11914", "--by", "lan", "--urgent", "--fallback", "zns,sms",
        "--fallback-minutes", "20",
    ]  # fmt: skip
    made = runner.invoke(app, [*create, "--zns-template", "367891"], env=env)
    assert made.exit_code == 0, made.output
    refused = runner.invoke(app, create, env=env)
    assert refused.exit_code == 1 and "needs a ZNS template" in refused.output
    bad = runner.invoke(app, [*create[:-4], "--fallback", "fax"], env=env)
    assert bad.exit_code == 2 and "--fallback takes" in bad.output

    disabled = runner.invoke(app, ["zns-template", "disable", "367891"], env=env)
    assert disabled.exit_code == 0 and "367891: off" in disabled.output
    assert "already off" in runner.invoke(app, ["zns-template", "disable", "1"], env=env).output
    assert "[off]" in runner.invoke(app, ["zns-template", "list"], env=env).output
    gone = runner.invoke(app, [*create, "--zns-template", "367891"], env=env)
    assert gone.exit_code == 1 and "no enabled ZNS template" in gone.output

    async def check(session: AsyncSession) -> None:
        template = (await session.scalars(select(ZnsTemplate))).one()
        assert template.params == {"tieu_de": "title", "noi_dung": "summary:200"}
        assert not template.enabled and template.created_by_id is None
        bulletin = (await session.scalars(select(Bulletin))).one()
        assert bulletin.fallback_platforms == ["zns", "sms"] and bulletin.fallback_minutes == 20
        assert bulletin.zns_template_id == template.id
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        zns_entries = [(e.action, e.via) for e in entries if e.object_type == "zns_template"]
        assert zns_entries == [("zns_template.add", "cli"), ("zns_template.disable", "cli")]

    _run(url, check)
