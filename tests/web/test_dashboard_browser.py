"""The dashboard in a real browser (Debian Chromium under Playwright), with the real service
behind it: write, approve, schedule, watch every delivery reach the fake Telegram, answer."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zxingcpp
from PIL import Image

from db.engine import make_engine, make_sessionmaker
from db.models import Base, Platform, SubscriberRole
from db.seed import seed_all
from haidang.runtime import OffPart, Service
from haidang.settings import Settings
from tests.bot.harness import free_port, stamp_head, until, without_quiet_hours
from tests.broadcasts.engine import add_people
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.web.dashboard_helpers import PASSWORDS, SECRET, make_officials

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
# Telegram chat ids of the people following Đặc khu Cát Hải; the last one reads English.
VIETNAMESE_CHATS = [7001, 7002, 7003, 7004]
ENGLISH_CHAT = 7005
TITLE = "Cảnh báo gió mạnh trên biển"
BODY = "Gió mạnh cấp 6, giật cấp 8. Tàu thuyền không ra khơi. " * 3
T = TypeVar("T")

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


class LiveService:
    """`haidang serve`'s Service (web, Telegram bot, scheduler, senders, audio) in a thread.

    Its event loop is its own, so the synchronous Playwright API can drive the browser
    from the test's thread while the service sends.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.http_port}"
        self._started = threading.Event()
        self._failure: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="service", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._failure.append(exc)
            self._started.set()

    async def _run(self) -> None:
        service = Service(self.settings)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        task = asyncio.create_task(service.run(self._stop))
        configured = [p for p in service.parts if not isinstance(p, OffPart)]
        await until(lambda: all(p.status().active for p in configured) or task.done(), 30)
        self._started.set()
        await task

    def __enter__(self) -> LiveService:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the service did not start within 30 s")
        if self._failure:
            raise self._failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self._failure:
            raise self._failure[0]


def _until(probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def telegram() -> Iterator[FakeTelegramAPI]:
    api = FakeTelegramAPI()
    for chat_id in [*VIETNAMESE_CHATS, ENGLISH_CHAT]:
        api.register_chat(chat_id, first_name=f"Ngư dân {chat_id}")
    with api.running_in_thread() as running:
        yield running


@pytest.fixture
def live(tmp_path: Path, telegram: FakeTelegramAPI) -> Iterator[LiveService]:
    """A migrated SQLite file with the map, officials and five Telegram followers of Cát Hải,
    and the whole service running on it against the fake Bot API."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'browser.db'}"

    async def prepare() -> None:
        engine = make_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        database = Database("sqlite", url, engine, make_sessionmaker(engine))
        await stamp_head(database)
        await without_quiet_hours(database)
        async with database.sessions.begin() as session:
            await seed_all(session)
        await make_officials(database)
        await add_people(database, Platform.telegram, [str(c) for c in VIETNAMESE_CHATS])
        await add_people(
            database, Platform.telegram, [str(ENGLISH_CHAT)], language="en",
            role=SubscriberRole.villager,
        )  # fmt: skip
        await engine.dispose()

    asyncio.run(prepare())
    values: dict[str, Any] = {
        "database_url": url,
        "data_dir": tmp_path / "var",
        "http_port": free_port(),
        "secret_key": SECRET,
        "telegram_bot_token": telegram.token,
        "telegram_api_base_url": telegram.base_url,
        "tts_engine": "espeak",  # offline: the voice is real, and no test reaches the internet
    }
    with LiveService(Settings(_env_file=None, **values)) as service:
        yield service


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


def _texts(api: FakeTelegramAPI, chat_id: int) -> list[str]:
    return [r.text or "" for r in api.sent_to(chat_id, methods={"sendMessage"})]


def test_a_broadcast_from_the_browser_reaches_every_chat(
    live: LiveService, telegram: FakeTelegramAPI, browser: Browser, tmp_path: Path
) -> None:
    base = live.url
    errors: list[str] = []
    # A phone-sized window for the author: the pages must work on a phone.
    author = browser.new_context(viewport={"width": 390, "height": 844}, locale="vi-VN")
    page = author.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/dashboard/login")
    _shot(page, "01-login")
    _login(page, base, "editor")

    # --- draft: text, audience, urgency, a photo and an English translation -----------------
    page.click("#nav-new")
    page.fill("#title", "Cảnh báo gió")
    page.fill("#body", BODY)
    expect(page.locator("#count-telegram")).to_have_text("1")
    expect(page.locator("#count-zalo")).to_have_text("1")
    page.fill("#body", BODY * 14)  # over Zalo's 2000 characters: two messages there
    expect(page.locator("#count-zalo")).to_have_text("2")
    expect(page.locator("#count-zalo")).to_have_class("count-part over")
    page.fill("#body", BODY)
    # The scope (Hải Phòng) is pre-selected; add Cát Hải through the search, drop the city.
    page.fill("#area-search", "cat hai")
    page.locator('.area-result[data-code="11914"]').click()
    expect(page.locator('#chosen-areas input[value="11914"]')).to_have_count(1)
    page.locator('#chosen-areas input[value="p31"] + button').click()
    page.check("#priority-urgent")
    photo = tmp_path / "ban-do-gio.png"
    Image.new("RGB", (320, 200), (11, 93, 148)).save(photo)
    page.set_input_files("#photo", str(photo))
    page.select_option("#translation-rows .translation >> nth=0 >> select", "en")
    page.fill("#translation-rows .translation >> nth=0 >> .tr-title", "Strong wind warning")
    page.fill(
        "#translation-rows .translation >> nth=0 >> .tr-body",
        "Strong wind, level 6, gusts 8. Boats stay in port.",
    )
    expect(page.locator("#tr-count-0-telegram")).to_have_text("1")
    # A second row comes and goes without a page load; an empty row is no translation.
    page.click("#add-translation")
    expect(page.locator("#translation-rows .translation")).to_have_count(2)
    expect(page.locator("#tr-count-1-chars")).to_be_visible()
    page.locator("#translation-rows .translation >> nth=1 >> .tr-remove").click()
    expect(page.locator("#translation-rows .translation")).to_have_count(1)
    _shot(page, "02-editor")
    page.click("#save-draft")
    expect(page.locator("#bulletin-state")).to_have_text("Bản nháp")
    expect(page.locator("#preview-count strong")).to_have_text("5")
    _shot(page, "03-draft-preview")

    # --- edit the draft, then submit it ---------------------------------------------------------
    page.click("#edit-bulletin")
    expect(page.locator("h1")).to_have_text("Sửa bản tin")
    expect(page.locator("#photo-current img")).to_be_visible()
    page.fill("#title", TITLE)
    _shot(page, "04-edit")
    page.click("#save-submit")
    expect(page.locator("#bulletin-state")).to_have_text("Chờ duyệt")
    expect(page.locator("h1")).to_have_text(TITLE)
    bulletin_url = page.url.split("?")[0]

    # --- a second official approves and sends now -----------------------------------------------
    reviewer = browser.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    second = reviewer.new_page()
    second.on("pageerror", lambda error: errors.append(str(error)))
    _login(second, base, "approver")
    second.goto(f"{base}/dashboard/bulletins?state=pending_approval")
    second.locator(".bulletin-row a").first.click()
    expect(second.locator("#approve-bulletin")).to_be_visible()
    _shot(second, "05-review")
    second.click("#approve-bulletin")
    expect(second.locator("#bulletin-state")).to_have_text("Đã duyệt")
    second.fill("#schedule-cron", "0 6 * * 1")
    expect(second.locator("#cron-preview")).to_contain_text("Thứ Hai")
    second.check("#mode-now")
    _shot(second, "06-schedule")
    second.click("#schedule-bulletin")
    expect(second.locator("#notice")).to_have_text("Đã lên lịch gửi.")

    # --- the progress page follows the sender until every delivery is sent ----------------------
    page.goto(bulletin_url + "/progress")
    expect(page.locator("#count-sent")).to_have_text("5", timeout=60_000)
    expect(page.locator("#progress-total")).to_have_text("5")
    expect(page.locator("#progress")).to_have_attribute("data-finished", "true", timeout=20_000)
    # Opened before the fan-out (as usual here), the per-commune table fills in by itself.
    commune = page.locator('#commune-table tr.commune-row[data-area-code="11914"]')
    expect(commune.locator('td[data-state="sent"]')).to_have_text("5", timeout=10_000)
    _shot(page, "07-progress-sent")
    for chat_id in VIETNAMESE_CHATS:
        assert any(text.startswith(f"🚨 {TITLE}") for text in _texts(telegram, chat_id)), chat_id
        assert telegram.sent_to(chat_id, methods={"sendPhoto"}), chat_id
    assert any(t.startswith("🚨 Strong wind warning") for t in _texts(telegram, ENGLISH_CHAT))

    # --- a fisherman writes; the answer from the dashboard reaches his chat ----------------------
    telegram.user_sends(VIETNAMESE_CHATS[0], "Có tàu lạ neo gần đảo, cần cấp cứu")
    second.goto(f"{base}/dashboard/inbox")
    message = second.locator("article.message").first
    for _ in range(50):  # the bot stores the message within a poll or two
        if message.count():
            break
        second.wait_for_timeout(200)
        second.reload()
    expect(message).to_contain_text("Có tàu lạ neo gần đảo")
    answer = "Đồn Biên phòng Cát Hải đã nhận tin, ca nô đang tới."
    message.locator("textarea[name=reply]").fill(answer)
    _shot(second, "08-inbox-reply")
    message.locator(".reply-form button").click()
    expect(second.locator("#notice")).to_contain_text("Đã lưu câu trả lời")
    _until(lambda: any(answer in text for text in _texts(telegram, VIETNAMESE_CHATS[0])))
    _shot(second, "09-inbox-answered")

    # --- the commune's QR poster carries the running bot's deep link (its name from getMe) -----
    page.goto(f"{base}/dashboard/posters?q=cat hai")
    page.locator('#poster-results a[href$="/posters/11914"]').click()
    deep_link = f"https://t.me/{telegram.bot_user['username']}?start=c11914"
    expect(page.locator("#poster-telegram")).to_have_text(deep_link)
    expect(page.locator("#poster-preview")).to_have_js_property("complete", True)
    _shot(page, "10-poster")
    with page.expect_download() as download:
        page.click("#poster-png")
    poster = Image.open(download.value.path())
    assert {r.text for r in zxingcpp.read_barcodes(poster)} == {deep_link}

    author.close()
    reviewer.close()
    assert errors == []
    # The photo the official uploaded is the one the chats received.
    sent_photo = telegram.sent_to(VIETNAMESE_CHATS[0], methods={"sendPhoto"})[0]
    assert sent_photo.file is not None
    stored = telegram.file_bytes(sent_photo.file.file_id)
    assert stored is not None
    assert Image.open(io.BytesIO(stored)).size == (320, 200)
