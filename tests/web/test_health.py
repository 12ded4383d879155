"""/healthz and the landing page."""

from __future__ import annotations

import shutil
from pathlib import Path

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
    assert body["parts"]["telegram"] == {
        "active": False,
        "detail": "TELEGRAM_BOT_TOKEN not set",
        "retrying": False,
    }


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


async def _get_from(app: object, path: str, client: tuple[str, int]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path)


async def test_healthz_tells_a_visitor_only_the_status(database: Database) -> None:
    app = create_app(engine=database.engine, parts=_parts)
    response = await _get_from(app, "/healthz", ("203.0.113.7", 40000))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # no version, bots, addresses or parts
    assert "0.1.0" not in response.text


async def test_healthz_shows_details_to_whom_the_check_admits(database: Database) -> None:
    async def admitted(request: object) -> bool:
        return True

    app = create_app(engine=database.engine, parts=_parts, may_see_details=admitted)
    response = await _get_from(app, "/dashboard/healthz", ("203.0.113.7", 40000))
    assert response.json()["parts"]["telegram"]["detail"] == "TELEGRAM_BOT_TOKEN not set"


async def test_healthz_is_503_when_data_dir_has_too_little_room(
    database: Database, tmp_path: Path
) -> None:
    free = shutil.disk_usage(tmp_path).free
    enough = create_app(
        engine=database.engine, parts=_parts, data_dir=tmp_path, min_free_bytes=free // 2
    )
    assert (await _get(enough, "/healthz")).json()["disk"]["ok"] is True
    # More room demanded than the disk has: the same as a full disk to the check.
    full = create_app(
        engine=database.engine, parts=_parts, data_dir=tmp_path, min_free_bytes=free * 2 + 10**12
    )
    response = await _get(full, "/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["disk"]["ok"] is False


async def test_healthz_is_degraded_while_a_part_retries(database: Database) -> None:
    def retrying() -> dict[str, PartStatus]:
        return {"telegram": PartStatus(False, "retrying in 4 s: NetworkError", retrying=True)}

    response = await _get(create_app(engine=database.engine, parts=retrying), "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["parts"]["telegram"]["retrying"] is True
