"""An aiohttp transport for python-telegram-bot, cheap enough per request for paid broadcasts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from broadcasts.pacing import request_written

_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded"}
_JSON: Final = {"Content-Type": "application/json"}
# (connect, read, write, pool) -> aiohttp's timeout; a handful of combinations ever occur.
_TimeoutKey = tuple[float | None, float | None, float | None, float | None]


# RequestData is @final for type checkers only; BaseRequest.post hands it untouched to our
# do_request, which is the only reader of this subclass.
class _JsonBody(RequestData):  # type: ignore[misc]
    """A request whose body is ready-made JSON (see AiohttpRequest.call)."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self._body = body

    @property
    def json_payload(self) -> bytes:
        return self._body


async def _written(*_: object) -> None:
    request_written()


class AiohttpRequest(BaseRequest):
    """`telegram.request.BaseRequest` over one `aiohttp.ClientSession`.

    PTB's default `HTTPXRequest` spends about 1 ms of CPU per request inside httpx; this
    class spends well under half of that, which is what lets one sender reach Telegram's
    paid-broadcast rate (1000 msg/s) on two cores. Requests are sent like HTTPXRequest
    sends them: form-encoded parameters, multipart when files are uploaded.

    Timeouts (seconds, None for no limit) keep PTB's meaning where aiohttp has one:
    `connect_timeout` bounds the TCP connect, `pool_timeout` the wait for a free connection
    (aiohttp's `connect` covers both, so it gets their sum), `read_timeout` each read.
    aiohttp has no write timeout; the whole request is instead bounded by the sum of all
    four (with `media_write_timeout` as the write part of uploads). Any timeout raises
    `telegram.error.TimedOut`; any other client error `telegram.error.NetworkError`.
    No proxy support: the service talks to api.telegram.org or a self-hosted Bot API.

    `call()` is a lean path for the sender's hot loop: a method with JSON parameters whose
    raw result is returned, without PTB building objects from it.
    """

    __slots__ = (
        "_connect_timeout",
        "_media_write_timeout",
        "_pool_size",
        "_pool_timeout",
        "_read_timeout",
        "_session",
        "_timeouts",
        "_write_timeout",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[_TimeoutKey, aiohttp.ClientTimeout] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    @property
    def connection_pool_size(self) -> int:
        return self._pool_size

    async def initialize(self) -> None:
        """Open the session (inside the running loop, as aiohttp requires)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0)
            # Tell the pacer when a request actually left: a send that first had to open a
            # connection reaches the platform later than its slot, and must count from then;
            # an upload (a voice, a photo) counts from when its last chunk went, since the
            # platform may count it only once the body has arrived.
            tracing = aiohttp.TraceConfig()
            tracing.on_request_headers_sent.append(_written)
            tracing.on_request_chunk_sent.append(_written)
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[tracing],
                headers={"User-Agent": self.USER_AGENT},
                trust_env=False,  # no proxies from the environment
            )

    async def shutdown(self) -> None:
        """Close the session and its connections; safe to call twice."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _timeout(
        self,
        read: ODVInput[float],
        write: ODVInput[float],
        connect: ODVInput[float],
        pool: ODVInput[float],
        *,
        upload: bool,
    ) -> aiohttp.ClientTimeout:
        default_write = self._media_write_timeout if upload else self._write_timeout
        key: _TimeoutKey = (
            self._connect_timeout if isinstance(connect, DefaultValue) else connect,
            self._read_timeout if isinstance(read, DefaultValue) else read,
            default_write if isinstance(write, DefaultValue) else write,
            self._pool_timeout if isinstance(pool, DefaultValue) else pool,
        )
        cached = self._timeouts.get(key)
        if cached is None:
            connect_s, read_s, _, pool_s = key
            waits = [s for s in key if s is not None]
            cached = aiohttp.ClientTimeout(
                total=sum(waits) if len(waits) == len(key) else None,
                connect=None if connect_s is None or pool_s is None else connect_s + pool_s,
                sock_connect=connect_s,
                sock_read=read_s,
            )
            self._timeouts[key] = cached
        return cached

    async def call(self, url: str, parameters: Mapping[str, object]) -> Any:
        """POST a Bot API method (`url`) with `parameters` as a JSON body (None values left
        out) and return the raw `result`; errors raise PTB's exceptions (RetryAfter,
        Forbidden, BadRequest, TimedOut, NetworkError ...) exactly as Bot methods do.

        Building a `telegram.Message` from sendMessage's answer costs about 0.25 ms of
        CPU, half the sender's budget per delivery, for a message id we read from a dict.
        """
        body = {name: value for name, value in parameters.items() if value is not None}
        payload = json.dumps(body, ensure_ascii=False).encode()
        return await self.post(url, _JsonBody(payload))

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        files = request_data.multipart_data if request_data is not None else None
        timeout = self._timeout(
            read_timeout, write_timeout, connect_timeout, pool_timeout, upload=bool(files)
        )
        data: aiohttp.FormData | bytes | str | None = None
        headers = None
        if isinstance(request_data, _JsonBody):
            data, headers = request_data.json_payload, _JSON
        elif request_data is not None:
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mime_type) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mime_type)
                data = form
            else:
                data, headers = request_data.url_encoded_parameters(), _FORM
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeout errors are TimeoutErrors too
            raise TimedOut(f"Timed out: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
