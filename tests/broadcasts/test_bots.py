"""Several bots per platform: sealed tokens, and every way a registration is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from broadcasts import bots
from broadcasts.bots import BotError, BotProblem, TokenBox
from broadcasts.subscribers import ensure_bot
from db.models import Area, Bot, Platform
from tests.conftest import Database

KEY = "bots-test-secret-" + "s" * 24
TOKEN = "7000000001:AAHsecretPartOfTheFirstToken_1"
OTHER = "7000000002:AAHsecretPartOfTheOtherToken-2"
ENV = "7000000009:AAHtheEnvironmentTokenSecret99"


async def _province_id(database: Database, code: str) -> int:
    async with database.sessions() as session:
        area_id = await session.scalar(select(Area.id).where(Area.code == code))
    assert area_id is not None
    return area_id


async def _refused(database: Database, problem: BotProblem, **kwargs: object) -> None:
    arguments: dict[str, object] = {"platform": Platform.telegram, "name": "hai-phong",
                                    "token": TOKEN, **kwargs}  # fmt: skip
    async with database.sessions() as session:
        with pytest.raises(BotError) as caught:
            await bots.add(session, TokenBox(KEY), **arguments)  # type: ignore[arg-type]
        await session.rollback()
    assert caught.value.problem is problem
    assert str(caught.value)  # an English explanation for the CLI and the logs


def test_token_box_round_trip_and_another_key() -> None:
    box = TokenBox(KEY)
    sealed = box.seal(TOKEN)
    assert TOKEN not in sealed and "AAHsecret" not in sealed
    assert box.seal(TOKEN) != sealed  # a fresh nonce every time
    assert box.open(sealed) == TOKEN
    assert TokenBox(KEY).open(sealed) == TOKEN  # the same SECRET_KEY, another process
    with pytest.raises(BotError) as caught:
        TokenBox(KEY + "-changed").open(sealed)
    assert caught.value.problem is BotProblem.unreadable
    with pytest.raises(BotError):
        box.open("not a sealed token")


async def test_add_stores_the_token_sealed(seeded: Database) -> None:
    hai_phong = await _province_id(seeded, "p31")
    async with seeded.sessions.begin() as session:
        bot = await bots.add(
            session, TokenBox(KEY), platform=Platform.telegram, name=" Hai-Phong ",
            token=f"  {TOKEN}\n", rate_per_second=12.5, link="https://t.me/haiphong_bot",
            province="p31",
        )  # fmt: skip
        bot_id = bot.id
    async with seeded.sessions() as session:
        stored = await session.get_one(Bot, bot_id)
        assert (stored.name, stored.rate_per_second, stored.link) == (
            "hai-phong",
            12.5,
            "https://t.me/haiphong_bot",
        )
        assert stored.area_id == hai_phong
        assert stored.token_sealed is not None and TOKEN not in stored.token_sealed
        assert TokenBox(KEY).open(stored.token_sealed) == TOKEN
        assert bots.label(stored) == "telegram:hai-phong"
        assert not bots.is_first(stored)
        assert [b.name for b in await bots.listing(session)] == ["hai-phong"]
        assert (await bots.get(session, Platform.telegram, "hai-phong")).id == bot_id
        with pytest.raises(BotError) as caught:
            await bots.get(session, Platform.zalo, "hai-phong")
        assert caught.value.problem is BotProblem.not_found


async def test_every_refusal_of_add(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        await bots.add(session, TokenBox(KEY), platform=Platform.telegram, name="quang-ngai",
                       token=OTHER, province="p51")  # fmt: skip
    for name in ("", "Hải Phòng", "-edge", "x" * 61, "under_score"):
        await _refused(seeded, BotProblem.bad_name, name=name)
    await _refused(seeded, BotProblem.first_bot_token, name="default")
    await _refused(seeded, BotProblem.name_taken, name="quang-ngai")
    for token in ("", "no-colon-here", "abc:AAHsecretPartOfTheFirst", "123:short"):
        await _refused(seeded, BotProblem.bad_token, token=token)
    # The account id (the digits) is what counts: a regenerated secret is the same bot.
    await _refused(seeded, BotProblem.token_taken, token="7000000002:AnotherSecretForTheSameBot")
    await _refused(seeded, BotProblem.token_taken, token=ENV, taken=[ENV])
    await _refused(
        seeded, BotProblem.token_taken, token="7000000009:NewSecretOfTheEnvBot", taken=[ENV]
    )
    for rate in (0.0, 1000.5, float("nan")):
        await _refused(seeded, BotProblem.bad_rate, rate_per_second=rate)
    for link in (
        "http://zalo.me/s/1",
        "zalo.me/s/1",
        "https://zalo.me/a b",
        "https://" + "x" * 250,
    ):
        await _refused(seeded, BotProblem.bad_link, link=link)
    for code in ("11914", "p99", "nonsense"):
        await _refused(seeded, BotProblem.not_a_province, province=code)
    await _refused(seeded, BotProblem.province_taken, province="p51")
    # Another platform: the same name, account id and province are free.
    async with seeded.sessions.begin() as session:
        zalo = await bots.add(session, TokenBox(KEY), platform=Platform.zalo, name="quang-ngai",
                              token=OTHER, province="p51")  # fmt: skip
        assert zalo.platform is Platform.zalo


async def test_set_token_and_place(seeded: Database) -> None:
    hai_phong = await _province_id(seeded, "p31")
    box = TokenBox(KEY)
    async with seeded.sessions.begin() as session:
        first = await ensure_bot(session, Platform.telegram)
        first.username = "haidang_bot"
        one = await bots.add(session, box, platform=Platform.telegram, name="one", token=TOKEN,
                             province="p31")  # fmt: skip
        two = await bots.add(session, box, platform=Platform.telegram, name="two", token=OTHER)
        one.username = "one_bot"
        ids = first.id, one.id, two.id
    async with seeded.sessions() as session:
        first, one, two = [await session.get_one(Bot, i) for i in ids]
        for bot, token, taken, problem in (
            (first, TOKEN, (), BotProblem.first_bot_token),
            (one, "not a token", (), BotProblem.bad_token),
            (one, "7000000002:SameAccountAsBotTwo", (), BotProblem.token_taken),
            (one, "7000000009:TheEnvironmentsAccount", [ENV], BotProblem.token_taken),
        ):
            with pytest.raises(BotError) as caught:
                await bots.set_token(session, box, bot, token, taken=taken)
            assert caught.value.problem is problem, (bot.name, token)
        for link, province, problem in (
            ("ftp://x", None, BotProblem.bad_link),
            (None, "01", BotProblem.not_a_province),
            (None, "p31", BotProblem.province_taken),  # bot "one" serves Hải Phòng
        ):
            with pytest.raises(BotError) as caught:
                await bots.set_place(session, two, link=link, province=province)
            assert caught.value.problem is problem
        await session.rollback()
    async with seeded.sessions.begin() as session:
        one = await session.get_one(Bot, ids[1])
        # A regenerated token of its own account is fine, and so is keeping its province.
        await bots.set_token(session, box, one, "7000000001:TheRegeneratedSecretPart", taken=[ENV])
        await bots.set_place(session, one, link="https://t.me/one_bot", province="p31")
        assert one.username is None  # read again with the new token
        assert bots.check_rate(5) == 5
        with pytest.raises(BotError):
            bots.check_rate(2000)
    async with seeded.sessions() as session:
        one = await session.get_one(Bot, ids[1])
        assert one.token_sealed is not None
        assert box.open(one.token_sealed) == "7000000001:TheRegeneratedSecretPart"
        assert one.link == "https://t.me/one_bot"
        assert one.area_id == hai_phong


async def test_a_token_sealed_with_an_old_key_does_not_block_others(seeded: Database) -> None:
    async with seeded.sessions.begin() as session:
        await bots.add(session, TokenBox("an old secret key " * 3), platform=Platform.zalo,
                       name="old", token=TOKEN)  # fmt: skip
    async with seeded.sessions.begin() as session:
        # Unreadable with today's key, so not compared; the new one is registered.
        await bots.add(session, TokenBox(KEY), platform=Platform.zalo, name="new", token=OTHER)


async def test_poster_bot_prefers_the_province_then_the_first_bot(seeded: Database) -> None:
    hai_phong = await _province_id(seeded, "p31")
    quang_ngai = await _province_id(seeded, "p51")
    box = TokenBox(KEY)
    async with seeded.sessions.begin() as session:
        assert await bots.poster_bot(session, Platform.telegram, hai_phong) is None
        # Registered before the service first started: a lower id than the first bot's.
        early = await bots.add(session, box, platform=Platform.telegram, name="early", token=OTHER)
        first = await ensure_bot(session, Platform.telegram)
        local = await bots.add(session, box, platform=Platform.telegram, name="hai-phong",
                               token=TOKEN, province="p31")  # fmt: skip
        assert early.id < first.id
        chosen = await bots.poster_bot(session, Platform.telegram, hai_phong)
        assert chosen is local
        assert await bots.poster_bot(session, Platform.telegram, quang_ngai) is first
        assert await bots.poster_bot(session, Platform.zalo, hai_phong) is None
        local.enabled = False  # a stopped bot prints on no poster
        await session.flush()
        assert await bots.poster_bot(session, Platform.telegram, hai_phong) is first
        first.enabled = False
        await session.flush()
        assert await bots.poster_bot(session, Platform.telegram, hai_phong) is early
