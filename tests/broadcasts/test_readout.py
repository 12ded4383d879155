"""The radio read-out: 160 plain GSM-7 characters, and a text espeak really says in ≤ 60 s."""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo

from audio import studio
from audio.spoken import to_spoken
from broadcasts import readout
from broadcasts.readout import SHORT_LIMIT, SPOKEN_LIMIT, Place, Readout, build
from broadcasts.sms import GSM7_BASIC
from db.models import Bulletin, Priority
from tests.cap import approved
from tests.conftest import Database

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
EXPIRES = dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.UTC)  # 18:00 on 7 December in Hải Phòng
DATA = Path(__file__).resolve().parents[1] / "data"
CAT_HAI = Place("Cát Hải", "Hải Phòng")
WIND = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ."
# An official dispatch: preamble, figures, dates, instructions, signature.
DISPATCH = "\n".join(
    (
        "Căn cứ Công điện số 05/CĐ-TTg ngày 05/9/2024 của Thủ tướng Chính phủ;",
        "Hồi 13 giờ ngày 23/8, vị trí tâm bão số 5 ở vào khoảng 17,4°N – 115,0°E, cách đặc khu "
        "Hoàng Sa khoảng 300 km về phía Đông Đông Bắc.",
        "Sức gió mạnh nhất vùng gần tâm bão mạnh cấp 9 (75-88 km/h), giật cấp 11; sóng biển cao "
        "3,5-5,0 m.",
        "Dự báo trong 24 giờ tới, bão di chuyển theo hướng Tây Tây Bắc, mỗi giờ đi được 20-25 km.",
        "- Yêu cầu tàu thuyền đang hoạt động trên biển khẩn trương di chuyển ra khỏi vùng nguy "
        "hiểm, về nơi trú ẩn an toàn trước 17h ngày 24/8.",
        "- Các chủ tàu giữ liên lạc thường xuyên với Đồn Biên phòng Cát Hải qua số 0225.3888.123 "
        "hoặc 1900 1234.",
        "- Cấm biển từ 12 giờ ngày 24/8/2025 đối với mọi phương tiện.",
        "KT. CHỦ TỊCH",
        "PHÓ CHỦ TỊCH",
        "Nguyễn Văn A",
    )
)


def _urgent(title: str, body: str, places: list[Place] | None = None, **kw: object) -> Readout:
    relay = build(
        title, body, priority=Priority.urgent, places=places or [CAT_HAI],
        expires_at=kw.get("expires_at", EXPIRES), tz=TZ,  # type: ignore[arg-type]
    )  # fmt: skip
    assert relay is not None
    return relay


def _check_short(relay: Readout, *sources: str) -> None:
    """The 160 limit, the character set, and numbers only as the sources wrote them."""
    short = relay.short
    assert len(short) <= SHORT_LIMIT, (len(short), short)
    assert set(short) <= set(GSM7_BASIC), set(short) - set(GSM7_BASIC)
    assert short.isascii() and short.isprintable()
    assert short.startswith("KHAN: ")
    assert "  " not in short and short == short.strip()
    # Never cut inside a number: every number in the text is one the sources hold whole.
    whole = {n for text in sources for n in re.findall(r"\d+", readout.unaccented(text))}
    for number in re.findall(r"\d+", short):
        assert number in whole, (number, short)


def _check_spoken(relay: Readout) -> None:
    assert relay.spoken == unicodedata.normalize("NFC", relay.spoken)
    assert relay.spoken.startswith("Đây là bản tin khẩn của Hải Đăng.")
    assert relay.spoken_seconds <= SPOKEN_LIMIT
    assert relay.spoken_seconds == round(readout.speaking_seconds(relay.spoken), 1)


def test_a_short_bulletin_fits_whole() -> None:
    relay = _urgent("Thông báo gió mạnh trên biển", WIND)
    assert relay.short == (
        "KHAN: Thong bao gio manh tren bien. Gio manh cap 6, bien dong. Tau thuyen ve noi "
        "tru an an toan truoc 17h. Khu vuc: Cat Hai, Hai Phong. Hieu luc den 18h 07/12."
    )
    assert relay.short_chars == len(relay.short) == 159
    assert relay.spoken == (
        "Đây là bản tin khẩn của Hải Đăng. Khu vực: Cát Hải, Hải Phòng. Thông báo gió mạnh "
        "trên biển. Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ. "
        "Bản tin có hiệu lực đến 18 giờ ngày 7/12. "
        "Xin nhắc lại: Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ."
    )
    assert 15 < relay.spoken_seconds < 30
    _check_short(relay, WIND, "18h 07/12")
    _check_spoken(relay)
    # Deterministic: the same bulletin, the same texts.
    assert _urgent("Thông báo gió mạnh trên biển", WIND) == relay


def test_routine_bulletins_have_no_readout() -> None:
    assert build("Lịch tiêm phòng", WIND, priority=Priority.routine, tz=TZ) is None


def test_a_dispatch_keeps_instructions_and_figures_and_drops_the_preamble() -> None:
    relay = _urgent("CÔNG ĐIỆN KHẨN: Ứng phó bão số 5", DISPATCH)
    _check_short(relay, DISPATCH, "CÔNG ĐIỆN KHẨN: Ứng phó bão số 5", "18h 07/12")
    _check_spoken(relay)
    assert relay.short.startswith("KHAN: CONG DIEN KHAN: Ung pho bao so 5.")
    assert relay.short.endswith("Khu vuc: Cat Hai, Hai Phong. Hieu luc den 18h 07/12.")
    assert "Can cu" not in relay.short and "Căn cứ" not in relay.spoken
    assert "CHỦ TỊCH" not in relay.spoken  # the signature is no sentence to read
    # The key instruction closes the spoken text, after the body read in order.
    key = (
        "Yêu cầu tàu thuyền đang hoạt động trên biển khẩn trương di chuyển ra khỏi vùng nguy "
        "hiểm, về nơi trú ẩn an toàn trước 17h ngày 24/8."
    )
    # The body is read in order; this minute fills before the instruction, so it closes
    # the text once ("Lưu ý"), whole.
    assert relay.spoken.endswith(f"Lưu ý: {key}")
    assert relay.spoken.count("Yêu cầu tàu thuyền") == 1
    body = relay.spoken.split("Hải Phòng. ", 1)[1]
    assert body.index("Hồi 13 giờ") < body.index("Sức gió") < body.index("Dự báo trong 24 giờ")
    assert "Bản tin có hiệu lực đến 18 giờ ngày 7/12." in relay.spoken
    # The short text took the sentences that matter most and fit whole.
    assert "Cam bien tu 12h ngay 24/8/2025 doi voi moi phuong tien." in relay.short
    # In a shorter bulletin the instruction is reached, said, and repeated at the end.
    reached = _urgent("Bão số 5", "\n".join(DISPATCH.splitlines()[4:6]))
    assert reached.spoken.count(key) == 2
    assert reached.spoken.endswith(f"Xin nhắc lại: {key}")
    _check_spoken(reached)


def test_no_expiry_and_minutes_in_the_expiry() -> None:
    plain = _urgent("Sóng thần", "Sơ tán ngay khỏi bờ biển.", expires_at=None)
    assert "Hieu luc" not in plain.short and "hiệu lực" not in plain.spoken
    half = _urgent("Sóng thần", "Sơ tán ngay.", expires_at=EXPIRES + dt.timedelta(minutes=30))
    assert half.short.endswith("Hieu luc den 18h30 07/12.")
    assert "đến 18 giờ 30 phút ngày 7/12." in half.spoken


def test_many_areas_are_shortened() -> None:
    provinces = ["Quảng Ninh", "Hải Phòng", "Thanh Hóa", "Nghệ An", "Hà Tĩnh", "Quảng Trị",
                 "Huế", "Đà Nẵng", "Quảng Ngãi", "Gia Lai", "Đắk Lắk", "Khánh Hòa"]  # fmt: skip
    places = [Place(f"Xã Đảo {i}", p) for p in provinces for i in range(4)]
    relay = _urgent("Bão số 3", WIND, places)
    _check_short(relay, "Bão số 3", WIND, "18h 07/12", "11")
    assert "Khu vuc: Quang Ninh va 11 tinh khac." in relay.short
    assert "Khu vực: Quảng Ninh và 11 tỉnh, thành phố khác." in relay.spoken
    _check_spoken(relay)
    three = [Place("Cát Hải", "Hải Phòng"), Place("Bạch Long Vĩ", "Hải Phòng"),
             Place(None, "Quảng Ninh")]  # fmt: skip
    few = _urgent("Bão số 3", "Tàu thuyền về nơi trú ẩn.", three)
    assert "Khu vực: Cát Hải, Bạch Long Vĩ (Hải Phòng); Quảng Ninh." in few.spoken
    # The communes are named where there is room; where they would push out a sentence of
    # the body, the provinces alone.
    assert "Khu vuc: Cat Hai, Bach Long Vi (Hai Phong); Quang Ninh." in few.short
    crowded = _urgent("Bão số 3", WIND, three)
    assert "Tau thuyen ve noi tru an an toan truoc 17h. Khu vuc: Hai Phong, Quang Ninh." in (
        crowded.short
    )


def test_unaccented_folds_vietnamese_and_keeps_case() -> None:
    assert (
        readout.unaccented("Đặc khu Cát Hải — ĐỒN BIÊN PHÒNG") == "Dac khu Cat Hai - DON BIEN PHONG"
    )
    assert (
        readout.unaccented("“Ưu tiên” […] 25°C ~ 3–5 m² 🚨 台风 €5")
        == '"Uu tien" (...) 25C 3-5 m2 EUR5'
    )


def test_the_stored_bulletins_fit() -> None:
    for path in sorted((DATA / "bulletins").glob("*.txt")):
        body = path.read_text(encoding="utf-8")
        relay = _urgent("Cảnh báo khẩn trên biển", body)
        _check_short(relay, body, "18h 07/12")
        _check_spoken(relay)
        assert relay.spoken_seconds > 30, path.name  # long bulletins fill the minute


# --- properties over generated bulletins ------------------------------------------------------

_VOCABULARY = (
    "bão áp thấp nhiệt đới gió mạnh cấp giật sóng cao biển động tàu thuyền ngư dân không ra "
    "khơi về nơi trú ẩn neo đậu an toàn khẩn trương di chuyển ra khỏi vùng nguy hiểm Đồn Biên "
    "phòng Cát Hải Bạch Long Vĩ Hoàng Sa Trường Sa độ Vĩ Bắc Kinh Đông hướng Tây Tây Bắc đặc "
    "khu xã phường UBND BCH PCTT&TKCN tuyệt đối yêu cầu liên lạc thường xuyên hiệu lực"
)
_WORDS = _VOCABULARY.split(" ")
_ODD = ["—", "–", "…", "“", "”", "°", "€", "[", "]", "{", "}", "~", "^", "|", "\\", "🚨",
        "台风", "½", "²", "×", "•", "\t", "  ", "\u00a0", "«", "»", "@", "$", "%", "&"]  # fmt: skip
_PROVINCES = ["Hải Phòng", "Quảng Ninh", "Thanh Hóa", "Nghệ An", "Đà Nẵng", "Khánh Hòa",
              "Thành phố Hồ Chí Minh", "Cà Mau", "An Giang", "Quảng Ngãi"]  # fmt: skip


def _token(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.62:
        return rng.choice(_WORDS)
    if roll < 0.70:
        return str(rng.randint(0, 10 ** rng.randint(1, 7)))
    if roll < 0.76:
        return f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/{rng.choice(['', '2025'])}".rstrip("/")
    if roll < 0.81:
        return f"{rng.randint(0, 23)} giờ {rng.choice(['', '30'])}".strip()
    if roll < 0.86:
        return f"{rng.randint(1, 40)},{rng.randint(0, 9)}°{rng.choice('NE')}"
    if roll < 0.90:
        return f"{rng.randint(3, 12)}-{rng.randint(13, 17)} km/h"
    if roll < 0.95:
        return rng.choice(_ODD)
    return "0" + "".join(str(rng.randint(0, 9)) for _ in range(9))  # a telephone number


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(_token(rng) for _ in range(words))
    return text[:1].upper() + text[1:] + rng.choice([".", ".", ";", "!", "", ":"])


def _bulletin(rng: random.Random) -> tuple[str, str, list[Place]]:
    title = _sentence(rng, rng.randint(1, 40))[:200]
    size = rng.choice([0, 1, 2, 5, 12, 40])
    joints = ["\n", " ", "\n\n", "\n- "]
    body = "".join(_sentence(rng, rng.randint(1, 60)) + rng.choice(joints) for _ in range(size))
    places = [
        Place(rng.choice([None, f"Xã {rng.choice(_WORDS).title()} {rng.choice(_WORDS)}"]),
              rng.choice(_PROVINCES))
        for _ in range(rng.choice([0, 1, 2, 3, 8, 30]))
    ]  # fmt: skip
    return title, body, places


def test_limits_hold_for_generated_bulletins() -> None:
    rng = random.Random(20261207)
    for _ in range(250):
        title, body, places = _bulletin(rng)
        expires = rng.choice([None, EXPIRES + dt.timedelta(minutes=rng.randint(0, 20000))])
        relay = build(title, body, priority=Priority.urgent, places=places, expires_at=expires,
                      tz=TZ)  # fmt: skip
        assert relay is not None
        stamp = expires.astimezone(TZ).strftime("%-Hh%M %d/%m") if expires else ""
        provinces = len({p.province for p in places})  # "… và N tỉnh khác", "N tỉnh"
        where = " ".join(f"{p.commune} {p.province}" for p in places) + f" {provinces - 1}"
        where += f" {provinces}"
        _check_short(relay, title, body, stamp, where)
        _check_spoken(relay)
        assert relay == build(title, body, priority=Priority.urgent, places=places,
                              expires_at=expires, tz=TZ)  # fmt: skip


# --- the spoken text, spoken ------------------------------------------------------------------


async def test_espeak_says_the_longest_readout_within_a_minute() -> None:
    """Real audio: the project's offline engine renders the spoken form; its length is
    measured from the samples and must stay under the limit and near the estimate."""
    texts = [p.read_text(encoding="utf-8") for p in sorted((DATA / "bulletins").glob("*.txt"))]
    relays = [_urgent("Công điện khẩn ứng phó bão số 3", DISPATCH + "\n" + t) for t in texts]
    longest = max(relays, key=lambda r: r.spoken_seconds)
    assert longest.spoken_seconds > 45  # the body was cut to fit: this is the hard case
    speech = (await studio.speak("espeak", [to_spoken(longest.spoken)]))[0]
    assert speech.engine == "espeak"
    measured = speech.duration_seconds
    assert measured <= SPOKEN_LIMIT - 2, measured  # a margin below the minute
    # The estimate errs long, by less than 15 %.
    assert measured * 0.98 <= longest.spoken_seconds <= measured * 1.15, (
        measured,
        longest.spoken_seconds,
    )


async def test_a_stored_bulletin_names_its_communes_and_provinces(seeded: Database) -> None:
    bulletin_id = await approved(
        seeded, urgent=True, areas=("11914", "11311"), expires_at=EXPIRES,
        title="Áp thấp nhiệt đới", body=WIND,
    )  # fmt: skip
    async with seeded.sessions() as session:
        places = await readout.places_of(session, bulletin_id)
        relay = await readout.for_bulletin(
            session, await session.get_one(Bulletin, bulletin_id), TZ
        )
    # By area code: Phường Hồng Bàng (11311), then Đặc khu Cát Hải (11914).
    assert places == [Place("Hồng Bàng", "Hải Phòng"), Place("Cát Hải", "Hải Phòng")]
    assert relay is not None
    assert "Khu vuc: Hong Bang, Cat Hai (Hai Phong)." in relay.short
    assert "Khu vực: Hồng Bàng, Cát Hải (Hải Phòng)." in relay.spoken
    routine = await approved(seeded, areas=("11914",), title="Lịch họp", body="Họp tổ đoàn kết.")
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, routine)
        assert await readout.for_bulletin(session, bulletin, TZ) is None


def test_sentences_end_at_marks_and_lines_not_at_abbreviations() -> None:
    body = "Bão số 3. Ở TP. hồ chứa nước dâng 2.5 m!\n- Tàu về bờ\n\n1. Cấm biển"
    assert readout.sentences(body) == [
        "Bão số 3.",
        "Ở TP. hồ chứa nước dâng 2.5 m!",
        "Tàu về bờ.",
        "Cấm biển.",
    ]
