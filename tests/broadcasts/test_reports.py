"""Receipts and reports: counts by state, failure reasons, acknowledgement rates, the CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas, bulletins, reports, runs, subscribers
from broadcasts.subscribers import ensure_bot, follow_all_topics
from db.models import (
    Acknowledgement,
    AreaKind,
    Bot,
    BroadcastRun,
    Bulletin,
    BulletinState,
    ChatAddress,
    Delivery,
    DeliveryState,
    Official,
    OfficialRole,
    Platform,
    Priority,
    RunState,
    Subscriber,
    Subscription,
)
from tests.broadcasts.engine import NOW, add_people, approved_bulletin, start_run
from tests.conftest import Database

T0 = dt.datetime(2026, 11, 25, 23, 0, tzinfo=dt.UTC)  # 06:00 local on the 26th
T1 = T0 + dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)


@dataclass
class Receipts:
    """Ids of what build_receipts made: an urgent bulletin with two runs, a routine one."""

    bulletin_id: int
    routine_id: int
    run1: int
    run2: int


class Builder:
    """Plain ORM rows: people with one chat address each on one bot."""

    def __init__(self, session: AsyncSession, bot: Bot) -> None:
        self.session = session
        self.bot = bot
        self.count = 0

    async def person(self) -> tuple[Subscriber, ChatAddress]:
        self.count += 1
        subscriber = Subscriber(display_name=f"Ngư dân {self.count}")
        self.session.add(subscriber)
        await self.session.flush()
        address = ChatAddress(
            subscriber_id=subscriber.id, bot_id=self.bot.id, chat_id=str(1000 + self.count)
        )
        self.session.add(address)
        await self.session.flush()
        return subscriber, address

    async def deliveries(
        self,
        run: BroadcastRun,
        area_id: int,
        state: DeliveryState,
        n: int,
        reason: str | None = None,
        addresses: list[ChatAddress] | None = None,
    ) -> list[tuple[Subscriber, ChatAddress]]:
        people: list[tuple[Subscriber, ChatAddress]] = []
        for i in range(n):
            if addresses is None:
                people.append(await self.person())
                address = people[-1][1]
            else:
                address = addresses[i]
            self.session.add(
                Delivery(
                    run_id=run.id,
                    chat_address_id=address.id,
                    bot_id=self.bot.id,
                    area_id=area_id,
                    priority=0,
                    state=state,
                    reason=reason,
                )
            )
        await self.session.flush()
        return people


async def build_receipts(seeded: Database) -> Receipts:
    """Deliveries in every interesting state and area, and taps (also used by CLI tests)."""
    async with seeded.sessions.begin() as session:
        cat_hai = await areas.get_by_code(session, "11914")
        binh_son = await areas.get_by_code(session, "21040")
        hai_phong = await areas.get_by_code(session, "p31")
        village = await areas.add_subarea(session, "11914", "Thôn Liên Minh", AreaKind.village)
        author = Official(username="lan", password_hash="x", role=OfficialRole.admin)
        bot = Bot(platform=Platform.telegram)
        session.add_all([author, bot])
        await session.flush()

        def bulletin(priority: Priority) -> Bulletin:
            return Bulletin(
                title="Bão số 3",
                body="Tàu thuyền vào nơi tránh trú an toàn.",
                priority=priority,
                state=BulletinState.sending,
                author_id=author.id,
            )

        urgent, routine = bulletin(Priority.urgent), bulletin(Priority.routine)
        session.add_all([urgent, routine])
        await session.flush()
        run1 = BroadcastRun(bulletin_id=urgent.id, fire_at=T0, state=RunState.done, total=15)
        run2 = BroadcastRun(bulletin_id=urgent.id, fire_at=T1, state=RunState.sending, total=6)
        other = BroadcastRun(bulletin_id=routine.id, fire_at=T0, state=RunState.done, total=2)
        session.add_all([run1, run2, other])
        await session.flush()

        b = Builder(session, bot)
        # Run 1 (15 deliveries).
        cat_hai_sent = await b.deliveries(run1, cat_hai.id, DeliveryState.sent, 4)
        await b.deliveries(run1, cat_hai.id, DeliveryState.failed, 1, "chat_not_found")
        await b.deliveries(run1, cat_hai.id, DeliveryState.blocked, 1)  # no reason recorded
        await b.deliveries(run1, village.id, DeliveryState.sent, 2)
        await b.deliveries(run1, village.id, DeliveryState.pending, 1)
        binh_son_sent = await b.deliveries(run1, binh_son.id, DeliveryState.sent, 3)
        await b.deliveries(run1, binh_son.id, DeliveryState.failed, 1, "bad_request")
        await b.deliveries(run1, binh_son.id, DeliveryState.failed, 1, "chat_not_found")
        await b.deliveries(run1, hai_phong.id, DeliveryState.unknown, 1)
        # Run 2 reaches the same four people of Cát Hải again (6 deliveries).
        await b.deliveries(
            run2, cat_hai.id, DeliveryState.sent, 4, addresses=[a for _, a in cat_hai_sent]
        )
        await b.deliveries(run2, cat_hai.id, DeliveryState.cancelled, 1)
        # An address erased by /xoa after it was sent to: counted once, anonymously.
        session.add(
            Delivery(
                run_id=run2.id,
                chat_address_id=None,
                bot_id=bot.id,
                area_id=cat_hai.id,
                priority=0,
                state=DeliveryState.sent,
            )
        )
        await b.deliveries(other, cat_hai.id, DeliveryState.sent, 2)

        # Taps: three in Cát Hải after run 1 (no run recorded: credited to run 1), one in
        # Bình Sơn linked to run 1 explicitly, one in Bình Sơn after run 2, one from an
        # erased person with no area left.
        for (subscriber, _), at in zip(cat_hai_sent[:3], (T0 + MINUTE,) * 3, strict=True):
            session.add(
                Acknowledgement(
                    bulletin_id=urgent.id,
                    subscriber_id=subscriber.id,
                    area_id=cat_hai.id,
                    created_at=at,
                    bot_id=bot.id,
                )
            )
        session.add_all(
            [
                Acknowledgement(
                    bulletin_id=urgent.id,
                    run_id=run1.id,
                    subscriber_id=binh_son_sent[0][0].id,
                    area_id=binh_son.id,
                    created_at=T1 + MINUTE,
                    bot_id=bot.id,
                ),
                Acknowledgement(
                    bulletin_id=urgent.id,
                    subscriber_id=binh_son_sent[1][0].id,
                    area_id=binh_son.id,
                    created_at=T1 + 2 * MINUTE,
                    bot_id=bot.id,
                ),
                Acknowledgement(
                    bulletin_id=urgent.id, subscriber_id=None, area_id=None, created_at=T1
                ),
                Acknowledgement(
                    bulletin_id=routine.id,
                    subscriber_id=cat_hai_sent[0][0].id,
                    area_id=cat_hai.id,
                    created_at=T0 + MINUTE,
                ),
            ]
        )
        await session.flush()
        return Receipts(urgent.id, routine.id, run1.id, run2.id)


def _counts(**nonzero: int) -> dict[str, int]:
    return {state.value: nonzero.get(state.value, 0) for state in DeliveryState}


async def test_run_report_counts_reasons_and_acknowledgements(seeded: Database) -> None:
    ids = await build_receipts(seeded)
    async with seeded.sessions() as session:
        first = await reports.run_report(session, ids.run1)
        second = await reports.run_report(session, ids.run2)
        routine = (await reports.bulletin_report(session, ids.routine_id))["runs"][0]

    assert (first.run_id, first.bulletin_id, first.fire_at, first.state, first.total) == (
        ids.run1,
        ids.bulletin_id,
        T0,
        RunState.done,
        15,
    )
    assert first.counts == _counts(sent=9, failed=3, blocked=1, pending=1, unknown=1)
    assert list(first.counts) == [state.value for state in DeliveryState]
    assert first.failure_reasons == {"chat_not_found": 2, "bad_request": 1, "blocked": 1}
    # Three unlinked taps before run 2 plus one linked to run 1 explicitly.
    assert first.acknowledgements == 4
    assert first.ack_rate == pytest.approx(4 / 9)

    assert second.counts == _counts(sent=5, cancelled=1)
    assert second.failure_reasons == {}
    # The tap after run 2, and the erased person's tap at run 2's firing.
    assert second.acknowledgements == 2
    assert second.ack_rate == pytest.approx(2 / 5)

    assert routine.counts == _counts(sent=2)
    assert routine.acknowledgements == 1
    assert routine.ack_rate is None  # routine bulletins have no "Đã nhận" button


async def test_bulletin_report_totals_over_runs(seeded: Database) -> None:
    ids = await build_receipts(seeded)
    async with seeded.sessions() as session:
        report = await reports.bulletin_report(session, ids.bulletin_id)
        with pytest.raises(bulletins.BulletinError, match="no bulletin 9999"):
            await reports.bulletin_report(session, 9999)
        with pytest.raises(bulletins.BulletinError, match="no broadcast run 9999"):
            await reports.run_report(session, 9999)

    assert report["id"] == ids.bulletin_id
    assert report["state"] is BulletinState.sending
    assert report["priority"] is Priority.urgent
    assert [run.run_id for run in report["runs"]] == [ids.run1, ids.run2]
    assert report["counts"] == _counts(
        sent=14, failed=3, blocked=1, pending=1, unknown=1, cancelled=1
    )
    assert report["failure_reasons"] == {"chat_not_found": 2, "bad_request": 1, "blocked": 1}
    # 9 people reached by run 1 (the four of run 2 are the same) + 1 erased address.
    assert report["sent"] == 10
    assert report["acknowledgements"] == 6
    assert report["ack_rate"] == pytest.approx(6 / 10)


async def test_commune_rows_group_by_area_with_province_names(seeded: Database) -> None:
    ids = await build_receipts(seeded)
    async with seeded.sessions() as session:
        rows = await reports.commune_rows(session, ids.bulletin_id)
        routine_rows = await reports.commune_rows(session, ids.routine_id)

    by_code = {row.area_code: row for row in rows}
    assert [row.area_code for row in rows] == ["11914", "11914.1", "21040", "p31", ""]

    cat_hai = by_code["11914"]
    assert (cat_hai.area_name, cat_hai.province_name) == ("Đặc khu Cát Hải", "Thành phố Hải Phòng")
    assert cat_hai.counts == _counts(sent=9, failed=1, blocked=1, cancelled=1)
    assert (cat_hai.sent, cat_hai.acknowledgements) == (5, 3)  # 4 people + 1 erased address
    assert cat_hai.ack_rate == pytest.approx(3 / 5)

    village = by_code["11914.1"]
    assert (village.area_name, village.province_name) == ("Thôn Liên Minh", "Thành phố Hải Phòng")
    assert village.counts == _counts(sent=2, pending=1)
    assert (village.sent, village.acknowledgements, village.ack_rate) == (2, 0, 0.0)

    binh_son = by_code["21040"]
    assert (binh_son.area_name, binh_son.province_name) == ("Xã Bình Sơn", "Quảng Ngãi")
    assert binh_son.counts == _counts(sent=3, failed=2)
    assert (binh_son.sent, binh_son.acknowledgements) == (3, 2)

    province = by_code["p31"]
    assert (province.area_name, province.province_name) == (
        "Thành phố Hải Phòng",
        "Thành phố Hải Phòng",
    )
    assert province.counts == _counts(unknown=1)
    assert province.ack_rate is None  # nothing sent there

    unknown = by_code[""]
    assert unknown.counts == _counts()
    assert (unknown.sent, unknown.acknowledgements) == (0, 1)

    assert len(routine_rows) == 1
    assert routine_rows[0].acknowledgements == 1 and routine_rows[0].ack_rate is None


async def test_commune_csv_reads_back_in_excel_friendly_form(seeded: Database) -> None:
    ids = await build_receipts(seeded)
    async with seeded.sessions() as session:
        rows = await reports.commune_rows(session, ids.bulletin_id)
    text = reports.commune_csv(rows)
    assert text.startswith("\ufeff")
    encoded = text.encode("utf-8")
    # What Excel or a script reads from disk: UTF-8 with a BOM, which utf-8-sig strips.
    parsed = list(csv.reader(io.StringIO(encoded.decode("utf-8-sig"), newline="")))
    header, *body = parsed
    assert header == [
        "mã",
        "xã/phường",
        "tỉnh/thành",
        "chờ gửi",
        "đang gửi",
        "đã gửi",
        "lỗi",
        "bị chặn",
        "hết hạn",
        "không rõ",
        "đã hủy",
        "đã nhận",
        "tỉ lệ đã nhận",
    ]
    assert len(body) == len(rows) == 5
    table = {line[0]: dict(zip(header, line, strict=True)) for line in body}
    cat_hai = table["11914"]
    assert cat_hai["xã/phường"] == "Đặc khu Cát Hải"
    assert cat_hai["tỉnh/thành"] == "Thành phố Hải Phòng"
    assert (cat_hai["đã gửi"], cat_hai["lỗi"], cat_hai["bị chặn"], cat_hai["đã hủy"]) == (
        "9",
        "1",
        "1",
        "1",
    )
    assert (cat_hai["đã nhận"], cat_hai["tỉ lệ đã nhận"]) == ("3", "60.0%")
    assert table["21040"]["tỉnh/thành"] == "Quảng Ngãi"
    assert table["21040"]["tỉ lệ đã nhận"] == "66.7%"
    assert table["p31"]["tỉ lệ đã nhận"] == ""
    assert table[""]["xã/phường"] == "(không rõ)"


def test_csv_cells_never_become_formulas() -> None:
    row = reports.CommuneRow(
        area_code="11914.9",
        area_name='=HYPERLINK("http://x")',
        province_name="Thành phố Hải Phòng",
        counts={},
        sent=0,
        acknowledgements=0,
        ack_rate=None,
    )
    line = next(csv.reader(io.StringIO(reports.commune_csv([row]).splitlines()[1])))
    assert line[1] == '\'=HYPERLINK("http://x")'
    assert line[3:11] == ["0"] * 8


async def test_kept_area_totals_stay_exact_as_deliveries_move_on(seeded: Database) -> None:
    await add_people(seeded, Platform.telegram, [f"k{i}" for i in range(6)])
    bulletin_id = await approved_bulletin(seeded, urgent=True)
    # A run created but not fanned out yet: nothing to count, and nothing may be kept.
    async with seeded.sessions.begin() as session:
        run = await runs.create_run(
            session, bulletin_id=bulletin_id, schedule_id=None, fire_at=NOW, now=NOW
        )
        assert run is not None
        run_id = run.id
    totals = reports.AreaTotals()
    async with seeded.sessions() as session:
        report = await reports.bulletin_report(session, bulletin_id, totals)
    assert sum(report["counts"].values()) == 0
    async with seeded.sessions.begin() as session:
        await runs.fan_out(session, await session.get_one(BroadcastRun, run_id), NOW)

    async def follow() -> tuple[dict[str, int], dict[str, int]]:
        async with seeded.sessions() as session:
            report, rows = await reports.follow_up(session, bulletin_id, totals)
        assert [row.area_code for row in rows] == ["11914"]
        return report["counts"], rows[0].counts

    counts, commune = await follow()
    assert counts == commune == {**dict.fromkeys(counts, 0), "pending": 6}
    async with seeded.sessions.begin() as session:
        ids = (
            await session.scalars(
                select(Delivery.id).where(Delivery.run_id == run_id).order_by(Delivery.id)
            )
        ).all()
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:3]))
            .values(state=DeliveryState.sent, sent_at=NOW)
        )
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids[3])
            .values(state=DeliveryState.sending, lease_until=NOW)
        )
    counts, commune = await follow()  # the totals are kept now: pending is what is left
    expected = {**dict.fromkeys(counts, 0), "pending": 2, "sending": 1, "sent": 3}
    assert counts == commune == expected
    async with seeded.sessions() as session:
        alone = await reports.bulletin_report(session, bulletin_id)  # counted from scratch
    assert alone["counts"] == expected

    # A later fan_out of the run (someone subscribed since) changes its total: recounted.
    await add_people(seeded, Platform.telegram, ["late"])
    async with seeded.sessions.begin() as session:
        await runs.fan_out(session, await session.get_one(BroadcastRun, run_id), NOW)
    counts, commune = await follow()
    assert counts == commune == {**expected, "pending": 3}


@dataclass
class TwoBots:
    """Ids of what build_two_bots made: an urgent bulletin sent through two Telegram bots."""

    bulletin_id: int
    default: int
    quang_ngai: int


async def build_two_bots(database: Database) -> TwoBots:
    """Two Telegram bots ("default", "quang-ngai") with people in Cát Hải, a bulletin fanned
    out twice; deliveries moved on and taps as listed in the body (also used by web tests).

    default: d0-d5, plus "both" (on both bots); quang-ngai: q0-q3, plus "both".
    """
    await add_people(database, Platform.telegram, [f"d{i}" for i in range(6)])
    async with database.sessions.begin() as session:
        default = await ensure_bot(session, Platform.telegram)
        quang_ngai = await ensure_bot(session, Platform.telegram, "quang-ngai")
        quang_ngai.username = "haidang_qn_bot"
        area = await areas.get_by_code(session, "11914")
        people = [[(f"q{i}", quang_ngai)] for i in range(4)]
        for chats in [*people, [("both-d", default), ("both-q", quang_ngai)]]:
            person = Subscriber(consent_at=NOW)
            session.add(person)
            await session.flush()
            for chat_id, bot in chats:
                session.add(ChatAddress(subscriber_id=person.id, bot_id=bot.id, chat_id=chat_id))
            session.add(Subscription(subscriber_id=person.id, area_id=area.id))
            await follow_all_topics(session, person.id)
        default_id, quang_ngai_id = default.id, quang_ngai.id
    bulletin_id = await approved_bulletin(database, urgent=True)
    run1 = await start_run(database, bulletin_id)
    run2 = await start_run(database, bulletin_id, NOW + dt.timedelta(hours=1))

    async def move(run_id: int, chats: list[str], **values: object) -> None:
        async with database.sessions.begin() as session:
            addresses = select(ChatAddress.id).where(ChatAddress.chat_id.in_(chats))
            await session.execute(
                update(Delivery)
                .where(Delivery.run_id == run_id, Delivery.chat_address_id.in_(addresses))
                .values(**values)
            )

    sent = {"state": DeliveryState.sent, "sent_at": NOW + MINUTE}
    # Run 1: default 7 = 4 sent, 1 failed, 1 sending, 1 pending;
    #        quang-ngai 5 = 3 sent, 1 blocked, 1 pending.
    await move(run1, ["d0", "d1", "d2", "both-d", "q0", "q1", "both-q"], **sent)
    await move(run1, ["d3"], state=DeliveryState.failed, reason="chat_not_found")
    await move(run1, ["d4"], state=DeliveryState.sending, lease_until=NOW)
    await move(run1, ["q2"], state=DeliveryState.blocked, reason="blocked")
    # Run 2 reaches d0-d2 again (the same people: not reached twice), cancels the rest.
    await move(run2, ["d0", "d1", "d2"], **sent)
    await move(run2, ["d3", "d4", "d5", "both-d", "q0", "q1", "q2", "q3", "both-q"],
               state=DeliveryState.cancelled)  # fmt: skip
    # Taps, each credited to the bot it came through: d0, d1, d3 (default), q0 and "both"
    # pressed on quang-ngai's message; and one recorded before taps named their bot.
    async with database.sessions.begin() as session:
        for chat_id in ("d0", "d1", "q0", "both-q", "d3"):
            address = await session.scalar(
                select(ChatAddress).where(ChatAddress.chat_id == chat_id)
            )
            assert address is not None
            person = await session.get_one(Subscriber, address.subscriber_id)
            assert await subscribers.acknowledge(
                session, bulletin_id=bulletin_id, subscriber=person, now=NOW + 2 * MINUTE,
                bot_id=address.bot_id,
            )  # fmt: skip
        # A tap recorded before taps named their bot (bot_id NULL), of a person since erased.
        session.add(Acknowledgement(bulletin_id=bulletin_id, subscriber_id=None, created_at=NOW))
    return TwoBots(bulletin_id, default_id, quang_ngai_id)


async def test_each_bots_share_adds_up_to_the_bulletin(seeded: Database) -> None:
    ids = await build_two_bots(seeded)
    totals = reports.AreaTotals()
    async with seeded.sessions() as session:
        report, rows = await reports.follow_up(session, ids.bulletin_id, totals)
        again = await reports.bulletin_report(session, ids.bulletin_id, totals)  # kept totals

    default, quang_ngai = report["bots"]
    assert (default.bot_id, default.platform, default.name, default.username) == (
        ids.default,
        Platform.telegram,
        "default",
        None,
    )
    assert (quang_ngai.bot_id, quang_ngai.name, quang_ngai.username) == (
        ids.quang_ngai,
        "quang-ngai",
        "haidang_qn_bot",
    )
    assert default.counts == _counts(
        sent=7, failed=1, sending=1, pending=1, cancelled=4
    )  # 7 + 7 deliveries
    assert quang_ngai.counts == _counts(sent=3, blocked=1, pending=1, cancelled=5)
    # People reached: d0-d2 count once over both runs.
    assert (default.sent, quang_ngai.sent) == (4, 3)
    assert (default.acknowledgements, quang_ngai.acknowledgements) == (3, 2)
    assert default.ack_rate == pytest.approx(3 / 4)
    assert quang_ngai.ack_rate == pytest.approx(2 / 3)
    assert report["acknowledgements_unattributed"] == 1  # the tap that names no bot

    # The shares add up to the bulletin's totals, state by state.
    for state in report["counts"]:
        assert default.counts[state] + quang_ngai.counts[state] == report["counts"][state]
    assert report["counts"] == _counts(
        sent=10, failed=1, sending=1, blocked=1, pending=2, cancelled=9
    )
    assert default.sent + quang_ngai.sent == report["sent"] == 7
    assert (
        default.acknowledgements + quang_ngai.acknowledgements
        + report["acknowledgements_unattributed"]
        == report["acknowledgements"]
        == 6
    )  # fmt: skip
    # The per-commune rows are unchanged: both bots' people are in Cát Hải (and the erased
    # person's tap is of no area).
    assert [row.area_code for row in rows] == ["11914", ""]
    assert rows[0].counts == report["counts"]
    assert again["bots"] == report["bots"]


async def test_routine_bulletins_count_no_taps_per_bot(seeded: Database) -> None:
    ids = await build_receipts(seeded)
    async with seeded.sessions() as session:
        urgent = await reports.bulletin_report(session, ids.bulletin_id)
        routine = await reports.bulletin_report(session, ids.routine_id)

    (bot,) = urgent["bots"]
    assert bot.counts == urgent["counts"]
    assert bot.sent == urgent["sent"] == 10
    # Every tap but the erased person's is credited to the one bot.
    assert (bot.acknowledgements, urgent["acknowledgements_unattributed"]) == (5, 1)
    assert bot.ack_rate == pytest.approx(5 / 10)
    (routine_bot,) = routine["bots"]
    assert routine_bot.counts == routine["counts"] == _counts(sent=2)
    assert (routine_bot.acknowledgements, routine_bot.ack_rate) == (None, None)
    assert routine["acknowledgements_unattributed"] == 0
