"""The documents library in chat, end to end over the fake Bot APIs: search, read, listen, browse;
and the inbox path from a report at sea to an official's answer in the person's chat."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import texts
from bot.listening import DocumentVoices
from broadcasts import documents, inbox, library, officials
from db.models import AssetKind, AudioAsset, Document, InboxMessage, OfficialRole
from haidang.runtime import Service
from tests.bot.harness import SENDS_AND_EDITS, Said, count, running_service, until, wait_text
from tests.bot.test_zalo import option_number
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
CORPUS = Path(__file__).parent.parent / "data" / "documents"
LONG_NUMBER = "99/2026/TT-BNNMT"
CHAT = 1001
OTHER_CHAT = 1002
ZALO_CHAT = "a1b2c3d4e5f6a7b8c9d0"


def long_document(folder: Path) -> Path:
    """A guidance long enough for several pages on both platforms (about 9,000 characters)."""
    paragraphs = [
        f"Điều {n}. Chủ tàu cá phải kiểm tra áo phao, phao tròn và đèn tín hiệu trước mỗi "
        f"chuyến biển thứ {n}. Thuyền trưởng ghi nhật ký khai thác đầy đủ, giữ liên lạc với "
        "Đồn Biên phòng và tổ đoàn kết trên biển. Khi gặp sự cố, tàu ở gần phải đến hỗ trợ, "
        "báo ngay cho trạm bờ và chính quyền xã nơi tàu đăng ký."
        for n in range(1, 31)
    ]
    path = folder / "huong-dan-an-toan.md"
    path.write_text(
        "---\n"
        "title: Hướng dẫn an toàn cho tàu cá khi ra khơi\n"
        f"number: {LONG_NUMBER}\n"
        "issuer: Bộ Nông nghiệp và Môi trường\n"
        "date: 2026-03-02\n"
        "topics: phap-luat\n"
        "summary: Những việc chủ tàu và thuyền trưởng phải làm để giữ an toàn trên biển.\n"
        "---\n\n" + "\n\n".join(paragraphs) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def library_ids(seeded: Database, tmp_path: Path) -> dict[str, int]:
    """The test corpus and one long document, imported; file name → document id."""
    files = sorted(p for p in CORPUS.iterdir() if p.suffix in (".md", ".txt"))
    files.append(long_document(tmp_path))
    internal = documents.parse(
        "---\ntitle: Quy trình tuần tra nội bộ của đồn\ntopics: phap-luat\n---\n\n"
        "Lịch tuần tra và mật khẩu liên lạc của đồn biên phòng, chỉ dùng nội bộ.\n",
        source="noi-bo.md",
    )
    async with seeded.sessions.begin() as session:
        imported = await documents.import_files(session, files, now=NOW)
        hidden = await documents.add(session, internal, now=NOW, public=False)
    return {
        **{Path(one.source).name: one.document.id for one in imported},
        "noi-bo.md": hidden.document.id,
    }


def buttons(said: Said) -> dict[str, str]:
    """A Telegram message's inline buttons: label → callback data."""
    markup: dict[str, Any] = said.reply_markup or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def button_data(said: Said, prefix: str) -> list[str]:
    return [data for data in buttons(said).values() if data.startswith(prefix)]


def library_service(
    api: FakeTelegramAPI | FakeZaloAPI, database: Database, tmp_path: Path, **settings: Any
) -> AbstractAsyncContextManager[Service]:
    """The service with one bot on `api`, reading documents aloud with the offline voice."""
    if isinstance(api, FakeTelegramAPI):
        bot: dict[str, Any] = {
            "telegram_bot_token": api.token,
            "telegram_api_base_url": api.base_url,
        }
    else:
        bot = {"zalo_bot_token": api.token, "zalo_api_base_url": api.base_url}
    return running_service(database, tmp_path, tts_engine="espeak", **bot, **settings)


def page_body(text: str) -> str:
    """The document's text on a reading page, without the header, hint and options."""
    return text.split("\n\n", 1)[1].split("\n\n" + texts.READ_TURN_HINT)[0]


async def document_audio_rows(database: Database) -> int:
    async with database.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(AudioAsset)
                .where(AudioAsset.kind == AssetKind.document)
            )
            or 0
        )


async def reading_text(database: Database, document_id: int) -> str:
    async with database.sessions() as session:
        return library.reading_text(await session.get_one(Document, document_id))


def voices_of(service: Service) -> DocumentVoices:
    assert service.conversation.voices is not None
    return service.conversation.voices


@pytest.mark.parametrize(
    ("message", "search"),
    [
        ("1191/QĐ-TTg", True),
        ("Quyết định 1191/QĐ-TTg nói gì?", True),
        ("cho hỏi nghị định 37/2024/NĐ-CP", True),
        ("Nghị quyết 36-NQ/TW", True),
        ("Luật thủy sản quy định gì về giấy phép?", True),
        ("muc phat danh bat bang chat no la bao nhieu", True),
        ("Tàu QNg-90123-TS bị chìm gần đảo", False),  # a boat's registration, not a number
        ("Ngày 20/11 có bão không?", False),
        ("Có tàu lạ neo gần đảo, cần cấp cứu", False),
        ("Tàu lạ ở đâu?", False),  # a question, but about no law
        ("Phao số 3 ở cửa biển bị trôi", False),
        ("Xin chào", False),
        ("Luật " + "rất " * 60 + "dài?", False),  # long messages are reports, whatever they say
    ],
)
def test_which_free_text_counts_as_a_search(message: str, search: bool) -> None:
    assert library.looks_like_search(message) is search


async def test_search_read_listen_and_browse_on_telegram(
    seeded: Database, tmp_path: Path, library_ids: dict[str, int]
) -> None:
    fisheries_law = library_ids["luat-thuy-san-2017.md"]
    decision = library_ids["qd-1191-ttg.txt"]
    guidance = library_ids["huong-dan-an-toan.md"]
    async with FakeTelegramAPI() as api, library_service(api, seeded, tmp_path) as service:
        assert any(c["command"] == "tracuu" for c in api.commands())
        api.user_sends(CHAT, "/start c11914")
        await wait_text(api, CHAT, "đã đăng ký")

        # Search with and without diacritics: the same law first, with its number, a
        # highlighted snippet and buttons to read and to listen.
        for query in ("Luật Thủy sản", "luat thuy san"):
            mark = count(api, CHAT)
            api.user_sends(CHAT, f"/tracuu {query}")
            found = await wait_text(api, CHAT, "Văn bản tìm được", after=mark)
            items = found.text.split("\n\n")[1:]
            law = next(i for i in items if i.startswith("📄 Luật Thủy sản (số 18/2017/QH14)"))
            assert "«Luật Thủy sản»" in law
            assert f"rd:{fisheries_law}:0" in button_data(found, "rd:")
            assert f"ls:{fisheries_law}" in button_data(found, "ls:")
            assert buttons(found)["📖 Đọc 18/2017/QH14"] == f"rd:{fisheries_law}:0"
        # By number.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/tracuu 1191")
        found = await wait_text(api, CHAT, "Văn bản tìm được", after=mark)
        assert "(số 1191/QĐ-TTg)" in found.text.split("\n\n")[1]
        assert button_data(found, "rd:")[0] == f"rd:{decision}:0"
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/tracuu xyzzy qwerty")
        await wait_text(api, CHAT, "Không tìm thấy văn bản nào", after=mark)

        # A question that cites a number is answered from the library, with a way to send
        # it to the officials instead; that button puts it in the commune's inbox.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "Quyết định 1191/QĐ-TTg nói gì?")
        guessed = await wait_text(api, CHAT, "Văn bản tìm được", after=mark)
        assert button_data(guessed, "rd:")[0] == f"rd:{decision}:0"
        assert buttons(guessed)[texts.ASK_OFFICIALS] == "ask"
        api.user_presses(CHAT, "ask")
        await wait_text(
            api, CHAT, "Đã chuyển ý kiến của bạn tới cán bộ Đặc khu Cát Hải", after=mark
        )
        # A report from the sea is never taken for a search, even with a legal word in it.
        api.user_sends(CHAT, "Luật có cấm tàu lạ vào đây không? Tàu lạ đang neo gần đảo!")
        await wait_text(api, CHAT, "Đã chuyển tin KHẨN", after=mark)
        api.user_sends(CHAT, "Phao số 3 ở cửa biển bị trôi")
        await wait_text(api, CHAT, "Đã chuyển ý kiến", after=mark + 3)
        async with seeded.sessions() as session:
            rows = (await session.scalars(select(InboxMessage).order_by(InboxMessage.id))).all()
        assert [(r.text, r.urgent) for r in rows] == [
            ("Quyết định 1191/QĐ-TTg nói gì?", False),
            ("Luật có cấm tàu lạ vào đây không? Tàu lạ đang neo gần đảo!", True),
            ("Phao số 3 ở cửa biển bị trôi", False),
        ]

        # Read: pages under 4096 characters, cut at paragraph ends, turned by editing.
        mark = count(api, CHAT)
        api.user_sends(CHAT, f"/tracuu {LONG_NUMBER}")
        found = await wait_text(api, CHAT, "Văn bản tìm được", after=mark)
        api.user_presses(CHAT, f"rd:{guidance}:0")
        page = await wait_text(api, CHAT, "📖 Trang 1/", after=mark)
        pages = int(page.text.split("/", 1)[1].split("\n", 1)[0])
        assert pages == 3
        shown = [page.text]
        for number in range(1, pages):
            api.user_presses(CHAT, f"rp:{guidance}:{number}")
            turned = await wait_text(api, CHAT, f"📖 Trang {number + 1}/{pages}", after=mark)
            assert turned.method == "editMessageText"
            shown.append(turned.text)
        assert all(len(text) <= 4096 for text in shown)
        bodies = [page_body(text) for text in shown]
        assert all(body.rstrip().endswith(".") for body in bodies)  # whole paragraphs
        whole = await reading_text(seeded, guidance)
        assert "\n\n".join(bodies).split() == whole.split()
        api.user_presses(CHAT, f"rp:{guidance}:{pages - 2}")  # and back
        await wait_text(api, CHAT, f"📖 Trang {pages - 1}/{pages}", after=mark + len(shown))
        # The results' buttons stayed usable while the document was read.
        assert button_data(await wait_text(api, CHAT, "Văn bản tìm được", after=mark), "rd:")

        # Listen: answered at once, rendered in the background while other chats are served,
        # then uploaded; a second request reuses the rendered files and Telegram's file id.
        assert await document_audio_rows(seeded) == 0
        mark = count(api, CHAT)
        api.user_presses(CHAT, f"ls:{guidance}")
        api.user_sends(OTHER_CHAT, "/tracuu bão số 3")
        await wait_text(api, CHAT, "Đang chuẩn bị bản nghe «Hướng dẫn an toàn", after=mark)
        other = await wait_text(api, OTHER_CHAT, "Văn bản tìm được")
        voice = await wait_text(api, CHAT, "🔊 Hướng dẫn an toàn", after=mark, timeout=60)
        assert voice.method == "sendVoice"
        sent = api.sent_to(CHAT, methods={"sendVoice"})
        answered = [r for r in api.sent_to(OTHER_CHAT) if r.text == other.text]
        assert answered[0].timestamp < sent[0].timestamp  # the other chat did not wait
        assert sent[0].file is not None and sent[0].file.source == "upload"
        uploaded = api.file_bytes(sent[0].file.file_id)
        assert uploaded is not None and uploaded[:4] == b"OggS"
        assert await document_audio_rows(seeded) == 3  # mp3, aac, ogg
        assert voices_of(service).rendered == 1
        api.user_presses(OTHER_CHAT, f"ls:{library_ids['cd-bao-so-3.md']}")
        api.user_presses(CHAT, f"ls:{guidance}", check_button=False)
        await until(lambda: len(api.sent_to(CHAT, methods={"sendVoice"})) == 2, 60)
        again = api.sent_to(CHAT, methods={"sendVoice"})[1]
        assert again.file is not None and again.file.source == "file_id"
        assert again.file.file_id == sent[0].file.file_id
        await until(lambda: api.sent_to(OTHER_CHAT, methods={"sendVoice"}), 60)
        assert voices_of(service).rendered == 2  # the guidance once, the storm once
        assert await document_audio_rows(seeded) == 6
        assert [c.params.get("action") for c in api.calls_to("sendChatAction")][:1] == [
            "upload_voice"
        ]
        # A stale button for a document no longer in the library.
        mark = count(api, CHAT)
        api.user_presses(CHAT, "ls:999999", check_button=False)
        await wait_text(api, CHAT, texts.DOCUMENT_GONE, after=mark)
        api.user_presses(CHAT, "rd:999999:0", check_button=False)
        await wait_text(api, CHAT, texts.DOCUMENT_GONE, after=mark + 1)

        # Internal documents (not public) stay off chat, even by a forged button.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/tracuu tuần tra nội bộ")
        nothing = await wait_text(api, CHAT, "Văn bản", after=mark)
        assert "Quy trình tuần tra" not in nothing.text
        api.user_presses(CHAT, f"rd:{library_ids['noi-bo.md']}:0", check_button=False)
        api.user_presses(CHAT, f"ls:{library_ids['noi-bo.md']}", check_button=False)
        await until(
            lambda: [
                r
                for r in api.sent_to(CHAT, methods=SENDS_AND_EDITS)[mark:]
                if r.text == texts.DOCUMENT_GONE
            ][1:]
        )

        # Browse: /tracuu alone lists the topics with their counts, then a topic's documents.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/tracuu")
        topics = await wait_text(api, CHAT, "Thư viện văn bản", after=mark)
        law_topic = next(
            label for label in buttons(topics) if label.startswith("Phổ biến pháp luật")
        )
        assert buttons(topics)[law_topic] == "tp:phap-luat:0"
        in_topic = int(law_topic.rsplit("(", 1)[1].rstrip(")"))
        async with seeded.sessions() as session:
            law_documents = await library.browse(session, "phap-luat", limit=100)
        assert in_topic == len(law_documents) - 1  # all but the internal one
        api.user_presses(CHAT, "tp:phap-luat:0")
        listed = await wait_text(api, CHAT, "🗂 Phổ biến pháp luật – trang 1/", after=mark)
        assert listed.method == "editMessageText"
        assert listed.text.count("📄") == 5 and in_topic > 5
        # Newest first: the long guidance (2026) heads the list.
        assert listed.text.split("\n")[1].startswith("📄 Hướng dẫn an toàn cho tàu cá")
        api.user_presses(CHAT, "tp:phap-luat:1")
        await wait_text(api, CHAT, "🗂 Phổ biến pháp luật – trang 2/", after=mark)
        api.user_presses(CHAT, "tp")
        back = await wait_text(api, CHAT, "Thư viện văn bản", after=mark + 1)
        assert back.method == "editMessageText"

        # A person who reads English gets the English summary of the law first.
        mark = count(api, CHAT)
        api.user_sends(CHAT, "/caidat")
        await wait_text(api, CHAT, "Cài đặt", after=mark)
        api.user_presses(CHAT, "s:lang")
        await wait_text(api, CHAT, "ngôn ngữ nào", after=mark)
        api.user_presses(CHAT, "l:en")
        await wait_text(api, CHAT, "Đã lưu", after=mark)
        api.user_sends(CHAT, "/tracuu luật thủy sản 2017")
        found = await wait_text(api, CHAT, "Văn bản tìm được", after=mark)
        items = found.text.split("\n\n")[1:]
        assert items[0].startswith("📄 Fisheries Law 2017")
        assert any(item.startswith("📄 Luật Thủy sản (số 18/2017/QH14)") for item in items)


async def test_search_read_listen_and_reply_on_zalo(
    seeded: Database, tmp_path: Path, library_ids: dict[str, int]
) -> None:
    guidance = library_ids["huong-dan-an-toan.md"]
    async with (
        FakeZaloAPI() as api,
        library_service(api, seeded, tmp_path, webhook=True) as service,
    ):
        api.user_sends(ZALO_CHAT, "/start c11914")
        await wait_text(api, ZALO_CHAT, "đã đăng ký")

        # "tra cứu …" typed, with or without marks: numbered results, answered by number.
        for words in ("tra cứu Bão số 3", "tra cuu bao so 3"):
            mark = count(api, ZALO_CHAT)
            api.user_sends(ZALO_CHAT, words)
            found = await wait_text(api, ZALO_CHAT, "Văn bản tìm được", after=mark)
            assert "📄 Công điện về việc tập trung ứng phó khẩn cấp với bão số 3" in found.text
            assert "1. 📖 Đọc" in found.text and "2. 🔊 Nghe" in found.text
            assert len(found.text) <= 2000

        # Read: pages under 2000 characters (numbered options included), "tiếp" / "trước".
        mark = count(api, ZALO_CHAT)
        api.user_sends(ZALO_CHAT, f"tra cuu {LONG_NUMBER}")
        found = await wait_text(api, ZALO_CHAT, "Văn bản tìm được", after=mark)
        api.user_sends(ZALO_CHAT, option_number(found.text, f"📖 Đọc {LONG_NUMBER}"))
        page = await wait_text(api, ZALO_CHAT, "📖 Trang 1/", after=mark)
        pages = int(page.text.split("/", 1)[1].split("\n", 1)[0])
        assert pages == 6
        shown = [page.text]
        for number in range(2, pages + 1):
            api.user_sends(ZALO_CHAT, "tiếp" if number % 2 else "tiep")
            shown.append((await wait_text(api, ZALO_CHAT, f"📖 Trang {number}/", after=mark)).text)
        assert all(len(text) <= 2000 for text in shown)
        assert count(api, ZALO_CHAT) - mark == 1 + pages  # the results, then one message a page
        whole = await reading_text(seeded, guidance)
        bodies = [page_body(text) for text in shown]
        assert "\n\n".join(bodies).split() == whole.split()
        mark = count(api, ZALO_CHAT)
        api.user_sends(ZALO_CHAT, "trước")
        back = await wait_text(api, ZALO_CHAT, f"📖 Trang {pages - 1}/{pages}", after=mark)

        # Listen: a link to the AAC under PUBLIC_BASE_URL, which the service serves.
        api.user_sends(ZALO_CHAT, option_number(back.text, texts.LISTEN_THIS))
        await wait_text(api, ZALO_CHAT, "Đang chuẩn bị bản nghe", after=mark)
        link = await wait_text(api, ZALO_CHAT, "🔊 Nghe Hướng dẫn an toàn", after=mark, timeout=60)
        url = link.text.rsplit(": ", 1)[1]
        assert url.startswith(f"{service.settings.public_base_url}".rstrip("/") + "/audio/files/")
        assert url.endswith(".aac")
        async with httpx.AsyncClient() as client:
            fetched = await client.get(url)
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/aac"
        assert fetched.content[0] == 0xFF and fetched.content[1] & 0xF0 == 0xF0  # ADTS sync

        # Browse by topic with numbers.
        mark = count(api, ZALO_CHAT)
        api.user_sends(ZALO_CHAT, "tra cuu")
        topics = await wait_text(api, ZALO_CHAT, "Thư viện văn bản", after=mark)
        api.user_sends(ZALO_CHAT, option_number(topics.text, "Thời tiết – thiên tai"))
        listed = await wait_text(api, ZALO_CHAT, "🗂 Thời tiết – thiên tai – trang 1/", after=mark)
        assert "Công điện" in listed.text

        # A report from the sea reaches the commune's inbox flagged urgent; an official's
        # answer reaches this chat.
        mark = count(api, ZALO_CHAT)
        report = "Tàu nước ngoài đang đánh bắt trong vùng biển Cát Hải, đề nghị cán bộ xử lý"
        api.user_sends(ZALO_CHAT, report)
        await wait_text(api, ZALO_CHAT, "Đã chuyển tin KHẨN", after=mark)
        async with seeded.sessions.begin() as session:
            message = await session.scalar(select(InboxMessage).where(InboxMessage.text == report))
            assert message is not None and message.urgent
            official = await officials.create(
                session, username="catba", role=OfficialRole.commune_editor,
                password="x" * 12, area_code="11914",
            )  # fmt: skip
            await inbox.reply(
                session, message_id=message.id, text="Đồn Biên phòng đã cử tàu ra kiểm tra.",
                by=official, now=NOW,
            )  # fmt: skip
            message_id = message.id
        await service.send_inbox_reply(message_id)
        answer = await wait_text(api, ZALO_CHAT, "Cán bộ Đặc khu Cát Hải trả lời", after=mark)
        assert "Đồn Biên phòng đã cử tàu ra kiểm tra." in answer.text


async def test_zalo_without_a_public_address_gets_a_note_instead_of_audio(
    seeded: Database, tmp_path: Path, library_ids: dict[str, int]
) -> None:
    async with FakeZaloAPI() as api, library_service(api, seeded, tmp_path) as service:
        api.user_sends(ZALO_CHAT, "tra cứu 1191")
        found = await wait_text(api, ZALO_CHAT, "Văn bản tìm được")
        api.user_sends(ZALO_CHAT, option_number(found.text, "🔊 Nghe 1191/QĐ-TTg"))
        await wait_text(api, ZALO_CHAT, "chưa có địa chỉ công khai")
        assert not [r for r in api.sent_to(ZALO_CHAT) if "Đang chuẩn bị" in (r.text or "")]
        assert voices_of(service).rendered == 0  # nothing rendered that nobody could fetch
        assert await document_audio_rows(seeded) == 0
