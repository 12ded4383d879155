"""Vietnamese spoken-text normaliser: official bulletin text in, what a radio announcer says out."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from audio.numbers import (
    read_decimal,
    read_digits,
    read_fraction,
    read_month,
    read_number,
    read_ordinal,
)

__all__ = [
    "default_abbreviations",
    "parse_abbreviations",
    "parse_storm_names",
    "read_decimal",
    "read_digits",
    "read_number",
    "read_ordinal",
    "spell_letters",
    "to_spoken",
]

# Reading rules where announcers differ (each chosen once, applied everywhere):
# - Numbers: nghìn, tỷ, linh (105 "một trăm linh năm"), "không trăm" inside (2020), mốt/tư/lăm
#   after mươi; dots group thousands, the comma is decimal ("phẩy"); a dot before 1-2 digits
#   ("4.0") is read "chấm". Fractions keep leading zeros digit by digit ("1,05" → một phẩy
#   không năm). Digit strings starting with 0 (3+ digits) or longer than 15 digits are IDs:
#   read digit by digit.
# - Dates: "ngày D tháng M năm Y", the day as a number (no "mồng"), month 4 is "tư".
# - Clock times: "10:02" → "mười giờ hai phút" (minutes as a number, ":00" dropped).
# - Ranges: "đến" ("3-5m" → "ba đến năm mét"); wind forces repeat the word: "cấp tám đến cấp chín";
#   clock spans too ("6h-8h" → "sáu giờ đến tám giờ"). A latitude next to a longitude is one
#   position, not a range ("21,2°N – 109,5°E" → a pause).
# - "Per": "trên" only for a speed or flow (km/h, m3/s); "một" before a unit of measure
#   ("đồng/kg" → "đồng một ki-lô-gam"); "mỗi" otherwise ("đồng/tàu" → "đồng mỗi tàu").
# - Document codes: "[số] N[/YYYY]/TYPE-ISSUER" → "<type> số N [năm YYYY] của <issuer>", read
#   once: the type is left out when the words before already name the document ("Nghị định số
#   26/2019/NĐ-CP" → "Nghị định số hai mươi sáu năm hai nghìn không trăm mười chín của Chính
#   phủ"), the issuer when the text names it after the code ("… ngày 08/3/2019 của Chính phủ"),
#   and a drafting desk that is no known name ("UBND-KT") is not spelled.
# - Telephone numbers: digit by digit, written groups separated by commas (a pause); a bare
#   10-digit mobile is grouped 4-3-3, an 11-digit landline 3-4-4.
# - Unknown acronyms (2+ capitals that are not a Vietnamese syllable) are spelled with
#   Vietnamese letter names ("ABC" → "a bê xê"); capitalised Vietnamese words in headlines
#   ("CÔNG ĐIỆN KHẨN") are lower-cased instead, so TTS engines do not spell them.
# - URLs become "trang thông tin điện tử" plus the host read label by label ("chấm" between,
#   "vn" → "vê en", a label without vowels spelled); paths are dropped. E-mail addresses are
#   read with "a còng" and "chấm". Page chrome (visitor counters, "Chia sẻ", "In trang") goes.
# - Symbols: & và, + cộng, ~ khoảng, > lớn hơn, < nhỏ hơn, "x2" gấp hai, "3x4" ba nhân bốn,
#   brackets become commas, a slash between words a comma, a leading "-" before a number "âm".
# - Abbreviations: some are read from the words around them (see _CONTEXT_READINGS): "BCH"
#   (Ban Chỉ huy PCTT, Bộ Chỉ huy BĐBP, Ban Chấp hành Trung ương), "TT" (thông tư; thị trấn
#   before a place name; trung tâm before what a centre does), "BĐ3" (flood alert: báo động
#   ba), "KT." / "TM." before a title in a signature (ký thay, thay mặt); an acronym in brackets
#   right after its own expansion ("Áp thấp nhiệt đới (ATNĐ)") is dropped rather than said twice.
# - Storm names from the Typhoon Committee list (audio/data/storm_names.tsv) are words, not
#   acronyms: "YAGI" → "Yagi"; Vietnamese-given names in Vietnamese ("SONCA" → "Sơn Ca").

_Replacer = Callable[[re.Match[str]], str]


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation of literal words, longest first (the first branch that fits wins)."""
    return "|".join(re.escape(word) for word in sorted(set(words), key=lambda w: (-len(w), w)))


# --- the abbreviation dictionary ----------------------------------------------------------


def parse_abbreviations(text: str) -> dict[str, str]:
    """Parse `ABBR<TAB>expansion` lines (`#` comment lines, blank lines ignored).

    Raises ValueError naming the line for a malformed or duplicate entry.
    """
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(" \r\n")
        if not line or line.startswith("#"):
            continue
        key, tab, value = line.partition("\t")
        # Keys are matched against NFKC text (see to_spoken), so store them that way.
        key = unicodedata.normalize("NFKC", key.strip())
        value = unicodedata.normalize("NFC", value.strip())
        if not tab or not key or not value:
            raise ValueError(f"line {number}: expected ABBR<TAB>expansion, got {raw!r}")
        if key in entries:
            raise ValueError(f"line {number}: duplicate abbreviation {key!r}")
        entries[key] = value
    return entries


@lru_cache(maxsize=1)
def default_abbreviations() -> Mapping[str, str]:
    """The read-only dictionary shipped in audio/data/abbreviations.tsv."""
    source = resources.files("audio").joinpath("data/abbreviations.tsv")
    return MappingProxyType(parse_abbreviations(source.read_text(encoding="utf-8")))


def parse_storm_names(text: str) -> dict[str, str]:
    """Parse `Name[<TAB>spoken form]` lines (`#` comments, blank lines ignored).

    Returns name → what to say; without a second column the name is said as written.
    Raises ValueError naming the line for an empty or duplicate name.
    """
    names: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(" \r\n")
        if not line or line.startswith("#"):
            continue
        name, _, spoken = line.partition("\t")
        name = unicodedata.normalize("NFKC", name.strip())
        spoken = unicodedata.normalize("NFC", spoken.strip()) or name
        if not name or not re.fullmatch(r"[^\W\d_]+(?:-[^\W\d_]+)*", name):
            raise ValueError(f"line {number}: expected a storm name, got {raw!r}")
        if name in names:
            raise ValueError(f"line {number}: duplicate storm name {name!r}")
        names[name] = spoken
    return names


@lru_cache(maxsize=1)
def _storm_names() -> tuple[Mapping[str, str], re.Pattern[str]]:
    """The shipped storm names (audio/data/storm_names.tsv), written form → spoken form."""
    source = resources.files("audio").joinpath("data/storm_names.tsv")
    names = parse_storm_names(source.read_text(encoding="utf-8"))
    # Capitals ("WIPHA", "KONG-REY") or the listed form ("Wipha"), never lower case: "lan" and
    # "mun" are Vietnamese words as well as storm names, and "LAN" in a headline is lower-cased
    # like any Vietnamese syllable, so a name that is one is left to that rule.
    forms = {name: spoken for name, spoken in names.items()}
    forms |= {n.upper(): s for n, s in names.items() if not _is_syllable(n)}
    pattern = re.compile(rf"(?<![^\W\d_]|-)(?:{_alternation(forms)})(?![^\W\d_]|-)")
    return MappingProxyType(forms), pattern


def _read_storm_names(text: str) -> str:
    forms, pattern = _storm_names()
    return pattern.sub(lambda m: forms[m.group()], text)


@lru_cache(maxsize=16)
def _abbreviation_pattern(keys: frozenset[str]) -> re.Pattern[str] | None:
    if not keys:
        return None
    word_start: list[str] = []
    other_start: list[str] = []
    # Longest first: the regex alternation takes the first branch that matches. Boundaries
    # are letters, not \w, so "41Tx" and "Tx1" still expand (digits are read later anyway).
    for key in sorted(keys, key=lambda k: (-len(k), k)):
        end = r"(?![^\W\d_])" if re.search(r"\w$", key) else ""
        (word_start if re.match(r"\w", key) else other_start).append(re.escape(key) + end)
    # One shared lookbehind in front lets the engine reject a position inside a word at once
    # instead of trying every key there (a 5,000-character text has 5,000 positions).
    branches = [f"(?<![^\\W\\d_])(?:{'|'.join(word_start)})"] if word_start else []
    branches += other_start
    # The optional brackets let "Áp thấp nhiệt đới (ATNĐ)" drop the acronym it just spelled out.
    return re.compile(rf"(?P<open>\(\s*)?(?P<key>{'|'.join(branches)})(?P<close>\s*\))?")


# --- letters and acronyms -------------------------------------------------------------------

_LETTER_NAMES: dict[str, str] = {
    "A": "a",
    "Ă": "á",
    "Â": "ớ",
    "B": "bê",
    "C": "xê",
    "D": "dê",
    "Đ": "đê",
    "E": "e",
    "Ê": "ê",
    "F": "ép",
    "G": "giê",
    "H": "hát",
    "I": "i",
    "J": "gi",
    "K": "ca",
    "L": "e-lờ",
    "M": "em",
    "N": "en",
    "O": "o",
    "Ô": "ô",
    "Ơ": "ơ",
    "P": "pê",
    "Q": "quy",
    "R": "e-rờ",
    "S": "ét",
    "T": "tê",
    "U": "u",
    "Ư": "ư",
    "V": "vê",
    "W": "vê kép",
    "X": "ích",
    "Y": "i dài",
    "Z": "dét",
}


def spell_letters(text: str) -> str:
    """Spell with Vietnamese letter names: "ABC" → "a bê xê", "tkcn" → "tê ca xê en".

    Digits are read one by one; other characters are skipped. Letters outside the
    Vietnamese/Latin alphabet are kept lower-cased.
    """
    words = []
    for char in text:
        if char.isascii() and char.isdigit():
            words.append(read_digits(char))
        elif char.isalpha():
            words.append(_LETTER_NAMES.get(char.upper(), char.lower()))
    return " ".join(words)


# A permissive Vietnamese syllable (tone marks removed first): enough to tell a capitalised
# word ("THÔNG", "KHẨN", "NGHIÊNG") from an acronym ("UBND", "VMS", "IUU", "ASEAN").
_NUCLEI = (
    *("a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y"),
    *("ai", "ao", "au", "ay", "âu", "ây", "eo", "êu", "ia", "iê", "iu", "oa", "oă", "oe"),
    *("oi", "ôi", "ơi", "ua", "uâ", "uê", "ui", "uô", "uơ", "uy", "ưa", "ưi", "ươ", "ưu"),
    *("yê", "iêu", "yêu", "oai", "oay", "oao", "oeo", "uây", "uôi", "uya", "uyê", "uyu"),
    *("ươi", "ươu"),
)
_SYLLABLE = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|th|tr|qu|[bcdđghklmnprstvx])?"
    f"(?:{'|'.join(sorted(_NUCLEI, key=len, reverse=True))})"
    r"(?:ch|ng|nh|[cmnpt])?"
)
_TONE_MARKS = dict.fromkeys(map(ord, "\u0300\u0301\u0303\u0309\u0323"))


def _is_syllable(word: str) -> bool:
    toneless = unicodedata.normalize("NFD", word.lower()).translate(_TONE_MARKS)
    return _SYLLABLE.fullmatch(unicodedata.normalize("NFC", toneless)) is not None


_SINGLE_LETTERS = frozenset("ABCDĐEFGHIJKLMNOPQRSTUVWXYZ")
_NEXT_LETTER = re.compile(r"[ ]+(?P<letter>[^\W\d_])")


def _word_case(match: re.Match[str]) -> str:
    word = match.group()
    capitals = sum(1 for char in word if char.isupper())
    if capitals == 0:
        return word
    if len(word) == 1:
        # A lone consonant is never a Vietnamese word; a lone "Ở"/"Ô" is, and so is "Y" before
        # a lower-case word ("Trung tâm Y tế"): its letter name "i dài" would be heard there.
        following = _NEXT_LETTER.match(match.string, match.end())
        if word == "Y" and following is not None and following["letter"].islower():
            return word
        return f" {_LETTER_NAMES[word]} " if word in _SINGLE_LETTERS else word
    if word.isupper():
        return word.lower() if _is_syllable(word) else f" {spell_letters(word)} "
    if capitals >= 2 and not _is_syllable(word):
        return f" {spell_letters(word)} "  # codes such as "QNg" (Quảng Ngãi boats)
    return word


_WORD = re.compile(r"[^\W\d_]+")

# --- input clean-up and page chrome -----------------------------------------------------------

_CHAR_FIXES = str.maketrans(
    {
        "Ð": "Đ",  # Icelandic eth, a frequent mistype of Vietnamese Đ
        "ð": "đ",
        "–": "-",
        "−": "-",
        "‒": "-",
        "‐": "-",
        "‑": "-",
        "—": " - ",
        "―": " - ",
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
        "\u00ad": None,
        "\t": " ",
    }
)
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")
# Callers should strip HTML, but a stray "<br>" must not be read "nhỏ hơn br lớn hơn".
_HTML_TAG = re.compile(r"<(?P<close>/?)(?P<name>[A-Za-z!][A-Za-z0-9]*)[^<>]{0,300}>")
_HTML_BLOCKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BULLET = re.compile(r"^[ ]*(?:[-+*•·●▪◦►]+[ ]+|[•·●▪◦►]+)", re.M)

_CHROME_PHRASES = (
    "Chia sẻ bài viết",
    "Chia sẻ",
    "In trang",
    "In bài",
    "Bản in",
    "Gửi email",
    "Gửi bài",
    "Quay lại",
    "Quay về",
    "Về đầu trang",
    "Lên đầu trang",
    "Lưu tin",
    "Lưu bài",
    "Cỡ chữ",
    "Tweet",
    "Facebook",
    "Zalo",
    "Email",
    "E-mail",
    "Print",
    "Share",
    "Like",
    "Thích",
    "Bình luận",
    "Xem thêm",
    "Đọc tiếp",
    "Tin liên quan",
    "Bài liên quan",
    "Các tin khác",
    "Tin khác",
    "Tải về",
    "Trở về",
    "Trở lại",
    "Góp ý",
    "Phản hồi",
    "Nghe đọc bài",
    "Nghe bài viết",
    "Copy link",
    "Sao chép liên kết",
)
_CHROME_ALT = "|".join(
    re.escape(p).replace(r"\ ", r"\s+") for p in sorted(_CHROME_PHRASES, key=len, reverse=True)
)
_COUNTER = re.compile(
    r"(?<!\w)(?i:(?:số\s+)?lượt\s+(?:xem|đọc|truy\s+cập|thích|chia\s+sẻ)"
    r"|(?:đang|tổng|tổng\s+số)\s+(?:lượt\s+)?truy\s+cập)"
    r"\s*:?\s*[0-9][0-9.,]*(?:\s*(?i:lượt)(?!\w))?"
)
# A line made only of chrome is dropped whatever its case; inside prose only a run of two or
# more chrome phrases, or the few that never occur in prose, is removed ("Chia sẻ với phóng
# viên, ông..." is a real sentence).
_CHROME_LINE = re.compile(
    rf"^[^\w\n]*(?:{_CHROME_ALT})(?:[^\w\n]+(?:{_CHROME_ALT}))*[^\w\n]*$", re.M | re.I
)
_CHROME_RUN = re.compile(rf"(?<!\w)(?:{_CHROME_ALT})(?:[ ]*[|·•/]?[ ]*(?:{_CHROME_ALT}))+(?!\w)")
_CHROME_ALWAYS = re.compile(
    r"(?<!\w)(?:In trang|In bài|Bản in|Về đầu trang|Lên đầu trang|Cỡ chữ|Copy link"
    r"|Sao chép liên kết)(?!\w)"
)


def _join_lines(text: str) -> str:
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        # A line break before a capital (or a numbered point) ends a sentence: headlines and
        # paragraphs often lack a final full stop, and TTS needs the pause.
        if lines and lines[-1][-1] not in ".,;:!?" and (line[0].isupper() or line[0].isdigit()):
            lines[-1] += "."
        lines.append(line)
    return " ".join(lines)


# --- URLs and e-mail -------------------------------------------------------------------------

_TLD_WORDS = {
    "vn": "vê en",
    "com": "com",
    "net": "nét",
    "org": "o-rờ-gờ",
    "gov": "gốp",
    "edu": "e-đu",
    "info": "in-phô",
    "int": "in",
}
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(
    r"(?i:https?://|www\.)[^\s<>\"'()\[\]{}]+"
    r"|(?<![\w@.-])(?:[a-z0-9-]+\.)+(?:vn|com|net|org|gov|edu|info|int)(?![\w-])"
    r"(?:/[^\s<>\"'()\[\]{}]*)?"
)
_URL_TRAILING = ".,;:!?"
_LABEL_PART = re.compile(r"[a-z]+|[0-9]+")
_VOWEL = re.compile(r"[aeiouy]")


def _read_label(label: str) -> str:
    words = []
    for part in _LABEL_PART.findall(label.lower()):
        if part.isdigit():
            words.append(read_digits(part))
        elif part in _TLD_WORDS:
            words.append(_TLD_WORDS[part])
        elif not _VOWEL.search(part):
            words.append(spell_letters(part))
        else:
            words.append(part)
    return " gạch ngang ".join(words) if "-" in label else " ".join(words)


def _read_host(host: str) -> str:
    labels = [label for label in host.lower().split(".") if label]
    if labels and labels[0] == "www":
        labels = labels[1:]
    return " chấm ".join(_read_label(label) for label in labels)


def _url(match: re.Match[str]) -> str:
    url = match.group()
    stripped = url.rstrip(_URL_TRAILING)
    tail = url[len(stripped) :]
    host = re.sub(r"^(?i:https?://)", "", stripped)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0]
    return f" trang thông tin điện tử {_read_host(host)} {tail}"


def _email(match: re.Match[str]) -> str:
    local, _, host = match.group().partition("@")
    pieces = []
    for piece in re.split(r"([._-])", local):
        if piece == ".":
            pieces.append("chấm")
        elif piece == "_":
            pieces.append("gạch dưới")
        elif piece == "-":
            pieces.append("gạch ngang")
        elif piece:
            pieces.append(_read_label(piece))
    return f" {' '.join(pieces)} a còng {_read_host(host)} "


# --- telephone numbers -------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"[0-9]+")
_PHONE_NUMBER = r"(?:\+84|\(0[0-9]{1,3}\)|[0-9]{3,4})(?:[ .\-]?[0-9]{2,4}){0,4}(?![0-9])"
_PHONE_CUE = re.compile(
    r"(?P<cue>(?<!\w)(?:(?i:hotline|đường\s+dây\s+nóng|số\s+điện\s+thoại|điện\s+thoại"
    r"|tổng\s+đài|fax|tel)|SĐT|ĐT)(?!\w))"
    r"(?P<gap>(?:\s*[:.]|\s*(?i:số|là)(?!\w))*\s*)"
    rf"(?P<nums>{_PHONE_NUMBER}(?:\s*(?:/|,|;|(?i:hoặc))\s*{_PHONE_NUMBER})*)"
)
_PHONE_LIST_SPLIT = re.compile(r"\s*(/|,|;|(?i:hoặc))\s*(?=[0-9(+])")
_EMERGENCY_LIST = re.compile(r"(?<![0-9.,/])11[1-5](?:\s*[/,]\s*11[1-5])+(?![0-9]|[.,/][0-9])")
_CALL_EMERGENCY = re.compile(
    r"(?P<lead>(?<!\w)(?<![Kk]êu\s)(?i:gọi)(?:\s+(?i:ngay|tới|đến|cho|số|vào))*\s+)"
    r"(?P<n>11[1-5])(?![0-9]|[.,][0-9])"
)
_MOBILE = re.compile(r"(?<![0-9.,/+])(?:\+84[ .\-]?|\(0[0-9]{1,3}\)\s?|0)[0-9]+(?:[ .\-][0-9]+)*")
_SERVICE = re.compile(
    r"(?<![0-9.,/])(?P<a>1[89]00)[ .]?(?P<b>[0-9]{4}(?![0-9])|[0-9]{3}[ .]?[0-9]{3})"
    r"(?![0-9]|[.,][0-9])"
)


def _group_digits(digits: str, sizes: tuple[int, ...]) -> list[str]:
    groups, start = [], 0
    for size in sizes:
        groups.append(digits[start : start + size])
        start += size
    return groups


def _read_phone(text: str) -> str:
    """Read one telephone number as written (groups → pauses), digit by digit."""
    words = []
    runs = _DIGIT_RUN.findall(text)
    if text.lstrip().startswith("+"):
        words.append("cộng " + read_digits(runs[0][:2]))
        rest = "".join(runs)[2:] if len(runs) == 1 else ""
        runs = [rest[i : i + 3] for i in range(0, len(rest), 3)] if len(runs) == 1 else runs[1:]
    elif len(runs) == 1 and len(runs[0]) == 10:
        runs = _group_digits(runs[0], (4, 3, 3))
    elif len(runs) == 1 and len(runs[0]) == 11:
        # Hà Nội (024) and TP.HCM (028) have 3-digit area codes, other provinces 4 (0258).
        sizes = (3, 4, 4) if runs[0][:3] in ("024", "028") else (4, 3, 4)
        runs = _group_digits(runs[0], sizes)
    elif len(runs) == 1 and len(runs[0]) == 8 and runs[0][:2] in ("18", "19"):
        runs = _group_digits(runs[0], (4, 4))
    words += [read_digits(run) for run in runs if run]
    return ", ".join(words)


def _phone_cue(match: re.Match[str]) -> str:
    pieces = _PHONE_LIST_SPLIT.split(match.group("nums"))
    spoken = _read_phone(pieces[0])
    for separator, number in zip(pieces[1::2], pieces[2::2], strict=True):
        joint = f" {separator} " if separator.isalpha() else ", "
        spoken += joint + _read_phone(number)
    return f"{match.group('cue')}{match.group('gap')} {spoken} "


def _mobile(match: re.Match[str]) -> str:
    raw = match.group()
    runs = list(_DIGIT_RUN.finditer(raw))
    national = "".join(run.group() for run in runs)
    plus = raw.startswith("+")
    if plus:
        national = "0" + national[2:]
    if national[1:2] not in ("2", "3", "5", "7", "8", "9", "1"):
        return raw
    target = 11 if national[1] in "21" else 10
    if plus:
        target += 1  # "84" is two digits where the national form has one "0"
    count = 0
    for run in runs:
        count += len(run.group())
        if count == target:
            end = run.end()
            return f" {_read_phone(raw[:end])} {raw[end:]}"
        if count > target:
            break
    return raw


def _service(match: re.Match[str]) -> str:
    groups = [match.group("a"), *re.split(r"[ .]", match.group("b"))]
    return " " + ", ".join(read_digits(g) for g in groups if g) + " "


def _emergency_list(match: re.Match[str]) -> str:
    return " " + ", ".join(read_digits(n) for n in re.findall(r"11[1-5]", match.group())) + " "


# --- fishing-boat registrations and document codes -------------------------------------------

# "BĐ-92158-TS", "QNg 90568 TS": province letters, a number read digit by digit, "TS" (thủy sản).
_BOAT = re.compile(r"(?<![\w-])(?P<p>[A-ZĐ][A-Za-zĐđ]{0,3})[ .\-]?(?P<n>[0-9]{4,6})[ .\-]?TS(?!\w)")

_DOC_TYPES: dict[str, str] = {
    "QĐ": "quyết định",
    "NĐ": "nghị định",
    "TT": "thông tư",
    "TTLT": "thông tư liên tịch",
    "CT": "chỉ thị",
    "NQ": "nghị quyết",
    "KL": "kết luận",
    "CV": "công văn",
    "CĐ": "công điện",
    "TB": "thông báo",
    "KH": "kế hoạch",
    "BC": "báo cáo",
    "HD": "hướng dẫn",
    "TTr": "tờ trình",
    "QC": "quy chế",
    "ĐA": "đề án",
    "CTr": "chương trình",
    "HĐ": "hợp đồng",
    "GP": "giấy phép",
    "PL": "pháp lệnh",
}
_DOC_TYPE_ALT = "|".join(sorted(_DOC_TYPES, key=len, reverse=True))
_SEG = r"[A-ZĐƯ][A-Za-zĐđƯư]*[0-9]*"
_CODE = re.compile(
    r"(?:(?P<so>(?<!\w)(?:[Ss]ố|SỐ))\s*:?\s*)?(?<![0-9/])(?P<num>[0-9]+)"
    rf"(?:/(?P<year>[0-9]{{4}}))?(?:/|-(?=(?:{_DOC_TYPE_ALT})[-/]))"
    rf"(?P<segs>{_SEG}(?:[-/]{_SEG})*)(?![\w-])"
)
_BARE_CODE = re.compile(
    rf"(?<![\w/-])(?P<segs>(?:{_DOC_TYPE_ALT})[-/]{_SEG}(?:[-/]{_SEG})*)(?![\w-])"
)
_SO_NUMBER_YEAR = re.compile(
    r"(?P<so>(?<!\w)(?:[Ss]ố|SỐ))\s*:?\s*(?P<num>[0-9]+)/(?P<year>[0-9]{4})(?![0-9/])"
)
_SEGMENT_PARTS = re.compile(r"([^0-9]+)([0-9]*)")
# Words that name a document: when the text says "Nghị định số 26/2019/NĐ-CP", the "NĐ" of the
# code is not read again (a listener heard "nghị định" a second ago).
_DOCUMENT_NOUNS = (
    *_DOC_TYPES.values(),
    *("văn bản", "luật", "bộ luật", "thông tư liên tịch", "nghị quyết liên tịch", "điều lệ"),
)
_DOCUMENT_NAMED_BEFORE = re.compile(
    rf"(?<!\w)(?:(?i:{_alternation(_DOCUMENT_NOUNS)})|{_DOC_TYPE_ALT})\s*$"
)
# "… 26/2019/NĐ-CP ngày 08/3/2019 của Chính phủ": the text names the issuer itself after the
# code (the usual citation form), so the code's issuer letters are not read as well.
_DATE_AFTER_CODE = (
    r"[0-9]{1,2}(?:\s*[/.\-]\s*[0-9]{1,2}(?:\s*[/.\-]\s*[0-9]{4})?"
    r"|\s+(?i:tháng)\s+[0-9]{1,2}(?:\s+(?i:năm)\s+[0-9]{4})?)"
)
_ISSUER_NAMED_AFTER = re.compile(
    rf"\s*,?\s*(?:(?i:(?:ban\s+hành\s+)?ngày)\s+{_DATE_AFTER_CODE}\s*,?\s*"
    r"|(?i:năm)\s+[0-9]{4}\s*,?\s*)?(?i:của)(?!\w)"
)


def _read_segment(segment: str, abbreviations: Mapping[str, str]) -> str | None:
    """One issuer segment of a code in words, or None when it is not a known name."""
    parts = _SEGMENT_PARTS.fullmatch(segment)
    letters, digits = (parts.group(1), parts.group(2)) if parts else (segment, "")
    if letters == "QH" and digits:
        return "Quốc hội khóa " + read_number(int(digits))  # "QH14": the 14th legislature
    spoken = abbreviations.get(letters) or default_abbreviations().get(letters)
    if spoken is None:
        return None
    return f"{spoken} {read_number(int(digits))}" if digits else spoken


def _read_issuer(segments: list[str], abbreviations: Mapping[str, str]) -> str:
    """The issuer part of a code: "CP" → Chính phủ, "BNN-TCTS" → the ministry, its department.

    The first segment is the issuer and is spelled when unknown; later ones are a co-issuer
    ("TTLT-BNN-BTC") or the drafting unit (Nghị định 30/2020 on document form: "UBND-KT" is
    the People's Committee, economic desk): read after a pause when they are a known name,
    otherwise left out, since "ca tê" tells a listener nothing.
    """
    words = []
    for index, segment in enumerate(segments):
        spoken = _read_segment(segment, abbreviations)
        if spoken is None and index == 0:
            spoken = spell_letters(segment)
        if spoken:
            words.append(spoken)
    return ", ".join(words)


def _read_code_letters(code: str, abbreviations: Mapping[str, str]) -> str:
    """A code without a number ("QĐ-UBND", "KL/TW"): its type, then its issuer."""
    segments = re.split(r"[-/]", code)
    if segments[0] in _DOC_TYPES:
        issuer = _read_issuer(segments[1:], abbreviations)
        return f"{_DOC_TYPES[segments[0]]} {issuer}".strip()
    return _read_issuer(segments, abbreviations)


def _read_numbered_code(match: re.Match[str], abbreviations: Mapping[str, str]) -> str:
    """ "[số] N[/YYYY]/TYPE-ISSUER" as an announcer says it: type once, "số", "của" issuer."""
    segments = re.split(r"[-/]", match["segs"])
    doc_type = _DOC_TYPES.get(segments[0])
    if doc_type is not None:
        segments = segments[1:]
    text, start = match.string, match.start()
    named_before = _DOCUMENT_NAMED_BEFORE.search(text, max(0, start - 40), start) is not None
    so = match["so"] or "số"
    words = []
    if doc_type is not None and not named_before:
        # "theo 1191/QĐ-TTg" → "theo quyết định số …": the type goes where a reader says it.
        words.append(doc_type.capitalize() if so[0].isupper() else doc_type)
        so = so.lower()
    words += [so, read_number(int(match["num"]))]
    if match["year"]:
        words += ["năm", read_number(int(match["year"]))]
    if segments and not _ISSUER_NAMED_AFTER.match(text, match.end()):
        issuer = _read_issuer(segments, abbreviations)
        if issuer:
            words += ["của", issuer]
    return " " + " ".join(words) + " "


# --- dates and times -------------------------------------------------------------------------

_DAY = r"(?:0?[1-9]|[12][0-9]|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"[0-9]{4}"
_END = r"(?![0-9]|[.,/:\-][0-9])"
# The leading lookahead lets the engine skip most positions before trying the optional prefix.
_PRE_DAY = r"(?=[0-9Nn])(?:(?P<pre>(?<!\w)(?:[Nn]gày|NGÀY))\s+)?"
_PRE_MONTH = r"(?=[0-9Tt])(?:(?P<pre>(?<!\w)(?:[Tt]háng|THÁNG))\s+)?"

_DATE_TO_DATE = re.compile(
    rf"(?<![0-9.,/])(?P<a>{_DAY}/{_MON}(?:/{_YEAR})?)\s*-\s*(?=(?:(?i:ngày)\s+)?{_DAY}/{_MON}{_END})"
)
_ISO_DATE = re.compile(
    rf"{_PRE_DAY}(?<![0-9.,/\-])(?P<y>{_YEAR})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])"
    r"(?![0-9])"
)
_DAY_RANGE = re.compile(
    rf"{_PRE_DAY}(?<![0-9.,/])(?P<d1>{_DAY})\s*-\s*(?P<d2>{_DAY})/(?P<m>{_MON})"
    rf"(?:/(?P<y>{_YEAR}))?{_END}"
)
_DMY = re.compile(
    rf"{_PRE_DAY}(?<![0-9.,/])(?P<d>{_DAY})(?P<sep>[/.\-])(?P<m>{_MON})(?P=sep)(?P<y>{_YEAR}){_END}"
)
_MY = re.compile(
    rf"{_PRE_MONTH}(?<![0-9.,/\-])(?P<m>{_MON})/(?P<y>{_YEAR}){_END}"
    rf"|(?P<pre2>(?<!\w)(?:[Tt]háng|THÁNG))\s+(?P<m2>{_MON})[.\-](?P<y2>{_YEAR}){_END}"
)
_DM = re.compile(
    rf"{_PRE_DAY}(?<![0-9.,/])(?P<d>{_DAY})/(?P<m>{_MON}){_END}"
    rf"|(?P<pre2>(?<!\w)(?:[Nn]gày|NGÀY))\s+(?P<d2>{_DAY})-(?P<m2>{_MON}){_END}"
)
# "trực 24/7" is a duty roster, not 24 July.
_ROUND_THE_CLOCK = re.compile(
    r"(?P<w>(?<!\w)(?i:trực(?:\s+ban)?|hoạt\s+động|phục\s+vụ|hỗ\s+trợ|làm\s+việc|sẵn\s+sàng|liên\s+tục"
    r"|tiếp\s+nhận))\s+24/7(?![0-9])"
)
# "quý III/2024" is a quarter of a year, not a date.
_QUARTER = re.compile(
    r"(?P<w>(?<!\w)(?i:quý))\s+(?P<q>[1-4]|IV|I{1,3})\s*/\s*(?P<y>[0-9]{4})(?![0-9])"
)
_QUARTERS = {"1": 1, "2": 2, "3": 3, "4": 4, "I": 1, "II": 2, "III": 3, "IV": 4}
_CLOCK = re.compile(
    r"(?<![0-9.,:])(?P<h>[01]?[0-9]|2[0-4]):(?P<m>[0-5][0-9])(?::(?P<s>[0-5][0-9]))?"
    r"(?![0-9]|[.,:][0-9])"
)
# "6h-8h", "7h00 - 11h30", "07:00-09:00", "6-8h": a span of the clock, read "từ … đến …"
# like any other range (the dash alone is a pause, and "sáu giờ tám giờ" loses the "to").
_TIME = r"(?:[01]?[0-9]|2[0-4])(?:[hH](?:[0-5][0-9])?|:[0-5][0-9])"
_TIME_RANGE = re.compile(
    rf"(?<![0-9.,:/])(?P<a>{_TIME}|[01]?[0-9]|2[0-4])\s*-\s*(?={_TIME}(?:'|ph|p)?(?![^\W_]|[0-9]))"
)
_HOUR_H = re.compile(r"(?<![0-9.,])(?P<h>[0-9]{1,3})[hH](?P<m>[0-5][0-9])?(?:'|ph|p)?(?![^\W_])")


def _date_words(day: str | None, month: str, year: str | None, prefix: str | None) -> str:
    words = []
    if day is not None:
        words += [prefix or "ngày", read_number(int(day)), "tháng"]
    else:
        words.append(prefix or "tháng")
    words.append(read_month(int(month)))
    if year is not None:
        words += ["năm", read_number(int(year))]
    return " " + " ".join(words) + " "


def _iso_date(match: re.Match[str]) -> str:
    return _date_words(match["d"], match["m"], match["y"], match["pre"])


def _day_range(match: re.Match[str]) -> str:
    prefix = match["pre"] or "ngày"
    first = f" {prefix} {read_number(int(match['d1']))} đến"
    return first + _date_words(match["d2"], match["m"], match["y"], "ngày")


def _dmy(match: re.Match[str]) -> str:
    return _date_words(match["d"], match["m"], match["y"], match["pre"])


def _my(match: re.Match[str]) -> str:
    if match["m"] is not None:
        return _date_words(None, match["m"], match["y"], match["pre"])
    return _date_words(None, match["m2"], match["y2"], match["pre2"])


def _dm(match: re.Match[str]) -> str:
    if match["d"] is not None:
        return _date_words(match["d"], match["m"], None, match["pre"])
    return _date_words(match["d2"], match["m2"], None, match["pre2"])


def _time_words(hours: str, minutes: str | None, seconds: str | None = None) -> str:
    words = [read_number(int(hours)), "giờ"]
    if minutes is not None and (int(minutes) or (seconds is not None and int(seconds))):
        words += [read_number(int(minutes)), "phút"]
    if seconds is not None and int(seconds):
        words += [read_number(int(seconds)), "giây"]
    return " " + " ".join(words) + " "


# --- storm terms, ordinals, Roman numerals -----------------------------------------------------

_ROMAN = r"(?=[IVXL])(?:XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_ROMAN_AFTER = re.compile(
    r"(?P<w>(?<!\w)(?i:cấp|quý|khóa|khoá|chương|mục|phần|phụ\s+lục|kỳ|đợt|thế\s+kỷ|đại\s+hội"
    r"|loại|nhóm|hạng|vùng|tập|thứ))"
    rf"\s+(?P<r>{_ROMAN})(?!\w)"
)
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}
_ORDINAL = re.compile(r"(?P<w>(?<!\w)(?i:thứ))\s+(?P<n>[0-9]+)(?![0-9]|[.,/:][0-9])")
_MONTH = re.compile(
    rf"(?P<w>(?<!\w)(?i:tháng))\s+(?P<a>{_MON})(?:\s*-\s*(?P<b>{_MON}))?(?![0-9]|[.,/:][0-9])"
)
_FORCE_RANGE = re.compile(
    r"(?P<w>(?<!\w)(?i:cấp))\s+(?P<a>[0-9]{1,2})\s*-\s*(?:(?i:cấp)\s*)?(?P<b>[0-9]{1,2})"
    r"(?![0-9]|[.,][0-9])"
)
_COORDINATE = re.compile(r"(?<![^\W\d_])(?i:độ\s+(?:vĩ|kinh)\s+(?:bắc|nam|đông|tây))(?!\w)")
# "Vĩ tuyến 16,0 độ Vĩ Bắc - 20,0 độ Vĩ Bắc" is a band (đến); "17,5 độ Vĩ Bắc - 112,3 độ Kinh
# Đông" is one position, two axes (a pause).
_COORDINATE_DASH = re.compile(
    r"(?P<c>(?<!\w)(?i:độ\s+(?P<axis>vĩ|kinh)\s+(?:bắc|nam|đông|tây)))\s*-\s*"
    r"(?=[0-9]+(?:[.,][0-9]+)?\s*(?i:độ\s+(?P<next>vĩ|kinh)))"
)
# "21,2°N – 109,5°E": a position, not a range from a latitude to a longitude.
_LATITUDE_UNITS = frozenset({"°N", "°B", "°S"})
_LONGITUDE_NEXT = re.compile(r"[0-9]+(?:[.,][0-9]+)?\s?°[EĐW]")
_DEGREE_C = re.compile(r"(?<!\w)(?P<w>(?i:độ))\s+C(?!\w)")


def _roman_value(numeral: str) -> int:
    total = 0
    for index, char in enumerate(numeral):
        value = _ROMAN_VALUES[char]
        following = _ROMAN_VALUES[numeral[index + 1]] if index + 1 < len(numeral) else 0
        total += -value if value < following else value
    return total


def _roman_after(match: re.Match[str]) -> str:
    value = _roman_value(match["r"])
    trigger = match["w"]
    spoken = read_ordinal(value) if trigger.lower() == "thứ" else read_number(value)
    return f"{trigger} {spoken}"


# --- units, ranges, symbols ------------------------------------------------------------------

_UNITS: dict[str, str] = {
    "km2": "ki-lô-mét vuông",
    "m2": "mét vuông",
    "m3": "mét khối",
    "km": "ki-lô-mét",
    "cm": "xen-ti-mét",
    "mm": "mi-li-mét",
    "m": "mét",
    "kg": "ki-lô-gam",
    "ha": "héc-ta",
    "%": "phần trăm",
    "°C": "độ xê",
    "oC": "độ xê",
    "°N": "độ vĩ bắc",
    "°B": "độ vĩ bắc",
    "°S": "độ vĩ nam",
    "°E": "độ kinh đông",
    "°Đ": "độ kinh đông",
    "°W": "độ kinh tây",
    "°": "độ",
    "hPa": "héc-tô-pát-xcan",
    "mb": "mi-li-ba",
    "kWh": "ki-lô-oát giờ",
    "kW": "ki-lô-oát",
    "MW": "mê-ga-oát",
    "kHz": "ki-lô-héc",
    "MHz": "mê-ga-héc",
    "CV": "mã lực",
    "ml": "mi-li-lít",
    "VNĐ": "đồng",
    "VND": "đồng",
    "USD": "đô la Mỹ",
    "đ": "đồng",
}
# Units safe to expand without a number in front ("cách bờ bao nhiêu km").
_FREE_UNITS = ("km2", "km", "kg", "cm", "mm", "hPa", "kHz", "MHz", "°C")
_DENOMINATORS: dict[str, str] = {
    "h": "giờ",
    "giờ": "giờ",
    "s": "giây",
    "giây": "giây",
    "phút": "phút",
    "ngày": "ngày",
    "tuần": "tuần",
    "tháng": "tháng",
    "quý": "quý",
    "vụ": "vụ",
    "năm": "năm",
    "kg": "ki-lô-gam",
    "tạ": "tạ",
    "yến": "yến",
    "tấn": "tấn",
    "ha": "héc-ta",
    "m2": "mét vuông",
    "m3": "mét khối",
    "km": "ki-lô-mét",
    "m": "mét",
    "lít": "lít",
    "người": "người",
    "lao động": "lao động",
    "thuyền viên": "thuyền viên",
    "tàu": "tàu",
    "chuyến": "chuyến",
    "lượt": "lượt",
    "lần": "lần",
    "hộ": "hộ",
    "con": "con",
    "chiếc": "chiếc",
}
# How "/" is read depends on what it divides (one rule, so a listener always hears the same):
# - a length or volume per unit of time is a speed or a flow: "60 km/h" → "ki-lô-mét trên giờ";
# - anything per unit of measure is a price or a yield: "120.000 đồng/kg" → "đồng một
#   ki-lô-gam", "5 tấn/ha" → "tấn một héc-ta";
# - anything per person, boat, trip or period is an amount for each: "50 triệu đồng/tàu" →
#   "đồng mỗi tàu" ("đồng trên tàu" sounds like money lying on the boat).
_RATE_NUMERATORS = frozenset({"km", "m", "cm", "mm", "m3", "mét", "hải lý", "vòng"})
_TIME_DENOMINATORS = frozenset({"h", "giờ", "s", "giây", "phút"})
_MEASURE_DENOMINATORS = frozenset({"kg", "tạ", "yến", "tấn", "ha", "m2", "m3", "km", "m", "lít"})
# Words that are a quantity on their own ("giá bao nhiêu đồng/kg"); any other word needs a number
# before it to be one ("10 người/tàu"), so "ngày/tháng/năm sinh" stays a list.
_QUANTITY_WORDS = frozenset({"đồng", "đô la Mỹ", "tấn", "lít", "hải lý", "km", "kg", "mét"})
_QUANTITY_BEFORE = re.compile(r"[0-9](?:[.,][0-9]+)*\s*(?:(?i:nghìn|ngàn|triệu|tỷ|tỉ|trăm)\s+)?$")


def _per(numerator: str, denominator: str) -> str:
    if numerator in _RATE_NUMERATORS and denominator in _TIME_DENOMINATORS:
        return "trên"
    return "một" if denominator in _MEASURE_DENOMINATORS else "mỗi"


_UNIT_ALT = _alternation(_UNITS)
_DENOMINATOR_ALT = _alternation(_DENOMINATORS)
# "/kg", "/ 1 kg" (written out as "một" anyway), chained: "đồng/người/năm".
_PER_STEP = rf"\s?/\s?(?:0?1\s?)?(?:{_DENOMINATOR_ALT})(?![^\W_])"
_PER_STEPS = re.compile(rf"/\s?(?:0?1\s?)?(?P<d>{_DENOMINATOR_ALT})(?![^\W_])")
_PER = rf"(?P<per>(?:{_PER_STEP})+)"
_UNIT_AFTER_NUMBER = re.compile(rf"(?<=[0-9])\s?(?P<u>{_UNIT_ALT}){_PER}?(?![^\W_])")
_FREE_UNIT = re.compile(rf"(?<![^\W\d_])(?P<u>{_alternation(_FREE_UNITS)}){_PER}?(?![^\W_])")
# Units of two words come first; "USD" is already "đô la Mỹ" here (the dictionary ran).
_PER_AFTER_WORD = re.compile(rf"(?<![^\W\d_])(?P<w>hải lý|đô la Mỹ|[^\W\d_]+){_PER}")
_RANGE = re.compile(rf"(?P<a>[0-9])(?P<u>\s?(?:{_UNIT_ALT})(?![^\W_]))?\s*[-~÷]\s*(?=[0-9])")


def _read_per(numerator: str, steps: str) -> str:
    """The spoken "per" part after `numerator`: " một ki-lô-gam", " mỗi người mỗi năm"."""
    words = []
    for step in _PER_STEPS.finditer(steps):
        denominator = step["d"]
        words += [_per(numerator, denominator), _DENOMINATORS[denominator]]
        numerator = denominator
    return " " + " ".join(words)


def _range(match: re.Match[str]) -> str:
    unit = (match["u"] or "").strip()
    if unit in _LATITUDE_UNITS and _LONGITUDE_NEXT.match(match.string, match.end()):
        return f"{match['a']}{match['u']}, "
    return f"{match['a']}{match['u'] or ''} đến "


def _word_dash_number(match: re.Match[str]) -> str:
    word, start = match["w"], match.start()
    if start and (match.string[start - 1].isdigit() or match.string[start - 1] == "°"):
        return match.group()  # "3m-5m", "6h-8h", "16°N-20°N": a range, read as one later
    return word + " "


def _unit(match: re.Match[str]) -> str:
    spoken = _UNITS[match["u"]]
    if match["per"]:
        spoken += _read_per(match["u"], match["per"])
    return f" {spoken} "


def _per_after_word(match: re.Match[str]) -> str:
    word = match["w"]
    if word not in _QUANTITY_WORDS:
        before = match.string[max(0, match.start() - 24) : match.start()]
        if not _QUANTITY_BEFORE.search(before):
            return match.group()  # "ngày/tháng/năm sinh": a list, read with pauses later
    return f"{word}{_read_per(word, match['per'])} "


_TIMES_PREFIX = re.compile(r"(?<!\w)[x×]\s?(?=[0-9])")
_TIMES_INFIX = re.compile(r"(?<=[0-9])\s?[x×]\s?(?=[0-9])")
_NEGATIVE = re.compile(r"(?<![\w)\]])-(?=[0-9])")
_WORD_DASH_NUMBER = re.compile(r"(?P<w>[^\W\d_]+)-(?=[0-9])")
_HASH_NUMBER = re.compile(r"[#№]\s?(?=[0-9])")
_SYMBOL_WORDS: dict[str, str] = {
    ">=": "lớn hơn hoặc bằng",
    "<=": "nhỏ hơn hoặc bằng",
    "≥": "lớn hơn hoặc bằng",
    "≤": "nhỏ hơn hoặc bằng",
    "&": "và",
    "+": "cộng",
    "~": "khoảng",
    "≈": "khoảng",
    ">": "lớn hơn",
    "<": "nhỏ hơn",
    "=": "bằng",
    "±": "cộng trừ",
    "@": "a còng",
    "%": "phần trăm",
    "°": "độ",
    "№": "số",
}
_SYMBOL = re.compile(_alternation(_SYMBOL_WORDS))
_NUMBER_SLASH = re.compile(r"(?<=[0-9])\s*/\s*(?=[0-9])")
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")
_THOUSANDS = re.compile(r"[1-9][0-9]{0,2}(?:\.[0-9]{3})+")
_MAX_NUMBER_DIGITS = 15


def _read_integer_text(digits: str) -> str:
    if digits.startswith("0") and len(digits) > 2:
        return read_digits(digits)  # "007", "0123": an identifier, not a quantity
    if len(digits) > _MAX_NUMBER_DIGITS:
        return read_digits(digits)
    return read_number(int(digits))


def _read_pieces(token: str) -> str:
    words = {".": "chấm", ",": "phẩy"}
    return " ".join(
        words.get(piece) or _read_integer_text(piece) for piece in re.split(r"([.,])", token)
    )


def _read_numeric(token: str) -> str:
    """Read a digit token: Vietnamese "1.234,5", English "1,234,567", "4.0", lists "1,2,3"."""
    if "," in token:
        whole, _, fraction = token.rpartition(",")
        if "," in whole:
            parts = token.split(",")
            if "." not in token and len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:]):
                return read_number(int("".join(parts)))  # English thousands: 9,661,345
            return ", ".join(_read_numeric(part) for part in parts)
        if "." in fraction:
            return _read_pieces(token)  # "4,5.5": no convention to follow, read what is there
        if "." in whole and not _THOUSANDS.fullmatch(whole):
            return _read_numeric(whole) + " phẩy " + read_fraction(fraction)
        return read_decimal(token)
    if "." in token:
        if _THOUSANDS.fullmatch(token):
            return read_number(int(token.replace(".", "")))
        return " chấm ".join(_read_integer_text(part) for part in token.split("."))
    return _read_integer_text(token)


# --- final punctuation clean-up --------------------------------------------------------------

_ELLIPSIS = re.compile(r"\.{2,}|…")
_PAUSE_MARKS = re.compile(r"[()\[\]{}|•·●▪◦►]")
_SLASH = re.compile(r"\s*/\s*")
_LOOSE_DASH = re.compile(r"(?<![^\W\d_])-+|-+(?![^\W\d_])")
_STRAY = re.compile(r"[^\w\s.,;:!?\-]|_")
_SPACE_BEFORE_MARK = re.compile(r"\s+([.,;:!?])")
_MARK_RUN = re.compile(r"[.,;:!?](?:\s*[.,;:!?])+")
_MARK_STRENGTH = {",": 0, ":": 1, ";": 2, ".": 3, "!": 3, "?": 3}
_MARK_THEN_WORD = re.compile(r"([.,;:!?])(?=[^\W\d_])")
_LEADING_MARKS = re.compile(r"^[\s.,;:!?]+")
_TRAILING_WEAK = re.compile(r"[\s,;:]+$")
_SPACES = re.compile(r"\s+")


def _tidy(text: str) -> str:
    text = _ELLIPSIS.sub(".", text)
    text = _PAUSE_MARKS.sub(",", text)
    text = _SLASH.sub(", ", text)
    text = _LOOSE_DASH.sub(", ", text)
    text = _STRAY.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_MARK.sub(r"\1", text)
    # Brackets turned into commas meet real marks: ", ;" → ";", ", ." → ".".
    text = _MARK_RUN.sub(
        lambda m: max(m.group().replace(" ", ""), key=_MARK_STRENGTH.__getitem__), text
    )
    text = _MARK_THEN_WORD.sub(r"\1 ", text)
    text = _LEADING_MARKS.sub("", text)
    text = _TRAILING_WEAK.sub("", text)
    return _SPACES.sub(" ", text).strip()


# --- the pipeline ------------------------------------------------------------------------------


def _prepare(text: str) -> str:
    if "&" in text and ";" in text:
        text = html.unescape(text)  # scraped pages leave "&amp;", "&nbsp;"
    # NFKC folds compatibility forms to what the rules expect: "㎞" → "km", "m²" → "m2",
    # "℃" → "°C", "…" → "...", fullwidth digits and no-break spaces.
    text = unicodedata.normalize("NFKC", text).translate(_CHAR_FIXES)
    text = _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.decimal(m.group())), text)
    text = _HTML_TAG.sub(lambda m: "\n" if m["name"].lower() in _HTML_BLOCKS else " ", text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _COUNTER.sub(" ", text)
    text = _CHROME_LINE.sub("", text)
    text = _BULLET.sub("", text)
    text = _join_lines(text)
    text = _CHROME_RUN.sub(" ", text)
    return _CHROME_ALWAYS.sub(" ", text)


# "Mẫu số 26.NT" (a form annexed to a decree): the letters are a form code, not a sentence.
_FORM_NUMBER = re.compile(
    r"(?P<w>(?<!\w)(?i:mẫu)(?:\s+(?i:số))?)\s+(?P<n>[0-9]{1,3})\.(?P<code>[A-ZĐ]{1,5})(?!\w)"
)


def _codes(text: str, abbreviations: Mapping[str, str]) -> str:
    def bare(match: re.Match[str]) -> str:
        if match.group() in abbreviations:
            return match.group()  # "CT-XH" is chính trị - xã hội, not a directive
        return f" {_read_code_letters(match['segs'], abbreviations)} "

    def number_year(match: re.Match[str]) -> str:
        number, year = read_number(int(match["num"])), read_number(int(match["year"]))
        return f" {match['so']} {number} năm {year} "

    text = _FORM_NUMBER.sub(
        lambda m: f"{m['w']} {read_number(int(m['n']))} chấm {spell_letters(m['code'])} ", text
    )
    text = _CODE.sub(lambda m: _read_numbered_code(m, abbreviations), text)
    text = _BARE_CODE.sub(bare, text)
    return _SO_NUMBER_YEAR.sub(number_year, text)


_BCH = re.compile(
    r"(?<!\w)BCH(?!\w)(?=\s*(?:(?P<huy>PCTT|TKCN|[Pp]hòng\s+chống)"
    r"|(?P<bo>BĐBP|QS|[Bb]ộ\s+đội|[Qq]uân\s+sự|[Bb]iên\s+phòng)"
    r"|(?P<chap>TW|TƯ|[Tt]rung\s+ương|Đảng|Đoàn|[Cc]ông\s+đoàn|Hội))?)"
)


def _bch(match: re.Match[str]) -> str:
    if match["bo"]:
        return " Bộ Chỉ huy "
    if match["chap"]:
        return " Ban Chấp hành "
    return f" {default_abbreviations().get('BCH') or 'Ban Chỉ huy'} "


# "TT" is a circular (thông tư) in "theo TT 23/2018", a town (thị trấn) before a place name
# ("TT. Sông Đốc", "TT Cát Bà": every syllable capitalised) and a centre (trung tâm) before
# what the centre does ("TT Dự báo KTTV").
_TT = re.compile(r"(?<![\w.])TT(?P<dot>\.)?[ ]*(?=(?P<w1>[^\W\d_]+)(?:[ ]+(?P<w2>[^\W\d_]+))?)")
_CENTRE_WORDS = frozenset(
    (
        *("dự báo", "y tế", "khuyến nông", "văn hóa", "văn hoá", "thông tin", "truyền thông"),
        *("hành chính", "phục vụ", "quan trắc", "nước sạch", "giáo dục", "chính trị"),
        *("điều hành", "phối hợp", "tìm kiếm", "huấn luyện", "kiểm soát", "cứu hộ", "dạy nghề"),
        *("khí tượng", "công nghệ", "nghiên cứu", "đăng kiểm", "bảo trợ", "phát triển"),
    )
)


def _tt(match: re.Match[str]) -> str:
    first, second = match["w1"], match["w2"] or ""
    if f"{first} {second}".lower() in _CENTRE_WORDS:
        return " Trung tâm "
    if not first[0].isupper():
        return match.group()
    if match["dot"] or (second[:1].isupper() and not second.isupper()):
        return " thị trấn "
    return match.group()


# Flood alert levels: "trên BĐ3", "mức BĐ2-BĐ3", "BĐ II" (báo động). A Bình Định boat
# ("BĐ-92158-TS") has four to six digits and is read before this.
_ALERT = r"(?:[1-3]|I{1,3})(?![\w])"
_FLOOD_ALERT = re.compile(
    rf"(?<![\w-])BĐ[ ]?(?P<a>{_ALERT})(?:[ ]*-[ ]*(?:BĐ[ ]?)?(?P<b>{_ALERT}))?"
    r"|(?P<said>(?<!\w)(?i:báo\s+động))\s*\(\s*BĐ\s*\)"
)
_ALERT_LEVELS = {"1": 1, "2": 2, "3": 3, "I": 1, "II": 2, "III": 3}


def _flood_alert(match: re.Match[str]) -> str:
    if match["said"]:
        return match["said"]  # "báo động (BĐ) 3": the letters only repeat what was said
    spoken = f" báo động {read_number(_ALERT_LEVELS[match['a']])}"
    if match["b"]:
        spoken += f" đến báo động {read_number(_ALERT_LEVELS[match['b']])}"
    return spoken + " "


# A signature block pasted from an official letter: "KT. CHỦ TỊCH", "TM. ỦY BAN NHÂN DÂN".
_SIGNING_FOR = {"KT": "ký thay", "TM": "thay mặt", "TL": "thừa lệnh", "TUQ": "thừa ủy quyền"}
_SIGNATURE = re.compile(
    rf"(?<![\w.])(?P<k>{_alternation(_SIGNING_FOR)})\.[ ]*(?=(?P<title>[^\W\d_]{{2,}}))"
)


def _signature(match: re.Match[str]) -> str:
    if not match["title"].isupper():
        return match.group()
    return f" {_SIGNING_FOR[match['k']]} "


# "UBND-KT" without a number: the People's Committee and its drafting desk (see _read_issuer).
_ISSUER_DESK = re.compile(r"(?<![\w/-])(?P<issuer>UBND|HĐND|UBMTTQ)-(?P<desk>[A-ZĐ]{1,4})(?![\w-])")


def _issuer_desk(match: re.Match[str]) -> str:
    # "HĐND-UBND" is two issuers (a joint document), not an issuer and its desk.
    return match.group() if match["desk"] in default_abbreviations() else match["issuer"]


@dataclass(frozen=True)
class _ContextReading:
    """An abbreviation read from its neighbours, tried before the dictionary's fixed reading.

    `key` is the dictionary entry it refines: a caller's mapping that reads `key` differently
    from the shipped one switches the rule off, so a caller's choice always wins. None: the
    rule refines no entry and always applies.
    """

    key: str | None
    pattern: re.Pattern[str]
    read: _Replacer


_CONTEXT_READINGS = (
    _ContextReading("BCH", _BCH, _bch),
    _ContextReading("TT", _TT, _tt),
    _ContextReading("BĐ", _FLOOD_ALERT, _flood_alert),
    _ContextReading(None, _SIGNATURE, _signature),
    _ContextReading(None, _ISSUER_DESK, _issuer_desk),
)


def _expand_abbreviations(text: str, abbreviations: Mapping[str, str]) -> str:
    defaults = default_abbreviations()
    for rule in _CONTEXT_READINGS:
        if rule.key is None or abbreviations.get(rule.key) == defaults.get(rule.key):
            text = rule.pattern.sub(rule.read, text)
    pattern = _abbreviation_pattern(frozenset(abbreviations))
    if pattern is None:
        return text

    def expand(match: re.Match[str]) -> str:
        expansion = abbreviations[match["key"]]
        if match["open"] and match["close"]:
            window = match.string[max(0, match.start() - 200) : match.start()]
            before = _SPACES.sub(" ", window).rstrip().lower()
            if before.endswith(expansion.lower()):
                return " "
        return f"{match['open'] or ''} {expansion} {match['close'] or ''}"

    return pattern.sub(expand, text)


# "20.2 độ Vĩ Bắc" (pages that type an English decimal point): a coordinate is never a version
# number, so the dot is the decimal mark and is read "phẩy" like the comma.
_COORDINATE_DECIMAL_DOT = re.compile(
    r"(?<![0-9.,])(?P<i>[0-9]{1,3})\.(?P<f>[0-9]{1,2})(?=\s*(?:°[NBSEĐW]|(?i:độ\s+(?:vĩ|kinh))))"
)


def _numbers_in_context(text: str) -> str:
    text = _COORDINATE_DECIMAL_DOT.sub(r"\g<i>,\g<f>", text)
    text = _QUARTER.sub(
        lambda m: f"{m['w']} {read_number(_QUARTERS[m['q']])} năm {read_number(int(m['y']))} ",
        text,
    )
    text = _DATE_TO_DATE.sub(lambda m: f"{m['a']} đến ", text)
    text = _ISO_DATE.sub(_iso_date, text)
    text = _DAY_RANGE.sub(_day_range, text)
    text = _DMY.sub(_dmy, text)
    text = _ROUND_THE_CLOCK.sub(lambda m: f"{m['w']} hai mươi tư trên bảy ", text)
    text = _MY.sub(_my, text)
    text = _DM.sub(_dm, text)
    text = _TIME_RANGE.sub(lambda m: f"{m['a']} đến ", text)
    text = _CLOCK.sub(lambda m: _time_words(m["h"], m["m"], m["s"]), text)
    text = _HOUR_H.sub(lambda m: _time_words(m["h"], m["m"]), text)
    text = _ROMAN_AFTER.sub(_roman_after, text)
    text = _ORDINAL.sub(lambda m: f"{m['w']} {read_ordinal(int(m['n']))} ", text)
    text = _FORCE_RANGE.sub(
        lambda m: f"{m['w']} {read_number(int(m['a']))} đến cấp {read_number(int(m['b']))} ",
        text,
    )
    text = _MONTH.sub(_month, text)
    text = _COORDINATE_DASH.sub(
        lambda m: f"{m['c']} {'đến' if m['axis'].lower() == m['next'].lower() else ','} ", text
    )
    text = _COORDINATE.sub(lambda m: m.group().lower(), text)
    return _DEGREE_C.sub(lambda m: f"{m['w']} xê", text)


def _month(match: re.Match[str]) -> str:
    spoken = f"{match['w']} {read_month(int(match['a']))}"
    if match["b"] is not None:
        spoken += f" đến tháng {read_month(int(match['b']))}"
    return spoken + " "


def _units_and_symbols(text: str) -> str:
    text = _RANGE.sub(_range, text)
    # "Per" first, while units are still written: "đồng/1kg" and "5kg/người" both need it.
    text = _PER_AFTER_WORD.sub(_per_after_word, text)
    text = _UNIT_AFTER_NUMBER.sub(_unit, text)
    text = _FREE_UNIT.sub(_unit, text)
    text = _TIMES_PREFIX.sub(" gấp ", text)
    text = _TIMES_INFIX.sub(" nhân ", text)
    text = _NEGATIVE.sub(" âm ", text)
    text = _HASH_NUMBER.sub(" số ", text)
    text = _SYMBOL.sub(lambda m: f" {_SYMBOL_WORDS[m.group()]} ", text)
    return _NUMBER_SLASH.sub(" trên ", text)


_STEPS: tuple[tuple[re.Pattern[str], _Replacer], ...] = (
    (_URL, _url),
    (_EMAIL, _email),
    (_PHONE_CUE, _phone_cue),
    (_EMERGENCY_LIST, _emergency_list),
    (_CALL_EMERGENCY, lambda m: f"{m['lead']}{read_digits(m['n'])} "),
    (_MOBILE, _mobile),
    (_SERVICE, _service),
    (_BOAT, lambda m: f" {spell_letters(m['p'])} {read_digits(m['n'])} tê ét "),
)


def to_spoken(text: str, abbreviations: Mapping[str, str] | None = None) -> str:
    """Rewrite bulletin text as it should be read aloud by a Vietnamese TTS voice.

    `abbreviations` replaces the shipped dictionary (ABBR → expansion, matched case-sensitively
    on whole words). The result is NFC, on one line, keeps . , ; : ? ! for pauses and holds no
    digits. Limits: heuristics for a radio register, not a full parser; a d/m pair such as
    "1/2" is read as a date and unknown acronyms are spelled letter by letter.
    """
    if abbreviations is None:
        mapping = default_abbreviations()
    else:  # the text is NFKC-normalised below, so the keys must be too; values composed
        mapping = {
            unicodedata.normalize("NFKC", key): unicodedata.normalize("NFC", value)
            for key, value in abbreviations.items()
        }
    text = _prepare(text)
    for pattern, replace in _STEPS:
        text = pattern.sub(replace, text)
    # "COVID-19", "Su-30": the dash is a joint, not a minus; settle it before expansions pad
    # words with spaces and the dash would look like a leading minus.
    text = _WORD_DASH_NUMBER.sub(_word_dash_number, text)
    text = _read_storm_names(text)
    text = _codes(text, mapping)
    text = _expand_abbreviations(text, mapping)
    text = _numbers_in_context(text)
    text = _units_and_symbols(text)
    text = _NUMBER.sub(lambda m: f" {_read_numeric(m.group())} ", text)
    text = _WORD.sub(_word_case, text)
    return unicodedata.normalize("NFC", _tidy(text))
