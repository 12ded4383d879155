"""Runtime wiring for `haidang serve`: the parts of the roles a process runs (all by default)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Collection, Generator
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn
from fastapi import Request, Response
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audio import mastering, programmes, studio, tts
from audio import texts as audio_texts
from audio.station import (
    NowPlaying,
    Station,
    StationBinaries,
    find_station_binaries,
    make_station,
)
from bot import zns as zns_bot
from bot.answers import MAX_TURNS, Answers, Received, keep_events
from bot.answers import store as store_answer
from bot.conversation import Conversation
from bot.front_end import FrontEnd, FrontEndArgs, FrontEndFactory
from bot.listening import DocumentVoices
from bot.replies import inbox_answer
from bot.sms import SmsFrontEnd
from bot.telegram import CONNECTION_POOL, TelegramChannel, TelegramFrontEnd
from bot.telegram import WEBHOOK_PATH as TELEGRAM_WEBHOOK_PATH
from bot.telegram import handle_webhook as telegram_webhook
from bot.webhooks import one_line
from bot.zalo import WEBHOOK_PATH as ZALO_WEBHOOK_PATH
from bot.zalo import ZaloFrontEnd
from bot.zalo import handle_webhook as zalo_webhook
from bot.zalo_oa import ZaloOaFrontEnd
from broadcasts import bots, cap_import, inbox, leases, stations
from broadcasts.bots import BotError, TokenBox
from broadcasts.channels import ChannelRegistry
from broadcasts.outbox import Outbox, OutboxStats
from broadcasts.pacing import Lane
from broadcasts.parts import PartStatus
from broadcasts.schedules import Scheduler
from broadcasts.sender import Sender, SenderConfig, sender_lease
from broadcasts.subscribers import ensure_bot
from db import schema
from db.engine import make_engine, make_sessionmaker
from db.models import (
    ENV_PLATFORMS,
    Area,
    AudioAsset,
    Bot,
    Bulletin,
    BulletinState,
    Platform,
    StationOnAir,
)
from db.seed import seed_all
from haidang.media import StoredFileIds, StoreMedia, engine_name, production
from haidang.pool import PoolBudget, pool_budget
from haidang.roles import ALL_ROLES, Role
from haidang.settings import Settings
from haidang.stores import audio_store, document_store, local_copies
from web.app import Webhook, create_app
from web.audio import make_router as make_audio_pages
from web.cap import make_router as make_cap_feeds
from web.dashboard import make_admin_check
from web.dashboard import make_router as make_dashboard
from web.library import make_router as make_library_pages

log = logging.getLogger("haidang.serve")

INBOX_REPLY_WAIT_S = 10.0  # how long the dashboard waits to say "sent" (else: "queued")
PAID_BROADCAST_RATE = 1000.0  # Telegram's limit for a bot's paid broadcasts, msg/s
# rate x latency with room: as many sends in flight as the Telegram transport has connections
PAID_BROADCAST_IN_FLIGHT = CONNECTION_POOL


class StartupError(RuntimeError):
    """The service cannot start; the message tells the operator what to do."""


class Part(Protocol):
    """One part of the service (web, a bot, the scheduler, a sender, audio work)."""

    name: str

    def status(self) -> PartStatus: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class OffPart:
    """A part that is not configured here; it only reports why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def status(self) -> PartStatus:
        return PartStatus(active=False, detail=self._reason)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The runtime owns SIGINT/SIGTERM for every part; uvicorn would re-raise them
        # after its own shutdown and kill the process before the other parts stop.
        yield


class WebPart:
    """The web app under uvicorn: landing page, /healthz, /readyz, dashboard, audio pages,
    webhooks. A process without the web role serves only the landing page, /healthz and
    /readyz (part "health"), so every process can be probed."""

    def __init__(self, settings: Settings, service: Service, *, full: bool = True) -> None:
        self.name = "web" if full else "health"
        public = str(settings.public_base_url) if settings.public_base_url else None
        routers = []
        if full:
            dashboard = make_dashboard(
                service.sessions, settings, send_reply=service.send_inbox_reply,
                bot_queues=service.bot_queues,
            )  # fmt: skip
            routers = [
                dashboard,
                make_audio_pages(service.read_sessions, service.store, public, tz=settings.tz),
                make_library_pages(service.read_sessions, service.documents_store),
                make_cap_feeds(service.read_sessions, settings),
            ]
        self.app = create_app(
            engine=service.engine,
            parts=service.statuses,
            ready=service.ready,
            webhooks=service.webhooks if full else None,
            routers=routers,
            data_dir=settings.data_dir,
            min_free_bytes=settings.data_dir_min_free_mb * 1_000_000,
            may_see_details=make_admin_check(service.sessions, settings),
        )
        config = uvicorn.Config(
            self.app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,  # keep our handlers (and their redaction)
            access_log=False,
            lifespan="off",
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._where = f"http://{settings.http_host}:{settings.http_port}"

    def status(self) -> PartStatus:
        running = self._task is not None and not self._task.done()
        return PartStatus(active=running, detail=self._where if running else "stopped")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="web")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error, if any
                raise StartupError(f"the web server did not start on {self._where}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task


def webhook_secret(settings: Settings, platform: Platform, bot_id: int | None = None) -> str:
    """A bot's webhook secret: for each platform's first bot (`bot_id` None) the configured
    one or one derived from SECRET_KEY; for the others, one derived from SECRET_KEY and
    the bot (never none at all)."""
    configured = {
        Platform.telegram: settings.telegram_webhook_secret,
        Platform.zalo: settings.zalo_webhook_secret,
    }.get(platform)
    if configured is not None and bot_id is None:
        return configured.get_secret_value()
    key = settings.secret_key.get_secret_value().encode()
    which = platform.value if bot_id is None else f"{platform.value}:{bot_id}"
    return hmac.new(key, f"webhook:{which}".encode(), hashlib.sha256).hexdigest()


WEBHOOK_PATHS = {
    Platform.telegram: TELEGRAM_WEBHOOK_PATH,
    Platform.zalo: ZALO_WEBHOOK_PATH,
    Platform.zalo_oa: "/webhooks/zalo_oa",  # followers' events (each bot at /<bot id>)
    Platform.zns: "/webhooks/zns",  # delivery callbacks (each bot at /<bot id>)
}  # SMS has none: its messages and receipts come over the SMPP link

# ZNS delivery callbacks, which Zalo may post to the app's OA webhook (Bots._zns_of).
ZNS_EVENTS = frozenset((zns_bot.DELIVERED_EVENT, zns_bot.FAILED_EVENT))

# The gateway platforms' front ends (bot/front_end.py), made from a bot's row.
FRONT_ENDS: dict[Platform, FrontEndFactory] = {
    Platform.sms: SmsFrontEnd,
    Platform.zalo_oa: ZaloOaFrontEnd,
    Platform.zns: zns_bot.ZnsFrontEnd,
}


def webhook_path(platform: Platform, bot_id: int | None = None) -> str:
    """Where a bot's updates are posted: /webhooks/<platform> for the first bot,
    /webhooks/<platform>/<bot id> for the others."""
    base = WEBHOOK_PATHS[platform]
    return base if bot_id is None else f"{base}/{bot_id}"


@dataclasses.dataclass(frozen=True)
class BotConfig:
    """A bot as the processes run it, read from `bots` (and the environment)."""

    bot_id: int
    platform: Platform
    label: str  # "telegram" for the first bot, "telegram:<name>" for the others
    first: bool
    token: str | None  # None in a process that only relays its webhook
    rate_per_second: float
    per_chat_interval: float
    # The rest of the sender's settings (paid broadcast, quiet hours): when they or the
    # rate change, the running bot's sender restarts; its front end goes on.
    sending: tuple[object, ...]
    # A gateway's options (bots.options): a change restarts its front end.
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def same_bot(self, other: BotConfig) -> bool:
        """Whether `other` can take this bot's place without restarting its front end (the
        same token, name and options); a restart is kept for that, since a Zalo bot's long
        polls cut at a restart may take the next few updates with them."""
        mine = (self.token, self.label, self.first, self.options)
        return mine == (other.token, other.label, other.first, other.options)

    @property
    def hook_id(self) -> int | None:
        """The bot id in the webhook's path and secret (None: the first bot's)."""
        return None if self.first else self.bot_id


class ChatPart:
    """One chat bot (Telegram or Zalo), connecting in the background until it can.

    A platform that cannot be reached (the network down, the platform blocked in the
    country, a token refused) must not stop the dashboard, the other bot or the senders:
    the part reports "retrying" with the reason, tries again with a growing delay, logs
    once per change of reason, and registers its channel (and gets a sender) once up.
    """

    FIRST_TRY_S = 10.0  # how long start-up waits for the first attempt before going on
    RETRY_FIRST_S = 1.0
    RETRY_MAX_S = 60.0

    def __init__(self, config: BotConfig, settings: Settings, service: Service) -> None:
        self.name = config.label
        self.platform = config.platform
        self.config = config
        self._settings = settings
        self._service = service
        self.front: FrontEnd | None = None
        self._connecting: FrontEnd | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure: str | None = None  # why the last attempt failed
        self._bot_id: int | None = None
        self._next_try: float | None = None  # monotonic time of the next attempt
        # The bot's lease (`sender:<bot id>`, shared with its sender): only its holder
        # runs the front end (polls, takes turns, answers); others stand by for it.
        self._ttl = dt.timedelta(seconds=settings.bot_lease_ttl_s)
        self._holding = False
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._standby: str | None = None  # who holds the lease while we wait for it

    def status(self) -> PartStatus:
        if self.front is not None:
            status = self.front.status()
            outbox = self._service.outboxes.get(self._bot_id) if self._bot_id else None
            if outbox is None:
                return status
            q = outbox.stats()
            backlog = q.broadcast_waiting if q.broadcast_backlog is None else q.broadcast_backlog
            queue = (
                f"{q.replies_waiting} answers and {backlog} broadcast sends waiting, "
                f"{q.rate_limited_last_hour} x 429 in the last hour"
            )
            return PartStatus(active=status.active, detail=f"{status.detail}; {queue}")
        if self._standby is not None:
            return PartStatus(
                active=False, detail=f"standby: the bot runs in {self._standby} (lease)"
            )
        if self._failure is None:
            return PartStatus(active=False, detail="starting")
        wait = max(0, round((self._next_try or 0) - time.monotonic()))
        return PartStatus(
            active=False, detail=f"retrying in {wait} s: {self._failure}", retrying=True
        )

    @property
    def holding(self) -> bool:
        """This process holds the bot's lease (runs it)."""
        return self._holding

    async def start(self) -> None:
        config = self.config
        bot_id = config.bot_id
        # One budget for everything this bot sends: its answers and its sender share it.
        self._service.outboxes[bot_id] = Outbox(config.rate_per_second, config.per_chat_interval)
        self._bot_id = bot_id
        first_try = asyncio.Event()
        self._task = asyncio.create_task(self._run(bot_id, first_try), name=self.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_try.wait(), self.FIRST_TRY_S)

    def _front_end(self, bot_id: int) -> FrontEnd:
        settings, config = self._settings, self.config
        public = str(settings.public_base_url).rstrip("/") if settings.public_base_url else None
        secret = webhook_secret(settings, self.platform, config.hook_id)
        service = self._service
        answers = Answers(
            service.sessions, service.conversation, service.outboxes[bot_id],
            bot_id=bot_id, holder=service.holder, turn_slots=service.turn_slots,
        )  # fmt: skip
        service.answers[bot_id] = answers
        if self.platform not in ENV_PLATFORMS:
            hooked = public is not None and self.platform in WEBHOOK_PATHS  # SMS has none
            args = FrontEndArgs(
                bot_id=bot_id, secret=_secret(config.token), options=config.options,
                answers=answers, sessions=service.sessions,
                box=TokenBox(settings.secret_key.get_secret_value()),
                webhook_url=f"{public}{webhook_path(self.platform, bot_id)}" if hooked else None,
                webhook_secret=secret,
            )  # fmt: skip
            return FRONT_ENDS[self.platform](args)
        telegram = self.platform is Platform.telegram
        front_end = TelegramFrontEnd if telegram else ZaloFrontEnd
        base = settings.telegram_api_base_url if telegram else settings.zalo_api_base_url
        # Telegram keeps its file ids of uploaded audio in the database across restarts.
        extra = {}
        if telegram:
            ids = StoredFileIds(service.sessions, bot_id, read_sessions=service.read_sessions)
            extra["file_ids"] = ids
        return front_end(
            **extra,
            token=_secret(config.token),
            api_base_url=str(base),
            answers=answers,
            bot_id=bot_id,
            webhook_url=f"{public}{webhook_path(self.platform, config.hook_id)}"
            if public
            else None,
            webhook_secret=secret,
        )

    @property
    def standby(self) -> bool:
        """Waiting for the bot's lease, which another live process holds."""
        return self._standby is not None

    async def _run(self, bot_id: int, first_try: asyncio.Event) -> None:
        """Wait for the bot's lease, run the bot while holding it; should the lease be lost
        (this process stalled past its TTL and another took the bot), stop the bot here
        and stand by again."""
        while True:
            await self._await_lease(bot_id, first_try)
            self._lost.clear()
            self._keeper = asyncio.create_task(self._keep_lease(bot_id), name=f"{self.name}:lease")
            front = await self._connect(bot_id, first_try)
            if front is not None:
                await self._lost.wait()
            log.error("%s: the bot's lease was taken by another process; standing by", self.name)
            await self._keeper
            self.front = None
            self._service.channels.unregister(bot_id)
            await self._service.senders.remove(bot_id)
            if self._connecting is not None:
                await self._connecting.stop()
                self._connecting = None

    async def _take_lease(self, bot_id: int) -> bool:
        async with self._service.sessions.begin() as session:
            return await leases.acquire(
                session, sender_lease(bot_id), self._service.holder, dt.datetime.now(dt.UTC),
                self._ttl,
            )  # fmt: skip

    async def _await_lease(self, bot_id: int, first_try: asyncio.Event) -> None:
        """Until this process holds the bot's lease: at once when free, else within a
        fifth of its TTL after the holder stops renewing it (it died) and it expires."""
        refused_since: float | None = None
        while True:
            try:
                # A worker at its share of the bots leaves a free bot to a worker with
                # fewer (Bots.may_take), unless none took it for a few TTLs.
                now = time.monotonic()
                fair = await self._service.bots.may_take(self)
                if fair:
                    refused_since = None
                elif refused_since is None:
                    refused_since = now
                patient = refused_since is not None and (
                    now - refused_since < 3 * self._ttl.total_seconds()
                )
                if not patient and await self._take_lease(bot_id):
                    self._holding, self._standby = True, None
                    return
                async with self._service.sessions() as session:
                    current = await leases.current(session, sender_lease(bot_id))
                self._standby = current[0] if current else "another process"
            except Exception as exc:  # the database: try again
                log.warning("%s: cannot read the bot's lease (%s)", self.name, one_line(exc))
            first_try.set()
            await asyncio.sleep(min(1.0, self._ttl.total_seconds() / 5))

    async def _keep_lease(self, bot_id: int) -> None:
        """Renew the lease every third of its TTL; set _lost when another process has it."""
        period = self._ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                holding = await self._take_lease(bot_id)
            except Exception as exc:  # a database hiccup: the lease outlives a few of them
                log.warning("%s: cannot renew the bot's lease (%s)", self.name, one_line(exc))
                continue
            if not holding:
                self._holding = False
                self._lost.set()
                return

    async def _connect(self, bot_id: int, first_try: asyncio.Event) -> FrontEnd | None:
        """Start the front end, retrying with a growing delay; None when the lease was
        lost meanwhile."""
        # One front end for every attempt: its start() may be called again after a
        # failure (the libraries initialise only what is not yet initialised).
        front = self._connecting = self._front_end(bot_id)
        delay = self.RETRY_FIRST_S
        while True:
            if self._lost.is_set():
                return None
            try:
                await front.start()
                break
            except Exception as exc:  # any failure: this part retries, the others go on
                reason = _failure_reason(exc)
                if reason != self._failure:
                    log.warning("%s: cannot start (%s); retrying", self.name, reason)
                self._failure = reason
                self._next_try = time.monotonic() + delay
            first_try.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), delay)
            delay = min(delay * 2, self.RETRY_MAX_S)
        if isinstance(front, TelegramFrontEnd) and front.application.bot.username:
            # The dashboard's QR posters print t.me/<username>?start=c<commune code>.
            async with self._service.sessions.begin() as session:
                row = await session.get_one(Bot, bot_id)
                row.username = front.application.bot.username
        self.front = front
        self._service.channels.register(bot_id, front.channel())
        if self._failure is not None:
            log.info("%s: on (%s) after retrying", self.name, front.status().detail)
        self._failure = None
        first_try.set()
        await self._service.senders.add(bot_id)
        return front

    async def retune(self, config: BotConfig) -> None:
        """Take new sending settings (rate, per-chat gap, paid broadcast, quiet hours): the
        bot's outbox paces at the new rate at once, and its sender, if it runs here,
        restarts with them (finishing what it claimed); the front end goes on."""
        self.config = config
        outbox = self._service.outboxes.get(config.bot_id)
        if outbox is not None:
            outbox.pacer.set_rate(config.rate_per_second)
            outbox.pacer.per_chat_interval = config.per_chat_interval
        if self._service.channels.get(config.bot_id) is not None:
            await self._service.senders.remove(config.bot_id)
            await self._service.senders.add(config.bot_id)

    async def retire(self) -> None:
        """Stop running this bot here while the service goes on (it was disabled, its
        token or rate changed, or another worker should take it): its sender finishes
        what it claimed, then the lease is given back for the next holder."""
        if self._bot_id is not None:
            self._service.channels.unregister(self._bot_id)
            await self._service.senders.remove(self._bot_id)
        await self.stop()
        if self._bot_id is not None:
            self._service.outboxes.pop(self._bot_id, None)
            self._service.answers.pop(self._bot_id, None)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._keeper is not None and not self._keeper.done():
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._connecting is not None:
            await self._connecting.stop()
        # Given back only now, once this process's answers are done: a successor takes
        # the bot at once, and takes up nothing this process was still turning.
        if self._holding and self._bot_id is not None:
            with contextlib.suppress(Exception):  # the lease expires anyway
                async with self._service.sessions.begin() as session:
                    await leases.release(session, sender_lease(self._bot_id), self._service.holder)
            self._holding = False

    async def webhook(self, request: Request) -> Response:
        if self.front is not None:
            return await self.front.webhook(request)  # the bot runs here: turned at once
        if self._bot_id is None:
            return Response(status_code=503)  # not started yet: the platform retries
        # Another process runs the bot: keep the update for it (see WebhookPart).
        return await _relay(self.config, request, self._settings, self._service)


async def _relay(
    config: BotConfig, request: Request, settings: Settings, service: Service
) -> Response:
    """A webhook update received where the bot does not run: checked and kept with no
    holder (exactly once: the bot and update key are unique); the process holding the
    bot's lease takes its turn (bot.answers.UNHELD_POLL_S)."""

    bot_id = config.bot_id

    async def keep(arrivals: Collection[Received]) -> None:
        await keep_events(
            service.sessions, bot_id=bot_id, arrivals=list(arrivals), holder=None,
            now=dt.datetime.now(dt.UTC),
        )  # fmt: skip

    handle = telegram_webhook if config.platform is Platform.telegram else zalo_webhook
    secret = webhook_secret(settings, config.platform, config.hook_id)
    return await handle(request, secret=secret, bot_id=bot_id, keep=keep)


class WebhookPart:
    """A bot's webhook in a process that does not run the bot (the web role alone): checks
    the secret, keeps each update for the worker holding the bot's lease, answers 200.
    Never calls the platform's API: it needs the webhook secret (or SECRET_KEY, from
    which the default is derived), not the token."""

    def __init__(self, config: BotConfig, settings: Settings, service: Service) -> None:
        self.name = config.label
        self.platform = config.platform
        self.config = config
        self._settings = settings
        self._service = service

    def status(self) -> PartStatus:
        return PartStatus(
            active=True, detail="webhook: updates kept for the worker running the bot"
        )

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def retune(self, config: BotConfig) -> None:
        self.config = config

    async def retire(self) -> None:
        return None

    async def webhook(self, request: Request) -> Response:
        return await _relay(self.config, request, self._settings, self._service)


def _failure_reason(exc: BaseException) -> str:
    """A short reason for /healthz and the log: the exception's type and first line.

    The log's redaction removes tokens from log lines; /healthz is not a log line, so a
    message that names the token (python-telegram-bot's InvalidToken does) is cut here.
    """
    message = str(exc).splitlines()[0] if str(exc) else ""
    if "token" in message.lower():
        message = "the token was refused"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class SchedulerPart:
    """Fires schedules into broadcast runs; one active across processes (a lease)."""

    name = "scheduler"

    def __init__(self, service: Service) -> None:
        self._scheduler = Scheduler(service.sessions, tz=service.settings.tz, holder=service.holder)

    def status(self) -> PartStatus:
        return self._scheduler.status()

    async def start(self) -> None:
        await self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()


class CapImportPart:
    """Polls the administrator's CAP sources (broadcasts.cap_import) into draft bulletins;
    one process polls (the lease "cap-import"). A source's failure is recorded on its row
    and logged by its name (never the query of its URL); it never stops the rest."""

    name = "cap-import"
    TICK_S = 1.0  # how often due sources are looked for; each has its own interval
    LEASE = "cap-import"
    LEASE_TTL = dt.timedelta(seconds=60)  # longer than one pass of slow sources
    RENEW_EVERY = dt.timedelta(seconds=10)

    def __init__(self, service: Service) -> None:
        self._service = service
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._holding = False
        self._renewed: dt.datetime | None = None  # when the lease was last taken or renewed
        self._error: str | None = None
        self.polls = 0

    def status(self) -> PartStatus:
        if self._task is None or self._task.done():
            return PartStatus(active=False, detail="stopped")
        if self._error is not None:
            return PartStatus(active=True, detail=self._error, retrying=True)
        if not self._holding:
            return PartStatus(active=True, detail="standby (another process polls)")
        return PartStatus(active=True, detail=f"{self.polls} polls")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="cap-import")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._holding:
            with contextlib.suppress(Exception):  # the lease expires anyway
                async with self._service.sessions.begin() as session:
                    await leases.release(session, self.LEASE, self._service.holder)

    async def _loop(self) -> None:
        async with cap_import.new_client() as client:
            while not self._stop.is_set():
                try:
                    await self._tick(client)
                    self._error = None
                except Exception as exc:
                    if self._error is None:
                        log.error("cap-import: pass failed; retrying", exc_info=True)
                    self._error = _failure_reason(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.TICK_S)

    async def _tick(self, client: httpx.AsyncClient) -> None:
        service = self._service
        now = dt.datetime.now(dt.UTC)
        # The lease is written every RENEW_EVERY, not every tick: a write a second for
        # a part most deployments leave idle would contend for SQLite's one writer.
        if self._renewed is None or now - self._renewed >= self.RENEW_EVERY:
            async with service.sessions.begin() as session:
                self._holding = await leases.acquire(
                    session, self.LEASE, service.holder, now, self.LEASE_TTL
                )
            self._renewed = now
        if self._holding:
            reports = await cap_import.poll_due(service.sessions, client, now, stop=self._stop)
            self.polls += len(reports)


class AudioPart:
    """Renders each submitted bulletin's voice and loudspeaker MP3 in the background,
    and rebuilds the daily programmes a bulletin sent, cancelled or expired changes.

    Voice is usually ready before a bulletin fires; when it is not, the text goes out
    and the voice joins the deliveries built after it is rendered (never the reverse).
    Programmes are rebuilt by one process at a time (a lease: two builders of one day
    could otherwise leave the older build in place), after the changes to a day have
    settled for QUIET_S (a burst rebuilds once), at the latest MAX_WAIT_S after the
    first change.
    """

    name = "audio"
    POLL_S = 2.0
    QUIET_S = 3.0
    MAX_WAIT_S = 30.0
    LEASE = "audio-programmes"
    LEASE_TTL = dt.timedelta(seconds=15)
    # On start or on taking the lease over: what changed while nobody was watching.
    LOOK_BACK = dt.timedelta(hours=24)
    # Rows carry their writer's clock, read before its commit (and maybe on another
    # machine): each poll looks this far behind the previous one; events are deduplicated.
    OVERLAP = dt.timedelta(seconds=30)
    STATES = (
        BulletinState.pending_approval,
        BulletinState.approved,
        BulletinState.scheduled,
        BulletinState.sending,
    )

    def __init__(self, service: Service) -> None:
        self._service = service
        self._engine = service.tts_engine
        self._production = production(service.settings)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._failed: set[int] = set()  # not retried until restart: logged once each
        self.rendered = 0
        self.programmes_built = 0  # rebuilds that rendered (cache hits not counted)
        self._pending = programmes.PendingRebuilds(quiet=self.QUIET_S, max_wait=self.MAX_WAIT_S)
        self._cursor: dt.datetime | None = None  # end of the last window read, while holding
        self._seen: dict[str, dt.datetime] = {}  # events handled, by key, while in the window

    def status(self) -> PartStatus:
        running = self._task is not None and not self._task.done()
        engines = ", ".join(tts.available())
        detail = (
            f"TTS_ENGINE={self._engine} (registered: {engines}); {self.rendered} rendered, "
            f"{self.programmes_built} programmes built, {len(self._pending)} waiting"
        )
        return PartStatus(active=running, detail=detail)

    async def start(self) -> None:
        jingle = self._production.jingle
        if jingle is not None:
            try:  # a jingle FFmpeg cannot read would fail every render: say so at start
                await asyncio.to_thread(mastering.decode_audio, jingle)
            except mastering.MasteringError as exc:
                raise StartupError(f"AUDIO_JINGLE: {exc}") from None
        self._task = asyncio.create_task(self._loop(), name="audio")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._cursor is not None:
            with contextlib.suppress(Exception):  # the lease expires anyway
                async with self._service.sessions.begin() as session:
                    await leases.release(session, self.LEASE, self._service.holder)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._render_waiting()
            except Exception:
                log.error("audio: rendering pass failed; retrying", exc_info=True)
            try:
                await self._rebuild_programmes()
            except Exception:
                log.error("audio: programme pass failed; retrying", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.POLL_S)

    async def _render_waiting(self) -> None:
        service = self._service
        rendered = select(AudioAsset.bulletin_id).where(AudioAsset.bulletin_id.is_not(None))
        async with service.read_sessions() as session:
            waiting = (
                await session.scalars(
                    select(Bulletin.id)
                    .where(Bulletin.state.in_(self.STATES), Bulletin.id.not_in(rendered))
                    .order_by(Bulletin.priority.desc(), Bulletin.id)  # urgent first
                )
            ).all()
        for bulletin_id in waiting:
            if bulletin_id in self._failed or self._stop.is_set():
                continue
            try:
                assets = await studio.render_bulletin(
                    service.sessions, bulletin_id, store=service.store, engine_name=self._engine,
                    tz=service.settings.tz, now=dt.datetime.now(dt.UTC),
                    work_dir=service.settings.data_dir / "work", production=self._production,
                )  # fmt: skip
            except Exception:
                self._failed.add(bulletin_id)
                log.error("audio: bulletin %d could not be rendered", bulletin_id, exc_info=True)
                continue
            self.rendered += 1
            engines = {a.engine for a in assets}
            log.info("audio: bulletin %d rendered (%s)", bulletin_id, ", ".join(sorted(engines)))

    async def _rebuild_programmes(self) -> None:
        service = self._service
        now = dt.datetime.now(dt.UTC)
        async with service.sessions.begin() as session:
            holding = await leases.acquire(session, self.LEASE, service.holder, now, self.LEASE_TTL)
        if not holding:
            self._cursor = None  # another process builds; look back again if we take over
            self._pending.clear()
            return
        since = now - self.LOOK_BACK if self._cursor is None else self._cursor - self.OVERLAP
        async with service.read_sessions() as session:
            changes = await programmes.programme_changes(
                session, since=since, now=now, tz=service.settings.tz
            )
        self._cursor = now
        for change in changes:
            if change.key not in self._seen:
                self._seen[change.key] = change.at
                self._pending.add(change.programmes, time.monotonic())
        self._seen = {key: at for key, at in self._seen.items() if at > since}
        for code, day in self._pending.due(time.monotonic()):
            if self._stop.is_set():
                return
            started = dt.datetime.now(dt.UTC)
            try:
                asset = await programmes.build_daily_programme(
                    service.sessions, code, day, store=service.store, engine_name=self._engine,
                    tz=service.settings.tz, now=started,
                    work_dir=service.settings.data_dir / "work", production=self._production,
                )  # fmt: skip
            except Exception:
                log.error("audio: programme %s %s could not be built", code, day, exc_info=True)
                continue
            if asset is not None and asset.created_at == started:
                self.programmes_built += 1
                log.info("audio: programme %s %s rebuilt", code, day)


class StationPart:
    """Drives the commune loudspeaker stations (audio.station) from the database.

    One process drives them (the lease "station"); the streams themselves run detached
    and outlive it, so stopping or restarting Hải Đăng leaves them playing (with what
    Liquidsoap already holds), and the next holder attaches to them. Every POLL_S:

    - the switched-on communes: a change restarts Liquidsoap on the new set (a few
      seconds of silence on every mount; the driver has no hot reconfiguration);
    - urgent runs started within URGENT_WINDOW that reach a switched-on commune: once the
      bulletin's MP3 exists, it interrupts the commune's stream, once per (run, commune),
      remembered in memory and in `station_plays` (so a restart or a new holder does not
      play it again);
    - each commune's programme slots (STATION_PROGRAMME_TIMES, local time): PROGRAMME_LEAD
      before a slot, the latest programme of that day is handed to Liquidsoap, which
      plays it at the slot even if we are down then. Handing it over only shortly before
      lets a programme rebuilt during the day air in its newest form (Liquidsoap cannot
      take a queued programme back).
    - operators' "play now" requests (station_requests) for switched-on communes: once
      the bulletin's MP3 exists, it goes on the commune's urgent queue and the request is
      marked played (dropped after stations.PLAY_REQUEST_TTL, or if the bulletin was
      withdrawn meanwhile);
    - what each stream plays (the driver's now_playing), written to `stations` only when
      it changes, so the dashboard on any host shows it.
    """

    name = "station"
    POLL_S = 1.0
    LEASE = stations.LEASE
    LEASE_TTL = dt.timedelta(seconds=15)
    RENEW_EVERY = dt.timedelta(seconds=5)
    HEALTH_S = 10.0  # how often the station processes are checked (and restarted if gone)
    URGENT_WINDOW = dt.timedelta(minutes=10)
    PROGRAMME_LEAD = dt.timedelta(minutes=5)
    HELD_FOR = dt.timedelta(days=2)  # programme files held for Liquidsoap are kept so long

    def __init__(self, service: Service, binaries: StationBinaries) -> None:
        self._service = service
        self._binaries = binaries
        settings = service.settings
        self._files = local_copies(service.store, settings)  # Liquidsoap reads file paths
        self._work_dir = settings.station_dir
        self._station: Station | None = None
        self._communes: tuple[str, ...] | None = None  # None: not read yet
        self._checked = 0.0  # monotonic time of the last health check
        self._on_air = False  # the station came up on the current set of communes
        # While holding the lease; on start, as if held until the first pass says.
        self._renewed: dt.datetime | None = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._played: set[tuple[int, int]] = set()  # (run id, commune area id)
        self._queued: set[tuple[str, dt.datetime]] = set()  # (commune, slot) handed over
        self._requested: set[int] = set()  # "play now" requests put on the air
        self._seen: dict[str, NowPlaying] = {}  # commune → what it played at the last look
        self._error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.urgent_played = 0
        self.programmes_queued = 0
        self.requests_played = 0

    def status(self) -> PartStatus:
        if self._task is None or self._task.done():
            return PartStatus(active=False, detail="stopped")
        if self._error is not None:
            return PartStatus(active=True, detail=self._error, retrying=True)
        if self._communes is None and self._renewed is not None:
            return PartStatus(active=True, detail="starting")
        if self._renewed is None:
            return PartStatus(active=True, detail="standby (another process drives it)")
        if not self._communes:
            return PartStatus(active=True, detail="no commune switched on")
        if not self._on_air:
            return PartStatus(active=True, detail=f"starting {len(self._communes)} communes")
        detail = (
            f"{len(self._communes)} communes on {self._base_url()}; "
            f"{self.urgent_played} urgent played, {self.programmes_queued} programmes queued"
        )
        return PartStatus(active=True, detail=detail)

    def _base_url(self) -> str:
        settings = self._service.settings
        if settings.station_public_url is not None:
            return str(settings.station_public_url).rstrip("/")
        return f"http://{settings.station_host}:{settings.station_port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="station")

    async def stop(self) -> None:
        """Stop driving; the streams keep playing (`haidang station off` ends one)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._renewed is not None and self._communes is not None:
            with contextlib.suppress(Exception):  # the lease expires anyway
                async with self._service.sessions.begin() as session:
                    await leases.release(session, self.LEASE, self._service.holder)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._tick(dt.datetime.now(dt.UTC))
                self._error = None
            except Exception as exc:
                if self._error is None:
                    log.error("station: pass failed; retrying", exc_info=True)
                self._error = _failure_reason(exc)
                self._checked = 0.0  # check the processes on the next pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.POLL_S)

    async def _hold(self, now: dt.datetime) -> bool:
        if self._renewed is not None and now - self._renewed < self.RENEW_EVERY:
            return True
        service = self._service
        async with service.sessions.begin() as session:
            holding = await leases.acquire(session, self.LEASE, service.holder, now, self.LEASE_TTL)
        if not holding:
            if self._renewed is not None:
                log.info("station: another process drives the station now")
            self._renewed = None
            self._station = None  # the streams are the new holder's to drive
            self._communes = None
            self._on_air = False
            return False
        self._renewed = now
        return True

    async def _tick(self, now: dt.datetime) -> None:
        if not await self._hold(now):
            return
        async with self._service.read_sessions() as session:
            communes = await stations.enabled_communes(session)
        station = await self._configure(tuple(area.code for area in communes))
        if station is None:
            return
        await self._play_urgent(station, communes, now)
        await self._play_requests(station, now)
        await self._queue_programmes(station, communes, now)
        await self._watch(station, communes)

    async def _configure(self, codes: tuple[str, ...]) -> Station | None:
        if codes != self._communes:
            if not codes:
                # Streams left from before (switched off while we were down, or just now):
                # the work dir's processes, whoever started them. The driver needs a
                # commune to be built; "0" only names it.
                if any(self._work_dir.glob("*.pid")):
                    await self._make(["0"]).stop()
                if self._communes:
                    log.info("station: no commune switched on; streams stopped")
                self._station = None
            else:
                self._station = self._make(codes)
                self._on_air = False
                self._checked = 0.0
                self._queued.clear()  # a restarted Liquidsoap forgot its slots
            self._seen.clear()  # look again (a write is a no-op when nothing changed)
            self._communes = codes
        if self._station is not None and time.monotonic() - self._checked > self.HEALTH_S:
            await self._station.ensure_running()  # attaches, starts, or restarts on a change
            if not self._on_air:
                self._on_air = True
                log.info("station: %d communes on %s", len(codes), self._base_url())
            self._checked = time.monotonic()
        return self._station

    def _make(self, codes: Collection[str]) -> Station:
        settings = self._service.settings
        return make_station(
            "liquidsoap", work_dir=self._work_dir, communes=codes, port=settings.station_port,
            host=settings.station_host, filler=settings.station_filler, binaries=self._binaries,
        )  # fmt: skip

    async def _play_urgent(self, station: Station, communes: list[Area], now: dt.datetime) -> None:
        service = self._service
        async with service.read_sessions() as session:
            plays = await stations.urgent_plays(session, communes, since=now - self.URGENT_WINDOW)
            due = [p for p in plays if (p.run_id, p.area_id) not in self._played]
            assets = {
                p.bulletin_id: await stations.bulletin_mp3(session, p.bulletin_id) for p in due
            }
        for play in due:
            asset = assets[play.bulletin_id]
            if asset is None:
                continue  # not rendered yet: the audio part is on it; next pass
            path = await asyncio.to_thread(self._files.path_for, asset.store_key)
            if path is None:
                raise RuntimeError(f"no local file for {asset.store_key}")
            await station.play_urgent(play.commune, path, play.title)
            self._played.add((play.run_id, play.area_id))
            self.urgent_played += 1
            log.info("station: bulletin %d on air in %s", play.bulletin_id, play.commune)
            async with service.sessions.begin() as session:
                await stations.record_play(session, play, dt.datetime.now(dt.UTC))

    async def _play_requests(self, station: Station, now: dt.datetime) -> None:
        service = self._service
        async with service.read_sessions() as session:
            pending = await stations.pending_plays(session)
        for play in pending:
            if play.request_id in self._requested:
                continue  # aired; the mark did not commit (it is retried below)
            drop = None
            if play.bulletin_state not in stations.PUBLISHED_STATES:
                drop = "withdrawn"  # cancelled or expired since it was asked for
            elif now - play.requested_at > stations.PLAY_REQUEST_TTL:
                drop = "expired"
            if drop is not None:
                async with service.sessions.begin() as session:
                    await stations.drop_play(session, play.request_id, now, drop)
                log.info(
                    "station: play-now %d in %s dropped (%s)", play.request_id, play.commune, drop
                )
                continue
            if play.store_key is None:
                continue  # not rendered yet: the audio part is on it; next pass
            path = await asyncio.to_thread(self._files.path_for, play.store_key)
            if path is None:
                raise RuntimeError(f"no local file for {play.store_key}")
            await station.play_urgent(play.commune, path, play.title)
            self._requested.add(play.request_id)
            self.requests_played += 1
            log.info("station: bulletin %d on air in %s (play now)", play.bulletin_id, play.commune)
        aired = [p.request_id for p in pending if p.request_id in self._requested]
        if aired:
            async with service.sessions.begin() as session:
                for request_id in aired:
                    await stations.mark_played(session, request_id, dt.datetime.now(dt.UTC))
            # Marked: the next pass no longer reads them.
            self._requested.difference_update(aired)

    async def _watch(self, station: Station, communes: list[Area]) -> None:
        """Record what each stream plays when it changed since the last look."""
        changed: list[tuple[Area, NowPlaying]] = []
        for commune in communes:
            playing = await station.now_playing(commune.code)
            if self._seen.get(commune.code) != playing:
                changed.append((commune, playing))
        if not changed:
            return
        now = dt.datetime.now(dt.UTC)
        async with self._service.sessions.begin() as session:
            for commune, playing in changed:
                await stations.record_on_air(
                    session, commune.id, StationOnAir(playing.on_air.value), playing.title, now
                )
        for commune, playing in changed:  # after the commit: a failed write is retried
            self._seen[commune.code] = playing

    async def _queue_programmes(
        self, station: Station, communes: list[Area], now: dt.datetime
    ) -> None:
        tz = self._service.settings.tz
        today = now.astimezone(tz).date()
        slots = [
            dt.datetime.combine(day, at, tzinfo=tz)
            for day in (today, today + dt.timedelta(days=1))
            for at in self._service.settings.programme_times
        ]
        due = [slot for slot in slots if now < slot <= now + self.PROGRAMME_LEAD]
        for commune in communes:
            for slot in due:
                if (commune.code, slot) in self._queued:
                    continue
                async with self._service.read_sessions() as session:
                    latest = await programmes.daily_programmes(session, commune, limit=1)
                if not latest or latest[0][0] != slot.date():
                    continue  # no programme for that day (yet): look again next pass
                day, asset = latest[0]
                path = await asyncio.to_thread(self._hold_programme, asset.store_key, slot)
                title = audio_texts.PROGRAMME_TITLE.format(date=audio_texts.written_date(day))
                await station.queue_programme(commune.code, path, title, slot)
                self._queued.add((commune.code, slot))
                self.programmes_queued += 1
                log.info("station: programme %s %s queued for %s", commune.code, day, slot)

    def _hold_programme(self, key: str, slot: dt.datetime) -> Path:
        """A file of the programme that stays until its slot has played.

        A programme rebuilt after it was handed over replaces (and deletes) the store's
        file Liquidsoap would open at the slot, so Liquidsoap gets a link of its own (a
        copy across file systems) under the station's work dir; those of past days go.
        """
        source = self._files.path_for(key)
        if source is None:
            raise RuntimeError(f"no local file for {key}")
        held_dir = self._work_dir / "programmes"
        held_dir.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - self.HELD_FOR.total_seconds()
        for old in held_dir.glob("*.mp3"):
            with contextlib.suppress(FileNotFoundError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()
        held = held_dir / f"{slot.astimezone(dt.UTC):%Y%m%dT%H%M%S}-{Path(key).name}"
        if not held.exists():
            try:
                os.link(source, held)
            except OSError:  # another file system, or no hard links there
                shutil.copyfile(source, held)
        return held


class SendersPart:
    """One sender per running bot; each takes its bot's lease before it sends."""

    name = "senders"

    def __init__(self, service: Service) -> None:
        self._service = service
        self.senders: list[Sender] = []
        self._bots: set[int] = set()  # bots with a sender (or one being made)
        self._started = False
        self._stopped = False

    def status(self) -> PartStatus:
        if not self.senders:
            return PartStatus(active=False, detail="no bot is running")
        states = [f"{s.name} {'active' if s.holding else 'standby'}" for s in self.senders]
        return PartStatus(active=True, detail=", ".join(states))

    async def start(self) -> None:
        self._started = True
        for bot_id in self._service.channels.bot_ids():
            await self.add(bot_id)

    async def add(self, bot_id: int) -> None:
        """Start the sender of a bot whose channel is registered, once; a bot that comes
        up after start-up (it was retrying) gets its sender here."""
        service = self._service
        channel = service.channels.get(bot_id)
        # Before start(), start() picks the bot up; after stop(), nothing starts again.
        if not self._started or self._stopped or channel is None or bot_id in self._bots:
            return
        self._bots.add(bot_id)
        async with service.sessions() as session:
            bot = await session.get_one(Bot, bot_id)
        # Paid broadcasts lift Telegram's bulk limit to 1000 messages a second, for
        # sends that ask for it; at ~100 ms a send that keeps ~100 of them in flight.
        paid = False
        if bot.paid_broadcast and isinstance(channel, TelegramChannel):
            channel, paid = channel.for_paid_broadcast(), True
        config = SenderConfig(
            bot_id=bot_id,
            rate_per_second=PAID_BROADCAST_RATE if paid else bot.rate_per_second,
            max_in_flight=PAID_BROADCAST_IN_FLIGHT if paid else None,
            per_chat_interval=bot.per_chat_interval,
            quiet_start=bot.quiet_start,
            quiet_end=bot.quiet_end,
            lease_ttl=dt.timedelta(seconds=service.settings.bot_lease_ttl_s),
        )
        # The bot's front end holds the same lease and gives it back after its answers.
        sender = Sender(
            service.sessions, channel, config, tz=service.settings.tz,
            holder=service.holder, media=service.media, outbox=service.outboxes.get(bot_id),
            release_lease=False,
        )  # fmt: skip
        await sender.start()
        if self.stopped():  # stop() ran while this sender was being made
            await sender.stop()
            return
        self.senders.append(sender)

    def stopped(self) -> bool:
        return self._stopped

    async def remove(self, bot_id: int) -> None:
        """Stop the sender of a bot this process no longer runs (its lease was lost)."""
        gone = [s for s in self.senders if s.bot_id == bot_id]
        self.senders = [s for s in self.senders if s.bot_id != bot_id]
        self._bots.discard(bot_id)
        await asyncio.gather(*(sender.stop() for sender in gone))

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.gather(*(sender.stop() for sender in self.senders))


def _secret(value: str | None) -> str:
    if value is None:
        raise StartupError("a chat part was started without its token")
    return value


BotPart = ChatPart | WebhookPart


class Bots:
    """Every bot this process serves, from the `bots` table: each platform's first bot
    (its token in the environment) and those an administrator registered (CLI or
    dashboard, tokens sealed with SECRET_KEY: broadcasts.bots).

    A worker runs each enabled bot with a token (a ChatPart: front end, answers, sender,
    under the bot's lease); the web role alone relays each bot's webhook (a WebhookPart).
    The table is read again every REFRESH_S: a bot added, disabled, given a new token or
    another rate starts, stops or restarts here without restarting the process. Workers
    share the bots: one at its fair share (bots / live workers, rounded up) leaves a free
    bot to another, and one above it while another worker has less gives one up (SHED).
    """

    name = "bots"
    REFRESH_S = 10.0
    PRESENCE = "worker:"  # a lease per live worker process, renewed while it runs

    def __init__(self, settings: Settings, service: Service, roles: Collection[Role]) -> None:
        self._settings = settings
        self._service = service
        self._worker = Role.worker in roles
        self._web = Role.web in roles
        self._box = TokenBox(settings.secret_key.get_secret_value())
        self.parts: dict[int, BotPart] = {}  # by bot id
        self._off: dict[str, PartStatus] = {}  # bots not run here, and why
        self._task: asyncio.Task[None] | None = None
        self._refreshed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._ttl = dt.timedelta(seconds=settings.bot_lease_ttl_s)
        self._workers = 1  # live workers, as last read
        self._started = False
        self._last_asked = 0.0  # when a webhook for an unknown bot last ran a refresh
        for platform in ENV_PLATFORMS:  # shown from the start (/healthz answers before bots start)
            first_off = self._first_off(platform)
            starting = PartStatus(active=False, detail="starting")
            self._off[platform.value] = starting if first_off is None else first_off

    @property
    def serves_webhooks(self) -> bool:
        return self._worker or self._web

    def status(self) -> PartStatus:
        """Active once every bot here is up (tests and bench wait for it): the bots' own
        statuses are in `statuses`."""
        running = [part.status() for part in self.parts.values()]
        return PartStatus(
            active=all(status.active for status in running) and self._started,
            detail=f"{len(running)} bots",
        )

    def statuses(self) -> dict[str, PartStatus]:
        found = dict(self._off)
        for part in sorted(self.parts.values(), key=lambda part: (part.platform, part.name)):
            found[part.name] = part.status()
        return found

    def part(self, label: str) -> BotPart | None:
        """The bot of that label ("telegram", "zalo:quang-ngai") when it runs here."""
        return next((part for part in self.parts.values() if part.name == label), None)

    async def _wanted(self) -> tuple[dict[int, BotConfig], dict[str, PartStatus]]:
        """The bots to serve here now, and those not served here with the reason."""
        wanted: dict[int, BotConfig] = {}
        off = {
            platform.value: status
            for platform in ENV_PLATFORMS
            if (status := self._first_off(platform)) is not None
        }
        async with self._service.sessions.begin() as session:
            for platform in ENV_PLATFORMS:  # a first bot's row is made when first served
                if platform.value not in off:
                    await ensure_bot(session, platform)
            rows = await bots.listing(session)
        for row in rows:
            label, first = bots.label(row), bots.is_first(row)
            if label in off:
                continue
            if not row.enabled:
                off[label] = PartStatus(active=False, detail="disabled by an administrator")
                continue
            if bots.is_gateway(row.platform) and not self._worker:
                # Its link (SMPP) or webhook (OA, ZNS) is served where the bot runs.
                off[label] = PartStatus(active=False, detail="runs in a worker")
                continue
            token: str | None = None
            if first:
                secret = self._settings.first_bot_token(row.platform)
                token = secret.get_secret_value() if secret is not None else None
            elif row.token_sealed is not None:
                try:
                    token = self._box.open(row.token_sealed)
                except BotError as exc:
                    off[label] = PartStatus(active=False, detail=str(exc))
                    continue
            if self._worker and token is None:
                off[label] = PartStatus(active=False, detail="no token stored")
                continue
            if not self._worker and self._settings.public_base_url is None:
                continue  # not reached: _first_off said so for the first bots
            wanted[row.id] = BotConfig(
                bot_id=row.id, platform=row.platform, label=label, first=first, token=token,
                rate_per_second=row.rate_per_second, per_chat_interval=row.per_chat_interval,
                sending=(row.paid_broadcast, row.quiet_start, row.quiet_end),
                options=dict(row.options or {}),
            )  # fmt: skip
        return wanted, off

    def _first_off(self, platform: Platform) -> PartStatus | None:
        """Why the platform's first bot cannot be served here, from the settings alone."""
        variable = bots.token_variable(platform)
        token = self._settings.first_bot_token(platform)
        reason = None
        if self._worker:
            reason = f"{variable} not set" if token is None else None
        elif self._web and self._settings.public_base_url is None:
            reason = "polled by a worker (PUBLIC_BASE_URL not set)"
        elif self._web and token is None and self._first_secret(platform) is None:
            reason = f"{variable} and its webhook secret not set"
        return None if reason is None else PartStatus(active=False, detail=reason)

    def _first_secret(self, platform: Platform) -> SecretStr | None:
        settings = self._settings
        if platform is Platform.telegram:
            return settings.telegram_webhook_secret
        return settings.zalo_webhook_secret

    def _make(self, config: BotConfig) -> BotPart:
        if self._worker:
            return ChatPart(config, self._settings, self._service)
        return WebhookPart(config, self._settings, self._service)

    async def refresh(self) -> None:
        """Start, stop or restart bots to match the table (and the environment)."""
        async with self._lock:
            wanted, self._off = await self._wanted()
            changed = [
                bot_id for bot_id, part in self.parts.items()
                if bot_id not in wanted or not wanted[bot_id].same_bot(part.config)
            ]  # fmt: skip
            retuned = [
                bot_id for bot_id, part in self.parts.items()
                if bot_id not in changed and wanted[bot_id] != part.config
            ]  # fmt: skip
            for bot_id in retuned:
                await self.parts[bot_id].retune(wanted[bot_id])
                log.info("%s: new sending settings", self.parts[bot_id].name)
            for bot_id in changed:
                part = self.parts.pop(bot_id)
                await part.retire()
                if self._started:
                    log.info("%s: stopped (%s)", part.name,
                             "changed" if bot_id in wanted else "disabled or removed")  # fmt: skip
            new = [config for bot_id, config in wanted.items() if bot_id not in self.parts]
            for config in new:
                self.parts[config.bot_id] = self._make(config)
            # Started together: a bot that cannot reach its platform does not hold up the
            # others (each waits at most ChatPart.FIRST_TRY_S for its first attempt).
            await asyncio.gather(*(self.parts[config.bot_id].start() for config in new))
            if self._started:
                for config in new:
                    status = self.parts[config.bot_id].status()
                    log.info("%s: started (%s)", config.label, status.detail)
            self._refreshed.set()

    async def start(self) -> None:
        if self._worker:
            await self._present()
        await self.refresh()
        self._started = True
        self._task = asyncio.create_task(self._watch(), name="bots")

    async def _watch(self) -> None:
        """Re-read the table every REFRESH_S; a worker renews its presence and gives a bot
        up when it runs more than its share while another worker runs less."""
        period = min(self.REFRESH_S, self._ttl.total_seconds() / 3)
        last_refresh = time.monotonic()
        while True:
            await asyncio.sleep(period)
            try:
                if self._worker:
                    await self._present()
                    await self._shed()
                if time.monotonic() - last_refresh >= self.REFRESH_S:
                    last_refresh = time.monotonic()
                    await self.refresh()
            except Exception as exc:  # the database: the next round tries again
                log.warning("bots: cannot read the bots (%s)", one_line(exc))

    async def _present(self) -> None:
        """Renew this worker's presence lease and count the live workers."""
        now = dt.datetime.now(dt.UTC)
        async with self._service.sessions.begin() as session:
            await leases.acquire(session, self.PRESENCE + self._service.holder,
                                 self._service.holder, now, self._ttl)  # fmt: skip
            live = await leases.live(session, self.PRESENCE, now)
        self._workers = max(1, len(live))

    def _share(self) -> int:
        return -(-len(self.parts) // self._workers)  # ceil

    def _held(self) -> list[ChatPart]:
        return [p for p in self.parts.values() if isinstance(p, ChatPart) and p.holding]

    async def may_take(self, part: ChatPart) -> bool:
        """Whether this worker may take a free bot now: below its fair share."""
        return len(self._held()) < self._share()

    async def _shed(self) -> None:
        """Give one bot up when this worker runs more than its share and another live
        worker runs fewer than its floor: it takes the bot within a fifth of the TTL."""
        held = self._held()
        if len(held) <= self._share() or self._workers < 2:
            return
        now = dt.datetime.now(dt.UTC)
        async with self._service.sessions() as session:
            workers = await leases.live(session, self.PRESENCE, now)
            bot_leases = await leases.live(session, "sender:", now)
        running: dict[str, int] = dict.fromkeys(workers.values(), 0)
        for holder in bot_leases.values():
            running[holder] = running.get(holder, 0) + 1
        floor = len(self.parts) // max(1, len(workers))
        if not any(
            count < floor for holder, count in running.items() if holder in workers.values()
        ):
            return
        part = held[-1]
        log.info("%s: handed over to a worker with fewer bots", part.name)
        async with self._lock:
            if self.parts.get(part.config.bot_id) is part:
                await part.retire()
                self.parts[part.config.bot_id] = self._make(part.config)
                await self.parts[part.config.bot_id].start()

    async def webhook(self, platform: Platform, bot_id: int | None, request: Request) -> Response:
        """An update for a bot (None: the platform's first): to its part, else 503 (the
        platform retries) until the bot is known here (a refresh is run for one just
        added, at most once a second)."""
        part = self._find(platform, bot_id)
        asked = time.monotonic() - self._last_asked
        if part is None and bot_id is not None and not self._lock.locked() and asked > 1.0:
            self._last_asked = time.monotonic()
            with contextlib.suppress(Exception):
                await self.refresh()
            part = self._find(platform, bot_id)
        if part is None:
            return Response(status_code=503)
        if platform is Platform.zalo_oa:
            part = await self._zns_of(part, request)
        return await part.webhook(request)

    async def _zns_of(self, part: BotPart, request: Request) -> BotPart:
        """Zalo posts all of an app's events to the one URL set in the app: a ZNS delivery
        callback that reaches the Official Account's path goes to the ZNS bot of the same
        app, when one runs here (the body is read once; Starlette keeps it for the next)."""
        try:
            name = json.loads(await request.body()).get("event_name")
        except (ValueError, AttributeError):
            return part  # the OA front end refuses it with its reason
        if name not in ZNS_EVENTS:
            return part
        app = part.config.options.get("app_id")
        for other in self.parts.values():
            config = other.config
            if config.platform is Platform.zns and config.options.get("app_id") == app:
                return other
        return part

    def _find(self, platform: Platform, bot_id: int | None) -> BotPart | None:
        for part in self.parts.values():
            config = part.config
            if config.platform is platform and config.hook_id == bot_id:
                return part
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(part.stop() for part in self.parts.values()))
        if self._worker:
            with contextlib.suppress(Exception):  # it expires anyway
                async with self._service.sessions.begin() as session:
                    holder = self._service.holder
                    await leases.release(session, self.PRESENCE + holder, holder)


def _webhook_routes(bots: Bots, platform: Platform) -> dict[str, Webhook]:
    """The platform's webhook paths: its first bot's, and one per other bot (by id)."""

    async def first(request: Request) -> Response:
        return await bots.webhook(platform, None, request)

    async def other(request: Request, bot_id: int) -> Response:
        return await bots.webhook(platform, bot_id, request)

    return {webhook_path(platform): first, webhook_path(platform) + "/{bot_id}": other}


class Service:
    """Everything `haidang serve` runs, built once from Settings."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine | None = None,
        roles: Collection[Role] = ALL_ROLES,
        pool: PoolBudget | None = None,
    ) -> None:
        """`engine` None: one made from DATABASE_URL, on PostgreSQL within `pool` (the
        roles' budget by default: haidang.pool)."""
        self.settings = settings
        self.roles = frozenset(roles)
        self._running = False  # every part started, not yet stopping (/readyz)
        self.pool = pool or pool_budget(settings, self.roles)
        if engine is None:
            options = {} if settings.is_sqlite else self.pool.engine_options()
            engine = make_engine(settings.database_url, **options)
        self.engine: AsyncEngine = engine
        # The turns of every bot of this process share one limit below the pool's size,
        # so a crowd cannot starve the senders and the scheduler of connections. SQLite
        # (one writer at a time, no pool to exhaust) keeps MAX_TURNS.
        postgres = self.engine.dialect.name == "postgresql"
        self.turn_slots = asyncio.Semaphore(self.pool.turns if postgres else MAX_TURNS)
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        # Deferred transactions on SQLite, for work that reads long and writes briefly.
        self.read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.channels = ChannelRegistry()
        self.outboxes: dict[int, Outbox] = {}  # by bot id: each running bot's one budget
        self.answers: dict[int, Answers] = {}  # by bot id: what each running bot owes people
        try:  # the voice bulletins and documents are read with (plugins registered first)
            self.tts_engine = engine_name(settings)
        except (LookupError, TypeError, ValueError) as exc:
            raise StartupError(f"TTS_ONLINE_ENGINE / TTS_ENGINE_OPTIONS: {exc}") from None
        try:  # ASSET_STORE: DATA_DIR, or an S3 bucket shared by every process
            self.store = audio_store(settings)
            self.documents_store = document_store(settings)
        except ValueError as exc:
            raise StartupError(f"ASSET_STORE / S3_*: {exc}") from None
        # Telegram uploads read a file path: from an object store, a local copy.
        uploads = local_copies(self.store, settings)
        public = str(settings.public_base_url) if settings.public_base_url else None
        self.media = StoreMedia(self.sessions, uploads, public)
        voices = DocumentVoices(
            self.read_sessions, self.sessions, uploads,
            engine_name=self.tts_engine, work_dir=settings.data_dir / "work",
            public_base_url=public,
        )  # fmt: skip
        self.conversation = Conversation(self.sessions, voices=voices)
        # Who holds leases from this process: readable in the leases table by an operator.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.senders = SendersPart(self)
        self.bots = Bots(settings, self, self.roles)
        self.webhooks: dict[str, Webhook] = {}
        if self.bots.serves_webhooks:
            for platform in WEBHOOK_PATHS:
                self.webhooks.update(_webhook_routes(self.bots, platform))
        # The web app starts first, so webhooks have somewhere to land when registered;
        # senders start last, once every bot's channel is registered, and stop first.
        # Without the web role, the web part serves only /healthz and /readyz.
        worker = Role.worker in self.roles
        self.parts: list[Part] = [
            WebPart(settings, self, full=Role.web in self.roles),
            *([self.bots] if self.bots.serves_webhooks else []),
            *([AudioPart(self)] if worker else []),
            *([_station_part(self)] if worker else []),
            *([SchedulerPart(self)] if Role.scheduler in self.roles else []),
            *([CapImportPart(self)] if Role.scheduler in self.roles else []),
            *([self.senders] if worker else []),
        ]

    async def send_inbox_reply(self, message_id: int) -> bool:
        """Send an answer already stored (and audited) by the dashboard to the person, as
        an answer of their bot (its outbox, its retries); waits up to INBOX_REPLY_WAIT_S
        for it to go (True), else leaves it queued (False).

        Raises when it cannot be sent now; it stays stored and goes out when the bot can
        (a bot that is down), or is kept as failed with its reason for operators.
        """
        async with self.sessions.begin() as session:
            target = await inbox.reply_target(session, message_id)
            if target is None:
                raise RuntimeError(f"inbox message {message_id} has no answer or no chat to reach")
            answers = self.answers.get(target.bot_id)
            owed = inbox_answer(target)
            answer_id = await store_answer(
                session, bot_id=target.bot_id, owed=owed, now=dt.datetime.now(dt.UTC),
                # Nobody here runs that bot: its process picks the answer up when it runs.
                holder=self.holder if answers is not None and answers.running else None,
            )  # fmt: skip
        if answers is None or not answers.running:
            raise RuntimeError("that person's bot is not running; the answer waits for it")
        task = answers.give(dataclasses.replace(owed, answer_id=answer_id), Lane.reply)
        try:
            reason = await asyncio.wait_for(asyncio.shield(task), INBOX_REPLY_WAIT_S)
        except TimeoutError:
            return False  # a crowd is being answered: it goes out in its turn
        if reason is not None:
            raise RuntimeError(f"the answer could not be sent ({reason}); kept as failed")
        return True

    def bot_queues(self) -> dict[int, OutboxStats]:
        """Each running bot's live queue (the dashboard's follow-up page shows them)."""
        return {bot_id: outbox.stats() for bot_id, outbox in self.outboxes.items()}

    def statuses(self) -> dict[str, PartStatus]:
        """Each part's status; each bot's instead of the bots part's own."""
        found: dict[str, PartStatus] = {}
        for part in self.parts:
            if part is self.bots:
                found.update(self.bots.statuses())
            else:
                found[part.name] = part.status()
        return found

    def ready(self) -> bool:
        """Whether this process's roles are up (/readyz): every part started and the
        service not stopping. A bot on standby (another worker holds it) is ready."""
        return self._running

    def database_detail(self) -> str:
        """The database and, on PostgreSQL, this process's connection budget (logged at
        start: README "Database connections")."""
        url = self.engine.url
        if self.engine.dialect.name != "postgresql":
            return f"{url.get_backend_name()} {url.database}"
        where = f"{url.host}:{url.port or 5432}/{url.database}"
        return f"postgresql {where}; {self.pool.describe()}"

    async def prepare(self) -> None:
        """Refuse an out-of-date schema; seed the map and topics where missing."""
        try:
            current = await schema.current_revision(self.engine)
        except Exception as exc:
            raise StartupError(f"cannot open the database: {exc}") from exc
        head = schema.head_revision()
        if current != head:
            raise StartupError(
                f"the database schema is at {current or 'nothing'}, not {head}: "
                "run `haidang db upgrade` first"
            )
        async with self.sessions.begin() as session:
            report = await seed_all(session)
        if report.provinces_added or report.communes_added or report.topics_added:
            log.info(
                "seeded %d provinces, %d communes, %d topics",
                report.provinces_added,
                report.communes_added,
                report.topics_added,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Start every part, wait for `stop`, then stop them in reverse order."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        started: list[Part] = []
        try:
            await self.prepare()
            log.info("database: %s", self.database_detail())
            for part in self.parts:
                await part.start()
                started.append(part)
                shown = self.bots.statuses() if part is self.bots else {part.name: part.status()}
                for name, status in shown.items():
                    log.info("%s: %s (%s)", name, "on" if status.active else "off", status.detail)
            roles = ", ".join(sorted(self.roles))
            log.info("Hải Đăng is running (roles: %s); press Ctrl+C to stop", roles)
            self._running = True
            await stop.wait()
            log.info("stopping")
        finally:
            self._running = False
            for part in reversed(started):
                try:
                    await part.stop()
                except Exception:
                    log.exception("%s did not stop cleanly", part.name)
            await self.engine.dispose()
        log.info("stopped")


def _station_part(service: Service) -> Part:
    """The station part, or why there is none here (`make run` works without Liquidsoap)."""
    found = find_station_binaries()
    if isinstance(found, str):
        return OffPart(StationPart.name, found)
    return StationPart(service, found)


def tune_gc() -> None:
    """Fewer garbage collections for a long-running service that sends at high rates.

    Every send allocates hundreds of objects, so with CPython's default (a collection every
    700 allocations) a sender at 1000 msg/s collected about 80 times a second, a quarter
    of its CPU (bench.paid_broadcast). Collections now run every 20,000 allocations, and
    what exists at start-up (modules, classes, settings) is frozen out of them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


async def serve(settings: Settings, roles: Collection[Role] = ALL_ROLES) -> None:
    """Run the parts of `roles` until SIGINT or SIGTERM."""
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Service(settings, roles=roles).run(stop)
