"""Helpers for dashboard tests: an app with the router, and a signed-in client per official."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from broadcasts import officials
from db.models import Official, OfficialRole
from haidang.settings import Settings
from tests.broadcasts.engine import officials_pair
from tests.conftest import Database
from web.dashboard import make_router
from web.dashboard.common import BotQueues

SECRET = "dashboard-test-secret-" + "k" * 20
PASSWORDS = {
    "editor": "x" * 12,
    "approver": "y" * 12,
    "xa-cathai": "commune-pass-1",
    "xa-khac": "commune-pass-2",
    "root": "admin-pass-12",
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, secret_key=SecretStr(SECRET), **overrides)


def make_app(
    database: Database,
    send_reply: Callable[[int], Awaitable[bool]] | None = None,
    bot_queues: BotQueues | None = None,
) -> FastAPI:
    app = FastAPI()
    router = make_router(
        database.sessions, settings(), send_reply=send_reply, bot_queues=bot_queues
    )
    app.include_router(router)
    return app


async def make_officials(database: Database) -> dict[str, int]:
    """editor/approver (Hải Phòng), two commune editors and an admin; username → id."""
    await officials_pair(database)
    async with database.sessions.begin() as session:
        extra = (
            ("xa-cathai", OfficialRole.commune_editor, "11914"),
            # Another commune of Hải Phòng: Phường Hồng Bàng.
            ("xa-khac", OfficialRole.commune_editor, "11311"),
            ("root", OfficialRole.admin, None),
        )
        for username, role, area in extra:
            exists = await session.scalar(select(Official.id).where(Official.username == username))
            if exists is None:
                await officials.create(
                    session, username=username, role=role, password=PASSWORDS[username],
                    area_code=area,
                )  # fmt: skip
        rows = await session.execute(select(Official.username, Official.id))
        return {name: official_id for name, official_id in rows.all()}


class Client:
    """One browser: a cookie jar, and the CSRF token of the last page it read."""

    def __init__(
        self, app: FastAPI, base_url: str = "http://test", *, client_ip: str = "127.0.0.1"
    ) -> None:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
        self.http = httpx.AsyncClient(transport=transport, base_url=base_url)
        self.csrf = ""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def _remember(self, response: httpx.Response) -> None:
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(path, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self._remember(response)
        return response

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        response = await self.http.post(path, data=form)
        if response.headers.get("content-type", "").startswith("text/html"):
            self._remember(response)
        return response

    async def login(self, username: str, password: str | None = None) -> httpx.Response:
        await self.get("/dashboard/login")
        response = await self.post(
            "/dashboard/login",
            {"username": username, "password": password or PASSWORDS[username]},
        )
        if response.status_code == 303:
            await self.get("/dashboard/bulletins")  # a page, for the new session's token
        return response
