"""A worker process for the two-worker test: claims deliveries until none are left."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

from broadcasts import queue
from db.engine import make_engine, make_sessionmaker
from db.models import DeliveryState


async def main(
    url: str, bot_id: int, _out: str, start_at: float, search_path: str | None
) -> list[int]:
    # A PostgreSQL test runs in its own schema; asyncpg takes it as a server setting.
    options = {"connect_args": {"server_settings": {"search_path": search_path}}}
    engine = make_engine(url, **(options if search_path else {}))
    sessions = make_sessionmaker(engine)
    claimed: list[int] = []
    idle = 0
    await asyncio.sleep(max(0.0, start_at - time.time()))  # both workers start together
    while idle < 5:
        now = dt.datetime.now(dt.UTC)
        async with sessions.begin() as session:
            batch = await queue.claim(
                session, bot_id=bot_id, now=now, limit=25, lease=dt.timedelta(seconds=60)
            )
        if not batch:
            idle += 1
            await asyncio.sleep(0.05)
            continue
        idle = 0
        claimed += [d.id for d in batch]
        outcomes = [
            queue.Outcome(id=d.id, state=DeliveryState.sent, parts_sent=1, attempts=0, sent_at=now)
            for d in batch
        ]
        async with sessions.begin() as session:
            await queue.record(session, outcomes)
    await engine.dispose()
    return claimed


if __name__ == "__main__":
    url, bot, out, start, *path = sys.argv[1:]
    ids = asyncio.run(main(url, int(bot), out, float(start), path[0] if path else None))
    Path(out).write_text("\n".join(str(i) for i in ids), encoding="utf-8")
