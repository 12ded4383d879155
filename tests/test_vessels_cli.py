"""`haidang vessels add|import|link|unlink|list|report`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from db.engine import make_engine, make_sessionmaker
from db.models import AuditEntry, Subscriber
from haidang.cli import app
from tests.test_cli import upgraded_and_seeded

REGISTRY = (
    "số đăng ký,tên tàu,mã xã,cảng cá,điện thoại\n"
    "HP-1001-TS,Hải Âu,11914,,0912 345 678\n"
    "hp 1002 ts,Bình Minh,11914,,\n"
)


def _person(url: str) -> int:
    async def add() -> int:
        engine = make_engine(url)
        async with make_sessionmaker(engine).begin() as session:
            person = Subscriber()
            session.add(person)
            await session.flush()
            person_id = person.id
        await engine.dispose()
        return person_id

    return asyncio.run(add())


def _audit(url: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        await engine.dispose()
        return [(row.action, str(row.details)) for row in rows]

    return asyncio.run(read())


def test_vessels_commands(database_url: str, tmp_path: Path) -> None:
    url = upgraded_and_seeded(database_url)
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert "no vessels" in runner.invoke(app, ["vessels", "list"], env=env).output

    bad = tmp_path / "bad.csv"
    bad.write_text(REGISTRY + "HP-1003-TS,Sao,99999,,\n", encoding="utf-8")
    refused = runner.invoke(app, ["vessels", "import", str(bad)], env=env)
    assert refused.exit_code == 1 and "line 4: unknown commune code" in refused.output

    good = tmp_path / "registry.csv"
    good.write_text("\ufeff" + REGISTRY, encoding="utf-8")
    imported = runner.invoke(app, ["vessels", "import", str(good)], env=env)
    assert imported.exit_code == 0, imported.output
    assert "2 added, 0 updated" in imported.output

    added = runner.invoke(
        app,
        ["vessels", "add", "qng 90123 ts", "--commune", "11311", "--name", "Tàu Ba",
         "--phone", "+84 987 654 321"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0 and "added QNg-90123-TS" in added.output
    wrong_phone = runner.invoke(
        app, ["vessels", "add", "HP-9999-TS", "--commune", "11914", "--phone", "12"], env=env
    )
    assert wrong_phone.exit_code == 1 and "not a Vietnamese" in wrong_phone.output

    person = _person(url)
    linked = runner.invoke(
        app, ["vessels", "link", "HP-1001-TS", str(person), "--relation", "captain"], env=env
    )
    assert linked.exit_code == 0 and "linked captain" in linked.output
    listing = runner.invoke(app, ["vessels", "list", "--commune", "11914"], env=env)
    assert "HP-1001-TS" in listing.output and "1 people" in listing.output
    assert "0912" not in listing.output
    with_phones = runner.invoke(app, ["vessels", "list", "--phones"], env=env)
    assert "0912 345 678" in with_phones.output and "0987 654 321" in with_phones.output
    unlinked = runner.invoke(app, ["vessels", "unlink", "HP-1001-TS", str(person)], env=env)
    assert "unlinked" in unlinked.output

    actions = _audit(url)
    assert [a for a, _ in actions] == [
        "vessel.import", "vessel.create", "vessel.link", "vessel.unlink",
    ]  # fmt: skip
    assert all("0912" not in details and "0987" not in details for _, details in actions)


def test_vessels_report_writes_the_not_reached_csv(database_url: str, tmp_path: Path) -> None:
    upgraded_and_seeded(database_url)
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY, encoding="utf-8")
    assert runner.invoke(app, ["vessels", "import", str(registry)], env=env).exit_code == 0
    editor = runner.invoke(
        app,
        ["officials", "add", "editor", "--role", "province_editor", "--area", "p31",
         "--password-stdin"],
        input="x" * 12, env=env,
    )  # fmt: skip
    assert editor.exit_code == 0, editor.output
    created = runner.invoke(
        app,
        ["bulletin", "create", "--title", "Bão số 15", "--body", "Bão gần bờ.", "--area", "p31",
         "--by", "editor", "--urgent"],
        env=env,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    bulletin_id = created.output.strip()  # a draft waiting for approval: counted all the same
    out = tmp_path / "tau.csv"
    result = runner.invoke(
        app, ["vessels", "report", bulletin_id, "--csv", str(out), "--not-reached"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "2 vessels, 0 reached or informed" in result.output
    assert "wrote 2 vessels" in result.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("\ufeffsố đăng ký")
    assert "HP-1001-TS,Hải Âu,11914" in text and "0912 345 678" in text
    assert "chưa liên lạc được" in text
