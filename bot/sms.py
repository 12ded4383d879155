"""SMS front end: a brandname's SMPP link as a bot people text words to, and its receipts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bot.answers import Call, Owed, Received
from bot.conversation import EventKind, Inbound, Reply
from bot.front_end import FrontEndArgs
from bot.smpp import (
    MobileMessage,
    Receipt,
    SmppConfig,
    SmppGateway,
    SmppLoginRefused,
    SmppUnreachable,
)
from bot.webhooks import one_line
from broadcasts import receipts, sms
from broadcasts.parts import PartStatus
from db.models import DeliveryState

log = logging.getLogger(__name__)

TEXT_LIMIT = sms.GSM7_SINGLE  # what the conversation aims one reply at
REPLY_PARTS = 2  # an answer is cut to this many parts: each one is paid for
# People's messages kept together: what arrived within MO_GATHER_S, up to MO_BATCH, goes
# into pending_events in one transaction (200 phones texting DK at once are a few).
MO_GATHER_S = 0.02
MO_BATCH = 100
# Receipts are written in batches (one transaction each), at least this often.
RECEIPT_FLUSH_S = 0.2
RECEIPT_BATCH = 500
# A failed receipt can come before the sender has written the message id it is about (it
# writes outcomes every quarter second): one that matched nothing is tried again every
# RECEIPT_RETRY_S for RECEIPT_MATCH_S, then dropped (a reply's, or a restart's, receipt).
RECEIPT_RETRY_S = 1.0
RECEIPT_MATCH_S = 30.0
RECEIPT_BACKLOG_MAX = 100_000  # receipts held while the database is down, at most
WRITE_BACKOFF_MAX_S = 10.0
# The link is checked this often and bound again when lost: sends rebind it themselves,
# but people's messages only come over a bound link, so a quiet bot must not stay deaf.
LINK_CHECK_S = 1.0

_ENCODINGS = {e.value: e for e in sms.Encoding}


def config_from(options: Mapping[str, Any], secret: str) -> SmppConfig:
    """An SMS bot's gateway from its options (bots.options) and secret (the SMPP
    password). Keys: host, port, system_id, brandname (required); encoding
    ("gsm7_unaccented", the default, or "ucs2"); the tariff, by `cost_per_part_vnd` and
    `carrier` (broadcasts.sms.tariff_from); throughput (parts per second, none: the gateway
    throttles), window (1-100), max_parts (1-10). Raises ValueError saying what is wrong."""
    host = options.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ValueError("host: the SMPP gateway's host name or address is required")
    port = _integer(options, "port", None, 1, 65535)
    system_id = options.get("system_id")
    if not isinstance(system_id, str) or not system_id.strip() or len(system_id) > 15:
        raise ValueError("system_id: the SMPP account name (1-15 characters) is required")
    if not secret:
        raise ValueError("the SMPP password (the bot's secret) is required")
    brandname = options.get("brandname")
    if not isinstance(brandname, str):
        raise ValueError("brandname: the registered sender name is required")
    try:
        sms.check_brandname(brandname)
    except ValueError as exc:
        raise ValueError(f"brandname: {exc}") from None
    encoding_name = options.get("encoding", sms.Encoding.gsm7_unaccented.value)
    encoding = _ENCODINGS.get(encoding_name) if isinstance(encoding_name, str) else None
    if encoding is None:
        raise ValueError(f"encoding: one of {', '.join(_ENCODINGS)}, not {encoding_name!r}")
    throughput = options.get("throughput")
    if throughput is not None and (
        isinstance(throughput, bool)
        or not isinstance(throughput, int | float)
        or not 0 < throughput <= 10_000
    ):
        raise ValueError("throughput: parts per second the contract allows, above 0 up to 10000")
    return SmppConfig(
        host=host.strip(),
        port=port,
        system_id=system_id.strip(),
        password=secret,
        brandname=brandname,
        tariff=sms.tariff_from(options),
        encoding=encoding,
        throughput=float(throughput) if throughput is not None else None,
        window=_integer(options, "window", 10, 1, 100),
        max_parts=_integer(options, "max_parts", 6, 1, 10),
    )


def _integer(options: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is None:
        raise ValueError(f"{key}: required, a whole number from {low} to {high}")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key}: a whole number from {low} to {high}, not {value!r}")
    return int(value)


def to_inbound(message: MobileMessage, bot_id: int) -> Inbound:
    """A person's SMS for the conversation core (the chat is their number)."""
    return Inbound(
        bot_id=bot_id,
        chat_id=message.source[:64],
        kind=EventKind.text,
        update_key=message.key[:80],
        text=message.text,
        text_limit=TEXT_LIMIT,
        sms=True,
    )


def sms_text(replies: tuple[Reply, ...]) -> str:
    """An answer as the text of one SMS: the replies joined, options numbered (an SMS has
    no buttons: the person replies with the number)."""
    lines: list[str] = []
    for reply in replies:
        lines.append(reply.text)
        lines += [f"{n}. {option.label}" for n, option in enumerate(reply.options, start=1)]
    return "\n".join(line for line in lines if line)


@dataclass
class _Arrival:
    message: MobileMessage
    kept: asyncio.Future[None]


@dataclass
class _Pending:
    """A failed receipt to write; `first`: when it came, `due`: when to try (monotonic)."""

    receipt: Receipt
    first: float
    due: float


class SmsFrontEnd:
    """Runs one SMS bot: the SMPP link (its sender's channel as well), people's messages
    into the conversation, its answers as SMS, delivery receipts onto deliveries."""

    name = "sms"

    def __init__(self, args: FrontEndArgs) -> None:
        self.config = config_from(args.options, args.secret)
        self._bot_id = args.bot_id
        self._answers = args.answers
        self._sessions = args.sessions
        self.gateway = SmppGateway(
            self.config, on_receipt=self._receipt_came, on_message=self._message_came
        )
        args.answers.attach(self)
        self._arrived: asyncio.Queue[_Arrival | None] = asyncio.Queue()
        self._keeper: asyncio.Task[None] | None = None
        self._receipts: list[_Pending] = []
        self._wake_writer = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._running = False
        self.receipts_matched = 0  # failed receipts written onto a delivery
        self.receipts_unmatched = 0  # failed receipts dropped: no delivery had their id

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the gateway (raises SmppLoginRefused or SmppUnreachable: the runtime
        tries again), then take people's messages and receipts."""
        await self.gateway.start()
        await self._answers.start()
        if self._keeper is None:
            self._arrived = asyncio.Queue()
            self._keeper = asyncio.create_task(self._keep_arrivals(), name="sms-keep")
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_receipts(), name="sms-receipts")
        if self._watch is None:
            self._watch = asyncio.create_task(self._stay_bound(), name="sms-link")
        self._running = True

    async def stop(self) -> None:
        """Keep what arrived (later messages are refused: the gateway delivers them again
        to the next holder), let answers under way finish, unbind, write the receipts."""
        self._running = False
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._keeper is not None:
            self._arrived.put_nowait(None)  # the keeper ends after what came before
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        await self._answers.stop()
        await self.gateway.close()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        try:
            await self._write_due(final=True)
        except Exception as exc:
            log.warning("sms: %d receipts lost at stop (%s)", len(self._receipts), one_line(exc))

    async def _stay_bound(self) -> None:
        """Bind again after a lost link (the gateway logged the loss): one line when it
        cannot, one when it can again."""
        failing = False
        while True:
            await asyncio.sleep(LINK_CHECK_S)
            if self.gateway.bound:
                continue
            try:
                await self.gateway.start()
            except (SmppLoginRefused, SmppUnreachable) as exc:
                if not failing:
                    log.warning("sms: cannot bind again (%s); retrying", exc)
                failing = True
            else:
                if failing:
                    log.info("sms: bound again")
                failing = False

    def status(self) -> PartStatus:
        if not self._running:
            return PartStatus(active=False, detail="stopped")
        where = f"{self.config.host}:{self.config.port}"
        if not self.gateway.bound:
            return PartStatus(active=True, detail=f"{where}: reconnecting", retrying=True)
        return PartStatus(active=True, detail=f"{self.config.brandname} via {where}")

    def channel(self) -> SmppGateway:
        return self.gateway

    async def webhook(self, request: Request) -> Response:
        """SMS has no webhook: its messages and receipts come over the SMPP link."""
        return Response(status_code=404)

    # --- people's messages --------------------------------------------------------------

    async def _message_came(self, message: MobileMessage) -> None:
        """From the gateway: returns once the message is kept (then the gateway answers
        its deliver_sm); raises when it was not (the gateway asks for it again)."""
        if self._keeper is None or self._keeper.done():
            raise RuntimeError("the SMS bot is not running")
        arrival = _Arrival(message, asyncio.get_running_loop().create_future())
        self._arrived.put_nowait(arrival)
        await arrival.kept

    async def _keep_arrivals(self) -> None:
        while True:
            first = await self._arrived.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            deadline = asyncio.get_running_loop().time() + MO_GATHER_S
            while len(batch) < MO_BATCH:
                try:
                    async with asyncio.timeout_at(deadline):
                        arrival = await self._arrived.get()
                except TimeoutError:
                    break
                if arrival is None:
                    stopping = True
                    break
                batch.append(arrival)
            await self._keep(batch)
            if stopping:
                return

    async def _keep(self, batch: list[_Arrival]) -> None:
        try:
            await self._answers.receive(
                [Received(to_inbound(a.message, self._bot_id)) for a in batch]
            )
        except Exception as exc:
            log.warning("sms: %d messages not kept (%s); the gateway will redeliver them",
                        len(batch), one_line(exc))  # fmt: skip
            for arrival in batch:
                if not arrival.kept.done():
                    arrival.kept.set_exception(RuntimeError("not kept"))
                    arrival.kept.exception()  # retrieved: the gateway may be gone
            return
        for arrival in batch:
            if not arrival.kept.done():
                arrival.kept.set_result(None)

    # --- answers (bot.answers.Renderer) ---------------------------------------------------

    def calls(self, owed: Owed) -> list[Call]:
        """An answer as one unaccented SMS of at most REPLY_PARTS parts."""
        text = sms_text(owed.replies)
        return [Call(self._say(owed.chat_id, text))] if text.strip() else []

    def after(self, owed: Owed) -> None:
        """Nothing follows an answer by SMS (no voice)."""

    def _say(self, chat_id: str, text: str) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            return await self.gateway.send_text(
                chat_id, text, encoding=sms.Encoding.gsm7_unaccented, max_parts=REPLY_PARTS
            )

        return call

    # --- receipts -----------------------------------------------------------------------

    def _receipt_came(self, receipt: Receipt) -> None:
        """From the gateway, on the loop: a delivered message stays `sent` (nothing to
        write); a failed one is written with the next batch."""
        if receipt.state is DeliveryState.sent:
            return
        if len(self._receipts) >= RECEIPT_BACKLOG_MAX:
            self.receipts_unmatched += 1
            return
        now = time.monotonic()
        self._receipts.append(_Pending(receipt, now, now))
        if len(self._receipts) >= RECEIPT_BATCH:
            self._wake_writer.set()

    async def _write_receipts(self) -> None:
        backoff = RECEIPT_FLUSH_S
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_writer.wait(), backoff)
            self._wake_writer.clear()
            try:
                await self._write_due()
            except Exception as exc:
                log.warning("sms: %d receipts not written yet (%s)", len(self._receipts),
                            one_line(exc))  # fmt: skip
                backoff = min(backoff * 2, WRITE_BACKOFF_MAX_S)
            else:
                backoff = RECEIPT_FLUSH_S

    async def _write_due(self, *, final: bool = False) -> None:
        """Write the receipts that are due, RECEIPT_BATCH per transaction; those that
        matched nothing wait for another try (see RECEIPT_MATCH_S)."""
        while True:
            now = time.monotonic()
            due = [p for p in self._receipts if final or p.due <= now][:RECEIPT_BATCH]
            if not due:
                return
            unmatched: list[_Pending] = []
            async with self._sessions.begin() as session:
                for pending in due:
                    r = pending.receipt
                    if await receipts.record(session, self._bot_id, r.message_id, r.state,
                                             r.reason):  # fmt: skip
                        self.receipts_matched += 1
                    else:
                        unmatched.append(pending)
            taken = {id(p) for p in due}
            self._receipts = [p for p in self._receipts if id(p) not in taken]
            for pending in unmatched:
                if not final and now - pending.first < RECEIPT_MATCH_S:
                    pending.due = now + RECEIPT_RETRY_S
                    self._receipts.append(pending)
                else:
                    self.receipts_unmatched += 1
            if len(due) < RECEIPT_BATCH:  # else more may be due (final: the rest)
                return
