"""Zalo Official Account end to end: OAuth rotation, followers' flow, broadcasts, refusals,
all over real HTTP against the fake OA API (tests/fakes/zalo_oa.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot import texts
from bot.answers import Answers
from bot.conversation import Conversation
from bot.front_end import FrontEndArgs
from bot.zalo_oa import ZaloOaFrontEnd
from bot.zalo_oauth import OAuthError, seed
from bot.zns import ZnsFrontEnd
from broadcasts import bots
from broadcasts.bots import TokenBox
from broadcasts.channels import FailureKind, Media, MediaKind, Outbound, SendFailure
from broadcasts.outbox import Outbox
from broadcasts.subscribers import ensure_bot
from db.models import (
    Acknowledgement,
    ChatAddress,
    Delivery,
    OAuthToken,
    Platform,
    SubscriberStatus,
)
from haidang.settings import DEV_SECRET_KEY
from tests.bot.harness import person, running_service, until
from tests.bot.test_zalo import option_number
from tests.broadcasts.engine import (
    URGENT_BODY,
    add_people,
    approved_bulletin,
    start_run,
    wait_settled,
    warn_now,
)
from tests.broadcasts.test_sender import running_sender
from tests.conftest import Database
from tests.fakes.zalo_oa import (
    OA_BLOCKED,
    OA_OUTSIDE_WINDOW,
    RATE_LIMITED,
    FakeZaloOA,
    signature,
)

BOX = TokenBox("test-secret-key-for-zalo-oa-tokens")
Handler = Callable[[Request], Awaitable[Response]]


# --- helpers shared with test_zns -----------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the test runner owns the signals


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """Our webhook handlers behind a real HTTP server on 127.0.0.1; its base URL."""
    app = Starlette(
        routes=[Route(path, handler, methods=["POST"]) for path, handler in routes.items()]
    )
    port = _free_port()
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started or task.done(), 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def options(fake: FakeZaloOA, **extra: Any) -> dict[str, Any]:
    return {
        "app_id": fake.app_id, "oa_id": fake.oa_id, "api_base_url": fake.base_url,
        "oauth_base_url": fake.base_url, "zns_base_url": fake.base_url,
        "rate_limited_pause_s": 0.3, **extra,
    }  # fmt: skip


async def seeded_app(database: Database, fake: FakeZaloOA) -> None:
    async with database.sessions.begin() as session:
        await seed(session, BOX, fake.app_id, fake.refresh_token)


def front_end_args(
    database: Database,
    fake: FakeZaloOA,
    bot_id: int,
    *,
    rate: float = 200.0,
    secret: str | None = None,
    **extra: Any,
) -> FrontEndArgs:
    answers = Answers(
        database.sessions, Conversation(database.sessions), Outbox(rate, 0.05),
        bot_id=bot_id, holder="test",
    )  # fmt: skip
    return FrontEndArgs(
        bot_id=bot_id, secret=secret or fake.app_secret, options=options(fake, **extra),
        answers=answers, sessions=database.sessions, box=BOX,
        webhook_url="http://127.0.0.1/registered-with-the-fake", webhook_secret="unused",
    )  # fmt: skip


async def bot_of(database: Database, platform: Platform, name: str = "default") -> int:
    async with database.sessions.begin() as session:
        bot = await ensure_bot(session, platform, name)
        bot.quiet_start = bot.quiet_end = None
        return bot.id


@asynccontextmanager
async def running_oa(
    database: Database, fake: FakeZaloOA, secret: str | None = None, **extra: Any
) -> AsyncIterator[ZaloOaFrontEnd]:
    """The OA front end started, its webhook served and registered with the fake."""
    bot_id = await bot_of(database, Platform.zalo_oa)
    front_end = ZaloOaFrontEnd(front_end_args(database, fake, bot_id, secret=secret, **extra))
    async with serving({"/webhooks/zalo_oa/{bot}": front_end.webhook}) as base:
        fake.oa_webhook_url = f"{base}/webhooks/zalo_oa/{bot_id}"
        await front_end.start()
        try:
            yield front_end
        finally:
            await front_end.stop()


async def said(fake: FakeZaloOA, user: str, fragment: str, after: int = 0) -> str:
    """The first text the OA sent `user` (from index `after`) that contains `fragment`."""

    def probe() -> str | None:
        return next((t for t in fake.texts_to(user)[after:] if fragment in t), None)

    try:
        return await until(probe, 15)
    except AssertionError:
        raise AssertionError(f"no {fragment!r} in {fake.texts_to(user)[after:]!r}") from None


# --- tokens ---------------------------------------------------------------------------------


async def test_two_front_ends_of_one_app_share_the_rotating_token(seeded: Database) -> None:
    # A token fresh for 3 s (Zalo's expiry minus our 5-minute margin).
    async with FakeZaloOA(access_ttl_s=303) as fake:
        first_refresh = fake.refresh_token
        await seeded_app(seeded, fake)
        oa_id = await bot_of(seeded, Platform.zalo_oa)
        zns_id = await bot_of(seeded, Platform.zns)
        oa = ZaloOaFrontEnd(front_end_args(seeded, fake, oa_id))
        zns = ZnsFrontEnd(front_end_args(seeded, fake, zns_id))
        try:
            tokens = await asyncio.gather(
                *(fe.app.oauth.access_token() for fe in (oa, zns) for _ in range(10))
            )
            assert len(set(tokens)) == 1 and fake.refreshes == 1  # no double refresh
            assert oa.app.oauth.refreshes + zns.app.oauth.refreshes == 1
            # The rotated refresh token is kept, sealed; the first one is dead at Zalo.
            async with seeded.sessions() as session:
                row = await session.get_one(OAuthToken, fake.app_id)
            assert BOX.open(row.refresh_sealed) == fake.refresh_token != first_refresh
            assert fake.refresh_token not in row.refresh_sealed
            assert row.access_sealed is not None and tokens[0] not in row.access_sealed

            # Near expiry: the next calls refresh once, whichever front end comes first.
            await asyncio.sleep(3.5)
            again = await asyncio.gather(
                *(fe.app.oauth.access_token() for fe in (zns, oa) for _ in range(5))
            )
            assert len(set(again)) == 1 and again[0] != tokens[0] and fake.refreshes == 2

            # Revoked before its expiry (-216): both retry once with one new token.
            fake.add_followers(["u1", "u2"])
            fake.expire_access_tokens()
            channel = oa.channel()
            ids = await asyncio.gather(
                channel.send("u1", Outbound(text="Tin 1")),
                channel.send("u2", Outbound(text="Tin 2")),
            )
            assert all(ids) and fake.refreshes == 3
            assert fake.texts_to("u1") == ["Tin 1"] and fake.refused_refreshes == 0
        finally:
            await oa.app.aclose()
            await zns.app.aclose()


async def test_a_refused_refresh_token_is_a_clear_start_failure(seeded: Database) -> None:
    async with FakeZaloOA() as fake:
        async with seeded.sessions.begin() as session:
            await seed(session, BOX, fake.app_id, "rt-an-old-one")
        front_end = ZaloOaFrontEnd(
            front_end_args(seeded, fake, await bot_of(seeded, Platform.zalo_oa))
        )
        with pytest.raises(OAuthError, match="seed a new one"):
            await front_end.start()
        assert "seed a new one" in front_end.status().detail
        assert "rt-an-old-one" not in front_end.status().detail
        await front_end.app.aclose()
        # Unseeded app: as clear.
        other = ZaloOaFrontEnd(
            front_end_args(seeded, fake, await bot_of(seeded, Platform.zalo_oa), app_id="999")
        )
        with pytest.raises(OAuthError, match="no OAuth token seeded"):
            await other.start()
        await other.app.aclose()


# --- followers --------------------------------------------------------------------------------


async def test_a_follower_subscribes_receives_acknowledges_stops_and_erases(
    seeded: Database,
) -> None:
    user = "4957181112390000001"
    async with FakeZaloOA() as fake:
        await seeded_app(seeded, fake)
        async with running_oa(seeded, fake) as front_end:
            followed = await fake.follow(user)
            assert followed.status == 200
            consent = await said(fake, user, "Bà con đồng ý chứ?")
            assert "1. ✅ Đồng ý" in consent
            await fake.send_text(user, "1")
            await said(fake, user, "tỉnh/thành phố nào")
            mark = len(fake.texts_to(user))
            await fake.send_text(user, "hai phong")
            await said(fake, user, "Hải Phòng", mark)
            await fake.send_text(user, "cat hai")
            roles = await said(fake, user, "Bà con là:", mark)
            await fake.send_text(user, option_number(roles, "Ngư dân"))
            topics = await said(fake, user, "chủ đề nào", mark)
            await fake.send_text(user, option_number(topics, "✔️ Xong"))
            summary = await said(fake, user, "Đăng ký xong", mark)
            assert "Đặc khu Cát Hải" in summary
            assert all(len(t) <= 2000 for t in fake.texts_to(user))
            found = await person(seeded, user)
            assert found is not None and found[1] == ["11914"]

            # An urgent bulletin goes out through the OA's channel and the sender.
            bulletin_id = await approved_bulletin(
                seeded, body="Bão số 3 vào Hải Phòng.", urgent=True, areas=("11914",)
            )
            run_id = await start_run(seeded, bulletin_id)
            mark = len(fake.texts_to(user))
            async with running_sender(seeded, front_end.channel(), front_end.bot_id):
                assert (await wait_settled(seeded, run_id))["sent"] == 1
            warning = await said(fake, user, "Bão số 3", mark)
            assert "nhắn «đã nhận»" in warning

            await fake.send_text(user, "Đã nhận")
            await said(fake, user, "Cảm ơn bà con đã xác nhận", mark)
            async with seeded.sessions() as session:
                acks = await session.scalar(
                    select(func.count()).select_from(Acknowledgement)
                    .where(Acknowledgement.bulletin_id == bulletin_id)
                )  # fmt: skip
            assert acks == 1

            mark = len(fake.texts_to(user))
            await fake.send_text(user, "huy")
            confirm = await said(fake, user, "NGỪNG", mark)
            await fake.send_text(user, option_number(confirm, "Có"))
            await said(fake, user, "Đã ngừng gửi tin", mark)
            found = await person(seeded, user)
            assert found is not None and found[0].status is SubscriberStatus.stopped
            await fake.send_text(user, "xoa")
            confirm = await said(fake, user, "XÓA", mark)
            await fake.send_text(user, option_number(confirm, "Có"))
            await said(fake, user, "Đã xóa toàn bộ", mark)
            assert await person(seeded, user) is None


async def test_events_must_carry_zalos_signature(seeded: Database) -> None:
    # The webhook's OA secret key apart from the app's: the bot's secret holds both.
    async with FakeZaloOA(oa_secret="DistinctOaSecretKey") as fake:
        await seeded_app(seeded, fake)
        async with running_oa(seeded, fake, secret=f"{fake.app_secret} {fake.oa_secret}"):
            url = fake.oa_webhook_url
            assert url is not None
            event = {
                "app_id": fake.app_id, "sender": {"id": "u-9"}, "recipient": {"id": fake.oa_id},
                "event_name": "user_send_text", "timestamp": "1765000000000",
                "message": {"text": "/start c11914", "msg_id": "m-9"},
            }  # fmt: skip
            body = json.dumps(event)
            right = signature(fake.app_id, body, "1765000000000", fake.oa_secret)
            wrong = signature(fake.app_id, body, "1765000000000", fake.app_secret)
            assert await fake.post_raw(url, body, signature_header=None) == 403
            assert await fake.post_raw(url, body, signature_header=wrong) == 403
            assert await fake.post_raw(url, body + " ", signature_header=right) == 403
            assert await fake.post_raw(url, "not json", signature_header=right) == 403
            async with seeded.sessions() as session:
                assert await session.scalar(select(func.count()).select_from(ChatAddress)) == 0
            fake.add_followers(["u-9"])
            assert await fake.post_raw(url, body, signature_header=right) == 200
            await said(fake, "u-9", "đã đăng ký nhận tin của Đặc khu Cát Hải")
            # Our own messages echoed back and receipts are ignored, not answered.
            echo = json.dumps({**event, "event_name": "oa_send_text"})
            echoed = signature(fake.app_id, echo, "1765000000000", fake.oa_secret)
            before = len(fake.texts_to("u-9"))
            assert await fake.post_raw(url, echo, signature_header=echoed) == 200
            # Signed but malformed: dropped with a 200 (Zalo would post it again and again).
            bad = json.dumps({**event, "sender": {"id": ["u-9"]}})
            signed_bad = signature(fake.app_id, bad, "1765000000000", fake.oa_secret)
            assert await fake.post_raw(url, bad, signature_header=signed_bad) == 200
            await asyncio.sleep(0.5)
            assert len(fake.texts_to("u-9")) == before


# --- refusals ---------------------------------------------------------------------------------


async def test_window_quota_and_follower_refusals_map_to_failure_kinds(seeded: Database) -> None:
    async with FakeZaloOA(cs_per_window=2) as fake:
        await seeded_app(seeded, fake)
        async with running_oa(seeded, fake) as front_end:
            channel = front_end.channel()
            fake.add_followers(["idle", "chatty", "blocker"])
            fake.idle("idle", 8 * 86400)
            with pytest.raises(SendFailure) as caught:
                await channel.send("idle", Outbound(text="Tin"))
            assert (caught.value.kind, caught.value.reason) == (
                FailureKind.bad_request, "oa_outside_window",
            )  # fmt: skip
            for _ in range(2):
                await channel.send("chatty", Outbound(text="Tin"))
            with pytest.raises(SendFailure) as caught:
                await channel.send("chatty", Outbound(text="Tin"))
            assert (caught.value.kind, caught.value.reason) == (
                FailureKind.bad_request, "oa_quota_exceeded",
            )  # fmt: skip
            await fake.send_text("chatty", "bat dau")  # writing again opens a new allowance
            await until(lambda: len(fake.texts_to("chatty")) >= 3)
            with pytest.raises(SendFailure) as caught:
                await channel.send("stranger", Outbound(text="Tin"))
            assert caught.value.kind is FailureKind.chat_not_found
            fake.block("blocker")
            with pytest.raises(SendFailure) as caught:
                await channel.send("blocker", Outbound(text="Tin"))
            assert caught.value.kind is FailureKind.blocked
            fake.storm(1)
            with pytest.raises(SendFailure) as caught:
                await channel.send("blocker", Outbound(text="Tin"))
            assert caught.value.kind is FailureKind.rate_limited
            assert caught.value.retry_after == pytest.approx(0.3)
        codes = Counter(code for _, code in fake.cs_errors)
        assert codes[OA_OUTSIDE_WINDOW] == 1 and codes[OA_BLOCKED] == 1
        assert codes[RATE_LIMITED] == 1


async def test_the_sender_records_window_refusals_as_clear_failures(seeded: Database) -> None:
    users = [f"u{n}" for n in range(6)]
    async with FakeZaloOA() as fake:
        await seeded_app(seeded, fake)
        bot_id = await add_people(seeded, Platform.zalo_oa, users)
        fake.add_followers(users[:5])
        fake.idle("u0", 30 * 86400)
        args = front_end_args(seeded, fake, bot_id)
        front_end = ZaloOaFrontEnd(args)
        await front_end.start()
        try:
            run_id = await start_run(seeded, await approved_bulletin(seeded))
            async with running_sender(seeded, front_end.channel(), bot_id):
                counts = await wait_settled(seeded, run_id)
        finally:
            await front_end.stop()
        assert counts == {"sent": 4, "failed": 2}
        async with seeded.sessions() as session:
            rows = (
                await session.execute(
                    select(ChatAddress.chat_id, Delivery.reason)
                    .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
                    .where(Delivery.run_id == run_id)
                )
            ).all()
        reasons = dict(rows)
        assert reasons["u0"] == "bad request: oa_outside_window"
        assert reasons["u5"] == "chat not found"


async def test_a_throttle_storm_over_300_followers_loses_nothing_and_repeats_nothing(
    seeded: Database,
) -> None:
    users = [f"f{n:04d}" for n in range(300)]
    async with FakeZaloOA(rate_limit_per_second=150) as fake:
        await seeded_app(seeded, fake)
        bot_id = await add_people(seeded, Platform.zalo_oa, users)
        fake.add_followers(users)
        front_end = ZaloOaFrontEnd(front_end_args(seeded, fake, bot_id))
        await front_end.start()
        try:
            run_id = await start_run(seeded, await approved_bulletin(seeded))
            fake.storm(25)  # a storm of Zalo's rate-limit errors, then its rate window
            started = dt.datetime.now(dt.UTC)
            async with running_sender(
                seeded, front_end.channel(), bot_id, rate_per_second=400.0
            ) as sender:
                counts = await wait_settled(seeded, run_id, timeout=60)
            elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
        finally:
            await front_end.stop()
        assert counts == {"sent": 300}
        assert fake.cs_recipients == dict.fromkeys(users, 1)  # everyone once, nobody twice
        assert fake.rate_limited >= 25
        assert sender.outbox.stats().rate_limited_last_hour >= 1
        assert elapsed >= 0.3  # the bot paused for the rate-limit pause at least once
        async with seeded.sessions() as session:
            ids = (
                await session.scalars(
                    select(Delivery.platform_message_id).where(Delivery.run_id == run_id)
                )
            ).all()
        assert len(set(ids)) == 300 and all(ids)


# --- the service ------------------------------------------------------------------------------


async def test_the_service_runs_an_official_account_and_its_zns(
    seeded: Database, tmp_path: Path
) -> None:
    service_box = TokenBox(DEV_SECRET_KEY)
    user = "4957181112390000077"
    async with FakeZaloOA() as fake:
        async with seeded.sessions.begin() as session:
            ids = {}
            for platform in (Platform.zalo_oa, Platform.zns):
                bot = await bots.add(
                    session, service_box, platform=platform, name="haiphong",
                    token=fake.app_secret, options=options(fake),
                )  # fmt: skip
                bot.quiet_start = bot.quiet_end = None
                ids[platform] = bot.id
            await seed(session, service_box, fake.app_id, fake.refresh_token)
        async with running_service(seeded, tmp_path, webhook=True) as service:
            port = service.settings.http_port
            fake.oa_webhook_url = (
                f"http://127.0.0.1:{port}/webhooks/zalo_oa/{ids[Platform.zalo_oa]}"
            )
            fake.zns_webhook_url = f"http://127.0.0.1:{port}/webhooks/zns/{ids[Platform.zns]}"
            assert fake.refreshes == 1  # both bots of the app, one refresh
            await fake.follow(user)
            await said(fake, user, "Bà con đồng ý chứ?")
            await fake.send_text(user, "/start c11914")
            await said(fake, user, "đã đăng ký nhận tin của Đặc khu Cát Hải")
            mark = len(fake.texts_to(user))
            await warn_now(seeded)
            warning = await said(fake, user, URGENT_BODY, mark)
            assert "nhắn «đã nhận»" in warning
            await fake.send_text(user, "da nhan")
            await said(fake, user, "Cảm ơn bà con đã xác nhận", mark)
        assert fake.texts_to(user).count(warning) == 1


async def test_media_goes_by_url_or_becomes_a_note(seeded: Database) -> None:
    async with FakeZaloOA() as fake:
        await seeded_app(seeded, fake)
        async with running_oa(seeded, fake) as front_end:
            channel = front_end.channel()
            fake.add_followers(["u1"])
            url = "http://127.0.0.1:9/anh.jpg"
            photo = Media(kind=MediaKind.photo, key="p1", url=url)
            assert await channel.send("u1", Outbound(text="Ảnh bão", media=photo))
            assert await channel.send("u1", Outbound(media=Media(MediaKind.photo, "p2"))) == ""
            assert await channel.send("u1", Outbound(media=Media(MediaKind.voice, "v1")))
            sent = fake.messages_to("u1")
            elements = sent[0]["attachment"]["payload"]["elements"]
            assert elements == [{"media_type": "image", "url": url}]
            assert sent[0]["text"] == "Ảnh bão"
            assert sent[1]["text"] == texts.AUDIO_ON_LOUDSPEAKER_PAGE and len(sent) == 2
