"""/healthz and the landing page."""

from __future__ import annotations

import httpx

from broadcasts.parts import PartStatus
from db.engine import make_engine
from tests.conftest import Database
from web.app import create_app


def _parts() -> dict[str, PartStatus]:
    return {
        "web": PartStatus(active=True, detail="http://127.0.0.1:8000"),
        "telegram": PartStatus(active=False, detail="TELEGRAM_BOT_TOKEN not set"),
    }


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def test_healthz_reports_database_version_and_parts(database: Database) -> None:
    response = await _get(create_app(engine=database.engine, parts=_parts), "/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {
        "reachable": True,
        "dialect": database.engine.dialect.name,
        "detail": "ok",
    }
    assert body["version"] == "0.1.0"
    assert body["parts"]["telegram"] == {"active": False, "detail": "TELEGRAM_BOT_TOKEN not set"}


async def test_healthz_is_503_when_the_database_is_unreachable() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    engine = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    try:
        response = await _get(create_app(engine=engine, parts=_parts), "/healthz")
    finally:
        await engine.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]["reachable"] is False


async def test_landing_page_is_vietnamese_and_lists_parts(database: Database) -> None:
    response = await _get(create_app(engine=database.engine, parts=_parts), "/")
    assert response.status_code == 200
    assert 'lang="vi"' in response.text
    assert "Hải Đăng" in response.text
    assert "TELEGRAM_BOT_TOKEN not set" in response.text
