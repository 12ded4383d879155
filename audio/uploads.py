"""Platform file ids of uploaded audio (AudioUpload rows), so each bot uploads a file once."""

from __future__ import annotations

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import insert_for
from db.models import AudioAsset, AudioUpload

__all__ = ["forget_upload", "record_upload", "uploaded_file_id"]


def _assets_at(store_key: str) -> Select[int]:
    return select(AudioAsset.id).where(AudioAsset.store_key == store_key)


async def uploaded_file_id(session: AsyncSession, bot_id: int, store_key: str) -> str | None:
    """The file id ``bot_id`` got when it uploaded the asset stored at ``store_key``."""
    return await session.scalar(
        select(AudioUpload.file_id)
        .where(AudioUpload.bot_id == bot_id, AudioUpload.asset_id.in_(_assets_at(store_key)))
        .limit(1)
    )


async def record_upload(session: AsyncSession, bot_id: int, store_key: str, file_id: str) -> bool:
    """Keep ``file_id`` for the asset at ``store_key`` and ``bot_id`` (replacing an older one).

    False when no asset is stored there (a photo, say): nothing is kept then.
    """
    asset_ids = (await session.scalars(_assets_at(store_key))).all()
    if not asset_ids:
        return False
    statement = insert_for(session)(AudioUpload).values(
        [{"asset_id": asset_id, "bot_id": bot_id, "file_id": file_id} for asset_id in asset_ids]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["asset_id", "bot_id"], set_={"file_id": statement.excluded.file_id}
        )
    )
    return True


async def forget_upload(session: AsyncSession, bot_id: int, store_key: str) -> None:
    """Drop the bot's file id for the asset at ``store_key`` (the platform refused it)."""
    await session.execute(
        delete(AudioUpload).where(
            AudioUpload.bot_id == bot_id, AudioUpload.asset_id.in_(_assets_at(store_key))
        )
    )
