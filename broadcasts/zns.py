"""ZNS templates: registering Zalo-approved templates, filling them, and the phone cost preview."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from broadcasts import audiences, audit, readout, sms
from broadcasts.sms import Encoding, GatewayTariff, SmsPlan
from db.models import (
    Bot,
    Bulletin,
    ChatAddress,
    Official,
    Platform,
    Priority,
    Subscriber,
    SubscriberStatus,
    SubscriberTopic,
    Subscription,
    ZnsTemplate,
)
from db.text import nfc

__all__ = [
    "PARAM_LIMIT",
    "PARAM_LIMIT_MAX",
    "SOURCES",
    "PhonePreview",
    "SmsCost",
    "ZnsCost",
    "ZnsError",
    "ZnsProblem",
    "add",
    "disable",
    "enabled_templates",
    "fill",
    "get",
    "listing",
    "parse_param",
    "phone_preview",
]

# What fills a template's parameter, with the label officials read (the dashboard and the
# CLI show it). A template's params map each of Zalo's parameter names to one of these.
SOURCES: Final[dict[str, str]] = {
    "title": "Tiêu đề bản tin",
    "summary": "Tóm tắt nội dung (các câu đầu của bản tin)",
    "area": "Tên xã, phường của người nhận",
    "time": "Thời điểm ban hành (giờ:phút ngày/tháng/năm)",
    "readout": "Tin ngắn không dấu (bản đọc cho VMS, SMS)",
}

# Zalo caps each parameter's value by the "technical setting" chosen for it when the
# template was made (zalo.cloud, "Các định dạng dữ liệu khi truyền vào tham số trên nội
# dung ZNS"): 30 characters for a name, a code, a custom label or a status, which is what
# most parameters are; 50 for contact information; 200 for an address or a product name.
# A longer value is refused, so every value is cut to its parameter's limit: PARAM_LIMIT
# unless the template registered a longer one ("summary:200").
PARAM_LIMIT: Final = 30
PARAM_LIMIT_MAX: Final = 200
# A template has at most 4 parameters in its title and 10 in its text (Zalo's rules).
MAX_PARAMS: Final = 14
MAX_NAME: Final = 120
MAX_PRICE_VND: Final = 100_000  # far above any ZNS price (about 200-1,000 đ): a typo guard
_TEMPLATE_ID: Final = re.compile(r"[A-Za-z0-9]{1,40}")
# Zalo's parameter names: no accents, spaces or hyphens; words joined by underscores.
_PARAM_NAME: Final = re.compile(r"[A-Za-z0-9_]{1,50}")
_ELLIPSIS: Final = "…"


class ZnsProblem(enum.StrEnum):
    """Why a template was refused (the dashboard words each; the CLI prints the message)."""

    not_zns_bot = "not_zns_bot"
    bad_template_id = "bad_template_id"
    bad_name = "bad_name"
    no_params = "no_params"
    bad_param = "bad_param"
    unknown_source = "unknown_source"
    bad_limit = "bad_limit"
    bad_price = "bad_price"
    duplicate = "duplicate"
    not_found = "not_found"


class ZnsError(ValueError):
    """A template refused or not found; `problem` says which for the dashboard."""

    def __init__(self, problem: ZnsProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def parse_param(spec: str) -> tuple[str, int]:
    """A parameter's source as stored: "summary" or "summary:200" (a parameter Zalo allows
    200 characters) → (source, limit). Raises ZnsError for an unknown source or a limit
    outside 1..PARAM_LIMIT_MAX."""
    source, colon, limit_text = spec.strip().partition(":")
    if source not in SOURCES:
        raise ZnsError(
            ZnsProblem.unknown_source,
            f"unknown source {source!r}: one of {', '.join(SOURCES)}",
        )
    if not colon:
        return source, PARAM_LIMIT
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= PARAM_LIMIT_MAX:
        raise ZnsError(
            ZnsProblem.bad_limit,
            f"a parameter's limit is 1 to {PARAM_LIMIT_MAX} characters, not {limit_text!r}",
        )
    return source, int(limit_text)


def _check_params(params: Mapping[str, str]) -> dict[str, str]:
    if not params:
        raise ZnsError(ZnsProblem.no_params, "a template needs at least one parameter")
    if len(params) > MAX_PARAMS:
        raise ZnsError(ZnsProblem.bad_param, f"a template has at most {MAX_PARAMS} parameters")
    clean: dict[str, str] = {}
    for name, spec in params.items():
        name = name.strip()
        if not _PARAM_NAME.fullmatch(name):
            raise ZnsError(
                ZnsProblem.bad_param,
                f"parameter names are 1-50 letters, digits or '_' (as at Zalo), not {name!r}",
            )
        source, limit = parse_param(spec)
        clean[name] = source if limit == PARAM_LIMIT else f"{source}:{limit}"
    return clean


async def add(
    session: AsyncSession,
    *,
    bot: Bot,
    template_id: str,
    name: str,
    params: Mapping[str, str],
    price_vnd: int,
    official: Official | None,
    now: dt.datetime,
    via: str,
) -> ZnsTemplate:
    """Register a template Zalo approved for the ZNS bot `bot` (audited).

    `template_id` is Zalo's id (1-40 letters and digits); `params` maps each of the
    template's parameters to a SOURCES key, optionally with the parameter's character
    limit at Zalo ("summary:200"; PARAM_LIMIT when none is given); `price_vnd` is what
    one delivered message costs (0-100,000 đ). Raises ZnsError.
    """
    if bot.platform is not Platform.zns:
        raise ZnsError(ZnsProblem.not_zns_bot, f"bot {bot.name} is a {bot.platform.value} bot")
    template_id = template_id.strip()
    if not _TEMPLATE_ID.fullmatch(template_id):
        raise ZnsError(
            ZnsProblem.bad_template_id, "a ZNS template id is 1-40 letters or digits (Zalo's id)"
        )
    name = nfc(" ".join(name.split()))
    if not name or len(name) > MAX_NAME:
        raise ZnsError(ZnsProblem.bad_name, f"a template needs a name of 1-{MAX_NAME} characters")
    clean = _check_params(params)
    if isinstance(price_vnd, bool) or not 0 <= price_vnd <= MAX_PRICE_VND:
        raise ZnsError(ZnsProblem.bad_price, f"the price is 0 to {MAX_PRICE_VND} đ a message")
    taken = await session.scalar(
        select(ZnsTemplate.id).where(
            ZnsTemplate.bot_id == bot.id, ZnsTemplate.template_id == template_id
        )
    )
    if taken is not None:
        raise ZnsError(
            ZnsProblem.duplicate, f"template {template_id} is already registered (#{taken})"
        )
    template = ZnsTemplate(
        bot_id=bot.id, template_id=template_id, name=name, params=clean, price_vnd=price_vnd,
        enabled=True, created_by_id=official.id if official is not None else None,
        created_at=now,
    )  # fmt: skip
    session.add(template)
    await session.flush()
    await audit.record(
        session, now=now, official=official, via=via, action="zns_template.add",
        object_type="zns_template", object_id=template.id,
        details={"bot": bot.name, "template_id": template_id, "name": name, "params": clean,
                 "price_vnd": price_vnd},
    )  # fmt: skip
    return template


async def get(session: AsyncSession, key: str | int) -> ZnsTemplate:
    """A template by our id, or by Zalo's template id when that names exactly one."""
    text = str(key).strip()
    found = await session.get(ZnsTemplate, int(text)) if text.isdigit() else None
    if found is None:
        rows = (
            await session.scalars(select(ZnsTemplate).where(ZnsTemplate.template_id == text))
        ).all()
        found = rows[0] if len(rows) == 1 else None
    if found is None:
        raise ZnsError(ZnsProblem.not_found, f"no ZNS template {text}")
    return found


async def listing(session: AsyncSession) -> list[tuple[ZnsTemplate, Bot]]:
    """Every registered template with its bot, enabled first, then newest first."""
    rows = await session.execute(
        select(ZnsTemplate, Bot)
        .join(Bot, Bot.id == ZnsTemplate.bot_id)
        .order_by(ZnsTemplate.enabled.desc(), ZnsTemplate.id.desc())
    )
    return [(template, bot) for template, bot in rows.all()]


async def enabled_templates(session: AsyncSession) -> list[ZnsTemplate]:
    """The templates a bulletin's chain may use: enabled, on an enabled ZNS bot."""
    rows = await session.scalars(
        select(ZnsTemplate)
        .join(Bot, Bot.id == ZnsTemplate.bot_id)
        .where(ZnsTemplate.enabled.is_(True), Bot.enabled.is_(True))
        .order_by(ZnsTemplate.name, ZnsTemplate.id)
    )
    return list(rows.all())


async def disable(
    session: AsyncSession,
    template: ZnsTemplate,
    *,
    official: Official | None,
    now: dt.datetime,
    via: str,
) -> bool:
    """Switch a template off (audited); False when it already was. Templates are never
    deleted: bulletins keep pointing at the one they were approved with."""
    if not template.enabled:
        return False
    template.enabled = False
    await audit.record(
        session, now=now, official=official, via=via, action="zns_template.disable",
        object_type="zns_template", object_id=template.id,
        details={"template_id": template.template_id, "name": template.name},
    )  # fmt: skip
    await session.flush()
    return True


# --- filling a template ------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut between words with an ellipsis when it is long."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit // 2:  # a word boundary not too far back
        head = head[:space]
    return head.rstrip(" ,;:.-") + _ELLIPSIS


def fill(
    template: ZnsTemplate,
    bulletin: Bulletin,
    area_name: str,
    now: dt.datetime,
    tz: ZoneInfo,
    *,
    relay: str | None = None,
) -> dict[str, str]:
    """The template's `template_data` for one person: each parameter's source filled and
    cut to its limit (PARAM_LIMIT, 30 characters, unless registered longer).

    `area_name` is the person's commune; `time` is when the bulletin was approved (else
    `now`) in `tz`, as HH:MM dd/mm/yyyy; `relay` is the bulletin's read-out short text
    (readout.for_bulletin(...).short, worth computing once per bulletin), else it is
    built here without the area line. Values are NFC; none is empty (Zalo refuses a
    message missing a parameter), so an empty source becomes "-".
    """
    title = nfc(bulletin.title)
    values: dict[str, str] = {}
    for name, spec in template.params.items():
        source, limit = parse_param(spec)
        if source == "title":
            value = title
        elif source == "summary":
            value = " ".join(readout.sentences(nfc(bulletin.body)))
        elif source == "area":
            value = nfc(area_name)
        elif source == "time":
            value = (bulletin.approved_at or now).astimezone(tz).strftime("%H:%M %d/%m/%Y")
        else:  # readout
            if relay is None:
                built = readout.build(
                    title, nfc(bulletin.body), priority=Priority.urgent,
                    expires_at=bulletin.expires_at, tz=tz,
                )  # fmt: skip
                relay = built.short if built is not None else ""
            value = relay
        values[name] = _cut(value, limit) or "-"
    return values


# --- what the fallback chain may cost ------------------------------------------------------


@dataclass(frozen=True)
class ZnsCost:
    """The chain's ZNS step for everyone (Zalo charges a message delivered)."""

    template: ZnsTemplate | None  # None: the chain names no usable template
    price_each_vnd: int
    total_vnd: int


@dataclass(frozen=True)
class SmsCost:
    """One SMS of the bulletin to each person (sms.bulletin_text: the read-out unaccented,
    the accented text cut to two parts in UCS-2), both ways it can be encoded."""

    bot: Bot | None  # the gateway priced (the dearest when there are several); None: none
    encoding: Encoding  # the gateway's setting (bots.options "encoding")
    gsm7: SmsPlan
    ucs2: SmsPlan
    cost_per_part_vnd: int | None  # None: the gateway's tariff is not known

    def each_vnd(self, encoding: Encoding) -> int | None:
        plan = self.ucs2 if encoding is Encoding.ucs2 else self.gsm7
        return None if self.cost_per_part_vnd is None else plan.count * self.cost_per_part_vnd


@dataclass(frozen=True)
class PhonePreview:
    """The worst case of a bulletin's fallback chain: every person with a consented phone
    acknowledges nothing, so each gets every step."""

    people: int  # in the chat audience, with a phone kept with their consent
    minutes: int | None
    steps: tuple[Platform, ...]
    zns: ZnsCost | None  # None: no ZNS step
    sms: SmsCost | None  # None: no SMS step

    def sms_ways(self) -> list[tuple[Encoding, SmsPlan, int | None, int | None]]:
        """(encoding, plan, price per person, price for everyone) unaccented, then UCS-2."""
        if self.sms is None:
            return []
        return [
            (encoding, plan, self.sms.each_vnd(encoding), self.sms_total_vnd(encoding))
            for encoding, plan in (
                (Encoding.gsm7_unaccented, self.sms.gsm7),
                (Encoding.ucs2, self.sms.ucs2),
            )
        ]

    def sms_total_vnd(self, encoding: Encoding) -> int | None:
        each = self.sms.each_vnd(encoding) if self.sms is not None else 0
        return None if each is None else each * self.people

    @property
    def total_vnd(self) -> int | None:
        """ZNS and SMS (in the gateway's encoding) for everyone; None if a price is unknown."""
        zns_total = self.zns.total_vnd if self.zns is not None else 0
        if self.sms is None:
            return zns_total
        sms_total = self.sms_total_vnd(self.sms.encoding)
        return None if sms_total is None else zns_total + sms_total


def _tariff(bot: Bot) -> GatewayTariff | None:
    """The gateway's tariff from its options; None when they do not give one."""
    try:
        return sms.tariff_from(bot.options or {})
    except ValueError:
        return None


def _limits_only(bot: Bot | None) -> GatewayTariff:
    """Without a price the parts are still counted: at the gateway's carrier's limits if
    its options name one, else at the strictest carrier's."""
    carrier = bot.options.get("carrier") if bot is not None else None
    single = sms.CARRIER_SINGLE_LIMITS.get(str(carrier or "").strip().lower())
    return GatewayTariff(
        cost_per_part_vnd=0, single_limit=single or min(sms.CARRIER_SINGLE_LIMITS.values())
    )


def _encoding(bot: Bot | None) -> Encoding:
    value = bot.options.get("encoding") if bot is not None else None
    try:
        return Encoding(value) if isinstance(value, str) else Encoding.gsm7_unaccented
    except ValueError:
        return Encoding.gsm7_unaccented


async def _people_with_phone(session: AsyncSession, bulletin: Bulletin) -> int:
    """People in the bulletin's chat audience (audiences.recipients' conditions) with a
    phone they consented to: whom a fallback step may reach."""
    people = select(Subscription.subscriber_id).where(
        Subscription.area_id.in_(audiences.matching_areas(bulletin))
    )
    chat = [
        ChatAddress.subscriber_id == Subscriber.id,
        ChatAddress.active.is_(True),
        ChatAddress.fallback.is_(False),
        Bot.id == ChatAddress.bot_id,
        Bot.enabled.is_(True),
    ]
    if bulletin.audience_platforms:
        chat.append(Bot.platform.in_([Platform(p) for p in bulletin.audience_platforms]))
    conditions = [
        Subscriber.status == SubscriberStatus.active,
        Subscriber.phone.is_not(None),
        Subscriber.phone_consent_at.is_not(None),
        Subscriber.id.in_(people),
        exists().where(and_(*chat)),
    ]
    if bulletin.audience_roles:
        conditions.append(Subscriber.role.in_(bulletin.audience_roles))
    if bulletin.topic_id is not None:
        conditions.append(
            exists().where(
                SubscriberTopic.subscriber_id == Subscriber.id,
                SubscriberTopic.topic_id == bulletin.topic_id,
            )
        )
    count = await session.scalar(select(func.count()).select_from(Subscriber).where(*conditions))
    return int(count or 0)


def _sms_plan(
    title: str, body: str, short: str, encoding: Encoding, tariff: GatewayTariff
) -> SmsPlan:
    text = sms.bulletin_text(title, body, short=short, encoding=encoding, tariff=tariff)
    return sms.plan(text, encoding, tariff)


async def _sms_cost(session: AsyncSession, bulletin: Bulletin, short: str) -> SmsCost:
    gateways: Sequence[Bot] = (
        await session.scalars(
            select(Bot).where(Bot.platform == Platform.sms, Bot.enabled.is_(True)).order_by(Bot.id)
        )
    ).all()
    title, body = nfc(bulletin.title), nfc(bulletin.body)
    priced = [(bot, found) for bot in gateways if (found := _tariff(bot)) is not None]
    chosen: Bot | None = gateways[0] if gateways else None
    tariff = None
    if priced:
        # Worst case: the gateway whose message costs most, in its own encoding.
        chosen, tariff = max(
            priced,
            key=lambda pair: _sms_plan(title, body, short, _encoding(pair[0]), pair[1]).cost_vnd,
        )
    limits = tariff or _limits_only(chosen)
    return SmsCost(
        bot=chosen,
        encoding=_encoding(chosen),
        gsm7=_sms_plan(title, body, short, Encoding.gsm7_unaccented, limits),
        ucs2=_sms_plan(title, body, short, Encoding.ucs2, limits),
        cost_per_part_vnd=tariff.cost_per_part_vnd if tariff is not None else None,
    )


async def phone_preview(
    session: AsyncSession,
    bulletin: Bulletin,
    *,
    tz: ZoneInfo,
    relay: readout.Readout | None = None,
) -> PhonePreview:
    """What the bulletin's fallback chain costs at worst: the people who may get its steps,
    the ZNS template's price for each and in all, the SMS read-out's parts and price per
    person unaccented (GSM-7) and with UCS-2 on the dearest enabled SMS gateway, and the
    totals. A bulletin without a chain gives no ZNS and no SMS and a total of 0. `relay`:
    the bulletin's read-out when the caller has it (else it is built here)."""
    steps = tuple(Platform(p) for p in bulletin.fallback_platforms)
    people = await _people_with_phone(session, bulletin) if steps else 0
    zns_cost = None
    if Platform.zns in steps:
        template = (
            await session.get(ZnsTemplate, bulletin.zns_template_id)
            if bulletin.zns_template_id is not None
            else None
        )
        price = template.price_vnd if template is not None else 0
        zns_cost = ZnsCost(template=template, price_each_vnd=price, total_vnd=price * people)
    sms_cost = None
    if Platform.sms in steps:
        relay = relay or await readout.for_bulletin(session, bulletin, tz)
        sms_cost = await _sms_cost(session, bulletin, relay.short if relay is not None else "")
    return PhonePreview(
        people=people, minutes=bulletin.fallback_minutes, steps=steps, zns=zns_cost,
        sms=sms_cost,
    )  # fmt: skip
