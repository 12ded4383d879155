"""Radio read-out of an urgent bulletin: 160 plain characters for VMS/SMS, ≤ 60 s for radio."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from audio.spoken import to_spoken
from audio.texts import SERVICE_NAME
from broadcasts.sms import GSM7_BASIC  # the SMS alphabet: what VMS terminals and phones show
from db.models import Area, AreaKind, Bulletin, BulletinArea, Priority
from db.text import fold, nfc

__all__ = [
    "SHORT_LIMIT",
    "SPOKEN_LIMIT",
    "Place",
    "Readout",
    "as_json",
    "build",
    "for_bulletin",
    "places_of",
    "sentences",
    "speaking_seconds",
    "unaccented",
]

# --- the words (reviewed with the rest of the copy) -----------------------------------------
# The short text is what a VMS terminal or an SMS shows: no diacritics, so written plainly.
URGENT_MARK: Final = "KHAN:"
SHORT_AREAS: Final = "Khu vuc: {areas}."
SHORT_EXPIRY: Final = "Hieu luc den {time}."
SHORT_MORE_PROVINCES: Final = "{first} va {count} tinh khac"
SHORT_PROVINCES: Final = "{count} tinh, thanh pho"
# The spoken text is read by a coastal radio station's announcer (or a TTS voice).
SPOKEN_INTRO: Final = "Đây là bản tin khẩn của {service}."
SPOKEN_AREAS: Final = "Khu vực: {areas}."
SPOKEN_EXPIRY: Final = "Bản tin có hiệu lực đến {time}."
SPOKEN_REPEAT: Final = "Xin nhắc lại: {key}"  # the key instruction was read in the body
SPOKEN_NOTE: Final = "Lưu ý: {key}"  # the body was cut before the key instruction
SPOKEN_MORE_PROVINCES: Final = "{first} và {count} tỉnh, thành phố khác"
SPOKEN_PROVINCES: Final = "{count} tỉnh, thành phố"

# --- limits -------------------------------------------------------------------------------
SHORT_LIMIT: Final = 160  # one SMS part of GSM-7; what VMS terminals show on one screen
SPOKEN_LIMIT: Final = 60.0  # seconds: what a coastal station relays in one go
# The spoken text is filled to this estimate, not to SPOKEN_LIMIT: the estimate is a fit
# (within ±5 % on our corpus) and the margin keeps real renders under the limit.
_SPOKEN_TARGET: Final = 55.0
_SHORT_AREAS_MAX: Final = 48  # the area list's share of the 160 characters at most
_SPOKEN_AREAS_MAX: Final = 8.0  # seconds
_KEY_MAX: Final = 14.0  # seconds: a repeated instruction longer than this is cut at a clause
_ELLIPSIS: Final = "..."
_CLIP_WORDS: Final = 400  # more than a minute of speech or 160 characters ever holds

# Speaking rate of the offline voice (espeak-ng "vi" at the engine's default 150 wpm),
# measured by rendering tests/data/bulletins/*.txt and the cd-*.md dispatches (2,000
# syllables, 9.0 minutes) after audio.spoken.to_spoken, with a least-squares fit of the
# rendered duration: 0.249 s a syllable, 0.437 s at a full stop, 0.148 s at a comma
# (3.63 syllables a second overall). Rounded up, so estimates err long.
SECONDS_PER_SYLLABLE: Final = 0.26
SECONDS_PER_STOP: Final = 0.45
SECONDS_PER_COMMA: Final = 0.15

# What the short text may hold: the plain-ASCII part of the basic table, so that terminals
# with a 7-bit ASCII font show it too.
_SHORT_CHARSET: Final = frozenset(ch for ch in GSM7_BASIC if " " <= ch <= "~")
_PLAIN: Final = str.maketrans(
    {
        "đ": "d", "Đ": "D", "ð": "d", "Ð": "D",
        "–": "-", "—": "-", "−": "-", "‒": "-", "‐": "-", "‑": "-", "•": "-", "·": "-",
        "“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "`": "'",
        "…": "...", "×": "x", "[": "(", "]": ")", "{": "(", "}": ")", "\\": "/", "|": "/",
        "°": "", "^": "", "~": "", "€": "EUR",
    }
)  # fmt: skip
_SPACES: Final = re.compile(r"\s+")

# --- reading the body ---------------------------------------------------------------------
# A sentence ends at . ! ? … and a space, unless a lower-case letter follows ("TP. hồ");
# a line ends one too.
_SENTENCE_END: Final = re.compile(r"(?<=[.!?…])\s+")
_BULLET: Final = re.compile(r"^\s*(?:[-+*•#>]+|\d{1,2}[.)])\s+")
_ENDS: Final = (".", "!", "?", "…", ":", ";")
# What a fisherman must do (weighted most) and what threatens (next); matched on lower case
# text with its diacritics, since folding merges "bão" (storm) with "báo" (report).
_INSTRUCTIONS: Final = re.compile(
    r"\b(?:không ra khơi|cấm biển|cấm tàu|vào bờ|về bờ|nơi trú ẩn|tránh trú|trú tránh|neo đậu"
    r"|ra khỏi|thoát ra|không đi vào|không được|không để|tuyệt đối|khẩn trương|kêu gọi"
    r"|yêu cầu|đề nghị|phải|sơ tán|chủ động|giữ liên lạc|liên lạc|báo cáo vị trí|gia cố)\b"
)
_HAZARDS: Final = re.compile(
    r"\b(?:bão|áp thấp|gió mạnh|giật|sóng|biển động|sóng thần|lốc|sét|triều cường|lũ|sạt lở"
    r"|ngập|sương mù|động đất|nguy hiểm|rủi ro thiên tai|cấp \d+)\b"
)
# Preambles that name a document or a sender rather than say what to do (skipped), and
# the marks of a signature block or distribution list (the body ends there).
_PREAMBLE: Final = re.compile(r"^(?:căn cứ|thực hiện|kính gửi|nguồn|trích)(?!\w)")
_SIGN_OFF: Final = re.compile(r"^(?:nơi nhận|kt\.|tm\.|ký thay|thay mặt)(?!\w)")
# Written time before digits-only shortening: "17 giờ 30" → "17h30", "17 giờ" → "17h".
_HOURS: Final = re.compile(r"\b(\d{1,2})\s*giờ(?:\s*(\d{1,2})(?:\s*phút)?)?(?!\w)")
_SYLLABLE: Final = re.compile(r"[^\W\d_]+")
_STOPS: Final = re.compile(r"[.!?;:…]")


@dataclass(frozen=True, slots=True)
class Place:
    """One audience area as the read-out names it: the commune (None for a whole
    province) and its province, without their division words ("Cát Hải", "Hải Phòng")."""

    commune: str | None
    province: str


@dataclass(frozen=True, slots=True)
class Readout:
    """The two relay texts of an urgent bulletin."""

    short: str  # ≤ SHORT_LIMIT characters, plain ASCII within the GSM-7 basic set
    spoken: str  # NFC Vietnamese, written form (digits stay digits) for an announcer
    spoken_seconds: float  # estimated at the offline voice's rate, ≤ SPOKEN_LIMIT

    @property
    def short_chars(self) -> int:
        return len(self.short)


# --- text helpers -------------------------------------------------------------------------


def unaccented(text: str) -> str:
    """Plain ASCII in the GSM-7 basic set, case kept: "Đặc khu Cát Hải" → "Dac khu Cat Hai".

    Diacritics are dropped (đ → d, Đ → D), typographic marks become their ASCII forms,
    anything else outside the set (emoji, CJK, escape-table characters) is dropped, and
    whitespace is collapsed to single spaces.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_PLAIN))
    kept = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        mapped = ch.translate(_PLAIN)  # NFKD can produce marks the first pass had not seen
        kept.append(mapped if all(c in _SHORT_CHARSET for c in mapped) else " ")
    return _SPACES.sub(" ", "".join(kept)).strip()


def speaking_seconds(text: str) -> float:
    """Estimated time to speak ``text`` (written form) at the offline voice's rate.

    Counts syllables and pauses of the spoken form (audio.spoken.to_spoken, so numbers,
    dates and units count as said). Accurate to about ±5 % on bulletin prose; a human
    announcer reads at a similar pace.
    """
    spoken = to_spoken(text)
    syllables = len(_SYLLABLE.findall(spoken))
    stops = len(_STOPS.findall(spoken))
    commas = spoken.count(",")
    return syllables * SECONDS_PER_SYLLABLE + stops * SECONDS_PER_STOP + commas * SECONDS_PER_COMMA


def _sentence(text: str) -> str:
    """Whitespace collapsed and a closing mark added if there is none."""
    text = _SPACES.sub(" ", text).strip()
    if text and not text.endswith(_ENDS):
        text += "."
    return text


def sentences(body: str) -> list[str]:
    """The body's sentences in order, each on one line and closed by a mark.

    Lines are sentences too (bulletins are often lists); list bullets are dropped.
    """
    found: list[str] = []
    for line in nfc(body).splitlines():
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        pieces: list[str] = []
        for piece in _SENTENCE_END.split(line):
            if pieces and piece[:1].islower():
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        found.extend(_sentence(p) for p in pieces if any(ch.isalnum() for ch in p))
    return found


def _score(sentence: str, position: int) -> int:
    """How much a sentence matters to a skipper at sea: instructions, then hazards, then
    figures."""
    lower = sentence.lower()
    score = 0
    instructions = len(_INSTRUCTIONS.findall(lower))
    if instructions:
        score += 3 + min(instructions - 1, 2)
    if _HAZARDS.search(lower):
        score += 2
    if any(ch.isdigit() for ch in sentence):
        score += 1
    if position == 0:
        score += 1  # bulletins lead with the news
    return score


def _content(title: str, body: str) -> list[str]:
    """The sentences worth relaying, in order: without the title said again, preambles
    ("Căn cứ …"), fragments of under three words that carry nothing (a heading, a rank),
    and anything from a signature or distribution list ("KT. CHỦ TỊCH", "Nơi nhận") on."""
    title_folded = fold(title).rstrip(".!?…:;")
    kept: list[str] = []
    for position, sentence in enumerate(sentences(body)):
        lower = sentence.lower()
        if _SIGN_OFF.match(lower):
            break
        if _PREAMBLE.match(lower) or fold(sentence).rstrip(".!?…:;") == title_folded:
            continue
        if len(sentence.split()) < 3 and _score(sentence, position + 1) <= 0:
            continue
        kept.append(sentence)
    return kept


def _key_index(found: Sequence[str]) -> int | None:
    """The key instruction: the best-scored sentence that tells people what to do, else
    the best-scored sentence; ties go to the earlier one."""
    if not found:
        return None
    scored = [(_score(s, i), i) for i, s in enumerate(found)]
    orders = [pair for pair in scored if _INSTRUCTIONS.search(found[pair[1]].lower())]
    best = max(orders or scored, key=lambda pair: (pair[0], -pair[1]))
    return best[1]


def _clip(text: str, fits: _Fits, *, clause_only: bool = False) -> str | None:
    """The longest start of ``text`` that ``fits``, cut after a clause mark if one is
    late enough, else between words (never inside a word or a number); None if fewer
    than three words fit, or with ``clause_only`` if no clause ends in what fits."""
    words = text.split(" ")[:_CLIP_WORDS]

    def head(count: int) -> str:
        return " ".join(words[:count]).rstrip(",;:-")

    low, high = 0, len(words)  # the most words that fit, by bisection (time is monotonic)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(head(middle)):
            low = middle
        else:
            high = middle - 1
    if low < 3:
        return None
    best = head(low)
    for count in range(low, 3, -1):
        if words[count - 1].endswith((",", ";", ":")):
            clause = head(count)
            return clause if clause_only or len(clause) >= len(best) * 2 // 3 else best
    return None if clause_only else best


class _Fits:
    """A check that a candidate (with ``suffix`` added) fits a budget: characters, or
    estimated seconds when ``seconds`` is true."""

    def __init__(self, budget: float, *, seconds: bool = False, suffix: str = "") -> None:
        self.budget, self.seconds, self.suffix = budget, seconds, suffix

    def __call__(self, text: str) -> bool:
        candidate = text + self.suffix
        if self.seconds:
            return speaking_seconds(candidate) <= self.budget
        return len(candidate) <= self.budget


def _hard_cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, never ending inside a word or a number."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit, 0)]
    if text[len(cut)].isalnum():
        cut = re.sub(r"\w+$", "", cut)
    return cut.rstrip()


# --- places -------------------------------------------------------------------------------


def _bare(name: str, division: str) -> str:
    """The name without its division word, unless what is left starts with a digit."""
    for prefix in (division, "thành phố", "tỉnh"):
        if prefix and name.lower().startswith(prefix.lower() + " "):
            rest = name[len(prefix) + 1 :].strip()
            if rest and not rest[0].isdigit():
                return rest
    return name


def _groups(places: Sequence[Place]) -> list[tuple[str, list[str]]]:
    """Provinces in first-seen order, each with its communes (empty: the whole province)."""
    groups: dict[str, list[str]] = {}
    whole: set[str] = set()
    for place in places:
        communes = groups.setdefault(place.province, [])
        if place.commune is None:
            whole.add(place.province)
        elif place.commune not in communes:
            communes.append(place.commune)
    return [(p, [] if p in whole else communes) for p, communes in groups.items()]


def _area_forms(places: Sequence[Place], more: str, many: str) -> list[str]:
    """Ways to name the audience, longest first: communes with provinces ("Cát Hải, Hải
    Phòng"; "Cát Hải, Bạch Long Vĩ (Hải Phòng)"), provinces only, the first province and a
    count, a count."""
    groups = _groups(places)
    if not groups:
        return []

    def group(province: str, communes: list[str]) -> str:
        if not communes:
            return province
        if len(communes) == 1:
            return f"{communes[0]}, {province}"
        return f"{', '.join(communes)} ({province})"

    forms = ["; ".join(group(p, c) for p, c in groups)]
    forms.append(", ".join(p for p, _ in groups))
    if len(groups) > 1:
        forms.append(more.format(first=groups[0][0], count=len(groups) - 1))
        forms.append(many.format(count=len(groups)))
    return forms


# --- building -----------------------------------------------------------------------------


def _short_time(moment: dt.datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    minutes = f"{local.minute:02d}" if local.minute else ""
    return f"{local.hour}h{minutes} {local.day:02d}/{local.month:02d}"


def _spoken_time(moment: dt.datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    minutes = f" {local.minute} phút" if local.minute else ""
    return f"{local.hour} giờ{minutes} ngày {local.day}/{local.month}"


def _plain(text: str) -> str:
    return unaccented(_HOURS.sub(lambda m: f"{m[1]}h{m[2] or ''}", text))


def _compose(title: str, body: Sequence[str], areas: str, tail: list[str]) -> tuple[str, list[str]]:
    """The short text with this area line, and the body sentences it holds."""
    head = f"{URGENT_MARK} {_plain(_sentence(title))}"
    fixed = [areas, *tail] if areas else tail
    fixed_length = sum(len(part) + 1 for part in fixed)
    if len(head) + fixed_length > SHORT_LIMIT:  # a long title: cut it, keep where and until
        room = SHORT_LIMIT - fixed_length
        clipped = _clip(head, _Fits(room, suffix=_ELLIPSIS))
        head = clipped + _ELLIPSIS if clipped else _hard_cut(head, room)
    room = SHORT_LIMIT - len(head) - fixed_length
    # The most important sentences that fit, said in their own order.
    plain = [_plain(s) for s in body]
    ranked = sorted(range(len(body)), key=lambda i: (-_score(body[i], i), i))
    chosen: list[int] = []
    for index in ranked:
        cost = len(plain[index]) + 1
        if cost <= room:
            chosen.append(index)
            room -= cost
    said = [plain[i] for i in sorted(chosen)]
    if not said and ranked and room >= 24:  # nothing whole fits: the start of the best one
        clipped = _clip(plain[ranked[0]], _Fits(room - 1, suffix=_ELLIPSIS))
        if clipped:
            said = [clipped + _ELLIPSIS]
    return " ".join([head, *said, *fixed]), said


def _short(title: str, body: Sequence[str], places: Sequence[Place], expiry: str | None) -> str:
    """The short text with the most precise area line that costs no body sentence: the
    first form of at most _SHORT_AREAS_MAX characters, or a longer one where room is left."""
    tail = [SHORT_EXPIRY.format(time=expiry)] if expiry else []
    forms = [
        SHORT_AREAS.format(areas=unaccented(form))
        for form in _area_forms(places, SHORT_MORE_PROVINCES, SHORT_PROVINCES)
    ]
    compact = next((i for i, form in enumerate(forms) if len(form) <= _SHORT_AREAS_MAX), None)
    if compact is None:
        return _compose(title, body, "", tail)[0]
    text, said = _compose(title, body, forms[compact], tail)
    for form in forms[:compact]:
        if len(form) <= SHORT_LIMIT // 2:
            longer, longer_said = _compose(title, body, form, tail)
            if longer_said == said:
                return longer
    return text


def _spoken(
    title: str, body: Sequence[str], places: Sequence[Place], expiry: str | None
) -> tuple[str, float]:
    parts = [SPOKEN_INTRO.format(service=SERVICE_NAME)]
    forms = _area_forms(places, SPOKEN_MORE_PROVINCES, SPOKEN_PROVINCES)
    for form in forms:
        candidate = SPOKEN_AREAS.format(areas=form)
        if form is forms[-1] or speaking_seconds(candidate) <= _SPOKEN_AREAS_MAX:
            parts.append(candidate)
            break
    title_line = _sentence(title)
    if speaking_seconds(title_line) > _KEY_MAX:  # a title is short; a runaway one is cut
        clipped = _clip(title_line.rstrip(".!?…:;"), _Fits(_KEY_MAX, seconds=True, suffix="."))
        title_line = clipped + "." if clipped else title_line
    parts.append(title_line)
    end = [SPOKEN_EXPIRY.format(time=expiry)] if expiry else []
    key_at = _key_index(body)
    key = body[key_at] if key_at is not None else title_line
    if speaking_seconds(key) > _KEY_MAX:
        clipped = _clip(key.rstrip(".!?…:;"), _Fits(_KEY_MAX, seconds=True, suffix="."))
        key = (clipped + ".") if clipped else key
    seconds = sum(speaking_seconds(p) for p in parts) + sum(speaking_seconds(p) for p in end)
    repeat_seconds = speaking_seconds(SPOKEN_REPEAT.format(key=key))
    said: list[str] = []
    for index, sentence in enumerate(body):
        cost = speaking_seconds(sentence)
        if seconds + cost + repeat_seconds > _SPOKEN_TARGET:
            if index == key_at:  # the closing says it; half of it first would only confuse
                break
            # What fits of it, cut after a clause (the first sentence: between words too).
            room = _SPOKEN_TARGET - seconds - repeat_seconds
            fits = _Fits(room, seconds=True, suffix=".")
            clipped = _clip(sentence.rstrip(".!?…:;"), fits, clause_only=bool(said))
            if clipped and len(clipped.split(" ")) >= 5:
                said.append(clipped + ".")
                seconds += speaking_seconds(said[-1])
            break
        said.append(sentence)
        seconds += cost
    key_said = key_at is not None and key_at < len(said) and said[key_at] == body[key_at]
    closing = (SPOKEN_REPEAT if key_said or key_at is None else SPOKEN_NOTE).format(key=key)
    text = " ".join([*parts, *said, *end, closing])
    return text, round(speaking_seconds(text), 1)


def build(
    title: str,
    body: str,
    *,
    priority: Priority,
    places: Sequence[Place] = (),
    expires_at: dt.datetime | None = None,
    tz: ZoneInfo,
) -> Readout | None:
    """The read-out of an urgent bulletin; None for a routine one.

    ``short`` leads with URGENT_MARK and the title, then the body's most important
    sentences (instructions, then hazards, then figures) that fit whole, in their order,
    the area names and the expiry in ``tz``: at most SHORT_LIMIT characters, plain ASCII
    within the GSM-7 basic set, cut only between words. ``spoken`` opens with the
    service, names the areas, reads the title and the body's sentences in order while the
    estimate stays under 55 s (SPOKEN_LIMIT less a margin), the expiry, and closes by
    repeating the key instruction. Deterministic: the same bulletin gives the same texts.
    """
    if priority is not Priority.urgent:
        return None
    found = _content(title, body)
    short_expiry = _short_time(expires_at, tz) if expires_at else None
    spoken_expiry = _spoken_time(expires_at, tz) if expires_at else None
    short = _short(nfc(title), found, places, short_expiry)
    spoken, seconds = _spoken(nfc(title), found, places, spoken_expiry)
    return Readout(short=short, spoken=nfc(spoken), spoken_seconds=seconds)


def as_json(bulletin_id: int, relay: Readout) -> dict[str, object]:
    """The read-out as the dashboard API and the CLI print it."""
    return {
        "id": bulletin_id,
        "short": relay.short,
        "short_chars": relay.short_chars,
        "short_limit": SHORT_LIMIT,
        "spoken": relay.spoken,
        "spoken_seconds": relay.spoken_seconds,
        "spoken_limit_seconds": SPOKEN_LIMIT,
    }


async def places_of(session: AsyncSession, bulletin_id: int) -> list[Place]:
    """The bulletin's audience as places, by area code; a village or port counts as its
    commune (two queries)."""
    targets = list(
        (
            await session.scalars(
                select(Area)
                .join(BulletinArea, BulletinArea.area_id == Area.id)
                .where(BulletinArea.bulletin_id == bulletin_id)
                .order_by(Area.code)
            )
        ).all()
    )
    wanted = {ref for a in targets for ref in (a.parent_id, a.province_id) if ref is not None}
    by_id = {a.id: a for a in targets}
    missing = wanted - by_id.keys()
    if missing:
        by_id |= {a.id: a for a in await session.scalars(select(Area).where(Area.id.in_(missing)))}
    result: list[Place] = []
    for area in targets:
        if area.kind in (AreaKind.village, AreaKind.port) and area.parent_id in by_id:
            area = by_id[area.parent_id]
        if area.kind is AreaKind.province:
            place = Place(None, _bare(area.name, area.division_type))
        else:
            province = by_id.get(area.province_id) if area.province_id else None
            name = _bare(area.name, area.division_type)
            if province is None:
                place = Place(None, name)
            else:
                place = Place(name, _bare(province.name, province.division_type))
        if place not in result:
            result.append(place)
    return result


async def for_bulletin(session: AsyncSession, bulletin: Bulletin, tz: ZoneInfo) -> Readout | None:
    """The read-out of a stored bulletin (None unless urgent); loads its areas."""
    if bulletin.priority is not Priority.urgent:
        return None
    return build(
        bulletin.title,
        bulletin.body,
        priority=bulletin.priority,
        places=await places_of(session, bulletin.id),
        expires_at=bulletin.expires_at,
        tz=tz,
    )
