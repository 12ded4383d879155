"""Several Telegram bots in one service: each answers and warns its own people, a bot
registered, disabled or changed in the table starts, stops or restarts while the service
runs, and each bot has its own webhook path and secret."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broadcasts import bots, leases
from broadcasts.bots import TokenBox
from broadcasts.sender import sender_lease
from db.models import ENV_PLATFORMS, Bot, ChatAddress, Delivery, DeliveryState, Platform
from haidang.runtime import Bots
from haidang.settings import DEV_SECRET_KEY
from tests.bot.harness import running_service, until, until_async, wait_text
from tests.broadcasts.engine import add_people, warn_now, warnings_received
from tests.conftest import Database
from tests.fakes.router import TokenRouter
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

SECOND = "8123456789:AAE-second-bot-token-0123456789"
SECOND_ZALO = "2459232241454765289:HaiDangSecondZaloAccessToken"
SECOND_NAME = "quang-ngai"
SECOND_LABEL = f"telegram:{SECOND_NAME}"
ASKED = "Bà con đồng ý chứ?"


async def _register_second(
    database: Database, platform: Platform = Platform.telegram, token: str = SECOND
) -> int:
    async with database.sessions.begin() as session:
        bot = await bots.add(
            session, TokenBox(DEV_SECRET_KEY), platform=platform, name=SECOND_NAME, token=token,
        )  # fmt: skip
        bot.quiet_start = bot.quiet_end = None
        return bot.id


def _fakes(platform: Platform) -> tuple[Any, Any, str]:
    """The first bot's fake, the second's (Telegram's or Zalo's), and the second's token."""
    if platform is Platform.telegram:
        return FakeTelegramAPI(), FakeTelegramAPI(token=SECOND), SECOND
    return FakeZaloAPI(), FakeZaloAPI(token=SECOND_ZALO), SECOND_ZALO


async def _equal(found: Awaitable[dict[int, int]], expected: dict[int, int]) -> bool:
    return await found == expected


def _chat(platform: Platform, chat: str) -> int | str:
    """A chat id as the platform's fake takes it (Telegram's are numbers)."""
    return int(chat) if platform is Platform.telegram else chat


def _settings(platform: Platform, token: str, router: TokenRouter) -> dict[str, Any]:
    return {f"{platform.value}_bot_token": token, f"{platform.value}_api_base_url": router.base_url}


@pytest.mark.parametrize("platform", ENV_PLATFORMS)
async def test_each_bot_answers_and_warns_its_own_people(
    seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: Platform
) -> None:
    monkeypatch.setattr(Bots, "REFRESH_S", 0.5)
    label = f"{platform.value}:{SECOND_NAME}"
    first_api, second_api, token = _fakes(platform)
    second_id = await _register_second(seeded, platform, token)
    first_people = [str(3000 + n) for n in range(25)]
    second_people = [str(4000 + n) for n in range(35)]
    await add_people(seeded, platform, first_people)
    await add_people(seeded, platform, second_people, bot_name=SECOND_NAME)
    for api, chats in (
        (first_api, [*first_people, "1001"]),
        (second_api, [*second_people, "2001", "2002"]),
    ):
        for chat in chats:
            api.register_chat(_chat(platform, chat))
    async with (
        first_api as first,
        second_api as second,
        TokenRouter({first.token: first.base_url, token: second.base_url}) as router,
        running_service(seeded, tmp_path, **_settings(platform, first.token, router)) as service,
    ):  # fmt: skip
        statuses = service.statuses()
        assert statuses[platform.value].active and statuses[label].active, statuses

        # A person belongs to the bot they wrote to: each bot answers its own chats.
        first.user_sends(_chat(platform, "1001"), "/start")
        second.user_sends(_chat(platform, "2001"), "/start")
        await wait_text(first, _chat(platform, "1001"), ASKED)
        await wait_text(second, _chat(platform, "2001"), ASKED)
        async with seeded.sessions() as session:
            bot_of = dict(
                (await session.execute(select(ChatAddress.chat_id, ChatAddress.bot_id))).all()
            )
        assert bot_of["2001"] == second_id and bot_of["1001"] != second_id

        # One warning: each bot sends it to its own people, through its own API.
        await warn_now(seeded)
        await until(lambda: set(warnings_received(first)) == set(first_people), 30)
        await until(lambda: set(warnings_received(second)) == set(second_people), 30)
        expected = {bot_of["1001"]: len(first_people), second_id: len(second_people)}

        async def shares() -> dict[int, int]:
            async with seeded.sessions() as session:
                rows = await session.execute(
                    select(Delivery.bot_id, func.count())
                    .where(Delivery.state == DeliveryState.sent)
                    .group_by(Delivery.bot_id)
                )
            return {int(bot): int(count) for bot, count in rows.all()}

        # Outcomes are written within a quarter second of the send.
        await until_async(lambda: _equal(shares(), expected), 10)
        assert set(warnings_received(first).values()) == {1}
        assert set(warnings_received(second).values()) == {1}

        # Another rate on the dashboard: the bot paces at it at once and its sender
        # restarts with it; the front end goes on (and keeps answering).
        running = service.bots.part(label)
        sender = next(s for s in service.senders.senders if s.bot_id == second_id)
        async with seeded.sessions.begin() as session:
            (await session.get_one(Bot, second_id)).rate_per_second = 12.0
        await until(lambda: service.outboxes[second_id].pacer.rate == 12.0, 10)
        await until(lambda: sender not in service.senders.senders, 10)
        assert service.bots.part(label) is running
        await until(lambda: any(s.bot_id == second_id for s in service.senders.senders), 10)
        second.user_sends(_chat(platform, "2002"), "/start")
        await wait_text(second, _chat(platform, "2002"), ASKED)

        # Disabled on the dashboard: the bot stops here and gives its lease back.
        async with seeded.sessions.begin() as session:
            (await session.get_one(Bot, second_id)).enabled = False
        await until(lambda: service.bots.part(label) is None, 10)
        assert service.statuses()[label].detail == "disabled by an administrator"

        async def lease_free() -> bool:
            async with seeded.sessions() as session:
                return await leases.current(session, sender_lease(second_id)) is None

        await until_async(lease_free, 10)

        # Enabled again: it runs again, at the rate set.
        async with seeded.sessions.begin() as session:
            (await session.get_one(Bot, second_id)).enabled = True
        await until(lambda: (p := service.bots.part(label)) is not None and p.status().active, 15)
        assert service.outboxes[second_id].pacer.rate == 12.0


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
