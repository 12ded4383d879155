"""`haidang bots`, run as a real process: tokens go in on stdin and never come out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from broadcasts.bots import TokenBox
from broadcasts.subscribers import ensure_bot
from db.engine import make_engine, make_sessionmaker
from db.models import AuditEntry, Bot, Platform
from haidang.settings import normalise_database_url

SECRET = "bots-cli-test-secret-" + "q" * 24
ENV_TOKEN = "5550000001:AAHenvironmentTokenOfTheFirstBot"
TOKEN = "5550000002:AAHtheSecretOfTheQuangNgaiBot_x"
NEW_TOKEN = "5550000002:AAHaRegeneratedSecretForTheBot-y"
SECRETS = ("AAHenvironmentToken", "AAHtheSecretOf", "AAHaRegenerated")


def haidang(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haidang", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "ZALO_"))}
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "var"), LOG_LEVEL="WARNING",
        SECRET_KEY=SECRET, TELEGRAM_BOT_TOKEN=ENV_TOKEN,
    )  # fmt: skip
    upgraded = haidang("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    return env


def _no_secret(*results: subprocess.CompletedProcess[str]) -> None:
    for result in results:
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr, result.args


async def _rows(url: str) -> tuple[list[Bot], list[AuditEntry]]:
    engine = make_engine(normalise_database_url(url))
    try:
        async with make_sessionmaker(engine)() as session:
            found = list((await session.scalars(select(Bot).order_by(Bot.id))).all())
            entries = list(
                (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
            )
            return found, entries
    finally:
        await engine.dispose()


async def _first_bot(url: str) -> None:
    """The first Telegram bot's row, as the service creates it when it starts."""
    engine = make_engine(normalise_database_url(url))
    try:
        async with make_sessionmaker(engine).begin() as session:
            bot = await ensure_bot(session, Platform.telegram)
            bot.username = "haidang_bot"
    finally:
        await engine.dispose()


def test_add_set_and_list_bots(cli_env: dict[str, str], database_url: str) -> None:
    asyncio.run(_first_bot(database_url))
    no_stdin = haidang("bots", "add", "telegram", "quang-ngai", env=cli_env)
    assert no_stdin.returncode == 1 and "--token-stdin" in no_stdin.stderr

    added = haidang(
        "bots", "add", "telegram", "quang-ngai", "--token-stdin", "--rate", "12",
        "--province", "p51", env=cli_env, stdin=TOKEN + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added telegram:quang-ngai" in added.stdout

    # Refusals: exit 1 with the English explanation, and nothing stored.
    refusals = {
        ("add", "telegram", "again", "--token-stdin"): (ENV_TOKEN, "already registered"),
        ("add", "telegram", "twice", "--token-stdin"): (NEW_TOKEN, "already registered"),
        ("add", "telegram", "Bad Name", "--token-stdin"): ("5550000003:AAHxxxxxxxxxxxxxxxxx",
                                                            "lower-case letters"),
        ("add", "telegram", "hue", "--token-stdin"): ("not-a-token", "looks like 123456789"),
        ("add", "telegram", "hp", "--token-stdin", "--province", "p51"): (
            "5550000004:AAHyyyyyyyyyyyyyyyyyy", "already serves that province"),
        ("add", "zalo", "bad-link", "--token-stdin", "--link", "http://zalo.me/s/1"): (
            "5550000005:AAHzzzzzzzzzzzzzzzzzz", "https://"),
        ("set", "telegram", "default", "--token-stdin"): (NEW_TOKEN, "TELEGRAM_BOT_TOKEN"),
        ("set", "telegram", "nobody", "--rate", "3"): (None, "no such bot"),
        ("set", "telegram", "quang-ngai", "--rate", "5000"): (None, "messages per second"),
        ("set", "telegram", "quang-ngai", "--province", "11914"): (None, "not a province"),
    }  # fmt: skip
    results = [added, no_stdin]
    for args, (stdin, message) in refusals.items():
        result = haidang("bots", *args, env=cli_env, stdin=stdin)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        results.append(result)

    changed = haidang(
        "bots", "set", "telegram", "quang-ngai", "--rate", "7.5", "--disable",
        "--link", "https://t.me/quangngai_bot", "--token-stdin", env=cli_env, stdin=NEW_TOKEN,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert "telegram:quang-ngai: settings and token saved" in changed.stdout
    unchanged = haidang("bots", "set", "telegram", "quang-ngai", env=cli_env)
    assert "nothing changed" in unchanged.stdout

    listed = haidang("bots", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    first, second = listed.stdout.splitlines()
    assert first.split() == [
        "telegram", "default", "@haidang_bot", "any", "province", "30/s", "enabled",
        "token:", "env", "TELEGRAM_BOT_TOKEN", "(set)",
    ]  # fmt: skip
    assert "p51 Quảng Ngãi" in second and "7.5/s" in second and "disabled" in second
    assert second.endswith("token: stored")
    unset = haidang("bots", "list", env={**cli_env, "TELEGRAM_BOT_TOKEN": ""})
    assert "env TELEGRAM_BOT_TOKEN (not set)" in unset.stdout
    moved = haidang("bots", "set", "telegram", "quang-ngai", "--no-province", "--enable",
                    env=cli_env)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    _no_secret(*results, changed, unchanged, listed, unset, moved)

    bots, entries = asyncio.run(_rows(database_url))
    assert [b.name for b in bots] == ["default", "quang-ngai"]
    stored = bots[1]
    assert stored.token_sealed is not None
    assert TokenBox(SECRET).open(stored.token_sealed) == NEW_TOKEN
    assert (stored.rate_per_second, stored.enabled, stored.area_id) == (7.5, True, None)
    assert stored.link == "https://t.me/quangngai_bot"
    for bot in bots:  # no column holds a token in clear
        for column in Bot.__table__.columns:
            value = str(getattr(bot, column.key))
            assert not any(secret in value for secret in SECRETS), column.key
    actions = [(e.action, e.via, e.official_id, e.object_type) for e in entries]
    bot_actions = [a for a in actions if a[0].startswith("bot.")]
    assert bot_actions == [
        ("bot.create", "cli", None, "bot"),
        ("bot.update", "cli", None, "bot"),
        ("bot.token", "cli", None, "bot"),
        ("bot.update", "cli", None, "bot"),
    ]
    create = next(e for e in entries if e.action == "bot.create")
    assert create.details["after"] == {
        "rate": 12.0, "enabled": True, "link": None, "province": "p51",
    } and create.details["name"] == "quang-ngai"  # fmt: skip
    update = next(e for e in entries if e.action == "bot.update")
    assert update.details["before"]["rate"] == 12.0
    assert update.details["after"]["enabled"] is False
    for entry in entries:
        assert not any(secret in repr(entry.details) for secret in SECRETS), entry.action
