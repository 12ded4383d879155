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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smpplib import client as smpp_client
from smpplib import consts, exceptions, smpp

from broadcasts import sms
from broadcasts.channels import FailureKind, Outbound, SendFailure
from db.models import DeliveryState

log = logging.getLogger(__name__)
# smpplib logs every PDU in hex at DEBUG, phone numbers and texts included, and warns on
# every disconnect we cause ourselves: its logger keeps to errors whatever the root level
# is (numbers are never logged in full; link losses are logged here, once).
WIRE_LOGGER = "bot.smpp.wire"
logging.getLogger(WIRE_LOGGER).setLevel(logging.ERROR)

PLATFORM = "sms"
UDHI = 0x40  # esm_class: the short message begins with a user data header
RECEIPT_ESM = 0x04  # esm_class of a deliver_sm that is a delivery receipt
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
    """

    platform = PLATFORM

    def __init__(
        self, config: SmppConfig, *, on_receipt: Callable[[Receipt], None] | None = None
    ) -> None:
        self.config = config
        single, part = config.tariff.limits(config.encoding)
        self.max_text = part * config.max_parts if config.max_parts > 1 else single
        self._on_receipt = on_receipt
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
            if (pdu.esm_class or 0) & RECEIPT_ESM:
                self._receipt(pdu)
            response = smpp.make_pdu("deliver_sm_resp", client=link)
            response.sequence = pdu.sequence
            link.send_pdu(response)
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

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send the text as one (concatenated) SMS; return the gateway's id of its first
        part ("" when there was nothing to send: SMS carries no media).

        A throttled first part is rate_limited (nothing went out); a throttled later
        part is retried in place for up to `part_retry_s`, since the earlier parts are
        already on their way and a retry of the whole would repeat them.
        """
        if not message.text.strip():
            return ""
        try:
            number = sms.msisdn(chat_id)
        except ValueError as exc:
            raise SendFailure(FailureKind.chat_not_found, str(exc)) from exc
        plan = self.plan(message.text)
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


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""
