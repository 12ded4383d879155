"""Printable A4 QR posters for a commune: one layout, drawn as PNG (Pillow) and PDF (fpdf2)."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import segno
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from db.text import nfc
from web.dashboard import texts

__all__ = ["Poster", "deep_link", "layout", "pdf_bytes", "png_bytes", "qr_matrix"]

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
FONTS = {False: FONT_DIR / "BeVietnamPro-Regular.ttf", True: FONT_DIR / "BeVietnamPro-Bold.ttf"}
PAGE_W, PAGE_H = 210.0, 297.0  # A4 in millimetres
MARGIN = 14.0
PT_MM = 25.4 / 72  # one typographic point in millimetres
PNG_DPI = 150  # sharp enough to print A4 and small enough to send in chat (~1240x1754 px)
QR_BORDER = 4  # the quiet zone the QR standard asks for, in modules
INK = (16, 32, 48)
NAVY = (11, 61, 99)
WHITE = (255, 255, 255)
MUTED = (70, 84, 100)


@dataclass(frozen=True)
class Poster:
    """What a commune's poster says: where, and how to reach each bot (None: not set up)."""

    commune: str
    province: str
    code: str
    telegram_link: str | None
    zalo_link: str | None


def deep_link(bot_username: str, commune_code: str) -> str:
    """Telegram's start link: the bot subscribes the person to the commune at once."""
    return f"https://t.me/{bot_username.lstrip('@')}?start=c{commune_code}"


def qr_matrix(data: str) -> list[list[bool]]:
    """The QR code's modules (True is dark) with the quiet zone, error correction M."""
    code = segno.make_qr(data, error="m", boost_error=False)
    return [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=QR_BORDER)]


# --- the layout, in millimetres, shared by both renderers --------------------------------------


@dataclass(frozen=True)
class Text:
    """One line of text, centred on `cx`, its top at `y`."""

    text: str
    cx: float
    y: float
    size: float  # points
    bold: bool = False
    colour: tuple[int, int, int] = INK


@dataclass(frozen=True)
class Band:
    x: float
    y: float
    w: float
    h: float
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Code:
    """A QR code, its top-left corner at (x, y), `size` millimetres square."""

    x: float
    y: float
    size: float
    modules: list[list[bool]]


Element = Text | Band | Code


@functools.cache
def _font(bold: bool, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS[bold]), px)


def _width_mm(text: str, size: float, bold: bool) -> float:
    # Measured at a large pixel size for precision, then scaled to millimetres.
    return _font(bold, 200).getlength(text) * (size * PT_MM) / 200


def _wrap(text: str, size: float, bold: bool, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and _width_mm(trial, size, bold) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current else lines


class _Flow:
    """Places centred paragraphs down the page."""

    def __init__(self, y: float) -> None:
        self.y = y
        self.items: list[Element] = []

    def paragraph(
        self,
        text: str,
        size: float,
        *,
        bold: bool = False,
        colour: tuple[int, int, int] = INK,
        cx: float = PAGE_W / 2,
        width: float = PAGE_W - 2 * MARGIN,
        after: float = 2.0,
    ) -> None:
        for line in _wrap(nfc(text), size, bold, width):
            self.items.append(Text(line, cx, self.y, size, bold, colour))
            self.y += size * PT_MM * 1.3
        self.y += after


def layout(poster: Poster) -> list[Element]:
    """Everything on the page: header, the commune in large type, the codes, the steps."""
    header = _Flow(10.0)
    header.paragraph(texts.POSTER_BRAND, 30, bold=True, colour=WHITE, after=1)
    header.paragraph(texts.POSTER_TAGLINE, 14, colour=WHITE, after=0)
    items: list[Element] = [Band(0, 0, PAGE_W, header.y + 6, NAVY), *header.items]

    flow = _Flow(header.y + 14)
    flow.paragraph(texts.POSTER_HEADLINE, 20, bold=True, after=1)
    flow.paragraph(poster.commune, 40, bold=True, colour=NAVY, after=0)
    flow.paragraph(poster.province, 18, colour=MUTED, after=6)
    items += flow.items

    zalo_hint = texts.POSTER_ZALO_HINT.format(commune=poster.commune)
    offered = (
        (poster.telegram_link, texts.POSTER_TELEGRAM, texts.POSTER_TELEGRAM_HINT),
        (poster.zalo_link, texts.POSTER_ZALO, zalo_hint),
    )
    codes = [(link, label, hint) for link, label, hint in offered if link]
    column = (PAGE_W - 2 * MARGIN) / max(len(codes), 1)
    size = min(column - 12, 110.0)
    top = flow.y
    bottom = top
    for index, (link, label, hint) in enumerate(codes):
        cx = MARGIN + column * (index + 0.5)
        under = _Flow(top)
        under.paragraph(label, 22, bold=True, cx=cx, width=column - 4, after=2)
        modules = qr_matrix(link)
        items.append(Code(cx - size / 2, under.y, size, modules))
        under.y += size + 3
        under.paragraph(hint, 13, cx=cx, width=column - 6, after=1)
        under.paragraph(link, 10, colour=MUTED, cx=cx, width=column - 6, after=0)
        items += under.items
        bottom = max(bottom, under.y)

    steps = _Flow(bottom + 8)
    steps.paragraph(texts.POSTER_STEPS_TITLE, 18, bold=True, after=2)
    for step in texts.POSTER_STEPS:
        steps.paragraph(step.format(commune=poster.commune), 14, after=1.5)
    steps.y = max(steps.y + 4, PAGE_H - 22)
    steps.paragraph(texts.POSTER_FOOTER, 11, colour=MUTED, after=0)
    return items + steps.items


# --- renderers ------------------------------------------------------------------------------


def _runs(row: Sequence[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of dark modules: one rectangle per run, not per module."""
    runs, start = [], None
    for i, dark in enumerate([*row, False]):
        if dark and start is None:
            start = i
        elif not dark and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def png_bytes(poster: Poster, dpi: int = PNG_DPI) -> bytes:
    """The poster as a PNG at `dpi` (A4)."""
    scale = dpi / 25.4
    image = Image.new("RGB", (round(PAGE_W * scale), round(PAGE_H * scale)), WHITE)
    draw = ImageDraw.Draw(image)
    for item in layout(poster):
        if isinstance(item, Band):
            box = (item.x * scale, item.y * scale, (item.x + item.w) * scale,
                   (item.y + item.h) * scale)  # fmt: skip
            draw.rectangle(box, fill=item.colour)
        elif isinstance(item, Text):
            font = _font(item.bold, round(item.size * PT_MM * scale))
            draw.text((item.cx * scale, item.y * scale), item.text, font=font,
                      fill=item.colour, anchor="mt")  # fmt: skip
        else:
            # Whole pixels per module, so every module has the same width (decoders care).
            module = max(int(item.size * scale / len(item.modules)), 1)
            margin = (item.size * scale - module * len(item.modules)) / 2
            left, top = round(item.x * scale + margin), round(item.y * scale + margin)
            for r, row in enumerate(item.modules):
                for start, length in _runs(row):
                    draw.rectangle(
                        (left + start * module, top + r * module,
                         left + (start + length) * module - 1, top + (r + 1) * module - 1),
                        fill=(0, 0, 0),
                    )  # fmt: skip
    out = io.BytesIO()
    # A palette image: a quarter of the RGB size, and much faster to compress.
    image.quantize(colors=32, method=Image.Quantize.FASTOCTREE).save(
        out, format="PNG", dpi=(dpi, dpi)
    )
    return out.getvalue()


def pdf_bytes(poster: Poster) -> bytes:
    """The poster as a one-page A4 PDF: real text (searchable, copyable) and vector codes."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_title(nfc(f"{texts.POSTER_BRAND}: {poster.commune}"))
    pdf.set_creator(texts.POSTER_BRAND)
    pdf.add_font("BeVietnamPro", "", str(FONTS[False]))
    pdf.add_font("BeVietnamPro", "B", str(FONTS[True]))
    pdf.add_page()
    for item in layout(poster):
        if isinstance(item, Band):
            pdf.set_fill_color(*item.colour)
            pdf.rect(item.x, item.y, item.w, item.h, style="F")
        elif isinstance(item, Text):
            pdf.set_font("BeVietnamPro", "B" if item.bold else "", item.size)
            pdf.set_text_color(*item.colour)
            width = pdf.get_string_width(item.text)
            # fpdf places text on its baseline; the ascent is about 0.8 of the size.
            pdf.text(item.cx - width / 2, item.y + item.size * PT_MM * 0.8, item.text)
        else:
            pdf.set_fill_color(0, 0, 0)
            module = item.size / len(item.modules)
            for r, row in enumerate(item.modules):
                for start, length in _runs(row):
                    pdf.rect(item.x + start * module, item.y + r * module,
                             length * module, module, style="F")  # fmt: skip
    return bytes(pdf.output())
