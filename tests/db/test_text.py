"""Diacritic folding and NFC."""

from __future__ import annotations

import unicodedata

import pytest

from db.text import fold, nfc, split_message


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Cát Hải", "cat hai"),
        ("CAT HAI", "cat hai"),
        ("cat hai", "cat hai"),
        ("Đặc khu Cát Hải", "dac khu cat hai"),
        ("Ðắk Lắk", "dak lak"),  # eth typed for Đ
        ("  Thành   phố  Hồ Chí Minh ", "thanh pho ho chi minh"),
        ("Quảng Ngãi", "quang ngai"),
        ("Thừa Thiên Huế", "thua thien hue"),
        ("ĐỒNG THÁP", "dong thap"),
    ],
)
def test_fold_ignores_case_diacritics_and_d(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_fold_gives_the_same_for_nfd_input() -> None:
    assert fold(unicodedata.normalize("NFD", "Bình Sơn")) == fold("Bình Sơn") == "binh son"


def test_nfc_composes() -> None:
    decomposed = unicodedata.normalize("NFD", "Hải Đăng")
    assert decomposed != "Hải Đăng"
    assert nfc(decomposed) == "Hải Đăng"


def test_split_message_keeps_parts_under_the_limit_at_sentence_ends() -> None:
    sentence = "Bão số 3 đang mạnh lên, giật cấp 10. "
    text = sentence * 300  # about 11,000 characters
    parts = split_message(text, 4096)
    assert len(parts) == 3
    assert all(len(part) <= 4096 for part in parts)
    assert all(part.endswith("cấp 10.") for part in parts)
    assert " ".join(parts) == text.strip()


def test_split_message_prefers_paragraphs_and_keeps_line_breaks() -> None:
    text = ("Dòng một.\nDòng hai.\n\n" + "x" * 30 + "\n") * 3
    parts = split_message(text, 50)
    assert all(len(part) <= 50 for part in parts)
    assert parts[0] == "Dòng một.\nDòng hai."
    assert "\n".join(parts).replace("\n", "") == text.replace("\n", "")


def test_split_message_cuts_a_word_only_when_nothing_else_fits() -> None:
    assert split_message("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert split_message("ngắn", 2000) == ["ngắn"]
