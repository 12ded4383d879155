"""Shared machinery of the fake Bot API servers: HTTP plumbing, faults, rate windows and logs."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, Self, TypeVar

import aiohttp
from aiohttp import web

JSONDict = dict[str, Any]
ChatId = int | str
LatencySpec = float | Callable[[], float] | None
T = TypeVar("T")

#: Pass inside ``methods=`` of a fault to make it match every API method.
ALL_METHODS = "*"

# Uploads of voice bulletins can be several MB; the real Bot API accepts up to 50 MB.
_MAX_BODY_BYTES = 50 * 1024 * 1024
# Parameters whose form-encoded value is JSON; the logs show them decoded.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "allowed_updates",
        "link_preview_options",
        "reply_parameters",
        "text_styles",
    }
)
# Waiting long polls are woken on shutdown, so handlers finish well within this.
_SHUTDOWN_TIMEOUT = 2.0
_WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)


class ApiError(Exception):
    """An error answer of a fake API, rendered as ``{"ok": false, "error_code", "description"}``.

    ``http_200`` sends it with HTTP status 200 (the body still says ``ok: false``), the way
    the Zalo SDK is known to swallow errors.
    """

    def __init__(
        self,
        status: int,
        description: str,
        *,
        retry_after: int | None = None,
        http_200: bool = False,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.http_200 = http_200

    @property
    def http_status(self) -> int:
        return HTTPStatus.OK if self.http_200 else self.status

    def body(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class NoResult:
    """Handler return value for answers that carry no ``result`` (Zalo's sendChatAction)."""


NO_RESULT = NoResult()


@dataclass(frozen=True)
class UploadedFile:
    """One multipart file part of a request."""

    field_name: str
    filename: str | None
    content_type: str | None
    data: bytes


class Params:
    """Request parameters merged from the query string and a JSON, form or multipart body.

    Form and multipart values are strings (python-telegram-bot JSON-encodes non-strings),
    JSON bodies keep native types; the getters accept both.
    """

    def __init__(self, values: JSONDict, files: dict[str, UploadedFile]) -> None:
        self.values = values
        self.files = files

    def __contains__(self, name: str) -> bool:
        return name in self.values or name in self.files

    def get_str(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    def get_int(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(float(value)) if isinstance(value, float) else int(str(value).strip())
        except ValueError as exc:
            raise ApiError(400, f"Bad Request: invalid {name} specified") from exc

    def get_float(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, f"Bad Request: invalid {name} specified") from exc

    def get_bool(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in {"true", "1"}
        return bool(value)

    def get_json(self, name: str) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from exc

    def loggable(self) -> JSONDict:
        """The parameters with JSON strings decoded and file parts summarised."""
        out: JSONDict = {}
        for name, value in self.values.items():
            if name in _JSON_PARAMS and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            out[name] = value
        for name, upload in self.files.items():
            out[name] = {"upload": upload.filename, "size": len(upload.data)}
        return out


async def read_params(request: web.Request) -> Params:
    """Parse a Bot API request the way the real servers do: query, JSON, form or multipart."""
    values: JSONDict = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if not request.can_read_body:
        return Params(values, files)
    content_type = request.content_type
    if content_type == "application/json":
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ApiError(400, "Bad Request: can't parse JSON body") from exc
            if not isinstance(body, dict):
                raise ApiError(400, "Bad Request: JSON body must be an object")
            values.update(body)
    elif content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = UploadedFile(
                    name, value.filename, value.content_type, value.file.read()
                )
            elif isinstance(value, bytes | bytearray):
                values[name] = bytes(value).decode("utf-8", "replace")
            else:
                values[name] = value
    return Params(values, files)


@dataclass(frozen=True)
class FileInfo:
    """What the bot sent as a file: a fresh upload, a reused file_id, or a URL."""

    kind: str
    source: Literal["upload", "file_id", "url"]
    file_id: str
    file_unique_id: str | None = None
    size: int | None = None
    filename: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class SentRecord:
    """One accepted outgoing call of the bot (message, edit, callback answer, chat action)."""

    method: str
    chat_id: ChatId | None
    text: str | None
    reply_markup: JSONDict | None
    file: FileInfo | None
    message_id: int | str | None
    timestamp: float
    params: JSONDict = field(repr=False)


@dataclass(frozen=True)
class CallRecord:
    """One API call as answered, successful or not."""

    method: str
    chat_id: ChatId | None
    http_status: int
    ok: bool
    error_code: int | None
    description: str | None
    timestamp: float
    params: JSONDict = field(repr=False)


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of an update to the webhook; ``status`` is None when the receiver was down."""

    url: str
    update: JSONDict
    secret_token: str | None
    status: int | None
    error: str | None
    timestamp: float


@dataclass(frozen=True)
class Stats:
    """Counters of a fake; ``rate_limited`` counts the 429s made by the rate window."""

    calls: int
    accepted_sends: int
    responses_429: int
    rate_limited: int
    accepted_limited: int = 0  # accepted requests the rate limits count (sends and edits)


@dataclass
class _Fault:
    status: int
    description: str | None
    retry_after: int | None
    http_200: bool
    methods: frozenset[str] | None
    remaining: int | None
    chat_id: ChatId | None

    def matches(self, method: str, chat_id: ChatId | None, default: frozenset[str]) -> bool:
        if self.chat_id is not None and self.chat_id != chat_id:
            return False
        methods = default if self.methods is None else self.methods
        return ALL_METHODS in methods or method in methods


class RateWindow:
    """Sliding-window counter: at most ``limit`` events in any ``window`` seconds."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate window needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()

    def acquire(self, now: float) -> float | None:
        """Take one slot and return None, or return the seconds until a slot frees up."""
        while self._stamps and now - self._stamps[0] >= self.window:
            self._stamps.popleft()
        if len(self._stamps) < self.limit:
            self._stamps.append(now)
            return None
        return self._stamps[0] + self.window - now


def fixed_latency(seconds: float) -> Callable[[], float]:
    """Every call waits exactly ``seconds``."""
    return lambda: seconds


def lognormal_latency(
    median: float, sigma: float = 0.5, *, seed: int | None = None
) -> Callable[[], float]:
    """Latencies drawn from a log-normal distribution with the given median (long right tail)."""
    if median <= 0:
        raise ValueError("median latency must be positive")
    rng = random.Random(seed)
    mu = math.log(median)
    return lambda: rng.lognormvariate(mu, sigma)


def _as_latency(spec: LatencySpec) -> Callable[[], float] | None:
    if spec is None or callable(spec):
        return spec
    return fixed_latency(float(spec))


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeBotAPI:
    """Base of the fake Bot API servers: aiohttp app, faults, rate limits, update queue, logs.

    Every piece of state sits behind one lock so tests may read logs and inject user actions
    from any thread while the server runs in its own loop (see :meth:`running_in_thread`).
    """

    #: Message-producing methods: counted as sends, rate limited, default target of fail_next.
    SEND_METHODS: frozenset[str] = frozenset()
    #: Methods the platform counts against its rate limits (the sends, and edits).
    LIMITED_METHODS: frozenset[str] = frozenset()
    #: Methods that carry a chat_id: default target of fail_chat.
    CHAT_METHODS: frozenset[str] = frozenset()
    WEBHOOK_SECRET_HEADER: str = ""

    def __init__(
        self,
        *,
        token: str,
        port: int = 0,
        latency: LatencySpec = None,
        rate_limit_per_second: int | None = None,
        chat_rate_limit: int | None = None,
        chat_rate_window: float = 1.0,
    ) -> None:
        self.token = token
        self._lock = threading.RLock()
        self._port = port
        self._bound_port: int | None = None
        self._latency = _as_latency(latency)
        self._global_rate: RateWindow | None = None
        self._chat_rate_limit: int | None = None
        self._chat_rate_window = 1.0
        self._chat_rates: dict[ChatId, RateWindow] = {}
        self.set_rate_limits(
            rate_limit_per_second=rate_limit_per_second,
            chat_rate_limit=chat_rate_limit,
            chat_rate_window=chat_rate_window,
        )
        self._handlers: dict[str, Callable[[Params], Awaitable[Any]]] = {}
        self._faults: list[_Fault] = []
        self._sent: list[SentRecord] = []
        self._calls: list[CallRecord] = []
        self._deliveries: list[WebhookDelivery] = []
        self._accepted_sends = 0
        self._accepted_limited = 0
        self._responses_429 = 0
        self._rate_limited = 0
        # Updates nobody has fetched yet (getUpdates) and updates waiting to be POSTed.
        self._pending: list[JSONDict] = []
        self._outbox: deque[tuple[str, str | None, JSONDict]] = deque()
        self._webhook_url: str | None = None
        self._webhook_secret: str | None = None
        # POSTs of updates in flight at once: 1 unless the platform lets a webhook say more
        # (Telegram's setWebhook max_connections, 40 by default).
        self._webhook_connections = 1
        # Loop-side objects, created by start() inside the serving loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._outbox_event: asyncio.Event | None = None
        self._poll_waiters: set[asyncio.Future[None]] = set()
        self._closing = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, the root the Bot API paths hang from."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve on 127.0.0.1; a restart reuses the previous port so clients keep their URL."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._add_routes(app)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._bound_port or self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession(timeout=_WEBHOOK_TIMEOUT)
        self._outbox_event = asyncio.Event()
        self._delivery_task = asyncio.create_task(self._deliver_forever())
        with self._lock:
            if self._outbox:
                self._outbox_event.set()

    async def stop(self) -> None:
        self._closing = True
        self._wake_pollers()
        if self._delivery_task is not None:
            self._delivery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivery_task
            self._delivery_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self, *, startup_timeout: float = 10.0) -> Iterator[Self]:
        """Serve from a daemon thread with its own loop, for tests that are not async or
        that drive a service living in another process."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
        thread.start()
        if not started.wait(startup_timeout):
            raise TimeoutError(f"{type(self).__name__} did not start in {startup_timeout}s")
        if failure:
            raise failure[0]
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(startup_timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(startup_timeout)

    # ------------------------------------------------------------ configuration

    def set_latency(self, latency: LatencySpec) -> None:
        """Seconds every call waits before it is answered: a number, a sampler, or None."""
        with self._lock:
            self._latency = _as_latency(latency)

    def set_rate_limits(
        self,
        *,
        rate_limit_per_second: int | None = None,
        chat_rate_limit: int | None = None,
        chat_rate_window: float = 1.0,
    ) -> None:
        """Enforce at most N sends per second overall and/or per chat (429 beyond that)."""
        with self._lock:
            self._global_rate = RateWindow(rate_limit_per_second) if rate_limit_per_second else None
            self._chat_rate_limit = chat_rate_limit
            self._chat_rate_window = chat_rate_window
            self._chat_rates = {}

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        methods: Collection[str] | None = None,
        http_200: bool = False,
    ) -> None:
        """Answer the next ``count`` matching calls with an error.

        ``methods`` defaults to the message-sending methods; pass ``{ALL_METHODS}`` or names
        such as ``{"getUpdates"}`` to hit others.
        """
        self._add_fault(status, description, retry_after, http_200, methods, count, None)

    def fail_chat(
        self,
        chat_id: ChatId,
        *,
        status: int = 403,
        description: str | None = None,
        retry_after: int | None = None,
        times: int | None = None,
        methods: Collection[str] | None = None,
        http_200: bool = False,
    ) -> None:
        """Answer calls for ``chat_id`` with an error, ``times`` times or until cleared."""
        self._add_fault(
            status,
            description,
            retry_after,
            http_200,
            methods,
            times,
            self.normalize_chat_id(chat_id),
        )

    def clear_faults(self, chat_id: ChatId | None = None) -> None:
        """Drop every fault, or only those of one chat."""
        with self._lock:
            if chat_id is None:
                self._faults.clear()
            else:
                key = self.normalize_chat_id(chat_id)
                self._faults = [f for f in self._faults if f.chat_id != key]

    def _add_fault(
        self,
        status: int,
        description: str | None,
        retry_after: int | None,
        http_200: bool,
        methods: Collection[str] | None,
        remaining: int | None,
        chat_id: ChatId | None,
    ) -> None:
        if status == HTTPStatus.TOO_MANY_REQUESTS and retry_after is None:
            # A 429 without retry_after is not something the real APIs send.
            retry_after = 1
        fault = _Fault(
            status=status,
            description=description,
            retry_after=retry_after,
            http_200=http_200,
            methods=None if methods is None else frozenset(methods),
            remaining=remaining,
            chat_id=chat_id,
        )
        with self._lock:
            self._faults.append(fault)

    # ------------------------------------------------------------------- reading

    @property
    def sent(self) -> list[SentRecord]:
        """Every accepted outgoing call, oldest first."""
        with self._lock:
            return list(self._sent)

    def sent_to(
        self, chat_id: ChatId, *, methods: Collection[str] | None = None
    ) -> list[SentRecord]:
        """Accepted records for one chat; by default only messages (no actions or edits)."""
        key = self.normalize_chat_id(chat_id)
        wanted = self.SEND_METHODS if methods is None else frozenset(methods)
        with self._lock:
            return [r for r in self._sent if r.chat_id == key and r.method in wanted]

    @property
    def calls(self) -> list[CallRecord]:
        """Every answered API call, including errors."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[CallRecord]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def webhook_url(self) -> str | None:
        with self._lock:
            return self._webhook_url

    @property
    def webhook_secret(self) -> str | None:
        """The secret the bot gave with its webhook (sent back with each update)."""
        with self._lock:
            return self._webhook_secret

    @property
    def pending_update_count(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._outbox)

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                calls=len(self._calls),
                accepted_sends=self._accepted_sends,
                accepted_limited=self._accepted_limited,
                responses_429=self._responses_429,
                rate_limited=self._rate_limited,
            )

    def clear_log(self) -> None:
        """Forget sent records, calls, deliveries and counters (not chats, files or faults)."""
        with self._lock:
            self._sent.clear()
            self._calls.clear()
            self._deliveries.clear()
            self._accepted_sends = self._responses_429 = self._rate_limited = 0
            self._accepted_limited = 0

    async def wait_sent(
        self,
        count: int = 1,
        *,
        chat_id: ChatId | None = None,
        methods: Collection[str] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - same signature as the blocking twin
    ) -> list[SentRecord]:
        """Wait (in the caller's loop) until at least ``count`` matching records exist."""
        probe = self._sent_probe(count, chat_id, methods)
        return await _poll_async(probe, timeout, f"{count} sent message(s)")

    def wait_sent_blocking(
        self,
        count: int = 1,
        *,
        chat_id: ChatId | None = None,
        methods: Collection[str] | None = None,
        timeout: float = 5.0,
    ) -> list[SentRecord]:
        """Like :meth:`wait_sent` for synchronous tests (server in a thread)."""
        probe = self._sent_probe(count, chat_id, methods)
        return _poll_blocking(probe, timeout, f"{count} sent message(s)")

    async def wait_deliveries(
        self,
        count: int = 1,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - same signature as the blocking twin
    ) -> list[WebhookDelivery]:
        """Wait (in the caller's loop) until at least ``count`` webhook POSTs were made."""
        return await _poll_async(self._delivery_probe(count), timeout, f"{count} delivery(ies)")

    def wait_deliveries_blocking(
        self, count: int = 1, *, timeout: float = 5.0
    ) -> list[WebhookDelivery]:
        return _poll_blocking(self._delivery_probe(count), timeout, f"{count} delivery(ies)")

    def _sent_probe(
        self, count: int, chat_id: ChatId | None, methods: Collection[str] | None
    ) -> Callable[[], list[SentRecord] | None]:
        wanted = self.SEND_METHODS if methods is None else frozenset(methods)
        key = None if chat_id is None else self.normalize_chat_id(chat_id)

        def probe() -> list[SentRecord] | None:
            with self._lock:
                found = [
                    r
                    for r in self._sent
                    if r.method in wanted and (key is None or r.chat_id == key)
                ]
            return found if len(found) >= count else None

        return probe

    def _delivery_probe(self, count: int) -> Callable[[], list[WebhookDelivery] | None]:
        def probe() -> list[WebhookDelivery] | None:
            found = self.webhook_deliveries
            return found if len(found) >= count else None

        return probe

    # -------------------------------------------------------- platform hooks

    def normalize_chat_id(self, chat_id: ChatId) -> ChatId:
        """The form chat ids take in records, so ``sent_to`` matches however tests spell it."""
        return chat_id

    def _chat_id_of(self, params: Params) -> ChatId | None:
        raw = params.get_str("chat_id")
        return None if raw is None else self.normalize_chat_id(raw)

    def _default_description(self, status: int, retry_after: int | None) -> str:
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return "Error"

    def _unauthorized(self) -> ApiError:
        return ApiError(401, "Unauthorized")

    def _unknown_method(self, method: str) -> ApiError:
        return ApiError(404, "Not Found")

    def _add_routes(self, app: web.Application) -> None:
        """Extra routes of a platform (Telegram serves file downloads)."""

    def _webhook_body(self, update: JSONDict) -> JSONDict:
        return update

    def _after_delivery(self, delivery: WebhookDelivery) -> None:
        """Hook for platforms that report delivery errors (Telegram's getWebhookInfo)."""

    # ------------------------------------------------------------- dispatching

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = Params({}, {})
        chat_id: ChatId | None = None
        try:
            params = await read_params(request)
            chat_id = self._chat_id_of(params)
            # The platform counts a request against its rate limits when it arrives; the
            # latency is the time to answer. Counting after a jittery latency would let
            # no client, however well paced, stay under a strict window.
            rate_error: ApiError | None = None
            if method in self.LIMITED_METHODS and request.match_info["token"] == self.token:
                try:
                    self._apply_rate_limits(chat_id)
                except ApiError as err:
                    rate_error = err
            with self._lock:
                sample = self._latency
            delay = sample() if sample is not None else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            if request.match_info["token"] != self.token:
                raise self._unauthorized()
            handler = self._handlers.get(method)
            if handler is None:
                raise self._unknown_method(method)
            self._apply_faults(method, chat_id)
            if rate_error is not None:
                raise rate_error
            result = await handler(params)
        except ApiError as err:
            self._record_call(method, chat_id, params, err.http_status, err)
            return web.json_response(err.body(), status=err.http_status, dumps=_dumps)
        self._record_call(method, chat_id, params, HTTPStatus.OK, None)
        body: JSONDict = {"ok": True}
        if not isinstance(result, NoResult):
            body["result"] = result
        return web.json_response(body, dumps=_dumps)

    def _apply_faults(self, method: str, chat_id: ChatId | None) -> None:
        with self._lock:
            for fault in self._faults:
                default = self.SEND_METHODS if fault.chat_id is None else self.CHAT_METHODS
                if not fault.matches(method, chat_id, default):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                description = fault.description or self._default_description(
                    fault.status, fault.retry_after
                )
                raise ApiError(
                    fault.status,
                    description,
                    retry_after=fault.retry_after,
                    http_200=fault.http_200,
                )

    def _apply_rate_limits(self, chat_id: ChatId | None) -> None:
        now = time.monotonic()
        with self._lock:
            waits = []
            if self._global_rate is not None:
                waits.append(self._global_rate.acquire(now))
            if self._chat_rate_limit and chat_id is not None:
                window = self._chat_rates.get(chat_id)
                if window is None:
                    window = RateWindow(self._chat_rate_limit, self._chat_rate_window)
                    self._chat_rates[chat_id] = window
                waits.append(window.acquire(now))
            blocked = [w for w in waits if w is not None]
            if not blocked:
                return
            # The slot taken in the other window stays taken: a real server counts the
            # attempt too, and it errs towards being stricter than the real limits.
            self._rate_limited += 1
            retry_after = max(1, math.ceil(max(blocked)))
        raise ApiError(
            429,
            self._default_description(429, retry_after),
            retry_after=retry_after,
        )

    def _record_call(
        self,
        method: str,
        chat_id: ChatId | None,
        params: Params,
        http_status: int,
        error: ApiError | None,
    ) -> None:
        record = CallRecord(
            method=method,
            chat_id=chat_id,
            http_status=http_status,
            ok=error is None,
            error_code=None if error is None else error.status,
            description=None if error is None else error.description,
            timestamp=time.time(),
            params=params.loggable(),
        )
        with self._lock:
            self._calls.append(record)
            if error is None and method in self.SEND_METHODS:
                self._accepted_sends += 1
            if error is None and method in self.LIMITED_METHODS:
                self._accepted_limited += 1
            if error is not None and error.status == HTTPStatus.TOO_MANY_REQUESTS:
                self._responses_429 += 1

    def _record_sent(
        self,
        method: str,
        params: Params,
        *,
        chat_id: ChatId | None,
        text: str | None = None,
        reply_markup: JSONDict | None = None,
        file: FileInfo | None = None,
        message_id: int | str | None = None,
    ) -> None:
        record = SentRecord(
            method=method,
            chat_id=chat_id,
            text=text,
            reply_markup=copy.deepcopy(reply_markup),
            file=file,
            message_id=message_id,
            timestamp=time.time(),
            params=params.loggable(),
        )
        with self._lock:
            self._sent.append(record)

    # ------------------------------------------------------- updates and polling

    def _enqueue_update(self, update: JSONDict) -> None:
        """Queue an incoming update for getUpdates, or for the webhook when one is set."""
        with self._lock:
            if self._webhook_url is not None:
                self._outbox.append((self._webhook_url, self._webhook_secret, update))
                self._call_in_loop(self._wake_outbox)
            else:
                self._pending.append(update)
                self._call_in_loop(self._wake_pollers)

    def _set_webhook(self, url: str, secret: str | None, *, drop_pending: bool) -> None:
        with self._lock:
            self._webhook_url = url
            self._webhook_secret = secret
            pending, self._pending = self._pending, []
            if not drop_pending:
                # Updates nobody fetched yet go to the new webhook, as on the real APIs.
                self._outbox.extend((url, secret, update) for update in pending)
                self._call_in_loop(self._wake_outbox)
        # Wake long polls so they notice the webhook and answer with a conflict.
        self._call_in_loop(self._wake_pollers)

    def _delete_webhook(self, *, drop_pending: bool) -> None:
        with self._lock:
            self._webhook_url = None
            self._webhook_secret = None
            if drop_pending:
                self._pending.clear()
                self._outbox.clear()

    async def _wait_for(self, probe: Callable[[], T | None], poll_seconds: float) -> T | None:
        """Re-run ``probe`` whenever updates arrive, until it gives a value or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + poll_seconds
        while True:
            # Register before probing so a wake-up between probe and await is not lost.
            waiter: asyncio.Future[None] = loop.create_future()
            self._poll_waiters.add(waiter)
            try:
                found = probe()
                remaining = deadline - loop.time()
                if found is not None or self._closing or remaining <= 0:
                    return found
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter
            finally:
                self._poll_waiters.discard(waiter)

    def _wake_pollers(self) -> None:
        for waiter in list(self._poll_waiters):
            if not waiter.done():
                waiter.set_result(None)

    def _wake_outbox(self) -> None:
        if self._outbox_event is not None:
            self._outbox_event.set()

    def _call_in_loop(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback)

    async def _deliver_forever(self) -> None:
        """POST queued updates, up to ``_webhook_connections`` at once (Telegram's
        max_connections), a chat's updates one after another and in order: an update
        waits while an earlier one of its chat is still being delivered."""
        assert self._outbox_event is not None
        in_flight: set[asyncio.Task[None]] = set()
        busy: set[str] = set()

        def done(chat: str | None, task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if chat is not None:
                busy.discard(chat)
            self._wake_outbox()

        try:
            while True:
                self._outbox_event.clear()
                with self._lock:
                    index = 0
                    while len(in_flight) < self._webhook_connections and index < len(self._outbox):
                        url, secret, update = self._outbox[index]
                        chat = self._update_chat(update)
                        if chat is not None and chat in busy:
                            index += 1
                            continue
                        del self._outbox[index]
                        if chat is not None:
                            busy.add(chat)
                        task = asyncio.create_task(self._deliver(url, secret, update))
                        in_flight.add(task)
                        task.add_done_callback(functools.partial(done, chat))
                await self._outbox_event.wait()
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _update_chat(self, update: JSONDict) -> str | None:
        """The chat an update belongs to (its deliveries keep their order); None: any."""
        for key in ("message", "edited_message", "callback_query"):
            part = update.get(key)
            if isinstance(part, dict):
                if key == "callback_query":
                    part = part.get("message") or {}
                chat = part.get("chat") if isinstance(part, dict) else None
                if isinstance(chat, dict) and "id" in chat:
                    return str(chat["id"])
        return None

    async def _deliver(self, url: str, secret: str | None, update: JSONDict) -> None:
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[self.WEBHOOK_SECRET_HEADER] = secret
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                url, data=_dumps(self._webhook_body(update)), headers=headers
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = WebhookDelivery(
            url=url,
            update=update,
            secret_token=secret,
            status=status,
            error=error,
            timestamp=time.time(),
        )
        with self._lock:
            self._deliveries.append(delivery)
        self._after_delivery(delivery)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def snapshot(value: T) -> T:
    """A deep copy, so callers never share mutable state with the server thread."""
    return copy.deepcopy(value)


async def _poll_async(probe: Callable[[], T | None], seconds: float, what: str) -> T:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.01)


def _poll_blocking(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
