"""ZNS end to end: template messages to phone numbers, refusals, and the delivery callbacks
recorded on the delivery rows, over real HTTP against the fake (tests/fakes/zalo_oa.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, update

from bot.zns import ZnsFrontEnd
from broadcasts.channels import FailureKind, Media, MediaKind, Outbound, SendFailure
from db.models import ChatAddress, Delivery, DeliveryState, Platform
from tests.bot.harness import eventually, until
from tests.bot.test_zalo_oa import bot_of, front_end_args, seeded_app, serving
from tests.broadcasts.engine import add_people, approved_bulletin, start_run
from tests.conftest import Database
from tests.fakes.zalo_oa import ZNS_DELIVERED_EVENT, FakeZaloOA, signature

TEMPLATE = "231456"
DATA = {"title": "Bão số 3", "area": "Đặc khu Cát Hải", "time": "17:00 12/10"}


@asynccontextmanager
async def running_zns(
    database: Database, fake: FakeZaloOA, bot_id: int | None = None
) -> AsyncIterator[ZnsFrontEnd]:
    bot_id = bot_id or await bot_of(database, Platform.zns)
    front_end = ZnsFrontEnd(front_end_args(database, fake, bot_id))
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
