"""SMS text rules: GSM-7 folding, concatenation into parts, cost, brandnames and numbers."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from db.text import nfc

# GSM 03.38 default alphabet, by code point (0x1B is the escape to the extension table).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>"
    "?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (the escape, then this code).
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_BASIC_INDEX = {ch: i for i, ch in enumerate(GSM7_BASIC) if ch != "\x1b"}
_SPACE_RUNS = re.compile(r" {2,}")
# Look-alikes that office software and phones put into bulletins, spelled in GSM-7.
_LOOKALIKES = str.maketrans(
    {
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "“": '"',
        "”": '"',
        "„": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "`": "'",
        "´": "'",
        "–": "-",
        "—": "-",
        "−": "-",
        "‐": "-",
        "•": "-",
        "·": "-",
        "…": "...",
        "°": "do",  # 28°C -> 28doC reads as Vietnamese "độ"
        "×": "x",
        "\t": " ",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
    }
)

# Concatenated parts give up room to the 6-octet UDH (05 00 03 ref total seq): 7 septets
# of GSM-7, 3 UCS-2 characters.
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
MAX_PARTS = 255  # the UDH counts parts in one octet
BRANDNAME_MAX = 11  # an alphanumeric sender address is at most 11 characters
_BRANDNAME = re.compile(r"[A-Za-z0-9.\- ]+")


class Encoding(enum.StrEnum):
    gsm7_unaccented = "gsm7_unaccented"  # folded to plain letters: 160/153 per part, cheaper
    ucs2 = "ucs2"  # Vietnamese with its accents as UTF-16: 70/67 per part


@dataclass(frozen=True)
class GatewayTariff:
    """What one gateway allows and charges. `single_limit`: GSM-7 characters in a single
    SMS (160 on Viettel and MobiFone, 123 on VinaPhone's brandname route); a concatenated
    part holds at most 153 and never more than the single limit. The cost of a part is
    the contract's (roughly 300–800 đ for brandname SMS), so it has no default here."""

    cost_per_part_vnd: int
    single_limit: int = GSM7_SINGLE
    ucs2_single_limit: int = UCS2_SINGLE

    def limits(self, encoding: Encoding) -> tuple[int, int]:
        """(characters in a single SMS, characters in each part of a longer one)."""
        if encoding is Encoding.ucs2:
            return self.ucs2_single_limit, min(UCS2_PART, self.ucs2_single_limit)
        return self.single_limit, min(GSM7_PART, self.single_limit)


# Characters of GSM-7 in a single SMS per carrier's brandname route: VinaPhone's leaves
# room for its own prefix. An aggregator reaching all three is held to the smallest.
CARRIER_SINGLE_LIMITS = {"viettel": 160, "mobifone": 160, "vinaphone": 123, "aggregator": 123}


def tariff_from(options: Mapping[str, object]) -> GatewayTariff:
    """A gateway's tariff from its options (bots.options): `cost_per_part_vnd` (the
    contract's price of one part, required) and `carrier` (viettel, mobifone, vinaphone,
    aggregator; default aggregator). Raises ValueError saying what is wrong."""
    cost = options.get("cost_per_part_vnd")
    if isinstance(cost, str) and cost.strip().isdigit():
        cost = int(cost)
    if not isinstance(cost, int) or isinstance(cost, bool) or not 0 < cost <= 10_000:
        raise ValueError("cost_per_part_vnd: the contract's price of one SMS part, 1-10000 đ")
    carrier = str(options.get("carrier") or "aggregator").strip().lower()
    if carrier not in CARRIER_SINGLE_LIMITS:
        raise ValueError(f"carrier: one of {', '.join(CARRIER_SINGLE_LIMITS)}")
    return GatewayTariff(cost_per_part_vnd=cost, single_limit=CARRIER_SINGLE_LIMITS[carrier])


@dataclass(frozen=True)
class SmsPlan:
    """A text as it will go out: its parts, their encoding, its length in the encoding's
    units (septets or UTF-16 code units) and what one recipient costs."""

    parts: tuple[str, ...]
    encoding: Encoding
    characters: int
    cost_vnd: int

    @property
    def count(self) -> int:
        return len(self.parts)

    @property
    def text(self) -> str:
        """The text the recipient reads (folded for GSM-7)."""
        return "".join(self.parts)


def to_gsm7(text: str) -> str:
    """The text without Vietnamese accents, in the GSM-7 default alphabet and its extension
    table: đ → d, quotes and dashes to their plain forms, anything else outside the
    alphabet (emoji, other scripts) dropped, runs of spaces made one. Case is kept."""
    decomposed = unicodedata.normalize("NFD", nfc(text).translate(_LOOKALIKES))
    kept = "".join(ch for ch in decomposed if ch in _BASIC_INDEX or ch in GSM7_EXTENSION)
    # What was dropped (an emoji before a word) leaves spaces that would cost septets.
    return _SPACE_RUNS.sub(" ", kept).strip(" ")


def _units(ch: str, encoding: Encoding) -> int:
    if encoding is Encoding.ucs2:
        return 2 if ord(ch) > 0xFFFF else 1  # a surrogate pair outside the BMP
    return 2 if ch in GSM7_EXTENSION else 1


def length(text: str, encoding: Encoding) -> int:
    """Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2) of a
    text already in that encoding's form (see `prepare`)."""
    return sum(_units(ch, encoding) for ch in text)


def prepare(text: str, encoding: Encoding) -> str:
    """The text as it is sent in `encoding`: folded to GSM-7, or NFC for UCS-2 (NFD
    would spend two units on every accented letter)."""
    return to_gsm7(text) if encoding is Encoding.gsm7_unaccented else nfc(text)


def segments(
    text: str, encoding: Encoding, single_limit: int | None = None, part_limit: int | None = None
) -> list[str]:
    """Cut a prepared text into the parts of a (concatenated) SMS: one part when it fits
    `single_limit` units, else parts of at most `part_limit`. An extension character or
    a surrogate pair is never split across parts. Raises ValueError beyond 255 parts."""
    default_single, default_part = (
        (UCS2_SINGLE, UCS2_PART) if encoding is Encoding.ucs2 else (GSM7_SINGLE, GSM7_PART)
    )
    single = default_single if single_limit is None else single_limit
    part = min(default_part, single) if part_limit is None else part_limit
    if single < 2 or part < 2:
        raise ValueError("an SMS part must hold at least two units")
    if length(text, encoding) <= single:
        return [text] if text else []
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        units = _units(ch, encoding)
        if used + units > part:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += units
    if current:
        parts.append("".join(current))
    if len(parts) > MAX_PARTS:
        raise ValueError(f"the text needs {len(parts)} SMS parts; at most {MAX_PARTS} fit")
    return parts


def plan(text: str, encoding: Encoding, tariff: GatewayTariff) -> SmsPlan:
    """How `text` goes out in `encoding` on a gateway with `tariff`."""
    prepared = prepare(text, encoding)
    single, part = tariff.limits(encoding)
    parts = tuple(segments(prepared, encoding, single, part))
    return SmsPlan(
        parts=parts,
        encoding=encoding,
        characters=length(prepared, encoding),
        cost_vnd=len(parts) * tariff.cost_per_part_vnd,
    )


def encode_part(part: str, encoding: Encoding) -> bytes:
    """A part's octets as SMPP carries them: GSM-7 unpacked (one septet per octet, data
    coding 0, the SMSC packs them) or UTF-16 big-endian (data coding 8)."""
    if encoding is Encoding.ucs2:
        return part.encode("utf-16-be")
    out = bytearray()
    for ch in part:
        if ch in GSM7_EXTENSION:
            out += bytes((0x1B, GSM7_EXTENSION[ch]))
        else:
            out.append(_BASIC_INDEX[ch])  # KeyError: the part was not prepared with to_gsm7
    return bytes(out)


def check_brandname(name: str) -> str:
    """The brandname (alphanumeric sender) if valid: 1–11 characters of ASCII letters,
    digits, space, '.' and '-', with a letter and no leading or trailing space. Raises
    ValueError saying why not."""
    if not name or len(name) > BRANDNAME_MAX:
        raise ValueError(f"a brandname has 1 to {BRANDNAME_MAX} characters, not {len(name)}")
    if not _BRANDNAME.fullmatch(name):
        raise ValueError("a brandname has only letters A-Z, digits, spaces, '.' and '-'")
    if name != name.strip():
        raise ValueError("a brandname does not begin or end with a space")
    if not any(ch.isalpha() for ch in name):
        raise ValueError("a brandname has at least one letter (digits alone are a number)")
    return name


_DIGITS = re.compile(r"[\s.\-()]")


def msisdn(number: str) -> str:
    """A Vietnamese mobile number as 84xxxxxxxxx (international, no plus): accepts
    0912 345 678, +84 912 345 678, 84912345678 and 912345678. Raises ValueError for
    anything that is not a 9-digit subscriber number after the country code."""
    digits = _DIGITS.sub("", number.strip())
    if digits.startswith("+"):
        digits = digits[1:]
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("a phone number has only digits, spaces, '+', '.', '-' and brackets")
    if digits.startswith("84") and len(digits) == 11:
        national = digits[2:]
    elif digits.startswith("0") and len(digits) == 10:
        national = digits[1:]
    elif len(digits) == 9:
        national = digits
    else:
        raise ValueError("not a Vietnamese mobile number (10 digits from 0, or 84 + 9)")
    if national[0] not in "35789":
        raise ValueError("not a Vietnamese mobile number (mobile numbers begin 03, 05, 07-09)")
    return "84" + national


def mask(number: str) -> str:
    """A number as logs may show it: the country code and the last three digits."""
    if len(number) <= 5:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 5) + number[-3:]


# What an SMS says of a bulletin. Every part is paid for, so a bulletin goes out brief:
ACK_HINT = "Tra loi DA NHAN de xac nhan."  # how a feature phone acknowledges (bot/sms.py)
ACK_HINT_UCS2 = "Trả lời DA NHAN để xác nhận."
BRIEF_PARTS = 2  # a routine bulletin's title and the start of its body: two parts at most


def _cut_words(text: str, encoding: Encoding, limit: int) -> str:
    """The longest start of `text` within `limit` units, cut between words, with "..."."""
    if length(text, encoding) <= limit:
        return text
    kept = ""
    for word in text.split(" "):
        candidate = f"{kept} {word}" if kept else word
        if length(candidate, encoding) + 3 > limit:
            break
        kept = candidate
    return f"{kept}..." if kept else text[: max(0, limit - 3)] + "..."


def bulletin_text(
    title: str, body: str, *, short: str | None, encoding: Encoding, tariff: GatewayTariff
) -> str:
    """The text of a bulletin as one SMS, prepared for `encoding`.

    Urgent (`short` is its read-out, broadcasts.readout: ≤ 160 unaccented characters): in
    GSM-7 the read-out, and the reply that acknowledges it when both fit one part; in
    UCS-2 the accented title and body cut to two parts, then that reply. Routine: the
    title and the start of the body within BRIEF_PARTS parts, cut between words.
    """
    single, part = tariff.limits(encoding)
    two_parts = part * BRIEF_PARTS
    if short is not None and encoding is Encoding.gsm7_unaccented:
        with_hint = f"{short} {ACK_HINT}"
        return with_hint if length(prepare(with_hint, encoding), encoding) <= single else short
    text = prepare(f"{title}: {' '.join(body.split())}", encoding)
    if short is None:
        return _cut_words(text, encoding, two_parts)
    hint = prepare(ACK_HINT_UCS2, encoding)
    return f"{_cut_words(text, encoding, two_parts - length(hint, encoding) - 1)} {hint}"
