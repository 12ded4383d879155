"""An urgent warning to 1,000 people on three channels with its fallback chain, through the
real service: Telegram (400), a Zalo Official Account (300) and SMS from feature phones
(300); then ZNS and SMS to the consented phones of those who did not acknowledge.

Everyone is reached once per step, the chain stops for whoever acknowledged (whenever and
wherever), nobody gets a second message on a channel they already had it on, two people
sharing one phone get one message, and the per-vessel report adds up with what each
person was sent and acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.zalo_oauth import seed
from broadcasts import bots, bulletins, fallback, readout, schedules, vessels, zns
from broadcasts.bots import TokenBox
from db.models import (
    Acknowledgement,
    Bot,
    BroadcastRun,
    Bulletin,
    Delivery,
    DeliveryState,
    Official,
    Platform,
    Subscriber,
    VesselRelation,
)
from haidang.settings import DEV_SECRET_KEY
from tests.bot.harness import running_service, until, until_async
from tests.broadcasts.engine import add_people, officials_pair
from tests.conftest import Database
from tests.fakes.smpp import FakeSmsc
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_oa import FakeZaloOA

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MINUTES = 10  # the chain's wait after each step
TEMPLATE = "231456"  # the fake's approved template: title, area, time
TITLE = "Bão số 3 tiến vào vịnh Bắc Bộ"
BODY = (
    "Gió mạnh cấp 10, giật cấp 12, sóng cao 5 mét. Tàu thuyền đang hoạt động trên biển "
    "khẩn trương vào nơi trú ẩn an toàn trước 18 giờ."
)
TELEGRAM = [str(700_000 + n) for n in range(400)]
FOLLOWERS = [str(4_957_181_112_390_000_000 + n) for n in range(300)]
FEATURE_PHONES = [f"8498{n:07d}" for n in range(300)]  # subscribed by SMS (DK)
SHARED = (318, 319)  # two Telegram people (a couple) who gave the same phone


def telegram_phone(n: int) -> str:
    return f"8491{min(n, SHARED[0]) if n in SHARED else n:07d}"


def follower_phone(n: int) -> str:
    return f"8492{n:07d}"


# Who gave a phone with consent: 320 of Telegram's 400, 240 of the OA's 300.
TELEGRAM_PHONES = {n: telegram_phone(n) for n in range(320)}
FOLLOWER_PHONES = {n: follower_phone(n) for n in range(240)}
# Acknowledged at once (step 0) on their own channel.
TELEGRAM_ACK_EARLY = range(150)
FOLLOWER_ACK_EARLY = range(100)
SMS_ACK = range(100)
TELEGRAM_ACK_AFTER_ZNS = range(150, 200)  # after the ZNS step reached them (in chat)
NO_ZALO = {telegram_phone(n) for n in range(200, 215)}  # ZNS refuses: no Zalo account
ZNS_UNDELIVERED = {follower_phone(n) for n in range(200, 210)}  # ZNS callback: failed
SMS_UNDELIVERED = {follower_phone(n) for n in range(230, 235)}  # SMS receipt: UNDELIV
# Blocked the bot before the warning: one crew reached only by the chain (they gave
# phones), one crew not reached at all (no phones).
BLOCKED = [*range(300, 310), *range(390, 400)]


async def _people(database: Database) -> dict[str, int]:
    """Subscribers by chat id; phones and consent as above."""
    await add_people(database, Platform.telegram, TELEGRAM)
    await add_people(database, Platform.zalo_oa, FOLLOWERS, bot_name="haiphong")
    await add_people(database, Platform.sms, FEATURE_PHONES, bot_name="viettel")
    consented = dt.datetime.now(dt.UTC)
    async with database.sessions.begin() as session:
        from db.models import ChatAddress

        rows = (await session.execute(select(ChatAddress.chat_id, ChatAddress.subscriber_id))).all()
        ids = {str(chat): int(person) for chat, person in rows}
        for chats, phones in ((TELEGRAM, TELEGRAM_PHONES), (FOLLOWERS, FOLLOWER_PHONES)):
            for n, phone in phones.items():
                person = await session.get_one(Subscriber, ids[chats[n]])
                person.phone, person.phone_consent_at = phone, consented
    return ids


async def _vessels(database: Database, everyone: list[int]) -> dict[str, list[int]]:
    """100 vessels of ten people each, in order: 40 of Telegram's people, 30 of the OA's,
    30 of the feature phones'."""
    crews: dict[str, list[int]] = {}
    async with database.sessions.begin() as session:
        for v in range(100):
            vessel, _ = await vessels.save(
                session, registration=f"HP-9{v:04d}-TS", name=f"Hải Âu {v}", commune="c11914",
            )  # fmt: skip
            crew = everyone[v * 10 : (v + 1) * 10]
            for k, person in enumerate(crew):
                relation = VesselRelation.captain if k == 0 else VesselRelation.crew
                await vessels.link(session, vessel.registration, person, relation)
            crews[vessel.registration] = crew
    return crews


async def _register(database: Database, fake: FakeZaloOA, smsc: FakeSmsc) -> dict[Platform, int]:
    box = TokenBox(DEV_SECRET_KEY)
    zalo = {
        "app_id": fake.app_id, "oa_id": fake.oa_id, "api_base_url": fake.base_url,
        "oauth_base_url": fake.base_url, "zns_base_url": fake.base_url,
        "rate_limited_pause_s": 0.3,
    }  # fmt: skip
    gateways: list[tuple[Platform, str, str, dict[str, Any]]] = [
        (Platform.zalo_oa, "haiphong", fake.app_secret, zalo),
        (Platform.zns, "haiphong", fake.app_secret, zalo),
        (Platform.sms, "viettel", smsc.password, {
            "host": "127.0.0.1", "port": smsc.port, "system_id": smsc.system_id,
            "brandname": "HAIDANG", "cost_per_part_vnd": 550, "carrier": "viettel",
        }),
    ]  # fmt: skip
    ids = {}
    async with database.sessions.begin() as session:
        for platform, name, secret, options in gateways:
            bot = await bots.add(
                session, box, platform=platform, name=name, token=secret, options=options,
                rate_per_second=200.0,
            )  # fmt: skip
            bot.quiet_start = bot.quiet_end = None
            bot.per_chat_interval = 0.05
            ids[platform] = bot.id
        await seed(session, box, fake.app_id, fake.refresh_token)
    return ids


async def _warning(database: Database, zns_bot: int) -> int:
    """The urgent warning with its chain (ZNS, then SMS), approved and scheduled now."""
    editor_id, approver_id = await officials_pair(database)
    now = dt.datetime.now(dt.UTC)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        template = await zns.add(
            session, bot=await session.get_one(Bot, zns_bot), template_id=TEMPLATE,
            name="Cảnh báo thiên tai", params={"title": "title", "area": "area", "time": "time"},
            price_vnd=300, official=editor, now=now, via="cli",
        )  # fmt: skip
        chain = bulletins.FallbackChain(MINUTES, (Platform.zns, Platform.sms), template.id)
        bulletin = await bulletins.create(
            session, author=editor, title=TITLE, body=BODY, area_codes=["11914"], now=now,
            urgent=True, submit=True, fallback=chain,
        )  # fmt: skip
        await bulletins.approve(
            session, bulletin, await session.get_one(Official, approver_id), now
        )
        await schedules.schedule(session, bulletin, editor, now=now, tz=TZ)
        return bulletin.id


async def _steps_settled(database: Database, step: int, expected: int) -> bool:
    async with database.sessions() as session:
        counts = dict(
            (
                await session.execute(
                    select(Delivery.state, func.count())
                    .where(Delivery.step == step)
                    .group_by(Delivery.state)
                )
            ).all()
        )
    open_ = counts.get(DeliveryState.pending, 0) + counts.get(DeliveryState.sending, 0)
    return sum(counts.values()) == expected and open_ == 0


async def _acknowledged(database: Database, bulletin_id: int) -> int:
    async with database.sessions() as session:
        found = await session.scalar(
            select(func.count()).where(Acknowledgement.bulletin_id == bulletin_id)
        )
    return int(found or 0)


async def _advance(database: Database, after: dt.timedelta) -> int:
    """One pass of the chain as the scheduler makes it, `after` from now."""
    async with database.sessions.begin() as session:
        return await fallback.advance(session, dt.datetime.now(dt.UTC) + after)


async def test_an_urgent_warning_on_three_channels_falls_back_to_zns_then_sms(
    seeded: Database, tmp_path: Path
) -> None:
    telegram_api = FakeTelegramAPI()
    for chat in TELEGRAM:
        telegram_api.register_chat(int(chat))
    for n in BLOCKED:
        telegram_api.user_blocks_bot(int(TELEGRAM[n]))
    chatting = Counter(c for n, c in enumerate(TELEGRAM) if n not in BLOCKED)
    fake = FakeZaloOA(no_zalo_account=NO_ZALO, undeliverable=ZNS_UNDELIVERED)
    fake.add_followers(FOLLOWERS)
    with FakeSmsc(undeliverable=SMS_UNDELIVERED) as smsc:
        async with telegram_api as api, fake:
            ids = await _register(seeded, fake, smsc)
            person = await _people(seeded)
            everyone = [person[c] for c in (*TELEGRAM, *FOLLOWERS, *FEATURE_PHONES)]
            crews = await _vessels(seeded, everyone)
            settings: dict[str, Any] = {
                "telegram_bot_token": api.token,
                "telegram_api_base_url": api.base_url,
            }
            async with running_service(seeded, tmp_path, webhook=True, **settings) as service:
                port = service.settings.http_port
                # One URL for all the app's events, as Zalo has it: ZNS callbacks included.
                hook = f"http://127.0.0.1:{port}/webhooks/zalo_oa/{ids[Platform.zalo_oa]}"
                fake.oa_webhook_url = fake.zns_webhook_url = hook
                await until(lambda: smsc.binds, 15)
                bulletin_id = await _warning(seeded, ids[Platform.zns])
                async with seeded.sessions() as session:
                    bulletin = await session.get_one(Bulletin, bulletin_id)
                    relay = await readout.for_bulletin(session, bulletin, TZ)
                assert relay is not None
                mark = relay.short[:40]

                def sms_warnings(number: str) -> int:
                    return sum(text.startswith(mark) for text in smsc.texts_to(number))

                def oa_warnings(user: str) -> int:
                    return sum(BODY in text for text in fake.texts_to(user))

                def telegram_warnings() -> Counter[str]:
                    return Counter(str(r.chat_id) for r in api.sent if BODY in (r.text or ""))

                # Step 0: everyone on their own channel, once.
                await until_async(lambda: _steps_settled(seeded, 0, 1000), 120)
                assert telegram_warnings() == chatting
                assert all(oa_warnings(u) == 1 for u in FOLLOWERS)
                assert all(sms_warnings(p) == 1 for p in FEATURE_PHONES)

                # Acknowledgements on each channel: a button, a typed word, an SMS keyword.
                for n in TELEGRAM_ACK_EARLY:
                    api.user_presses(int(TELEGRAM[n]), f"ack:{bulletin_id}")
                for n in FOLLOWER_ACK_EARLY:
                    await fake.send_text(FOLLOWERS[n], "da nhan")
                for n in SMS_ACK:
                    smsc.phone_sends(FEATURE_PHONES[n], "DA NHAN")
                early = len(TELEGRAM_ACK_EARLY) + len(FOLLOWER_ACK_EARLY) + len(SMS_ACK)
                await _acknowledgements(seeded, bulletin_id, early)

                # Not yet due: nothing. Due: ZNS to every consented phone not acknowledged.
                assert await _advance(seeded, dt.timedelta(minutes=MINUTES - 1)) == 0
                zns_people = [n for n in TELEGRAM_PHONES if n not in TELEGRAM_ACK_EARLY]
                zns_followers = [n for n in FOLLOWER_PHONES if n not in FOLLOWER_ACK_EARLY]
                zns_phones = {TELEGRAM_PHONES[n] for n in zns_people} | {
                    FOLLOWER_PHONES[n] for n in zns_followers
                }
                await _advance(seeded, dt.timedelta(minutes=MINUTES, seconds=30))
                await until_async(lambda: _steps_settled(seeded, 1, len(zns_phones)), 120)
                sent_zns = Counter(m.phone for m in fake.zns_sent)
                assert set(sent_zns) == zns_phones - NO_ZALO
                assert set(sent_zns.values()) == {1}
                assert {phone for phone, _ in fake.zns_errors} == NO_ZALO
                # Delivery callbacks (to the OA's URL) turn the undelivered into failures.
                zns_failed = len(NO_ZALO) + len(ZNS_UNDELIVERED)
                await until_async(lambda: _failed(seeded, 1, zns_failed), 60)

                # Some acknowledge in chat after the ZNS step: the chain stops for them.
                for n in TELEGRAM_ACK_AFTER_ZNS:
                    api.user_presses(int(TELEGRAM[n]), f"ack:{bulletin_id}")
                acked = early + len(TELEGRAM_ACK_AFTER_ZNS)
                await _acknowledgements(seeded, bulletin_id, acked)

                # SMS to the rest: never to a feature phone (they had it by SMS already).
                sms_people = [n for n in zns_people if n not in TELEGRAM_ACK_AFTER_ZNS]
                sms_phones = {TELEGRAM_PHONES[n] for n in sms_people} | {
                    FOLLOWER_PHONES[n] for n in zns_followers
                }
                await _advance(seeded, dt.timedelta(minutes=MINUTES, seconds=30))
                await until_async(lambda: _steps_settled(seeded, 2, len(sms_phones)), 120)
                for phone in {*TELEGRAM_PHONES.values(), *FOLLOWER_PHONES.values()}:
                    assert sms_warnings(phone) == (1 if phone in sms_phones else 0), phone
                assert all(sms_warnings(p) == 1 for p in FEATURE_PHONES)  # never twice
                assert telegram_warnings() == chatting
                assert all(oa_warnings(u) == 1 for u in FOLLOWERS)
                # Receipts of the undelivered SMS turn those deliveries to failed.
                await until_async(lambda: _failed(seeded, 2, len(SMS_UNDELIVERED)), 60)
                # The chain is over: another pass later makes nothing.
                assert await _advance(seeded, dt.timedelta(hours=2)) == 0

                async with seeded.sessions() as session:
                    report = await fallback.steps(session, bulletin_id, dt.datetime.now(dt.UTC))
                    vessel_report = await vessels.report(session, bulletin_id)
                    reached = await _reached(session, bulletin_id)
                    acks = set(
                        (
                            await session.scalars(
                                select(Acknowledgement.subscriber_id).where(
                                    Acknowledgement.bulletin_id == bulletin_id
                                )
                            )
                        ).all()
                    )

    # The progress page's steps: made, sent, failed, as the platforms had it.
    zns_step, sms_step = report
    assert (zns_step.platform, zns_step.created) == (Platform.zns, len(zns_phones))
    assert zns_step.failed == len(NO_ZALO) + len(ZNS_UNDELIVERED)
    assert zns_step.sent == len(zns_phones) - zns_step.failed
    assert zns_step.acknowledged == len(TELEGRAM_ACK_AFTER_ZNS)
    assert (sms_step.platform, sms_step.created) == (Platform.sms, len(sms_phones))
    assert sms_step.failed == len(SMS_UNDELIVERED)
    assert sms_step.pending == 0 and sms_step.not_yet_due == 0

    # Per vessel: acknowledged when anyone aboard acknowledged; else reached when anyone
    # aboard was sent it on any channel (a failed ZNS or SMS is not reached).
    statuses = Counter(row.status for row in vessel_report.rows)
    expected = Counter(
        vessels.VesselStatus.acknowledged
        if acks & set(crew)
        else vessels.VesselStatus.reached
        if reached & set(crew)
        else vessels.VesselStatus.not_reached
        for crew in crews.values()
    )
    assert statuses == expected
    assert sum(statuses.values()) == vessel_report.vessels == 100
    assert vessel_report.people == 1000
    assert vessel_report.people_acknowledged == len(acks) == acked
    assert vessel_report.people_reached == len(reached)
    print(
        f"\nchain: step 0 1000 people; ZNS {zns_step.created} made, {zns_step.sent} sent, "
        f"{zns_step.failed} failed; SMS {sms_step.created} made, {sms_step.sent} sent, "
        f"{sms_step.failed} failed; {acked} acknowledged; vessels {dict(statuses)}"
    )


async def _acknowledgements(database: Database, bulletin_id: int, expected: int) -> None:
    """Wait for exactly `expected` acknowledgements (generously: a loaded CI machine)."""
    found = -1
    for _ in range(240):
        found = await _acknowledged(database, bulletin_id)
        if found == expected:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{found} acknowledgements after 120 s, not {expected}")


async def _failed(database: Database, step: int, expected: int) -> bool:
    async with database.sessions() as session:
        found = await session.scalar(
            select(func.count()).where(
                Delivery.step == step, Delivery.state == DeliveryState.failed
            )
        )
    return found == expected


async def _reached(session: Any, bulletin_id: int) -> set[int]:
    """People sent the warning on any channel, from the deliveries themselves."""
    from db.models import ChatAddress

    runs = select(BroadcastRun.id).where(BroadcastRun.bulletin_id == bulletin_id)
    rows = await session.scalars(
        select(ChatAddress.subscriber_id)
        .join(Delivery, Delivery.chat_address_id == ChatAddress.id)
        .where(Delivery.run_id.in_(runs), Delivery.state == DeliveryState.sent)
        .distinct()
    )
    return set(rows.all())


async def test_the_scheduler_makes_each_step_by_itself(seeded: Database, tmp_path: Path) -> None:
    """Without anyone calling advance(): the service's scheduler makes the steps, each a
    minute after the last (the editor takes 5-720; the database takes one, and the
    minutes are made to pass by moving the sends back); nobody acknowledges."""
    chats = ["810001", "810002", "810003"]  # no phone; ZNS then SMS; ZNS refused then SMS
    phones = {chats[1]: "84931000002", chats[2]: "84931000003"}
    telegram_api = FakeTelegramAPI()
    for chat in chats:
        telegram_api.register_chat(int(chat))
    fake = FakeZaloOA(no_zalo_account={phones[chats[2]]})
    with FakeSmsc() as smsc:
        async with telegram_api as api, fake:
            ids = await _register(seeded, fake, smsc)
            await add_people(seeded, Platform.telegram, chats)
            async with seeded.sessions.begin() as session:
                from db.models import ChatAddress

                for chat, phone in phones.items():
                    address = await session.scalar(
                        select(ChatAddress).where(ChatAddress.chat_id == chat)
                    )
                    assert address is not None
                    person = await session.get_one(Subscriber, address.subscriber_id)
                    person.phone, person.phone_consent_at = phone, dt.datetime.now(dt.UTC)
            settings: dict[str, Any] = {
                "telegram_bot_token": api.token, "telegram_api_base_url": api.base_url,
            }  # fmt: skip
            async with running_service(seeded, tmp_path, webhook=True, **settings) as service:
                hook = (
                    f"http://127.0.0.1:{service.settings.http_port}"
                    f"/webhooks/zalo_oa/{ids[Platform.zalo_oa]}"
                )
                fake.oa_webhook_url = fake.zns_webhook_url = hook
                await until(lambda: smsc.binds, 15)
                bulletin_id = await _warning(seeded, ids[Platform.zns])
                async with seeded.sessions.begin() as session:
                    (await session.get_one(Bulletin, bulletin_id)).fallback_minutes = 1
                # Each step, once the last one is out: its minute passes (in the database).
                await until_async(lambda: _steps_settled(seeded, 0, 3), 60)
                await _minutes_pass(seeded, 2)
                await until_async(lambda: _steps_settled(seeded, 1, 2), 60)
                await _minutes_pass(seeded, 2)
                await until_async(lambda: _steps_settled(seeded, 2, 2), 60)
                assert [m.phone for m in fake.zns_sent] == [phones[chats[1]]]
                assert all(len(smsc.texts_to(p)) == 1 for p in phones.values())
                assert {d for d, _ in smsc.messages()} == set(phones.values())
                async with seeded.sessions() as session:
                    report = await fallback.steps(session, bulletin_id, dt.datetime.now(dt.UTC))
    assert [(s.platform, s.created, s.failed) for s in report] == [
        (Platform.zns, 2, 1),
        (Platform.sms, 2, 0),
    ]


async def _minutes_pass(database: Database, minutes: int) -> None:
    """As if `minutes` had passed since the runs started and their messages were sent."""
    back = dt.timedelta(minutes=minutes)
    async with database.sessions.begin() as session:
        for delivery in (await session.scalars(select(Delivery))).all():
            if delivery.sent_at is not None:
                delivery.sent_at -= back
        for run in (await session.scalars(select(BroadcastRun))).all():
            if run.started_at is not None:
                run.started_at -= back
