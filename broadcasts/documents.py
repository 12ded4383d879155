"""Official documents: reading txt/md/pdf/docx files, finding their metadata, importing versions."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from audio.store import AssetStore, make_store
from broadcasts import audit, library
from db.models import Document, DocumentAttachment, DocumentTopic, Official, Topic
from db.text import fold, nfc

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".docx")
MAX_FILE_BYTES = 20 * 1024 * 1024  # a whole law as a PDF is a few MB; more is a mistake
MAX_TITLE = 400
MAX_NUMBER = 80
MAX_ISSUER = 200
MAX_URL = 500
SUMMARY_CHARS = 400
# Metadata sits in the heading block of an official document; the body can quote other
# documents' numbers and dates, which must not be taken for this one's.
_HEAD_LINES = 40

# 1191/QĐ-TTg, 37/2024/NĐ-CP, 18/2017/QH14, 23/2018/TT-BNNPTNT, 45/CĐ-TTg.
NUMBER_PATTERN = re.compile(
    r"(?<![\w/])\d{1,5}/(?:\d{4}/)?[A-ZĐ][A-ZĐ0-9]*(?:-[A-ZĐa-zđ0-9]+)*(?![\w/])"
)
_NUMBER_LINE = re.compile(r"^\s*(?:luật\s+)?số(?:\s+hiệu)?\s*[:.]?\s*(\S+)", re.IGNORECASE)
_DATE_WORDS = re.compile(r"ngày\s+(\d{1,2})\s+tháng\s+(\d{1,2})\s+năm\s+(\d{4})", re.IGNORECASE)
_DATE_NUMERIC = re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?!\d)")
_DATE_ISO = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})?$")
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)

# Kinds of official document, as they head the text (folded) → how a title names them.
_KINDS = {
    "luat": "Luật",
    "nghi dinh": "Nghị định",
    "nghi quyet": "Nghị quyết",
    "quyet dinh": "Quyết định",
    "chi thi": "Chỉ thị",
    "thong tu": "Thông tư",
    "cong dien": "Công điện",
    "ke hoach": "Kế hoạch",
    "thong bao": "Thông báo",
    "huong dan": "Hướng dẫn",
    "cong van": "Công văn",
    "phap lenh": "Pháp lệnh",
}
# Heading lines that are not the issuer: the national motto and its second line.
_MOTTO = ("cong hoa xa hoi chu nghia viet nam", "doc lap - tu do - hanh phuc")
# Issuers written in capitals at the top, in the case used in running text.
_ISSUERS = {
    "quoc hoi": "Quốc hội",
    "chinh phu": "Chính phủ",
    "thu tuong chinh phu": "Thủ tướng Chính phủ",
    "bo nong nghiep va phat trien nong thon": "Bộ Nông nghiệp và Phát triển nông thôn",
    "bo nong nghiep va moi truong": "Bộ Nông nghiệp và Môi trường",
    "bo quoc phong": "Bộ Quốc phòng",
    "bo ngoai giao": "Bộ Ngoại giao",
    "bo thong tin va truyen thong": "Bộ Thông tin và Truyền thông",
}
# Paragraphs that open the legal preamble and make a poor summary.
_PREAMBLE = ("can cu", "theo de nghi", "xet de nghi", "xet to trinh")

_FRONT_KEYS = {
    "title": "title",
    "tieu de": "title",
    "ten": "title",
    "number": "number",
    "so": "number",
    "so hieu": "number",
    "ky hieu": "number",
    "issuer": "issuer",
    "co quan ban hanh": "issuer",
    "co quan": "issuer",
    "date": "issued_on",
    "issued": "issued_on",
    "issued_on": "issued_on",
    "ngay": "issued_on",
    "ngay ban hanh": "issued_on",
    "language": "language",
    "lang": "language",
    "ngon ngu": "language",
    "summary": "summary",
    "tom tat": "summary",
    "source": "source_url",
    "url": "source_url",
    "source_url": "source_url",
    "nguon": "source_url",
    "topics": "topics",
    "topic": "topics",
    "chu de": "topics",
}


class DocumentError(ValueError):
    """A file that cannot be imported, or a bad import request; the message names the file."""


@dataclass(frozen=True)
class ParsedDocument:
    """What one file says: its text and the metadata found in front matter or in the text."""

    source: str  # the file name, for messages and the audit trail
    title: str
    body: str
    number: str | None = None
    issuer: str | None = None
    issued_on: dt.date | None = None
    language: str = "vi"
    summary: str = ""
    source_url: str | None = None
    topics: tuple[str, ...] = field(default=())
    # The file's bytes, kept as the document's source attachment when a store is given.
    original: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class AttachmentFile:
    """A checked file to attach (see attachment_file): its name, type, bytes and hash."""

    name: str
    media_type: str
    data: bytes = field(repr=False)
    sha256: str

    @property
    def store_key(self) -> str:
        # Content-addressed: the same annex on several versions is stored once, and a
        # retried import rewrites identical bytes instead of leaving a second copy.
        return f"{self.sha256[:2]}/{self.sha256}"


@dataclass(frozen=True)
class Imported:
    """The outcome of importing one file."""

    source: str
    document: Document
    version: int  # 1 for a new document; n for the n-th import of the same number
    replaced_id: int | None  # the version this one supersedes
    unchanged: bool  # the same text as the current version: nothing new was stored
    attachments: tuple[DocumentAttachment, ...] = ()


# --- reading files -----------------------------------------------------------------------------


def extract_text(data: bytes, filename: str) -> str:
    """The text of a .txt, .md, .pdf or .docx file's bytes (NFC); DocumentError if unreadable."""
    name = Path(filename).name
    suffix = Path(filename).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentError(
            f"{name}: unsupported file type {suffix or '(none)'!r} "
            f"(use {', '.join(SUPPORTED_SUFFIXES)})"
        )
    if len(data) > MAX_FILE_BYTES:
        raise DocumentError(f"{name}: file is larger than {MAX_FILE_BYTES // 1024 // 1024} MB")
    if not data.strip():
        raise DocumentError(f"{name}: file is empty")
    if suffix == ".pdf":
        raw = _pdf_text(data, name)
    elif suffix == ".docx":
        raw = _docx_text(data, name)
    else:
        raw = _plain_text(data, name)
    text = _tidy(nfc(raw))
    if not text:
        raise DocumentError(f"{name}: no text found")
    return text


def _plain_text(data: bytes, name: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DocumentError(f"{name}: broken UTF-16 text") from None
    if b"\x00" in data[:4096]:
        raise DocumentError(f"{name}: looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Old Vietnamese encodings (TCVN3, VNI, Windows-1258) would import as gibberish.
        raise DocumentError(
            f"{name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 and retry"
        ) from None


def _pdf_text(data: bytes, name: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name}: the PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # pypdf reports damaged files with a spread of exception types.
        raise DocumentError(f"{name}: not a readable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(pages)
    if not text.strip():
        raise DocumentError(
            f"{name}: the PDF has no text layer (a scanned PDF needs OCR before import)"
        )
    return text


def _docx_text(data: bytes, name: str) -> str:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = [cell.text.strip() for cell in row.cells]
                    # Merged cells repeat their text in every grid cell they span.
                    unique = [c for i, c in enumerate(cells) if c and c not in cells[:i]]
                    if unique:
                        blocks.append("\n".join(unique))
            else:
                blocks.append(item.text)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"{name}: not a readable DOCX file ({exc})") from None
    except Exception as exc:  # lxml and zip errors from deep inside python-docx
        raise DocumentError(f"{name}: not a readable DOCX file ({type(exc).__name__})") from None
    return "\n".join(blocks)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- metadata ----------------------------------------------------------------------------------


def parse(text: str, *, source: str, language: str | None = None) -> ParsedDocument:
    """Split `text` (from extract_text) into metadata and body.

    A leading front-matter block (`---` lines around `key: value` lines; keys title,
    number, issuer, date, language, summary, source, topics, or their Vietnamese names)
    wins; what it leaves out is looked for in the heading block of the text: the number
    ("Số: 1191/QĐ-TTg"), the date ("ngày 14 tháng 8 năm 2018"), the issuer (the capitals
    line on top), the title (the kind of document and its subject, or a Markdown heading).
    `language` overrides the file's. DocumentError when no title can be found.
    """
    name = Path(source).name
    meta, body = _front_matter(text, name)
    markdown = Path(source).suffix.lower() in (".md", ".markdown")
    heading = None
    if markdown:
        body, heading = _plain_markdown(body, meta.get("title"))
    body = _tidy(body)
    if not body:
        raise DocumentError(f"{name}: no text after the front matter")
    head = body.split("\n")[:_HEAD_LINES]

    title = meta.get("title") or heading or _title(head)
    number = meta.get("number") or _number(head)
    issuer = meta.get("issuer") or _issuer(head)
    issued_on = _date(meta["issued_on"], name) if meta.get("issued_on") else _text_date(head)
    summary = meta.get("summary") or _summary(body, title)
    lang = (language or meta.get("language") or "vi").strip().lower()
    topics = tuple(t.strip().lower() for t in meta.get("topics", "").split(",") if t.strip())

    if not title:
        raise DocumentError(f"{name}: no title found (add a 'title:' front-matter line)")
    return _checked(
        ParsedDocument(
            source=name,
            title=title,
            body=body,
            number=number,
            issuer=issuer,
            issued_on=issued_on,
            language=lang,
            summary=summary,
            source_url=meta.get("source_url"),
            topics=topics,
        )
    )


def _checked(parsed: ParsedDocument) -> ParsedDocument:
    name = parsed.source
    if not parsed.title.strip():
        raise DocumentError(f"{name}: the title is empty")
    if not _LANGUAGE.match(parsed.language):
        raise DocumentError(
            f"{name}: not a language code: {parsed.language!r} (e.g. vi, en, zh, km)"
        )
    for label, value, limit in (
        ("title", parsed.title, MAX_TITLE),
        ("number", parsed.number, MAX_NUMBER),
        ("issuer", parsed.issuer, MAX_ISSUER),
        ("source", parsed.source_url, MAX_URL),
    ):
        if value is not None and len(value) > limit:
            raise DocumentError(f"{name}: {label} is longer than {limit} characters")
    if parsed.source_url is not None and not _URL.match(parsed.source_url):
        raise DocumentError(f"{name}: the source link must start with http:// or https://")
    return parsed


def with_metadata(
    parsed: ParsedDocument,
    *,
    title: str | None = None,
    number: str | None = None,
    issuer: str | None = None,
    issued_on: str | None = None,
    language: str | None = None,
    summary: str | None = None,
    source_url: str | None = None,
    topics: Sequence[str] | None = None,
) -> ParsedDocument:
    """`parsed` with the metadata an official typed (the upload form): a non-empty value
    replaces what the file says; DocumentError for a bad value (date, language, lengths)."""

    def given(value: str | None) -> str | None:
        value = nfc(value).strip() if value is not None else None
        return value or None

    changes: dict[str, object] = {}
    for key, value in (
        ("title", title),
        ("number", number),
        ("issuer", issuer),
        ("summary", summary),
        ("source_url", source_url),
    ):
        if (clean := given(value)) is not None:
            changes[key] = clean
    if (day := given(issued_on)) is not None:
        changes["issued_on"] = _date(day, parsed.source)
    if (lang := given(language)) is not None:
        changes["language"] = lang.lower()
    if topics is not None:
        wanted = tuple(t.strip().lower() for t in topics if t.strip())
        changes["topics"] = tuple(dict.fromkeys((*parsed.topics, *wanted)))
    return _checked(dataclasses.replace(parsed, **changes))  # type: ignore[arg-type]


def _front_matter(text: str, name: str) -> tuple[dict[str, str], str]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise DocumentError(f"{name}: the front matter opened with '---' is never closed") from None
    meta: dict[str, str] = {}
    for number, line in enumerate(lines[1:end], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise DocumentError(f"{name}: front matter line {number} is not 'key: value'")
        target = _FRONT_KEYS.get(fold(key))
        if target is not None:  # other keys (a site generator's "layout") are not ours
            meta[target] = value.strip().strip("\"'").strip()
    return {k: v for k, v in meta.items() if v}, "\n".join(lines[end + 1 :])


def _plain_markdown(text: str, title: str | None) -> tuple[str, str | None]:
    """Plain text for chat and loudspeakers (no heading marks, emphasis or link syntax), and
    the first "# " heading, which is dropped from the text when it is the title."""
    heading = None
    first = re.search(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE)
    if first is not None and not text[: first.start()].strip():
        heading = first.group(1).strip()
        if title is None or fold(title) == fold(heading):
            text = text[first.end() :]
    text = re.sub(r"^\s{0,3}#{1,6}\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return text, heading


def _title(head: list[str]) -> str:
    lines = [line.strip() for line in head]
    for at, line in enumerate(lines):
        kind = _kind_line(line)
        if kind is None:
            continue
        subject: list[str] = []
        for following in lines[at + 1 : at + 5]:
            if not following or following.startswith("-") or _NUMBER_LINE.match(following):
                if subject:
                    break
                continue
            if fold(following).startswith(_PREAMBLE) or following.endswith((".", ";", ":")):
                break  # the preamble or the body has begun (no blank line in PDF/DOCX text)
            subject.append(following)
        if subject:
            return f"{kind} {_subject(' '.join(subject), kind)}"[:MAX_TITLE]
    first = next((line for line in lines if line and fold(line) not in _MOTTO), "")
    return first[:MAX_TITLE]


def _kind_line(line: str) -> str | None:
    """The document kind when `line` is a heading such as "QUYẾT ĐỊNH" or "LUẬT THỦY SẢN"."""
    if not line or line != line.upper():
        return None
    folded = fold(line)
    for key, kind in _KINDS.items():
        if folded == key:
            return kind
    return None


def _subject(text: str, kind: str) -> str:
    text = text.strip()
    if text == text.upper():
        # A subject in capitals ("THỦY SẢN") reads in sentence case, with names kept.
        text = text.lower()
        text = text[:1].upper() + text[1:]
        text = re.sub(r"việt nam", "Việt Nam", text)
    if kind in ("Luật", "Pháp lệnh"):
        return text  # the subject is the law's name: "Luật Biển Việt Nam"
    # Otherwise it continues the sentence: "Quyết định phê duyệt …", "Chỉ thị về …".
    return text[:1].lower() + text[1:]


def _number(head: list[str]) -> str | None:
    for line in head:
        match = _NUMBER_LINE.match(line)
        if match:
            found = NUMBER_PATTERN.search(line)
            if found:
                return found.group()
    for line in head:
        found = NUMBER_PATTERN.search(line)
        if found:
            return found.group()
    return None


def _issuer(head: list[str]) -> str | None:
    for line in head[:8]:
        clean = line.strip()
        for motto in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "CỘNG HOÀ XÃ HỘI CHỦ NGHĨA VIỆT NAM"):
            clean = clean.replace(motto, "").strip()
        folded = fold(clean)
        if (
            not clean
            or clean != clean.upper()
            or not any(ch.isalpha() for ch in clean)
            or folded in _MOTTO
            or _kind_line(clean)
            or len(clean) > MAX_ISSUER
        ):
            continue
        return _ISSUERS.get(folded, clean)
    return None


def _date(value: str, name: str) -> dt.date:
    found = _text_date([value])
    if found is None:
        raise DocumentError(f"{name}: not a date: {value!r} (use 2018-08-14 or 14/08/2018)")
    return found


def _text_date(head: list[str]) -> dt.date | None:
    for line in head:
        for pattern, order in ((_DATE_WORDS, (3, 2, 1)), (_DATE_ISO, (1, 2, 3))):
            match = pattern.search(line)
            if match:
                return _make_date(*(int(match.group(i)) for i in order))
    for line in head:
        match = _DATE_NUMERIC.search(line)
        if match:
            return _make_date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
    return None


def _make_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _summary(body: str, title: str) -> str:
    """The first paragraph that reads as prose, cut at a sentence end near SUMMARY_CHARS."""
    title_folded = fold(title)
    for paragraph in body.split("\n\n"):
        flat = " ".join(paragraph.split())
        folded = fold(flat)
        if (
            len(flat) < 60
            or flat == flat.upper()
            or folded.startswith(_PREAMBLE)
            or folded in title_folded
            or any(motto in folded for motto in _MOTTO)
        ):
            continue
        if len(flat) <= SUMMARY_CHARS:
            return flat
        cut = flat.rfind(". ", 0, SUMMARY_CHARS)
        return (
            flat[: cut + 1]
            if cut > SUMMARY_CHARS // 3
            else flat[:SUMMARY_CHARS].rsplit(" ", 1)[0] + "…"
        )
    return ""


def load(path: Path, *, language: str | None = None) -> ParsedDocument:
    """Read and parse one file; DocumentError (naming the file) when it cannot be imported."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
    return load_bytes(data, path.name, language=language)


def load_bytes(data: bytes, filename: str, *, language: str | None = None) -> ParsedDocument:
    """Parse an uploaded file's bytes (the dashboard's upload form)."""
    name = clean_file_name(filename)
    parsed = parse(extract_text(data, name), source=name, language=language)
    return dataclasses.replace(parsed, original=data)


# --- attachments -------------------------------------------------------------------------------

MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024  # a scanned annex runs to tens of MB; more is a mistake
MAX_ATTACHMENTS = 20
MAX_FILE_NAME = 200
# What may be attached, by file name suffix, and the type it is served with. A fixed list:
# HTML, SVG or scripts served from our own site would run in the kiosk's and officials'
# browsers, so they are refused rather than sniffed.
ATTACHMENT_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".doc": "application/msword",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".markdown": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".mp3": "audio/mpeg",
    ".zip": "application/zip",
}


def store_for(data_dir: Path) -> AssetStore:
    """The store of document files (imported originals, annexes): DATA_DIR/documents."""
    return make_store("local", root=data_dir / "documents")


def clean_file_name(filename: str) -> str:
    """The last part of an uploaded or given file name, NFC, without control characters,
    at most MAX_FILE_NAME characters (the suffix kept); DocumentError when nothing is left."""
    base = nfc(filename).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().strip(".")
    if not base:
        raise DocumentError(f"{filename!r}: not a usable file name")
    if len(base) > MAX_FILE_NAME:
        _stem, dot, suffix = base.rpartition(".")
        keep = f".{suffix}" if dot and len(suffix) <= 10 else ""
        base = base[: MAX_FILE_NAME - len(keep)] + keep
    return base


def attachment_file(filename: str, data: bytes) -> AttachmentFile:
    """Check a file to attach (name, type by suffix, size); DocumentError naming it if not."""
    name = clean_file_name(filename)
    suffix = Path(name).suffix.lower()
    media_type = ATTACHMENT_TYPES.get(suffix)
    if media_type is None:
        raise DocumentError(
            f"{name}: this kind of file cannot be attached ({suffix or 'no suffix'}; "
            f"use {', '.join(sorted(ATTACHMENT_TYPES))})"
        )
    if not data:
        raise DocumentError(f"{name}: file is empty")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise DocumentError(
            f"{name}: file is larger than {MAX_ATTACHMENT_BYTES // 1024 // 1024} MB"
        )
    return AttachmentFile(name, media_type, data, hashlib.sha256(data).hexdigest())


def read_attachment(path: Path) -> AttachmentFile:
    """attachment_file for a file on disk; DocumentError when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
    return attachment_file(path.name, data)


def _checked_attachments(files: Sequence[AttachmentFile], source: str | None) -> None:
    if len(files) > MAX_ATTACHMENTS:
        raise DocumentError(f"at most {MAX_ATTACHMENTS} attachments per document")
    seen: set[str] = set() if source is None else {source.casefold()}
    for one in files:
        if one.name.casefold() in seen:
            raise DocumentError(f"{one.name}: two attached files have this name; rename one")
        seen.add(one.name.casefold())


def _put(store: AssetStore, one: AttachmentFile) -> None:
    """Write one file into the store (blocking: call from a worker thread)."""
    if store.exists(one.store_key) and store.size(one.store_key) == len(one.data):
        return  # content-addressed: already there
    with tempfile.TemporaryDirectory(prefix="haidang-attach-") as folder:
        staging = Path(folder) / "blob"
        staging.write_bytes(one.data)
        store.put_file(one.store_key, staging)


async def _store_attachments(
    session: AsyncSession,
    store: AssetStore,
    document: Document,
    files: Sequence[AttachmentFile],
    *,
    source: AttachmentFile | None,
    now: dt.datetime,
) -> list[DocumentAttachment]:
    """Put the files in the store, then their rows (a file under a name the document already
    has replaces it). A rolled-back import can leave files in the store with no row; they
    are content-addressed, so a retry reuses them and nothing ever lists them."""
    incoming = ([source] if source is not None else []) + list(files)
    for one in incoming:
        try:
            await asyncio.to_thread(_put, store, one)
        except OSError as exc:  # a full disk or a read-only data directory
            raise DocumentError(
                f"{one.name}: cannot store the file ({exc.strerror or type(exc).__name__})"
            ) from None
    existing = {
        row.name: row
        for row in await session.scalars(
            select(DocumentAttachment).where(DocumentAttachment.document_id == document.id)
        )
    }
    rows = []
    for one in incoming:
        row = existing.get(one.name)
        if row is None:
            row = DocumentAttachment(document_id=document.id, name=one.name, created_at=now)
            session.add(row)
        row.media_type = one.media_type
        row.size_bytes = len(one.data)
        row.sha256 = one.sha256
        row.store_key = one.store_key
        row.is_source = one is source
        rows.append(row)
    await session.flush()
    return rows


async def _carry_attachments(
    session: AsyncSession, previous: Document, document: Document, taken: set[str]
) -> None:
    """A new version keeps the previous one's annexes (not its source file) unless a file
    of the same name came with it."""
    for row in await session.scalars(
        select(DocumentAttachment)
        .where(
            DocumentAttachment.document_id == previous.id,
            DocumentAttachment.is_source.is_(False),
        )
        .order_by(DocumentAttachment.id)
    ):
        if row.name not in taken:
            session.add(
                DocumentAttachment(
                    document_id=document.id,
                    name=row.name,
                    media_type=row.media_type,
                    size_bytes=row.size_bytes,
                    sha256=row.sha256,
                    store_key=row.store_key,
                    is_source=False,
                    created_at=document.created_at,
                )
            )
    await session.flush()


# --- the public library ------------------------------------------------------------------------


def _public_current() -> ColumnElement[bool]:
    return Document.public.is_(True) & ~library.superseded()


async def public_documents(
    session: AsyncSession,
    *,
    topic_id: int | None = None,
    language: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[Document], int]:
    """Current public documents, newest issue date first, and how many there are in all."""
    condition = _public_current()
    if topic_id is not None:
        condition &= exists().where(
            DocumentTopic.document_id == Document.id, DocumentTopic.topic_id == topic_id
        )
    if language is not None:
        condition &= Document.language == language
    total = await session.scalar(select(func.count(Document.id)).where(condition))
    rows = await session.scalars(
        select(Document)
        .where(condition)
        .order_by(Document.issued_on.is_(None), Document.issued_on.desc(), Document.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), int(total or 0)


async def public_topics(
    session: AsyncSession, *, language: str | None = None
) -> list[tuple[Topic, int]]:
    """Active topics in display order with their number of current public documents."""
    joined = (Document.id == DocumentTopic.document_id) & _public_current()
    if language is not None:
        joined &= Document.language == language
    rows = await session.execute(
        select(Topic, func.count(Document.id))
        .outerjoin(DocumentTopic, DocumentTopic.topic_id == Topic.id)
        .outerjoin(Document, joined)
        .where(Topic.active.is_(True))
        .group_by(Topic.id)
        .order_by(Topic.position, Topic.id)
    )
    return [(topic, int(count)) for topic, count in rows.all()]


async def topics_with_names(session: AsyncSession, document_id: int) -> list[Topic]:
    """A document's active topics, in display order."""
    rows = await session.scalars(
        select(Topic)
        .join(DocumentTopic, DocumentTopic.topic_id == Topic.id)
        .where(DocumentTopic.document_id == document_id, Topic.active.is_(True))
        .order_by(Topic.position, Topic.id)
    )
    return list(rows.all())


async def attachments_of(session: AsyncSession, document_id: int) -> list[DocumentAttachment]:
    """A document version's attachments: the source file first, then annexes by name."""
    rows = await session.scalars(
        select(DocumentAttachment)
        .where(DocumentAttachment.document_id == document_id)
        .order_by(DocumentAttachment.is_source.desc(), DocumentAttachment.name)
    )
    return list(rows.all())


# --- importing ---------------------------------------------------------------------------------


async def add(
    session: AsyncSession,
    parsed: ParsedDocument,
    *,
    now: dt.datetime,
    topics: Sequence[str] = (),
    official: Official | None = None,
    via: str = "cli",
    attachments: Sequence[AttachmentFile] = (),
    store: AssetStore | None = None,
    public: bool | None = None,
    replaces: Document | None = None,
) -> Imported:
    """Store one parsed document in the caller's transaction, index it and audit it.

    A document whose number matches an existing one (ignoring case and diacritics) becomes
    its new version: the older one leaves the search index but stays readable. The same
    text again stores nothing new (`unchanged`) but for the attachments given. Topics are
    the file's plus `topics`, plus the previous version's.

    With a `store`, the file itself (`parsed.original`) is kept as the source attachment
    and `attachments` are added; a new version keeps the previous version's annexes.
    `public` (default: the previous version's, else True) puts the document on the public
    library pages. `replaces` makes this a new version of that document whatever its
    number (the dashboard's "new version" form); earlier versions take the new number.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if store is None and attachments:
        raise ValueError("attachments need a store")
    source_file = None
    if store is not None and parsed.original is not None:
        source_file = attachment_file(parsed.source, parsed.original)
    _checked_attachments(attachments, source_file.name if source_file else None)
    topic_ids = await _topic_ids(session, [*parsed.topics, *topics], parsed.source)
    if replaces is not None:
        earlier = await library.versions(session, replaces)
        if parsed.number is None and replaces.number is not None:
            parsed = dataclasses.replace(parsed, number=replaces.number)
    elif parsed.number:
        earlier = await _versions_by_number(session, parsed.number)
    else:
        # Without a number there is nothing to version by; only an exact repeat is caught.
        earlier = list(
            await session.scalars(
                select(Document)
                .where(Document.number.is_(None), Document.title == parsed.title)
                .order_by(Document.id)
            )
        )
        earlier = [doc for doc in earlier if _same_content(doc, parsed)][-1:]
    current = earlier[-1] if earlier else None
    if current is not None and _same_content(current, parsed):
        await _attach_topics(session, current.id, topic_ids)
        if public is not None and current.public != public:
            current.public = public
            current.updated_at = now
        stored = []
        if store is not None:
            stored = await _store_attachments(
                session, store, current, attachments, source=source_file, now=now
            )
        await _audit(session, now, official, via, current, parsed, len(earlier), None, True, stored)
        return Imported(
            parsed.source, current, len(earlier), None, unchanged=True, attachments=tuple(stored)
        )

    document = Document(
        title=parsed.title,
        number=parsed.number,
        issuer=parsed.issuer,
        issued_on=parsed.issued_on,
        language=parsed.language,
        summary=parsed.summary,
        body=parsed.body,
        source_url=parsed.source_url,
        public=public if public is not None else (current.public if current else True),
        created_at=now,
        updated_at=now,
    )
    session.add(document)
    for older in earlier:
        # One spelling for all versions ("QĐ" vs "QD"), so they group by plain equality.
        if older.number != parsed.number:
            older.number = parsed.number
            older.updated_at = now
    await session.flush()
    stored = []
    if store is not None:
        stored = await _store_attachments(
            session, store, document, attachments, source=source_file, now=now
        )
    if current is not None:
        topic_ids |= set(
            await session.scalars(
                select(DocumentTopic.topic_id).where(DocumentTopic.document_id == current.id)
            )
        )
        await library.unindex_document(session, current.id)
        await _carry_attachments(session, current, document, {row.name for row in stored})
    await _attach_topics(session, document.id, topic_ids)
    await library.index_document(session, document)
    replaced = current.id if current is not None else None
    version = len(earlier) + 1
    await _audit(session, now, official, via, document, parsed, version, replaced, False, stored)
    return Imported(
        parsed.source, document, version, replaced, unchanged=False, attachments=tuple(stored)
    )


async def import_files(
    session: AsyncSession,
    paths: Iterable[Path],
    *,
    now: dt.datetime,
    topics: Sequence[str] = (),
    language: str | None = None,
    official: Official | None = None,
    via: str = "cli",
    attach: Sequence[Path] = (),
    store: AssetStore | None = None,
    public: bool | None = None,
) -> list[Imported]:
    """Import every file in the caller's transaction, or none: all files are read and
    checked before anything is written, and every problem is reported in one DocumentError
    (one line per file).

    `attach` files go with the one document imported (DocumentError with several); with a
    `store` each imported file is kept as its document's source attachment.
    """
    paths = list(paths)
    parsed: list[ParsedDocument] = []
    extra: list[AttachmentFile] = []
    problems: list[str] = []
    for path in paths:
        try:
            parsed.append(load(path, language=language))
        except DocumentError as exc:
            problems.append(str(exc))
    for path in attach:
        try:
            extra.append(read_attachment(path))
        except DocumentError as exc:
            problems.append(str(exc))
    if attach and len(paths) != 1:
        problems.append("--attach goes with exactly one document file; import the others apart")
    if extra and not problems:
        try:
            _checked_attachments(extra, parsed[0].source if store is not None else None)
        except DocumentError as exc:
            problems.append(str(exc))
    if problems:
        raise DocumentError("nothing imported:\n" + "\n".join(problems))
    if not parsed:
        raise DocumentError("no files given")
    if extra and store is None:
        raise ValueError("attachments need a store")
    await _topic_ids(session, topics, "--topic")
    return [
        await add(
            session,
            one,
            now=now,
            topics=topics,
            official=official,
            via=via,
            attachments=extra,
            store=store,
            public=public,
        )
        for one in parsed
    ]


async def _topic_ids(session: AsyncSession, slugs: Sequence[str], source: str) -> set[int]:
    wanted = {slug.strip().lower() for slug in slugs if slug.strip()}
    if not wanted:
        return set()
    rows = (await session.execute(select(Topic.slug, Topic.id).where(Topic.slug.in_(wanted)))).all()
    found = {slug: topic_id for slug, topic_id in rows}
    missing = sorted(wanted - found.keys())
    if missing:
        raise DocumentError(
            f"{source}: unknown topic {', '.join(missing)} (see haidang topics list)"
        )
    return set(found.values())


async def _attach_topics(session: AsyncSession, document_id: int, topic_ids: set[int]) -> None:
    have = set(
        await session.scalars(
            select(DocumentTopic.topic_id).where(DocumentTopic.document_id == document_id)
        )
    )
    for topic_id in sorted(topic_ids - have):
        session.add(DocumentTopic(document_id=document_id, topic_id=topic_id))
    await session.flush()


async def _versions_by_number(session: AsyncSession, number: str) -> list[Document]:
    # Numbers differ in case and Đ/D between sources, so compare them folded; the digits
    # before the first slash never vary and narrow the lookup.
    digits = number.split("/", 1)[0]
    candidates = await session.scalars(
        select(Document)
        .where(Document.number.like(f"{digits}/%") | (Document.number == digits))
        .order_by(Document.id)
    )
    return [
        doc for doc in candidates if doc.number is not None and fold(doc.number) == fold(number)
    ]


def _same_content(document: Document, parsed: ParsedDocument) -> bool:
    return (
        document.title == parsed.title
        and document.body == parsed.body
        and document.summary == parsed.summary
        and document.issuer == parsed.issuer
        and document.issued_on == parsed.issued_on
        and document.language == parsed.language
        and document.source_url == parsed.source_url
    )


async def _audit(
    session: AsyncSession,
    now: dt.datetime,
    official: Official | None,
    via: str,
    document: Document,
    parsed: ParsedDocument,
    version: int,
    replaced: int | None,
    unchanged: bool,
    attachments: Sequence[DocumentAttachment] = (),
) -> None:
    await audit.record(
        session,
        now=now,
        official=official,
        via=via,
        action="document.import",
        object_type="document",
        object_id=document.id,
        details={
            "file": parsed.source,
            "number": document.number,
            "version": version,
            "replaces": replaced,
            "unchanged": unchanged,
            "public": document.public,
            "attachments": [row.name for row in attachments],
        },
    )
