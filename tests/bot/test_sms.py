"""SMS as a channel people text: the front end over real TCP to the fake SMSC, the real
conversation, answers and sender on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.answers import Answers
from bot.conversation import Conversation
from bot.front_end import FrontEndArgs
from bot.smpp import MobileMessage, SmppConfig, SmppGateway, decode_mo, fit, split_udh
from bot.sms import SmsFrontEnd, config_from
from broadcasts import bots, sms
from broadcasts.bots import TokenBox
from broadcasts.outbox import Outbox
from broadcasts.sender import Sender, SenderConfig
from broadcasts.subscribers import ensure_bot
from db.models import (
    Acknowledgement,
    ChatAddress,
    Delivery,
    DeliveryState,
    Platform,
    Subscriber,
    SubscriberRole,
    SubscriberStatus,
    SubscriberTopic,
    Topic,
)
from haidang.settings import DEV_SECRET_KEY
from tests.bot.harness import person, running_service
from tests.broadcasts.engine import add_people, approved_bulletin, start_run, wait_settled
from tests.conftest import Database
from tests.fakes.smpp import FakeSmsc

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
PHONE = "0912345678"
MSISDN = "84912345678"


def options(smsc: FakeSmsc, **extra: object) -> dict[str, object]:
    return {
        "host": "127.0.0.1", "port": smsc.port, "system_id": smsc.system_id,
        "brandname": "HAIDANG", "cost_per_part_vnd": 550, "carrier": "viettel", **extra,
    }  # fmt: skip


@asynccontextmanager
async def sms_bot(
    database: Database, smsc: FakeSmsc, *, reply_rate: float = 100.0, **extra: object
) -> AsyncIterator[tuple[SmsFrontEnd, int]]:
    """The SMS bot as the runtime runs it: its answers, its front end, bound."""
    async with database.sessions.begin() as session:
        bot = await ensure_bot(session, Platform.sms)
        bot.quiet_start = bot.quiet_end = None
        bot.options = options(smsc, **extra)
        bot_id = bot.id
    answers = Answers(
        database.sessions, Conversation(database.sessions), Outbox(reply_rate, 1.0),
        bot_id=bot_id, holder="test",
    )  # fmt: skip
    args = FrontEndArgs(
        bot_id=bot_id, secret=smsc.password, options=options(smsc, **extra), answers=answers,
        sessions=database.sessions, box=TokenBox("test-key"), webhook_url=None,
        webhook_secret="unused",
    )  # fmt: skip
    front = SmsFrontEnd(args)
    await front.start()
    try:
        yield front, bot_id
    finally:
        await front.stop()


@asynccontextmanager
async def running_sender(
    database: Database, front: SmsFrontEnd, bot_id: int, rate: float = 200.0
) -> AsyncIterator[Sender]:
    config = SenderConfig(
        bot_id=bot_id, rate_per_second=rate, per_chat_interval=0.05, quiet_start=None,
        quiet_end=None, backoff_s=(0.05,), idle_poll_s=0.05,
    )  # fmt: skip
    sender = Sender(
        database.sessions, front.channel(), config, tz=TZ, holder="test",
        clock=lambda: dt.datetime.now(dt.UTC),
    )  # fmt: skip
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


async def until(probe: Callable[[], Any], within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := probe()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


async def reply(smsc: FakeSmsc, number: str, fragment: str, after: int = 0) -> str:
    """The first complete SMS to `number` from index `after` on that contains `fragment`."""

    def probe() -> str | None:
        return next((t for t in smsc.texts_to(number)[after:] if fragment in t), None)

    try:
        return str(await until(probe))
    except AssertionError:
        raise AssertionError(f"no SMS with {fragment!r}: {smsc.texts_to(number)}") from None


async def texting(smsc: FakeSmsc, number: str, text: str, fragment: str, **how: Any) -> str:
    mark = len(smsc.texts_to(sms.msisdn(number)))
    smsc.phone_sends(number, text, **how)
    return await reply(smsc, sms.msisdn(number), fragment, after=mark)


async def test_a_feature_phone_subscribes_acknowledges_stops_and_erases(seeded: Database) -> None:
    with FakeSmsc() as smsc:
        async with sms_bot(seeded, smsc) as (front, bot_id):
            done = await texting(smsc, PHONE, "dk  cat hai", "Da dang ky")
            assert "Dac khu Cat Hai (Thanh pho Hai Phong)" in done and "dong y" in done
            assert len(smsc.submits) == 1 and smsc.submits[0].data_coding == 0  # one GSM-7 SMS
            found = await person(seeded, MSISDN)
            assert found is not None
            subscriber, codes = found
            assert codes == ["11914"] and subscriber.consent_at is not None
            assert subscriber.role is SubscriberRole.fisherman
            async with seeded.sessions() as session:
                topics = await session.scalar(select(func.count()).select_from(Topic))
                chosen = await session.scalar(
                    select(func.count()).where(SubscriberTopic.subscriber_id == subscriber.id)
                )
            assert chosen == topics  # every topic

            # An urgent bulletin reaches the phone as one brief SMS asking for DA NHAN.
            bulletin_id = await approved_bulletin(seeded, urgent=True)
            run_id = await start_run(seeded, bulletin_id)
            async with running_sender(seeded, front, bot_id):
                assert await wait_settled(seeded, run_id, timeout=30) == {"sent": 1}
            warning = smsc.texts_to(MSISDN)[-1]
            assert "DA NHAN" in warning

            await texting(smsc, PHONE, "da nhan", "Cam on ba con da xac nhan")
            async with seeded.sessions() as session:
                ack = await session.scalar(select(Acknowledgement))
            assert ack is not None and ack.bulletin_id == bulletin_id and ack.bot_id == bot_id

            latest = await texting(smsc, PHONE, "Tin", "Thong bao gio manh")
            assert sms.plan(latest, sms.Encoding.gsm7_unaccented, TARIFF).count <= 2
            help_text = await texting(smsc, PHONE, "ai day?", "nhan DK <ten xa>")
            assert len(help_text) <= 160  # the help is one SMS

            # HUY stops at once: the next bulletin is not sent to the phone.
            await texting(smsc, PHONE, "HUY", "Da ngung gui tin")
            found = await person(seeded, MSISDN)
            assert found is not None and found[0].status is SubscriberStatus.stopped
            sent_before = len(smsc.submits)
            second = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
            async with running_sender(seeded, front, bot_id):
                assert await wait_settled(seeded, second, timeout=30) == {}
                await asyncio.sleep(0.5)
            assert len(smsc.submits) == sent_before

            # XOA erases: the number is gone from the chat addresses, the answer still goes.
            await texting(smsc, PHONE, "XOA", "Da xoa so")
            assert await person(seeded, MSISDN) is None
            async with seeded.sessions() as session:
                chats = (await session.scalars(select(ChatAddress.chat_id))).all()
            assert MSISDN not in chats
        assert set(smsc.mo_answers) == {0}  # every message kept, then answered


TARIFF = sms.GatewayTariff(cost_per_part_vnd=550)


async def test_an_ambiguous_name_is_answered_with_a_numbered_list(seeded: Database) -> None:
    with FakeSmsc() as smsc:
        async with sms_bot(seeded, smsc):
            # UCS-2 from a phone that types accents, "đ" and all.
            listing = await texting(smsc, PHONE, "đk Bình Sơn", "Tra loi so", ucs2=True)
            lines = listing.splitlines()
            assert "1. Xa Binh Son (An Giang)" in lines
            assert sms.plan(listing, sms.Encoding.gsm7_unaccented, TARIFF).count <= 2
            number = next(ln.split(".")[0] for ln in lines if "Quang Ngai" in ln)
            await texting(smsc, PHONE, number, "Xa Binh Son (Quang Ngai)")
            found = await person(seeded, MSISDN)
            assert found is not None and found[1] == ["21040"]
            # "Binh Chau" names one commune exactly (its fuzzy neighbour Chau Binh is no
            # rival), and a code works too; a long message in three concatenated parts is one turn.
            other = "0987654321"
            await texting(smsc, other, "DK Binh Chau", "Xa Binh Chau (Thanh pho Ho Chi Minh)")
            await texting(smsc, other, "dk c11914", "Dac khu Cat Hai")
            found = await person(seeded, sms.msisdn(other))
            assert found is not None and found[1] == ["26656", "11914"]
            mark = len(smsc.texts_to(sms.msisdn(other)))
            smsc.phone_sends(other, "Cho hoi bao gio thi co tin thoi tiet bien moi?", split=16)
            await reply(smsc, sms.msisdn(other), "nhan DK", after=mark)
            await asyncio.sleep(0.5)
            assert len(smsc.texts_to(sms.msisdn(other))) == mark + 1


async def test_a_dropped_link_is_bound_again_and_hears_the_next_message(
    seeded: Database,
) -> None:
    with FakeSmsc() as smsc:
        async with sms_bot(seeded, smsc) as (front, _):
            await texting(smsc, PHONE, "DK Cat Hai", "Da dang ky")
            smsc.drop_all()  # a carrier's restart; nothing is being sent
            await until(lambda: smsc.binds >= 2 and front.status().detail.startswith("HAIDANG"))
            await texting(smsc, PHONE, "TIN", "Chua co ban tin nao")


async def test_an_undelivered_sms_becomes_a_failed_delivery(seeded: Database) -> None:
    numbers = [sms.msisdn(f"0913{n:06d}") for n in range(20)]
    lost = set(numbers[::7])
    with FakeSmsc(undeliverable=lost) as smsc:
        async with sms_bot(seeded, smsc) as (front, bot_id):
            await add_people(seeded, Platform.sms, numbers)
            run_id = await start_run(seeded, await approved_bulletin(seeded))
            async with running_sender(seeded, front, bot_id):
                await wait_settled(seeded, run_id, timeout=30)

                async def failed() -> dict[str, str | None]:
                    async with seeded.sessions() as session:
                        rows = await session.execute(
                            select(ChatAddress.chat_id, Delivery.reason)
                            .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
                            .where(Delivery.state == DeliveryState.failed)
                        )
                        return {str(chat): reason for chat, reason in rows.all()}

                deadline = time.monotonic() + 15
                while len(await failed()) < len(lost):
                    assert time.monotonic() < deadline, await failed()
                    await asyncio.sleep(0.1)
            assert await failed() == dict.fromkeys(lost, "sms_undeliv")
            assert front.receipts_matched == len(lost)
        assert sorted(d for d, _ in smsc.messages()) == sorted(numbers)


async def test_a_throttle_storm_loses_nobody_and_repeats_nobody(seeded: Database) -> None:
    numbers = [sms.msisdn(f"0914{n:06d}") for n in range(300)]
    with FakeSmsc() as smsc:
        async with sms_bot(seeded, smsc) as (front, bot_id):
            await add_people(seeded, Platform.sms, numbers)
            run_id = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
            smsc.storm(2.0, let_through_one_in=5)
            async with running_sender(seeded, front, bot_id):
                assert await wait_settled(seeded, run_id, timeout=90) == {"sent": 300}
        assert smsc.throttled > 0
        received = Counter(destination for destination, _ in smsc.messages())
        assert received == Counter(numbers)  # each exactly once
        # Every part that went out belongs to a complete message: none was cut short.
        assert len(smsc.submits) == sum(
            sms.plan(text, sms.Encoding.gsm7_unaccented, TARIFF).count
            for _, text in smsc.messages()
        )


async def test_two_hundred_phones_texting_dk_at_once_stay_within_the_rate(
    seeded: Database,
) -> None:
    phones = [f"0915{n:06d}" for n in range(200)]
    with FakeSmsc(throughput=60) as smsc:
        async with sms_bot(seeded, smsc, throughput=50) as _:
            started = time.monotonic()
            for phone in phones:
                smsc.phone_sends(phone, "DK Cat Hai")
            await until(lambda: len(smsc.messages()) >= 200, within=60)
            took = time.monotonic() - started
            await asyncio.sleep(0.5)
        assert smsc.throttled == 0  # paced under the SMSC's limit
        assert took >= 200 / 50 * 0.8  # ... by the gateway's pacer, not by luck
        replies = Counter(destination for destination, _ in smsc.messages())
        assert replies == Counter(sms.msisdn(p) for p in phones)  # one reply each
        assert all("Dac khu Cat Hai" in text for _, text in smsc.messages())
        assert smsc.mo_answers == [0] * 200
    async with seeded.sessions() as session:
        subscribed = await session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.consent_at.is_not(None))
        )
    assert subscribed == 200


async def test_the_service_runs_a_registered_sms_bot(seeded: Database, tmp_path: Path) -> None:
    with FakeSmsc() as smsc:
        async with seeded.sessions.begin() as session:
            bot = await bots.add(
                session, TokenBox(DEV_SECRET_KEY), platform=Platform.sms, name="vung-tau",
                token=smsc.password, options=options(smsc),
            )  # fmt: skip
            bot.quiet_start = bot.quiet_end = None
        async with running_service(seeded, tmp_path):
            await until(lambda: smsc.binds)
            await texting(smsc, PHONE, "DK Cat Hai", "Da dang ky nhan tin cua Dac khu Cat Hai")
            run_id = await start_run(seeded, await approved_bulletin(seeded, urgent=True))
            assert await wait_settled(seeded, run_id, timeout=30) == {"sent": 1}
            assert "DA NHAN" in smsc.texts_to(MSISDN)[-1]
            await texting(smsc, PHONE, "Da nhan", "Cam on ba con da xac nhan")
        assert smsc.mo_answers == [0, 0]


async def test_a_message_not_kept_is_delivered_again_under_the_same_key() -> None:
    with FakeSmsc() as smsc:
        came: list[MobileMessage] = []

        fail_next = [True]

        async def keep(message: MobileMessage) -> None:
            came.append(message)
            if fail_next:
                fail_next.pop()
                raise RuntimeError("the database is away")

        gateway = SmppGateway(
            SmppConfig(
                host="127.0.0.1", port=smsc.port, system_id="haidang", password="secret",
                brandname="HAIDANG", tariff=TARIFF,
            ),
            on_message=keep,
        )  # fmt: skip
        await gateway.start()
        try:
            smsc.phone_sends("+84 912 345 678", "Tin {moi} €")
            await until(lambda: len(smsc.mo_answers) == 2)
            assert smsc.mo_answers == [0x64, 0]  # ESME_RX_T_APPN, then kept
            assert [m.key for m in came] == [came[0].key] * 2
            assert came[0] == MobileMessage(MSISDN, "Tin {moi} €", came[0].key)
            smsc.phone_sends(PHONE, "Tin {moi} €")  # the same words again: a new message
            await until(lambda: len(came) == 3)
            assert came[2].key != came[0].key
            # In three parts, the last one refused: delivered again alone, it still gives
            # the whole message, under its first key.
            fail_next.append(True)
            words = "Tàu QNg-90123 hỏng máy cách bờ 20 hải lý, cần cứu hộ gấp!"
            smsc.phone_sends(PHONE, words, ucs2=True, split=20)
            await until(lambda: len(came) == 5)
            assert came[3].text == came[4].text == words
            assert came[3].key == came[4].key != came[2].key
            # The answer to the last part follows its keeping: wait for it (2 + 1 + 4).
            await until(lambda: len(smsc.mo_answers) == 7)
            assert smsc.mo_answers[-4:] == [0, 0, 0x64, 0]  # two parts, the last twice
        finally:
            await gateway.close()


def test_a_long_reply_is_cut_to_the_parts_it_may_cost() -> None:
    long = "Bản tin: " + "gió mạnh cấp 6 " * 40
    plan = fit(long, sms.Encoding.gsm7_unaccented, TARIFF, 2)
    assert plan.count == 2 and plan.text.endswith("...")
    # Cut between words: what is kept is the start of the text up to a space.
    assert sms.to_gsm7(long).startswith(plan.text.removesuffix("...") + " ")
    assert fit("Đã nhận", sms.Encoding.gsm7_unaccented, TARIFF, 2).text == "Da nhan"


def test_mo_octets_are_read_by_their_data_coding() -> None:
    assert decode_mo("Bão số 3 🌀".encode("utf-16-be"), 0x08) == "Bão số 3 🌀"
    assert decode_mo(bytes((0x44, 0x4B, 0x20, 0x00, 0x1B, 0x65)), 0x00) == "DK @€"
    assert decode_mo("Cà Mau".encode("latin-1"), 0x03) == "Cà Mau"
    assert decode_mo(b"DK", 0x01) == "DK"
    assert split_udh(bytes((5, 0, 3, 7, 2, 1)) + b"ab") == ((7, 2, 1), b"ab")
    assert split_udh(bytes((6, 8, 4, 1, 2, 3, 1)) + b"ab") == ((258, 3, 1), b"ab")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": ""}, "host"),
        ({"port": 70000}, "port: a whole number from 1 to 65535"),
        ({"port": "x"}, "port"),
        ({"system_id": "a" * 16}, "system_id"),
        ({"brandname": "HAI DANG VIET NAM"}, "brandname: a brandname has 1 to 11"),
        ({"encoding": "utf8"}, "encoding: one of gsm7_unaccented, ucs2"),
        ({"throughput": 0}, "throughput"),
        ({"window": 0}, "window"),
        ({"max_parts": 11}, "max_parts"),
        ({"cost_per_part_vnd": None}, "cost_per_part_vnd"),
        ({"carrier": "nope"}, "carrier: one of viettel"),
    ],
)
def test_bad_options_are_refused_saying_why(change: dict[str, object], message: str) -> None:
    good: dict[str, object] = {
        "host": "smpp.example.invalid", "port": 2775, "system_id": "haidang",
        "brandname": "HAIDANG", "cost_per_part_vnd": 550,
    }  # fmt: skip
    config = config_from(good, "secret")
    assert config.encoding is sms.Encoding.gsm7_unaccented and config.port == 2775
    assert config_from({**good, "port": "2775", "throughput": 40}, "s").throughput == 40.0
    with pytest.raises(ValueError, match=message):
        config_from({k: v for k, v in {**good, **change}.items() if v is not None}, "secret")
    with pytest.raises(ValueError, match="password"):
        config_from(good, "")
