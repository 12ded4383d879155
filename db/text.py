"""Vietnamese text helpers: NFC normalisation and diacritic folding for search."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
# Unicode gives đ/Đ no decomposition, so stripping combining marks alone leaves them.
# Ð/ð (U+00D0/U+00F0, eth) are what some keyboards produce for Đ/đ.
_D_FOLD = str.maketrans({"đ": "d", "Đ": "d", "Ð": "d", "ð": "d"})


def nfc(text: str) -> str:
    """The text in NFC (the form every stored and displayed string uses)."""
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    """Lower-case, without diacritics (đ → d), whitespace collapsed: "Cát Hải" → "cat hai"."""
    decomposed = unicodedata.normalize("NFD", text.translate(_D_FOLD))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", stripped.casefold()).strip()
