"""`haidang inbox reply`: the answer is stored, audited and reaches the person's chat."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from broadcasts import inbox, officials
from db import schema
from db.engine import make_engine, make_sessionmaker
from db.models import AuditEntry, InboxKind, InboxMessage, InboxStatus, OfficialRole, Platform
from db.seed import seed_all
from haidang.cli import app
from haidang.settings import normalise_database_url
from tests.bot.harness import running_service, until
from tests.broadcasts.engine import NOW, add_people
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI


def _prepare(url: str) -> int:
    """A person in Cát Hải who wrote to the inbox, and two officials; the message id."""

    async def build() -> int:
        engine = make_engine(url)
        database = Database("cli", url, engine, make_sessionmaker(engine))
        async with database.sessions.begin() as session:
            await seed_all(session)
        await add_people(database, Platform.telegram, ["4242"])
        async with database.sessions.begin() as session:
            await officials.create(
                session, username="catba", role=OfficialRole.commune_editor,
                password="x" * 12, area_code="11914",
            )  # fmt: skip
            await officials.create(
                session, username="lyson", role=OfficialRole.commune_editor,
                password="x" * 12, area_code="21548",
            )  # fmt: skip
            from db.models import Area, ChatAddress

            address = await session.scalar(select(ChatAddress))
            area = await session.scalar(select(Area).where(Area.code == "11914"))
            assert address is not None and area is not None
            message = await inbox.save(
                session, now=NOW, subscriber_id=address.subscriber_id,
                chat_address_id=address.id, area_id=area.id, kind=InboxKind.text,
                text="Phao số 3 ở cửa biển bị trôi",
            )  # fmt: skip
            message_id = message.id
        await engine.dispose()
        return message_id

    schema.upgrade(url)
    return asyncio.run(build())


def test_reply_reaches_the_chat_and_is_audited(database_url: str, tmp_path: Path) -> None:
    url = normalise_database_url(database_url)
    message_id = _prepare(url)
    with FakeTelegramAPI().running_in_thread() as api:
        env = {
            "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path),
            "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url,
        }  # fmt: skip
        runner = CliRunner()
        refused = runner.invoke(
            app, ["inbox", "reply", str(message_id), "Đã nhận", "--by", "lyson"], env=env
        )
        assert refused.exit_code == 1
        assert api.sent == []
        result = runner.invoke(
            app,
            ["inbox", "reply", str(message_id), "Xã đã cử người ra thay phao.", "--by", "catba"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert f"replied to message {message_id} on telegram" in result.output
        sent = api.wait_sent_blocking(1, chat_id=4242)
        assert sent[0].text == (
            "📩 Cán bộ Đặc khu Cát Hải trả lời bà con:\nXã đã cử người ra thay phao."
        )
        listing = runner.invoke(app, ["inbox", "list", "--area", "11914"], env=env)
        assert "[answered] Đặc khu Cát Hải: Phao số 3" in listing.output

    async def check() -> None:
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            message = await session.get_one(InboxMessage, message_id)
            assert message.status is InboxStatus.answered
            assert message.reply_text == "Xã đã cử người ra thay phao."
            actions = (await session.scalars(select(AuditEntry.action))).all()
            assert "inbox.reply" in actions
        await engine.dispose()

    asyncio.run(check())


def test_reply_without_a_token_is_stored_but_says_so(database_url: str, tmp_path: Path) -> None:
    message_id = _prepare(normalise_database_url(database_url))
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path), "TELEGRAM_BOT_TOKEN": ""}
    result = CliRunner().invoke(
        app, ["inbox", "reply", str(message_id), "Cảm ơn bà con", "--by", "catba"], env=env
    )
    assert result.exit_code == 1
    if "TELEGRAM_BOT_TOKEN is not set" not in result.output:
        pytest.fail(result.output)


async def test_with_the_bot_running_the_reply_joins_its_queue(
    database_url: str, tmp_path: Path
) -> None:
    """The CLI does not send past the running bot's budget: it stores the answer, and the
    service sends it through the bot's outbox."""
    url = normalise_database_url(database_url)
    message_id = await asyncio.to_thread(_prepare, url)
    engine = make_engine(url)
    database = Database("cli", url, engine, make_sessionmaker(engine))
    async with (
        FakeTelegramAPI() as api,
        running_service(
            database, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ),
    ):
        await until(lambda: api.calls_to("getUpdates"), 10)
        env = {
            "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path / "cli"),
            "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_API_BASE_URL": api.base_url,
        }  # fmt: skip
        args = ["inbox", "reply", str(message_id), "Xã đã nhận tin báo.", "--by", "catba"]
        result = await asyncio.to_thread(CliRunner().invoke, app, args, env=env)
        assert result.exit_code == 0, result.output
        assert "queued for the running telegram bot" in result.output
        sent = await api.wait_sent(1, chat_id=4242, timeout=10)
        assert sent[0].text is not None and "Xã đã nhận tin báo." in sent[0].text
    await engine.dispose()
