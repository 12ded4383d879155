"""The SMS gateway (smpplib) against a fake SMSC speaking SMPP 3.4 over real TCP."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter

import pytest

from bot.smpp import Receipt, SmppConfig, SmppGateway, SmppLoginRefused, failure_for
from broadcasts import sms
from broadcasts.channels import FailureKind, Media, MediaKind, Outbound, SendFailure
from db.models import DeliveryState
from tests.fakes.smpp import FakeSmsc, deliver

TARIFF = sms.GatewayTariff(cost_per_part_vnd=550)
LONG_VI = (
    "Tin bão khẩn cấp: Bão số 3 đang di chuyển theo hướng Tây Tây Bắc, gió mạnh cấp 10-11,"
    " giật cấp 13. Đề nghị tàu thuyền đang hoạt động ở vùng biển Quảng Ngãi – Đà Nẵng"
    " khẩn trương về nơi trú ẩn an toàn trước 17 giờ ngày 12/10. “Đã nhận” xin trả lời 1."
)


def config(smsc: FakeSmsc, **overrides: object) -> SmppConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": "haidang",
        "password": "secret",
        "brandname": "HAIDANG",
        "tariff": TARIFF,
        "throttle_wait_s": 0.2,
        "reconnect_wait_s": 0.1,
    }
    values.update(overrides)
    return SmppConfig(**values)  # type: ignore[arg-type]


def number(i: int) -> str:
    return f"0912{i:06d}"


async def wait_for(predicate: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_hundred_messages_under_throttling_arrive_once_each() -> None:
    rng = random.Random(15)
    undeliverable = {sms.msisdn(number(i)) for i in range(0, 200, 17)}
    with FakeSmsc(throughput=200, undeliverable=undeliverable) as smsc:
        receipts: list[Receipt] = []
        ucs2 = SmppGateway(config(smsc, encoding=sms.Encoding.ucs2), on_receipt=receipts.append)
        gsm7 = SmppGateway(config(smsc), on_receipt=receipts.append)
        texts: dict[str, tuple[SmppGateway, str]] = {}
        for i in range(200):
            gateway = ucs2 if i % 3 == 0 else gsm7
            text = LONG_VI[: rng.randint(60, len(LONG_VI))] + f" #{i}"
            texts[sms.msisdn(number(i))] = (gateway, text)
        seen: Counter[str] = Counter()
        started = time.monotonic()
        ids = await asyncio.gather(
            *(deliver(g, number(i), t, seen) for i, (g, t) in enumerate(texts.values()))
        )
        elapsed = time.monotonic() - started
        await wait_for(lambda: len(receipts) == 200)
        await ucs2.close()
        await gsm7.close()

    assert smsc.throttled > 0 and seen["rate_limited"] > 0  # the offered rate was higher
    assert seen["transient"] == 0
    messages = smsc.messages()
    assert Counter(destination for destination, _ in messages) == Counter(list(texts))  # once each
    for destination, text in messages:
        gateway, original = texts[destination]
        assert text == sms.prepare(original, gateway.config.encoding)
    planned = sum(g.plan(t).count for g, t in texts.values())
    assert len(smsc.submits) == planned  # no part accepted twice
    assert {s.source_addr for s in smsc.submits} == {"HAIDANG"}
    assert {s.source_addr_ton for s in smsc.submits} == {5}  # alphanumeric
    assert {s.data_coding for s in smsc.submits} == {0, 8}
    assert any(s.udh is not None for s in smsc.submits if s.data_coding == 0)
    # One receipt per message, under the id send() returned, mapped onto our states.
    assert sorted(r.message_id for r in receipts) == sorted(ids)
    by_id = dict(zip(ids, texts, strict=True))
    for receipt in receipts:
        if by_id[receipt.message_id] in undeliverable:
            assert receipt.state is DeliveryState.failed and receipt.reason == "sms_undeliv"
        else:
            assert receipt.state is DeliveryState.sent and receipt.delivered
    rate = planned / elapsed
    print(f"\n{planned} parts ({len(texts)} messages) in {elapsed:.2f} s: {rate:.0f} parts/s")
    assert rate < 200 * 1.5  # the fake's limit held (one window of grace at the start)


async def test_a_dropped_link_reconnects_without_loss_and_repeats_at_most_the_window() -> None:
    window = 8
    with FakeSmsc(drop_at={60}) as smsc:
        gateway = SmppGateway(config(smsc, window=window))
        texts = {number(i): f"Ban tin so {i}: " + "bien dong " * (i % 30) for i in range(150)}
        seen: Counter[str] = Counter()
        await asyncio.gather(*(deliver(gateway, n, t, seen) for n, t in texts.items()))
        await gateway.close()

    assert smsc.dropped == 1 and smsc.binds == 2
    assert seen["transient"] >= 1
    received = Counter(destination for destination, _ in smsc.messages())
    assert set(received) == {sms.msisdn(n) for n in texts}  # nothing lost
    repeated = [d for d, times in received.items() if times > 1]
    # Only messages in flight when the link broke can go twice (SmppGateway's docstring).
    assert len(repeated) <= window
    assert all(times <= 2 for times in received.values())


async def test_wrong_credentials_are_a_clear_error() -> None:
    with FakeSmsc() as smsc:
        gateway = SmppGateway(config(smsc, password="wrong"))
        with pytest.raises(
            SmppLoginRefused, match=r"refused system_id 'haidang'.*Invalid Password"
        ):
            await gateway.start()
        with pytest.raises(SendFailure) as failure:
            await asyncio.sleep(0.15)  # past reconnect_wait_s
            await gateway.send(number(1), Outbound(text="Chao"))
        assert failure.value.kind is FailureKind.transient
        assert "Invalid Password" in failure.value.reason
        stranger = SmppGateway(config(smsc, system_id="other"))
        with pytest.raises(SmppLoginRefused, match="Invalid System ID"):
            await stranger.start()
        assert smsc.binds == 0


async def test_refusals_map_onto_failure_kinds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeSmsc(invalid={"84987654321"}) as smsc:
        gateway = SmppGateway(config(smsc))
        with pytest.raises(SendFailure) as failure:
            await gateway.send("0987 654 321", Outbound(text="Bão số 3"))
        assert failure.value.kind is FailureKind.chat_not_found
        with pytest.raises(SendFailure) as failure:
            await gateway.send("not a number", Outbound(text="Bão số 3"))
        assert failure.value.kind is FailureKind.chat_not_found
        photo = Media(kind=MediaKind.photo, key="p1")
        assert await gateway.send(number(2), Outbound(media=photo)) == ""  # SMS has no media
        assert await gateway.send(number(2), Outbound(text="Bão")) != ""
        await gateway.close()
    assert "987654321" not in caplog.text and "912000002" not in caplog.text  # masked
    assert failure_for(0x58, 1.5).kind is FailureKind.rate_limited
    assert failure_for(0x58, 1.5).retry_after == 1.5
    assert failure_for(0x0B, 1).kind is FailureKind.chat_not_found
    assert failure_for(0x0A, 1).kind is FailureKind.bad_request  # brandname not registered
    assert failure_for(0x08, 1).kind is FailureKind.transient


async def test_the_gateway_paces_itself_at_its_configured_throughput() -> None:
    with FakeSmsc(throughput=60) as smsc:
        gateway = SmppGateway(config(smsc, throughput=50))
        seen: Counter[str] = Counter()
        started = time.monotonic()
        await asyncio.gather(*(deliver(gateway, number(i), "Bao so 3", seen) for i in range(60)))
        elapsed = time.monotonic() - started
        await gateway.close()
    assert smsc.throttled == 0 and not seen
    assert elapsed >= 59 / 50 * 0.95
    assert len(smsc.submits) == 60
