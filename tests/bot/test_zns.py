"""ZNS end to end: template messages to phone numbers, refusals, and the delivery callbacks
recorded on the delivery rows, over real HTTP against the fake (tests/fakes/zalo_oa.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.zns import ZnsFrontEnd
from broadcasts import zns
from broadcasts.channels import FailureKind, Media, MediaKind, Outbound, SendFailure
from db.models import Bot, Bulletin, ChatAddress, Delivery, DeliveryState, Platform, ZnsTemplate
from tests.bot.harness import eventually, until
from tests.bot.test_zalo_oa import bot_of, front_end_args, seeded_app, serving
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run, wait_settled
from tests.broadcasts.test_sender import running_sender
from tests.conftest import Database
from tests.fakes.zalo_oa import RATE_LIMITED, ZNS_DELIVERED_EVENT, FakeZaloOA, signature

TEMPLATE = "231456"
DATA = {"title": "Bão số 3", "area": "Đặc khu Cát Hải", "time": "17:00 12/10"}


@asynccontextmanager
async def running_zns(
    database: Database, fake: FakeZaloOA, bot_id: int | None = None, **options: Any
) -> AsyncIterator[ZnsFrontEnd]:
    bot_id = bot_id or await bot_of(database, Platform.zns)
    front_end = ZnsFrontEnd(front_end_args(database, fake, bot_id, **options))
    async with serving({"/webhooks/zns/{bot}": front_end.webhook}) as base:
        fake.zns_webhook_url = f"{base}/webhooks/zns/{bot_id}"
        await front_end.start()
        try:
            yield front_end
        finally:
            await front_end.stop()


def phone(n: int) -> str:
    return f"0912{n:06d}"


def intl(n: int) -> str:
    return f"84912{n:06d}"


async def test_sends_and_callbacks_are_recorded_on_the_delivery_rows(seeded: Database) -> None:
    phones = [phone(n) for n in range(40)]
    undeliverable = {intl(n) for n in range(0, 40, 7)}
    async with FakeZaloOA(undeliverable=undeliverable, callback_delay_s=0.2) as fake:
        await seeded_app(seeded, fake)
        bot_id = await add_people(seeded, Platform.zns, phones)
        run_id = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
        async with running_zns(seeded, fake, bot_id) as front_end:
            channel = front_end.channel()
            async with seeded.sessions() as session:
                rows = (
                    await session.execute(
                        select(Delivery.id, ChatAddress.chat_id)
                        .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
                        .where(Delivery.run_id == run_id)
                    )
                ).all()
            assert len(rows) == 40
            # What the sender does for each row: send, then record `sent` with the id.
            message = Outbound(text="Bão số 3", template_id=TEMPLATE, template_data=DATA)
            ids = await asyncio.gather(*(channel.send(str(chat), message) for _, chat in rows))
            # Every callback comes before the sender's record of its send (the race a
            # sender writing outcomes once a second meets): failures are tried again.
            await until(lambda: len(fake.callbacks) == 40, 15)
            assert front_end.recorded == 0
            async with seeded.sessions.begin() as session:
                for (delivery_id, _), msg_id in zip(rows, ids, strict=True):
                    await session.execute(
                        update(Delivery).where(Delivery.id == delivery_id)
                        .values(state=DeliveryState.sent, platform_message_id=msg_id)
                    )  # fmt: skip
            assert {c.status for c in fake.callbacks} == {200}

            async def failed() -> int:
                async with seeded.sessions() as session:
                    found = await session.scalars(
                        select(Delivery.id).where(Delivery.state == DeliveryState.failed)
                    )
                    return len(found.all())

            await eventually(failed, len(undeliverable))
            assert front_end.recorded == len(undeliverable)

        sent = fake.zns_sent
        assert sorted(m.phone for m in sent) == sorted(intl(n) for n in range(40))  # once each
        assert {m.template_id for m in sent} == {TEMPLATE} and sent[0].template_data == DATA
        assert len({m.tracking_id for m in sent}) == 40
        async with seeded.sessions() as session:
            states = dict(
                (
                    await session.execute(
                        select(ChatAddress.chat_id, Delivery.state)
                        .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
                    )
                ).all()
            )  # fmt: skip
            reasons = set(
                (await session.scalars(select(Delivery.reason).where(
                    Delivery.state == DeliveryState.failed))).all()
            )  # fmt: skip
        for n in range(40):
            expected = DeliveryState.failed if intl(n) in undeliverable else DeliveryState.sent
            assert states[phone(n)] is expected
        assert reasons == {"zns_undelivered -114"}


async def test_refusals_map_to_failure_kinds(
    seeded: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    templates = {TEMPLATE: ("title", "area", "time")}
    async with FakeZaloOA(
        templates=templates, no_zalo_account={intl(2)}, zns_daily_quota=3
    ) as fake:
        await seeded_app(seeded, fake)
        async with running_zns(seeded, fake) as front_end:
            channel = front_end.channel()
            good = Outbound(text="x", template_id=TEMPLATE, template_data=DATA)

            async def refusal(chat_id: str, message: Outbound) -> tuple[FailureKind, str]:
                with pytest.raises(SendFailure) as caught:
                    await channel.send(chat_id, message)
                return caught.value.kind, caught.value.reason

            assert await refusal("12345", good) == (FailureKind.chat_not_found, "zns_invalid_phone")
            assert (await refusal(phone(2), good))[0] is FailureKind.chat_not_found
            missing = Outbound(text="x", template_id=TEMPLATE, template_data={"title": "Bão"})
            assert await refusal(phone(3), missing) == (
                FailureKind.bad_request,
                "zns_template_data",
            )
            unknown = Outbound(text="x", template_id="999", template_data=DATA)
            assert await refusal(phone(3), unknown) == (FailureKind.bad_request, "zns_template")
            assert await refusal(phone(3), Outbound(text="x")) == (
                FailureKind.bad_request, "zns_no_template",
            )  # fmt: skip
            photo = Media(kind=MediaKind.photo, key="p", url="http://127.0.0.1/p.jpg")
            assert await channel.send(phone(3), Outbound(media=photo)) == ""  # no media in ZNS
            fake.storm(1)
            kind, _ = await refusal(phone(3), good)
            assert kind is FailureKind.rate_limited
            # A revoked token: refreshed once, the send goes through.
            fake.expire_access_tokens()
            refreshes = fake.refreshes
            for n in range(3):
                assert await channel.send(phone(10 + n), good)
            assert fake.refreshes == refreshes + 1
            # The daily quota is used up: a permanent reason (the fallback moves on to SMS).
            assert await refusal(phone(20), good) == (FailureKind.bad_request, "zns_daily_quota")
    assert "912000002" not in caplog.text and "912000020" not in caplog.text  # masked


async def test_callbacks_must_carry_zalos_signature(seeded: Database) -> None:
    async with FakeZaloOA() as fake:
        await seeded_app(seeded, fake)
        bot_id = await add_people(seeded, Platform.zns, [phone(1)])
        run_id = await start_run(seeded, await approved_bulletin(seeded))
        async with seeded.sessions.begin() as session:
            await session.execute(
                update(Delivery).where(Delivery.run_id == run_id)
                .values(state=DeliveryState.sent, platform_message_id="m-1")
            )  # fmt: skip
        async with running_zns(seeded, fake, bot_id):
            url = fake.zns_webhook_url
            assert url is not None
            event = {
                "app_id": fake.app_id, "event_name": "zns_delivery_failed",
                "message": {"msg_id": "m-1", "error": {"code": -114}},
                "timestamp": "1765000000000",
            }  # fmt: skip
            body = json.dumps(event)
            wrong = signature(fake.app_id, body, "1765000000000", "guess")
            assert await fake.post_raw(url, body, signature_header=wrong) == 403
            assert await fake.post_raw(url, body, signature_header=None) == 403
            async with seeded.sessions() as session:
                assert await session.scalar(select(Delivery.state)) is DeliveryState.sent
            other = json.dumps({**event, "event_name": ZNS_DELIVERED_EVENT})
            right = signature(fake.app_id, other, "1765000000000", fake.oa_secret)
            assert await fake.post_raw(url, other, signature_header=right) == 200
            right = signature(fake.app_id, body, "1765000000000", fake.oa_secret)
            assert await fake.post_raw(url, body, signature_header=right) == 200
            async with seeded.sessions() as session:  # written before the 200
                row = (await session.execute(select(Delivery.state, Delivery.reason))).one()
            assert tuple(row) == (DeliveryState.failed, "zns_undelivered -114")


# --- through the sender ---------------------------------------------------------------------

# Zalo's parameter names of a template, each filled from one of broadcasts.zns.SOURCES.
STORM_PARAMS = {
    "tieu_de": "title", "khu_vuc": "area", "thoi_gian": "time", "tom_tat": "summary:100",
    "tin_ngan": "readout:160",
}  # fmt: skip


async def zns_bulletin(database: Database, bot_id: int, *, enabled: bool = True) -> int:
    """An approved urgent bulletin whose ZNS template (TEMPLATE, STORM_PARAMS) is
    registered on the ZNS bot `bot_id`, switched off when not `enabled`; its id."""
    bulletin_id = await approved_bulletin(database, urgent=True)
    async with database.sessions.begin() as session:
        template = await zns.add(
            session, bot=await session.get_one(Bot, bot_id), template_id=TEMPLATE,
            name="Cảnh báo thiên tai", params=STORM_PARAMS, price_vnd=300, official=None,
            now=NOW, via="test",
        )  # fmt: skip
        if not enabled:
            assert await zns.disable(session, template, official=None, now=NOW, via="test")
        await session.execute(
            update(Bulletin).where(Bulletin.id == bulletin_id)
            .values(zns_template_id=template.id)
        )  # fmt: skip
    return bulletin_id


async def storm_over_300_phones(
    database: Database, *, storm: int, pause_s: float, **sender: Any
) -> None:
    """An urgent bulletin's ZNS template to 300 phones through the real sender, while the
    next `storm` calls to Zalo are answered rate-limited (each pausing the bot `pause_s`):
    everyone gets it once, filled in, and every delivery ends `sent`."""
    phones = [intl(n) for n in range(300)]
    templates = {TEMPLATE: tuple(STORM_PARAMS)}
    async with FakeZaloOA(templates=templates, zns_daily_quota=1000) as fake:
        await seeded_app(database, fake)
        bot_id = await add_people(database, Platform.zns, phones)
        run_id = await start_run(database, await zns_bulletin(database, bot_id))
        async with running_zns(database, fake, bot_id, rate_limited_pause_s=pause_s) as front_end:
            fake.storm(storm)  # a storm of Zalo's rate-limit errors
            async with running_sender(
                database, front_end.channel(), bot_id, rate_per_second=400.0, **sender
            ) as running:
                counts = await wait_settled(database, run_id, timeout=storm * pause_s + 120)
            # Zalo's delivery callbacks, each answered once written.
            await until(lambda: len(fake.callbacks) >= len(fake.zns_sent), 60)
            assert {c.status for c in fake.callbacks} == {200}
            assert front_end.recorded == 0  # all delivered: no row changes
        sent = fake.zns_sent
        assert sorted(m.phone for m in sent) == sorted(phones)  # everyone once, nobody twice
        assert counts == {"sent": 300}
        assert fake.rate_limited == storm  # the storm happened, every call of it
        assert fake.zns_errors == [(phone, RATE_LIMITED) for phone, _ in fake.zns_errors]
        assert len(fake.zns_errors) == storm
        assert running.outbox.stats().rate_limited_last_hour >= 1
        assert len({m.tracking_id for m in sent}) == 300
        async with database.sessions() as session:
            template = await session.scalar(select(ZnsTemplate))
            assert template is not None
            rows = (
                await session.execute(
                    select(Delivery.state, Delivery.platform_message_id).where(
                        Delivery.run_id == run_id
                    )
                )
            ).all()
        limits = {name: zns.parse_param(spec)[1] for name, spec in template.params.items()}
        assert limits == {"tieu_de": 30, "khu_vuc": 30, "thoi_gian": 30, "tom_tat": 100,
                          "tin_ngan": 160}  # fmt: skip
        for message in sent:
            assert message.template_id == TEMPLATE
            assert set(message.template_data) == set(STORM_PARAMS)
            for name, value in message.template_data.items():
                assert isinstance(value, str) and value.strip(), (name, value)
                assert len(value) <= limits[name], (name, value)
        assert sent[0].template_data["tieu_de"] == "Thông báo gió mạnh trên biển"
        assert all(m.template_data == sent[0].template_data for m in sent)  # one area for all
        assert {state for state, _ in rows} == {DeliveryState.sent}
        assert sorted(str(msg_id) for _, msg_id in rows) == sorted(m.msg_id for m in sent)


async def test_a_zns_throttle_storm_over_300_phones_loses_nothing_and_repeats_nothing(
    seeded: Database,
) -> None:
    # 240 refusals beside the 300 sends that go through: over two calls in five.
    await storm_over_300_phones(seeded, storm=240, pause_s=0.05)


async def test_a_storm_longer_than_the_delivery_lease_repeats_nothing(
    seeded: Database,
) -> None:
    # About 60 x 0.3 s of pauses, well past a 3-second delivery lease (60 s by default:
    # a storm of 5-second pauses, the bot's default, outlasts it after a dozen refusals).
    # The sender's own sweep leaves the rows it still holds alone (queue.sweep's `keep`).
    await storm_over_300_phones(
        seeded, storm=60, pause_s=0.3, delivery_lease=dt.timedelta(seconds=3)
    )


async def test_a_disabled_zns_template_fails_the_deliveries_and_sends_nothing(
    seeded: Database,
) -> None:
    phones = [intl(n) for n in range(5)]
    async with FakeZaloOA() as fake:
        await seeded_app(seeded, fake)
        bot_id = await add_people(seeded, Platform.zns, phones)
        run_id = await start_run(seeded, await zns_bulletin(seeded, bot_id, enabled=False))
        async with (
            running_zns(seeded, fake, bot_id) as front_end,
            running_sender(seeded, front_end.channel(), bot_id),
        ):
            counts = await wait_settled(seeded, run_id, timeout=30)
        assert counts == {"failed": 5}
        async with seeded.sessions() as session:
            reasons = (
                await session.scalars(select(Delivery.reason).where(Delivery.run_id == run_id))
            ).all()
        assert reasons == ["zns_no_template"] * 5
        assert fake.zns_sent == [] and fake.zns_errors == []  # not even tried
