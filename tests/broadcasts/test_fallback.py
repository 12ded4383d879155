"""Fallback chains of urgent bulletins: who gets the ZNS and SMS steps, when, and once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import bulletins, fallback, runs, subscribers
from broadcasts.subscribers import ensure_bot
from db.models import (
    Acknowledgement,
    Area,
    Bot,
    BroadcastRun,
    Bulletin,
    ChatAddress,
    Delivery,
    DeliveryState,
    Official,
    Platform,
    RunState,
    Subscriber,
    Subscription,
)
from tests.broadcasts.engine import NOW, approved_bulletin, start_run
from tests.conftest import Database

MINUTE = dt.timedelta(minutes=1)
CHAIN_MINUTES = 30
SENT_AT = NOW + MINUTE  # when the step-0 messages that went out were sent
PEOPLE = 1000


def phone_of(i: int) -> str:
    # Persons 1 and 2 share one phone (a family's).
    return f"849{(1 if i == 2 else i):08d}"


@dataclass
class Person:
    index: int
    kind: str  # telegram, zalo or sms (subscribed through the SMS gateway)
    phone: str | None  # kept with consent
    acked: bool  # tapped "Đã nhận" before anything was due
    step0_sent: bool  # their step-0 message went out (else it failed)
    id: int = 0


@dataclass
class World:
    bulletin_id: int
    run_id: int
    people: list[Person]
    zns_bot: int
    sms_bot: int  # the gateway serving Hải Phòng (the people's province)
    sms_default: int  # the gateway serving no province (the SMS subscribers' own)
    by_id: dict[int, Person] = field(default_factory=dict)


def _person(i: int) -> Person:
    kind = "sms" if i % 10 == 9 else ("telegram" if i % 2 == 0 else "zalo")
    has_phone = kind == "sms" or i % 3 != 0
    return Person(
        index=i,
        kind=kind,
        phone=phone_of(i) if has_phone else None,
        acked=i % 5 == 0,
        step0_sent=i % 7 != 0,
    )


async def build_world(database: Database, platforms: tuple[str, ...] = ("zns", "sms")) -> World:
    """PEOPLE people of Cát Hải on Telegram, Zalo and SMS; an urgent bulletin with a chain
    (CHAIN_MINUTES) fanned out at NOW; step 0 sent at SENT_AT or failed; taps at SENT_AT."""
    people = [_person(i) for i in range(PEOPLE)]
    async with database.sessions.begin() as session:
        telegram = await ensure_bot(session, Platform.telegram)
        zalo = await ensure_bot(session, Platform.zalo)
        zns = await ensure_bot(session, Platform.zns)
        sms_default = await ensure_bot(session, Platform.sms)
        sms_hp = await ensure_bot(session, Platform.sms, "hai-phong")
        province = await session.scalar(select(Area.id).where(Area.code == "p31"))
        sms_hp.area_id = province
        # A disabled ZNS account serving Hải Phòng: never chosen.
        off = await ensure_bot(session, Platform.zns, "off")
        off.area_id, off.enabled = province, False
        area = await session.scalar(select(Area.id).where(Area.code == "11914"))
        assert area is not None
        rows = [
            Subscriber(
                consent_at=NOW,
                phone=p.phone,
                phone_consent_at=NOW if p.phone else None,
            )
            for p in people
        ]
        session.add_all(rows)
        await session.flush()
        bot_of = {"telegram": telegram.id, "zalo": zalo.id, "sms": sms_default.id}
        for person, row in zip(people, rows, strict=True):
            person.id = row.id
            chat_id = person.phone if person.kind == "sms" else f"{person.kind}-{person.index}"
            session.add(
                ChatAddress(subscriber_id=row.id, bot_id=bot_of[person.kind], chat_id=chat_id)
            )
            session.add(Subscription(subscriber_id=row.id, area_id=area))
        ids = (zns.id, sms_hp.id, sms_default.id)
    bulletin_id = await approved_bulletin(database, urgent=True)
    async with database.sessions.begin() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        bulletin.fallback_minutes = CHAIN_MINUTES
        bulletin.fallback_platforms = list(platforms)
    run_id = await start_run(database, bulletin_id)
    world = World(bulletin_id, run_id, people, *ids)
    world.by_id = {p.id: p for p in people}
    async with database.sessions.begin() as session:
        total = await session.scalar(select(func.count()).where(Delivery.run_id == run_id))
        assert total == PEOPLE
        sent = [p.id for p in people if p.step0_sent]
        await _set(session, run_id, 0, sent, state=DeliveryState.sent, sent_at=SENT_AT)
        failed = [p.id for p in people if not p.step0_sent]
        await _set(session, run_id, 0, failed, state=DeliveryState.blocked, reason="blocked")
        for person in people:
            if person.acked:
                session.add(
                    Acknowledgement(
                        bulletin_id=bulletin_id, subscriber_id=person.id, created_at=SENT_AT
                    )
                )
    return world


async def _set(
    session: AsyncSession, run_id: int, step: int, people: list[int], **values: object
) -> None:
    """Move the run's step-`step` deliveries reaching `people` (own or phone addresses)."""
    if not people:
        return
    phones = select(Subscriber.phone).where(
        Subscriber.id.in_(people), Subscriber.phone.is_not(None)
    )
    own = select(ChatAddress.id).where(ChatAddress.subscriber_id.in_(people))
    phone_addresses = select(ChatAddress.id).where(
        ChatAddress.fallback.is_(True), ChatAddress.chat_id.in_(phones)
    )
    await session.execute(
        update(Delivery)
        .where(
            Delivery.run_id == run_id,
            Delivery.step == step,
            Delivery.chat_address_id.in_(own) | Delivery.chat_address_id.in_(phone_addresses),
        )
        .values(**values)
    )


async def advance(database: Database, now: dt.datetime) -> int:
    async with database.sessions.begin() as session:
        return await fallback.advance(session, now)


async def step_rows(
    database: Database, run_id: int, step: int
) -> list[tuple[str | None, int, str]]:
    """(chat id, bot id, state) of the run's deliveries of `step`."""
    async with database.sessions() as session:
        rows = await session.execute(
            select(ChatAddress.chat_id, Delivery.bot_id, Delivery.state)
            .join(ChatAddress, ChatAddress.id == Delivery.chat_address_id)
            .where(Delivery.run_id == run_id, Delivery.step == step)
        )
        return [(c, b, s.value) for c, b, s in rows.all()]


async def test_the_chain_reaches_the_right_people_at_the_right_time(seeded: Database) -> None:
    world = await build_world(seeded)

    # Before the chain's minutes have passed since the start: nothing.
    assert await advance(seeded, NOW + (CHAIN_MINUTES - 1) * MINUTE) == 0
    assert await step_rows(seeded, world.run_id, 1) == []

    # At start + minutes: only those whose step-0 message failed (never sent) are due.
    early = NOW + CHAIN_MINUTES * MINUTE
    made = await advance(seeded, early)
    failed_first = {p.phone for p in world.people if p.phone and not p.acked and not p.step0_sent}
    # (Persons 1 and 2 share a phone; both messages went out: neither is due early.)
    assert made == len(failed_first)
    rows = await step_rows(seeded, world.run_id, 1)
    assert {chat for chat, _, _ in rows} == failed_first
    assert {bot for _, bot, _ in rows} == {world.zns_bot}
    assert {state for _, _, state in rows} == {"pending"}

    # At the sent messages' time + minutes: everyone with a phone and no tap, once per phone.
    due = SENT_AT + CHAIN_MINUTES * MINUTE
    made = await advance(seeded, due)
    everyone = {p.phone for p in world.people if p.phone and not p.acked}
    rows = await step_rows(seeded, world.run_id, 1)
    assert Counter(chat for chat, _, _ in rows) == Counter(everyone)  # one per phone
    assert made == len(everyone) - len(failed_first)
    # SMS subscribers get the ZNS step: they were not reached by ZNS.
    assert any(p.kind == "sms" and p.phone in everyone for p in world.people)
    # Nobody without a consented phone, nobody who tapped.
    assert all(p.phone not in {c for c, _, _ in rows} for p in world.people if p.acked)
    # Fallback addresses on the ZNS bot, and the SMS step is not due yet (ZNS pending).
    async with seeded.sessions() as session:
        made_addresses = await session.scalar(
            select(func.count()).where(ChatAddress.fallback.is_(True))
        )
        run = await session.get_one(BroadcastRun, world.run_id)
        assert run.total == PEOPLE + len(everyone)
    assert made_addresses == len(everyone)
    assert await step_rows(seeded, world.run_id, 2) == []

    # Idempotent: a second pass makes nothing.
    assert await advance(seeded, due) == 0

    # ZNS outcomes: a third failed (never delivered), the rest sent at T1; some tap after.
    zns_failed = {p.id for p in world.people if p.phone and not p.acked and p.index % 3 == 1}
    zns_sent = {p.id for p in world.people if p.phone and not p.acked} - zns_failed
    shared = {world.people[1].id, world.people[2].id}
    tapped_after = {i for i in zns_sent - shared if world.by_id[i].index % 4 == 2}
    t1 = due + 2 * MINUTE
    async with seeded.sessions.begin() as session:
        await _set(session, world.run_id, 1, sorted(zns_sent), state=DeliveryState.sent, sent_at=t1)
        await _set(
            session, world.run_id, 1, sorted(zns_failed), state=DeliveryState.failed, reason="x"
        )
        for person_id in tapped_after:
            session.add(
                Acknowledgement(
                    bulletin_id=world.bulletin_id, subscriber_id=person_id, created_at=t1 + MINUTE
                )
            )
    # Persons 1 (ZNS failed) and 2 (sent) share a phone: one delivery, failed in the end.

    # Right after: the SMS step for those whose ZNS failed, never for SMS subscribers.
    made = await advance(seeded, t1 + MINUTE)

    def sms_due(reached: set[int]) -> set[str]:
        return {
            world.by_id[i].phone  # type: ignore[misc]
            for i in reached
            if world.by_id[i].kind != "sms" and i not in tapped_after
        }

    first_sms = sms_due(zns_failed)  # person 1's failed ZNS was person 2's too
    rows = await step_rows(seeded, world.run_id, 2)
    assert {chat for chat, _, _ in rows} == first_sms
    assert made == len(first_sms)
    assert {bot for _, bot, _ in rows} == {world.sms_bot}  # Hải Phòng's gateway

    # At T1 + minutes: the rest who did not tap; an SMS subscriber never gets SMS again.
    made = await advance(seeded, t1 + CHAIN_MINUTES * MINUTE)
    rows = await step_rows(seeded, world.run_id, 2)
    sms_phones = Counter(chat for chat, _, _ in rows)
    assert set(sms_phones) == sms_due(zns_failed | zns_sent)
    assert max(sms_phones.values()) == 1
    sms_subscribers = {p.phone for p in world.people if p.kind == "sms"}
    assert not sms_subscribers & set(sms_phones)
    assert await advance(seeded, t1 + 10 * CHAIN_MINUTES * MINUTE) == 0

    # The follow-up of the chain.
    async with seeded.sessions() as session:
        reports = await fallback.steps(session, world.bulletin_id, t1 + CHAIN_MINUTES * MINUTE)
    zns_step, sms_step = reports
    assert (zns_step.platform, sms_step.platform) == (Platform.zns, Platform.sms)
    assert zns_step.created == len(everyone)
    assert zns_step.failed == len({world.by_id[i].phone for i in zns_failed})
    assert zns_step.sent == zns_step.created - zns_step.failed
    assert zns_step.acknowledged == len(tapped_after)
    assert sms_step.created == sms_step.pending == len(sms_phones)
    assert (zns_step.not_yet_due, sms_step.not_yet_due) == (0, 0)


async def test_a_skipped_step_costs_no_time_and_no_phone_means_no_step(seeded: Database) -> None:
    """With the chain SMS then ZNS, SMS subscribers skip the SMS step and get ZNS when the
    others get SMS."""
    world = await build_world(seeded, platforms=("sms", "zns"))
    due = SENT_AT + CHAIN_MINUTES * MINUTE
    await advance(seeded, due)
    sms_rows = await step_rows(seeded, world.run_id, 1)
    zns_rows = await step_rows(seeded, world.run_id, 2)
    chat_people = {p.phone for p in world.people if p.phone and not p.acked and p.kind != "sms"}
    sms_people = {p.phone for p in world.people if not p.acked and p.kind == "sms"}
    assert {chat for chat, _, _ in sms_rows} == chat_people
    assert {chat for chat, _, _ in zns_rows} == sms_people
    assert all(p.phone is None for p in world.people if p.index % 3 == 0 and p.kind != "sms")


async def test_two_passes_at_once_make_each_delivery_once(seeded: Database) -> None:
    world = await build_world(seeded)
    due = SENT_AT + CHAIN_MINUTES * MINUTE
    made = await asyncio.gather(advance(seeded, due), advance(seeded, due))
    everyone = {p.phone for p in world.people if p.phone and not p.acked}
    assert sum(made) == len(everyone)
    rows = await step_rows(seeded, world.run_id, 1)
    assert Counter(chat for chat, _, _ in rows) == Counter(everyone)
    async with seeded.sessions() as session:
        run = await session.get_one(BroadcastRun, world.run_id)
        assert run.total == PEOPLE + len(everyone)


@pytest.mark.parametrize("ending", ["cancelled", "expired", "past_expiry", "no_bot"])
async def test_an_ended_bulletin_or_no_bot_stops_the_chain(seeded: Database, ending: str) -> None:
    world = await build_world(seeded)
    due = SENT_AT + CHAIN_MINUTES * MINUTE
    async with seeded.sessions.begin() as session:
        bulletin = await session.get_one(Bulletin, world.bulletin_id)
        if ending == "cancelled":
            editor = await session.scalar(select(Official).where(Official.username == "editor"))
            assert editor is not None
            await bulletins.cancel(session, bulletin, editor, due - MINUTE)
        elif ending == "expired":
            bulletin.expires_at = due - MINUTE
            await bulletins.expire_due(session, due - MINUTE)
        elif ending == "past_expiry":
            bulletin.expires_at = due  # not yet marked expired by the scheduler
        else:
            await session.execute(
                update(Bot).where(Bot.platform == Platform.zns).values(enabled=False)
            )
    assert await advance(seeded, due) == 0
    assert await step_rows(seeded, world.run_id, 1) == []
    if ending == "no_bot":
        # The people wait at the ZNS step: enabling the bot lets them through.
        async with seeded.sessions.begin() as session:
            await session.execute(update(Bot).where(Bot.id == world.zns_bot).values(enabled=True))
        assert await advance(seeded, due) > 0


async def test_a_run_stays_open_while_a_step_may_come(seeded: Database) -> None:
    world = await build_world(seeded)
    async with seeded.sessions.begin() as session:
        assert await runs.finish_runs(session, SENT_AT + MINUTE) == []
        assert await runs.anything_to_finish(session, SENT_AT + MINUTE) is False
    due = SENT_AT + CHAIN_MINUTES * MINUTE
    await advance(seeded, due)
    async with seeded.sessions.begin() as session:
        assert await runs.finish_runs(session, due) == []  # ZNS rows pending
        await session.execute(
            update(Delivery)
            .where(Delivery.run_id == world.run_id, Delivery.step == 1)
            .values(state=DeliveryState.failed, reason="x")
        )
    later = due + CHAIN_MINUTES * MINUTE + fallback.CLOSE_GRACE
    async with seeded.sessions.begin() as session:
        # The SMS step is due (ZNS failed): the run is not closed before advance ran...
        assert await runs.finish_runs(session, due + MINUTE) == []
    assert await advance(seeded, due + MINUTE) > 0
    async with seeded.sessions.begin() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.run_id == world.run_id, Delivery.step == 2)
            .values(state=DeliveryState.sent, sent_at=due + 2 * MINUTE)
        )
    async with seeded.sessions.begin() as session:
        assert await runs.finish_runs(session, later) == []
        assert await runs.anything_to_finish(session, later) is False
    end = due + 2 * MINUTE + CHAIN_MINUTES * MINUTE + fallback.CLOSE_GRACE + MINUTE
    async with seeded.sessions.begin() as session:
        assert await runs.anything_to_finish(session, end) is True
        assert await runs.finish_runs(session, end) == [world.run_id]
        run = await session.get_one(BroadcastRun, world.run_id)
        assert run.state is RunState.done


async def test_removing_the_phone_blanks_its_fallback_addresses(seeded: Database) -> None:
    world = await build_world(seeded)
    await advance(seeded, SENT_AT + CHAIN_MINUTES * MINUTE)
    person = next(p for p in world.people if p.phone and not p.acked and p.kind == "zalo")
    async with seeded.sessions.begin() as session:
        row = await session.get_one(Subscriber, person.id)
        assert await subscribers.remove_phone(session, row)
    async with seeded.sessions() as session:
        address = await session.scalar(
            select(ChatAddress).where(
                ChatAddress.subscriber_id == person.id, ChatAddress.fallback.is_(True)
            )
        )
        assert address is not None
        assert (address.chat_id, address.active, address.inactive_reason) == (
            None,
            False,
            fallback.PHONE_REMOVED,
        )
        assert (
            await session.scalar(select(func.count()).where(ChatAddress.chat_id == person.phone))
            == 0
        )
