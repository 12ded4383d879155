"""Telegram file ids of uploaded audio kept in the database: one upload per bot, across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from audio import studio, uploads
from audio.store import LocalStore
from bot.telegram import TelegramChannel, build_application
from broadcasts.channels import Media, MediaKind, Outbound
from broadcasts.subscribers import ensure_bot
from db.models import AudioAsset, AudioUpload, Platform
from haidang.media import StoredFileIds
from tests.broadcasts.engine import NOW, approved_bulletin
from tests.conftest import Database
from tests.fakes.telegram_api import FakeTelegramAPI

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CHATS = ("7001", "7002", "7003")


@asynccontextmanager
async def channel(
    api: FakeTelegramAPI, database: Database, bot_id: int
) -> AsyncIterator[TelegramChannel]:
    """A fresh channel as a (re)started process builds it: new bot, empty memory."""
    application = build_application(api.token, api.base_url)
    async with application.bot:
        yield TelegramChannel(application.bot, file_ids=StoredFileIds(database.sessions, bot_id))


async def rendered_voice(database: Database, tmp_path: Path) -> tuple[Media, AudioAsset]:
    store = LocalStore(tmp_path / "audio")
    bulletin_id = await approved_bulletin(database, body="Biển động mạnh.")
    assets = await studio.render_bulletin(
        database.sessions, bulletin_id, store=store, engine_name="espeak", tz=TZ, now=NOW,
        work_dir=tmp_path / "work",
    )  # fmt: skip
    ogg = next(asset for asset in assets if asset.format == "ogg")
    media = Media(MediaKind.voice, ogg.store_key, store.path_for(ogg.store_key), title="Tin")
    return media, ogg


async def stored_ids(database: Database) -> list[tuple[int, int, str]]:
    async with database.sessions() as session:
        rows = await session.scalars(select(AudioUpload))
        return [(row.asset_id, row.bot_id, row.file_id) for row in rows.all()]


async def test_a_restarted_channel_sends_by_the_stored_file_id(
    seeded: Database, tmp_path: Path
) -> None:
    media, ogg = await rendered_voice(seeded, tmp_path)
    async with seeded.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.telegram)).id

    async with FakeTelegramAPI() as api:
        async with channel(api, seeded, bot_id) as first:
            # Three first sends at once: one uploads, the others wait for its file id.
            await asyncio.gather(*(first.send(chat, Outbound(media=media)) for chat in CHATS))
        uploaded = [r.file for r in api.sent if r.file is not None]
        assert [f.source for f in uploaded].count("upload") == 1
        file_id = uploaded[0].file_id
        assert await stored_ids(seeded) == [(ogg.id, bot_id, file_id)]

        # "Restart": a new bot object and channel, nothing in memory.
        async with channel(api, seeded, bot_id) as second:
            await second.send("7004", Outbound(media=media))
        last = api.sent_to("7004")[-1].file
        assert last is not None and (last.source, last.file_id) == ("file_id", file_id)
        sources = [r.file.source for r in api.sent if r.file is not None]
        assert sources == ["upload", "file_id", "file_id", "file_id"]

    # Another bot behind the same row (the token was changed): Telegram refuses the
    # stored id, the file is uploaded again and the new id replaces the old one.
    async with FakeTelegramAPI() as other:
        async with channel(other, seeded, bot_id) as third:
            await third.send("7005", Outbound(media=media))
            await third.send("7006", Outbound(media=media))
        files = [r.file for r in other.sent if r.file is not None]
        assert [f.source for f in files] == ["upload", "file_id"]
        assert files[0].file_id != file_id
        assert await stored_ids(seeded) == [(ogg.id, bot_id, files[0].file_id)]


async def test_only_audio_assets_are_kept(seeded: Database, tmp_path: Path) -> None:
    media, ogg = await rendered_voice(seeded, tmp_path)
    async with seeded.sessions.begin() as session:
        bot_id = (await ensure_bot(session, Platform.telegram)).id
        other_bot = (await ensure_bot(session, Platform.zalo)).id
        assert await uploads.record_upload(session, bot_id, media.key, "id-1")
        assert not await uploads.record_upload(session, bot_id, "photos/ab/abc.png", "id-2")
    async with seeded.sessions.begin() as session:
        assert await uploads.uploaded_file_id(session, bot_id, media.key) == "id-1"
        assert await uploads.uploaded_file_id(session, other_bot, media.key) is None
        assert await uploads.record_upload(session, bot_id, media.key, "id-3")  # replaced
    assert await stored_ids(seeded) == [(ogg.id, bot_id, "id-3")]
    async with seeded.sessions.begin() as session:
        await uploads.forget_upload(session, bot_id, media.key)
    assert await stored_ids(seeded) == []
