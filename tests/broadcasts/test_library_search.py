"""Search quality: 66 queries, with and without diacritics, find their document in the top 3."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broadcasts import documents, library
from tests.conftest import Database

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
# The corpus: short summaries written for these tests (our own wording, not the official
# texts; numbers and dates are illustrative), with the front matter officials would add.
CORPUS = Path(__file__).parent.parent / "data" / "documents"

# (query, the file whose document must be among the first three results)
QUALITY_SET: tuple[tuple[str, str], ...] = (
    # by document number, in the ways people type it
    ("1191", "qd-1191-ttg.txt"),
    ("1191/QĐ-TTg", "qd-1191-ttg.txt"),
    ("1191/qd-ttg", "qd-1191-ttg.txt"),
    ("quyết định 1191", "qd-1191-ttg.txt"),
    ("37/2024/NĐ-CP", "nd-37-2024.md"),
    ("nghi dinh 37", "nd-37-2024.md"),
    ("38/2024", "nd-38-2024.md"),
    ("số 18/2012/QH13", "luat-bien-2012.md"),
    ("36-NQ/TW", "nq-36-kinh-te-bien.md"),
    # names and subjects, with diacritics
    ("Luật Thủy sản", "luat-thuy-san-2017.md"),
    ("luật biển việt nam", "luat-bien-2012.md"),
    ("chống khai thác IUU", "ct-32-2023-iuu.md"),
    ("bão số 3", "cd-bao-so-3.md"),
    ("áp thấp nhiệt đới", "cd-ap-thap.md"),
    ("giám sát hành trình", "tt-vms.md"),
    ("nhật ký khai thác", "tt-nhat-ky.md"),
    ("xác nhận nguồn gốc thủy sản", "tt-xac-nhan-nguon-goc.md"),
    ("số đăng ký sơn trên mạn tàu", "tt-dang-ky-tau.md"),
    ("áo phao", "an-toan-lao-dong.md"),
    ("xử phạt vi phạm hành chính thủy sản", "nd-38-2024.md"),
    ("cảnh sát biển", "luat-canh-sat-bien.md"),
    ("tàu nước ngoài trong vùng biển Việt Nam", "nd-tau-nuoc-ngoai.md"),
    ("sửa cầu cảng Cát Bà", "tb-sua-cau-cang.md"),
    ("cấm dùng chất nổ, xung điện", "ngu-cu-cam.md"),
    ("tổ đoàn kết trên biển", "to-doan-ket.md"),
    ("tràn dầu", "su-co-tran-dau.md"),
    ("bằng thuyền trưởng", "chung-chi-thuyen-truong.md"),
    ("vùng lộng, vùng khơi", "vung-khai-thac.md"),
    ("bảo hiểm thuyền viên", "bao-hiem-thuyen-vien.md"),
    ("Đề án tuyên truyền pháp luật cho ngư dân", "qd-1191-ttg.txt"),
    # the same kind of queries typed without diacritics
    ("luat thuy san 2017", "luat-thuy-san-2017.md"),
    ("lanh hai 12 hai ly", "luat-bien-2012.md"),
    ("the vang IUU chau au", "ct-32-2023-iuu.md"),
    ("bao so 3 cam bien", "cd-bao-so-3.md"),
    ("mat ket noi 10 ngay", "tt-vms.md"),
    ("nhat ky dien tu", "tt-nhat-ky.md"),
    ("cang ca chi dinh", "qd-cang-ca-chi-dinh.md"),
    ("cabin mau cam", "tt-dang-ky-tau.md"),
    ("vay von dong tau vo thep", "nd-67-2014.md"),
    ("phat tien mot ty dong", "nd-38-2024.md"),
    ("luat phong chong thien tai", "luat-phong-chong-thien-tai.md"),
    ("cap do rui ro thien tai", "qd-18-2021-cap-do-rui-ro.md"),
    ("bo doi bien phong cua khau", "luat-bien-phong.md"),
    ("vinh bac bo", "hiep-dinh-vinh-bac-bo.md"),
    ("cong uoc luat bien 1982", "unclos-1982.md"),
    ("bo quy tac ung xu bien dong", "doc-bien-dong.md"),
    ("mua cam khai thac ca bo me", "tb-mua-cam-khai-thac.md"),
    ("rua bien ca heo", "loai-nguy-cap.md"),
    ("kenh 16 VHF cuu nan", "tim-kiem-cuu-nan.md"),
    ("ngu dan bi nuoc ngoai bat giu", "bao-ho-ngu-dan.md"),
    ("khu neo dau tranh tru bao", "quy-che-cang-neo-dau.md"),
    ("chuyen doi nghe", "chuyen-doi-nghe.md"),
    ("gio mua dong bac", "cd-gio-mua-dong-bac.md"),
    ("cuoc thi tim hieu bien dao hoc sinh", "tuyen-truyen-truong-hoc.md"),
    ("tuan le bien va hai dao", "tuan-le-bien.md"),
    ("kinh te bien ben vung", "nq-36-kinh-te-bien.md"),
    ("treo co to quoc tren tau ca", "treo-quoc-ky.md"),
    ("nuoi long be tom hum", "nuoi-bien.md"),
    # abbreviations and synonyms, unfinished words, questions, the eth look-alike of Đ
    ("UNCLOS", "unclos-1982.md"),
    ("VMS", "tt-vms.md"),
    ("đánh bắt trái phép vùng biển nước ngoài", "nd-38-2024.md"),
    ("giam sat hanh tr", "tt-vms.md"),
    ("tuyen truyen phap luat ngu da", "qd-1191-ttg.txt"),
    ("tàu cá phải lắp thiết bị gì?", "tt-vms.md"),
    ("cho tôi hỏi văn bản về cấp độ rủi ro bão", "qd-18-2021-cap-do-rui-ro.md"),
    ("ÐỀ ÁN TUYÊN TRUYỀN", "qd-1191-ttg.txt"),
)


@pytest.fixture
async def library_ids(seeded: Database) -> dict[str, int]:
    """The corpus imported in one transaction; file name → document id."""
    files = sorted(p for p in CORPUS.iterdir() if p.suffix in (".md", ".txt"))
    async with seeded.sessions.begin() as session:
        imported = await documents.import_files(session, files, now=NOW)
    return {one.source: one.document.id for one in imported}


def test_the_quality_set_is_big_and_covers_every_kind_of_query() -> None:
    queries = [query for query, _ in QUALITY_SET]
    assert len(QUALITY_SET) >= 40
    assert len(set(queries)) == len(queries)
    plain = [q for q in queries if q.isascii()]
    numbers = [q for q in queries if any(ch.isdigit() for ch in q) and "/" in q]
    assert len(plain) >= 20 and len(numbers) >= 6


async def test_expected_document_is_in_the_top_three(
    seeded: Database, library_ids: dict[str, int]
) -> None:
    misses = []
    async with seeded.sessions() as session:
        for query, expected in QUALITY_SET:
            hits = await library.search(session, query, limit=3)
            if library_ids[expected] not in [hit.document_id for hit in hits]:
                misses.append(f"{query!r} → {[hit.title for hit in hits]}, wanted {expected}")
    assert not misses, "\n".join(misses)


async def test_a_number_query_puts_that_document_first(
    seeded: Database, library_ids: dict[str, int]
) -> None:
    async with seeded.sessions() as session:
        for query in ("1191", "1191/QĐ-TTg", "1191/qd-ttg", "số 1191", "Quyết định 1191"):
            hits = await library.search(session, query)
            assert hits[0].document_id == library_ids["qd-1191-ttg.txt"], query
            assert hits[0].number == "1191/QĐ-TTg"
        # "bão số 3" is a storm, not document number 3.
        storm = await library.search(session, "bão số 3", limit=1)
        assert storm[0].document_id == library_ids["cd-bao-so-3.md"]


async def test_snippets_highlight_the_match_in_the_original_text(
    seeded: Database, library_ids: dict[str, int]
) -> None:
    async with seeded.sessions() as session:
        hit = (await library.search(session, "giam sat hanh trinh", limit=1))[0]
        assert "«giám sát hành trình»" in hit.snippet
        vms = (await library.search(session, "VMS mất kết nối", limit=1))[0]
        assert vms.document_id == library_ids["tt-vms.md"]
        assert "«mất kết nối»" in vms.snippet or "«mất kết" in vms.snippet
        partial = (await library.search(session, "khai thác hải sả", limit=3))[0]
        assert "«khai thác hải sản»" in partial.snippet
        assert len(partial.snippet) <= library.SNIPPET_CHARS + 2  # with the … marks


async def test_filters_by_topic_and_language(seeded: Database, library_ids: dict[str, int]) -> None:
    async with seeded.sessions() as session:
        weather = await library.search(session, "bao", topic="thoi-tiet", limit=10)
        assert weather
        weather_topics = [await library.topics_of(session, h.document_id) for h in weather]
        assert all("thoi-tiet" in topics for topics in weather_topics)
        english = await library.search(session, "fishing vessel monitoring", language="en")
        assert [hit.document_id for hit in english] == [library_ids["fisheries-law-en.md"]]
        assert await library.search(session, "bão số 3", language="en") == []
        by_number_in_other_topic = await library.search(session, "1191", topic="thoi-tiet")
        assert by_number_in_other_topic == []
        with pytest.raises(library.LibraryError, match="unknown topic: khong-co"):
            await library.search(session, "bão", topic="khong-co")
        assert await library.search(session, "   ?!  ") == []


async def test_browse_by_topic_and_counts(seeded: Database, library_ids: dict[str, int]) -> None:
    async with seeded.sessions() as session:
        counts = {count.slug: count.documents for count in await library.topic_counts(session)}
        assert counts["thoi-tiet"] >= 6 and counts["iuu"] >= 6
        assert sum(counts.values()) >= len(library_ids)
        weather = await library.browse(session, "thoi-tiet", limit=50)
        assert len(weather) == counts["thoi-tiet"]
        dates = [doc.issued_on for doc in weather if doc.issued_on is not None]
        assert dates == sorted(dates, reverse=True)  # newest first
        first_page = await library.browse(session, limit=5)
        second_page = await library.browse(session, limit=5, offset=5)
        assert len(first_page) == 5 and not {d.id for d in first_page} & {d.id for d in second_page}
