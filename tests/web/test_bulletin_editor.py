"""The bulletin editor: editing drafts and rejected bulletins, translations, the photo upload."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select

from audio.store import make_store
from broadcasts import officials
from db.models import (
    AssetKind,
    AudioAsset,
    AuditEntry,
    Bulletin,
    BulletinState,
    BulletinTranslation,
    OfficialRole,
    Priority,
)
from haidang.media import store_photo
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_officials, settings
from web.dashboard import make_router, texts

BODY = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ."


def _app(database: Database, data_dir: Path) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(database.sessions, settings(data_dir=data_dir)))
    return app


def _png(colour: tuple[int, int, int] = (11, 93, 148)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="PNG")
    return out.getvalue()


def _form(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Thông báo gió mạnh", "body": BODY, "topic": "thoi-tiet",
        "priority": "routine", "areas": "11914", "action": "draft",
    }  # fmt: skip
    base.update(fields)
    return base


async def _post(
    client: Client, path: str, data: dict[str, Any], files: dict[str, Any] | None = None
) -> httpx.Response:
    """A multipart POST as the editor's form sends it (the CSRF token included)."""
    form = {"csrf_token": client.csrf, **data}
    response = await client.http.post(path, data=form, files=files or {"photo": ("", b"")})
    if response.headers.get("content-type", "").startswith("text/html"):
        client._remember(response)
    return response


def _id_of(response: httpx.Response) -> int:
    found = re.search(r"/bulletins/(\d+)", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


async def _count(database: Database, model: Any) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _actions(database: Database, bulletin_id: int) -> list[tuple[str, dict[str, Any]]]:
    async with database.sessions() as session:
        entries = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == "bulletin", AuditEntry.object_id == str(bulletin_id))
            .order_by(AuditEntry.id)
        )
        return [(entry.action, entry.details or {}) for entry in entries.all()]


async def test_draft_with_translation_and_photo_then_edited(
    seeded: Database, tmp_path: Path
) -> None:
    await make_officials(seeded)
    app = _app(seeded, tmp_path)
    picture = _png()
    async with Client(app) as editor:
        await editor.login("editor")
        page = await editor.get("/dashboard/bulletins/new")
        assert 'enctype="multipart/form-data"' in page.text
        assert 'data-limit="4096"' in page.text and 'data-limit="2000"' in page.text
        assert "Tiếng Khmer (ភាសាខ្មែរ)" in page.text  # the language choices
        created = await _post(
            editor, "/dashboard/bulletins",
            _form(tr_language=["en", ""], tr_title=["Strong wind warning", ""],
                  tr_body=["Strong wind, level 6. Boats return to shelter.", ""]),
            files={"photo": ("gio.png", picture, "image/png")},
        )  # fmt: skip
        assert created.status_code == 303, created.text
        bulletin_id = _id_of(created)

        store = make_store("local", root=tmp_path / "audio")
        async with seeded.sessions() as session:
            bulletin = await session.get_one(Bulletin, bulletin_id)
            translations = (
                await session.scalars(
                    select(BulletinTranslation).where(
                        BulletinTranslation.bulletin_id == bulletin_id
                    )
                )
            ).all()
        # Stored exactly as the CLI's `bulletin create --photo` stores it.
        (tmp_path / "same.png").write_bytes(picture)
        assert bulletin.photo_path == store_photo(store, tmp_path / "same.png")
        assert [(t.language, t.title) for t in translations] == [("en", "Strong wind warning")]
        photo = await editor.get(f"/dashboard/bulletins/{bulletin_id}/photo")
        assert photo.status_code == 200
        assert photo.headers["content-type"] == "image/png"
        assert photo.content == picture

        detail = await editor.get(f"/dashboard/bulletins/{bulletin_id}")
        assert f'href="/dashboard/bulletins/{bulletin_id}/edit" id="edit-bulletin"' in detail.text
        assert f'src="/dashboard/bulletins/{bulletin_id}/photo"' in detail.text  # the preview
        form = await editor.get(f"/dashboard/bulletins/{bulletin_id}/edit")
        assert form.status_code == 200
        assert "Sửa bản tin" in form.text
        assert 'value="Strong wind warning"' in form.text
        assert f'value="{bulletin.photo_path}"' in form.text
        assert f'src="/dashboard/bulletins/{bulletin_id}/photo"' in form.text

        # A rendered voice of the old text must not go out with the new one.
        async with seeded.sessions.begin() as session:
            session.add(
                AudioAsset(
                    content_hash="a" * 64, kind=AssetKind.bulletin, format="ogg",
                    bulletin_id=bulletin_id, engine="espeak", store_key="bulletins/aa/x.ogg",
                    sha256="b" * 64, size_bytes=10, duration_seconds=1.0,
                )
            )  # fmt: skip
        edited = await _post(
            editor, f"/dashboard/bulletins/{bulletin_id}/edit",
            _form(title="Cảnh báo gió mạnh (cập nhật)", priority="urgent",
                  areas=["11914", "p31"], photo_key=bulletin.photo_path, remove_photo="1",
                  tr_language=["km"], tr_title=["ការព្រមាន"], tr_body=["ខ្យល់ខ្លាំង"],
                  action="submit"),
        )  # fmt: skip
        assert edited.status_code == 303, edited.text
        assert edited.headers["location"].endswith("ok=submitted")

    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
        languages = (
            await session.scalars(
                select(BulletinTranslation.language).where(
                    BulletinTranslation.bulletin_id == bulletin_id
                )
            )
        ).all()
        voices = await session.scalar(
            select(func.count()).where(AudioAsset.bulletin_id == bulletin_id)
        )
    assert bulletin.title == "Cảnh báo gió mạnh (cập nhật)"
    assert bulletin.priority is Priority.urgent
    assert bulletin.state is BulletinState.pending_approval
    assert bulletin.photo_path is None
    assert list(languages) == ["km"]
    assert voices == 0
    actions = await _actions(seeded, bulletin_id)
    assert [a for a, _ in actions] == ["bulletin.create", "bulletin.edit"]
    assert set(actions[1][1]["changed"]) == {
        "title", "priority", "photo_path", "areas", "translations",
    }  # fmt: skip


async def test_rejected_bulletin_goes_back_for_changes(seeded: Database, tmp_path: Path) -> None:
    await make_officials(seeded)
    app = _app(seeded, tmp_path)
    async with Client(app) as editor, Client(app) as approver:
        await editor.login("editor")
        await approver.login("approver")
        created = await _post(editor, "/dashboard/bulletins", _form(action="submit"))
        bulletin_id = _id_of(created)
        # Submitted: nobody edits it while it waits for approval.
        waiting = await editor.get(f"/dashboard/bulletins/{bulletin_id}/edit")
        assert waiting.status_code == 400
        assert texts.NOT_EDITABLE in waiting.text

        await approver.get(f"/dashboard/bulletins/{bulletin_id}")
        rejected = await approver.post(
            f"/dashboard/bulletins/{bulletin_id}/reject", {"comment": "Ghi rõ giờ về bến."}
        )
        assert rejected.status_code == 303
        # The approver sees the rejected bulletin but it is not theirs to rewrite.
        theirs = await approver.get(f"/dashboard/bulletins/{bulletin_id}/edit")
        assert theirs.status_code == 403
        assert texts.NOT_YOUR_DRAFT in theirs.text

        form = await editor.get(f"/dashboard/bulletins/{bulletin_id}/edit")
        assert "Góp ý khi trả lại: Ghi rõ giờ về bến." in form.text
        resubmitted = await _post(
            editor, f"/dashboard/bulletins/{bulletin_id}/edit",
            _form(body=BODY + " Tàu về bến trước 17 giờ 00.", action="submit"),
        )  # fmt: skip
        assert resubmitted.status_code == 303
        await approver.get(f"/dashboard/bulletins/{bulletin_id}")
        approved = await approver.post(f"/dashboard/bulletins/{bulletin_id}/approve")
        assert approved.status_code == 303
    assert [a for a, _ in await _actions(seeded, bulletin_id)] == [
        "bulletin.create", "bulletin.reject", "bulletin.edit", "bulletin.approve",
    ]  # fmt: skip


async def test_editor_refuses_bad_input_in_vietnamese(seeded: Database, tmp_path: Path) -> None:
    await make_officials(seeded)
    app = _app(seeded, tmp_path)
    async with Client(app) as editor:
        await editor.login("editor")
        await editor.get("/dashboard/bulletins/new")
        cases: list[tuple[dict[str, Any], dict[str, Any] | None, str]] = [
            ({"tr_title": ["Title"], "tr_body": ["Body"], "tr_language": [""]}, None,
             texts.TRANSLATION_INCOMPLETE),
            ({"tr_title": ["Title"], "tr_body": [""], "tr_language": ["en"]}, None,
             texts.TRANSLATION_INCOMPLETE),
            ({"tr_title": ["A", "B"], "tr_body": ["a", "b"], "tr_language": ["en", "en"]}, None,
             texts.TRANSLATION_DUPLICATE),
            ({"tr_title": ["A"], "tr_body": ["a"], "tr_language": ["fr"]}, None,
             texts.TRANSLATION_LANGUAGE_BAD),
            ({}, {"photo": ("x.png", b"GIF89a not a png", "image/png")}, texts.PHOTO_NOT_IMAGE),
            ({"photo_key": "bulletins/aa/" + "a" * 64 + ".mp3"}, None, texts.BAD_CHOICE),
            ({"title": "  "}, None, "Bản tin cần có tiêu đề và nội dung."),
            ({"priority": "very"}, None, texts.BAD_CHOICE),
        ]  # fmt: skip
        for fields, files, message in cases:
            answer = await _post(editor, "/dashboard/bulletins", _form(**fields), files=files)
            assert answer.status_code == 400, fields
            assert message in answer.text, (fields, message)
        big = b"\x89PNG\r\n\x1a\n" + b"\0" * 10_000_001
        too_big = await _post(
            editor, "/dashboard/bulletins", _form(), files={"photo": ("big.png", big, "image/png")}
        )
        assert too_big.status_code == 400
        assert texts.PHOTO_TOO_BIG.format(mb=10) in too_big.text

        # A photo uploaded with an otherwise wrong form is kept for the next try.
        picture = _png((200, 30, 30))
        kept = await _post(
            editor, "/dashboard/bulletins", _form(title=""),
            files={"photo": ("p.png", picture, "image/png")},
        )  # fmt: skip
        assert kept.status_code == 400
        key = re.search(r'name="photo_key" id="photo-key" value="([^"]+)"', kept.text)
        assert key and key.group(1).startswith("photos/")
        assert "Đã tải ảnh lên." in kept.text
        saved = await _post(editor, "/dashboard/bulletins", _form(photo_key=key.group(1)))
        assert saved.status_code == 303
    assert await _count(seeded, Bulletin) == 1
    async with seeded.sessions() as session:
        assert await session.scalar(select(Bulletin.photo_path)) == key.group(1)


async def test_edit_is_scoped_and_needs_csrf(seeded: Database, tmp_path: Path) -> None:
    await make_officials(seeded)
    app = _app(seeded, tmp_path)
    async with Client(app) as commune, Client(app) as other:
        await commune.login("xa-cathai")
        await other.login("xa-khac")
        created = await _post(commune, "/dashboard/bulletins", _form())
        bulletin_id = _id_of(created)
        # A crafted form moving the draft to another commune: 403, nothing changes.
        crafted = await _post(
            commune, f"/dashboard/bulletins/{bulletin_id}/edit",
            _form(title="Đổi khu vực", areas="11311"),
        )  # fmt: skip
        assert crafted.status_code == 403
        assert texts.FORBIDDEN_SCOPE in crafted.text
        # Someone else's draft is invisible, so it cannot be edited either.
        hidden = await _post(other, f"/dashboard/bulletins/{bulletin_id}/edit", _form())
        assert hidden.status_code == 404
        # Without the CSRF token the edit is refused.
        forged = await commune.http.post(
            f"/dashboard/bulletins/{bulletin_id}/edit", data=_form(title="Giả mạo")
        )
        assert forged.status_code == 403
        assert texts.CSRF_FAILED in forged.text
    async with seeded.sessions() as session:
        bulletin = await session.get_one(Bulletin, bulletin_id)
    assert bulletin.title == "Thông báo gió mạnh"
    assert [a for a, _ in await _actions(seeded, bulletin_id)] == ["bulletin.create"]


async def test_a_radio_operator_cannot_write_nor_upload(seeded: Database, tmp_path: Path) -> None:
    await make_officials(seeded)
    async with seeded.sessions.begin() as session:
        await officials.create(
            session, username="loa-cathai", role=OfficialRole.radio_operator,
            password="radio-pass-123", area_code="11914",
        )  # fmt: skip
    async with Client(_app(seeded, tmp_path)) as operator:
        await operator.login("loa-cathai", "radio-pass-123")
        assert (await operator.get("/dashboard/bulletins/new")).status_code == 403
        refused = await _post(
            operator, "/dashboard/bulletins", _form(),
            files={"photo": ("p.png", _png(), "image/png")},
        )  # fmt: skip
        assert refused.status_code == 403
    assert await _count(seeded, Bulletin) == 0
    assert not (tmp_path / "audio" / "photos").exists()  # nothing stored for nothing


async def test_editor_refuses_a_photo_bomb_and_a_disguised_script(
    seeded: Database, tmp_path: Path
) -> None:
    from tests.test_photos import png_bomb

    await make_officials(seeded)
    app = _app(seeded, tmp_path)
    bomb = png_bomb(20_000, 20_000)  # a real PNG of 400 MP, some 50 KB
    script = b"\xff\xd8\xff\xe0<script>alert(1)</script>"
    async with Client(app) as editor:
        await editor.login("editor")
        await editor.get("/dashboard/bulletins/new")
        refused = await _post(
            editor, "/dashboard/bulletins", _form(),
            files={"photo": ("bom.png", bomb, "image/png")},
        )  # fmt: skip
        assert refused.status_code == 400
        assert texts.PHOTO_DIMENSIONS_BAD.format(mp=52, ratio=20) in refused.text
        assert "Kích thước ảnh không phù hợp (tối đa 52 megapixel" in refused.text
        disguised = await _post(
            editor, "/dashboard/bulletins", _form(),
            files={"photo": ("anh.jpg", script, "image/jpeg")},
        )  # fmt: skip
        assert disguised.status_code == 400
        assert texts.PHOTO_NOT_IMAGE in disguised.text
        assert 'name="photo_key" id="photo-key" value=""' in disguised.text  # none kept
    assert await _count(seeded, Bulletin) == 0
    assert not (tmp_path / "audio" / "photos").exists()  # nothing stored
