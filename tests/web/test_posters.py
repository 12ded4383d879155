"""Commune QR posters: the codes decode to the deep links, the PDF carries the Vietnamese text."""

from __future__ import annotations

import io
import unicodedata
from typing import Any

import pytest
import zxingcpp
from fastapi import FastAPI
from fontTools.ttLib import TTFont
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from broadcasts.subscribers import ensure_bot
from db.models import Bot, Platform
from tests.broadcasts.engine import add_people
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_officials, settings
from web.dashboard import make_router, posters, texts

BOT = "haidang_test_bot"
ZALO = "https://zalo.me/s/1234567890"
DEEP_LINK = f"https://t.me/{BOT}?start=c11914"

# Every letter Vietnamese writes, both cases, precomposed (NFC): the font must draw them all.
VIETNAMESE = unicodedata.normalize(
    "NFC",
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ",
)


def _app(database: Database, **overrides: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(database.sessions, settings(**overrides)))
    return app


async def _telegram_bot(database: Database, username: str | None = BOT) -> None:
    async with database.sessions.begin() as session:
        bot = await ensure_bot(session, Platform.telegram)
        bot.username = username


def _decoded(png: bytes) -> set[str]:
    return {result.text for result in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))}


def test_the_font_draws_every_vietnamese_letter() -> None:
    for path in posters.FONTS.values():
        cmap = TTFont(path).getBestCmap()
        missing = [c for c in VIETNAMESE + VIETNAMESE.upper() if ord(c) not in cmap]
        assert missing == [], (path.name, missing)
    licence = (posters.FONT_DIR / "OFL.txt").read_text()
    assert "SIL Open Font License" in licence


def test_qr_matrix_is_the_deep_link() -> None:
    # The modules drawn are those of the link: re-encoding gives the same matrix.
    matrix = posters.qr_matrix(DEEP_LINK)
    assert matrix == posters.qr_matrix(posters.deep_link("@" + BOT, "11914"))
    side = len(matrix)
    assert all(len(row) == side for row in matrix)
    assert not any(matrix[0]) and not any(row[0] for row in matrix)  # the quiet zone


async def test_png_and_pdf_posters_for_a_commune(seeded: Database) -> None:
    await make_officials(seeded)
    await _telegram_bot(seeded)
    app = _app(seeded, zalo_bot_link=ZALO)
    async with Client(app) as commune:
        await commune.login("xa-cathai")
        page = await commune.get("/dashboard/posters/11914")
        assert page.status_code == 200
        assert "Áp phích mã QR: Đặc khu Cát Hải" in page.text
        assert DEEP_LINK in page.text and ZALO in page.text

        png = await commune.get("/dashboard/posters/11914.png")
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert 'filename="ap-phich-11914.png"' in png.headers["content-disposition"]
        image = Image.open(io.BytesIO(png.content))
        assert image.size == (1240, 1754)  # A4 at 150 dpi
        assert _decoded(png.content) == {DEEP_LINK, ZALO}

        pdf = await commune.get("/dashboard/posters/c11914.pdf")
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        reader = PdfReader(io.BytesIO(pdf.content))
        assert len(reader.pages) == 1
        box = reader.pages[0].mediabox
        assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4
        text = reader.pages[0].extract_text()
        assert unicodedata.is_normalized("NFC", text)
        flat = " ".join(text.split())  # lines wrap where the layout chose
        for expected in (
            "HẢI ĐĂNG", "Đặc khu Cát Hải", "Thành phố Hải Phòng", DEEP_LINK, ZALO,
            texts.POSTER_STEPS_TITLE, texts.POSTER_ZALO_HINT.format(commune="Đặc khu Cát Hải"),
            texts.POSTER_STEPS[0],
        ):  # fmt: skip
            assert expected in flat, expected


async def test_posters_respect_scope_and_configuration(seeded: Database) -> None:
    await make_officials(seeded)
    async with Client(_app(seeded)) as editor:
        await editor.login("editor")
        # Neither a Telegram username (the bot never ran) nor a Zalo link: nothing to print.
        missing = await editor.get("/dashboard/posters/11914.png")
        assert missing.status_code == 400
        assert texts.POSTER_NO_BOT in missing.text
        await _telegram_bot(seeded)
        only_telegram = await editor.get("/dashboard/posters/11914.png")
        assert _decoded(only_telegram.content) == {DEEP_LINK}
        province = await editor.get("/dashboard/posters/p31.pdf")
        assert province.status_code == 400
        assert texts.POSTER_NOT_COMMUNE in province.text
        assert (await editor.get("/dashboard/posters/99999.png")).status_code == 404
        found = await editor.get("/dashboard/posters?q=hong bang")
        assert 'href="/dashboard/posters/11311.pdf"' in found.text

    async with Client(_app(seeded)) as commune:
        await commune.login("xa-cathai")
        # Another commune of the same city is outside a commune editor's scope.
        other = await commune.get("/dashboard/posters/11311.pdf")
        assert other.status_code == 404
        found = await commune.get("/dashboard/posters?q=hong bang")
        assert "11311" not in found.text
        assert "Không có xã nào khớp" in found.text

    async with Client(_app(seeded)) as anonymous:
        answer = await anonymous.get("/dashboard/posters/11914.pdf")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/dashboard/login")


async def test_subscribers_page_links_to_the_posters(seeded: Database) -> None:
    await make_officials(seeded)
    await _telegram_bot(seeded)
    await add_people(seeded, Platform.telegram, ["tg1", "tg2"])
    async with Client(_app(seeded)) as editor:
        await editor.login("editor")
        page = await editor.get("/dashboard/subscribers")
        assert page.status_code == 200
        assert 'href="/dashboard/posters"' in page.text
        assert 'href="/dashboard/posters/11914.pdf"' in page.text
        assert 'href="/dashboard/posters/11914.png"' in page.text
    async with seeded.sessions() as session:
        assert await session.scalar(select(Bot.username)) == BOT


@pytest.mark.parametrize("name", ["Xã Ia Dơk", "Phường Thủ Dầu Một", "Xã Quỳnh Lưu"])
def test_long_and_accented_names_fit_and_decode(name: str) -> None:
    poster = posters.Poster(name, "Tỉnh Nghệ An", "12345", posters.deep_link(BOT, "12345"), ZALO)
    png = posters.png_bytes(poster)
    assert _decoded(png) == {posters.deep_link(BOT, "12345"), ZALO}
    for item in posters.layout(poster):
        if isinstance(item, posters.Text):
            width = posters._width_mm(item.text, item.size, item.bold)
            assert item.cx - width / 2 >= 0 and item.cx + width / 2 <= posters.PAGE_W, item.text
            assert 0 <= item.y <= posters.PAGE_H
