"""The sender against the fake Bot APIs: outcomes, error mappings, pacing, splitting, cancel."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

import telegram
import zalo_bot
from sqlalchemy import select

from bot.telegram import TelegramChannel
from bot.telegram_http import AiohttpRequest
from bot.zalo import CheckedRequest, ZaloChannel
from broadcasts import bulletins, queue
from broadcasts.channels import Channel, Outbound
from broadcasts.sender import Sender, SenderConfig
from db.models import ChatAddress, Delivery, Official, Platform
from tests.broadcasts.engine import (
    add_people,
    approved_bulletin,
    bulletin_state,
    start_run,
    states,
    wait_settled,
)
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FAST = {"backoff_s": (0.05,), "idle_poll_s": 0.05}


@asynccontextmanager
async def telegram_channel(api: FakeTelegramAPI) -> AsyncIterator[TelegramChannel]:
    # The transport the service uses (bot.telegram.TelegramFrontEnd).
    request = AiohttpRequest(connection_pool_size=64)
    async with telegram.Bot(api.token, base_url=api.bot_base_url, request=request) as bot:
        yield TelegramChannel(bot)


@asynccontextmanager
async def running_sender(
    database: Database,
    channel: Channel,
    bot_id: int,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    **config: object,
) -> AsyncIterator[Sender]:
    # No quiet hours unless a test asks: on the wall clock, routine sends would otherwise
    # wait whenever the suite runs between 21:00 and 06:00 in Hải Phòng.
    options: dict[str, object] = {
        "rate_per_second": 200.0, "per_chat_interval": 0.05, "quiet_start": None,
        "quiet_end": None, **FAST,
    }  # fmt: skip
    options.update(config)
    sender = Sender(
        database.sessions, channel, SenderConfig(bot_id=bot_id, **options),  # type: ignore[arg-type]
        tz=TZ, holder="test", clock=clock or (lambda: dt.datetime.now(dt.UTC)),
    )  # fmt: skip
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


async def test_every_person_gets_the_bulletin_once(seeded: Database) -> None:
    chats = [str(1000 + n) for n in range(40)]
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, chats)
        run_id = await start_run(seeded, await approved_bulletin(seeded))
        async with running_sender(seeded, channel, bot_id):
            assert await wait_settled(seeded, run_id) == {"sent": 40}
        assert sorted(str(r.chat_id) for r in api.sent) == sorted(chats)
        assert all(r.text and r.text.startswith("📢 Thông báo gió mạnh") for r in api.sent)
        async with seeded.sessions() as session:
            ids = (await session.scalars(select(Delivery.platform_message_id))).all()
        assert all(ids)


async def test_each_platform_error_maps_to_its_outcome(seeded: Database) -> None:
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, ["1", "2", "3", "4", "5", "6"])
        api.fail_chat(1, status=403)  # blocked the bot
        api.fail_chat(2, status=400, description="Bad Request: chat not found")
        api.fail_chat(3, status=502, times=2)  # two gateway errors, then fine
        api.fail_chat(4, status=500)  # always failing
        api.fail_chat(5, status=400, description="Bad Request: can't parse entities")
        run_id = await start_run(seeded, await approved_bulletin(seeded))
        async with running_sender(seeded, channel, bot_id, max_attempts=3):
            counts = await wait_settled(seeded, run_id)
        assert counts == {"sent": 2, "blocked": 1, "failed": 3}
        async with seeded.sessions() as session:
            rows = (
                await session.execute(
                    select(ChatAddress.chat_id, Delivery.state, Delivery.reason, Delivery.attempts)
                    .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
                    .order_by(ChatAddress.chat_id)
                )
            ).all()
            by_chat = {
                chat: (state.value, reason, attempts) for chat, state, reason, attempts in rows
            }
            assert by_chat["1"][:2] == ("blocked", "blocked")
            assert by_chat["2"][:2] == ("failed", "chat not found")
            assert by_chat["3"] == ("sent", None, 2)  # two transient attempts, then sent
            assert by_chat["4"][0] == "failed"
            assert str(by_chat["4"][1]).startswith("retries exhausted")
            assert str(by_chat["5"][1]).startswith("bad request")
            active = dict(
                (await session.execute(select(ChatAddress.chat_id, ChatAddress.active))).all()
            )
            assert active["1"] is False and active["2"] is False and active["3"] is True


async def test_a_429_storm_pauses_the_bot_and_loses_nothing(seeded: Database) -> None:
    chats = [str(n) for n in range(1, 101)]
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, chats)
        run_id = await start_run(seeded, await approved_bulletin(seeded))
        api.fail_next(8, status=429, retry_after=1)  # a storm of 429s
        started = time.monotonic()
        # The dashboard's figure of what waits: the bot's backlog, counted up to a cap.
        async with seeded.sessions() as session:
            assert await queue.backlog(session, bot_id=bot_id, cap=1000) == 100
            assert await queue.backlog(session, bot_id=bot_id, cap=3) == 3
        async with running_sender(seeded, channel, bot_id) as sender:
            assert await wait_settled(seeded, run_id, timeout=30) == {"sent": 100}
        assert time.monotonic() - started >= 0.9  # the whole bot waited retry_after
        assert api.stats.responses_429 == 8
        assert sender.outbox.stats().rate_limited_last_hour == 8
        async with seeded.sessions() as session:
            attempts = (await session.scalars(select(Delivery.attempts))).all()
            assert await queue.backlog(session, bot_id=bot_id, cap=1000) == 0
        assert set(attempts) == {0}  # a 429 is not an attempt
        # Every person got it exactly once: none lost, none doubled.
        assert sorted(str(r.chat_id) for r in api.sent) == sorted(chats)


async def test_a_paid_broadcast_asks_for_the_paid_limit_on_every_send(seeded: Database) -> None:
    chats = [str(n) for n in range(1, 31)]
    async with FakeTelegramAPI(rate_limit_per_second=1000) as api, telegram_channel(api) as plain:
        bot_id = await add_people(seeded, Platform.telegram, chats)
        run_id = await start_run(seeded, await approved_bulletin(seeded))
        async with running_sender(
            seeded, plain.for_paid_broadcast(), bot_id, rate_per_second=1000.0
        ):
            assert await wait_settled(seeded, run_id) == {"sent": 30}
        assert [r.params.get("allow_paid_broadcast") for r in api.sent] == [True] * 30
        api.clear_log()
        await plain.send("1", Outbound("Tin thường"))  # the ordinary channel does not ask
        assert "allow_paid_broadcast" not in api.sent[0].params


async def test_long_bulletins_are_split_and_urgent_ones_carry_the_button(
    seeded: Database,
) -> None:
    body = "Bão số 3 đang mạnh lên, gió giật cấp 10, sóng biển cao 4 mét. " * 100  # ~6,300 chars
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, ["7", "8"])
        bulletin_id = await approved_bulletin(seeded, body=body, urgent=True)
        run_id = await start_run(seeded, bulletin_id)
        async with running_sender(seeded, channel, bot_id):
            assert await wait_settled(seeded, run_id) == {"sent": 2}
        for chat in (7, 8):
            parts = api.sent_to(chat)
            assert len(parts) == 2
            assert all(len(p.text or "") <= 4096 for p in parts)
            assert parts[0].text and parts[0].text.startswith("🚨")
            assert parts[0].reply_markup is None
            assert f"ack:{bulletin_id}" in str(parts[1].reply_markup)
            assert (parts[1].timestamp - parts[0].timestamp) >= 0.04  # the per-chat gap
            joined = (parts[0].text or "") + " " + (parts[1].text or "")
            assert joined.count("Bão số 3") == 100


async def test_cancel_stops_new_sends_within_seconds(seeded: Database) -> None:
    chats = [str(n) for n in range(1, 301)]
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, chats)
        bulletin_id = await approved_bulletin(seeded)
        run_id = await start_run(seeded, bulletin_id)
        async with running_sender(seeded, channel, bot_id, rate_per_second=20.0):
            await asyncio.sleep(1.5)
            async with seeded.sessions.begin() as session:
                bulletin = await bulletins.get(session, bulletin_id)
                editor = await session.scalar(select(Official).where(Official.username == "editor"))
                assert editor is not None
                await bulletins.cancel(session, bulletin, editor, dt.datetime.now(dt.UTC))
            cancelled_at = time.monotonic()
            await asyncio.sleep(3)
        late = [
            r for r in api.sent if r.timestamp > time.time() - (time.monotonic() - cancelled_at) + 5
        ]
        assert late == []
        counts = await states(seeded, run_id)
        assert counts.get("pending", 0) == 0 and counts.get("sending", 0) == 0
        assert counts["cancelled"] > 200
        assert counts["sent"] == len(api.sent) < 100
        assert await bulletin_state(seeded, bulletin_id) == "cancelled"


async def test_quiet_hours_hold_routine_but_not_urgent(seeded: Database) -> None:
    night = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC)  # 23:00 in Hải Phòng
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, ["11", "12"])
        routine_run = await start_run(seeded, await approved_bulletin(seeded))
        urgent_run = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
        async with running_sender(
            seeded, channel, bot_id, clock=lambda: night,
            quiet_start=dt.time(21, 0), quiet_end=dt.time(6, 0),
        ):  # fmt: skip
            assert await wait_settled(seeded, urgent_run) == {"sent": 2}
            await asyncio.sleep(0.5)
        assert await states(seeded, routine_run) == {"pending": 2}  # waits for the morning
        assert all((r.text or "").startswith("🚨") for r in api.sent)


async def test_translations_and_expiry(seeded: Database) -> None:
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, ["21"], language="en")
        await add_people(seeded, Platform.telegram, ["22"])
        translated = await approved_bulletin(
            seeded, translations={"en": ("Strong wind at sea", "Force 6 winds.")}
        )
        run_id = await start_run(seeded, translated)
        async with running_sender(seeded, channel, bot_id):
            await wait_settled(seeded, run_id)
        assert (api.sent_to(21)[0].text or "").startswith("📢 Strong wind at sea")
        assert (api.sent_to(22)[0].text or "").startswith("📢 Thông báo gió mạnh")

        soon = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=300)
        expiring = await approved_bulletin(seeded, expires_at=soon)
        run_id = await start_run(seeded, expiring)
        await asyncio.sleep(0.5)
        async with running_sender(seeded, channel, bot_id):
            assert await wait_settled(seeded, run_id) == {"expired": 2}


async def test_zalo_delivery_with_the_acknowledgement_hint(seeded: Database) -> None:
    async with FakeZaloAPI() as api:
        for chat in ("z1", "z2"):
            api.register_chat(chat)
        api.fail_chat("z3", status=403)
        bot = zalo_bot.Bot(api.token, base_url=api.base_url)
        bot._request = (CheckedRequest(), CheckedRequest())
        async with bot:
            bot_id = await add_people(seeded, Platform.zalo, ["z1", "z2", "z3", "z4"])
            run_id = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
            async with running_sender(seeded, ZaloChannel(bot), bot_id):
                counts = await wait_settled(seeded, run_id)
        # z4 never wrote to the bot: Zalo answers ok:false, which is a failure, not silence.
        assert counts == {"sent": 2, "blocked": 1, "failed": 1}
        for chat in ("z1", "z2"):
            text = api.sent_to(chat)[0].text or ""
            assert text.startswith("🚨") and text.endswith("đã nhận được tin này.")


async def test_a_crash_between_parts_does_not_send_the_first_part_again(
    seeded: Database,
) -> None:
    """Text, then (a chat's gap later) its second part: the first part sent is written as
    progress during the gap, so a sender dying in it leaves its successor only the rest."""
    body = "Bão số 3 đang mạnh lên, gió giật cấp 10, sóng biển cao 4 mét. " * 100  # two parts
    chats = [str(700 + n) for n in range(6)]
    async with FakeTelegramAPI() as api, telegram_channel(api) as channel:
        bot_id = await add_people(seeded, Platform.telegram, chats)
        bulletin_id = await approved_bulletin(seeded, body=body, urgent=True)
        run_id = await start_run(seeded, bulletin_id)
        gap = {"per_chat_interval": 30.0, "lease_ttl": dt.timedelta(seconds=1)}
        dying = Sender(
            seeded.sessions, channel, SenderConfig(bot_id=bot_id, rate_per_second=200.0,
            quiet_start=None, quiet_end=None, **gap, **FAST),  # type: ignore[arg-type]
            tz=TZ, holder="dying",
        )  # fmt: skip
        await dying.start()

        async def first_parts_written() -> bool:
            async with seeded.sessions() as session:
                rows = (
                    await session.execute(
                        select(Delivery.state, Delivery.parts_sent).where(Delivery.run_id == run_id)
                    )
                ).all()
            return len(rows) == len(chats) and all(
                state == "sending" and parts == 1 for state, parts in rows
            )

        deadline = time.monotonic() + 10
        while not await first_parts_written():
            assert time.monotonic() < deadline, "the first parts were not written as progress"
            await asyncio.sleep(0.05)
        # The process dies in the gap: its tasks end where they are, nothing more written.
        tasks = [dying._task, dying._flusher, dying._keeper, *dying._in_flight]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        assert all(len(api.sent_to(int(chat))) == 1 for chat in chats)

        await asyncio.sleep(1.1)  # its lease expires; the successor takes the bot over
        async with running_sender(seeded, channel, bot_id, per_chat_interval=0.05):
            assert await wait_settled(seeded, run_id) == {"sent": len(chats)}
    for chat in chats:
        parts = api.sent_to(int(chat))
        assert len(parts) == 2, [p.text for p in parts]  # the first part once, then the rest
        assert parts[0].text and parts[0].text.startswith("🚨")
        assert f"ack:{bulletin_id}" in str(parts[1].reply_markup)
