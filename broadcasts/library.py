"""The documents library: a diacritic-blind ranked search index, snippets, browsing, paging."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Exists, event, exists, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import Base, Document, DocumentTopic, Topic
from db.text import fold, nfc, split_message

# The index lives outside the ORM models (an FTS5 virtual table cannot be one), under one
# name prefix so the Alembic comparison can skip it and its FTS5 shadow tables.
INDEX_TABLE = "document_search"

# Snippet highlight marks: plain characters, so chat can show them as they are and the web
# can swap them for <mark> after escaping the text.
MARK_OPEN = "«"
MARK_CLOSE = "»"
SNIPPET_CHARS = 220

# Column weights: a word in the title or the number counts for more than one in the body.
_BM25 = "bm25(document_search, 8.0, 10.0, 3.0, 1.0)"
# PostgreSQL ranks by cover density (ts_rank_cd), which rewards the query words standing
# together ("luật biển việt nam" in a title); at most this many body-only matches are ranked
# (see _ranked_text_postgresql).
PG_BODY_CANDIDATES = 1500

SQLITE_INDEX_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS document_search USING fts5("
    "title, number, summary, body, "
    # Text arrives folded (db.text.fold), so the tokenizer must not fold differently;
    # prefix indexes keep "partial word" queries (khai tha*) fast.
    "tokenize = 'unicode61 remove_diacritics 0', prefix = '2 3')",
)
POSTGRESQL_INDEX_DDL = (
    "CREATE TABLE IF NOT EXISTS document_search ("
    "document_id INTEGER PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE, "
    "number TEXT NOT NULL DEFAULT '', "
    # head: title, number and summary; tsv: head and body. Ranking a short head is cheap,
    # and ranking every body that holds a common word ("cá") is what would be slow.
    "head TSVECTOR NOT NULL, "
    "tsv TSVECTOR NOT NULL)",
    "CREATE INDEX IF NOT EXISTS document_search_head ON document_search USING gin (head)",
    "CREATE INDEX IF NOT EXISTS document_search_tsv ON document_search USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS document_search_number "
    "ON document_search (number text_pattern_ops)",
)

# Question and filler words that say nothing about which document is wanted. Folding makes
# many words ambiguous ("thi" is "thì" but also "thi" in "cuộc thi"; "dau" is "đâu" and
# "dầu"), so words typed with their marks are matched as typed, and words typed without
# marks only against the few that stay unambiguous when folded.
_STOPWORDS_MARKED = frozenset(
    (
        "là", "gì", "nào", "không", "của", "về", "cho", "tôi", "hỏi", "thế", "như", "có",
        "được", "những", "các", "và", "với", "thì", "ạ", "nhé", "ơi", "muốn", "biết", "xin",
        "tìm", "em", "anh", "chị", "mình", "sao", "ở", "đâu", "làm", "cần", "giúp", "nhỉ",
    )
)  # fmt: skip
_STOPWORDS_PLAIN = frozenset(
    ("gi", "nao", "khong", "nhung", "cac", "duoc", "nhe", "oi", "xin", "muon", "biet", "giup")
)
# Stop phrases (folded): "văn bản" (document) is in nearly every query about documents, and
# "tra cứu" (look up) is the chat command's own name.
_STOP_PHRASES = (("van", "ban"), ("tra", "cuu"))
# Folded phrases that name the same thing; each side also finds the other.
_SYNONYMS: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {
    ("vms",): (("giam", "sat", "hanh", "trinh"),),
    ("giam", "sat", "hanh", "trinh"): (("vms",),),
    ("danh", "bat"): (("khai", "thac"),),
    ("trai", "phep"): (("bat", "hop", "phap"),),
    ("iuu",): (("bat", "hop", "phap"),),
}
# Words people put before a document number: "quyết định 1191", "số 37/2024/NĐ-CP".
_NUMBER_WORDS = frozenset(
    (
        "so",
        "luat",
        "nghi",
        "dinh",
        "quyet",
        "chi",
        "thi",
        "thong",
        "tu",
        "cong",
        "dien",
        "ke",
        "hoach",
        "qd",
        "nd",
        "tt",
        "ct",
        "cd",
        "kh",
    )
)
_WORD = re.compile(r"[^\W_]+")
_NUMBER = re.compile(r"(?<![^\W_])\d{1,5}(?:/[^\W_][\w-]*)*")


# Free text in chat that is clearly a look-up rather than a message for the officials
# (see looks_like_search). Folded words and phrases, matched as whole words.
_LEGAL_TERMS = (
    "luat", "nghi dinh", "thong tu", "quyet dinh", "chi thi", "cong dien", "nghi quyet",
    "van ban", "quy dinh", "xu phat", "muc phat", "giay phep", "iuu", "thu tuc", "phap luat",
)  # fmt: skip
_QUESTION_PHRASES = (
    "la gi", "the nao", "ra sao", "bao nhieu", "o dau", "co phai", "hay khong", "nhu nao",
    "tra cuu", "tim van ban",
)  # fmt: skip
# A document number written with its kind, as on the document: 1191/QĐ-TTg,
# 37/2024/NĐ-CP, 36-NQ/TW, 18/2012/QH13 (folded). A slash is required, so a boat's
# registration (QNg-90123-TS) or a date (20/11) is not one.
_CITED_NUMBER = re.compile(
    r"(?<![\w/])\d{1,5}(?:/\d{4})?[/-][a-z]{1,6}\d{0,3}(?:[-/][a-z]{1,8}\d{0,3})*(?![\w/])"
)
# Longer messages are reports or requests, whatever words they use.
SEARCH_MESSAGE_MAX = 160


class LibraryError(ValueError):
    """A library lookup that cannot be answered (unknown topic); the message says why."""


@dataclass(frozen=True)
class Hit:
    """One search result; `snippet` has the matched words wrapped in « »."""

    document_id: int
    title: str
    number: str | None
    issuer: str | None
    issued_on: dt.date | None
    language: str
    snippet: str
    score: float  # higher is better; number matches score 1000 and come first


@dataclass(frozen=True)
class TopicCount:
    slug: str
    name: str
    documents: int


@dataclass(frozen=True)
class _Term:
    """One query word (or synonym group); each alternative is a phrase of folded words."""

    alternatives: tuple[tuple[str, ...], ...]
    prefix: bool


# --- the index ---------------------------------------------------------------------------------


def create_index(connection: Connection) -> None:
    """Create the search index if missing (migrations do this; also used after create_all)."""
    ddl = SQLITE_INDEX_DDL if connection.dialect.name == "sqlite" else POSTGRESQL_INDEX_DDL
    for statement in ddl:
        connection.exec_driver_sql(statement)


def _after_create(_target: Any, connection: Connection, **_kw: Any) -> None:
    create_index(connection)


def _before_drop(_target: Any, connection: Connection, **_kw: Any) -> None:
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {INDEX_TABLE}")


# Throwaway databases built by create_all (tests, benchmarks) get the index too; real
# databases get it from the migration.
event.listen(Base.metadata, "after_create", _after_create)
event.listen(Base.metadata, "before_drop", _before_drop)


def _words(value: str | None) -> str:
    return " ".join(_WORD.findall(fold(value or "")))


async def index_document(session: AsyncSession, document: Document) -> None:
    """Put the document (flushed, with an id) into the search index, replacing its old entry."""
    values = {
        "id": document.id,
        "title": _words(document.title),
        "number": fold(document.number or ""),
        "number_words": _words(document.number),
        "summary": _words(document.summary),
        "body": _words(document.body),
    }
    if _dialect(session) == "sqlite":
        await session.execute(text("DELETE FROM document_search WHERE rowid = :id"), values)
        await session.execute(
            text(
                "INSERT INTO document_search (rowid, title, number, summary, body) "
                "VALUES (:id, :title, :number, :summary, :body)"
            ),
            values,
        )
        return
    await session.execute(
        text(
            "INSERT INTO document_search (document_id, number, head, tsv) "
            "SELECT :id, :number, h.head, h.head || setweight(to_tsvector('simple', :body), 'D') "
            "FROM (SELECT setweight(to_tsvector('simple', :title), 'A') || "
            "setweight(to_tsvector('simple', :number_words), 'A') || "
            "setweight(to_tsvector('simple', :summary), 'B') AS head) h "
            "ON CONFLICT (document_id) DO UPDATE SET number = EXCLUDED.number, "
            "head = EXCLUDED.head, tsv = EXCLUDED.tsv"
        ),
        values,
    )


async def unindex_document(session: AsyncSession, document_id: int) -> None:
    """Take a document out of the search index (a superseded version, a deleted document)."""
    column = "rowid" if _dialect(session) == "sqlite" else "document_id"
    await session.execute(
        text(f"DELETE FROM document_search WHERE {column} = :id"),  # noqa: S608 - fixed names
        {"id": document_id},
    )


async def reindex_all(session: AsyncSession) -> int:
    """Rebuild the whole index from the current versions; returns how many were indexed."""
    await session.execute(text("DELETE FROM document_search"))
    count = 0
    documents = await session.stream_scalars(
        select(Document).where(~superseded()).order_by(Document.id)
    )
    async for document in documents:
        await index_document(session, document)
        count += 1
    return count


def superseded() -> Exists:
    """True for a document that a later import with the same number replaced."""
    newer = aliased(Document)
    return exists().where(
        Document.number.is_not(None), newer.number == Document.number, newer.id > Document.id
    )


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# --- queries -----------------------------------------------------------------------------------


def _terms(query: str) -> list[_Term]:
    typed = [(word, fold(word)) for word in _WORD.findall(nfc(query).lower())]
    typed_last = typed[-1][1] if typed else ""
    open_end = bool(query) and (query[-1].isalnum())
    for phrase in _STOP_PHRASES:
        typed = _without_phrase(typed, phrase)
    content = [
        folded
        for word, folded in typed
        if word not in _STOPWORDS_MARKED and not (word == folded and folded in _STOPWORDS_PLAIN)
    ]
    words = content or [folded for _word, folded in typed]
    if (
        open_end
        and len(words) > 1
        and words[-1] == typed_last
        and typed_last.isalpha()
        and len(typed_last) == 1
    ):
        words = words[:-1]  # a lone unfinished letter ("hải s") would match half the index
    terms: list[_Term] = []
    at = 0
    while at < len(words):
        for size in (4, 2, 1):
            key = tuple(words[at : at + size])
            if len(key) == size and key in _SYNONYMS:
                terms.append(_Term((key, *_SYNONYMS[key]), prefix=False))
                at += size
                break
        else:
            # The word being typed last may be unfinished: "khai tha" should find "khai thác";
            # not when the query ends in a space or a mark ("… thiết bị gì?").
            last = at == len(words) - 1 and open_end and words[at] == typed_last
            terms.append(_Term(((words[at],),), prefix=last and not words[at].isdigit()))
            at += 1
    return terms


def _without_phrase(typed: list[tuple[str, str]], phrase: tuple[str, ...]) -> list[tuple[str, str]]:
    kept: list[tuple[str, str]] = []
    at = 0
    while at < len(typed):
        if tuple(folded for _word, folded in typed[at : at + len(phrase)]) == phrase:
            at += len(phrase)
        else:
            kept.append(typed[at])
            at += 1
    return kept


def _number_query(query: str) -> str | None:
    """The folded number a query asks for ("1191", "37/2024/nd-cp"), or None.

    A bare number counts only when the rest of the query is words like "quyết định" or
    "số", so "bão số 3" stays a text search.
    """
    folded = fold(query)
    found = _NUMBER.findall(folded)
    if len(found) != 1:
        return None
    number: str = found[0]
    rest = _WORD.findall(folded.replace(number, " "))
    if "/" in number or all(word in _NUMBER_WORDS for word in rest):
        return number
    return None


def _fts_match(terms: Sequence[_Term], operator: str) -> str:
    parts = []
    for term in terms:
        phrases = [f'"{" ".join(phrase)}"' for phrase in term.alternatives]
        if term.prefix:
            phrases = [f"{phrase}*" for phrase in phrases]
        parts.append(phrases[0] if len(phrases) == 1 else f"({' OR '.join(phrases)})")
    return f" {operator} ".join(parts)


def _tsquery(terms: Sequence[_Term], operator: str) -> str:
    parts = []
    for term in terms:
        phrases = []
        for phrase in term.alternatives:
            lexemes = [f"'{word}'" for word in phrase]
            if term.prefix:
                lexemes[-1] += ":*"
            phrases.append(" <-> ".join(lexemes))
        parts.append(phrases[0] if len(phrases) == 1 else f"({' | '.join(phrases)})")
    return f" {operator} ".join(parts)


def _filters(
    id_column: str, topic_id: int | None, language: str | None, public: bool | None = None
) -> tuple[str, dict[str, Any]]:
    clauses = []
    params: dict[str, Any] = {}
    if public is not None:
        clauses.append("d.public = :public")
        params["public"] = public
    if language is not None:
        clauses.append("d.language = :language")
        params["language"] = language
    if topic_id is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM document_topics dt WHERE dt.document_id = "  # noqa: S608
            f"{id_column} AND dt.topic_id = :topic_id)"
        )
        params["topic_id"] = topic_id
    return "".join(f" AND {clause}" for clause in clauses), params


async def _ranked_text(
    session: AsyncSession,
    terms: Sequence[_Term],
    operator: str,
    filters: tuple[str, dict[str, Any]],
    limit: int,
) -> list[tuple[int, float]]:
    where, params = filters
    if _dialect(session) == "sqlite":
        sql = (
            f"SELECT s.rowid, -{_BM25} FROM document_search s "  # noqa: S608
            "JOIN documents d ON d.id = s.rowid "
            f"WHERE document_search MATCH :match{where} ORDER BY {_BM25} LIMIT :limit"
        )
        params = {**params, "match": _fts_match(terms, operator), "limit": limit}
        rows = await session.execute(text(sql), params)
        return [(int(row[0]), float(row[1])) for row in rows]
    return await _ranked_text_postgresql(session, terms, operator, filters, limit)


async def _ranked_text_postgresql(
    session: AsyncSession,
    terms: Sequence[_Term],
    operator: str,
    filters: tuple[str, dict[str, Any]],
    limit: int,
) -> list[tuple[int, float]]:
    """Two tiers: documents whose title, number or summary match, ranked on that short
    head; then documents that match only in the body, ranked on the whole text.

    ts_rank_cd costs a few microseconds per matching row, and a common word matches most
    of the library, so the body tier ranks at most PG_BODY_CANDIDATES of its matches (in
    index order): with that many body-only matches the query was too vague for the order
    among them to matter.
    """
    where, params = filters
    join = " JOIN documents d ON d.id = s.document_id" if "d." in where else ""
    params = {
        **params,
        "tsquery": _tsquery(terms, "&" if operator == "AND" else "|"),
        "limit": limit,
        "cap": PG_BODY_CANDIDATES,
    }
    head_sql = (
        "SELECT s.document_id, ts_rank_cd(s.head, q, 1) AS score "  # noqa: S608
        f"FROM document_search s{join}, to_tsquery('simple', :tsquery) q "
        f"WHERE s.head @@ q{where} ORDER BY score DESC, s.document_id LIMIT :limit"
    )
    found = [(int(row[0]), float(row[1])) for row in await session.execute(text(head_sql), params)]
    if len(found) >= limit:
        return found
    body_sql = (
        "SELECT c.document_id, ts_rank_cd(c.tsv, to_tsquery('simple', :tsquery), 1) AS score "  # noqa: S608
        f"FROM (SELECT s.document_id, s.tsv FROM document_search s{join} "
        "WHERE s.tsv @@ to_tsquery('simple', :tsquery) "
        f"AND NOT s.head @@ to_tsquery('simple', :tsquery){where} LIMIT :cap) c "
        "ORDER BY score DESC, c.document_id LIMIT :limit"
    )
    params["limit"] = limit - len(found)
    found += [(int(row[0]), float(row[1])) for row in await session.execute(text(body_sql), params)]
    return found


async def _by_number(
    session: AsyncSession, number: str, filters: tuple[str, dict[str, Any]], limit: int
) -> list[tuple[int, float]]:
    where, params = filters
    escaped = number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    params = {**params, "exact": number, "prefix": f"{escaped}/%", "limit": limit}
    if "/" in number:
        params["prefix"] = f"{escaped}%"
    if _dialect(session) == "sqlite":
        # The FTS lookup narrows to numbers starting with the first token; LIKE checks the rest.
        params["match"] = f'number : ^"{_WORD.findall(number)[0]}"'
        sql = (
            "SELECT s.rowid, s.number = :exact FROM document_search s "  # noqa: S608
            "JOIN documents d ON d.id = s.rowid "
            "WHERE document_search MATCH :match AND (s.number = :exact "
            f"OR s.number LIKE :prefix ESCAPE '\\'){where} "
            "ORDER BY s.number = :exact DESC, d.issued_on DESC, s.rowid DESC LIMIT :limit"
        )
    else:
        sql = (
            "SELECT s.document_id, s.number = :exact FROM document_search s "  # noqa: S608
            "JOIN documents d ON d.id = s.document_id "
            f"WHERE (s.number = :exact OR s.number LIKE :prefix ESCAPE '\\'){where} "
            "ORDER BY s.number = :exact DESC, d.issued_on DESC NULLS LAST, s.document_id DESC "
            "LIMIT :limit"
        )
    rows = await session.execute(text(sql), params)
    return [(int(row[0]), 1000.0 if row[1] else 900.0) for row in rows]


async def _topic_id(session: AsyncSession, slug: str) -> int:
    topic_id = await session.scalar(select(Topic.id).where(Topic.slug == slug.strip().lower()))
    if topic_id is None:
        raise LibraryError(f"unknown topic: {slug}")
    return topic_id


async def search(
    session: AsyncSession,
    query: str,
    *,
    topic: str | None = None,
    language: str | None = None,
    limit: int = 10,
    public: bool | None = None,
) -> list[Hit]:
    """The best `limit` current documents for `query`, best first.

    Case and diacritics are ignored ("luat thuy san" finds "Luật Thủy sản"; đ is d). A
    query that names a document number ("1191", "1191/QĐ-TTg", "nghị định 37") lists the
    documents with that number first. Documents with every query word rank above those
    with only some; the last word may be unfinished. `topic` is a topic slug (LibraryError
    if unknown); `language` a code such as "vi"; `public=True` keeps to the documents
    shown to the public (chat, kiosk pages), filtered in the query itself.
    """
    limit = max(1, min(limit, 100))
    topic_id = None if topic is None else await _topic_id(session, topic)
    terms = _terms(query)
    if not terms:
        return []
    ranked: dict[int, float] = {}

    def take(rows: Iterable[tuple[int, float]]) -> None:
        for document_id, score in rows:
            if len(ranked) < limit:
                ranked.setdefault(document_id, score)

    id_column = "s.rowid" if _dialect(session) == "sqlite" else "s.document_id"
    filters = _filters(id_column, topic_id, language, public)
    number = _number_query(query)
    if number is not None:
        take(await _by_number(session, number, filters, limit))
    if len(ranked) < limit:
        take(await _ranked_text(session, terms, "AND", filters, limit))
    if len(ranked) < limit and len(terms) > 1:
        take(await _ranked_text(session, terms, "OR", filters, limit + len(ranked)))
    if not ranked:
        return []
    documents = {
        document.id: document
        for document in await session.scalars(select(Document).where(Document.id.in_(ranked)))
    }
    return [
        Hit(
            document_id=document.id,
            title=document.title,
            number=document.number,
            issuer=document.issuer,
            issued_on=document.issued_on,
            language=document.language,
            snippet=snippet(document, terms),
            score=round(score, 6),
        )
        for document_id, score in ranked.items()
        if (document := documents.get(document_id)) is not None
    ]


def looks_like_search(message: str) -> bool:
    """Whether a free-text chat message is clearly a look-up in the library.

    Conservative, because everything else reaches the commune's officials: a short message
    (at most SEARCH_MESSAGE_MAX characters) that cites a document number with its kind
    ("1191/QĐ-TTg", "37/2024/NĐ-CP"), or a short question (a "?" or a phrase such as
    "là gì", "thế nào") naming a legal term ("luật", "nghị định", "xử phạt", "giấy phép" …).
    Callers should still send messages with urgent words to the officials first.
    """
    if len(message) > SEARCH_MESSAGE_MAX:
        return False
    folded = fold(message)
    if any("/" in found.group() for found in _CITED_NUMBER.finditer(folded)):
        return True
    padded = f" {' '.join(_WORD.findall(folded))} "
    asked = "?" in message or any(f" {phrase} " in padded for phrase in _QUESTION_PHRASES)
    return asked and any(f" {term} " in padded for term in _LEGAL_TERMS)


# --- snippets ----------------------------------------------------------------------------------


def _one_to_one_fold_table() -> dict[int, str]:
    # A fold that keeps every character's position, so a match found in folded text can be
    # highlighted in the original. Latin letters with marks fold to one letter each.
    table: dict[int, str] = {}
    ranges = (range(0x41, 0x5B), range(0xC0, 0x250), range(0x1E00, 0x1F00))
    for block in ranges:
        for code in block:
            folded = fold(chr(code))
            if len(folded) == 1:
                table[code] = folded
    for space in "\t\n\r\f\v\u00a0\u2028\u2029":
        table[ord(space)] = " "
    return table


_FOLD_TABLE = _one_to_one_fold_table()


def _pattern(terms: Sequence[_Term]) -> re.Pattern[str] | None:
    options = []
    for term in terms:
        for phrase in term.alternatives:
            body = r"\W+".join(re.escape(word) for word in phrase)
            options.append(body + (r"[^\W_]*" if term.prefix else r"(?![^\W_])"))
    if not options:
        return None
    # Longest first, so "khai thac" wins over "khai" at the same place.
    options.sort(key=len, reverse=True)
    return re.compile(r"(?<![^\W_])(?:" + "|".join(options) + ")")


def _window(original: str, pattern: re.Pattern[str], width: int) -> tuple[str, int] | None:
    """The best passage of `original` with its marks, and how many different words it shows."""
    folded = nfc(original).translate(_FOLD_TABLE)
    source = nfc(original)
    if len(folded) != len(source):  # cannot happen with a 1:1 table; a guard all the same
        return None
    matches = [(m.start(), m.end(), m.group()) for m in pattern.finditer(folded)][:200]
    if not matches:
        return None
    # The window holding the most different matched words wins; the earliest among equals.
    best_start, best_count = matches[0][0], 0
    for start, _end, _word in matches:
        words = {word for s, e, word in matches if start <= s and e <= start + width}
        if len(words) > best_count:
            best_start, best_count = start, len(words)
    begin = max(0, best_start - width // 4)
    if begin > 0:
        space = source.find(" ", begin)
        begin = space + 1 if 0 <= space < best_start else begin
    end = min(len(source), begin + width)
    if end < len(source):
        space = source.rfind(" ", begin, end)
        end = space if space > best_start else end
    spans: list[list[int]] = []
    for start, stop, _word in matches:
        if start < begin or stop > end:
            continue
        if spans and not source[spans[-1][1] : start].strip():
            spans[-1][1] = stop  # one mark around "Luật Thủy sản", not three
        else:
            spans.append([start, stop])
    pieces = []
    at = begin
    for start, stop in spans:
        pieces.append(source[at:start] + MARK_OPEN + source[start:stop] + MARK_CLOSE)
        at = stop
    pieces.append(source[at:end])
    shown = re.sub(r"\s+", " ", "".join(pieces)).strip()
    passage = ("…" if begin > 0 else "") + shown + ("…" if end < len(source) else "")
    return passage, best_count


def snippet(document: Document, terms: Sequence[_Term], width: int = SNIPPET_CHARS) -> str:
    """A short passage of the document around the best match, matches wrapped in « »."""
    pattern = _pattern(terms)
    if pattern is not None:
        best: tuple[str, int] | None = None
        # The body gives the most context; a shorter field wins only by showing more words.
        for field in (document.body, document.summary, document.title):
            found = _window(field or "", pattern, width)
            if found and (best is None or found[1] > best[1]):
                best = found
        if best is not None:
            return best[0]
    fallback = re.sub(r"\s+", " ", document.summary or document.body or "").strip()
    return fallback if len(fallback) <= width else fallback[:width].rsplit(" ", 1)[0] + "…"


def highlight(text_: str, query: str, width: int = SNIPPET_CHARS) -> str | None:
    """The passage of `text_` that best matches `query`, with « » marks; None without a match."""
    pattern = _pattern(_terms(query))
    found = None if pattern is None else _window(text_, pattern, width)
    return None if found is None else found[0]


# --- reading and browsing ----------------------------------------------------------------------


def page(text_: str, limit: int) -> list[str]:
    """Cut a document's text into pages of at most `limit` characters (Telegram 4096, Zalo
    2000), at paragraph, then sentence, then word boundaries."""
    return split_message(text_, limit)


def reading_text(document: Document) -> str:
    """The whole document as a person reads it in chat: heading lines, summary, then body."""
    heading = [document.title]
    facts = [
        f"Số: {document.number}" if document.number else "",
        document.issuer or "",
        f"Ngày {document.issued_on:%d/%m/%Y}" if document.issued_on else "",
    ]
    line = " · ".join(fact for fact in facts if fact)
    if line:
        heading.append(line)
    parts = ["\n".join(heading)]
    if document.summary:
        parts.append(document.summary)
    if document.body and document.body != document.summary:
        parts.append(document.body)
    return "\n\n".join(parts)


async def browse(
    session: AsyncSession,
    topic: str | None = None,
    *,
    language: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[Document]:
    """Current documents, newest issue date first; only `topic` (a slug) when given."""
    statement = select(Document).where(~superseded())
    if topic is not None:
        topic_id = await _topic_id(session, topic)
        statement = statement.where(
            exists().where(
                DocumentTopic.document_id == Document.id, DocumentTopic.topic_id == topic_id
            )
        )
    if language is not None:
        statement = statement.where(Document.language == language)
    statement = statement.order_by(
        Document.issued_on.is_(None), Document.issued_on.desc(), Document.id.desc()
    )
    return list((await session.scalars(statement.limit(limit).offset(offset))).all())


async def topic_counts(session: AsyncSession, *, language: str | None = None) -> list[TopicCount]:
    """Active topics in display order, with how many current documents each has."""
    statement = (
        select(Topic.slug, Topic.name, func.count(Document.id))
        .select_from(Topic)
        .outerjoin(DocumentTopic, DocumentTopic.topic_id == Topic.id)
        .outerjoin(
            Document,
            (Document.id == DocumentTopic.document_id)
            & ~superseded()
            & (Document.language == language if language is not None else True),
        )
        .where(Topic.active.is_(True))
        .group_by(Topic.id, Topic.slug, Topic.name, Topic.position)
        .order_by(Topic.position, Topic.id)
    )
    return [
        TopicCount(slug, name, int(count)) for slug, name, count in await session.execute(statement)
    ]


async def topics_of(session: AsyncSession, document_id: int) -> list[str]:
    """The slugs of a document's topics, in display order."""
    rows = await session.scalars(
        select(Topic.slug)
        .join(DocumentTopic, DocumentTopic.topic_id == Topic.id)
        .where(DocumentTopic.document_id == document_id)
        .order_by(Topic.position, Topic.id)
    )
    return list(rows.all())


async def versions(session: AsyncSession, document: Document) -> list[Document]:
    """Every imported version of the document (same number), oldest first; just itself
    when it has no number."""
    if document.number is None:
        return [document]
    rows = await session.scalars(
        select(Document).where(Document.number == document.number).order_by(Document.id)
    )
    return list(rows.all())
