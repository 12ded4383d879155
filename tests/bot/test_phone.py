"""/sdt: a phone for urgent bulletins by ZNS or SMS, kept only with consent, removable,
erased by /xoa, never logged whole; on both fakes, and a crowd within Telegram's limits."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import ChatAddress, Platform, Subscriber, SubscriberStatus
from haidang import logs
from tests.bot.harness import count, running_service, until, wait_text
from tests.bot.test_crowd import answered, assert_within_limits
from tests.broadcasts.engine import add_people
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

ASK = "Bà con nhắn số điện thoại di động"
INVALID = "không phải số di động Việt Nam"
CONSENT = "Bà con đồng ý để Hải Đăng lưu số"
SAVED = "Đã lưu số 84******321"
DECLINED = "Hải Đăng không lưu số của bà con"
KEPT = "đang lưu số 84******321"
REMOVED = "Đã xóa số điện thoại"
# Every form of the test number that must never reach a log.
WHOLE = ("987654321", "987 654 321", "0987654321")


@pytest.fixture
def watched_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything our code logs, at DEBUG; the chat libraries and HTTP clients at the levels
    `haidang serve` holds them to (haidang.logs), since their DEBUG has whole updates."""
    held = {name: logging.INFO for name in logs.THIRD_PARTY}
    held.update({name: logging.WARNING for name in logs.AT_WARNING})
    before = {name: logging.getLogger(name).level for name in held}
    for name, level in held.items():
        logging.getLogger(name).setLevel(level)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


def assert_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records  # the service did log: the check below is not vacuous
    for form in WHOLE:
        assert form not in caplog.text


async def subscriber_of(database: Database, chat_id: str) -> Subscriber:
    async with database.sessions() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == chat_id))
        assert address is not None
        return await session.get_one(Subscriber, address.subscriber_id)


async def dialog_of(database: Database, chat_id: str) -> dict[str, object]:
    async with database.sessions() as session:
        address = await session.scalar(select(ChatAddress).where(ChatAddress.chat_id == chat_id))
        assert address is not None
        return dict(address.dialog or {})


async def test_telegram_give_refuse_remove_and_erase(
    seeded: Database, tmp_path: Path, watched_logs: pytest.LogCaptureFixture
) -> None:
    chat = 1001
    await add_people(seeded, Platform.telegram, [str(chat)])
    async with (
        FakeTelegramAPI() as api,
        running_service(
            seeded, tmp_path, telegram_bot_token=api.token, telegram_api_base_url=api.base_url
        ),
    ):
        assert any(c["command"] == "sdt" for c in api.commands())
        api.user_sends(chat, "/trogiup")
        await wait_text(api, chat, "/sdt")

        # Refused: nothing is kept, not even in the dialog.
        mark = count(api, chat)
        api.user_sends(chat, "/sdt")
        ask = await wait_text(api, chat, ASK, after=mark)
        assert "Nhà nước chi trả" in ask.text and "/sdt xoa" in ask.text
        api.user_sends(chat, "0987654321")
        consent = await wait_text(api, chat, CONSENT, after=mark)
        assert "0987 654 321" in consent.text
        assert "phone:yes" in str(consent.reply_markup)
        assert (await subscriber_of(seeded, str(chat))).phone is None  # not before consent
        api.user_presses(chat, "phone:no")
        await wait_text(api, chat, DECLINED, after=mark)
        refused = await subscriber_of(seeded, str(chat))
        assert refused.phone is None and refused.phone_consent_at is None
        assert "phone" not in await dialog_of(seeded, str(chat))

        # Invalid numbers are refused with a clear message; then a valid one, with consent.
        mark = count(api, chat)
        api.user_sends(chat, "/sdt")
        await wait_text(api, chat, ASK, after=mark)
        for wrong in ("0212345678", "12345", "098765432a"):
            mark = count(api, chat)
            api.user_sends(chat, wrong)
            await wait_text(api, chat, INVALID, after=mark)
        mark = count(api, chat)
        api.user_sends(chat, "+84 987 654 321")
        await wait_text(api, chat, CONSENT, after=mark)
        api.user_presses(chat, "phone:yes")
        saved = await wait_text(api, chat, SAVED, after=mark)
        assert "987654321" not in saved.text
        kept = await subscriber_of(seeded, str(chat))
        assert kept.phone == "84987654321" and kept.phone_consent_at is not None
        assert "phone" not in await dialog_of(seeded, str(chat))

        # /sdt with a number kept shows it masked and how to remove it; /sdt xoa removes it.
        mark = count(api, chat)
        api.user_sends(chat, "/sdt")
        shown = await wait_text(api, chat, KEPT, after=mark)
        assert "/sdt xoa" in shown.text
        api.user_sends(chat, "/sdt xoa")
        await wait_text(api, chat, REMOVED, after=mark)
        removed = await subscriber_of(seeded, str(chat))
        assert removed.phone is None and removed.phone_consent_at is None

        # Given again ("/sdt <number>" in one go), then /xoa erases it with the rest.
        mark = count(api, chat)
        api.user_sends(chat, "/sdt 84987654321")
        await wait_text(api, chat, CONSENT, after=mark)
        api.user_presses(chat, "phone:yes")
        await wait_text(api, chat, SAVED, after=mark)
        person_id = (await subscriber_of(seeded, str(chat))).id
        api.user_sends(chat, "/xoa")
        await wait_text(api, chat, "XÓA", after=mark)
        api.user_presses(chat, "yes")
        await wait_text(api, chat, "Đã xóa toàn bộ thông tin", after=mark)
    async with seeded.sessions() as session:
        erased = await session.get_one(Subscriber, person_id)
    assert erased.status is SubscriberStatus.erased
    assert erased.phone is None and erased.phone_consent_at is None
    assert_not_logged(watched_logs)


def option_number(text: str, label: str) -> str:
    for line in text.splitlines():
        number, _, rest = line.partition(". ")
        if number.isdigit() and rest.startswith(label):
            return number
    raise AssertionError(f"no option {label!r} in {text!r}")


async def test_zalo_give_refuse_remove_and_erase_by_words(
    seeded: Database, tmp_path: Path, watched_logs: pytest.LogCaptureFixture
) -> None:
    chat = "e4ea2cd5189df1c3a88c"
    await add_people(seeded, Platform.zalo, [chat])
    async with (
        FakeZaloAPI() as api,
        running_service(seeded, tmp_path, zalo_bot_token=api.token, zalo_api_base_url=api.base_url),
    ):
        # Refused by number ("2" is «Không»).
        api.user_sends(chat, "Số điện thoại")
        await wait_text(api, chat, ASK)
        mark = count(api, chat)
        api.user_sends(chat, "12345")
        await wait_text(api, chat, INVALID, after=mark)
        api.user_sends(chat, "0987 654 321")
        consent = await wait_text(api, chat, CONSENT, after=mark)
        assert option_number(consent.text, "Không") == "2"
        api.user_sends(chat, "2")
        await wait_text(api, chat, DECLINED, after=mark)
        assert (await subscriber_of(seeded, chat)).phone is None
        assert "phone" not in await dialog_of(seeded, chat)

        # Given with "đồng ý" typed.
        mark = count(api, chat)
        api.user_sends(chat, "sdt")
        await wait_text(api, chat, ASK, after=mark)
        api.user_sends(chat, "84987654321")
        await wait_text(api, chat, CONSENT, after=mark)
        api.user_sends(chat, "Đồng ý")
        await wait_text(api, chat, SAVED, after=mark)
        kept = await subscriber_of(seeded, chat)
        assert kept.phone == "84987654321" and kept.phone_consent_at is not None
        mark = count(api, chat)
        api.user_sends(chat, "sdt")
        await wait_text(api, chat, KEPT, after=mark)

        # Removed by words.
        api.user_sends(chat, "xóa số")
        await wait_text(api, chat, REMOVED, after=mark)
        assert (await subscriber_of(seeded, chat)).phone is None

        # Given again with "1", then erased by "xoa".
        mark = count(api, chat)
        api.user_sends(chat, "sdt")
        await wait_text(api, chat, ASK, after=mark)
        api.user_sends(chat, "0987654321")
        consent = await wait_text(api, chat, CONSENT, after=mark)
        api.user_sends(chat, option_number(consent.text, "✅ Đồng ý"))
        await wait_text(api, chat, SAVED, after=mark)
        person_id = (await subscriber_of(seeded, chat)).id
        mark = count(api, chat)
        api.user_sends(chat, "xoa")
        confirm = await wait_text(api, chat, "XÓA", after=mark)
        api.user_sends(chat, option_number(confirm.text, "Có"))
        await wait_text(api, chat, "Đã xóa toàn bộ thông tin", after=mark)
    async with seeded.sessions() as session:
        erased = await session.get_one(Subscriber, person_id)
    assert erased.phone is None and erased.phone_consent_at is None
    assert_not_logged(watched_logs)


async def test_phone_before_signing_up_is_not_asked(seeded: Database, tmp_path: Path) -> None:
    async with (
        FakeZaloAPI() as api,
        running_service(seeded, tmp_path, zalo_bot_token=api.token, zalo_api_base_url=api.base_url),
    ):
        api.user_sends("stranger", "sdt")
        await wait_text(api, "stranger", "đăng ký nhận tin trước")
        api.user_sends("stranger", "0987654321")  # not in a phone step: nothing kept
        await wait_text(api, "stranger", "Đã ghi nhận tin nhắn")
    assert (await subscriber_of(seeded, "stranger")).phone is None


CROWD_RATE = 30  # Telegram's bulk limit: the fake's and the bot's


async def test_a_crowd_giving_numbers_at_once_within_telegrams_limits(
    seeded: Database, tmp_path: Path, watched_logs: pytest.LogCaptureFixture
) -> None:
    crowd = [20_000 + n for n in range(200)]
    await add_people(seeded, Platform.telegram, [str(c) for c in crowd])
    fake = FakeTelegramAPI(latency=0.02, rate_limit_per_second=CROWD_RATE, chat_rate_limit=1)
    with fake.running_in_thread() as api:
        async with running_service(
            seeded,
            tmp_path,
            telegram_bot_token=api.token,
            telegram_api_base_url=api.base_url,
            bots={"rate_per_second": CROWD_RATE, "per_chat_interval": 1.0},
        ):
            for chat in crowd:
                api.user_sends(chat, "/sdt")
            await until(lambda: answered(api, crowd, ASK), 60)
            for n, chat in enumerate(crowd):
                api.user_sends(chat, f"09{n:08d}")
            await until(lambda: answered(api, crowd, CONSENT), 60)
            for chat in crowd:
                api.user_presses(chat, "phone:yes")
            await until(lambda: answered(api, crowd, "Đã lưu số"), 60)
            await asyncio.sleep(1.5)  # anything sent twice would have arrived by now
            for chat in crowd:  # three answers each, once each: nothing lost or repeated
                said = Counter(r.text for r in api.sent_to(chat))
                assert len(said) == 3 and max(said.values()) == 1, (chat, said)
            assert_within_limits(api)
    async with seeded.sessions() as session:
        rows = (
            await session.execute(
                select(ChatAddress.chat_id, Subscriber.phone, Subscriber.phone_consent_at).join(
                    Subscriber, Subscriber.id == ChatAddress.subscriber_id
                )
            )
        ).all()
    phones = {chat: (phone, at) for chat, phone, at in rows}
    for n, chat in enumerate(crowd):
        phone, at = phones[str(chat)]
        assert phone == f"849{n:08d}" and at is not None
    for n in range(len(crowd)):
        assert f"9{n:08d}" not in watched_logs.text
