"""A fake SMSC speaking SMPP 3.4 over TCP on 127.0.0.1, for the SMS gateway's tests.

Threads, one per connection, and smpplib's own PDU classes to read and write the wire
format (the client under test uses the same library, but only its PDU layer is shared:
the fake decodes GSM-7 with smpplib's table, not with ours). It does what a carrier's
brandname gateway does to a client: checks the login, answers enquire_link, throttles
submit_sm beyond its throughput with ESME_RTHROTTLED, refuses unknown numbers, sends a
delivery receipt after each accepted part, reassembles concatenated parts by their UDH,
and can drop a connection on purpose (before answering a chosen submit_sm). A "phone" can
text the brandname (`phone_sends`: a deliver_sm, concatenated with a UDH when asked,
delivered again when the client answers it with an error), and `storm` throttles most
submits for a while, whatever the throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Self

from smpplib import consts, gsm, smpp
from smpplib.command import Command

from bot.smpp import SmppGateway
from broadcasts.channels import FailureKind, Outbound, SendFailure

UDHI = 0x40
DELIVERY_RECEIPT = 0x04  # esm_class of a deliver_sm that is a receipt
MESSAGE_STATE = {"DELIVRD": 2, "EXPIRED": 3, "UNDELIV": 5, "REJECTD": 8}


class _Sequences:
    """What smpplib's PDU classes ask their client for: the next sequence number."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.sequence = 0

    def next_sequence(self) -> int:
        with self._lock:
            self.sequence = next(self._numbers)
            return self.sequence


def decode_gsm7(octets: bytes) -> str:
    """Unpacked GSM-7 (one septet per octet, 0x1B escaping the extension table)."""
    out: list[str] = []
    escaped = False
    for octet in octets:
        if escaped:
            out.append(gsm.GSM_CHARACTER_TABLE[0x80 + octet])
            escaped = False
        elif octet == 0x1B:
            escaped = True
        else:
            out.append(gsm.GSM_CHARACTER_TABLE[octet])
    return "".join(out)


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM-7 as a phone's SMSC hands an MO over: smpplib's table holds the
    extension table from 0x80, which goes out as the escape 0x1B and its code."""
    out = bytearray()
    for ch in text:
        index = gsm.GSM_CHARACTER_TABLE.index(ch)
        out += bytes((0x1B, index - 0x80)) if index >= 0x80 else bytes((index,))
    return bytes(out)


@dataclass(frozen=True)
class Submit:
    """One accepted submit_sm, as the fake read it."""

    message_id: str
    source_addr: str
    source_addr_ton: int
    destination: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    udh: tuple[int, int, int] | None  # (reference, parts, this part's number)
    text: str
    octets: int  # short_message length, UDH included


@dataclass
class FakeSmsc:
    """Start with `with FakeSmsc(...) as smsc:`; `smsc.port` is where it listens."""

    system_id: str = "haidang"
    password: str = "secret"
    throughput: float | None = None  # submit_sm per second before ESME_RTHROTTLED
    undeliverable: set[str] = field(default_factory=set)  # receipts say UNDELIV
    invalid: set[str] = field(default_factory=set)  # submit_sm answered ESME_RINVDSTADR
    drop_at: set[int] = field(default_factory=set)  # drop the link on these submit_sm (1-based)
    port: int = 0
    submits: list[Submit] = field(default_factory=list)
    throttled: int = 0
    binds: int = 0
    dropped: int = 0
    unreceipted: int = 0  # receipts not sent: the link was gone
    mo_answers: list[int] = field(default_factory=list)  # deliver_sm_resp statuses of MOs
    mo_redeliveries: int = 0
    redeliver_s: float = 0.3  # an MO answered with an error is delivered again after this

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(0x1000)
        self._seen = 0  # submit_sm read, throttled or not
        self._window: deque[float] = deque()
        self._links: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        # Bound links, for MO messages: how to write to each and its sequence numbers.
        self._bound: list[tuple[Any, _Sequences]] = []
        self._mo: dict[int, tuple[Any, _Sequences, dict[str, Any]]] = {}  # by sequence
        self._storm_until = 0.0
        self._storm_every = 1  # in a storm, one submit in this many goes through
        self._mo_references = itertools.count(1)

    # -- lifecycle

    def __enter__(self) -> Self:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        self._spawn(self._accept, server)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            with_shutdown(self._server)
        for link in list(self._links):
            with_shutdown(link)
        for thread in self._threads:
            thread.join(timeout=2)

    def drop_all(self) -> None:
        """Cut every client's connection now (what a carrier's restart looks like)."""
        for link in list(self._links):
            self.dropped += 1
            with_shutdown(link)

    def storm(self, seconds: float, *, let_through_one_in: int = 5) -> None:
        """From now for `seconds`, answer ESME_RTHROTTLED to all submit_sm but one in
        `let_through_one_in` (a carrier's congestion, whatever the contract says)."""
        self._storm_every = let_through_one_in
        self._storm_until = time.monotonic() + seconds

    def phone_sends(
        self, number: str, text: str, *, ucs2: bool = False, split: int | None = None,
        to: str = "HAIDANG",
    ) -> None:  # fmt: skip
        """A phone texts `to`: a deliver_sm (MO) on the first bound link; with `split`,
        as concatenated parts of at most that many characters, each with an 8-bit UDH."""
        if not self._bound:
            raise AssertionError("no client is bound to receive the message")
        send, sequences = self._bound[0]
        chunks = (
            [text] if split is None else [text[i : i + split] for i in range(0, len(text), split)]
        )
        reference = next(self._mo_references) % 256
        for number_of_part, chunk in enumerate(chunks, start=1):
            octets = chunk.encode("utf-16-be") if ucs2 else encode_gsm7(chunk)
            esm_class = 0
            if len(chunks) > 1:
                octets = bytes((5, 0, 3, reference, len(chunks), number_of_part)) + octets
                esm_class = UDHI
            params = {
                "source_addr_ton": consts.SMPP_TON_INTL, "source_addr": number,
                "dest_addr_ton": consts.SMPP_TON_ALNUM, "destination_addr": to,
                "esm_class": esm_class, "data_coding": 8 if ucs2 else 0,
                "short_message": octets,
            }  # fmt: skip
            self._deliver_mo(send, sequences, params)

    def _deliver_mo(self, send: Any, sequences: _Sequences, params: dict[str, Any]) -> None:
        pdu = smpp.make_pdu("deliver_sm", client=sequences, **params)
        with self._lock:
            self._mo[pdu.sequence] = (send, sequences, params)
        send(pdu)

    def _mo_answered(self, request: Any) -> None:
        with self._lock:
            sent = self._mo.pop(request.sequence, None)
            if sent is None:
                return  # the answer to a receipt
            self.mo_answers.append(int(request.status))
        if request.status == consts.SMPP_ESME_ROK:
            return
        self.mo_redeliveries += 1

        def again() -> None:
            time.sleep(self.redeliver_s)
            with contextlib.suppress(OSError):
                self._deliver_mo(*sent)

        self._spawn(again)

    # -- what the tests read

    def texts_to(self, number: str) -> list[str]:
        """The complete messages sent to `number` (84xxxxxxxxx), in order."""
        return [text for destination, text in self.messages() if destination == number]

    def messages(self) -> list[tuple[str, str]]:
        """(destination, text) of every complete message, concatenated parts joined by
        their UDH reference; in the order their last part came."""
        done: list[tuple[str, str]] = []
        partial: dict[tuple[str, int, int], dict[int, str]] = {}
        for submit in self.submits:
            if submit.udh is None:
                done.append((submit.destination, submit.text))
                continue
            reference, total, number = submit.udh
            key = (submit.destination, reference, total)
            parts = partial.setdefault(key, {})
            parts[number] = submit.text
            if len(parts) == total:
                del partial[key]
                done.append((submit.destination, "".join(parts[n] for n in range(1, total + 1))))
        return done

    # -- serving

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fake-smsc")
        self._threads.append(thread)
        thread.start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                link, _ = server.accept()
            except OSError:
                return
            self._links.add(link)
            self._spawn(self._serve, link)

    def _serve(self, link: socket.socket) -> None:
        sequences = _Sequences()
        write = threading.Lock()
        bound = False

        def send(pdu: Command) -> None:
            with write:
                link.sendall(pdu.generate())

        def answer(request: Command, name: str, status: int = 0, **params: Any) -> None:
            response = smpp.make_pdu(name, client=sequences, status=status, **params)
            response.sequence = request.sequence
            send(response)

        try:
            while True:
                request = read_pdu(link, sequences)
                if request is None:
                    return
                if request.command == "bind_transceiver":
                    status = self._login(request)
                    bound = status == consts.SMPP_ESME_ROK
                    answer(request, "bind_transceiver_resp", status, system_id="FAKESMSC")
                    if bound:
                        self._bound.append((send, sequences))
                elif not bound:
                    answer(request, "generic_nack", consts.SMPP_ESME_RINVBNDSTS)
                elif request.command == "enquire_link":
                    answer(request, "enquire_link_resp")
                elif request.command == "unbind":
                    answer(request, "unbind_resp")
                    return
                elif request.command == "submit_sm":
                    if not self._submit(request, answer, send, sequences):
                        return
                elif request.command == "deliver_sm_resp":
                    self._mo_answered(request)
                elif request.command == "enquire_link_resp":
                    pass
                else:
                    answer(request, "generic_nack", consts.SMPP_ESME_RINVCMDID)
        except OSError:
            return
        finally:
            self._links.discard(link)
            self._bound = [b for b in self._bound if b[0] is not send]
            link.close()

    def _login(self, request: Any) -> int:
        if _text(request.system_id) != self.system_id:
            return int(consts.SMPP_ESME_RINVSYSID)
        if _text(request.password) != self.password:
            return int(consts.SMPP_ESME_RINVPASWD)
        with self._lock:
            self.binds += 1
        return int(consts.SMPP_ESME_ROK)

    def _submit(self, request: Any, answer: Any, send: Any, sequences: _Sequences) -> bool:
        """Answer one submit_sm; False when the link is to be dropped instead."""
        destination = _text(request.destination_addr)
        with self._lock:
            self._seen += 1
            if self._seen in self.drop_at:
                self.dropped += 1
                # Accepted but never answered: the client cannot know it went out.
                self._accept_submit(request, destination)
                return False
            now = time.monotonic()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            storming = now < self._storm_until and self._seen % self._storm_every != 0
            if storming or (self.throughput is not None and len(self._window) >= self.throughput):
                self.throttled += 1
                answer(request, "submit_sm_resp", consts.SMPP_ESME_RTHROTTLED)
                return True
            if destination in self.invalid:
                answer(request, "submit_sm_resp", consts.SMPP_ESME_RINVDSTADR)
                return True
            self._window.append(now)
            submit = self._accept_submit(request, destination)
        answer(request, "submit_sm_resp", message_id=submit.message_id)
        if request.registered_delivery:
            stat = "UNDELIV" if destination in self.undeliverable else "DELIVRD"
            receipt = smpp.make_pdu(
                "deliver_sm",
                client=sequences,
                source_addr_ton=consts.SMPP_TON_INTL,
                source_addr=destination,
                dest_addr_ton=submit.source_addr_ton,
                destination_addr=submit.source_addr,
                esm_class=DELIVERY_RECEIPT,
                short_message=(
                    f"id:{submit.message_id} sub:001 dlvrd:{int(stat == 'DELIVRD'):03d}"
                    f" submit date:2612071200 done date:2612071200 stat:{stat} err:000 text:"
                ).encode("ascii"),
                receipted_message_id=submit.message_id,
                message_state=MESSAGE_STATE[stat],
            )
            try:
                send(receipt)
            except OSError:
                self.unreceipted += 1
        return True

    def _accept_submit(self, request: Any, destination: str) -> Submit:
        payload: bytes = request.short_message or b""
        udh = None
        if request.esm_class & UDHI:
            header_length = payload[0]
            header, payload = payload[1 : 1 + header_length], payload[1 + header_length :]
            # 00 03 ref total seq: the 8-bit concatenation element (the only one we send).
            if header[:2] == b"\x00\x03":
                udh = (header[2], header[3], header[4])
        text = payload.decode("utf-16-be") if request.data_coding == 8 else decode_gsm7(payload)
        submit = Submit(
            message_id=f"{next(self._ids):x}",
            source_addr=_text(request.source_addr),
            source_addr_ton=request.source_addr_ton or 0,
            destination=destination,
            data_coding=request.data_coding or 0,
            esm_class=request.esm_class or 0,
            registered_delivery=request.registered_delivery or 0,
            udh=udh,
            text=text,
            octets=len(request.short_message or b""),
        )
        self.submits.append(submit)
        return submit


def read_pdu(link: socket.socket, sequences: _Sequences) -> Any:
    """The next PDU from the link, parsed by smpplib; None when the peer closed it."""
    head = _exactly(link, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">L", head)
    body = _exactly(link, length - 4)
    if body is None:
        return None
    return smpp.parse_pdu(head + body, client=sequences, allow_unknown_opt_params=True)


def _exactly(link: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = link.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def with_shutdown(sock: socket.socket) -> None:
    """Close a socket so that a thread blocked reading it wakes up (close alone may not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


async def deliver(gateway: SmppGateway, chat_id: str, text: str, seen: Counter[str]) -> str:
    """Send as the sender does: wait out rate limits, retry what is transient (the tests'
    and bench.smpp's client of the gateway)."""
    for _ in range(500):
        try:
            return await gateway.send(chat_id, Outbound(text=text))
        except SendFailure as failure:
            seen[failure.kind.value] += 1
            if failure.kind is FailureKind.rate_limited:
                await asyncio.sleep(failure.retry_after)
            elif failure.kind is FailureKind.transient:
                await asyncio.sleep(0.05)
            else:
                raise
    raise AssertionError("never accepted")
