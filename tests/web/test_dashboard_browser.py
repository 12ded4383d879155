"""The dashboard in a real browser (Debian Chromium under Playwright): write, approve, send."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from db.engine import make_engine, make_sessionmaker
from db.models import Base, Platform
from db.seed import seed_all
from tests.broadcasts.engine import add_people
from tests.conftest import Database
from tests.web.dashboard_helpers import PASSWORDS, make_officials, settings
from web.dashboard import make_router

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

if not CHROMIUM.exists():
    pytest.skip(
        "Chromium is missing: `apt-get install -y chromium` (Debian's build at /usr/bin/chromium)",
        allow_module_level=True,
    )
if importlib.util.find_spec("playwright") is None:
    pytest.skip(
        "the playwright package is missing: pip install playwright (the dev extra)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """The dashboard under uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = _free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
            lifespan="off",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A seeded SQLite file with officials and subscribers, and the dashboard serving it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"

    async def prepare() -> None:
        engine = make_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        database = Database("sqlite", url, engine, make_sessionmaker(engine))
        async with database.sessions.begin() as session:
            await seed_all(session)
        await make_officials(database)
        await add_people(database, Platform.telegram, [f"tg{i}" for i in range(3)])
        await add_people(database, Platform.zalo, [f"z{i}" for i in range(2)])
        await engine.dispose()

    asyncio.run(prepare())
    # The server's engine is made here but connects only inside uvicorn's own event loop.
    engine = make_engine(url)
    app = FastAPI()
    app.include_router(make_router(make_sessionmaker(engine), settings()))
    with Served(app) as server:
        yield server
    asyncio.run(engine.dispose())


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/dashboard/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("#login-submit")
    expect(page.locator("#who-name")).to_have_text(username)


def test_write_approve_and_schedule_in_the_browser(served: Served, browser: Browser) -> None:
    base = served.url
    # A phone-sized window for the author: the pages must work on a phone.
    author = browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN")
    page = author.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/dashboard/login")
    _shot(page, "01-login")
    _login(page, base, "editor")

    page.click("#nav-new")
    page.fill("#title", "Cảnh báo gió mạnh trên biển")
    page.fill("#body", "Gió mạnh cấp 6, giật cấp 8. Tàu thuyền không ra khơi. " * 3)
    expect(page.locator("#count-telegram")).to_have_text("1")
    # The scope (Hải Phòng) is pre-selected; add Cát Hải through the search.
    page.fill("#area-search", "cat hai")
    page.locator('.area-result[data-code="11914"]').click()
    expect(page.locator('#chosen-areas input[value="11914"]')).to_have_count(1)
    page.locator('#chosen-areas input[value="p31"] + button').click()
    page.check("#priority-urgent")
    _shot(page, "02-editor")
    page.click("#save-draft")
    expect(page.locator("#bulletin-state")).to_have_text("Bản nháp")
    expect(page.locator("#preview-count strong")).to_have_text("5")
    _shot(page, "03-draft-preview")
    page.click("#submit-bulletin")
    expect(page.locator("#bulletin-state")).to_have_text("Chờ duyệt")
    bulletin_url = page.url.split("?")[0]

    reviewer = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    second = reviewer.new_page()
    second.on("pageerror", lambda error: errors.append(str(error)))
    _login(second, base, "approver")
    second.goto(f"{base}/dashboard/bulletins?state=pending_approval")
    second.locator(".bulletin-row a").first.click()
    expect(second.locator("#approve-bulletin")).to_be_visible()
    _shot(second, "04-review")
    second.click("#approve-bulletin")
    expect(second.locator("#bulletin-state")).to_have_text("Đã duyệt")
    second.fill("#schedule-cron", "0 6 * * 1")
    expect(second.locator("#cron-preview")).to_contain_text("Thứ Hai")
    second.check("#mode-now")
    _shot(second, "05-schedule")
    second.click("#schedule-bulletin")
    expect(second.locator("#bulletin-state")).to_have_text("Đã lên lịch")
    expect(second.locator("#notice")).to_have_text("Đã lên lịch gửi.")
    _shot(second, "06-scheduled")

    page.goto(bulletin_url + "/progress")
    expect(page.locator("#progress-total")).to_have_text("0")
    expect(page.locator("#count-sent")).to_have_text("0")
    _shot(page, "07-progress")
    author.close()
    reviewer.close()
    assert errors == []
