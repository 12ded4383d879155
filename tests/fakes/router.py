"""One Bot API address for several fake bots: requests are forwarded by their token.

The service calls every bot of a platform at one API base URL (api.telegram.org, Zalo's
bot API), the token in the path telling the bots apart; each fake serves one token on its
own port. The router stands where the platform's address would be and forwards
`/bot<token>/…` and `/file/bot<token>/…` to the fake of that token, untouched (body,
content type, status), so each fake still enforces its own bot's limits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Self

import aiohttp
from aiohttp import web

_FORWARDED = ("Content-Type",)
_TIMEOUT = aiohttp.ClientTimeout(total=120)  # long polls last up to their own timeout


class TokenRouter:
    """Serves on 127.0.0.1 and forwards each request to `upstreams[token]` (a base URL)."""

    def __init__(self, upstreams: Mapping[str, str]) -> None:
        self._upstreams = dict(upstreams)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the router is not running")
        return f"http://127.0.0.1:{self._port}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        upstream = self._upstreams.get(request.match_info["token"])
        if upstream is None or self._session is None:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
        try:
            async with self._session.request(
                request.method, upstream + request.path_qs, data=await request.read(),
                headers=headers,
            ) as reply:  # fmt: skip
                body = await reply.read()
                status, kind = reply.status, reply.headers.get("Content-Type", "application/json")
        except (aiohttp.ClientError, TimeoutError):  # the fake stopped (end of a test): as a proxy
            return web.Response(status=502, text="Bad Gateway")
        return web.Response(body=body, status=status, headers={"Content-Type": kind})

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._forward)
        app.router.add_route("*", "/file/bot{token}/{path:.+}", self._forward)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession(
            timeout=_TIMEOUT, connector=aiohttp.TCPConnector(limit=0)
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Serve from a daemon thread with its own loop (for services in other processes)."""
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=serve, name="token-router", daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the router did not start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
