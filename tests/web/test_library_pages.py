"""Public library pages over HTTP: diacritic-blind search with highlights, documents,
attachment downloads, the language switch, and internal documents kept out."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from audio.store import LocalStore
from broadcasts import documents
from broadcasts.parts import PartStatus
from tests.broadcasts.test_documents import OFFICIAL_TEXT, minimal_pdf
from tests.conftest import Database
from web.app import create_app
from web.library import content_disposition, highlighted, make_router

NOW = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)

ENGLISH = """---
title: Law of the Sea of Viet Nam (unofficial translation)
number: 18/2012/QH13
date: 2012-06-21
language: en
topics: bien-dao
---
This Law provides for the baseline, the internal waters, the territorial sea and the
exclusive economic zone of Viet Nam, and for the rights of fishing vessels.
"""

INTERNAL = """---
title: Hướng dẫn nội bộ tuần tra đồn biên phòng
number: 88/HD-BP
topics: bien-dao
---
Lịch tuần tra của đồn biên phòng quanh đảo, chỉ dành cho cán bộ.
"""

SCRIPTED = """---
title: Thông báo <script>alert(1)</script> về cảng cá
topics: dia-phuong
---
Cảng cá <b>Cát Bà</b> tạm đóng để sửa cầu cảng.
"""


@dataclass
class Library:
    database: Database
    store: LocalStore
    ids: dict[str, int]
    annex: bytes
    annex_id: int
    internal_annex_id: int

    def app(self) -> FastAPI:
        return create_app(
            engine=self.database.engine,
            parts=lambda: {"web": PartStatus(active=True, detail="test")},
            routers=[make_router(self.database.sessions, self.store)],
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app()), base_url="http://kiosk"
        )


@pytest.fixture
async def site(seeded: Database, tmp_path: Path) -> Library:
    store = LocalStore(tmp_path / "documents")
    annex = minimal_pdf(["Phu luc: danh sach ben ca"])
    ids: dict[str, int] = {}
    async with seeded.sessions.begin() as session:
        official = await documents.add(
            session,
            documents.load_bytes(OFFICIAL_TEXT.encode(), "qd-1191.txt"),
            now=NOW,
            topics=["phap-luat", "bien-dao"],
            attachments=[documents.attachment_file("phụ lục 1.pdf", annex)],
            store=store,
        )
        ids["official"] = official.document.id
        annex_id = next(row.id for row in official.attachments if not row.is_source)
        for key, text, name in (("english", ENGLISH, "law-of-the-sea.md"),):
            imported = await documents.add(
                session, documents.load_bytes(text.encode(), name), now=NOW, store=store
            )
            ids[key] = imported.document.id
        internal = await documents.add(
            session,
            documents.load_bytes(INTERNAL.encode(), "noi-bo.md"),
            now=NOW,
            store=store,
            public=False,
        )
        ids["internal"] = internal.document.id
        scripted = await documents.add(
            session, documents.load_bytes(SCRIPTED.encode(), "cang.md"), now=NOW
        )
        ids["scripted"] = scripted.document.id
    return Library(seeded, store, ids, annex, annex_id, internal.attachments[0].id)


async def test_search_without_diacritics_highlights_the_match(site: Library) -> None:
    async with site.client() as client:
        page = await client.get("/library/search", params={"q": "tuyen truyen phap luat"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert f'href="/library/documents/{site.ids["official"]}"' in page.text
        assert "Quyết định phê duyệt Đề án tuyên truyền pháp luật" in page.text
        # The match is marked where the words stand with their diacritics.
        assert "<mark>tuyên truyền pháp luật</mark>" in page.text
        assert 'lang="vi"' in page.text and "Kết quả cho «tuyen truyen phap luat»" in page.text

        by_number = await client.get("/library/search", params={"q": "1191"})
        assert f'/library/documents/{site.ids["official"]}"' in by_number.text

        nothing = await client.get("/library/search", params={"q": "xyzzy"})
        assert "Không tìm thấy văn bản nào" in nothing.text
        too_long = await client.get("/library/search", params={"q": "a" * 300})
        assert "Từ khóa quá dài" in too_long.text

        in_topic = await client.get("/library/search", params={"q": "ben ca", "topic": "thoi-tiet"})
        assert "Không tìm thấy văn bản nào" in in_topic.text
        in_right_topic = await client.get(
            "/library/search", params={"q": "ben ca", "topic": "phap-luat"}
        )
        assert "<mark>bến cá</mark>" in in_right_topic.text


async def test_document_page_and_attachment_download(site: Library) -> None:
    async with site.client() as client:
        page = await client.get(f"/library/documents/{site.ids['official']}")
        assert page.status_code == 200
        assert "1191/QĐ-TTg" in page.text and "Thủ tướng Chính phủ" in page.text
        assert "14/08/2018" in page.text
        assert "Đề án đưa Luật Biển Việt Nam và Luật Thủy sản đến ngư dân" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        links = re.findall(r'href="(/library/files/[^"]+)"', page.text)
        assert len(links) == 2  # the original text file and the annex
        assert links[0].endswith("/qd-1191.txt")
        annex_link = f"/library/files/{site.annex_id}/ph%E1%BB%A5%20l%E1%BB%A5c%201.pdf"
        assert annex_link in links

        download = await client.get(annex_link)
        assert download.status_code == 200
        assert download.content == site.annex
        assert download.headers["content-type"] == "application/pdf"
        assert download.headers["etag"] == f'"{hashlib.sha256(site.annex).hexdigest()}"'
        assert (
            "filename*=UTF-8''ph%E1%BB%A5%20l%E1%BB%A5c%201.pdf"
            in (download.headers["content-disposition"])
        )
        original = await client.get(links[0])
        assert original.content == OFFICIAL_TEXT.encode()
        assert original.headers["content-type"] == "text/plain; charset=utf-8"

        # A wrong name, an unknown id, an internal document's file: not found.
        for path in (
            f"/library/files/{site.annex_id}/khac.pdf",
            "/library/files/99999/x.pdf",
            f"/library/files/{site.internal_annex_id}/noi-bo.md",
            "/library/documents/99999",
        ):
            missing = await client.get(path)
            assert missing.status_code == 404, path
            assert "Không tìm thấy văn bản này." in missing.text


async def test_the_language_switch_changes_interface_and_documents(site: Library) -> None:
    async with site.client() as client:
        home = await client.get("/library")
        assert home.status_code == 200
        assert '<html lang="vi">' in home.text and "Thư viện văn bản" in home.text
        assert "Chủ quyền biển đảo" in home.text
        assert f'/library/documents/{site.ids["official"]}"' in home.text
        assert f'/library/documents/{site.ids["english"]}"' not in home.text
        assert 'href="/library?lang=en"' in home.text  # the switch, on the same page

        english = await client.get("/library", params={"lang": "en"})
        assert '<html lang="en">' in english.text and "Document library" in english.text
        assert "Sea and island sovereignty" in english.text
        assert "Thư viện văn bản" not in english.text
        assert f'/library/documents/{site.ids["english"]}?lang=en"' in english.text
        assert f"/library/documents/{site.ids['official']}" not in english.text

        found = await client.get("/library/search", params={"q": "fishing vessels", "lang": "en"})
        assert "Results for “fishing vessels”" in found.text
        assert "<mark>fishing vessels</mark>" in found.text
        vietnamese_only = await client.get("/library/search", params={"q": "fishing vessels"})
        assert "Không tìm thấy văn bản nào" in vietnamese_only.text

        switch = await client.get("/library/search", params={"q": "bien", "lang": "en"})
        assert 'href="/library/search?q=bien"' in switch.text  # back to Vietnamese, same query

        topic = await client.get("/library/topics/bien-dao", params={"lang": "en"})
        assert "Sea and island sovereignty" in topic.text and "1 documents" in topic.text


async def test_internal_documents_and_markup_stay_out(site: Library) -> None:
    async with site.client() as client:
        for query in ("tuan tra don bien phong", "88/HD-BP"):
            page = await client.get("/library/search", params={"q": query})
            assert "Hướng dẫn nội bộ" not in page.text, query
        assert (await client.get(f"/library/documents/{site.ids['internal']}")).status_code == 404
        topic = await client.get("/library/topics/bien-dao")
        assert "Hướng dẫn nội bộ" not in topic.text and "1 văn bản" in topic.text
        assert (await client.get("/library/topics/khong-co")).status_code == 404

        page = await client.get("/library/search", params={"q": "cang ca cat ba"})
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "&lt;b&gt;<mark>Cát Bà</mark>&lt;/b&gt;" in page.text


async def test_an_internal_newer_version_is_not_named(site: Library) -> None:
    async with site.database.sessions.begin() as session:
        newer = await documents.add(  # version 2 of 1191/QĐ-TTg, for officials only
            session,
            documents.load_bytes(
                (OFFICIAL_TEXT + "\n\nBản sửa đổi nội bộ.\n").encode(), "qd-1191-noi-bo.txt"
            ),
            now=NOW,
            store=site.store,
            public=False,
        )
    assert newer.version == 2 and not newer.unchanged
    async with site.client() as client:
        page = await client.get(f"/library/documents/{site.ids['official']}")
    assert page.status_code == 200
    assert f"/library/documents/{newer.document.id}" not in page.text


async def test_topic_pages_are_paged(site: Library) -> None:
    async with site.database.sessions.begin() as session:
        for n in range(25):
            text = (
                f"---\ntitle: Thông báo số {n}\nnumber: {n + 1}/TB-UBND\n"
                f"topics: dia-phuong\n---\nNội dung {n}."
            )
            await documents.add(session, documents.load_bytes(text.encode(), f"tb{n}.md"), now=NOW)
    async with site.client() as client:
        first = await client.get("/library/topics/dia-phuong")
        assert "26 văn bản" in first.text and "Trang 1/2" in first.text
        assert first.text.count('class="title"') == 20
        assert 'href="/library/topics/dia-phuong?page=2"' in first.text
        second = await client.get("/library/topics/dia-phuong", params={"page": "2"})
        assert second.text.count('class="title"') == 6 and "Trang 2/2" in second.text


def test_helpers() -> None:
    assert str(highlighted("a «<b>» c")) == "a <mark>&lt;b&gt;</mark> c"
    assert content_disposition("ảnh bản đồ.png", "image/png") == (
        'inline; filename="anh_ban_do.png"; '
        "filename*=UTF-8''%E1%BA%A3nh%20b%E1%BA%A3n%20%C4%91%E1%BB%93.png"
    )
    assert content_disposition("bảng.xlsx", "application/vnd.ms-excel").startswith("attachment;")
