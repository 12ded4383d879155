"""Importing documents: text, Markdown, PDF and DOCX, metadata, versions, all-or-nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from audio.store import LocalStore
from broadcasts import documents, library
from db import schema
from db.engine import make_engine
from db.models import AuditEntry, Base, Document
from haidang.settings import normalise_database_url
from tests.conftest import Database

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)

OFFICIAL_TEXT = """THỦ TƯỚNG CHÍNH PHỦ
Số: 1191/QĐ-TTg

CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
Độc lập - Tự do - Hạnh phúc

Hà Nội, ngày 14 tháng 8 năm 2018

QUYẾT ĐỊNH
Phê duyệt Đề án tuyên truyền pháp luật về biển cho ngư dân

Căn cứ Luật Tổ chức Chính phủ;

Đề án đưa Luật Biển Việt Nam và Luật Thủy sản đến ngư dân qua loa truyền thanh cơ sở
và các buổi sinh hoạt tại bến cá.
"""


# --- file builders shared with the CLI tests ---------------------------------------------------


def minimal_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF with `lines` in Helvetica (Latin-1 text only)."""
    stream = "BT /F1 12 Tf 72 760 Td 16 TL\n"
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream += f"({escaped}) Tj T*\n"
    stream += "ET"
    content = stream.encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def docx_bytes(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# --- parsing -----------------------------------------------------------------------------------


def test_metadata_from_an_official_heading() -> None:
    parsed = documents.parse(OFFICIAL_TEXT, source="qd.txt")
    assert parsed.number == "1191/QĐ-TTg"
    assert parsed.issuer == "Thủ tướng Chính phủ"
    assert parsed.issued_on == dt.date(2018, 8, 14)
    assert parsed.title == ("Quyết định phê duyệt Đề án tuyên truyền pháp luật về biển cho ngư dân")
    assert parsed.summary.startswith("Đề án đưa Luật Biển Việt Nam")  # not the "Căn cứ" line
    assert parsed.language == "vi"
    assert parsed.body.startswith("THỦ TƯỚNG CHÍNH PHỦ")


def test_law_titles_and_numbers_in_other_shapes() -> None:
    law = documents.parse(
        "QUỐC HỘI\nLuật số: 18/2012/QH13\n\nLUẬT\nBIỂN VIỆT NAM\n\nCăn cứ Hiến pháp;\n",
        source="luat.txt",
    )
    assert (law.number, law.issuer, law.title) == ("18/2012/QH13", "Quốc hội", "Luật Biển Việt Nam")
    decree = documents.parse(
        "CHÍNH PHỦ\nSố: 37/2024/NĐ-CP\nHà Nội, 04/04/2024\n\nNGHỊ ĐỊNH\nSửa đổi Nghị định 26\n",
        source="nd.txt",
    )
    assert decree.number == "37/2024/NĐ-CP" and decree.issued_on == dt.date(2024, 4, 4)
    assert decree.title == "Nghị định sửa đổi Nghị định 26"


def test_front_matter_and_markdown() -> None:
    text = (
        "---\ntiêu đề: Công điện về bão số 3\nsố: 05/CĐ-TTg\nngày: 2024-09-05\n"
        "topics: thoi-tiet, iuu\nlanguage: vi\nlayout: post\nsource: https://example.test/cd\n---\n"
        "# Công điện về bão số 3\n\nBão **rất mạnh**, xem [bản đồ](https://example.test/m).\n"
    )
    parsed = documents.parse(text, source="cd.md")
    assert parsed.title == "Công điện về bão số 3"
    assert parsed.number == "05/CĐ-TTg"
    assert parsed.issued_on == dt.date(2024, 9, 5)
    assert parsed.topics == ("thoi-tiet", "iuu")
    assert parsed.source_url == "https://example.test/cd"
    assert parsed.body == "Bão rất mạnh, xem bản đồ (https://example.test/m)."
    assert documents.parse("# Tiêu đề\n\nNội dung.", source="a.md").title == "Tiêu đề"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.rtf", b"{\\rtf1}", "a.rtf: unsupported file type '.rtf'"),
        ("a.txt", b"   \n", "a.txt: file is empty"),
        ("a.txt", b"Ngh\xe9 c\xe1 \xd0\xe0 N\xe3ng", "a.txt: not UTF-8 text"),  # Windows-1258
        ("a.txt", b"\x00\x01\x02binary", "a.txt: looks like a binary file"),
        ("a.pdf", b"%PDF-1.4 this is not really a pdf", "a.pdf: not a readable PDF"),
        ("a.pdf", b"hello", "a.pdf: not a readable PDF"),
        ("a.docx", b"PK\x03\x04 broken zip", "a.docx: not a readable DOCX file"),
        ("a.docx", b"plain text", "a.docx: not a readable DOCX file"),
    ],
)
def test_unreadable_files_give_clear_errors(name: str, data: bytes, message: str) -> None:
    with pytest.raises(documents.DocumentError, match="^" + message.replace(".", r"\.")):
        documents.load_bytes(data, name)


def test_a_pdf_without_text_and_bad_metadata_are_refused() -> None:
    with pytest.raises(documents.DocumentError, match=r"a\.pdf: the PDF has no text layer"):
        documents.load_bytes(minimal_pdf([]), "a.pdf")
    with pytest.raises(documents.DocumentError, match=r"x\.md: not a date: 'hôm qua'"):
        documents.parse("---\ntitle: T\ndate: hôm qua\n---\nNội dung", source="x.md")
    with pytest.raises(documents.DocumentError, match=r"x\.md: the front matter .* never closed"):
        documents.parse("---\ntitle: T\nNội dung", source="x.md")
    with pytest.raises(documents.DocumentError, match=r"x\.md: not a language code"):
        documents.parse("---\ntitle: T\nlanguage: Tiếng Việt\n---\nNội dung", source="x.md")


def test_pdf_and_docx_text_is_extracted() -> None:
    pdf = documents.load_bytes(
        minimal_pdf(["UBND XA CAT HAI", "So: 77/QD-UBND", "QUYET DINH", "Ve viec cam bien"]),
        "qd.pdf",
    )
    assert pdf.number == "77/QD-UBND"
    assert "cam bien" in pdf.body
    word = documents.load_bytes(
        docx_bytes(
            ["BỘ QUỐC PHÒNG", "Số: 12/CT-BQP", "CHỈ THỊ", "Về tuần tra biển đảo", "Nội dung."],
            table=[["Đơn vị", "Nhiệm vụ"], ["Hải đội 1", "Tuần tra Bạch Long Vĩ"]],
        ),
        "ct.docx",
    )
    assert (word.number, word.issuer, word.title) == (
        "12/CT-BQP",
        "Bộ Quốc phòng",
        "Chỉ thị về tuần tra biển đảo",
    )
    assert "Tuần tra Bạch Long Vĩ" in word.body


# --- importing ---------------------------------------------------------------------------------


async def _index_size(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM document_search")) or 0)


async def test_import_indexes_audits_and_versions(seeded: Database, tmp_path: Path) -> None:
    first = tmp_path / "qd.txt"
    first.write_text(OFFICIAL_TEXT, encoding="utf-8")
    async with seeded.sessions.begin() as session:
        [one] = await documents.import_files(session, [first], now=NOW, topics=["phap-luat"])
    assert (one.version, one.replaced_id, one.unchanged) == (1, None, False)

    # The same file again stores nothing new.
    async with seeded.sessions.begin() as session:
        [again] = await documents.import_files(session, [first], now=NOW)
    assert again.unchanged and again.document.id == one.document.id

    # An amended text under the same number (typed without Đ) is version 2.
    amended = tmp_path / "qd-sua-doi.md"
    amended.write_text(
        "---\nnumber: 1191/QD-TTg\ntitle: Quyết định 1191 (sửa đổi)\ntopics: bien-dao\n---\n"
        "Đề án được bổ sung nội dung tuyên truyền về chống khai thác IUU.",
        encoding="utf-8",
    )
    async with seeded.sessions.begin() as session:
        [second] = await documents.import_files(session, [amended], now=NOW)
    assert (second.version, second.replaced_id) == (2, one.document.id)
    async with seeded.sessions() as session:
        hits = await library.search(session, "1191")
        assert [hit.document_id for hit in hits] == [second.document.id]
        assert await library.search(session, "loa") == []  # the old text left the index
        old = await session.get(Document, one.document.id)
        assert old is not None and old.number == "1191/QD-TTg"  # one spelling for all versions
        assert [d.id for d in await library.versions(session, old)] == [
            one.document.id,
            second.document.id,
        ]
        assert await library.topics_of(session, second.document.id) == ["phap-luat", "bien-dao"]
        assert [d.id for d in await library.browse(session)] == [second.document.id]
        audits = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        assert [(a.action, a.via, a.details["version"]) for a in audits] == [
            ("document.import", "cli", 1),
            ("document.import", "cli", 1),
            ("document.import", "cli", 2),
        ]
        assert audits[1].details["unchanged"] is True
        assert audits[2].details["file"] == "qd-sua-doi.md"
        assert audits[0].at == NOW
    assert await _index_size(seeded) == 1


async def test_one_bad_file_imports_nothing(seeded: Database, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(OFFICIAL_TEXT, encoding="utf-8")
    corrupt = tmp_path / "hong.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n garbage")
    missing = tmp_path / "khong-co.docx"
    async with seeded.sessions.begin() as session:
        with pytest.raises(documents.DocumentError) as caught:
            await documents.import_files(session, [good, corrupt, missing], now=NOW)
    message = str(caught.value)
    assert message.startswith("nothing imported:")
    assert "hong.pdf: not a readable PDF" in message
    assert "khong-co.docx: cannot read the file" in message

    # A problem found while writing (an unknown topic in the second file) rolls back the first.
    bad_topic = tmp_path / "b.md"
    bad_topic.write_text("---\ntitle: B\ntopics: khong-co\n---\nNội dung.", encoding="utf-8")
    with pytest.raises(documents.DocumentError, match=r"b\.md: unknown topic khong-co"):
        async with seeded.sessions.begin() as session:
            await documents.import_files(session, [good, bad_topic], now=NOW)
    async with seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Document)) == 0
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0
    assert await _index_size(seeded) == 0


async def test_reindex_and_paging(seeded: Database, tmp_path: Path) -> None:
    path = tmp_path / "long.md"
    paragraphs = [f"Đoạn {i}: tàu cá phải giữ liên lạc với đồn biên phòng." * 5 for i in range(40)]
    path.write_text("---\ntitle: Văn bản dài\n---\n" + "\n\n".join(paragraphs), encoding="utf-8")
    async with seeded.sessions.begin() as session:
        [one] = await documents.import_files(session, [path], now=NOW)
        assert await library.reindex_all(session) == 1
    async with seeded.sessions() as session:
        assert (await library.search(session, "van ban dai"))[0].document_id == one.document.id
        document = await session.get(Document, one.document.id)
        assert document is not None
    reading = library.reading_text(document)
    pages = library.page(reading, 2000)
    assert len(pages) > 5 and all(len(p) <= 2000 for p in pages)
    assert pages[0].startswith("Văn bản dài")
    assert "".join(pages).replace(" ", "").replace("\n", "") == reading.replace(" ", "").replace(
        "\n", ""
    )
    assert library.highlight("Cấm biển từ 14 giờ", "cam bien") == "«Cấm biển» từ 14 giờ"


async def test_attachments_versions_and_the_store(seeded: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "qd.txt"
    source.write_text(OFFICIAL_TEXT, encoding="utf-8")
    annex = tmp_path / "phu-luc.pdf"
    annex.write_bytes(minimal_pdf(["Phu luc 1"]))
    photo = tmp_path / "anh.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"jpeg" * 100)
    async with seeded.sessions.begin() as session:
        [one] = await documents.import_files(
            session, [source], now=NOW, attach=[annex, photo], store=store, public=False
        )
    assert one.document.public is False
    assert [(row.name, row.is_source) for row in one.attachments] == [
        ("qd.txt", True),
        ("phu-luc.pdf", False),
        ("anh.jpg", False),
    ]
    for row, path in zip(one.attachments, (source, annex, photo), strict=True):
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row.size_bytes == path.stat().st_size
        with store.open(row.store_key) as fh:
            assert fh.read() == path.read_bytes()
    assert one.attachments[2].media_type == "image/jpeg"

    # The same text with one more annex: unchanged, but the annex is added.
    extra = documents.attachment_file("bang-ke.xlsx", b"PK\x03\x04 sheet")
    async with seeded.sessions.begin() as session:
        again = await documents.add(
            session, documents.load(source), now=NOW, attachments=[extra], store=store
        )
        names = [row.name for row in await documents.attachments_of(session, one.document.id)]
    assert again.unchanged and names == ["qd.txt", "anh.jpg", "bang-ke.xlsx", "phu-luc.pdf"]

    # A new version by the dashboard's route (`replaces`), with a new photo of the same
    # name: it keeps the annexes, takes the new photo and stays internal.
    amended = documents.with_metadata(
        documents.load_bytes(OFFICIAL_TEXT.replace("bến cá", "cảng cá").encode(), "qd-moi.txt"),
        summary="Bản sửa đổi.",
    )
    new_photo = documents.attachment_file("anh.jpg", b"\xff\xd8\xff\xe0 new")
    async with seeded.sessions.begin() as session:
        current = await session.get(Document, one.document.id)
        assert current is not None
        second = await documents.add(
            session, amended, now=NOW, attachments=[new_photo], store=store, replaces=current
        )
        rows = await documents.attachments_of(session, second.document.id)
        audit_row = await session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc()))
    assert (second.version, second.replaced_id, second.document.public) == (
        2, one.document.id, False
    )  # fmt: skip
    assert [(row.name, row.is_source) for row in rows] == [
        ("qd-moi.txt", True),
        ("anh.jpg", False),
        ("bang-ke.xlsx", False),
        ("phu-luc.pdf", False),
    ]
    assert next(r for r in rows if r.name == "anh.jpg").sha256 == new_photo.sha256
    assert audit_row is not None and audit_row.details["attachments"] == ["qd-moi.txt", "anh.jpg"]


async def test_a_store_that_cannot_write_imports_nothing(seeded: Database, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory should be")
    source = tmp_path / "qd.txt"
    source.write_text(OFFICIAL_TEXT, encoding="utf-8")
    with pytest.raises(documents.DocumentError, match=r"qd\.txt: cannot store the file"):
        async with seeded.sessions.begin() as session:
            await documents.import_files(session, [source], now=NOW, store=LocalStore(blocked))
    async with seeded.sessions() as session:
        assert await session.scalar(select(func.count(Document.id))) == 0
    assert await _index_size(seeded) == 0


def test_attachment_and_metadata_checks() -> None:
    with pytest.raises(documents.DocumentError, match=r"x\.svg: this kind of file cannot"):
        documents.attachment_file("x.svg", b"<svg/>")
    with pytest.raises(documents.DocumentError, match=r"a\.pdf: file is empty"):
        documents.attachment_file("C:\\Users\\a.pdf", b"")
    assert documents.clean_file_name("../../etc/Quyết định.pdf") == "Quyết định.pdf"
    long_name = documents.clean_file_name("a" * 300 + ".pdf")
    assert len(long_name) == documents.MAX_FILE_NAME and long_name.endswith(".pdf")
    parsed = documents.parse(OFFICIAL_TEXT, source="qd.txt")
    changed = documents.with_metadata(
        parsed, title=" Tên mới ", issued_on="01/02/2020", language="EN", topics=["iuu", ""]
    )
    assert (changed.title, changed.issued_on, changed.language, changed.topics) == (
        "Tên mới", dt.date(2020, 2, 1), "en", ("iuu",)
    )  # fmt: skip
    assert changed.number == "1191/QĐ-TTg"  # left empty: the file's value stays
    for bad, message in (
        ({"issued_on": "hôm qua"}, "not a date"),
        ({"language": "tiếng việt"}, "not a language code"),
        ({"source_url": "javascript:alert(1)"}, "must start with http"),
        ({"number": "9" * 100}, "number is longer than"),
    ):
        with pytest.raises(documents.DocumentError, match=message):
            documents.with_metadata(parsed, **bad)


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    # Mirrors the include_name the lead adds to db/schema.py (see the report).
    return not (type_ == "table" and name is not None and name.startswith("document_search"))


def test_the_migration_builds_the_index_and_leaves_the_models_matching(database_url: str) -> None:
    url = normalise_database_url(database_url)
    schema.upgrade(url)

    async def inspect() -> tuple[list[object], int]:
        engine = make_engine(url)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "include_name": _include_name}
                    ),
                    Base.metadata,
                )
            )
            size = await connection.scalar(text("SELECT count(*) FROM document_search"))
        await engine.dispose()
        return diff, int(size or 0)

    diff, size = asyncio.run(inspect())
    assert diff == []
    assert size == 0
