"""The dashboard's documents library over HTTP: upload with metadata and attachments, clear
Vietnamese errors with nothing half-imported, new versions, roles, CSRF and the audit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from broadcasts import documents
from db.models import AuditEntry, Document, DocumentAttachment
from tests.broadcasts.test_documents import OFFICIAL_TEXT, docx_bytes, minimal_pdf
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_officials, settings
from web.dashboard import make_router
from web.library import make_router as make_library

FILE_TYPES = {".txt": "text/plain", ".pdf": "application/pdf", ".png": "image/png"}


@pytest.fixture
async def app(seeded: Database, tmp_path: Path) -> FastAPI:
    await make_officials(seeded)
    app = FastAPI()
    config = settings(data_dir=tmp_path / "var")
    app.include_router(make_router(seeded.sessions, config))
    app.include_router(make_library(seeded.sessions, documents.store_for(config.data_dir)))
    return app


async def upload(
    client: Client,
    path: str,
    fields: dict[str, Any],
    files: list[tuple[str, str, bytes]],
    *,
    csrf: bool = True,
) -> httpx.Response:
    """POST a multipart form, as the browser sends the upload form."""
    data = {**fields, **({"csrf_token": client.csrf} if csrf else {})}
    parts = [
        (field, (name, content, FILE_TYPES.get(Path(name).suffix, "application/octet-stream")))
        for field, name, content in files
    ]
    return await client.http.post(path, data=data, files=parts)


async def _counts(database: Database) -> tuple[int, int]:
    async with database.sessions() as session:
        docs = await session.scalar(select(func.count(Document.id)))
        files = await session.scalar(select(func.count(DocumentAttachment.id)))
    return int(docs or 0), int(files or 0)


async def test_upload_with_metadata_and_attachments(app: FastAPI, seeded: Database) -> None:
    annex = minimal_pdf(["Phu luc: danh sach ben ca"])
    photo = b"\x89PNG\r\n\x1a\n" + bytes(200)
    async with Client(app) as client:
        await client.login("editor")
        form = await client.get("/dashboard/documents/new")
        assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
        response = await upload(
            client,
            "/dashboard/documents",
            {
                "title": "Đề án tuyên truyền pháp luật về biển",
                "issuer": "",  # empty: the file's issuer stays
                "issued_on": "2018-08-14",
                "topics": ["phap-luat", "bien-dao"],
                "summary": "Đưa pháp luật về biển đến ngư dân.",
                "source_url": "https://vanban.chinhphu.vn/1191",
                "public": "1",
            },
            [
                ("file", "qd-1191.txt", OFFICIAL_TEXT.encode()),
                ("attachments", "phụ lục.pdf", annex),
                ("attachments", "bản đồ.png", photo),
            ],
        )
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert re.fullmatch(r"/dashboard/documents/\d+\?ok=document_imported", location)
        document_id = int(location.split("/")[-1].split("?")[0])

        detail = await client.get(location)
        assert "Đã nhập văn bản vào thư viện." in detail.text
        assert "Đề án tuyên truyền pháp luật về biển" in detail.text
        assert "1191/QĐ-TTg" in detail.text and "Thủ tướng Chính phủ" in detail.text
        assert "phụ lục.pdf" in detail.text and "bản gốc đã nhập" in detail.text
        links = re.findall(r'href="(/dashboard/documents/\d+/files/\d+)"', detail.text)
        assert len(links) == 3
        got = {(await client.get(link)).content for link in links}
        assert got == {OFFICIAL_TEXT.encode(), annex, photo}

        listed = await client.get("/dashboard/documents", params={"q": "tuyen truyen bien"})
        assert f'data-document-id="{document_id}"' in listed.text

    async with seeded.sessions() as session:
        document = await session.get(Document, document_id)
        assert document is not None and document.public
        assert (document.title, document.issuer) == (
            "Đề án tuyên truyền pháp luật về biển", "Thủ tướng Chính phủ"
        )  # fmt: skip
        assert document.source_url == "https://vanban.chinhphu.vn/1191"
        assert document.issued_on is not None and document.issued_on.isoformat() == "2018-08-14"
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "document.import")
        )
        assert entry is not None and entry.via == "web" and entry.official_id is not None
        assert entry.details["attachments"] == ["qd-1191.txt", "phụ lục.pdf", "bản đồ.png"]

    # The public pages show it at once, with the annex downloadable.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kiosk"
    ) as kiosk:
        found = await kiosk.get("/library/search", params={"q": "phap luat ve bien"})
        assert f"/library/documents/{document_id}" in found.text
        page = await kiosk.get(f"/library/documents/{document_id}")
        link = re.search(r'href="(/library/files/\d+/ph[^"]+\.pdf)"', page.text)
        assert link is not None
        assert (await kiosk.get(link.group(1))).content == annex


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("hong.docx", b"PK\x03\x04 cut short", "Tệp «hong.docx»: không đọc được tệp Word"),
        ("scan.pdf", minimal_pdf([]), "Tệp «scan.pdf»: tệp PDF chỉ có ảnh quét"),
        ("cu.txt", b"QUY\xd5T \xae\xfeNH", "không ở bảng mã UTF-8"),
        ("bang.xlsx", b"PK\x03\x04", "Tệp «bang.xlsx»: chỉ nhận tệp .txt, .md, .pdf hoặc .docx."),
        ("rong.txt", b"   ", "Tệp «rong.txt»: tệp rỗng."),
    ],
)
async def test_unreadable_files_are_refused_in_vietnamese(
    app: FastAPI, seeded: Database, name: str, content: bytes, message: str
) -> None:
    async with Client(app) as client:
        await client.login("root")
        response = await upload(
            client,
            "/dashboard/documents",
            {"title": "Giữ lại tiêu đề đã gõ", "topics": ["iuu"]},
            [("file", name, content), ("attachments", "anh.png", b"\x89PNG data")],
        )
        assert response.status_code == 400
        assert message in response.text
        assert 'value="Giữ lại tiêu đề đã gõ"' in response.text  # the form keeps what was typed
        assert 'value="iuu" checked' in response.text
    assert await _counts(seeded) == (0, 0)


async def test_a_bad_attachment_or_metadata_imports_nothing(
    app: FastAPI, seeded: Database, tmp_path: Path
) -> None:
    async with Client(app) as client:
        await client.login("editor")
        good = ("file", "qd.txt", OFFICIAL_TEXT.encode())
        for fields, extra, message in (
            ({}, [("attachments", "trang.html", b"<script>")], "loại tệp này không đính kèm được"),
            ({"issued_on": "14-08"}, [], "ngày ban hành không hợp lệ"),
            ({"source_url": "javascript:alert(1)"}, [], "phải bắt đầu bằng http://"),
            ({}, [("attachments", "qd.txt", b"x")], "có hai tệp cùng tên"),
            ({"topics": ["khong-co"]}, [], "chủ đề không tồn tại"),
        ):
            response = await upload(client, "/dashboard/documents", fields, [good, *extra])
            assert response.status_code == 400, message
            assert message in response.text
        missing = await upload(client, "/dashboard/documents", {"title": "x"}, [])
        assert missing.status_code == 400 and "Hãy chọn tệp văn bản" in missing.text
    assert await _counts(seeded) == (0, 0)
    # Nothing was written to the store either, since every check runs first.
    store = tmp_path / "var" / "documents"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


async def test_new_version_keeps_annexes_and_replaces_the_current(
    app: FastAPI, seeded: Database
) -> None:
    annex = minimal_pdf(["Phu luc"])
    async with Client(app) as client:
        await client.login("editor")
        first = await upload(
            client,
            "/dashboard/documents",
            {"public": "1"},
            [("file", "qd.txt", OFFICIAL_TEXT.encode()), ("attachments", "phu-luc.pdf", annex)],
        )
        first_id = int(first.headers["location"].split("/")[-1].split("?")[0])
        page = await client.get(f"/dashboard/documents/{first_id}")
        assert 'id="version-form"' in page.text and 'value="1191/QĐ-TTg"' in page.text

        amended = docx_bytes(["THỦ TƯỚNG CHÍNH PHỦ", "Số: 1191/QĐ-TTg", "QUYẾT ĐỊNH",
                              "Sửa đổi Đề án tuyên truyền pháp luật về biển",
                              "Bổ sung nội dung chống khai thác IUU cho ngư dân."])  # fmt: skip
        second = await upload(
            client,
            f"/dashboard/documents/{first_id}/versions",
            {"number": "1191/QĐ-TTg", "public": "1"},
            [("file", "qd-sua-doi.docx", amended)],
        )
        assert second.status_code == 303, second.text
        assert second.headers["location"].endswith("?ok=document_version")
        second_id = int(second.headers["location"].split("/")[-1].split("?")[0])
        assert second_id != first_id
        detail = await client.get(f"/dashboard/documents/{second_id}")
        assert "qd-sua-doi.docx" in detail.text and "phu-luc.pdf" in detail.text
        assert f'href="/dashboard/documents/{first_id}"' in detail.text  # the older version
        assert "(đang xem)" in detail.text

        listed = await client.get("/dashboard/documents", params={"q": "1191"})
        assert f'data-document-id="{second_id}"' in listed.text
        assert f'data-document-id="{first_id}"' not in listed.text

        bad = await upload(
            client, f"/dashboard/documents/{second_id}/versions", {}, [("file", "x.pdf", b"%PDF-")]
        )
        assert bad.status_code == 400 and "Tệp «x.pdf»: không đọc được tệp PDF" in bad.text
    async with seeded.sessions() as session:
        actions: list[dict[str, Any]] = list(
            await session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "document.import")
            )
        )
    assert [(a["version"], a["replaces"]) for a in actions] == [(1, None), (2, first_id)]


async def test_internal_documents_stay_off_the_public_pages(app: FastAPI) -> None:
    async with Client(app) as client:
        await client.login("editor")
        response = await upload(
            client, "/dashboard/documents", {}, [("file", "qd.txt", OFFICIAL_TEXT.encode())]
        )  # no "public" box ticked
        document_id = int(response.headers["location"].split("/")[-1].split("?")[0])
        assert 'id="internal"' in (await client.get(f"/dashboard/documents/{document_id}")).text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kiosk"
    ) as kiosk:
        assert (await kiosk.get(f"/library/documents/{document_id}")).status_code == 404
        found = await kiosk.get("/library/search", params={"q": "1191"})
        assert f"/library/documents/{document_id}" not in found.text


async def test_roles_csrf_and_login(app: FastAPI, seeded: Database) -> None:
    source = [("file", "qd.txt", OFFICIAL_TEXT.encode())]
    async with Client(app) as anonymous:
        page = await anonymous.get("/dashboard/documents")
        assert page.status_code == 303 and "/dashboard/login" in page.headers["location"]
    for username in ("xa-cathai", "approver"):
        async with Client(app) as client:
            await client.login(username)
            listed = await client.get("/dashboard/documents")
            assert listed.status_code == 200 and 'id="document-new"' not in listed.text
            form = await client.get("/dashboard/documents/new")
            assert form.status_code == 403
            assert "Chỉ quản trị viên và biên tập viên tỉnh" in form.text
            refused = await upload(client, "/dashboard/documents", {}, source)
            assert refused.status_code == 403
    async with Client(app) as client:
        await client.login("editor")
        forged = await upload(client, "/dashboard/documents", {}, source, csrf=False)
        assert forged.status_code == 403
        assert "Phiên làm việc không hợp lệ" in forged.text
    assert await _counts(seeded) == (0, 0)
