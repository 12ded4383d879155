"""SQLAlchemy models for the whole domain, with their lifecycle enums."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.types import UTCDateTime, str_enum

# Deterministic constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The rows ix_deliveries_progress holds (reports.MOVED is the same condition, inline).
PROGRESS_WHERE = "state != 'pending'"

# BIGINT ids on PostgreSQL for the high-volume tables; SQLite needs plain INTEGER for rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def _now_default() -> Any:
    return func.now()


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(server_default=_now_default())


# --- enums -------------------------------------------------------------------------------


class AreaKind(enum.StrEnum):
    province = "province"  # one of the 34 provinces / centrally-run cities (code p<NN>)
    commune = "commune"  # xã, phường or đặc khu (five-digit official code)
    village = "village"  # thôn, xóm, ấp, bản under a commune (code <commune>.<n>)
    port = "port"  # a fishing port or landing under a commune (code <commune>.<n>)


class Platform(enum.StrEnum):
    telegram = "telegram"  # python-telegram-bot against the Telegram Bot API
    zalo = "zalo"  # the Zalo Bot API (Telegram-like, no buttons, no uploads)
    zalo_oa = "zalo_oa"  # a Zalo Official Account: messages its followers (Open API)
    zns = "zns"  # Zalo Notification Service: an approved template to a phone number
    sms = "sms"  # a carrier's brandname SMS gateway over SMPP 3.4 (chat ids are 84xxxxxxxxx)


# Platforms a person talks to (a conversation, buttons or keywords); ZNS only sends, to a
# phone a person consented to, as a step of an urgent bulletin's fallback chain.
CHAT_PLATFORMS = (Platform.telegram, Platform.zalo, Platform.zalo_oa, Platform.sms)
# Platforms whose first bot's token is in the environment (TELEGRAM_BOT_TOKEN, ...); the
# others exist only once an administrator registers them (broadcasts.bots).
ENV_PLATFORMS = (Platform.telegram, Platform.zalo)
# Platforms a fallback step may use: they reach a phone number, not a chat.
PHONE_PLATFORMS = (Platform.zns, Platform.sms)


class SubscriberRole(enum.StrEnum):
    fisherman = "fisherman"  # ngư dân
    villager = "villager"  # người dân
    radio_operator = "radio_operator"  # cán bộ truyền thanh
    border_guard = "border_guard"  # đồn biên phòng
    commune_official = "commune_official"  # cán bộ xã


class SubscriberStatus(enum.StrEnum):
    active = "active"  # receives bulletins
    stopped = "stopped"  # sent /huy; kept so /batdau can resume
    erased = "erased"  # sent /xoa; personal data removed, the row stays for anonymous counts


class OfficialRole(enum.StrEnum):
    admin = "admin"  # everything, everywhere
    province_editor = "province_editor"  # writes bulletins for a province and its communes
    commune_editor = "commune_editor"  # writes bulletins for one commune
    approver = "approver"  # approves others' bulletins within a scope
    radio_operator = "radio_operator"  # downloads audio for a commune


class Priority(enum.StrEnum):
    routine = "routine"  # thường: waits for quiet hours to pass, at-most-once
    urgent = "urgent"  # khẩn: goes first, ignores quiet hours, at-least-once, "Đã nhận" button


class BulletinState(enum.StrEnum):
    draft = "draft"  # being written; only the author sees it
    pending_approval = "pending_approval"  # submitted; waits for a second official
    approved = "approved"  # approved, not yet scheduled
    scheduled = "scheduled"  # has an active schedule; runs fire from it
    sending = "sending"  # a run is delivering
    sent = "sent"  # every run finished and no schedule remains
    cancelled = "cancelled"  # stopped by an official; no new sends
    expired = "expired"  # passed its expiry before everything was sent
    rejected = "rejected"  # the approver sent it back with a comment


class ScheduleKind(enum.StrEnum):
    once = "once"  # one firing at `run_at` (now = the moment of scheduling)
    cron = "cron"  # recurring, a cron expression in local time, optional end


class RunState(enum.StrEnum):
    pending = "pending"  # created by a firing; fan-out not done yet
    sending = "sending"  # deliveries exist; senders are working
    done = "done"  # no delivery left pending or sending
    cancelled = "cancelled"  # the bulletin was cancelled during the run
    missed = "missed"  # fired too late (outside the grace window or after expiry)


class DeliveryState(enum.StrEnum):
    pending = "pending"  # waiting to be claimed (maybe after next_attempt_at)
    sending = "sending"  # claimed by a sender, lease until lease_until
    sent = "sent"  # the platform accepted it (platform message id recorded)
    failed = "failed"  # permanent failure, with a reason code
    blocked = "blocked"  # the person blocked the bot (403): address deactivated
    expired = "expired"  # the bulletin expired before it could be sent
    unknown = "unknown"  # a sender died mid-send on a routine bulletin; not resent
    cancelled = "cancelled"  # the bulletin was cancelled before this was sent


class AnswerState(enum.StrEnum):
    pending = "pending"  # stored with the conversation turn; the bot's outbox sends it
    failed = "failed"  # could not be sent after its retries; the reason is kept for operators


class AssetKind(enum.StrEnum):
    bulletin = "bulletin"  # the spoken bulletin
    programme = "programme"  # a commune's daily programme
    document = "document"  # an official document read aloud on request


class InboxKind(enum.StrEnum):
    text = "text"  # free text from a subscriber
    photo = "photo"  # a photo (file reference kept)
    location = "location"  # a shared location
    other = "other"  # voice, sticker, file: kept as a note


class InboxStatus(enum.StrEnum):
    new = "new"  # not yet read by an official
    read = "read"  # opened on the dashboard
    answered = "answered"  # an official replied in chat
    archived = "archived"  # closed without reply


# --- the map -------------------------------------------------------------------------------


class Area(Timestamped, Base):
    """A province, commune, village or port; codes follow the official 2025 map."""

    __tablename__ = "areas"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[AreaKind] = mapped_column(str_enum(AreaKind))
    # "tỉnh", "thành phố trung ương", "xã", "phường", "đặc khu", "thôn", "bến cá" ...
    division_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    # Lower-case, diacritics removed, đ folded to d: what search compares against.
    name_folded: Mapped[str] = mapped_column(String(120), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    province_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    coastal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    parent: Mapped[Area | None] = relationship(
        remote_side=[id], foreign_keys=[parent_id], lazy="raise"
    )
    province: Mapped[Area | None] = relationship(
        remote_side=[id], foreign_keys=[province_id], lazy="raise"
    )


class Topic(Timestamped, Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


# --- people and chats ----------------------------------------------------------------------


class Subscriber(Timestamped, Base):
    """A person; personal data lives here and in chat_addresses, and /xoa blanks both."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[SubscriberRole] = mapped_column(
        str_enum(SubscriberRole), default=SubscriberRole.fisherman
    )
    language: Mapped[str] = mapped_column(String(8), default="vi", server_default="vi")
    status: Mapped[SubscriberStatus] = mapped_column(
        str_enum(SubscriberStatus), default=SubscriberStatus.active, index=True
    )
    consent_at: Mapped[dt.datetime | None]
    stopped_at: Mapped[dt.datetime | None]
    erased_at: Mapped[dt.datetime | None]
    # A mobile as 84xxxxxxxxx (broadcasts.sms.msisdn) for urgent bulletins by ZNS or SMS
    # when the chat cannot reach the person; kept only with their consent (/sdt), never
    # logged whole (sms.mask), blanked by /xoa.
    phone: Mapped[str | None] = mapped_column(String(16))
    phone_consent_at: Mapped[dt.datetime | None]


class SubscriberTopic(Base):
    __tablename__ = "subscriber_topics"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )


class Subscription(Timestamped, Base):
    """A person follows an area (usually a commune; a village narrows it)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "area_id"),
        # "Who follows these areas" (counts, previews, fan-out) from the index alone.
        Index("ix_subscriptions_area_subscriber", "area_id", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))


class Bot(Timestamped, Base):
    """One bot account on one platform; each has exactly one sender (a lease).

    A person belongs to the bot they subscribed through (their chat address is on it), so
    a broadcast is sent by each bot to its own people, all bots in parallel."""

    __tablename__ = "bots"
    __table_args__ = (UniqueConstraint("platform", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[Platform] = mapped_column(str_enum(Platform))
    name: Mapped[str] = mapped_column(String(60), default="default")
    username: Mapped[str | None] = mapped_column(String(120))
    # Messages per second for this bot as a whole; Telegram bulk is about 30/s.
    rate_per_second: Mapped[float] = mapped_column(Float, default=30.0)
    # Minimum seconds between two messages to the same chat (Telegram: about 1/s).
    per_chat_interval: Mapped[float] = mapped_column(Float, default=1.0)
    paid_broadcast: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    quiet_start: Mapped[dt.time | None] = mapped_column(Time, default=dt.time(21, 0))
    quiet_end: Mapped[dt.time | None] = mapped_column(Time, default=dt.time(6, 0))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The token, sealed with a key derived from SECRET_KEY (haidang.bot_tokens): a backup
    # of the database does not give the bot away. NULL for each platform's first bot
    # ("default"), whose token is TELEGRAM_BOT_TOKEN or ZALO_BOT_TOKEN.
    token_sealed: Mapped[str | None] = mapped_column(Text)
    # The bot's public link for QR posters (a Zalo bot's link from Zalo Bot Manager; a
    # Telegram bot's is t.me/<username>, so it needs none).
    link: Mapped[str | None] = mapped_column(String(255))
    # The province this bot serves (its posters, its people); NULL: any province not
    # served by a bot of its own.
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    # What a gateway needs besides its secret (SMPP host, port, system id, brandname,
    # encoding, tariff, throughput; an Official Account's app id, window and quota): no
    # secret here, those are in token_sealed.
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class ChatAddress(Timestamped, Base):
    """Where a person is reached: a chat id on one bot."""

    __tablename__ = "chat_addresses"
    __table_args__ = (UniqueConstraint("bot_id", "chat_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"))
    # NULL once /xoa erased the person: the row stays (deliveries point at it) but can never
    # be sent to nor match an incoming chat (NULL equals nothing, and is not unique-checked).
    chat_id: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Why it stopped receiving: "blocked" (403), "stopped" (/huy), "erased" (/xoa) ...
    inactive_reason: Mapped[str | None] = mapped_column(String(40))
    last_seen_at: Mapped[dt.datetime | None]
    # Where this chat is in a conversation flow (step, page, offered options); see bot/.
    dialog: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # A consented phone kept on a ZNS or SMS bot only for urgent bulletins' fallback steps
    # (broadcasts.fallback): never in a bulletin's first fan-out, and /sdt xoa ends it.
    fallback: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ProcessedUpdate(Base):
    """An inbound update already handled: platforms redeliver, we act once."""

    __tablename__ = "processed_updates"

    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"), primary_key=True)
    update_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)


class Answer(Base):
    """What a bot owes a person: the answer to one message or press, stored in the same
    transaction as the turn it answers, so a crash cannot lose it.

    A sent answer is deleted; a failed one stays for operators with its reason. `holder`
    is the process that is sending it (NULL: written by a process that runs no bot,
    such as the CLI; the bot's process picks it up).
    """

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_waiting", "bot_id", "state", "holder"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"))
    chat_id: Mapped[str] = mapped_column(String(64))
    # The channel-neutral replies and what the platform needs to answer the event (the
    # pressed button's query, the message carrying it): see bot.answers.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[AnswerState] = mapped_column(str_enum(AnswerState), default=AnswerState.pending)
    holder: Mapped[str | None] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[dt.datetime]
    failed_at: Mapped[dt.datetime | None]


class PendingEvent(Base):
    """What a person sent, kept from the moment it arrived until its turn was taken.

    Stored before the platform is told it was received (the next getUpdates, a webhook's
    200), so a crash between the two loses nothing: the next start takes it up (a turn
    already taken is recognised by processed_updates). Deleted once handled.
    """

    __tablename__ = "pending_events"
    __table_args__ = (UniqueConstraint("bot_id", "update_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"))
    update_key: Mapped[str] = mapped_column(String(80))
    # The channel-neutral event and what answering a pressed button needs: bot.answers.
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    holder: Mapped[str | None] = mapped_column(String(120))
    received_at: Mapped[dt.datetime]


# --- officials -----------------------------------------------------------------------------


class Official(Timestamped, Base):
    __tablename__ = "officials"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="", server_default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[OfficialRole] = mapped_column(str_enum(OfficialRole))
    # The scope: a province or a commune; NULL only for admins.
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Signed into every session cookie; signing out (or an admin) raises it, which ends
    # every session of this official on the server, copied cookies included.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[dt.datetime | None]

    area: Mapped[Area | None] = relationship(lazy="raise")


# --- bulletins -----------------------------------------------------------------------------


class Bulletin(Timestamped, Base):
    __tablename__ = "bulletins"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"))
    priority: Mapped[Priority] = mapped_column(str_enum(Priority), default=Priority.routine)
    state: Mapped[BulletinState] = mapped_column(
        str_enum(BulletinState), default=BulletinState.draft, index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("officials.id"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    approved_at: Mapped[dt.datetime | None]
    review_comment: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    # Minutes a firing may be late (service down) and still be sent.
    grace_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    photo_path: Mapped[str | None] = mapped_column(String(255))
    # Audience filters; an empty list means "everyone" for that dimension.
    audience_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    audience_platforms: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[dt.datetime] = mapped_column(
        server_default=_now_default(), onupdate=func.now()
    )
    cancelled_at: Mapped[dt.datetime | None]
    # The approved warning this one updates (a storm's next position, say): published in
    # CAP as an Update referencing it, and its approval stops the earlier one's repeats.
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"), index=True)
    # An urgent bulletin's fallback chain (broadcasts.fallback): a person who has not
    # acknowledged `fallback_minutes` after their last step was sent gets the next of
    # `fallback_platforms` ("zns", "sms") at their consented phone; empty: no chain.
    fallback_minutes: Mapped[int | None] = mapped_column(Integer)
    fallback_platforms: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # The approved ZNS template the chain's ZNS step fills in. No foreign key: adding one
    # to bulletins on SQLite rebuilds the table, and templates are disabled, never deleted.
    zns_template_id: Mapped[int | None] = mapped_column(Integer)


class BulletinArea(Base):
    """The bulletin's audience areas (a union)."""

    __tablename__ = "bulletin_areas"

    bulletin_id: Mapped[int] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), primary_key=True
    )
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)


class BulletinTranslation(Base):
    __tablename__ = "bulletin_translations"
    __table_args__ = (UniqueConstraint("bulletin_id", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)


class Schedule(Timestamped, Base):
    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(
        ForeignKey("bulletins.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[ScheduleKind] = mapped_column(str_enum(ScheduleKind))
    run_at: Mapped[dt.datetime | None]
    cron: Mapped[str | None] = mapped_column(String(120))
    until: Mapped[dt.datetime | None]
    next_fire_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    last_fire_at: Mapped[dt.datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class BroadcastRun(Timestamped, Base):
    """One firing of a schedule; the unique key makes a double firing one run."""

    __tablename__ = "broadcast_runs"
    __table_args__ = (UniqueConstraint("bulletin_id", "fire_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id", ondelete="CASCADE"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id"))
    fire_at: Mapped[dt.datetime]
    state: Mapped[RunState] = mapped_column(str_enum(RunState), default=RunState.pending)
    total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class Delivery(Base):
    """One message of one run to one chat address; the queue the senders drain."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "chat_address_id"),
        # The claim query: a bot's pending rows, urgent first, oldest first.
        Index("ix_deliveries_claim", "bot_id", "state", "priority", "next_attempt_at"),
        # The follow-up of a bulletin (reports._Tally groups by these five, so each bot's
        # share comes from the same pass; the chart counts sent_at by minute): both read
        # this index alone, never the table. Partial: rows enter it when they leave
        # `pending`, so fan-out does not pay for it (a full index added 30-60 % to a
        # 1,000,000-row fan-out); reports.AreaTotals covers the rest.
        # Delivery receipts and callbacks find their row by the platform's message id;
        # partial, so the fan-out's inserts (no id yet) do not pay for it.
        Index(
            "ix_deliveries_message",
            "bot_id",
            "platform_message_id",
            sqlite_where=text("platform_message_id IS NOT NULL"),
            postgresql_where=text("platform_message_id IS NOT NULL"),
        ),
        Index(
            "ix_deliveries_progress",
            "run_id",
            "area_id",
            "bot_id",
            "state",
            "reason",
            "sent_at",
            sqlite_where=text(PROGRESS_WHERE),
            postgresql_where=text(PROGRESS_WHERE),
        ),
    )

    # No foreign keys on this table, on purpose: checking four of them per row was most of
    # the time of a 1,000,000-row fan-out on PostgreSQL (a key-share lock on the parent row
    # per check). Integrity holds by construction instead: rows are inserted only by
    # runs.fan_out, from a SELECT over the live run, addresses, bots and areas in the same
    # transaction, and none of those parents is ever deleted (/xoa anonymises the chat
    # address instead of deleting it; bots are disabled, areas and runs are kept). The
    # unique key below still makes fan-out idempotent.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer)
    # NULL only on rows whose address was deleted by /xoa before addresses were anonymised.
    chat_address_id: Mapped[int | None] = mapped_column(Integer)
    bot_id: Mapped[int] = mapped_column(Integer)
    # The area this person follows that put them in the audience (their commune or
    # village, never a whole province): what per-commune reports group by.
    area_id: Mapped[int | None] = mapped_column(Integer)
    # 0 = urgent, 1 = routine: claims order by it so warnings overtake routine sends.
    priority: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[DeliveryState] = mapped_column(
        str_enum(DeliveryState), default=DeliveryState.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Messages of this delivery already accepted (long texts and voice are several), so a
    # retry after a transient error continues instead of repeating the first part.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]
    platform_message_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(80))
    sent_at: Mapped[dt.datetime | None]
    # 0: the bulletin's fan-out; k: the k-th step of its fallback chain (broadcasts.fallback).
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Acknowledgement(Timestamped, Base):
    """A "Đã nhận" tap: once per person per bulletin."""

    __tablename__ = "acknowledgements"
    __table_args__ = (
        UniqueConstraint("bulletin_id", "subscriber_id"),
        # Each bot's taps of a bulletin (its follow-up, every 2 s) from the index alone.
        Index("ix_acknowledgements_bulletin_bot", "bulletin_id", "bot_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("broadcast_runs.id"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    # Kept after /xoa so per-commune acknowledgement rates stay right.
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    # The bot the tap came through (each bot's share on the follow-up); NULL for taps
    # recorded before bots were told apart. No foreign key: bots are never deleted.
    bot_id: Mapped[int | None] = mapped_column(Integer)


# --- audio ---------------------------------------------------------------------------------


class AudioAsset(Timestamped, Base):
    """One rendered, mastered audio file; content-addressed so a re-render is a cache hit."""

    __tablename__ = "audio_assets"
    __table_args__ = (UniqueConstraint("content_hash", "format"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[AssetKind] = mapped_column(str_enum(AssetKind))
    format: Mapped[str] = mapped_column(String(8))  # mp3, aac, ogg
    bulletin_id: Mapped[int | None] = mapped_column(
        ForeignKey("bulletins.id", ondelete="SET NULL"), index=True
    )
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    engine: Mapped[str] = mapped_column(String(40))  # which TTS engine actually spoke
    store_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_seconds: Mapped[float] = mapped_column(Float)
    loudness_lufs: Mapped[float | None] = mapped_column(Float)
    true_peak_dbtp: Mapped[float | None] = mapped_column(Float)


class AudioUpload(Base):
    """A platform's file id for an asset, so each bot uploads a file once."""

    __tablename__ = "audio_uploads"

    asset_id: Mapped[int] = mapped_column(
        ForeignKey("audio_assets.id", ondelete="CASCADE"), primary_key=True
    )
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(255))


class StationOnAir(enum.StrEnum):
    """What a commune's stream plays, as the station's driver last saw it (audio.station.OnAir)."""

    urgent = "urgent"  # an urgent bulletin or an operator's "play now", over everything else
    programme = "programme"  # the day's programme, from its slot
    filler = "filler"  # silence or the filler between programmes


class StationRequestState(enum.StrEnum):
    """The life of an operator's "play now" of a published bulletin on a commune's stream."""

    pending = "pending"  # waiting for the station's driver (within a second or two)
    played = "played"  # put on the commune's urgent queue, interrupting the stream
    dropped = "dropped"  # not played: too old, the bulletin withdrawn, or the station off


class Station(Base):
    """A commune whose loudspeaker stream runs (audio.station), switched on by an administrator.

    A row switched off stays (enabled false), so switching back on keeps its first date.
    The on_air columns are the driver's last look at the stream (written when it changes),
    so the dashboard on any host shows what plays; NULL until the driver has looked.
    """

    __tablename__ = "stations"

    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime]
    on_air: Mapped[StationOnAir | None] = mapped_column(str_enum(StationOnAir))
    on_air_title: Mapped[str | None] = mapped_column(String(400))
    on_air_since: Mapped[dt.datetime | None]  # when the driver saw it start


class StationRequest(Base):
    """An official's "play now" of a published bulletin on a commune's stream (audited)."""

    __tablename__ = "station_requests"
    __table_args__ = (
        Index("ix_station_requests_area_requested", "area_id", "requested_at"),
        # The driver's poll every second reads only the few pending rows.
        Index(
            "ix_station_requests_pending",
            "requested_at",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id", ondelete="CASCADE"))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    requested_at: Mapped[dt.datetime]
    state: Mapped[StationRequestState] = mapped_column(
        str_enum(StationRequestState), default=StationRequestState.pending
    )
    played_at: Mapped[dt.datetime | None]  # put on the stream, or given up (state says which)
    reason: Mapped[str | None] = mapped_column(String(40))  # why it was dropped


class StationPlay(Base):
    """An urgent bulletin's run already put on a commune's stream: a run plays once per
    commune, across restarts of the service and handovers of the station's lease."""

    __tablename__ = "station_plays"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("broadcast_runs.id", ondelete="CASCADE"), primary_key=True
    )
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), primary_key=True)
    played_at: Mapped[dt.datetime]


# --- inbox, documents, audit, leases -------------------------------------------------------


class InboxMessage(Timestamped, Base):
    """A message from a subscriber to the officials of their commune."""

    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    chat_address_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_addresses.id", ondelete="SET NULL")
    )
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    kind: Mapped[InboxKind] = mapped_column(str_enum(InboxKind), default=InboxKind.text)
    text: Mapped[str] = mapped_column(Text, default="", server_default="")
    attachment_ref: Mapped[str | None] = mapped_column(String(255))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[InboxStatus] = mapped_column(str_enum(InboxStatus), default=InboxStatus.new)
    reply_text: Mapped[str | None] = mapped_column(Text)
    replied_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    replied_at: Mapped[dt.datetime | None]


class Document(Timestamped, Base):
    """An official document in the library (law, decree, decision, guidance)."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(400))
    number: Mapped[str | None] = mapped_column(String(80), index=True)  # e.g. 1191/QĐ-TTg
    issuer: Mapped[str | None] = mapped_column(String(200))
    issued_on: Mapped[dt.date | None] = mapped_column(Date)
    language: Mapped[str] = mapped_column(String(8), default="vi", server_default="vi")
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    source_url: Mapped[str | None] = mapped_column(String(500))
    # Shown on the public library pages; internal guidance (e.g. for border guard stations)
    # stays in the dashboard and the CLI.
    public: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[dt.datetime] = mapped_column(
        server_default=_now_default(), onupdate=func.now()
    )


class DocumentTopic(Base):
    __tablename__ = "document_topics"

    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), primary_key=True)


class DocumentAttachment(Timestamped, Base):
    """A file that comes with a document version: the imported original, an annex, an image.

    The bytes live in the documents' asset store under a content-addressed key, so the
    same file attached to several versions is stored once.
    """

    __tablename__ = "document_attachments"
    __table_args__ = (UniqueConstraint("document_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))  # the file name shown and downloaded
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    store_key: Mapped[str] = mapped_column(String(255))
    # The file the document's text was imported from (as opposed to an annex).
    is_source: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AuditEntry(Base):
    """Who did what, when: one row for every official action."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    official_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    # "web", "cli" or "system": where the action came from.
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LoginThrottle(Base):
    """Recent failed sign-ins for one key (a client, a client and a name, or a name).

    The key is a hash, so no address or guessed name sits in the table in clear.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[dt.datetime] = mapped_column(index=True)
    # No attempt for this key is checked before this time (a growing delay, never a lock).
    wait_until: Mapped[dt.datetime]


class Lease(Base):
    """A named lease (a bot's sender, the scheduler): one holder at a time until expiry."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[dt.datetime]


# --- CAP ingestion -------------------------------------------------------------------------


class CapImportStatus(enum.StrEnum):
    drafted = "drafted"  # became a draft bulletin (an Alert or Update); officials take it on
    withdrawn = "withdrawn"  # a Cancel that withdrew the earlier import's unapproved bulletin
    noted = "noted"  # a Cancel recorded only: the bulletin was approved, officials decide
    skipped = "skipped"  # nothing created (no usable area, a test, expired...): see reason


class CapSource(Base):
    """A CAP feed (ATOM of CAP entries, or one bare CAP message) an administrator polls."""

    __tablename__ = "cap_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    poll_seconds: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    # Where an alert goes when none of its areas is one of ours (NULL: it is skipped).
    default_area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    created_at: Mapped[dt.datetime]
    last_polled_at: Mapped[dt.datetime | None]
    last_success_at: Mapped[dt.datetime | None]
    # The last poll's problem (NULL once a poll succeeds): for the administrator's page.
    last_error: Mapped[str | None] = mapped_column(Text)
    # The validators of the last feed body, for a conditional GET (304 Not Modified).
    etag: Mapped[str | None] = mapped_column(String(255))
    last_modified: Mapped[str | None] = mapped_column(String(64))


class CapImport(Base):
    """One CAP message seen from a source, once per (sender, identifier) whatever the source."""

    __tablename__ = "cap_imports"
    __table_args__ = (UniqueConstraint("sender", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL once the source is removed; what it brought stays.
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("cap_sources.id", ondelete="SET NULL"), index=True
    )
    sender: Mapped[str] = mapped_column(String(255))
    identifier: Mapped[str] = mapped_column(String(255))
    sent: Mapped[dt.datetime]
    msg_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[CapImportStatus] = mapped_column(str_enum(CapImportStatus))
    # The draft it became (drafted), or the bulletin a Cancel withdrew or noted.
    bulletin_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"), index=True)
    # The earlier import an Update or a Cancel refers to (by <references>), when we have it.
    references_id: Mapped[int | None] = mapped_column(ForeignKey("cap_imports.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[dt.datetime]


# --- vessels -------------------------------------------------------------------------------


class VesselRelation(enum.StrEnum):
    """How a person is tied to a vessel (any of them reached counts for the vessel)."""

    captain = "captain"  # thuyền trưởng: sails on it and answers for it
    crew = "crew"  # thuyền viên: sails on it
    owner = "owner"  # chủ tàu: owns it, may be ashore
    family = "family"  # gia đình trên bờ: can reach the vessel by radio or phone


class MarkMethod(enum.StrEnum):
    """How an official told a vessel about a bulletin by hand."""

    radio = "radio"  # by the border guard's or the fisheries' radio
    phone = "phone"  # by calling the vessel's number
    in_person = "in_person"  # face to face (at the port, at the family's house)
    other = "other"  # another way; the note says which


class Vessel(Timestamped, Base):
    """A fishing vessel of the provinces' registry; its phone is personal data."""

    __tablename__ = "vessels"

    id: Mapped[int] = mapped_column(primary_key=True)
    # As shown: "QNg-90123-TS".
    registration: Mapped[str] = mapped_column(String(32))
    # What lookups compare against: "qng-90123-ts" (vessels.registration_key).
    registration_key: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="", server_default="")
    commune_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    home_port_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    # A Vietnamese number as 0XXXXXXXXX (vessels.normalise_phone); shown only to officials
    # whose scope covers the commune, never logged nor audited.
    phone: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(
        server_default=_now_default(), onupdate=func.now()
    )


class VesselMember(Timestamped, Base):
    """A person who sails on or owns a vessel (or its family ashore); /xoa deletes the row."""

    __tablename__ = "vessel_members"

    vessel_id: Mapped[int] = mapped_column(
        ForeignKey("vessels.id", ondelete="CASCADE"), primary_key=True
    )
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    relation: Mapped[VesselRelation] = mapped_column(str_enum(VesselRelation))


class VesselMark(Base):
    """An official's record that a vessel was told about a bulletin by hand (audited);
    one per vessel and bulletin, a second marking updates it."""

    __tablename__ = "vessel_marks"
    __table_args__ = (UniqueConstraint("bulletin_id", "vessel_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vessel_id: Mapped[int] = mapped_column(ForeignKey("vessels.id", ondelete="CASCADE"), index=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id", ondelete="CASCADE"))
    official_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    marked_at: Mapped[dt.datetime]
    method: Mapped[MarkMethod] = mapped_column(str_enum(MarkMethod))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


# --- Zalo Official Account, ZNS ------------------------------------------------------------


class OAuthToken(Base):
    """An Official Account's current access and refresh tokens, by app: Zalo rotates the
    refresh token at every refresh (the old one stops working), so exactly one row per
    app, refreshed under a row lock, serves every process and both its OA and ZNS bots."""

    __tablename__ = "oauth_tokens"

    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    access_sealed: Mapped[str | None] = mapped_column(Text)  # TokenBox-sealed
    refresh_sealed: Mapped[str] = mapped_column(Text)  # TokenBox-sealed
    expires_at: Mapped[dt.datetime | None]  # of the access token
    refreshed_at: Mapped[dt.datetime | None]


class ZnsTemplate(Timestamped, Base):
    """A ZNS template Zalo approved for the account, registered once by an official:
    its id at Zalo, its parameters and what fills each, and its price per message."""

    __tablename__ = "zns_templates"
    __table_args__ = (UniqueConstraint("bot_id", "template_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id"))  # the ZNS bot (account)
    template_id: Mapped[str] = mapped_column(String(40))  # Zalo's id of the template
    name: Mapped[str] = mapped_column(String(120))
    # {"<parameter>": "<source>"}: sources are broadcasts.zns.SOURCES (title, summary,
    # area, time, readout); Zalo refuses a message missing any parameter.
    params: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    price_vnd: Mapped[int] = mapped_column(Integer, default=300)  # per message delivered
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
