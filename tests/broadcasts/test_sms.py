"""SMS text rules over many generated inputs: folding, parts, cost, brandnames, numbers."""

from __future__ import annotations

import math
import random
import unicodedata

import pytest

from broadcasts import sms
from broadcasts.sms import Encoding, GatewayTariff

VOWELS = "aăâeêioôơuưy"
TONES = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]  # huyền sắc hỏi ngã nặng
WORDS = [
    "Bão",
    "số",
    "3",
    "gió",
    "cấp",
    "8-9",
    "giật",
    "cấp 11",
    "tàu",
    "thuyền",
    "khẩn",
    "trương",
    "về",
    "nơi",
    "trú",
    "ẩn",
    "Đà Nẵng",
    "Quảng Ngãi",
    "ngư dân",
    "lưu ý",
    "sóng",
    "cao",
    "4,5m",
    "biển",
    "động",
    "mạnh",
    "“Đã nhận”",
    "—",
    "…",
    "28°C",
    "🚨",
    "{khẩn}",
    "[1/2]",
    "€",
    "100%",
    "\n",
]


def every_toned_vowel() -> list[tuple[str, str]]:
    """(the letter with a tone, its plain ASCII base) for every Vietnamese vowel and tone,
    in both cases."""
    pairs = []
    for vowel in VOWELS:
        base = unicodedata.normalize("NFD", vowel)[0]
        for tone in TONES:
            letter = unicodedata.normalize("NFC", vowel + tone)
            pairs.append((letter, base))
            pairs.append((letter.upper(), base.upper()))
    return pairs


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def test_every_vowel_with_every_tone_folds_to_its_base_letter() -> None:
    pairs = every_toned_vowel()
    assert len(pairs) == len(VOWELS) * len(TONES) * 2
    for letter, base in pairs:
        assert sms.to_gsm7(letter) == base, letter
    assert sms.to_gsm7("Đường đi") == "Duong di"
    assert sms.to_gsm7("ĐĂNG KÝ") == "DANG KY"


def test_folded_text_is_gsm7_and_keeps_ascii_words() -> None:
    assert sms.to_gsm7("Bão số 3: gió cấp 8–9, giật cấp 11") == "Bao so 3: gio cap 8-9, giat cap 11"
    assert sms.to_gsm7("🚨 Khẩn: “Đã nhận”…") == 'Khan: "Da nhan"...'
    assert sms.to_gsm7("Nhiệt độ 28°C\t{x}") == "Nhiet do 28doC {x}"
    assert sms.to_gsm7("a\u00a0b 中文 c") == "a b c"  # other scripts are dropped
    # NFD input (as some keyboards send) folds the same as NFC.
    assert sms.to_gsm7(unicodedata.normalize("NFD", "Hải Đăng")) == "Hai Dang"


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_fold_and_cut_exactly(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng, rng.randint(0, 400))
    tariff = GatewayTariff(cost_per_part_vnd=rng.choice([300, 550, 800]))
    for encoding in Encoding:
        prepared = sms.prepare(text, encoding)
        if encoding is Encoding.gsm7_unaccented:
            assert all(ch in sms.GSM7_BASIC or ch in sms.GSM7_EXTENSION for ch in prepared)
            sms.encode_part(prepared, encoding)  # every character has a GSM-7 code
        plan = sms.plan(text, encoding, tariff)
        single, part = tariff.limits(encoding)
        assert plan.text == prepared  # nothing lost or added by the cut
        assert plan.characters == sms.length(prepared, encoding)
        assert plan.cost_vnd == plan.count * tariff.cost_per_part_vnd
        if plan.characters == 0:
            assert plan.count == 0
        elif plan.characters <= single:
            assert plan.count == 1
        else:
            assert all(sms.length(p, encoding) <= part for p in plan.parts)
            # Full parts except the last: a part is short only by a unit it could not
            # take (a two-unit character that did not fit).
            assert all(sms.length(p, encoding) >= part - 1 for p in plan.parts[:-1])
            assert plan.count >= math.ceil(plan.characters / part)


@pytest.mark.parametrize(
    ("encoding", "single", "units", "parts"),
    [
        (Encoding.gsm7_unaccented, 160, 160, 1),
        (Encoding.gsm7_unaccented, 160, 161, 2),
        (Encoding.gsm7_unaccented, 160, 306, 2),
        (Encoding.gsm7_unaccented, 160, 307, 3),
        (Encoding.gsm7_unaccented, 123, 123, 1),  # VinaPhone
        (Encoding.gsm7_unaccented, 123, 124, 2),
        (Encoding.gsm7_unaccented, 123, 246, 2),
        (Encoding.gsm7_unaccented, 123, 247, 3),
        (Encoding.ucs2, 70, 70, 1),
        (Encoding.ucs2, 70, 71, 2),
        (Encoding.ucs2, 70, 134, 2),
        (Encoding.ucs2, 70, 135, 3),
    ],
)
def test_part_boundaries(encoding: Encoding, single: int, units: int, parts: int) -> None:
    tariff = GatewayTariff(cost_per_part_vnd=500, single_limit=single)
    letter = "ơ" if encoding is Encoding.ucs2 else "o"
    plan = sms.plan(letter * units, encoding, tariff)
    assert plan.count == parts
    assert plan.cost_vnd == parts * 500


def test_extension_characters_count_two_and_are_never_split() -> None:
    assert sms.length("{a}€", Encoding.gsm7_unaccented) == 7
    assert sms.plan("a" * 159 + "€", Encoding.gsm7_unaccented, GatewayTariff(1)).count == 2
    text = "a" * 152 + "{" + "b" * 20
    parts = sms.segments(text, Encoding.gsm7_unaccented)
    assert parts[0] == "a" * 152 and parts[1].startswith("{")
    assert sms.encode_part("@€", Encoding.gsm7_unaccented) == b"\x00\x1b\x65"


def test_ucs2_counts_utf16_units_and_keeps_surrogate_pairs_whole() -> None:
    assert sms.length("Bão🚨", Encoding.ucs2) == 5
    text = "ư" * 66 + "🚨" + "ư" * 10
    parts = sms.segments(text, Encoding.ucs2)
    assert parts[0] == "ư" * 66 and parts[1].startswith("🚨")
    assert sms.encode_part("Đã", Encoding.ucs2).decode("utf-16-be") == "Đã"
    # NFD would spend two units on each accented letter: UCS-2 goes out in NFC.
    assert sms.prepare(unicodedata.normalize("NFD", "Bão"), Encoding.ucs2) == "Bão"


def test_a_long_bulletin_costs_less_unaccented() -> None:
    text = random_text(random.Random(7), 120)
    tariff = GatewayTariff(cost_per_part_vnd=650)
    gsm7 = sms.plan(text, Encoding.gsm7_unaccented, tariff)
    ucs2 = sms.plan(text, Encoding.ucs2, tariff)
    assert gsm7.count < ucs2.count
    assert gsm7.cost_vnd < ucs2.cost_vnd


def test_too_many_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        sms.segments("a" * (153 * 255 + 1), Encoding.gsm7_unaccented)


@pytest.mark.parametrize("name", ["HAIDANG", "UBND.HP", "BIEN-PHONG", "Bao 3", "A1234567890"])
def test_valid_brandnames(name: str) -> None:
    assert sms.check_brandname(name) == name


@pytest.mark.parametrize(
    "name", ["", "A12345678901", "Hải Đăng", "HAI_DANG", " HAIDANG", "HAIDANG ", "12345", "A/B"]
)
def test_invalid_brandnames(name: str) -> None:
    with pytest.raises(ValueError):
        sms.check_brandname(name)


@pytest.mark.parametrize(
    "raw",
    [
        "0912345678",
        "+84 912 345 678",
        "84912345678",
        "912345678",
        "091-234-5678",
        "(+84) 912.345.678",
    ],
)
def test_numbers_are_normalised(raw: str) -> None:
    assert sms.msisdn(raw) == "84912345678"


@pytest.mark.parametrize(
    "raw", ["", "12345", "0212345678", "+1 415 555 0100", "849123456789", "09123456７8", "abc"]
)
def test_non_mobile_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        sms.msisdn(raw)


def test_masked_numbers_keep_only_the_country_code_and_last_three() -> None:
    assert sms.mask("84912345678") == "84******678"
    assert "912345" not in sms.mask("84912345678")
