"""Several Telegram bots in one service: each answers and warns its own people, a bot
registered, disabled or changed in the table starts, stops or restarts while the service
runs, and each bot has its own webhook path and secret."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from broadcasts import bots, leases, schedules
from broadcasts import bulletins as bulletin_rows
from broadcasts.bots import TokenBox
from broadcasts.sender import sender_lease
from db.models import Bot, ChatAddress, Delivery, DeliveryState, Official, Platform
from haidang.runtime import Bots
from haidang.settings import DEV_SECRET_KEY
from tests.bot.harness import running_service, until, until_async, wait_text
from tests.broadcasts.engine import URGENT_BODY, add_people, approved_bulletin, warnings_received
from tests.conftest import Database
from tests.fakes.router import TokenRouter
from tests.fakes.telegram_api import FakeTelegramAPI

SECOND = "8123456789:AAE-second-bot-token-0123456789"
SECOND_NAME = "quang-ngai"
SECOND_LABEL = f"telegram:{SECOND_NAME}"
ASKED = "Bà con đồng ý chứ?"


async def _register_second(database: Database) -> int:
    async with database.sessions.begin() as session:
        bot = await bots.add(
            session, TokenBox(DEV_SECRET_KEY), platform=Platform.telegram, name=SECOND_NAME,
            token=SECOND,
        )  # fmt: skip
        bot.quiet_start = bot.quiet_end = None
        return bot.id


async def _warn_now(database: Database) -> int:
    """An urgent bulletin for commune 11914, scheduled now (the service's scheduler fires it)."""
    bulletin_id = await approved_bulletin(database, body=URGENT_BODY, urgent=True)
    async with database.sessions.begin() as session:
        bulletin = await bulletin_rows.get(session, bulletin_id)
        editor = await session.scalar(select(Official).where(Official.username == "editor"))
        assert editor is not None
        await schedules.schedule(
            session, bulletin, editor, now=dt.datetime.now(dt.UTC),
            tz=ZoneInfo("Asia/Ho_Chi_Minh"),
        )  # fmt: skip
    return bulletin_id


async def test_each_bot_answers_and_warns_its_own_people(
    seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Bots, "REFRESH_S", 0.5)
    second_id = await _register_second(seeded)
    first_people = [str(3000 + n) for n in range(25)]
    second_people = [str(4000 + n) for n in range(35)]
    await add_people(seeded, Platform.telegram, first_people)
    await add_people(seeded, Platform.telegram, second_people, bot_name=SECOND_NAME)
    async with (
        FakeTelegramAPI() as first,
        FakeTelegramAPI(token=SECOND, bot_username="haidang_qng_bot") as second,
        TokenRouter({first.token: first.base_url, SECOND: second.base_url}) as router,
        running_service(
            seeded, tmp_path, telegram_bot_token=first.token,
            telegram_api_base_url=router.base_url,
        ) as service,
    ):  # fmt: skip
        statuses = service.statuses()
        assert statuses["telegram"].active and statuses[SECOND_LABEL].active, statuses

        # A person belongs to the bot they wrote to: each bot answers its own chats.
        first.user_sends(1001, "/start")
        second.user_sends(2001, "/start")
        await wait_text(first, 1001, ASKED)
        await wait_text(second, 2001, ASKED)
        async with seeded.sessions() as session:
            bot_of = dict(
                (await session.execute(select(ChatAddress.chat_id, ChatAddress.bot_id))).all()
            )
        assert bot_of["2001"] == second_id and bot_of["1001"] != second_id

        # One warning: each bot sends it to its own people, through its own API.
        await _warn_now(seeded)
        await until(lambda: set(warnings_received(first)) == set(first_people), 30)
        await until(lambda: set(warnings_received(second)) == set(second_people), 30)
        async with seeded.sessions() as session:
            shares = dict(
                (
                    await session.execute(
                        select(Delivery.bot_id, func.count())
                        .where(Delivery.state == DeliveryState.sent)
                        .group_by(Delivery.bot_id)
                    )
                ).all()
            )
        assert shares == {bot_of["1001"]: len(first_people), second_id: len(second_people)}
        assert set(warnings_received(first).values()) == {1}
        assert set(warnings_received(second).values()) == {1}

        # Disabled on the dashboard: the bot stops here and gives its lease back.
        async with seeded.sessions.begin() as session:
            (await session.get_one(Bot, second_id)).enabled = False
        await until(lambda: service.bots.part(SECOND_LABEL) is None, 10)
        assert service.statuses()[SECOND_LABEL].detail == "disabled by an administrator"

        async def lease_free() -> bool:
            async with seeded.sessions() as session:
                return await leases.current(session, sender_lease(second_id)) is None

        await until_async(lease_free, 10)

        # Enabled again with another rate: it runs again, with that rate.
        async with seeded.sessions.begin() as session:
            row = await session.get_one(Bot, second_id)
            row.enabled, row.rate_per_second = True, 12.0
        await until(
            lambda: (p := service.bots.part(SECOND_LABEL)) is not None and p.status().active, 15
        )
        assert service.outboxes[second_id].pacer.rate == 12.0
        second.user_sends(2002, "/start")
        await wait_text(second, 2002, ASKED)


async def test_a_bot_registered_while_running_starts_with_its_own_webhook(
    seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Bots, "REFRESH_S", 0.5)
    async with (
        FakeTelegramAPI() as first,
        FakeTelegramAPI(token=SECOND, bot_username="haidang_qng_bot") as second,
        TokenRouter({first.token: first.base_url, SECOND: second.base_url}) as router,
        running_service(
            seeded, tmp_path, webhook=True, telegram_bot_token=first.token,
            telegram_api_base_url=router.base_url,
        ) as service,
    ):  # fmt: skip
        assert SECOND_LABEL not in service.statuses()
        second_id = await _register_second(seeded)
        await until(lambda: second.webhook_url is not None, 15)
        public = str(service.settings.public_base_url).rstrip("/")
        assert second.webhook_url == f"{public}/webhooks/telegram/{second_id}"
        assert first.webhook_url == f"{public}/webhooks/telegram"
        # Its secret is its own (derived from SECRET_KEY and the bot), not the first bot's.
        key = DEV_SECRET_KEY.encode()
        expected = hmac.new(key, f"webhook:telegram:{second_id}".encode(), hashlib.sha256)
        secret = second.webhook_secret
        assert secret == expected.hexdigest()
        assert second.webhook_secret != first.webhook_secret

        second.user_sends(2001, "/start")
        await wait_text(second, 2001, ASKED)
        assert not [r for r in first.sent if str(r.chat_id) == "2001"]

        # The first bot's secret does not open the second bot's webhook.
        chat = {"id": 2009, "type": "private"}
        update = {"update_id": 99, "message": {"message_id": 1, "date": 0, "text": "/start",
                                               "chat": chat}}  # fmt: skip
        async with httpx.AsyncClient() as client:
            refused = await client.post(
                f"{public}/webhooks/telegram/{second_id}", content=json.dumps(update),
                headers={"Content-Type": "application/json",
                         "X-Telegram-Bot-Api-Secret-Token": "telegram-secret-123"},
            )  # fmt: skip
            unknown = await client.post(
                f"{public}/webhooks/telegram/{second_id + 1000}", content=json.dumps(update),
                headers={"Content-Type": "application/json",
                         "X-Telegram-Bot-Api-Secret-Token": secret},
            )  # fmt: skip
        assert refused.status_code in (401, 403)
        assert unknown.status_code == 503  # no such bot (yet): the platform would retry
