"""A bot's answers to people: stored with the turn, sent in order through the bot's outbox."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import texts
from bot.conversation import Conversation, EventKind, Inbound, Option, Reply
from bot.listening import finish
from bot.webhooks import one_line
from broadcasts.channels import SendFailure
from broadcasts.outbox import Outbox
from broadcasts.pacing import Lane
from db.engine import connection_lost, insert_for, reading
from db.models import Answer, AnswerState, PendingEvent

log = logging.getLogger(__name__)

# Outcomes reach the database at least this often, and after every FLUSH_BATCH: what a
# crash can send twice is what was sent since the last write (README, "Delivery
# guarantees"), as for broadcasts.
FLUSH_INTERVAL_S = 0.25
FLUSH_BATCH = 100
ADOPT_POLL_S = 1.0  # how often to look for answers written by a process without a bot
ADOPT_BATCH = 500
# How often the process running a bot looks for events kept by processes that do not run
# it (web replicas: holder NULL). A cheap read; the turn follows at once when one is found.
UNHELD_POLL_S = 0.25
STOP_GRACE_S = 5.0  # at shutdown, how long answers under way may take to finish
# Turns taken at once: each holds a database transaction (on SQLite they take the write
# lock one by one anyway); the rest wait, kept in pending_events.
MAX_TURNS = 32
# A turn whose database connection was lost (PostgreSQL restarted, the connection killed)
# is taken again after this long, doubling up to TURN_RETRY_MAX_S, until it goes through:
# the event stays kept meanwhile, and the person gets the proper answer, not an apology.
TURN_RETRY_FIRST_S = 0.5
TURN_RETRY_MAX_S = 10.0
WORK_RETRY_MAX_S = 5.0  # the longest pause of the outcome writer after failures in a row


@dataclass(frozen=True)
class Call:
    """One platform call of an answer, raising SendFailure when the platform refuses."""

    call: Callable[[], Awaitable[object]]
    counted: bool = True  # False: the platform does not count it (a callback answer)
    optional: bool = False  # its failure does not stop the rest (a toast that came late)


@dataclass(frozen=True)
class Owed:
    """One answer to send: the replies to one event, and what the platform needs to answer
    a pressed button (its query and the message carrying it). `answer_id` is its stored
    row; None for what is not stored (an apology when the database failed, the word to a
    flooding chat or a group)."""

    chat_id: str
    replies: tuple[Reply, ...]
    query_id: str | None = None
    pressed_message_id: int | None = None
    answer_id: int | None = None
    # Calls already made up by the front end (a document's voice once rendered) instead
    # of replies to render; `what` names them in the record of a failure.
    calls: tuple[Call, ...] = ()
    what: str | None = None


class Renderer(Protocol):
    """How a platform turns an answer into calls (implemented by each front end)."""

    def calls(self, owed: Owed) -> list[Call]: ...

    def after(self, owed: Owed) -> None:
        """Start what follows a sent answer (a document's voice), in the background."""
        ...


def to_payload(owed: Owed) -> dict[str, Any]:
    """The stored form of an answer (JSON), without its id and chat."""
    replies = []
    for reply in owed.replies:
        item: dict[str, Any] = {"text": reply.text}
        if reply.options:
            item["options"] = [[o.label, o.data] for o in reply.options]
        for name in ("columns", "replace", "notice", "keep_buttons", "audio_document"):
            value = getattr(reply, name)
            if value != getattr(_DEFAULT, name):
                item[name] = value
        replies.append(item)
    payload: dict[str, Any] = {"replies": replies}
    if owed.what is not None:
        payload["what"] = owed.what
    if owed.query_id is not None:
        payload["query_id"] = owed.query_id
    if owed.pressed_message_id is not None:
        payload["pressed"] = owed.pressed_message_id
    return payload


def from_payload(answer_id: int, chat_id: str, payload: dict[str, Any]) -> Owed:
    replies = []
    for item in payload.get("replies", []):
        options = tuple(Option(label, data) for label, data in item.get("options", []))
        extra = {k: item[k] for k in ("columns", "replace", "notice", "keep_buttons") if k in item}
        replies.append(
            Reply(item["text"], options, audio_document=item.get("audio_document"), **extra)
        )
    return Owed(
        chat_id=chat_id,
        replies=tuple(replies),
        query_id=payload.get("query_id"),
        pressed_message_id=payload.get("pressed"),
        answer_id=answer_id,
    )


_DEFAULT = Reply("")


@dataclass(frozen=True)
class Received:
    """An event as it arrived, with what answering a pressed button needs."""

    event: Inbound
    query_id: str | None = None
    pressed_message_id: int | None = None


def _event_json(received: Received) -> dict[str, Any]:
    event = dataclasses.asdict(received.event)
    event["kind"] = received.event.kind.value
    return {
        "event": event,
        "query_id": received.query_id,
        "pressed": received.pressed_message_id,
    }


def _event_from_json(stored: dict[str, Any]) -> Received:
    fields = dict(stored["event"])
    fields["kind"] = EventKind(fields["kind"])
    return Received(Inbound(**fields), stored.get("query_id"), stored.get("pressed"))


async def store(
    session: AsyncSession, *, bot_id: int, owed: Owed, holder: str | None, now: dt.datetime
) -> int:
    """Write an answer to be sent (in the caller's transaction); its id."""
    row = Answer(
        bot_id=bot_id, chat_id=owed.chat_id, payload=to_payload(owed), holder=holder,
        created_at=now,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row.id


async def keep_events(
    sessions: async_sessionmaker[AsyncSession],
    *,
    bot_id: int,
    arrivals: Sequence[Received],
    holder: str | None,
    now: dt.datetime,
) -> list[tuple[int, Received]]:
    """Keep arrived events in pending_events (one transaction); the newly kept ones with
    their ids, in id order. A redelivery (same bot and update key) is not kept twice, so
    an update received by any number of processes is turned once.

    `holder` None: kept by a process that does not run the bot (a web replica); the
    process holding the bot's lease takes them up within UNHELD_POLL_S.
    """
    if not arrivals:
        return []
    by_key = {r.event.update_key[:80]: r for r in arrivals}
    rows = [
        {"bot_id": bot_id, "update_key": key, "event": _event_json(r), "holder": holder,
         "received_at": now}
        for key, r in by_key.items()
    ]  # fmt: skip
    async with sessions.begin() as session:
        insert = insert_for(session)
        kept = await session.execute(
            insert(PendingEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["bot_id", "update_key"])
            .returning(PendingEvent.id, PendingEvent.update_key)
        )
        new = [(row[0], by_key[row[1]]) for row in kept.all()]
    return sorted(new, key=lambda item: item[0])


@dataclass
class _Outcome:
    owed: Owed
    reason: str | None  # None: sent


@dataclass
class _Chain:
    """One chat's answers, one after another (a later answer never overtakes)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Answers:
    """Answers one bot's events: keeps each event from its arrival (`receive`), runs the
    conversation turn (the answer is stored in its transaction), then sends each answer's
    calls in order through the bot's outbox, the chats in parallel; writes outcomes in
    batches (a sent answer and a handled event are deleted, a failed answer kept with its
    reason); at start, takes up what a stopped process left unturned or unsent.

    One process runs a bot's front end at a time (the holder of its lease); events other
    processes kept without running the bot (holder NULL: web replicas) are taken up every
    UNHELD_POLL_S, answers they wrote (the CLI, the dashboard) every ADOPT_POLL_S.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        conversation: Conversation,
        outbox: Outbox,
        *,
        bot_id: int,
        holder: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        turn_slots: asyncio.Semaphore | None = None,
    ) -> None:
        """`turn_slots`: the limit of turns at once, shared by the bots of a process so
        that together they stay within its connection pool (MAX_TURNS of its own if None)."""
        self._sessions = sessions
        self.conversation = conversation
        self.outbox = outbox
        self._bot_id = bot_id
        self._holder = holder
        self._clock = clock
        self._renderer: Renderer | None = None
        self._chains: dict[str, _Chain] = {}
        self._tasks: set[asyncio.Task[str | None]] = set()
        self._turns: set[asyncio.Task[None]] = set()
        self._turn_slots = turn_slots or asyncio.Semaphore(MAX_TURNS)
        self._handled: list[int] = []  # pending events whose turn was taken
        # Held by this process and known to it: events being turned or whose deletion is
        # not yet written, answers stored and not yet recorded as sent or failed. After a
        # lost connection, rows held here but missing from these sets (a commit that went
        # through although its answer never came back) are taken up (_take_up_own).
        self._live_events: set[int] = set()
        self._live_answers: set[int] = set()
        self._receiving = 0  # receive() calls under way: their rows are not known yet
        self._suspect = False  # a connection was lost: look for rows held and not known
        self._outcomes: list[_Outcome] = []
        self._flush_lock = asyncio.Lock()
        self._wake_flusher = asyncio.Event()
        self._stopping = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    @property
    def under_way(self) -> int:
        """Answers given and not yet finished (sent, failed) in this process."""
        return len(self._tasks)

    # --- life -------------------------------------------------------------------------

    def attach(self, renderer: Renderer) -> None:
        """The front end that makes answers into platform calls (set once, at its birth)."""
        self._renderer = renderer

    async def start(self) -> None:
        """Begin writing outcomes; take up the answers a stopped process left."""
        if self._worker is not None:  # a front end that failed half-way starts again
            return
        self._stopping.clear()
        await self._take_up_events()
        await self._adopt(everything=True)
        self._worker = asyncio.create_task(self._work(), name=f"answers:{self._bot_id}")

    async def stop(self) -> None:
        """Let answers under way finish for a moment, write every outcome; what is still
        unsent stays stored for the next start."""
        self._stopping.set()
        self._wake_flusher.set()
        await finish(self._turns, STOP_GRACE_S)  # a turn cut short is taken again at the next start
        await finish(self._tasks, STOP_GRACE_S)  # an answer cut short is sent at the next start
        if self._worker is not None:
            await self._worker
            self._worker = None
        with contextlib.suppress(Exception):  # logged inside; the rows stay pending
            await self._flush()

    # --- answering --------------------------------------------------------------------

    async def receive(self, arrivals: Sequence[Received]) -> None:
        """Keep what arrived (one transaction), then take each turn in the background.

        Call it before the platform learns the updates arrived (the next getUpdates, the
        webhook's 200): from then on a crash cannot lose them. What is already kept (a
        redelivery while its turn is under way) is not taken twice.
        """
        self._receiving += 1
        try:
            new = await keep_events(
                self._sessions, bot_id=self._bot_id, arrivals=arrivals, holder=self._holder,
                now=self._clock(),
            )  # fmt: skip
        except Exception as exc:
            # The caller keeps them again; a commit that went through regardless is taken
            # up by _take_up_own (the redelivery is not kept twice).
            self._suspect = self._suspect or connection_lost(exc)
            raise
        finally:
            self._receiving -= 1
        for pending_id, received in new:
            self._take(pending_id, received)

    def _take(self, pending_id: int, received: Received) -> None:
        self._live_events.add(pending_id)
        task = asyncio.create_task(self._turn(pending_id, received))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)

    async def _turn(self, pending_id: int, received: Received) -> None:
        delay = TURN_RETRY_FIRST_S
        while True:
            # A turn waiting to be retried holds no slot (and no connection).
            async with self._turn_slots:
                done = await self._answer(received)
            if done:
                break
            self._suspect = True
            if self._stopping.is_set():
                return  # still kept in pending_events: the next start takes it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, TURN_RETRY_MAX_S)
        self._handled.append(pending_id)
        if len(self._handled) >= FLUSH_BATCH:
            self._wake_flusher.set()

    async def _answer(self, received: Received) -> bool:
        """Run the turn for an event and give its answer to the outbox (not awaited).
        False when the database connection was lost: nothing was answered, try again."""
        event, query_id = received.event, received.query_id
        pressed_message_id = received.pressed_message_id
        stored: list[int] = []

        async def keep(session: AsyncSession, replies: list[Reply]) -> None:
            owed = Owed(event.chat_id, tuple(replies), query_id, pressed_message_id)
            now = self._clock()
            answer_id = await store(
                session, bot_id=self._bot_id, owed=owed, holder=self._holder, now=now
            )
            stored.append(answer_id)
            self._live_answers.add(answer_id)  # known before its commit (_take_up_own)

        try:
            replies = await self.conversation.handle(event, keep)
        except Exception as exc:
            self._live_answers.difference_update(stored)
            if connection_lost(exc):
                log.warning(
                    "update %s: database connection lost (%s); trying again",
                    event.update_key, one_line(exc),
                )  # fmt: skip
                return False
            # Logged with its traceback and answered; the bot keeps serving everyone else.
            log.error("update %s failed; apologised", event.update_key, exc_info=True)
            replies = [Reply(texts.APOLOGY)]
            stored.clear()  # the turn rolled back, and its answer with it
        if replies:
            answer_id = stored[0] if stored else None
            self.give(Owed(event.chat_id, tuple(replies), query_id, pressed_message_id, answer_id))
        return True

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._stopping.is_set()

    def give(self, owed: Owed, lane: Lane | None = None) -> asyncio.Task[str | None]:
        """Send an answer in the background, after the chat's earlier answers; the task
        ends when it is sent (None) or has failed (the reason); recorded either way."""
        lane = self.outbox.answer_lane(owed.chat_id) if lane is None else lane
        chain = self._chains.setdefault(owed.chat_id, _Chain())
        chain.users += 1
        if owed.answer_id is not None:
            self._live_answers.add(owed.answer_id)
        task = asyncio.create_task(self._deliver(owed, lane, chain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, owed: Owed, lane: Lane, chain: _Chain) -> str | None:
        since = self.outbox.now()  # every part keeps the place the answer began with
        try:
            async with chain.lock:
                reason = await self._send(owed, lane, since)
        finally:
            chain.users -= 1
            if chain.users == 0:
                self._chains.pop(owed.chat_id, None)
        self._outcomes.append(_Outcome(owed, reason))
        if len(self._outcomes) >= FLUSH_BATCH:
            self._wake_flusher.set()
        if reason is None:
            self.sent += 1
            if self._renderer is not None and not owed.calls:
                self._renderer.after(owed)
        else:
            self.failed += 1
            log.warning("an answer to a chat could not be sent: %s", reason)
        return reason

    async def _send(self, owed: Owed, lane: Lane, since: float) -> str | None:
        """Send the answer's calls in order; None when sent, else why not."""
        if self._renderer is None and not owed.calls:
            return "no bot"
        try:
            requests = owed.calls or self._renderer.calls(owed)  # type: ignore[union-attr]
            for request in requests:
                try:
                    await self.outbox.send(
                        owed.chat_id, lane, request.call, counted=request.counted, since=since
                    )
                except SendFailure as failure:
                    if not request.optional:
                        return failure.reason
        except Exception as exc:  # a bug in a renderer must not lose the record of it
            log.error("an answer crashed", exc_info=True)
            return f"error: {one_line(exc)}"[:120]
        return None

    # --- outcomes and adoption --------------------------------------------------------

    async def _work(self) -> None:
        last_adopt = last_unheld = asyncio.get_running_loop().time()
        wait = FLUSH_INTERVAL_S
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_flusher.wait(), wait)
            self._wake_flusher.clear()
            try:
                await self._flush()
                if self._suspect and not self._receiving:
                    self._suspect = False
                    await self._take_up_own()
                if asyncio.get_running_loop().time() - last_unheld >= UNHELD_POLL_S:
                    last_unheld = asyncio.get_running_loop().time()
                    await self._take_up_unheld()
                if asyncio.get_running_loop().time() - last_adopt >= ADOPT_POLL_S:
                    last_adopt = asyncio.get_running_loop().time()
                    await self._adopt(everything=False)
            except Exception as exc:
                # Nothing is lost (outcomes stay in memory, rows stay held); back off.
                if connection_lost(exc):
                    self._suspect = True
                    log.warning("answers: database connection lost (%s); will retry",
                                one_line(exc))  # fmt: skip
                else:
                    log.error("answers: could not write outcomes; will retry", exc_info=True)
                wait = min(wait * 2, WORK_RETRY_MAX_S)
            else:
                wait = FLUSH_INTERVAL_S

    async def _flush(self) -> None:
        async with self._flush_lock:
            batch, self._outcomes = self._outcomes, []
            handled, self._handled = self._handled, []
            if not batch and not handled:
                return
            now = self._clock()
            sent = [o.owed.answer_id for o in batch if o.reason is None and o.owed.answer_id]
            try:
                async with self._sessions.begin() as session:
                    if handled:
                        await session.execute(
                            delete(PendingEvent).where(PendingEvent.id.in_(handled))
                        )
                    if sent:
                        await session.execute(delete(Answer).where(Answer.id.in_(sent)))
                    for outcome in batch:
                        if outcome.reason is not None:
                            await self._record_failure(session, outcome.owed, outcome.reason, now)
            except Exception:
                self._outcomes = batch + self._outcomes  # nothing lost: next time
                self._handled = handled + self._handled
                raise
            self._live_events.difference_update(handled)
            self._live_answers.difference_update(o.owed.answer_id for o in batch)

    async def _record_failure(
        self, session: AsyncSession, owed: Owed, reason: str, now: dt.datetime
    ) -> None:
        failed = {"state": AnswerState.failed, "reason": reason[:120], "failed_at": now}
        if owed.answer_id is not None:
            await session.execute(update(Answer).where(Answer.id == owed.answer_id).values(failed))
            return
        # Never stored (an apology, a voice): recorded now, so an operator sees it too.
        row = Answer(
            bot_id=self._bot_id, chat_id=owed.chat_id, payload=to_payload(owed),
            holder=self._holder, created_at=now, **failed,
        )  # fmt: skip
        session.add(row)

    async def _take_up_events(self) -> None:
        """At start: the events a stopped process kept but did not get to (or did not get
        to delete: a turn already taken is recognised and not answered twice)."""
        theirs = (PendingEvent.holder.is_(None)) | (PendingEvent.holder != self._holder)
        taken = await self._take_events((PendingEvent.bot_id == self._bot_id) & theirs)
        if taken:
            log.info("took up %d events a stopped process had received", taken)

    async def _take_events(self, which: ColumnElement[bool]) -> int:
        """Hold the pending events `which` selects and take their turns in arrival order;
        how many. The condition is in the UPDATE: of two processes, one takes each row."""
        take = (
            update(PendingEvent)
            .where(which)
            .values(holder=self._holder)
            .returning(PendingEvent.id, PendingEvent.event)
        )
        async with self._sessions.begin() as session:
            rows: list[tuple[int, dict[str, Any]]] = [
                (row[0], row[1]) for row in (await session.execute(take)).all()
            ]
        for pending_id, stored in sorted(rows, key=lambda row: row[0]):
            self._take(pending_id, _event_from_json(stored))
        return len(rows)

    async def _take_up_own(self) -> None:
        """After a lost connection: the events and answers this process holds but does not
        know of (a keep, a turn or a take whose commit went through while its answer was
        lost with the connection), taken up as at a start."""
        mine = (PendingEvent.bot_id == self._bot_id) & (PendingEvent.holder == self._holder)
        ours = (
            (Answer.bot_id == self._bot_id)
            & (Answer.holder == self._holder)
            & (Answer.state == AnswerState.pending)
        )
        async with reading(self._sessions) as session:
            events = (await session.execute(select(PendingEvent.id, PendingEvent.event)
                                            .where(mine))).all()  # fmt: skip
            answers = (
                await session.execute(select(Answer.id, Answer.chat_id, Answer.payload).where(ours))
            ).all()
        lost_events = sorted((row[0], row[1]) for row in events if row[0] not in self._live_events)
        for pending_id, stored in lost_events:
            self._take(pending_id, _event_from_json(stored))
        lost_answers = sorted(
            (row[0], row[1], row[2]) for row in answers if row[0] not in self._live_answers
        )
        for answer_id, chat_id, payload in lost_answers:
            self.give(from_payload(answer_id, chat_id, payload))
        if lost_events or lost_answers:
            log.warning(
                "after a lost database connection: took up %d events and %d answers",
                len(lost_events), len(lost_answers),
            )  # fmt: skip

    async def _take_up_unheld(self) -> None:
        """Take the turns of events kept by processes that do not run this bot (holder
        NULL: a web replica's webhook), in arrival order. Reads first: nothing to take
        costs no write (and no SQLite write lock)."""
        unheld = (PendingEvent.bot_id == self._bot_id) & PendingEvent.holder.is_(None)
        async with reading(self._sessions) as session:
            waiting = await session.scalar(select(PendingEvent.id).where(unheld).limit(1))
        if waiting is not None:
            await self._take_events(unheld)

    async def _adopt(self, *, everything: bool) -> None:
        """Take up stored answers nobody is sending: at start, every pending one of this
        bot that is not ours (a stopped process's); later, those written without a bot."""
        ours: ColumnElement[bool] = Answer.holder.is_(None)
        if everything:
            ours = ours | (Answer.holder != self._holder)
        while not self._stopping.is_set():
            async with self._sessions.begin() as session:
                ids = select(Answer.id).where(
                    Answer.bot_id == self._bot_id, Answer.state == AnswerState.pending, ours
                )
                # The condition again in the UPDATE: of two processes, one takes each row.
                take = (
                    update(Answer)
                    .where(Answer.id.in_(ids.order_by(Answer.id).limit(ADOPT_BATCH)), ours)
                    .values(holder=self._holder)
                    .returning(Answer.id, Answer.chat_id, Answer.payload)
                )
                taken: list[tuple[int, str, dict[str, Any]]] = [
                    (row[0], row[1], row[2]) for row in (await session.execute(take)).all()
                ]
            for answer_id, chat_id, payload in sorted(taken, key=lambda row: row[0]):
                self.give(from_payload(answer_id, chat_id, payload))
            if len(taken) < ADOPT_BATCH:
                return
