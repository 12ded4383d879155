"""SMS through a carrier's brandname gateway over SMPP 3.4, on smpplib, as a Channel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from smpplib import client as smpp_client
from smpplib import consts, exceptions, smpp

from broadcasts import sms
from broadcasts.channels import FailureKind, Outbound, SendFailure
from db.models import DeliveryState, Platform

log = logging.getLogger(__name__)
# smpplib logs every PDU in hex at DEBUG, phone numbers and texts included, and warns on
# every disconnect we cause ourselves: its logger keeps to errors whatever the root level
# is (numbers are never logged in full; link losses are logged here, once).
WIRE_LOGGER = "bot.smpp.wire"
logging.getLogger(WIRE_LOGGER).setLevel(logging.ERROR)

PLATFORM = Platform.sms
UDHI = 0x40  # esm_class: the short message begins with a user data header
RECEIPT_ESM = 0x04  # esm_class of a deliver_sm that is a delivery receipt
# esm_class bits 2-5: the message type. 0 is a person's message (MO); the others are
# receipts, intermediate notifications and acknowledgements, never a turn.
MESSAGE_TYPE = 0x3C
# Parts of a concatenated MO message wait this long for the rest (a phone sends them
# within seconds); so many incomplete messages are held at most, the oldest dropped.
MO_PARTS_WAIT_S = 600.0
MO_INCOMPLETE_MAX = 10_000
# An MO message whose deliver_sm_resp did not go out (the link broke, or it was not kept)
# is redelivered by the gateway: its key is remembered this long, so the redelivery is
# the same update and is turned once.
MO_UNANSWERED_KEEP_S = 3600.0
MO_UNANSWERED_MAX = 10_000
DATA_CODING = {sms.Encoding.gsm7_unaccented: 0x00, sms.Encoding.ucs2: 0x08}
_RECEIPT = re.compile(rb"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)", re.DOTALL)
# Receipts that are not final yet: the part stays waited for.
_NOT_FINAL = {"ENROUTE", "ACCEPTD"}
# Parts whose receipts are awaited; older ones are forgotten (their receipts then come
# through under the part's own id, as for a message sent before a restart).
_AWAITED_PARTS = 200_000

# submit_sm_resp statuses by what the sender does about them; anything else is transient.
_RATE = {consts.SMPP_ESME_RTHROTTLED, consts.SMPP_ESME_RMSGQFUL}
_NO_SUCH_NUMBER = {consts.SMPP_ESME_RINVDSTADR}
_OUR_MISTAKE = {
    consts.SMPP_ESME_RINVMSGLEN,
    consts.SMPP_ESME_RINVSRCADR,  # the brandname is not registered with this carrier
    consts.SMPP_ESME_RINVESMCLASS,
    consts.SMPP_ESME_RINVSRCTON,
    consts.SMPP_ESME_RINVSRCNPI,
    consts.SMPP_ESME_RINVDSTTON,
    consts.SMPP_ESME_RINVDSTNPI,
    consts.SMPP_ESME_RINVSERTYP,
    consts.SMPP_ESME_RINVREGDLVFLG,
    consts.SMPP_ESME_RX_P_APPN,
    consts.SMPP_ESME_RX_R_APPN,
}
_LINK_LOST = -1  # not an SMPP status: the link broke before the answer came
_LOGIN_REFUSED = {
    consts.SMPP_ESME_RINVPASWD,
    consts.SMPP_ESME_RINVSYSID,
    consts.SMPP_ESME_RBINDFAIL,
}


@dataclass(frozen=True)
class SmppConfig:
    """One brandname gateway. `throughput`: submit_sm per second the contract allows
    (each part of a long SMS is one); None leaves the pace to the gateway's throttling."""

    host: str
    port: int
    system_id: str
    password: str
    brandname: str
    tariff: sms.GatewayTariff
    encoding: sms.Encoding = sms.Encoding.gsm7_unaccented
    system_type: str = ""
    throughput: float | None = None
    window: int = 10  # messages waiting for the gateway's answers at once
    max_parts: int = 6  # how long one SMS may grow; the sender splits longer texts
    response_timeout_s: float = 10.0  # for each submit_sm_resp
    enquire_link_s: float = 30.0  # a silent link is probed this often
    throttle_wait_s: float = 1.0  # after ESME_RTHROTTLED, before the next submit_sm
    part_retry_s: float = 30.0  # how long a throttled later part is retried in place
    reconnect_wait_s: float = 2.0  # between attempts to reach a gateway that is down

    def __post_init__(self) -> None:
        sms.check_brandname(self.brandname)


@dataclass(frozen=True)
class MobileMessage:
    """A person's SMS to the brandname (MO), its parts joined."""

    source: str  # the sender's number, normalised (84xxxxxxxxx), or as the gateway gave it
    text: str
    key: str  # stable for the gateway's redeliveries of this message (see SmppGateway)


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt as our delivery states see it, for a whole message: sent
    (delivered to the handset) once every part is, failed at the first part that is not."""

    message_id: str  # what send() returned (the gateway's id of the first part)
    stat: str  # the receipt's own word: DELIVRD, UNDELIV, EXPIRED, REJECTD, ...
    state: DeliveryState  # sent or failed
    reason: str | None  # for failed: "sms_undeliv", "sms_expired", ...

    @property
    def delivered(self) -> bool:
        return self.state is DeliveryState.sent


def receipt_outcome(stat: str) -> tuple[DeliveryState, str | None]:
    """Our state for a final receipt stat: DELIVRD is sent (and delivered); UNDELIV,
    REJECTD, EXPIRED, DELETED and UNKNOWN are failed with the stat as reason."""
    if stat == "DELIVRD":
        return DeliveryState.sent, None
    return DeliveryState.failed, f"sms_{stat.lower()}"


def failure_for(status: int, retry_after: float) -> SendFailure:
    """A submit_sm_resp error as the sender classifies failures."""
    words = consts.DESCRIPTIONS.get(status, "unknown status")
    reason = f"smpp 0x{status:02x} {words}"
    if status in _RATE:
        return SendFailure(FailureKind.rate_limited, reason, retry_after=retry_after)
    if status in _NO_SUCH_NUMBER:
        return SendFailure(FailureKind.chat_not_found, reason)
    if status in _OUR_MISTAKE:
        return SendFailure(FailureKind.bad_request, reason)
    return SendFailure(FailureKind.transient, reason)


class SmppLoginRefused(Exception):
    """The gateway answered bind_transceiver with an error: wrong system id or password,
    or an account not allowed to bind (more binds than the contract gives, say)."""


class SmppUnreachable(Exception):
    """The gateway could not be reached or the link broke while binding."""


class _Sequences:
    """Sequence numbers for one link, handed out from several threads."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.sequence = 0

    def next_sequence(self) -> int:
        with self._lock:
            self.sequence = next(self._numbers)  # 2**31 submits on one link: not a concern
            return self.sequence


@dataclass
class _Message:
    """One SMS of one or more parts, while its parts' receipts are awaited."""

    total: int
    first_id: str = ""
    delivered: set[int] = field(default_factory=set)
    finished: bool = False


@dataclass
class _Pending:
    future: asyncio.Future[tuple[int, str]]
    message: _Message
    index: int


class _Link(smpp_client.Client):  # type: ignore[misc]  # smpplib ships no type hints
    """smpplib's client for one TCP connection, with writes serialised: the listener
    thread answers deliver_sm and enquire_link while sends come from worker threads."""

    def __init__(self, config: SmppConfig, generation: int) -> None:
        super().__init__(
            config.host,
            config.port,
            timeout=config.enquire_link_s,
            sequence_generator=_Sequences(),
            logger_name=WIRE_LOGGER,
            allow_unknown_opt_params=True,
        )
        self.generation = generation
        self.pending: dict[int, _Pending] = {}  # by sequence number
        self.closing = False
        self.unbound = threading.Event()
        self._write = threading.Lock()

    def send_pdu(self, p: Any) -> bool:
        with self._write:
            return bool(super().send_pdu(p))

    def cut(self) -> None:
        """Close the socket so that the listener's blocking read returns at once."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.disconnect()


class _PartPacer:
    """Spaces submit_sm at the gateway's throughput and holds them all after a throttle."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        at = max(now, self._next)
        self._next = at + self._interval
        if at > now:
            await asyncio.sleep(at - now)

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, time.monotonic() + seconds)


class SmppGateway:
    """A bot on the SMS "platform": one bound transceiver link to one gateway.

    chat ids are phone numbers (normalised to 84xxxxxxxxx). A text goes out as one SMS
    of up to `max_parts` concatenated parts from the brandname; media are skipped (SMS
    carries none). Delivery receipts reach `on_receipt` on the event loop.

    What a lost link can repeat: a submit_sm written but not answered when the link
    broke may have been accepted, and its send() fails as transient, so a retry can send
    that message again, its earlier parts included. At most the messages in flight then
    (`window`) are repeated; none is lost, as only a submit_sm_resp counts as sent.

    A person's SMS (MO) reaches `on_message` on the event loop, concatenated parts joined
    first; its deliver_sm_resp waits for `on_message` to return (the message kept), and
    an exception there answers ESME_RX_T_APPN so that the gateway delivers it again. A
    redelivery (the answer lost with the link, or refused) carries the key the first
    delivery got, while this process lives; after a restart it is a new message.
    """

    platform = PLATFORM

    def __init__(
        self,
        config: SmppConfig,
        *,
        on_receipt: Callable[[Receipt], None] | None = None,
        on_message: Callable[[MobileMessage], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        single, part = config.tariff.limits(config.encoding)
        self.max_text = part * config.max_parts if config.max_parts > 1 else single
        self._on_receipt = on_receipt
        self._on_message = on_message
        self._mo = _Reassembly()
        self._link: _Link | None = None
        self._generation = 0
        self._listener: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting = asyncio.Lock()
        self._window = asyncio.Semaphore(config.window)
        self._pacer = _PartPacer(config.throughput)
        self._references = itertools.count(1)
        self._parts: OrderedDict[str, tuple[_Message, int]] = OrderedDict()
        self._parts_lock = threading.Lock()
        self._retry_connect_at = 0.0

    # -- the link

    async def start(self) -> None:
        """Connect and bind now. Raises SmppLoginRefused (the credentials) or
        SmppUnreachable, with the gateway's own words."""
        await self._bound(wait=False)

    async def close(self) -> None:
        """Unbind (waiting briefly for the answer) and disconnect."""
        link, self._link = self._link, None
        if link is None:
            return
        link.closing = True
        with contextlib.suppress(exceptions.ConnectionError, exceptions.PDUError, OSError):
            await asyncio.to_thread(link.send_pdu, smpp.make_pdu("unbind", client=link))
            await asyncio.to_thread(link.unbound.wait, 2.0)
        link.cut()
        self._fail_pending(link)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, 5.0)

    @property
    def bound(self) -> bool:
        return self._link is not None

    async def _bound(self, wait: bool = True) -> _Link:
        link = self._link
        if link is not None:
            return link
        async with self._connecting:
            if self._link is None:
                pause = self._retry_connect_at - time.monotonic()
                if pause > 0 and not wait:
                    raise SmppUnreachable("the gateway was unreachable a moment ago")
                if pause > 0:
                    await asyncio.sleep(pause)
                try:
                    await self._open()
                except (SmppLoginRefused, SmppUnreachable):
                    self._retry_connect_at = time.monotonic() + self.config.reconnect_wait_s
                    raise
            if self._link is None:  # _open() either bound a link or raised
                raise SmppUnreachable("no link after binding")
            return self._link

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._generation += 1
        link = _Link(self.config, self._generation)
        where = f"{self.config.host}:{self.config.port}"
        try:
            await asyncio.to_thread(self._bind, link)
        except exceptions.PDUError as exc:
            link.cut()
            status = exc.args[1] if len(exc.args) > 1 else None
            if status in _LOGIN_REFUSED:
                words = consts.DESCRIPTIONS.get(status, "refused")
                raise SmppLoginRefused(
                    f"the SMPP gateway {where} refused system_id {self.config.system_id!r}:"
                    f" {words} (0x{status:02x})"
                ) from exc
            raise SmppUnreachable(f"the SMPP gateway {where} refused the bind: {exc}") from exc
        except (exceptions.ConnectionError, OSError) as exc:
            link.cut()
            raise SmppUnreachable(f"the SMPP gateway {where} cannot be reached: {exc}") from exc
        self._link = link
        self._listener = threading.Thread(
            target=self._listen, args=(link,), name=f"smpp-listen-{where}", daemon=True
        )
        self._listener.start()
        log.info("sms: bound to %s as %s", where, self.config.system_id)

    def _bind(self, link: _Link) -> None:
        link.connect()
        link.bind_transceiver(
            system_id=self.config.system_id,
            password=self.config.password,
            system_type=self.config.system_type,
        )

    def _listen(self, link: _Link) -> None:
        """The listener thread: smpplib's blocking reads, each PDU handed on."""
        reason = "closed"
        try:
            while True:
                try:
                    pdu = link.read_pdu()
                except TimeoutError:
                    # Silent for enquire_link_s: probe, as smpplib's listen() does.
                    link.send_pdu(smpp.make_pdu("enquire_link", client=link))
                    continue
                if not self._dispatch(link, pdu):
                    return
        except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        except AttributeError:
            # cut() from the event loop cleared smpplib's socket under a read in progress.
            reason = "closed"
        finally:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._lost, link, reason)

    def _dispatch(self, link: _Link, pdu: Any) -> bool:
        """Act on one PDU in the listener thread; False once the link is finished."""
        command = pdu.command
        if command in ("submit_sm_resp", "generic_nack"):
            # dict.pop is atomic: the event loop adds entries, this thread removes them.
            pending = link.pending.pop(pdu.sequence, None)
            if pending is not None:
                message_id = _text(getattr(pdu, "message_id", None))
                if pdu.status == consts.SMPP_ESME_ROK and message_id:
                    self._await_receipt(pending.message, pending.index, message_id)
                self._settle(pending.future, (int(pdu.status), message_id))
        elif command == "deliver_sm":
            esm_class = pdu.esm_class or 0
            if esm_class & MESSAGE_TYPE == 0:
                message = self._mo.take(pdu) if self._on_message is not None else None
                if message is not None and self._hand_on(link, pdu.sequence, message):
                    return True  # answered once kept
            elif esm_class & RECEIPT_ESM:
                self._receipt(pdu)
            _answer_deliver(link, pdu.sequence)
        elif command == "enquire_link":
            response = smpp.make_pdu("enquire_link_resp", client=link)
            response.sequence = pdu.sequence
            link.send_pdu(response)
        elif command == "unbind":  # the gateway is going away
            response = smpp.make_pdu("unbind_resp", client=link)
            response.sequence = pdu.sequence
            link.send_pdu(response)
            return False
        elif command == "unbind_resp":
            link.unbound.set()
            return False
        return True

    def _settle(self, future: asyncio.Future[tuple[int, str]], value: tuple[int, str]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def settle() -> None:
            if not future.done():
                future.set_result(value)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    def _lost(self, link: _Link, reason: str) -> None:
        """On the event loop: the link's listener ended."""
        if self._link is link:
            self._link = None
            log.warning("sms: link to the gateway lost (%s); reconnecting on the next send", reason)
        link.cut()
        self._fail_pending(link)

    def _fail_pending(self, link: _Link) -> None:
        for sequence in list(link.pending):
            pending = link.pending.pop(sequence, None)
            if pending is not None and not pending.future.done():
                # A status, not an exception: the waiter may be gone already (its write
                # failed first), and nobody would retrieve it.
                pending.future.set_result((_LINK_LOST, ""))

    # -- people's messages (MO)

    def _hand_on(self, link: _Link, sequence: int, message: MobileMessage) -> bool:
        """From the listener thread: run on_message on the loop, answering the deliver_sm
        when it returns. False when there is no loop to run it on."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            asyncio.run_coroutine_threadsafe(self._keep_message(link, sequence, message), loop)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    async def _keep_message(self, link: _Link, sequence: int, message: MobileMessage) -> None:
        status = consts.SMPP_ESME_ROK
        try:
            if self._on_message is not None:
                await self._on_message(message)
        except Exception as exc:
            status = consts.SMPP_ESME_RX_T_APPN  # "try again later"
            log.warning("sms: a message from %s was not kept (%s); the gateway will redeliver",
                        sms.mask(message.source), type(exc).__name__)  # fmt: skip
        try:
            await asyncio.to_thread(_answer_deliver, link, sequence, status)
        except (exceptions.ConnectionError, exceptions.PDUError, OSError, AttributeError):
            return  # the link went: the gateway redelivers, under the same key
        if status == consts.SMPP_ESME_ROK:
            self._mo.answered(message.key)

    # -- receipts (listener thread)

    def _await_receipt(self, message: _Message, index: int, part_id: str) -> None:
        with self._parts_lock:
            if index == 1:
                message.first_id = part_id
            self._parts[part_id] = (message, index)
            while len(self._parts) > _AWAITED_PARTS:
                self._parts.popitem(last=False)

    def _receipt(self, pdu: Any) -> None:
        found = _RECEIPT.search(pdu.short_message or b"")
        if found is None:
            return
        stat = found["stat"].decode("ascii")
        part_id = _text(getattr(pdu, "receipted_message_id", None)) or found["id"].decode(
            "ascii", "replace"
        )
        if stat in _NOT_FINAL:
            return
        with self._parts_lock:
            awaited = self._parts.pop(part_id, None)
            if awaited is None:
                message_id = part_id
            else:
                message, index = awaited
                if message.finished:
                    return
                message_id = message.first_id or part_id
                if stat == "DELIVRD":
                    message.delivered.add(index)
                    if len(message.delivered) < message.total:
                        return
                message.finished = True
        state, reason = receipt_outcome(stat)
        self._deliver(Receipt(message_id=message_id, stat=stat, state=state, reason=reason))

    def _deliver(self, receipt: Receipt) -> None:
        loop, callback = self._loop, self._on_receipt
        if callback is None or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, receipt)

    # -- sending

    def plan(self, text: str) -> sms.SmsPlan:
        """How `text` would go out through this gateway (parts, cost per recipient)."""
        return sms.plan(text, self.config.encoding, self.config.tariff)

    def brief(self, title: str, body: str, *, short: str | None) -> str:
        """A bulletin as one brief SMS in this gateway's encoding (broadcasts.sms): the
        sender sends that, not the whole bulletin (broadcasts.channels.BriefChannel)."""
        return sms.bulletin_text(
            title, body, short=short, encoding=self.config.encoding, tariff=self.config.tariff
        )

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send the text as one (concatenated) SMS; return the gateway's id of its first
        part ("" when there was nothing to send: SMS carries no media).

        A throttled first part is rate_limited (nothing went out); a throttled later
        part is retried in place for up to `part_retry_s`, since the earlier parts are
        already on their way and a retry of the whole would repeat them.
        """
        return await self.send_text(chat_id, message.text)

    async def send_text(
        self, chat_id: str, text: str, *, encoding: sms.Encoding | None = None,
        max_parts: int | None = None,
    ) -> str:  # fmt: skip
        """`send` of a plain text, in `encoding` (the gateway's if None), cut at a word
        end with "..." to fit `max_parts` parts (the gateway's max_parts if None)."""
        if not text.strip():
            return ""
        try:
            number = sms.msisdn(chat_id)
        except ValueError as exc:
            raise SendFailure(FailureKind.chat_not_found, str(exc)) from exc
        encoding = encoding or self.config.encoding
        plan = fit(text, encoding, self.config.tariff, max_parts or self.config.max_parts)
        if not plan.parts:
            return ""
        sms_message = _Message(total=plan.count)
        reference = next(self._references) % 256
        async with self._window:
            first_id = ""
            for index, part in enumerate(plan.parts, start=1):
                octets = sms.encode_part(part, plan.encoding)
                if plan.count > 1:
                    octets = bytes((0x05, 0x00, 0x03, reference, plan.count, index)) + octets
                message_id = await self._submit_part(
                    number, plan, octets, sms_message, index, concatenated=plan.count > 1
                )
                if index == 1:
                    first_id = message_id
        return first_id

    async def _submit_part(
        self,
        number: str,
        plan: sms.SmsPlan,
        octets: bytes,
        message: _Message,
        index: int,
        *,
        concatenated: bool,
    ) -> str:
        give_up_at = time.monotonic() + self.config.part_retry_s
        while True:
            await self._pacer.wait()
            try:
                link = await self._bound()
            except (SmppLoginRefused, SmppUnreachable) as exc:
                raise SendFailure(FailureKind.transient, str(exc)) from exc
            pdu = smpp.make_pdu(
                "submit_sm",
                client=link,
                source_addr_ton=consts.SMPP_TON_ALNUM,
                source_addr_npi=consts.SMPP_NPI_UNK,
                source_addr=self.config.brandname,
                dest_addr_ton=consts.SMPP_TON_INTL,
                dest_addr_npi=consts.SMPP_NPI_ISDN,
                destination_addr=number,
                esm_class=UDHI if concatenated else 0,
                registered_delivery=1,  # a receipt for every part, delivered or not
                data_coding=DATA_CODING[plan.encoding],
                short_message=octets,
            )
            status, message_id = await self._answer(link, pdu, message, index, number)
            if status == consts.SMPP_ESME_ROK:
                return message_id
            failure = failure_for(status, self.config.throttle_wait_s)
            if failure.kind is FailureKind.rate_limited:
                self._pacer.pause(failure.retry_after)
                if index > 1 and time.monotonic() < give_up_at:
                    continue
            log.info("sms: %s refused part %d: %s", sms.mask(number), index, failure.reason)
            raise failure

    async def _answer(
        self, link: _Link, pdu: Any, message: _Message, index: int, number: str
    ) -> tuple[int, str]:
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        link.pending[pdu.sequence] = _Pending(future, message, index)
        try:
            await asyncio.to_thread(link.send_pdu, pdu)
            async with asyncio.timeout(self.config.response_timeout_s):
                answer = await future
            if answer[0] == _LINK_LOST:
                raise SmppUnreachable("link lost before the answer")
            return answer
        except (exceptions.ConnectionError, exceptions.PDUError, OSError, SmppUnreachable) as exc:
            link.pending.pop(pdu.sequence, None)
            if self._link is link:
                self._lost(link, str(exc) or type(exc).__name__)
            raise SendFailure(
                FailureKind.transient, f"sms link lost sending to {sms.mask(number)}"
            ) from exc
        except TimeoutError as exc:
            link.pending.pop(pdu.sequence, None)
            raise SendFailure(FailureKind.transient, "no submit_sm_resp in time") from exc


def fit(text: str, encoding: sms.Encoding, tariff: sms.GatewayTariff, parts: int) -> sms.SmsPlan:
    """The plan of `text`, cut at a word end and marked "..." when it needs more than
    `parts` parts (at least one)."""
    plan = sms.plan(text, encoding, tariff)
    if plan.count <= parts:
        return plan
    single, part = tariff.limits(encoding)
    room = (single if parts <= 1 else part * parts) - 3
    prepared = sms.prepare(text, encoding)
    kept: list[str] = []
    used = 0
    for ch in prepared:
        used += sms.length(ch, encoding)
        if used > room:
            break
        kept.append(ch)
    cut = "".join(kept)
    cut = (cut.rsplit(" ", 1)[0] if " " in cut[room // 2 :] else cut).rstrip(" .,;:") + "..."
    return sms.plan(cut, encoding, tariff)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def _answer_deliver(link: _Link, sequence: int, status: int = consts.SMPP_ESME_ROK) -> None:
    response = smpp.make_pdu("deliver_sm_resp", client=link, status=status)
    response.sequence = sequence
    link.send_pdu(response)


_GSM7_DECODE = {i: ch for i, ch in enumerate(sms.GSM7_BASIC) if ch != "\x1b"}
_GSM7_EXTENSION_DECODE = {code: ch for ch, code in sms.GSM7_EXTENSION.items()}


def decode_mo(octets: bytes, data_coding: int) -> str:
    """A message's text by its data_coding: 0 the GSM default alphabet (one septet per
    octet, as gateways hand it over), 1 IA5 (ASCII), 3 Latin-1, 8 UCS-2 (UTF-16, surrogate
    pairs included); anything else is read as Latin-1. Never raises."""
    if data_coding == 0x08:
        return octets.decode("utf-16-be", "replace")
    if data_coding == 0x00:
        out: list[str] = []
        escaped = False
        for octet in octets:
            if escaped:
                out.append(_GSM7_EXTENSION_DECODE.get(octet, " "))
                escaped = False
            elif octet == 0x1B:
                escaped = True
            else:
                out.append(_GSM7_DECODE.get(octet & 0x7F, " "))
        return "".join(out)
    if data_coding == 0x01:
        return octets.decode("ascii", "replace")
    return octets.decode("latin-1")


def split_udh(payload: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(concatenation (reference, total, number) or None, the text's octets) of a short
    message that begins with a user data header; 8- and 16-bit references are read."""
    if not payload:
        return None, b""
    length = payload[0]
    header, rest = payload[1 : 1 + length], payload[1 + length :]
    concatenation = None
    at = 0
    while at + 2 <= len(header):
        element, size = header[at], header[at + 1]
        value = header[at + 2 : at + 2 + size]
        if element == 0x00 and size == 3 and len(value) == 3:
            concatenation = (value[0], value[1], value[2])
        elif element == 0x08 and size == 4 and len(value) == 4:
            concatenation = ((value[0] << 8) | value[1], value[2], value[3])
        at += 2 + size
    return concatenation, rest


_Concatenation = tuple[str, int, int]  # (source, reference, total)


@dataclass
class _Unanswered:
    """A message handed on whose deliver_sm_resp has not gone out as ESME_ROK yet."""

    key: str
    since: float
    joined: _Concatenation | None  # the parts it was joined from


class _Reassembly:
    """MO messages read off the link (listener thread): parts joined, keys handed out.

    Only the deliver_sm that completes a message waits for it to be kept (the other parts
    are answered at once), so when it is delivered again alone the message it completed
    is remembered, whole, until it is answered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Parts waiting for the rest: their first arrival, and the texts by part number.
        self._incomplete: OrderedDict[_Concatenation, tuple[float, dict[int, str]]] = OrderedDict()
        self._unanswered: OrderedDict[tuple[str, str], _Unanswered] = OrderedDict()
        self._by_key: dict[str, tuple[str, str]] = {}  # key -> (source, text)
        self._joined: dict[_Concatenation, str] = {}  # of unanswered messages
        self._serial = itertools.count(1)
        self._started = time.time_ns()

    def take(self, pdu: Any) -> MobileMessage | None:
        """The message a deliver_sm completes; None for a part that waits for others."""
        raw_source = _text(pdu.source_addr)
        try:
            source = sms.msisdn(raw_source)
        except ValueError:
            source = raw_source  # a short code or a foreign number: answered all the same
        payload: bytes = pdu.short_message or b""
        if not payload:
            payload = getattr(pdu, "message_payload", None) or b""
        concatenation = None
        if (pdu.esm_class or 0) & UDHI:
            concatenation, payload = split_udh(payload)
        elif getattr(pdu, "sar_total_segments", None):
            concatenation = (
                int(pdu.sar_msg_ref_num or 0),
                int(pdu.sar_total_segments),
                int(pdu.sar_segment_seqnum or 1),
            )
        text = decode_mo(payload, pdu.data_coding or 0)
        now = time.monotonic()
        joined: _Concatenation | None = None
        with self._lock:
            self._forget(now)
            if concatenation is not None and concatenation[1] > 1:
                reference, total, number = concatenation
                joined = (source, reference, total)
                whole = self._joined.get(joined)
                if whole is None:
                    whole = self._join(joined, number, text, now)
                    if whole is None:
                        return None
                text = whole
            return MobileMessage(source=source, text=text, key=self._key(source, text, now, joined))

    def _join(self, joined: _Concatenation, number: int, text: str, now: float) -> str | None:
        _, parts = self._incomplete.setdefault(joined, (now, {}))
        parts[number] = text
        total = joined[2]
        if len(parts) < total:
            return None
        del self._incomplete[joined]
        return "".join(parts.get(n, "") for n in range(1, total + 1))

    def _key(self, source: str, text: str, now: float, joined: _Concatenation | None) -> str:
        known = self._unanswered.get((source, text))
        if known is not None:
            return known.key
        # This process's start and a serial: unique (the same words texted again later
        # are a new message), and no trace of the number or the words.
        key = f"mo:{self._started:x}:{next(self._serial)}"
        self._unanswered[(source, text)] = _Unanswered(key, now, joined)
        self._by_key[key] = (source, text)
        if joined is not None:
            self._joined[joined] = text
        return key

    def _forget(self, now: float) -> None:
        """Drop parts that never completed and messages never answered, oldest first."""
        while self._incomplete:
            first, _ = next(iter(self._incomplete.values()))
            if now - first < MO_PARTS_WAIT_S and len(self._incomplete) < MO_INCOMPLETE_MAX:
                break
            self._incomplete.popitem(last=False)
        while self._unanswered:
            oldest = next(iter(self._unanswered.values()))
            recent = now - oldest.since < MO_UNANSWERED_KEEP_S
            if recent and len(self._unanswered) < MO_UNANSWERED_MAX:
                break
            _, record = self._unanswered.popitem(last=False)
            self._drop(record)

    def _drop(self, record: _Unanswered) -> None:
        self._by_key.pop(record.key, None)
        if record.joined is not None:
            self._joined.pop(record.joined, None)

    def answered(self, key: str) -> None:
        """The message was kept and its deliver_sm_resp written: the same words again are
        a new message."""
        with self._lock:
            content = self._by_key.get(key)
            record = self._unanswered.pop(content, None) if content is not None else None
            if record is not None:
                self._drop(record)
