"""ZNS templates: registration checks, filling within Zalo's limits, the chain on a bulletin,
and the worst-case cost of a chain computed from real rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from broadcasts import bulletins, readout, sms, zns
from broadcasts.subscribers import ensure_bot
from db.models import (
    AuditEntry,
    Bot,
    Bulletin,
    ChatAddress,
    Official,
    Platform,
    Priority,
    Subscriber,
    SubscriberStatus,
    ZnsTemplate,
)
from tests.broadcasts.engine import NOW, add_people, officials_pair
from tests.conftest import Database

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TITLE = "Bão số 15 (bão Koto) đang di chuyển vào Biển Đông với gió giật cấp 12"
BODY = (
    "Hồi 13 giờ ngày 7/12, vị trí tâm bão ở khoảng 14,5 độ Vĩ Bắc; 116,0 độ Kinh Đông. "
    "Tàu thuyền không ra khơi, khẩn trương vào nơi trú ẩn an toàn trước 17 giờ."
)
PARAMS = {"tieu_de": "title", "khu_vuc": "area", "thoi_gian": "time", "noi_dung": "summary:200"}


async def _zns_bot(database: Database, name: str = "default") -> int:
    async with database.sessions.begin() as session:
        return (await ensure_bot(session, Platform.zns, name)).id


async def _add(database: Database, bot_id: int, **overrides: object) -> ZnsTemplate:
    arguments: dict[str, object] = {
        "template_id": "367891", "name": "Cảnh báo khẩn", "params": PARAMS, "price_vnd": 440,
    }  # fmt: skip
    arguments.update(overrides)
    editor_id, _ = await officials_pair(database)
    async with database.sessions.begin() as session:
        bot = await session.get_one(Bot, bot_id)
        official = await session.get_one(Official, editor_id)
        return await zns.add(
            session, bot=bot, official=official, now=NOW, via="cli",
            **arguments,  # type: ignore[arg-type]
        )  # fmt: skip


async def test_add_checks_and_audits(seeded: Database) -> None:
    bot_id = await _zns_bot(seeded)
    template = await _add(seeded, bot_id)
    assert template.params == PARAMS and template.price_vnd == 440 and template.enabled
    async with seeded.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "zns_template.add")
        )
        assert entry is not None and entry.object_id == str(template.id)
        assert entry.details["template_id"] == "367891" and entry.official_id is not None

    refused: dict[str, dict[str, object]] = {
        "bad_template_id": {"template_id": "36-78"},
        "bad_name": {"name": "  "},
        "no_params": {"params": {}},
        "bad_param": {"params": {"tiêu đề": "title"}},
        "unknown_source": {"params": {"x": "weather"}},
        "bad_limit": {"params": {"x": "title:201"}},
        "bad_price": {"price_vnd": -1},
        "duplicate": {},
    }
    for problem, overrides in refused.items():
        with pytest.raises(zns.ZnsError) as caught:
            await _add(seeded, bot_id, **overrides)
        assert caught.value.problem == problem, problem

    async with seeded.sessions.begin() as session:
        telegram = await ensure_bot(session, Platform.telegram)
    with pytest.raises(zns.ZnsError) as caught:
        await _add(seeded, telegram.id, template_id="1")
    assert caught.value.problem is zns.ZnsProblem.not_zns_bot
    # The same Zalo id on another ZNS account is another template.
    other = await _add(seeded, await _zns_bot(seeded, "quang-ninh"))
    async with seeded.sessions() as session:
        assert await session.scalar(select(ZnsTemplate.id).where(ZnsTemplate.id == other.id))
        assert len(await zns.listing(session)) == 2


async def test_disable_keeps_the_row_and_drops_it_from_choices(seeded: Database) -> None:
    template = await _add(seeded, await _zns_bot(seeded))
    async with seeded.sessions.begin() as session:
        found = await zns.get(session, "367891")
        assert [t.id for t in await zns.enabled_templates(session)] == [found.id]
        assert await zns.disable(session, found, official=None, now=NOW, via="web")
        assert not await zns.disable(session, found, official=None, now=NOW, via="web")
    async with seeded.sessions() as session:
        assert await zns.enabled_templates(session) == []
        assert (await zns.get(session, template.id)).enabled is False
        actions = (await session.scalars(select(AuditEntry.action))).all()
        assert actions.count("zns_template.disable") == 1
        with pytest.raises(zns.ZnsError):
            await zns.get(session, "999")


def _bulletin(**overrides: object) -> Bulletin:
    values: dict[str, object] = {
        "title": TITLE, "body": BODY, "approved_at": dt.datetime(2026, 12, 7, 6, 5, tzinfo=dt.UTC),
        "expires_at": None,
    }  # fmt: skip
    values.update(overrides)
    return Bulletin(**values)


def test_fill_cuts_each_value_to_its_parameters_limit() -> None:
    template = ZnsTemplate(
        params={
            "tieu_de": "title", "xa": "area", "luc": "time", "tom_tat": "summary:200",
            "tin_ngan": "readout:160", "mot_chut": "summary:12",
        }
    )  # fmt: skip
    data = zns.fill(template, _bulletin(), "Đặc khu Cát Hải", NOW, TZ)
    assert set(data) == set(template.params)
    # Zalo's 30 characters for a parameter with no limit registered: cut between words.
    assert len(TITLE) > zns.PARAM_LIMIT
    assert data["tieu_de"] == "Bão số 15 (bão Koto) đang di…"
    assert len(data["tieu_de"]) <= zns.PARAM_LIMIT
    assert data["xa"] == "Đặc khu Cát Hải"
    assert data["luc"] == "13:05 07/12/2026"  # approved at 06:05 UTC, local time
    assert data["tom_tat"] == BODY  # 158 characters: within the 200 registered
    assert data["mot_chut"] == "Hồi 13 giờ…"
    relay = readout.build(TITLE, BODY, priority=Priority.urgent, tz=TZ)
    assert relay is not None and data["tin_ngan"] == relay.short
    # A given read-out (the lead's, with the areas) is used as is; an unapproved bulletin
    # says the time of sending; an empty source is "-" (Zalo refuses a missing value).
    data = zns.fill(template, _bulletin(approved_at=None), "", NOW, TZ, relay="KHAN: Bao so 15.")
    assert data["tin_ngan"] == "KHAN: Bao so 15." and data["luc"] == "10:00 25/11/2026"
    assert data["xa"] == "-"


def test_parse_param() -> None:
    assert zns.parse_param("summary") == ("summary", zns.PARAM_LIMIT)
    assert zns.parse_param("readout:160") == ("readout", 160)
    for bad in ("summary:0", "summary:abc", "phone", "title:"):
        with pytest.raises(zns.ZnsError):
            zns.parse_param(bad)


async def _create(
    database: Database, *, urgent: bool = True, fallback: bulletins.FallbackChain | None
) -> Bulletin:
    editor_id, _ = await officials_pair(database)
    async with database.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        return await bulletins.create(
            session, author=editor, title=TITLE, body=BODY, area_codes=["11914"], now=NOW,
            urgent=urgent, fallback=fallback,
        )  # fmt: skip


async def test_a_bulletins_chain_is_checked_saved_and_audited(seeded: Database) -> None:
    template = await _add(seeded, await _zns_bot(seeded))
    chain = bulletins.FallbackChain(
        minutes=15, platforms=(Platform.zns, Platform.sms), zns_template_id=template.id
    )
    saved = await _create(seeded, fallback=chain)
    assert saved.fallback_minutes == 15 and saved.fallback_platforms == ["zns", "sms"]
    assert saved.zns_template_id == template.id
    async with seeded.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "bulletin.create", AuditEntry.object_id == str(saved.id)
            )
        )
        assert entry is not None
        assert entry.details["fallback"]["fallback_platforms"] == ["zns", "sms"]

    refusals: list[tuple[dict[str, object], str]] = [
        (dict(urgent=False), "only an urgent bulletin"),
        (dict(minutes=4), "fallback minutes must be 5-720"),
        (dict(minutes=721), "fallback minutes must be 5-720"),
        (dict(platforms=(Platform.sms, Platform.sms)), "at most once"),
        (dict(platforms=(Platform.telegram,)), "a fallback step is zns or sms"),
        (dict(zns_template_id=None), "needs a ZNS template"),
        (dict(zns_template_id=template.id + 100), "no enabled ZNS template"),
    ]
    for change, message in refusals:
        urgent = bool(change.pop("urgent", True))
        refused = dataclasses.replace(chain, **change)  # type: ignore[arg-type]
        with pytest.raises(bulletins.BulletinError, match=message):
            await _create(seeded, urgent=urgent, fallback=refused)
    # SMS alone needs no template (one given is not kept); no steps: no chain at all.
    sms_only = await _create(
        seeded, fallback=bulletins.FallbackChain(15, (Platform.sms,), template.id)
    )
    assert sms_only.fallback_platforms == ["sms"] and sms_only.zns_template_id is None
    routine = await _create(
        seeded, urgent=False, fallback=bulletins.FallbackChain(15, (), template.id)
    )
    assert routine.fallback_platforms == [] and routine.fallback_minutes is None

    # Editing replaces the chain and says so in the audit row; a disabled template is refused.
    editor_id, _ = await officials_pair(seeded)
    async with seeded.sessions.begin() as session:
        editor = await session.get_one(Official, editor_id)
        draft = await session.get_one(Bulletin, saved.id)
        changed = await bulletins.edit(
            session, draft, editor=editor, title=TITLE, body=BODY, area_codes=["11914"],
            now=NOW, urgent=True, fallback=bulletins.FallbackChain(60, (Platform.sms,)),
        )  # fmt: skip
        assert set(changed) == {"fallback_minutes", "fallback_platforms", "zns_template_id"}
        await zns.disable(session, await zns.get(session, template.id), official=None, now=NOW,
                          via="cli")  # fmt: skip
        with pytest.raises(bulletins.BulletinError, match="no enabled ZNS template"):
            await bulletins.edit(
                session, draft, editor=editor, title=TITLE, body=BODY, area_codes=["11914"],
                now=NOW, urgent=True, fallback=chain,
            )  # fmt: skip


async def _phones(database: Database, bot_id: int, consented: list[bool]) -> None:
    """Give the bot's people phones: consented or merely typed (no consent)."""
    async with database.sessions.begin() as session:
        people = (
            await session.scalars(
                select(Subscriber)
                .join(ChatAddress, ChatAddress.subscriber_id == Subscriber.id)
                .where(ChatAddress.bot_id == bot_id)
                .order_by(Subscriber.id)
            )
        ).all()
        for person, consent in zip(people, consented, strict=False):
            person.phone = f"8491234{person.id:04d}"
            person.phone_consent_at = NOW if consent else None


async def test_phone_preview_counts_real_rows_and_prices_the_worst_case(
    seeded: Database,
) -> None:
    telegram = await add_people(seeded, Platform.telegram, [f"t{i}" for i in range(6)])
    zalo = await add_people(seeded, Platform.zalo, ["z1", "z2"])
    elsewhere = await add_people(seeded, Platform.telegram, ["far"], area_code="11311")
    # 4 consented phones on Telegram, 1 typed without consent; 1 on Zalo; 1 out of the
    # area; one consented person has stopped.
    await _phones(seeded, telegram, [True, True, True, True, False, True])
    await _phones(seeded, zalo, [True])
    await _phones(seeded, elsewhere, [True])
    async with seeded.sessions.begin() as session:
        stopped = await session.scalar(
            select(Subscriber)
            .join(ChatAddress, ChatAddress.subscriber_id == Subscriber.id)
            .where(ChatAddress.chat_id == "t5")
        )
        assert stopped is not None
        stopped.status = SubscriberStatus.stopped
        gateway = Bot(
            platform=Platform.sms, name="viettel",
            options={"cost_per_part_vnd": 700, "carrier": "viettel", "encoding": "ucs2"},
        )  # fmt: skip
        session.add(gateway)
    template = await _add(seeded, await _zns_bot(seeded))
    chain = bulletins.FallbackChain(10, (Platform.zns, Platform.sms), template.id)
    bulletin = await _create(seeded, fallback=chain)

    async with seeded.sessions() as session:
        stored = await session.get_one(Bulletin, bulletin.id)
        preview = await zns.phone_preview(session, stored, tz=TZ)
        relay = await readout.for_bulletin(session, stored, TZ)
    assert relay is not None
    assert preview.people == 5 and preview.minutes == 10
    assert preview.steps == (Platform.zns, Platform.sms)
    assert preview.zns is not None and preview.zns.price_each_vnd == 440
    assert preview.zns.total_vnd == 5 * 440
    cost = preview.sms
    assert cost is not None and cost.bot is not None and cost.bot.name == "viettel"
    assert cost.encoding is sms.Encoding.ucs2 and cost.cost_per_part_vnd == 700
    tariff = sms.tariff_from(cost.bot.options)
    for encoding, plan in (
        (sms.Encoding.gsm7_unaccented, cost.gsm7),
        (sms.Encoding.ucs2, cost.ucs2),
    ):
        text = sms.bulletin_text(TITLE, BODY, short=relay.short, encoding=encoding, tariff=tariff)
        assert plan == sms.plan(text, encoding, tariff)
    assert cost.gsm7.count == 1 and cost.ucs2.count == 2  # accents cost a second part
    ways = preview.sms_ways()
    assert [(w[0], w[2], w[3]) for w in ways] == [
        (sms.Encoding.gsm7_unaccented, 700, 5 * 700),
        (sms.Encoding.ucs2, 1400, 5 * 1400),
    ]
    # The gateway sends UCS-2: that is what the worst case counts.
    assert preview.total_vnd == 5 * 440 + 5 * 1400

    # Narrowed to Zalo, only its consented person; a gateway without a price: parts only.
    async with seeded.sessions.begin() as session:
        stored = await session.get_one(Bulletin, bulletin.id)
        stored.audience_platforms = ["zalo"]
        bot = await session.scalar(select(Bot).where(Bot.name == "viettel"))
        assert bot is not None
        bot.options = {"carrier": "viettel"}
        preview = await zns.phone_preview(session, stored, tz=TZ)
    assert preview.people == 1
    assert preview.sms is not None and preview.sms.cost_per_part_vnd is None
    assert preview.sms.gsm7.count == 1 and preview.total_vnd is None


async def test_no_chain_no_cost(seeded: Database) -> None:
    bulletin = await _create(seeded, fallback=None)
    async with seeded.sessions() as session:
        preview = await zns.phone_preview(session, bulletin, tz=TZ)
    assert preview.people == 0 and preview.zns is None and preview.sms is None
    assert preview.total_vnd == 0
