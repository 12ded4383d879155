"""Whole public bulletins through the spoken-text normaliser: what a loudspeaker listener hears."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from audio.spoken import default_abbreviations, to_spoken

BULLETIN_DIR = Path(__file__).resolve().parent.parent / "data" / "bulletins"


def _read(name: str) -> tuple[str, str]:
    """A bulletin file: its `# Nguồn: …` header line, then the text as published."""
    lines = (BULLETIN_DIR / name).read_text(encoding="utf-8").splitlines(keepends=True)
    header = "".join(line for line in lines if line.startswith("#"))
    body = "".join(line for line in lines if not line.startswith("#"))
    return header, body


FILES = sorted(path.name for path in BULLETIN_DIR.glob("*.txt"))

# Phrases a listener must hear, and the wrong readings issue #16 reported, per bulletin.
HEARD = {
    "storm_yagi_2024.txt": [
        "từ ngày năm đến ngày sáu tháng chín, bão Yagi, bão số ba,",
        "mười tám phẩy chín độ vĩ bắc; một trăm mười tám độ kinh đông",
        "cấp mười một, một trăm linh ba đến một trăm mười bảy ki-lô-mét trên giờ, giật cấp mười ba",
        "cách đảo Hải Nam, Trung Quốc, khoảng năm trăm sáu mươi ki-lô-mét về phía Đông",
        "tốc độ khoảng mười đến mười lăm ki-lô-mét trên giờ",
    ],
    "storm_wipha_2025.txt": [
        "cơn bão số ba Wipha",
        "Lúc mười sáu giờ ngày hai mươi mốt tháng bảy",
        "cấp chín đến cấp mười, bảy mươi lăm đến một trăm linh hai ki-lô-mét trên giờ",
        "mỗi giờ đi được mười đến mười lăm ki-lô-mét",
    ],
    "storm_kajiki_2025.txt": [
        "Hồi mười ba giờ ngày hai mươi ba tháng tám, vị trí tâm bão số năm, tên quốc tế Kajiki",
        "mười bảy phẩy chín độ vĩ bắc, một trăm mười phẩy một độ kinh đông",
        "Vĩ tuyến mười sáu phẩy không độ vĩ bắc đến hai mươi phẩy không độ vĩ bắc",
        "một trăm linh tám phẩy không độ kinh đông đến một trăm mười bảy phẩy không độ kinh đông",
        "vùng biển ngoài khơi Quảng Trị, Huế chịu rủi ro thiên tai cấp độ ba",
    ],
    "law_nd42_2019.txt": [
        "Chính phủ đã ban hành Nghị định số bốn mươi hai năm hai nghìn không trăm mười chín của"
        " Chính phủ quy định về xử phạt",
        "gồm có bốn chương và năm mươi tám điều",
        "thay thế Nghị định số một trăm linh ba năm hai nghìn không trăm mười ba của Chính phủ"
        " ngày mười hai tháng chín năm hai nghìn không trăm mười ba",
        "Chương một. quy định chung. Điều một. Phạm vi điều chỉnh.",
    ],
    "law_iuu_2025.txt": [
        "Thực hiện Quyết định số hai nghìn ba trăm mười của Thủ tướng Chính phủ và Công điện số"
        " một trăm chín mươi tám ngày mười bảy tháng mười năm hai nghìn không trăm hai mươi lăm"
        " của Thủ tướng Chính phủ",
        "gỡ thẻ vàng của Ủy ban châu Âu, xây dựng",
        "liên tục hai mươi tư trên hai mươi tư giờ đối với tàu có chiều dài từ mười lăm mét",
        "mất kết nối hệ thống giám sát tàu cá trên sáu giờ",
        "phạt hành chính đến một tỷ đồng.",
    ],
    "law_nd26_2019.txt": [
        "Nghị định số hai mươi sáu năm hai nghìn không trăm mười chín của Chính phủ quy định chi"
        " tiết",
        "Mẫu số hai mươi sáu chấm en tê Phụ lục ba",
        "liên quan đến Quyền sử dụng đất: Giấy Chứng nhận quyền sử dụng đất",
        "nuôi trồng thủy sản; Giấy phép hoạt động nuôi trồng thủy sản",
        "vị trí ao, lồng nuôi",
        "Trong thời hạn năm ngày làm việc",
        "từ ngày hai mươi lăm tháng tư năm hai nghìn không trăm mười chín.",
    ],
}
NEVER_HEARD = [
    "nghị định Chính phủ",  # the type said twice
    "quyết định Thủ tướng",
    "chỉ thị Thủ tướng",
    "của Chính phủ của Chính phủ",
    "đồng trên",  # "per" heard as "on"
    "i dài a giê i",  # a storm name spelled
    "vê kép i pê hát a",
    "tê tê dê bê",  # an agency acronym spelled
    "quy ét dê đê",
]
KEYS = [
    re.compile(rf"(?<!\w){re.escape(key)}(?!\w)" if re.search(r"\w$", key) else re.escape(key))
    for key in default_abbreviations()
]


def test_the_six_bulletins_are_there_with_their_sources() -> None:
    assert len(FILES) == 6 and sorted(HEARD) == FILES
    for name in FILES:
        header, body = _read(name)
        assert header.startswith("# Nguồn: ") and re.search(r"https?://\S+", header), name
        assert len(body) > 400, name


@pytest.mark.parametrize("name", FILES)
def test_a_bulletin_is_spoken_without_digits_symbols_or_abbreviations(name: str) -> None:
    _, body = _read(name)
    out = to_spoken(body)
    assert not any(char.isdigit() for char in out), out
    assert re.fullmatch(r"[\w\s.,;:!?\-]+", out), re.findall(r"[^\w\s.,;:!?\-]", out)
    assert [p.pattern for p in KEYS if p.search(out)] == []
    assert unicodedata.is_normalized("NFC", out)
    assert to_spoken(out) == out


@pytest.mark.parametrize(
    ("name", "phrase"), [(name, phrase) for name, phrases in HEARD.items() for phrase in phrases]
)
def test_a_bulletins_key_phrases_are_read_right(name: str, phrase: str) -> None:
    assert phrase in to_spoken(_read(name)[1])


@pytest.mark.parametrize("name", FILES)
def test_no_bulletin_repeats_the_readings_issue_16_reported(name: str) -> None:
    out = to_spoken(_read(name)[1]).lower()
    assert [wrong for wrong in NEVER_HEARD if wrong.lower() in out] == []
