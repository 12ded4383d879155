"""`haidang docs`, run as a real process against a migrated database on each backend."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.broadcasts.test_documents import OFFICIAL_TEXT, docx_bytes, minimal_pdf
from tests.test_cli import cli_env, haidang

__all__ = ["cli_env"]  # the fixture, imported for pytest


def _files(folder: Path) -> list[Path]:
    folder.mkdir()
    txt = folder / "qd-1191.txt"
    txt.write_text(OFFICIAL_TEXT, encoding="utf-8")
    md = folder / "cong-dien-bao.md"
    md.write_text(
        "---\ntitle: Công điện về việc ứng phó bão số 3\nnumber: 05/CĐ-TTg\ndate: 2024-09-05\n"
        "topics: thoi-tiet\n---\n# Công điện về việc ứng phó bão số 3\n\n"
        "Các tỉnh ven biển cấm biển, kêu gọi tàu thuyền vào nơi tránh trú an toàn.\n",
        encoding="utf-8",
    )
    pdf = folder / "qd-cam-bien.pdf"
    pdf.write_bytes(
        minimal_pdf(
            [
                "UBND XA CAT HAI",
                "So: 77/QD-UBND",
                "QUYET DINH",
                "Ve viec tam dung ra khoi trong thoi gian gio mua",
                "Tau ca duoi 12 met khong ra khoi khi gio manh cap 6.",
            ]
        )
    )
    docx = folder / "chi-thi-tuan-tra.docx"
    docx.write_bytes(
        docx_bytes(
            [
                "BỘ QUỐC PHÒNG",
                "Số: 12/CT-BQP",
                "CHỈ THỊ",
                "Về tuần tra bảo vệ ngư dân trên biển",
                "Các hải đội tăng cường tuần tra quanh đảo Bạch Long Vĩ.",
            ]
        )
    )
    return [txt, md, pdf, docx]


def test_import_search_and_list(cli_env: dict[str, str], tmp_path: Path) -> None:
    upgraded = haidang("db", "upgrade", env=cli_env)
    assert upgraded.returncode == 0, upgraded.stderr
    files = _files(tmp_path / "in")

    imported = haidang("docs", "import", *map(str, files), "--topic", "phap-luat", env=cli_env)
    assert imported.returncode == 0, imported.stderr
    lines = [line for line in imported.stdout.splitlines() if not line.startswith(" ")]
    assert len(lines) == 4
    assert "    original: qd-1191.txt  text/plain; charset=utf-8" in imported.stdout
    assert (
        "1191/QĐ-TTg  Quyết định phê duyệt Đề án" in lines[0] and "(qd-1191.txt: new)" in lines[0]
    )
    assert "77/QD-UBND  Quyết định ve viec tam dung ra khoi" in lines[2]
    assert "12/CT-BQP  Chỉ thị về tuần tra bảo vệ ngư dân trên biển" in lines[3]

    found = haidang("docs", "search", "tuan tra bao ve ngu dan", env=cli_env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].endswith(
        "12/CT-BQP  Chỉ thị về tuần tra bảo vệ ngư dân trên biển"
    )
    assert "tuần tra bảo vệ ngư dân»" in found.stdout

    by_number = haidang("docs", "search", "1191", "--json", env=cli_env)
    hits = json.loads(by_number.stdout)
    assert hits[0]["number"] == "1191/QĐ-TTg" and hits[0]["issued_on"] == "2018-08-14"
    assert hits[0]["score"] == 900.0

    weather = haidang("docs", "search", "cam bien", "--topic", "thoi-tiet", "--json", env=cli_env)
    assert [hit["number"] for hit in json.loads(weather.stdout)] == ["05/CĐ-TTg"]
    pdf_hit = haidang("docs", "search", "gio manh cap 6", env=cli_env)
    assert "77/QD-UBND" in pdf_hit.stdout

    nothing = haidang("docs", "search", "xyzzy plugh", env=cli_env)
    assert nothing.returncode == 1
    assert "error: no document matches" in nothing.stderr
    unknown_topic = haidang("docs", "search", "bao", "--topic", "khong-co", env=cli_env)
    assert unknown_topic.returncode == 1 and "unknown topic: khong-co" in unknown_topic.stderr

    listed = haidang("docs", "list", "--json", env=cli_env)
    rows = json.loads(listed.stdout)
    assert len(rows) == 4
    assert all("phap-luat" in row["topics"] for row in rows)
    weather_doc = next(r for r in rows if r["number"] == "05/CĐ-TTg")
    assert weather_doc["topics"] == ["phap-luat", "thoi-tiet"]  # display order

    # Re-importing the Markdown file changes nothing; an amended text is version 2.
    again = haidang("docs", "import", str(files[1]), env=cli_env)
    assert "(cong-dien-bao.md: unchanged)" in again.stdout
    amended = tmp_path / "cong-dien-bao-2.md"
    amended.write_text(
        files[1].read_text(encoding="utf-8").replace("tránh trú an toàn", "neo đậu an toàn"),
        encoding="utf-8",
    )
    second = haidang("docs", "import", str(amended), env=cli_env)
    assert second.returncode == 0, second.stderr
    assert "version 2, replaces #2" in second.stdout
    assert len(json.loads(haidang("docs", "list", "--json", env=cli_env).stdout)) == 4


def test_an_unreadable_file_imports_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert haidang("db", "upgrade", env=cli_env).returncode == 0
    files = _files(tmp_path / "in")
    corrupt = tmp_path / "in" / "hong.docx"
    corrupt.write_bytes(b"PK\x03\x04 this zip is cut short")
    scanned = tmp_path / "in" / "scan.pdf"
    scanned.write_bytes(minimal_pdf([]))

    result = haidang("docs", "import", *map(str, [*files, corrupt, scanned]), env=cli_env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: nothing imported:" in result.stderr
    assert "hong.docx: not a readable DOCX file" in result.stderr
    assert "scan.pdf: the PDF has no text layer (a scanned PDF needs OCR before import)" in (
        result.stderr
    )
    unsupported = haidang("docs", "import", str(tmp_path / "in" / "x.odt"), env=cli_env)
    assert unsupported.returncode == 1 and "x.odt: cannot read the file" in unsupported.stderr
    assert json.loads(haidang("docs", "list", "--json", env=cli_env).stdout) == []
    assert haidang("docs", "search", "1191", "--json", env=cli_env).stdout.strip() == "[]"


def _upgraded_with_source(cli_env: dict[str, str], tmp_path: Path) -> Path:
    """A migrated database, and the decision's text file in a new folder."""
    assert haidang("db", "upgrade", env=cli_env).returncode == 0
    folder = tmp_path / "in"
    folder.mkdir()
    source = folder / "qd-1191.txt"
    source.write_text(OFFICIAL_TEXT, encoding="utf-8")
    return source


def test_attachments_are_kept_with_the_document(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = _upgraded_with_source(cli_env, tmp_path)
    folder = source.parent
    annex = folder / "phu-luc.pdf"
    annex.write_bytes(minimal_pdf(["Phu luc: danh sach tau ca"]))
    photo = folder / "ban-do.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))

    result = haidang(
        "docs", "import", str(source), "--attach", str(annex), "--attach", str(photo),
        "--internal", env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "    original: qd-1191.txt  text/plain; charset=utf-8" in result.stdout
    assert "    attachment: ban-do.png  image/png  264 bytes" in result.stdout
    assert "    attachment: phu-luc.pdf  application/pdf" in result.stdout
    # The store holds each file by its SHA-256 under DATA_DIR/documents.
    store = Path(cli_env["DATA_DIR"]) / "documents"
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert (store / digest[:2] / digest).read_bytes() == photo.read_bytes()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (store / digest[:2] / digest).read_bytes() == source.read_bytes()
    listed = json.loads(haidang("docs", "list", "--json", env=cli_env).stdout)
    assert [(row["number"], row["public"]) for row in listed] == [("1191/QĐ-TTg", False)]


def test_a_bad_attachment_imports_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = _upgraded_with_source(cli_env, tmp_path)
    folder = source.parent
    page = folder / "trang.html"
    page.write_text("<script>alert(1)</script>", encoding="utf-8")
    empty = folder / "rong.pdf"
    empty.write_bytes(b"")

    result = haidang(
        "docs", "import", str(source), "--attach", str(page), "--attach", str(empty),
        "--attach", str(folder / "missing.pdf"), env=cli_env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: nothing imported:" in result.stderr
    assert "trang.html: this kind of file cannot be attached (.html;" in result.stderr
    assert "rong.pdf: file is empty" in result.stderr
    assert "missing.pdf: cannot read the file" in result.stderr
    two = haidang("docs", "import", str(source), str(source), "--attach", str(source), env=cli_env)
    assert two.returncode == 1
    assert "--attach goes with exactly one document file" in two.stderr
    same_name = haidang("docs", "import", str(source), "--attach", str(source), env=cli_env)
    assert same_name.returncode == 1
    assert "qd-1191.txt: two attached files have this name" in same_name.stderr
    assert json.loads(haidang("docs", "list", "--json", env=cli_env).stdout) == []
    store = Path(cli_env["DATA_DIR"]) / "documents"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
