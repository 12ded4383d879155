"""The sender of one bot: claims deliveries, paces them, sends, and records outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import bulletins, leases, queue, readout, zns
from broadcasts.channels import (
    BriefChannel,
    Channel,
    FailureKind,
    Media,
    Outbound,
    SendFailure,
)
from broadcasts.outbox import Outbox
from broadcasts.pacing import Lane, Pacer, Slot
from db.engine import connection_lost
from db.models import (
    BroadcastRun,
    Bulletin,
    Delivery,
    DeliveryState,
    Platform,
    Priority,
    RunState,
    SubscriberRole,
    ZnsTemplate,
)
from db.text import split_message

log = logging.getLogger(__name__)

# What a crash can repeat is what was sent but not yet written: the outcomes since the
# last write and the sends still waiting for the platform's answer. Both are kept to a
# fraction of a second of sending, so a 30 msg/s bot repeats at most 30 (duplicate_bound).
# Outcomes reach the database at least every FLUSH_INTERVAL_S (checked twice as often)
# and after every FLUSH_BATCH outcomes.
FLUSH_INTERVAL_S = 0.25
FLUSH_BATCH = 100
IN_FLIGHT_SECONDS = 0.5  # by default at most this much sending waits for answers at once
URGENT_MARK, ROUTINE_MARK = "🚨", "📢"
MEDIA_RECHECK_S = 5.0  # how soon to look again for a voice that was not rendered yet
BACKLOG_COUNT_S = 5.0  # how often the bot's waiting deliveries are counted (dashboard)
BACKLOG_CAP = 100_000  # counted up to this many
RETRY_MAX_S = 10.0  # the longest wait between tries of a database step that keeps failing


@dataclass(frozen=True)
class BulletinMedia:
    """What goes with a bulletin's text: a photo, its voice, its loudspeaker MP3."""

    photo: Media | None = None
    voice: Media | None = None
    mp3: Media | None = None


class MediaSource(Protocol):
    """Where the sender finds a bulletin's files (the audio studio, the photo store)."""

    async def media_for(self, bulletin_id: int) -> BulletinMedia: ...


@dataclass(frozen=True)
class SenderConfig:
    bot_id: int
    rate_per_second: float
    per_chat_interval: float = 1.0
    quiet_start: dt.time | None = dt.time(21, 0)
    quiet_end: dt.time | None = dt.time(6, 0)
    lease_ttl: dt.timedelta = dt.timedelta(seconds=10)  # renewed every second
    delivery_lease: dt.timedelta = dt.timedelta(seconds=60)
    batch_seconds: float = 1.0  # claim about this many seconds of sending at a time
    max_in_flight: int | None = None  # None: rate x IN_FLIGHT_SECONDS, within 4..64
    idle_poll_s: float = 0.25
    max_attempts: int = 5  # transient failures (5xx, timeouts) before failing for good
    backoff_s: tuple[float, ...] = (2.0, 10.0, 30.0, 120.0)  # before attempt 2, 3, 4, 5

    @property
    def in_flight_limit(self) -> int:
        """Sends waiting for the platform's answer at once. Half a second of the rate keeps
        a 30/s bot at full speed while the API answers within half a second."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(4, min(64, math.ceil(self.rate_per_second * IN_FLIGHT_SECONDS)))

    @property
    def duplicate_bound(self) -> int:
        """The most messages a crash (kill -9) can send twice: the outcomes not yet
        written (up to 1.5 flush intervals of sending) plus the sends in flight."""
        return int(self.rate_per_second * FLUSH_INTERVAL_S * 1.5) + self.in_flight_limit


def sender_lease(bot_id: int) -> str:
    """The lease of a bot's sender: whoever holds it runs the bot."""
    return f"sender:{bot_id}"


def in_quiet_hours(local: dt.time, start: dt.time | None, end: dt.time | None) -> bool:
    """Whether `local` falls in the quiet window (which may cross midnight)."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


# A delivery's messages, its bulletin's expiry, and when to rebuild them (monotonic).
_Parts = tuple[list[Outbound], dt.datetime | None, float]


class Sender:
    """Exactly one per bot across processes (the lease `sender:<bot id>`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channel: Channel,
        config: SenderConfig,
        *,
        tz: ZoneInfo,
        holder: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        media: MediaSource | None = None,
        outbox: Outbox | None = None,
        release_lease: bool = True,
    ) -> None:
        """`outbox`: the bot's, shared with its answers to people (one of its own if
        None). A sender faster than it (a paid broadcast, which Telegram bills outside
        the bot's free limit) paces its sends itself and still pauses the bot on a 429.
        `release_lease` False: stop() leaves the lease to whoever else holds it with the
        same holder (the bot's front end, which releases it once its answers are done)."""
        self.name = f"sender:{config.bot_id}"
        self._media = media
        self._sessions = sessions
        self._channel = channel
        self._config = config
        self._tz = tz
        self._holder = holder
        self._release_lease = release_lease
        self._clock = clock
        self.outbox = outbox or Outbox(config.rate_per_second, config.per_chat_interval)
        self.pacer = self.outbox.pacer
        if config.rate_per_second != self.pacer.rate:
            self.pacer = Pacer(config.rate_per_second, config.per_chat_interval)
        self._outcomes: list[queue.Outcome] = []
        # Deliveries part-way through (the text sent, the voice waiting for the chat's gap):
        # id → messages sent, written with the outcomes so a crash does not repeat them.
        self._progress: dict[int, int] = {}
        self._last_flush = time.monotonic()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.in_flight_limit)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._housekept = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._flush_wanted = asyncio.Event()
        self._holding = False
        self._next_count = 0.0  # when to count the bot's backlog next (monotonic)
        self._cancelled_runs: set[int] = set()
        # (bulletin, language, role) → (parts, expiry of the bulletin, when to rebuild)
        self._parts: dict[tuple[int, str, str], _Parts] = {}
        # Deliveries claimed here whose outcome is not written yet. A claim whose commit
        # went through while its answer was lost with the connection leaves rows `sending`
        # that nobody sends: the holder of the bot's lease gives back every `sending` row
        # of the bot not in this set (_release_lost_claims) before it claims again.
        self._mine: set[int] = set()
        self._claim_lost = False
        self.sent = 0

    @property
    def bot_id(self) -> int:
        return self._config.bot_id

    @property
    def lease_name(self) -> str:
        return sender_lease(self._config.bot_id)

    @property
    def holding(self) -> bool:
        return self._holding

    @property
    def batch_size(self) -> int:
        """Deliveries claimed at a time: about `batch_seconds` of sending."""
        return max(1, int(self._config.rate_per_second * self._config.batch_seconds))

    async def start(self) -> None:
        self._keeper = asyncio.create_task(self._keep_house(), name=f"{self.name}:lease")
        self._task = asyncio.create_task(self._run(), name=self.name)
        self._flusher = asyncio.create_task(self._flush_periodically(), name=f"{self.name}:flush")

    async def stop(self) -> None:
        """Finish what is in flight, write every outcome, give the lease back."""
        self._stopping.set()
        self._flush_wanted.set()
        self._housekept.set()
        if self._task is not None:
            await self._task
        if self._flusher is not None:
            await self._flusher

    async def _flush_periodically(self) -> None:
        # Outcomes reach the database at least every FLUSH_INTERVAL_S even while the loop
        # waits for a pacing slot: this bounds what a crash can repeat. A full batch wakes
        # it early; writing here, not in the loop, keeps a write from delaying the next send
        # (inline writes cost a third of the rate at 1000 msg/s).
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), FLUSH_INTERVAL_S / 2)
            self._flush_wanted.clear()
            try:
                await self._flush_if_due()
            except Exception as exc:  # kept in memory: written by a later try
                self._log_db_failure("could not write outcomes; will retry", exc)
                await self._sleep(1.0)

    def _log_db_failure(self, what: str, exc: Exception) -> None:
        if connection_lost(exc):  # expected when PostgreSQL restarts: no traceback
            log.warning("%s: %s (database connection lost: %s)", self.name, what,
                        str(exc).splitlines()[0][:200])  # fmt: skip
        else:
            log.error("%s: %s", self.name, what, exc_info=exc)

    # --- the loop ------------------------------------------------------------------------

    async def _keep_house(self) -> None:
        # Beside the loop, not in it: renewing the lease is a write transaction, and a
        # send must not wait for it (at 1000 msg/s it cost a tenth of the rate).
        while not self._stopping.is_set():
            try:
                await self._housekeeping()
            except Exception as exc:
                self._log_db_failure("housekeeping failed; retrying", exc)
            self._housekept.set()
            await self._sleep(1.0)

    async def _run(self) -> None:
        # The next batch, claimed while the second half of this one is sent, so sending
        # never pauses for a claim. Claimed rows are ours: they are sent even when
        # stopping (as the rest of the current batch is).
        ahead: asyncio.Task[list[queue.Claimed]] | None = None
        while not self._stopping.is_set() or ahead is not None:
            try:
                if ahead is None and not self._holding:
                    self._housekept.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._housekept.wait(), 1.0)
                    continue
                if ahead is None and self._claim_lost and self._holding:
                    await self._release_lost_claims()
                task, ahead = ahead, None
                claimed = await task if task is not None else await self._claim()
                if not claimed:
                    await self._flush_if_due(force=True)
                    await self._sleep(self._config.idle_poll_s)
                    continue
                halfway = len(claimed) // 2 if len(claimed) >= self.batch_size else -1
                for index, delivery in enumerate(claimed):
                    if index == halfway and self._holding and not self._stopping.is_set():
                        ahead = asyncio.create_task(self._claim(), name=f"{self.name}:claim")
                    await self._dispatch_surely(delivery)
                    if len(self._outcomes) >= FLUSH_BATCH:
                        self._flush_wanted.set()
            except Exception as exc:
                # A database hiccup must not kill the sender: log, back off, go on.
                self._log_db_failure("loop error; retrying", exc)
                await self._sleep(1.0)
        await self._drain()

    async def _dispatch_surely(self, delivery: queue.Claimed) -> None:
        """Dispatch a claimed delivery, trying again while the database fails (its
        messages are read from it); once stopping, give the row back to the queue (it
        was not sent) rather than leave it claimed."""
        delay = 1.0
        while True:
            try:
                await self._dispatch(delivery)
                return
            except Exception as exc:
                if self._stopping.is_set():
                    self._finish(delivery, DeliveryState.pending, next_attempt_at=self._clock())
                    return
                self._log_db_failure(f"delivery {delivery.id} not sent yet; retrying", exc)
            await self._sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _release_lost_claims(self) -> None:
        """Give back the bot's `sending` rows this sender does not know of (see _mine):
        only the holder of the bot's lease sends, so nobody else is sending them."""
        lost = [Delivery.bot_id == self._config.bot_id, Delivery.state == DeliveryState.sending]
        if self._mine:
            lost.append(Delivery.id.not_in(self._mine))
        async with self._sessions.begin() as session:
            released = await session.execute(
                update(Delivery).where(*lost).values(state=DeliveryState.pending, lease_until=None)
            )
        self._claim_lost = False
        count = int(released.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            log.warning("%s: %d claimed deliveries given back after a lost connection",
                        self.name, count)  # fmt: skip

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _housekeeping(self) -> None:
        """Renew the lease, sweep a dead predecessor's rows, re-read cancelled runs."""
        now = self._clock()
        async with self._sessions.begin() as session:
            holding = await leases.acquire(
                session, self.lease_name, self._holder, now, self._config.lease_ttl
            )
            if holding and not self._holding:
                requeued, unknown = await queue.sweep(
                    session, bot_id=self._config.bot_id, now=now, takeover=True
                )
                if requeued or unknown:
                    log.warning(
                        "%s: took over; %d urgent deliveries requeued, %d routine unknown",
                        self.name, requeued, unknown,
                    )  # fmt: skip
            elif holding:
                # Never our own rows: one held through a long 429 storm outlives its lease.
                await queue.sweep(session, bot_id=self._config.bot_id, now=now, keep=self._mine)
            rows = await session.scalars(
                select(BroadcastRun.id).where(
                    BroadcastRun.state == RunState.cancelled,
                    BroadcastRun.finished_at >= now - dt.timedelta(days=2),
                )
            )
            self._cancelled_runs = set(rows.all())
            if holding and time.monotonic() >= self._next_count:
                # For the dashboard's view of the bot's queue; a bounded count, now and then.
                self._next_count = time.monotonic() + BACKLOG_COUNT_S
                self.outbox.broadcast_backlog = await queue.backlog(
                    session, bot_id=self._config.bot_id, cap=BACKLOG_CAP
                )
        self._holding = holding

    async def _claim(self) -> list[queue.Claimed]:
        now = self._clock()
        local = now.astimezone(self._tz).time()
        quiet = in_quiet_hours(local, self._config.quiet_start, self._config.quiet_end)
        try:
            async with self._sessions.begin() as session:
                claimed = await queue.claim(
                    session,
                    bot_id=self._config.bot_id,
                    now=now,
                    limit=self.batch_size,
                    lease=self._config.delivery_lease,
                    urgent_only=quiet,  # routine sends wait for the morning; urgent never waits
                )
        except Exception:
            self._claim_lost = True  # its commit may have gone through: _release_lost_claims
            raise
        self._mine.update(delivery.id for delivery in claimed)
        return claimed

    async def _dispatch(self, delivery: queue.Claimed) -> None:
        if delivery.run_id in self._cancelled_runs:
            self._finish(delivery, DeliveryState.cancelled, reason="cancelled")
            return
        parts, expires_at = await self._message(delivery)
        if expires_at is not None and self._clock() >= expires_at:
            self._finish(delivery, DeliveryState.expired, reason="expired")
            return
        if not parts:  # a ZNS step whose template was disabled meanwhile
            self._finish(delivery, DeliveryState.failed, reason="zns_no_template")
            return
        await self._slots.acquire()
        lane = Lane.urgent if delivery.priority == queue.URGENT else Lane.routine
        slot = await self.pacer.wait_turn(delivery.chat_id, lane)
        task = asyncio.create_task(self._send(delivery, parts, slot, lane))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _message(self, delivery: queue.Claimed) -> tuple[list[Outbound], dt.datetime | None]:
        """The messages of a delivery, built once per bulletin, language and role.

        Photo first, then the text in the person's language cut for the platform (the
        "Đã nhận" control on its last part), then the Vietnamese voice, and the MP3 file
        for radio operators. A voice not rendered yet is looked for again shortly after:
        the text never waits for audio.
        """
        key = (delivery.bulletin_id, delivery.language, delivery.role)
        cached = self._parts.get(key)
        if cached is not None and time.monotonic() < cached[2]:
            return cached[0], cached[1]
        async with self._sessions() as session:
            bulletin = await session.get_one(Bulletin, delivery.bulletin_id)
            title, body = await bulletins.text_for(session, bulletin, delivery.language)
            if isinstance(self._channel, BriefChannel) or self._channel.platform is Platform.zns:
                phone = await self._phone_message(session, bulletin, title, body)
                found = [phone] if phone is not None else []
                self._parts[key] = (found, bulletin.expires_at, time.monotonic() + MEDIA_RECHECK_S)
                return found, bulletin.expires_at
        media = await self._media.media_for(bulletin.id) if self._media else BulletinMedia()
        urgent = bulletin.priority is Priority.urgent
        mark = URGENT_MARK if urgent else ROUTINE_MARK
        texts = split_message(f"{mark} {title}\n\n{body}", self._channel.max_text)
        parts = [Outbound(media=media.photo)] if media.photo else []
        parts += [Outbound(text) for text in texts[:-1]]
        parts.append(Outbound(texts[-1], ack_bulletin_id=bulletin.id if urgent else None))
        if media.voice is not None and delivery.language == "vi":
            parts.append(Outbound(media=media.voice))
        if media.mp3 is not None and delivery.role == SubscriberRole.radio_operator.value:
            parts.append(Outbound(media=media.mp3))
        complete = self._media is None or media.voice is not None
        rebuild = float("inf") if complete else time.monotonic() + MEDIA_RECHECK_S
        self._parts[key] = (parts, bulletin.expires_at, rebuild)
        return parts, bulletin.expires_at

    async def _phone_message(
        self, session: AsyncSession, bulletin: Bulletin, title: str, body: str
    ) -> Outbound | None:
        """A bulletin to a phone number: one brief SMS (its read-out when urgent), or the
        bulletin's ZNS template filled in (broadcasts.zns); None when its ZNS template is
        missing or disabled (nothing can be sent)."""
        # The areas once: the read-out names them, and so does a ZNS template's `area`.
        places = await readout.places_of(session, bulletin.id)
        relay = readout.build(
            bulletin.title, bulletin.body, priority=bulletin.priority, places=places,
            expires_at=bulletin.expires_at, tz=self._tz,
        )  # fmt: skip
        short = relay.short if relay is not None else None
        ack = bulletin.id if bulletin.priority is Priority.urgent else None
        if isinstance(self._channel, BriefChannel):
            return Outbound(self._channel.brief(title, body, short=short), ack_bulletin_id=ack)
        template = (
            await session.get(ZnsTemplate, bulletin.zns_template_id)
            if bulletin.zns_template_id is not None
            else None
        )
        if template is None or not template.enabled:
            return None
        area = ", ".join(place.commune or place.province for place in places)
        data = zns.fill(template, bulletin, area, self._clock(), self._tz, relay=short)
        return Outbound(
            short or title,  # what logs and previews show
            ack_bulletin_id=ack, template_id=template.template_id, template_data=data,
        )  # fmt: skip

    async def _send(
        self, delivery: queue.Claimed, parts: list[Outbound], slot: Slot, lane: Lane
    ) -> None:
        try:
            first_id: str | None = None
            sent_parts = delivery.parts_sent
            began = slot.at  # the later parts keep the place the delivery had
            for index in range(delivery.parts_sent, len(parts)):
                if index > delivery.parts_sent:
                    # The next part waits for the chat's gap (a second on Telegram). Meanwhile
                    # the delivery gives its slot up, which bounds only what waits for the
                    # platform's answer (holding it, a 30/s bot sending text and voice reached
                    # 20 msg/s: bench.scale_out --voice), and what it sent is written as
                    # progress, so a crash in the gap does not send the text again.
                    self._progress[delivery.id] = sent_parts
                    self._slots.release()
                    try:
                        slot = await self.pacer.wait_turn(delivery.chat_id, lane, since=began)
                    finally:
                        await self._slots.acquire()
                self.pacer.sending(slot)  # the task may start well after its grant
                try:
                    message_id = await self._channel.send(delivery.chat_id, parts[index])
                except SendFailure as failure:
                    self._failed(delivery, failure, sent_parts)
                    return
                first_id = first_id or message_id or None
                sent_parts = index + 1
            self.sent += 1
            self._finish(
                delivery, DeliveryState.sent, parts_sent=sent_parts,
                message_id=first_id, sent_at=self._clock(),
            )  # fmt: skip
        except Exception as exc:  # a bug in a channel must not leave the row in limbo
            log.error("%s: delivery %d crashed", self.name, delivery.id, exc_info=True)
            self._failed(
                delivery,
                SendFailure(FailureKind.transient, type(exc).__name__),
                delivery.parts_sent,
            )
        finally:
            self._slots.release()

    def _failed(self, delivery: queue.Claimed, failure: SendFailure, parts_sent: int) -> None:
        now = self._clock()
        kind = failure.kind
        if kind is FailureKind.rate_limited:
            # Not an attempt: the whole bot pauses, and the row goes back in the queue.
            self.outbox.rate_limited(failure.retry_after)
            self.pacer.pause(failure.retry_after)  # the same pacer, unless a paid broadcast
            later = now + dt.timedelta(seconds=failure.retry_after)
            self._finish(
                delivery, DeliveryState.pending, parts_sent=parts_sent, next_attempt_at=later,
                attempts=delivery.attempts,
            )  # fmt: skip
        elif kind is FailureKind.blocked:
            self._finish(
                delivery, DeliveryState.blocked, parts_sent=parts_sent, reason="blocked",
                deactivate=True,
            )  # fmt: skip
        elif kind is FailureKind.chat_not_found:
            self._finish(
                delivery, DeliveryState.failed, parts_sent=parts_sent, reason="chat not found",
                deactivate=True,
            )  # fmt: skip
        elif kind is FailureKind.bad_request:
            self._finish(
                delivery, DeliveryState.failed, parts_sent=parts_sent,
                reason=f"bad request: {failure.reason}",
            )  # fmt: skip
        else:
            attempts = delivery.attempts + 1
            if attempts >= self._config.max_attempts:
                self._finish(
                    delivery, DeliveryState.failed, parts_sent=parts_sent, attempts=attempts,
                    reason=f"retries exhausted: {failure.reason}",
                )  # fmt: skip
                return
            backoff = self._config.backoff_s
            wait = backoff[min(attempts - 1, len(backoff) - 1)]
            self._finish(
                delivery, DeliveryState.pending, parts_sent=parts_sent, attempts=attempts,
                next_attempt_at=now + dt.timedelta(seconds=wait), reason=failure.reason,
            )  # fmt: skip

    def _finish(
        self,
        delivery: queue.Claimed,
        state: DeliveryState,
        *,
        parts_sent: int | None = None,
        attempts: int | None = None,
        reason: str | None = None,
        message_id: str | None = None,
        sent_at: dt.datetime | None = None,
        next_attempt_at: dt.datetime | None = None,
        deactivate: bool = False,
    ) -> None:
        self._outcomes.append(
            queue.Outcome(
                id=delivery.id,
                state=state,
                parts_sent=delivery.parts_sent if parts_sent is None else parts_sent,
                attempts=delivery.attempts if attempts is None else attempts,
                reason=reason,
                platform_message_id=message_id,
                sent_at=sent_at,
                next_attempt_at=next_attempt_at,
                deactivate_address=delivery.chat_address_id if deactivate else None,
            )
        )

    async def _flush_if_due(self, *, force: bool = False) -> None:
        due = time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S
        waiting = self._outcomes or self._progress
        if waiting and (force or due or len(self._outcomes) >= FLUSH_BATCH):
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch, self._outcomes = self._outcomes, []
            progress, self._progress = self._progress, {}
            self._last_flush = time.monotonic()
            if not batch and not progress:
                return
            try:
                async with self._sessions.begin() as session:
                    # Progress first: a delivery that finished since is then written final.
                    await queue.record_progress(session, progress)
                    await queue.record(session, batch)
            except Exception:
                self._outcomes = batch + self._outcomes  # try again next time; nothing lost
                self._progress = progress | self._progress
                raise
            self._mine.difference_update(outcome.id for outcome in batch)

    async def _drain(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._keeper is not None:
            await self._keeper  # so that it cannot take the lease again once released
        for attempt in range(5):  # a database restarting: wait for it a little
            try:
                await self._flush()
                break
            except Exception as exc:
                if attempt == 4:
                    raise  # the rows stay `sending`: the next holder sweeps them
                self._log_db_failure("could not write outcomes at stop; retrying", exc)
                await asyncio.sleep(2**attempt)
        if self._holding and self._release_lease:
            async with self._sessions.begin() as session:
                await leases.release(session, self.lease_name, self._holder)
            self._holding = False
