"""Vietnamese number reading (cardinals, digits, decimals, ordinals) as announcers say it."""

from __future__ import annotations

import re

# Why our own code and not num2words: its Vietnamese backend reads years such as 2020 and
# decimal fractions differently from the official/broadcast convention we need ("hai nghìn
# không trăm hai mươi", "không phẩy hai mươi lăm", "một phẩy không năm"), and the rules
# below (mốt, lăm, tư, linh, không trăm) are short enough to own, audit and test exhaustively.

DIGIT_WORDS: tuple[str, ...] = (
    "không",
    "một",
    "hai",
    "ba",
    "bốn",
    "năm",
    "sáu",
    "bảy",
    "tám",
    "chín",
)

_BILLION = 1_000_000_000
# Fractions longer than this are read digit by digit: "3,14159" as a number would be
# "mười bốn nghìn một trăm năm mươi chín", which no announcer says.
_MAX_FRACTION_AS_NUMBER = 3
_DECIMAL = re.compile(r"(-?)([1-9][0-9]{0,2}(?:\.[0-9]{3})+|[0-9]+)(?:,([0-9]+))?")


def _read_triple(n: int, *, full: bool) -> list[str]:
    """Read 0..999; `full` forces "không trăm" (a group after a larger, non-empty group)."""
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words: list[str] = []
    if full or hundreds:
        words += [DIGIT_WORDS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("linh")  # northern/official form; the south says "lẻ"
            words.append(DIGIT_WORDS[units])
    elif tens == 1:
        words.append("mười")
        if units:
            # 15 is "mười lăm"; 11 stays "mười một" and 14 "mười bốn".
            words.append("lăm" if units == 5 else DIGIT_WORDS[units])
    else:
        words += [DIGIT_WORDS[tens], "mươi"]
        if units:
            words.append({1: "mốt", 4: "tư", 5: "lăm"}.get(units, DIGIT_WORDS[units]))
    return words


def _read_below_billion(n: int, *, leading: bool) -> list[str]:
    words: list[str] = []
    first = leading
    for group, scale in ((n // 1_000_000, "triệu"), (n // 1000 % 1000, "nghìn"), (n % 1000, "")):
        if group == 0:
            continue  # empty groups are skipped: 1.000.005 is "một triệu không trăm linh năm"
        words += _read_triple(group, full=not first)
        if scale:
            words.append(scale)
        first = False
    return words


def _read_positive(n: int, *, leading: bool) -> list[str]:
    if n >= _BILLION:
        # "tỷ" recurses, so 10^12 is "một nghìn tỷ", as Vietnamese counts.
        high, low = divmod(n, _BILLION)
        words = [*_read_positive(high, leading=leading), "tỷ"]
        if low:
            words += _read_below_billion(low, leading=False)
        return words
    return _read_below_billion(n, leading=leading)


def read_number(n: int) -> str:
    """Read an integer in words: 21 → "hai mươi mốt", 2020 → "hai nghìn không trăm hai mươi".

    Uses nghìn/tỷ and linh (official northern forms); negatives start with "âm". Any size.
    """
    if n < 0:
        return "âm " + read_number(-n)
    if n == 0:
        return DIGIT_WORDS[0]
    return " ".join(_read_positive(n, leading=True))


def read_digits(digits: str) -> str:
    """Read a string of ASCII digits one by one: "113" → "một một ba". Raises on non-digits."""
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"expected ASCII digits, got {digits!r}")
    return " ".join(DIGIT_WORDS[int(d)] for d in digits)


def read_fraction(digits: str) -> str:
    """Read the digits after a decimal comma: leading zeros one by one, the rest as a number.

    "25" → "hai mươi lăm", "05" → "không năm"; more than three significant digits are read
    digit by digit ("14159" → "một bốn một năm chín").
    """
    significant = digits.lstrip("0")
    words = [DIGIT_WORDS[0]] * (len(digits) - len(significant))
    if significant:
        if len(significant) <= _MAX_FRACTION_AS_NUMBER:
            words.append(read_number(int(significant)))
        else:
            words.append(read_digits(significant))
    return " ".join(words)


def read_decimal(text: str) -> str:
    """Read a Vietnamese-formatted number: "3,5" → "ba phẩy năm", "9.661.345" → millions.

    Dots group thousands, the comma is the decimal mark, a leading "-" reads "âm".
    Raises ValueError for anything else (English "3.5" is the caller's business).
    """
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Vietnamese decimal number: {text!r}")
    sign, whole, fraction = match.groups()
    words = read_number(int(whole.replace(".", "")))
    if fraction is not None:
        words += " phẩy " + read_fraction(fraction)
    return ("âm " + words) if sign else words


def read_ordinal(n: int) -> str:
    """Read the number after "thứ": 1 → "nhất", 4 → "tư", otherwise the cardinal."""
    if n == 1:
        return "nhất"
    if n == 4:
        return "tư"
    return read_number(n)


def read_month(month: int) -> str:
    """Read a month number after "tháng": 4 → "tư" (tháng tư), otherwise the cardinal."""
    return "tư" if month == 4 else read_number(month)
