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


_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "… ", "; ", ", ", " ")


def split_message(text: str, limit: int) -> list[str]:
    """Cut a long message into parts of at most `limit` characters for a chat platform.

    Prefers paragraph breaks, then line breaks, then sentence ends, then clause marks,
    then spaces; cuts inside a word only when nothing else fits. Line breaks are kept
    (unlike the TTS chunker, which reflows text for speech).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = 0
        for mark in _BREAKS:
            at = window.rfind(mark)
            if at >= limit // 3:  # a cut too early would leave a tiny first part
                cut = at + len(mark.rstrip()) if mark.strip() else at
                break
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts
