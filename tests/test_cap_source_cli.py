"""`haidang cap-source add/list/poll/disable/enable/remove` against a feed on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from db.engine import make_engine, make_sessionmaker
from db.models import AuditEntry, Bulletin, BulletinState, CapImport
from haidang.cli import app
from tests.fakes.cap_feed import cap_alert, cap_feed_server
from tests.test_cli import upgraded_and_seeded


def test_cap_sources_by_cli(database_url: str, tmp_path: Path) -> None:
    url = upgraded_and_seeded(database_url)
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert "no CAP source" in runner.invoke(app, ["cap-source", "list"], env=env).output
    bad = runner.invoke(app, ["cap-source", "add", "x", "ftp://example.vn/cap.xml"], env=env)
    assert bad.exit_code == 1 and "http(s)" in bad.output
    with cap_feed_server() as feeds:
        feeds.put("/a.xml", cap_alert("A", infos=[{"area": "Cát Hải, Hải Phòng"}]))
        feed = feeds.feed("/feed.atom", ["/a.xml"]) + "?key=secret-key"
        feeds.files["/feed.atom?key=secret-key"] = feeds.files["/feed.atom"]
        added = runner.invoke(
            app, ["cap-source", "add", "nchmf", feed, "--interval", "60", "--default-area", "p31"],
            env=env,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        assert "nchmf: added" in added.output and "secret-key" not in added.output
        listing = runner.invoke(app, ["cap-source", "list"], env=env)
        assert "nchmf [on] every 60s" in listing.output and "default=p31" in listing.output
        assert "secret-key" not in listing.output
        polled = runner.invoke(app, ["cap-source", "poll", "nchmf"], env=env)
        assert polled.exit_code == 0, polled.output
        assert "A: drafted (bulletin 1)" in polled.output
        again = runner.invoke(app, ["cap-source", "poll", "nchmf"], env=env)
        assert "not modified" in again.output
    off = runner.invoke(app, ["cap-source", "disable", "nchmf"], env=env)
    assert "nchmf: off" in off.output
    assert "[off]" in runner.invoke(app, ["cap-source", "list"], env=env).output
    assert "nchmf: on" in runner.invoke(app, ["cap-source", "enable", "1"], env=env).output
    removed = runner.invoke(app, ["cap-source", "remove", "nchmf"], env=env)
    assert removed.exit_code == 0 and "nchmf: removed" in removed.output
    missing = runner.invoke(app, ["cap-source", "remove", "nchmf"], env=env)
    assert missing.exit_code == 1 and "no CAP source" in missing.output

    async def check() -> None:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            actions = [
                e.action for e in await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            ]
            imported = (await session.scalars(select(CapImport))).one()
            draft = await session.get_one(Bulletin, imported.bulletin_id)
        await engine.dispose()
        assert actions == [
            "cap_source.add", "bulletin.import", "cap_source.disable", "cap_source.enable",
            "cap_source.remove",
        ]  # fmt: skip
        assert imported.source_id is None and draft.state is BulletinState.draft

    asyncio.run(check())
