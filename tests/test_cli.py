"""The `haidang` CLI, run as a real process against a fresh database on each backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from db import schema
from db.engine import make_engine, make_sessionmaker
from db.seed import seed_all
from haidang.cli import app
from haidang.settings import normalise_database_url


def haidang(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haidang", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def upgraded_and_seeded(database_url: str) -> str:
    """The database as `haidang db upgrade` leaves it: at head, with the map and topics.
    Returns its URL with the async driver."""
    url = normalise_database_url(database_url)

    async def seed() -> None:
        engine = make_engine(url)
        async with make_sessionmaker(engine).begin() as session:
            await seed_all(session)
        await engine.dispose()

    schema.upgrade(url)
    asyncio.run(seed())
    return url


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "ZALO_"))}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "var"), LOG_LEVEL="WARNING")
    return env


def test_upgrade_search_stats_and_officials(cli_env: dict[str, str]) -> None:
    upgraded = haidang("db", "upgrade", env=cli_env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "added 34 provinces, 3321 communes, 6 topics" in upgraded.stdout

    cat_hai = haidang("areas", "search", "cat hai", env=cli_env)
    assert cat_hai.returncode == 0, cat_hai.stderr
    assert "11914  Đặc khu Cát Hải (Thành phố Hải Phòng)" in cat_hai.stdout

    binh_son = haidang("areas", "search", "binh son", env=cli_env)
    lines = binh_son.stdout.splitlines()
    for province in ("Ninh Bình", "Quảng Ngãi", "An Giang"):
        assert any(f"Xã Bình Sơn ({province})" in line for line in lines), binh_son.stdout

    stats = haidang("areas", "stats", env=cli_env)
    assert "province: 34" in stats.stdout and "commune: 3321" in stats.stdout

    again = haidang("db", "upgrade", env=cli_env)
    assert "added 0 provinces, 0 communes, 0 topics" in again.stdout

    added = haidang(
        "officials", "add", "lan", "--role", "commune_editor", "--area", "c11914",
        "--password-stdin", env=cli_env, stdin="một mật khẩu dài\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "created lan (commune_editor)" in added.stdout
    assert "mật khẩu" not in added.stdout + added.stderr

    out_of_scope = haidang(
        "officials", "add", "minh", "--role", "province_editor", "--area", "11914",
        "--password-stdin", env=cli_env, stdin="một mật khẩu dài\n",
    )  # fmt: skip
    assert out_of_scope.returncode == 1
    assert "scoped to a province" in out_of_scope.stderr

    village = haidang("areas", "add-village", "11914", "Thôn Liên Minh", env=cli_env)
    assert village.stdout.strip() == "11914.1  Thôn Liên Minh"
    topic = haidang("topics", "set", "nghe-ca", "Nghề cá", env=cli_env)
    assert topic.stdout.strip() == "added nghe-ca: Nghề cá"
    assert "nghe-ca  Nghề cá" in haidang("topics", "list", env=cli_env).stdout


def test_backup_writes_a_usable_copy(cli_env: dict[str, str], tmp_path: Path) -> None:
    haidang("db", "upgrade", env=cli_env)
    target = tmp_path / "backups" / "haidang.bak"
    result = haidang("db", "backup", str(target), env=cli_env)
    if result.returncode != 0 and "pg_dump is not installed" in result.stderr:
        pytest.skip("pg_dump is not installed here")
    assert result.returncode == 0, result.stderr
    assert target.stat().st_size > 0
    if cli_env["DATABASE_URL"].startswith("sqlite"):
        from tests.conftest import sqlite_count

        assert sqlite_count(target, "areas") == 34 + 3321
    else:
        listing = subprocess.run(
            ["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True
        )
        assert "TABLE DATA public areas" in listing.stdout


def test_a_bad_setting_stops_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "HTTP_PORT": "eighty", "DATA_DIR": str(tmp_path)}
    result = haidang("areas", "stats", env=env)
    assert result.returncode == 2
    assert "HTTP_PORT" in result.stderr


def _all_command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    commands = getattr(group, "commands", None)  # typer vendors click: duck-type the group
    if isinstance(commands, dict):
        for name, command in commands.items():
            paths += _all_command_paths(command, (*prefix, name))
    return paths


def test_every_command_has_help(tmp_path: Path) -> None:
    runner = CliRunner()
    paths = _all_command_paths(get_command(app))
    assert ("officials", "add") in paths and ("serve",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"DATA_DIR": str(tmp_path)})
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_audio_normalize_prints_the_spoken_form(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["audio", "normalize", "Bão số 3, giật cấp 10 lúc 20h30 ngày 05/8/2020"],
        env={"DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Bão số ba, giật cấp mười lúc hai mươi giờ ba mươi phút "
        "ngày năm tháng tám năm hai nghìn không trăm hai mươi"
    )


def test_password_must_come_from_stdin(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["officials", "add", "x", "--role", "admin"],
        env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit | typer.Exit)
