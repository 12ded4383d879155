"""Split bulletin text into engine-sized chunks at sentence boundaries."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … or ; followed by whitespace, or at a line break. Requiring
# whitespace after the mark keeps decimals ("3.5 mét") and times ("6.30") in one piece.
_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+|\s*\n+\s*")
# Clause marks used when one sentence alone is longer than the limit.
_CLAUSE_END = re.compile(r"(?<=[,:–—])\s+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_chars`` characters.

    Whole sentences are packed greedily into each chunk. A sentence longer than
    ``max_chars`` is cut at clause marks (, : – —), then at spaces, and only as a last
    resort inside a word. Returns no chunk for blank text.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = _SPACES.sub(" ", text).strip()
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if sentence:
            pieces.extend(_split_long(sentence, max_chars))
    return _pack(pieces, max_chars)


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = [c for c in _CLAUSE_END.split(sentence) if c]
    if len(clauses) > 1:
        out: list[str] = []
        for clause in clauses:
            out.extend(_split_long(clause, max_chars))
        return _pack(out, max_chars)
    words = sentence.split(" ")
    if len(words) > 1:
        return _pack([p for w in words for p in _hard_cut(w, max_chars)], max_chars)
    return _hard_cut(sentence, max_chars)


def _hard_cut(word: str, max_chars: int) -> list[str]:
    return [word[i : i + max_chars] for i in range(0, len(word), max_chars)]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks
