"""Bots on the dashboard: admins add them and replace tokens; a token is never shown again."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from broadcasts import bots
from broadcasts.bots import BotProblem, TokenBox
from broadcasts.subscribers import ensure_bot
from db.models import AuditEntry, Bot, Platform
from tests.conftest import Database
from tests.web.dashboard_helpers import SECRET, Client, make_officials, settings
from web.dashboard import make_router, texts

ENV_TOKEN = "6660000001:AAHenvironmentTokenOfTheFirstBot"
TOKEN = "6660000002:AAHtheSecretOfTheQuangNgaiBot_x"
NEW_TOKEN = "6660000002:AAHaRegeneratedSecretForTheBot-y"
SECRETS = ("AAHenvironmentToken", "AAHtheSecretOf", "AAHaRegenerated")
ZALO = "https://zalo.me/s/1234567890"
ZALO_QN = "https://zalo.me/s/5550001111"


def _app(database: Database, **overrides: Any) -> FastAPI:
    app = FastAPI()
    options: dict[str, Any] = {"telegram_bot_token": SecretStr(ENV_TOKEN), **overrides}
    app.include_router(make_router(database.sessions, settings(**options)))
    return app


async def _first_bots(database: Database) -> dict[Platform, int]:
    async with database.sessions.begin() as session:
        telegram = await ensure_bot(session, Platform.telegram)
        telegram.username = "haidang_bot"
        zalo = await ensure_bot(session, Platform.zalo)
        return {Platform.telegram: telegram.id, Platform.zalo: zalo.id}


def _new_bot(**changes: str) -> dict[str, str]:
    return {"platform": "telegram", "name": "quang-ngai", "token": TOKEN,
            "rate_per_second": "12", "province": "p51", "link": "", **changes}  # fmt: skip


def _clean(text: str) -> None:
    assert not any(secret in text for secret in SECRETS)


async def test_an_admin_adds_a_bot_and_replaces_its_token(seeded: Database) -> None:
    ids = await make_officials(seeded)
    first = await _first_bots(seeded)
    async with Client(_app(seeded)) as admin:
        await admin.login("root")
        page = await admin.get("/dashboard/admin/bots")
        assert page.status_code == 200
        assert "Token: lấy từ biến môi trường TELEGRAM_BOT_TOKEN" in page.text
        assert "Token: lấy từ biến môi trường ZALO_BOT_TOKEN" in page.text
        assert 'type="password" autocomplete="off"' in page.text
        assert '<option value="p51">Quảng Ngãi (p51)</option>' in page.text

        added = await admin.post("/dashboard/admin/bots", _new_bot())
        assert added.status_code == 303, added.text
        assert added.headers["location"].endswith("ok=bot_added")
        async with seeded.sessions() as session:
            bot = await bots.get(session, Platform.telegram, "quang-ngai")
        assert bot.token_sealed is not None and TokenBox(SECRET).open(bot.token_sealed) == TOKEN
        assert bot.rate_per_second == 12.0

        page = await admin.get("/dashboard/admin/bots")
        assert f'id="bot-{bot.id}"' in page.text
        assert page.text.count(texts.BOT_TOKEN_STORED) == 1
        assert '<option value="p51" selected>' in page.text
        _clean(page.text)

        # A blank token keeps the old one; the province and link change.
        placed = await admin.post(
            f"/dashboard/admin/bots/{bot.id}/place",
            {"province": "", "link": "https://t.me/quangngai_bot", "token": ""},
        )
        assert placed.headers["location"].endswith("ok=bot_saved")
        replaced = await admin.post(
            f"/dashboard/admin/bots/{bot.id}/place",
            {"province": "", "link": "https://t.me/quangngai_bot", "token": f" {NEW_TOKEN} "},
        )
        assert replaced.status_code == 303
        assert replaced.headers["location"].endswith("ok=bot_token_saved")
        # The first bot's form takes its province and link, and no token.
        first_placed = await admin.post(
            f"/dashboard/admin/bots/{first[Platform.zalo]}/place",
            {"province": "", "link": ZALO},
        )
        assert first_placed.status_code == 303
        _clean((await admin.get("/dashboard/admin/bots")).text)
        audit_page = await admin.get("/dashboard/audit")
        assert "Thêm bot" in audit_page.text and "Thay token bot" in audit_page.text
        _clean(audit_page.text)

    async with seeded.sessions() as session:
        stored = await session.get_one(Bot, bot.id)
        assert stored.token_sealed is not None
        assert TokenBox(SECRET).open(stored.token_sealed) == NEW_TOKEN
        assert (stored.area_id, stored.link) == (None, "https://t.me/quangngai_bot")
        assert (await session.get_one(Bot, first[Platform.zalo])).link == ZALO
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action.like("bot.%")).order_by(AuditEntry.id)
            )
        ).all()
    assert [(e.action, e.official_id, e.via) for e in entries] == [
        ("bot.create", ids["root"], "web"),
        ("bot.update", ids["root"], "web"),
        ("bot.token", ids["root"], "web"),
        ("bot.update", ids["root"], "web"),
    ]
    assert entries[0].details["after"]["province"] == "p51"
    assert entries[1].details == {
        "before": {"link": None, "province": "p51"},
        "after": {"link": "https://t.me/quangngai_bot", "province": None},
    }
    for entry in entries:
        _clean(repr(entry.details))
        for column in Bot.__table__.columns:
            _clean(str(getattr(stored, column.key)))


async def test_refusals_are_explained_in_vietnamese(seeded: Database) -> None:
    await make_officials(seeded)
    first = await _first_bots(seeded)
    async with Client(_app(seeded)) as admin:
        await admin.login("root")
        await admin.get("/dashboard/admin/bots")
        assert (await admin.post("/dashboard/admin/bots", _new_bot())).status_code == 303
        for changes, problem in (
            ({"name": "Quảng Ngãi"}, BotProblem.bad_name),
            ({"name": "default"}, BotProblem.first_bot_token),
            ({"name": "quang-ngai", "token": "6660000003:AAHanotherSecretxx"},
             BotProblem.name_taken),
            ({"name": "hue", "token": "not a token"}, BotProblem.bad_token),
            ({"name": "hue", "token": ENV_TOKEN}, BotProblem.token_taken),
            ({"name": "hue", "token": NEW_TOKEN}, BotProblem.token_taken),
            ({"name": "hue", "token": "6660000004:AAHyetAnotherSecret"},
             BotProblem.province_taken),
            ({"name": "hue", "token": "6660000004:AAHyetAnotherSecret", "province": "11914"},
             BotProblem.not_a_province),
            ({"name": "hue", "token": "6660000004:AAHyetAnotherSecret", "province": "",
              "link": "http://t.me/x"}, BotProblem.bad_link),
        ):  # fmt: skip
            refused = await admin.post("/dashboard/admin/bots", _new_bot(**changes))
            assert refused.status_code == 400, changes
            assert texts.BOT_PROBLEMS[problem] in refused.text, changes
            _clean(refused.text)
        bad_rate = await admin.post("/dashboard/admin/bots", _new_bot(rate_per_second="0"))
        assert bad_rate.status_code == 400 and texts.BAD_NUMBER in bad_rate.text
        bad_platform = await admin.post("/dashboard/admin/bots", _new_bot(platform="viber"))
        assert bad_platform.status_code == 400 and texts.BAD_CHOICE in bad_platform.text
        env_bot = await admin.post(
            f"/dashboard/admin/bots/{first[Platform.telegram]}/place",
            {"province": "", "link": "", "token": "6660000005:AAHforTheFirstBotxx"},
        )
        assert env_bot.status_code == 400
        assert texts.BOT_PROBLEMS[BotProblem.first_bot_token] in env_bot.text
        missing = await admin.post("/dashboard/admin/bots/99999/place", {"token": ""})
        assert missing.status_code == 404
    async with seeded.sessions() as session:
        names = (await session.scalars(select(Bot.name).order_by(Bot.id))).all()
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert names == ["default", "default", "quang-ngai"]
    assert actions.count("bot.create") == 1 and "bot.token" not in actions


async def test_only_admins_and_only_with_the_csrf_token(seeded: Database) -> None:
    await make_officials(seeded)
    first = await _first_bots(seeded)
    app = _app(seeded)
    async with Client(app) as editor, Client(app) as admin:
        await editor.login("editor")
        assert (await editor.get("/dashboard/admin/bots")).status_code == 403
        refused = await editor.post("/dashboard/admin/bots", _new_bot())
        assert refused.status_code == 403 and texts.ADMIN_ONLY in refused.text
        placed = await editor.post(
            f"/dashboard/admin/bots/{first[Platform.telegram]}/place", {"link": ZALO}
        )
        assert placed.status_code == 403
        await admin.login("root")
        forged = await admin.post("/dashboard/admin/bots", _new_bot(), csrf=False)
        assert forged.status_code == 403 and texts.CSRF_FAILED in forged.text
    async with seeded.sessions() as session:
        assert (await session.scalars(select(Bot.name))).all() == ["default", "default"]
        assert (await session.get_one(Bot, first[Platform.telegram])).link is None


async def test_each_province_gets_the_poster_of_its_own_bot(seeded: Database) -> None:
    """A second Telegram bot serving Quảng Ngãi: its communes' posters point at it, the
    other provinces' keep the first bot; the same for a Zalo bot's link."""
    await make_officials(seeded)
    await _first_bots(seeded)
    box = TokenBox(SECRET)
    async with seeded.sessions.begin() as session:
        local = await bots.add(session, box, platform=Platform.telegram, name="quang-ngai",
                               token=TOKEN, province="p51")  # fmt: skip
        local.username = "quangngai_bot"
    async with Client(_app(seeded, zalo_bot_link=ZALO)) as admin:
        await admin.login("root")
        ly_son = await admin.get("/dashboard/posters/21548")  # Đặc khu Lý Sơn, Quảng Ngãi
        assert ly_son.status_code == 200
        assert "https://t.me/quangngai_bot?start=c21548" in ly_son.text
        assert ZALO in ly_son.text  # no Zalo bot of its own: the first one's link
        cat_hai = await admin.get("/dashboard/posters/11914")
        assert "https://t.me/haidang_bot?start=c11914" in cat_hai.text
        assert "quangngai_bot" not in cat_hai.text

        async with seeded.sessions.begin() as session:
            await bots.add(session, box, platform=Platform.zalo, name="quang-ngai",
                           token=TOKEN, province="p51", link=ZALO_QN)  # fmt: skip
        ly_son = await admin.get("/dashboard/posters/21548")
        assert ZALO_QN in ly_son.text and ZALO not in ly_son.text
        cat_hai = await admin.get("/dashboard/posters/11914")
        assert ZALO in cat_hai.text and ZALO_QN not in cat_hai.text
