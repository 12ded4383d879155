"""What the audio says besides the bulletins: headings, programme transitions, file titles."""

from __future__ import annotations

import datetime as dt
from typing import Final

from db.models import Area

__all__ = [
    "CLOSING",
    "DOCUMENT_HEADING",
    "DOCUMENT_NUMBER",
    "DURATION_MINUTES",
    "DURATION_SECONDS",
    "FEED_DESCRIPTION",
    "FEED_TITLE",
    "FILE_NOT_FOUND",
    "FIRST_ITEM",
    "NEXT_ITEM",
    "OPENING",
    "PROGRAMME_DESCRIPTION",
    "PROGRAMME_TITLE",
    "SERVICE_HEADING",
    "SERVICE_NAME",
    "STATION_HEADING",
    "station_name",
]

SERVICE_NAME: Final = "Hải Đăng"
# Spoken before a bulletin addressed to exactly one commune, and before any other bulletin.
STATION_HEADING: Final = "Đài truyền thanh {station} xin thông báo."
SERVICE_HEADING: Final = "Hải Đăng xin thông báo."
# A library document read aloud on request (chat "Nghe"): before it, and its number line.
DOCUMENT_HEADING: Final = "Hải Đăng xin đọc văn bản."
DOCUMENT_NUMBER: Final = "Số hiệu {number}."
# The daily programme: opening, a cue before each bulletin, closing.
OPENING: Final = "Đài truyền thanh {station}. Chương trình phát thanh ngày {date}."
FIRST_ITEM: Final = "Tin thứ nhất."
NEXT_ITEM: Final = "Tin tiếp theo."
CLOSING: Final = "Đài truyền thanh {station} xin hết."
# Title tag of a programme file and of its feed item (a date is written d/m/yyyy).
PROGRAMME_TITLE: Final = "Chương trình phát thanh ngày {date}"

# The public audio pages and the podcast feed (web/audio.py).
FEED_TITLE: Final = "Đài truyền thanh {commune}"
FEED_DESCRIPTION: Final = (
    "Bản tin và chương trình phát thanh hằng ngày cho {place}, do Hải Đăng cung cấp."
)
PROGRAMME_DESCRIPTION: Final = "{title} — {commune}"
FILE_NOT_FOUND: Final = "Không tìm thấy tệp."
DURATION_MINUTES: Final = "{minutes} phút {seconds:02d} giây"
DURATION_SECONDS: Final = "{seconds} giây"


def station_name(commune: Area) -> str:
    """The commune as said mid-sentence: "Đặc khu Cát Hải" → "đặc khu Cát Hải"."""
    division = commune.division_type.strip()
    if division and commune.name.lower().startswith(division.lower() + " "):
        return division.lower() + commune.name[len(division) :]
    return commune.name


def written_date(day: dt.date) -> str:
    """25/11/2026: the Vietnamese way, read out in full by the spoken-text normaliser."""
    return f"{day.day}/{day.month}/{day.year}"
