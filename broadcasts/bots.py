"""The bots of a deployment: several per platform, each with its own token, province and rate.

Each platform's first bot ("default") takes its token from TELEGRAM_BOT_TOKEN or
ZALO_BOT_TOKEN, as before; an administrator registers the others (CLI or dashboard), and
their tokens are kept in the database sealed with a key derived from SECRET_KEY. A person
belongs to the bot they subscribed through; a broadcast is sent by every bot to its own
people, each bot within its own platform limit (its sender and outbox).
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Collection

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import areas
from db.models import ENV_PLATFORMS, AreaKind, Bot, Platform

FIRST_BOT = "default"  # each platform's first bot: its token is in the environment
NAME_MAX = 60
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?$")
# Both platforms issue "<bot id>:<secret>" tokens; the id part names the bot account, so
# two registrations with the same id are the same bot (a regenerated token included).
_TOKEN = re.compile(r"^(\d{1,20}):([A-Za-z0-9_-]{16,200})$")
RATE_MIN, RATE_MAX = 0.1, 1000.0
LINK_MAX = 255


class BotProblem(enum.StrEnum):
    # Problem codes, not secrets (ruff S105 reads "token" in a name as a password).
    bad_name = "bad_name"  # not 1-60 lower-case letters, digits and hyphens
    name_taken = "name_taken"  # the platform already has a bot of that name
    bad_token = "bad_token"  # noqa: S105 - not "<digits>:<secret>"
    token_taken = "token_taken"  # noqa: S105 - that bot account is registered already
    first_bot_token = "first_bot_token"  # noqa: S105 - the first bot's token lives in the environment
    bad_rate = "bad_rate"  # outside RATE_MIN..RATE_MAX
    bad_link = "bad_link"  # not an https:// link (or too long)
    not_a_province = "not_a_province"  # the area code is not a province's
    province_taken = "province_taken"  # another bot of the platform serves that province
    unreadable = "unreadable"  # sealed with another SECRET_KEY
    not_found = "not_found"  # no such bot
    bad_options = "bad_options"  # a gateway's options lack a required key or hold a bad value
    bad_secret = "bad_secret"  # noqa: S105 - a gateway's secret is empty or too long


_EXPLAINED = {
    BotProblem.bad_name: "a bot name is 1-60 lower-case letters, digits and hyphens",
    BotProblem.name_taken: "the platform already has a bot of that name",
    BotProblem.bad_token: "a bot token looks like 123456789:AAH... (digits, a colon, a secret)",
    BotProblem.token_taken: "that bot account is already registered",
    BotProblem.first_bot_token: (
        "the first bot's token is TELEGRAM_BOT_TOKEN / ZALO_BOT_TOKEN in the environment"
    ),
    BotProblem.bad_rate: f"the rate is {RATE_MIN}-{RATE_MAX:g} messages per second",
    BotProblem.bad_link: "the link must start with https:// (at most 255 characters)",
    BotProblem.not_a_province: "that code is not a province's (p<NN>)",
    BotProblem.province_taken: "another bot of this platform already serves that province",
    BotProblem.unreadable: (
        "a stored bot token cannot be opened: SECRET_KEY changed since it was stored; "
        "set the token again"
    ),
    BotProblem.not_found: "no such bot",
    BotProblem.bad_options: "the gateway's options are incomplete or malformed (see --option)",
    BotProblem.bad_secret: "the gateway's secret is empty or longer than 500 characters",
}

# What each gateway platform cannot run without (bot/sms.py, bot/zalo_oa.py and bot/zns.py
# check the rest when the bot starts, and say what is wrong in its status).
REQUIRED_OPTIONS: dict[Platform, tuple[str, ...]] = {
    Platform.sms: ("host", "port", "system_id", "brandname"),
    Platform.zalo_oa: ("app_id",),
    Platform.zns: ("app_id",),
}
# The options that name the account: two bots with the same are the same account.
_ACCOUNT_OPTIONS: dict[Platform, tuple[str, ...]] = {
    Platform.sms: ("host", "port", "system_id"),
    Platform.zalo_oa: ("app_id",),
    Platform.zns: ("app_id",),
}
_OPTION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SECRET_MAX = 500


def is_gateway(platform: Platform) -> bool:
    """Registered with options and a secret, not a "<digits>:<secret>" bot token."""
    return platform not in ENV_PLATFORMS


def clean_options(platform: Platform, options: dict[str, object]) -> dict[str, object]:
    """A gateway's options: short lower-case keys, scalar values, the required ones there."""
    cleaned: dict[str, object] = {}
    for key, value in options.items():
        if not _OPTION_KEY.match(key) or not isinstance(value, str | int | float | bool):
            raise BotError(BotProblem.bad_options)
        cleaned[key] = value.strip() if isinstance(value, str) else value
    if any(cleaned.get(key) in (None, "") for key in REQUIRED_OPTIONS.get(platform, ())):
        raise BotError(BotProblem.bad_options)
    return cleaned


def _account_of(bot: Bot) -> tuple[object, ...]:
    return tuple(str(bot.options.get(key)) for key in _ACCOUNT_OPTIONS.get(bot.platform, ()))


class BotError(ValueError):
    """A bot that cannot be registered or changed as asked (`problem` says why)."""

    def __init__(self, problem: BotProblem) -> None:
        super().__init__(_EXPLAINED[problem])
        self.problem = problem


class TokenBox:
    """Seals and opens bot tokens with a key derived from SECRET_KEY.

    Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) rather than a construction
    of our own; HKDF gives it a key of its own, so the session-signing key is never used
    for this directly. Changing SECRET_KEY makes stored tokens unreadable (the bot then
    reports it and an administrator sets the token again).
    """

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"haidang bot tokens"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise BotError(BotProblem.unreadable) from None


def account_id(token: str) -> str:
    """The bot account a token belongs to (the digits before the colon)."""
    found = _TOKEN.match(token)
    if found is None:
        raise BotError(BotProblem.bad_token)
    return found.group(1)


def clean_token(token: str) -> str:
    token = token.strip()
    account_id(token)
    return token


def token_variable(platform: Platform) -> str:
    """The environment variable of the platform's first bot's token."""
    return f"{platform.value.upper()}_BOT_TOKEN"


def is_first(bot: Bot) -> bool:
    return bot.name == FIRST_BOT


def label(bot: Bot) -> str:
    """How logs and /healthz name a bot: "telegram" for the first, "telegram:<name>"."""
    return bot.platform.value if is_first(bot) else f"{bot.platform.value}:{bot.name}"


async def get(session: AsyncSession, platform: Platform, name: str) -> Bot:
    bot = await session.scalar(select(Bot).where(Bot.platform == platform, Bot.name == name))
    if bot is None:
        raise BotError(BotProblem.not_found)
    return bot


async def listing(session: AsyncSession) -> list[Bot]:
    return list((await session.scalars(select(Bot).order_by(Bot.platform, Bot.id))).all())


async def _check_account_free(
    session: AsyncSession, box: TokenBox, bot: Bot | None, platform: Platform, token: str,
    taken: Collection[str],
) -> None:  # fmt: skip
    """Refuse a token whose bot account another bot row (or an environment token) has:
    two rows of one account would fight over its updates and double its sends."""
    account = account_id(token)
    if any(_TOKEN.match(t) and account_id(t) == account for t in taken):
        raise BotError(BotProblem.token_taken)
    others = await session.scalars(
        select(Bot).where(Bot.platform == platform, Bot.token_sealed.is_not(None))
    )
    for other in others:
        if other is bot or other.token_sealed is None:
            continue
        try:
            if account_id(box.open(other.token_sealed)) == account:
                raise BotError(BotProblem.token_taken)
        except BotError as exc:
            if exc.problem is not BotProblem.unreadable:
                raise


async def _province_id(
    session: AsyncSession, platform: Platform, code: str | None, bot: Bot | None
) -> int | None:
    if not code:
        return None
    try:
        area = await areas.get_by_code(session, code.strip())
    except areas.AreaError:
        raise BotError(BotProblem.not_a_province) from None
    if area.kind is not AreaKind.province:
        raise BotError(BotProblem.not_a_province)
    other = await session.scalar(
        select(Bot.id).where(Bot.platform == platform, Bot.area_id == area.id)
    )
    if other is not None and (bot is None or other != bot.id):
        raise BotError(BotProblem.province_taken)
    return area.id


def _link(link: str | None) -> str | None:
    if link is None or not link.strip():
        return None
    link = link.strip()
    if not link.startswith("https://") or len(link) > LINK_MAX or any(c.isspace() for c in link):
        raise BotError(BotProblem.bad_link)
    return link


def _rate(rate: float) -> float:
    if not RATE_MIN <= rate <= RATE_MAX:
        raise BotError(BotProblem.bad_rate)
    return rate


async def add(
    session: AsyncSession,
    box: TokenBox,
    *,
    platform: Platform,
    name: str,
    token: str,
    rate_per_second: float = 30.0,
    link: str | None = None,
    province: str | None = None,
    taken: Collection[str] = (),
    options: dict[str, object] | None = None,
) -> Bot:
    """Register another bot of `platform`; `taken` are the environment's tokens. A gateway
    (SMS, Official Account, ZNS) gives its `options` and its secret as `token`."""
    name = name.strip().lower()
    if not _NAME.match(name):
        raise BotError(BotProblem.bad_name)
    if name == FIRST_BOT:
        raise BotError(BotProblem.first_bot_token)
    if await session.scalar(select(Bot.id).where(Bot.platform == platform, Bot.name == name)):
        raise BotError(BotProblem.name_taken)
    cleaned: dict[str, object] = {}
    if is_gateway(platform):
        token = token.strip()
        if not token or len(token) > SECRET_MAX:
            raise BotError(BotProblem.bad_secret)
        cleaned = clean_options(platform, options or {})
        others = await session.scalars(select(Bot).where(Bot.platform == platform))
        probe = Bot(platform=platform, options=cleaned)
        if any(_account_of(other) == _account_of(probe) for other in others):
            raise BotError(BotProblem.token_taken)
    else:
        token = clean_token(token)
        await _check_account_free(session, box, None, platform, token, taken)
    bot = Bot(
        platform=platform,
        name=name,
        options=cleaned,
        token_sealed=box.seal(token),
        rate_per_second=_rate(rate_per_second),
        link=_link(link),
        area_id=await _province_id(session, platform, province, None),
    )
    session.add(bot)
    await session.flush()
    return bot


async def set_token(
    session: AsyncSession, box: TokenBox, bot: Bot, token: str, *, taken: Collection[str] = ()
) -> None:
    """Replace a bot's token (the platform issued a new one); the running bot restarts."""
    if is_first(bot):
        raise BotError(BotProblem.first_bot_token)
    if is_gateway(bot.platform):
        token = token.strip()
        if not token or len(token) > SECRET_MAX:
            raise BotError(BotProblem.bad_secret)
    else:
        token = clean_token(token)
        await _check_account_free(session, box, bot, bot.platform, token, taken)
    bot.token_sealed = box.seal(token)
    bot.username = None  # read again from the platform with the new token


async def set_place(
    session: AsyncSession, bot: Bot, *, link: str | None, province: str | None
) -> None:
    """Set where a bot's posters point (its link) and the province it serves."""
    bot.link = _link(link)
    bot.area_id = await _province_id(session, bot.platform, province, bot)


def check_rate(rate: float) -> float:
    return _rate(rate)


async def poster_bot(session: AsyncSession, platform: Platform, province_id: int) -> Bot | None:
    """The enabled bot whose link a commune's poster prints: the one serving its province,
    else one serving no province in particular (the first bot, else the first registered)."""
    candidates = (
        await session.scalars(
            select(Bot)
            .where(Bot.platform == platform, Bot.enabled.is_(True))
            .where((Bot.area_id == province_id) | Bot.area_id.is_(None))
            # The first bot's row is created when the service first starts, which may be
            # after an administrator registered others: by id alone, one of those would
            # take over every province's posters.
            .order_by(Bot.area_id.is_(None), Bot.name != FIRST_BOT, Bot.id)
        )
    ).all()
    return candidates[0] if candidates else None
