"""Diacritic folding and NFC."""

from __future__ import annotations

import unicodedata

import pytest

from db.text import fold, nfc


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
