"""Dashboard page times: 100,000 subscribers, 1,000 bulletins, one 100,000-delivery run.

Target: p95 < 150 ms for the main pages (list, detail, progress, subscribers, inbox), timed
with httpx against the ASGI app in this process (no network; the server's own work only).
Run: python -m bench.dashboard [--backend sqlite|postgresql|both] [--subscribers N]
     [--bulletins N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert, select, update

from bench.common import (
    NOW,
    add_audience,
    approved_bulletin,
    command_line,
    new_run,
    pg_database,
    prepared_database,
    sqlite_url,
    telegram_bot_id,
    topic_ids,
)
from broadcasts import officials, runs
from db.engine import make_engine, make_sessionmaker
from db.models import (
    Area,
    AreaKind,
    BroadcastRun,
    Bulletin,
    BulletinArea,
    BulletinState,
    Delivery,
    DeliveryState,
    InboxKind,
    InboxMessage,
    Official,
    OfficialRole,
    Priority,
)
from haidang.settings import Settings
from web.dashboard import make_router

TARGET_P95_MS = 150.0
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _seed(url: str, subscribers: int, bulletin_count: int) -> dict[str, int]:
    engine, sessions = await prepared_database(url)
    started = time.perf_counter()
    async with sessions.begin() as session:
        bot_id = await telegram_bot_id(session)
        province = await session.scalar(select(Area.id).where(Area.code == "p31"))
        communes = list(
            (
                await session.scalars(
                    select(Area.id)
                    .where(Area.province_id == province, Area.kind == AreaKind.commune)
                    .order_by(Area.id)
                )
            ).all()
        )
        await add_audience(
            session, count=subscribers, bot_id=bot_id, area_ids=communes,
            topic_ids=await topic_ids(session),
        )  # fmt: skip
        await officials.create(
            session, username="bench-admin", role=OfficialRole.admin, password="z" * 12
        )
    big = await approved_bulletin(sessions, areas=("p31",), urgent=True)
    preview_only = await approved_bulletin(sessions, areas=("p31",))
    run_id = await new_run(sessions, big)
    async with sessions.begin() as session:
        run = await session.get_one(BroadcastRun, run_id)
        await runs.fan_out(session, run, NOW)
        # 70 % sent over an hour, 5 % failed, the rest still pending.
        ids = (await session.scalars(select(Delivery.id).where(Delivery.run_id == run_id))).all()
        sent = [
            {"i": d, "t": NOW + dt.timedelta(seconds=(n * 3600) // len(ids))}
            for n, d in enumerate(ids[: len(ids) * 7 // 10])
        ]
        for start in range(0, len(sent), 1_000):
            chunk = sent[start : start + 1_000]
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([row["i"] for row in chunk]))
                .values(state=DeliveryState.sent, sent_at=chunk[0]["t"])
            )
        failed = ids[len(ids) * 7 // 10 : len(ids) * 75 // 100]
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(failed))
            .values(state=DeliveryState.failed, reason="chat_not_found")
        )
        editor_id = await session.scalar(
            select(Official.id).where(Official.username == "bench-editor")
        )
        states = list(BulletinState)
        rows: list[dict[str, Any]] = [
            {
                "title": f"Bản tin thử số {n}",
                "body": "Nội dung tuyên truyền pháp luật về khai thác thủy sản. " * 4,
                "priority": Priority.urgent if n % 10 == 0 else Priority.routine,
                "state": states[n % len(states)],
                "author_id": editor_id,
                "audience_roles": [],
                "audience_platforms": [],
                "created_at": NOW - dt.timedelta(hours=n),
                "updated_at": NOW - dt.timedelta(hours=n),
            }
            for n in range(bulletin_count)
        ]
        await session.execute(insert(Bulletin), rows)
        new_ids = (
            await session.scalars(
                select(Bulletin.id).where(Bulletin.id.not_in([big, preview_only]))
            )
        ).all()
        await session.execute(
            insert(BulletinArea),
            [{"bulletin_id": b, "area_id": communes[b % len(communes)]} for b in new_ids],
        )
        await session.execute(
            insert(InboxMessage),
            [
                {"area_id": communes[n % len(communes)], "kind": InboxKind.text,
                 "text": f"Tin nhắn số {n} của bà con", "urgent": n % 17 == 0,
                 "created_at": NOW - dt.timedelta(minutes=n)}
                for n in range(5000)
            ],
        )  # fmt: skip
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after the seed's bulk updates (statistics, and the
        # visibility map index-only scans rely on); SQLite: nothing in the service runs
        # ANALYZE, so the bench does not either.
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("VACUUM ANALYZE")
    print(f"seeded {subscribers:,} subscribers, {bulletin_count:,} bulletins, "
          f"{len(ids):,} deliveries in {time.perf_counter() - started:.1f} s")  # fmt: skip
    await engine.dispose()
    return {"big": big, "preview": preview_only}


async def _login(client: httpx.AsyncClient, username: str, password: str) -> None:
    page = await client.get("/dashboard/login")
    token = _CSRF.search(page.text)
    assert token is not None
    response = await client.post(
        "/dashboard/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
    )
    assert response.status_code == 303, response.text


async def _time(client: httpx.AsyncClient, path: str, requests: int) -> tuple[float, list[float]]:
    """(the first request's ms, `requests` timings after two more warm-up requests).

    The first request fills the connection pool and the in-process caches (subscriber
    counts, recipient previews: one minute): its time is what a cache miss costs.
    """
    started = time.perf_counter()
    assert (await client.get(path)).status_code == 200, path
    first = (time.perf_counter() - started) * 1000
    for _ in range(2):
        assert (await client.get(path)).status_code == 200, path
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    return first, samples


async def bench_backend(url: str, subscribers: int, bulletin_count: int, requests: int) -> int:
    """Seed the database at `url`, time every page; the number of pages over target."""
    ids = await _seed(url, subscribers, bulletin_count)
    engine = make_engine(url)
    app = FastAPI()
    settings = Settings(_env_file=None, secret_key=SecretStr("b" * 40))
    app.include_router(make_router(make_sessionmaker(engine), settings))
    transport = httpx.ASGITransport(app=app)
    pages = [
        ("editor", "list", "/dashboard/bulletins"),
        ("editor", "list filtered", "/dashboard/bulletins?state=sent&area=p31"),
        ("editor", "detail + preview (100k)", f"/dashboard/bulletins/{ids['preview']}"),
        ("editor", "progress page", f"/dashboard/bulletins/{ids['big']}/progress"),
        ("editor", "progress.json (poll)", f"/dashboard/bulletins/{ids['big']}/progress.json"),
        ("editor", "chart.svg", f"/dashboard/bulletins/{ids['big']}/chart.svg"),
        ("editor", "subscribers (province)", "/dashboard/subscribers"),
        ("admin", "subscribers (all)", "/dashboard/subscribers"),
        ("editor", "inbox", "/dashboard/inbox"),
        ("admin", "audit", "/dashboard/audit"),
    ]
    failed = 0
    print(f"{'page':<28}{'as':<8}{'first ms':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://bench") as editor,
        httpx.AsyncClient(transport=transport, base_url="http://bench") as admin,
    ):
        await _login(editor, "bench-editor", "x" * 12)
        await _login(admin, "bench-admin", "z" * 12)
        clients = {"editor": editor, "admin": admin}
        for who, name, path in pages:
            first, samples = await _time(clients[who], path, requests)
            samples.sort()
            p50 = statistics.median(samples)
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            mark = "" if p95 < TARGET_P95_MS else "  over target"
            failed += p95 >= TARGET_P95_MS
            print(f"{name:<28}{who:<8}{first:9.1f}{p50:9.1f}{p95:9.1f}{samples[-1]:9.1f}{mark}")
    await engine.dispose()
    return failed


async def main(backend: str, subscribers: int, bulletin_count: int, requests: int) -> int:
    print(command_line())
    failed = 0
    if backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
            print("[sqlite]")
            url = sqlite_url(str(Path(tmp) / "bench.db"))
            failed += await bench_backend(url, subscribers, bulletin_count, requests)
    if backend in ("postgresql", "both"):
        async with pg_database() as url:
            print("[postgresql]")
            failed += await bench_backend(url, subscribers, bulletin_count, requests)
    print(f"target: p95 < {TARGET_P95_MS:.0f} ms; {failed} page(s) over")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--bulletins", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    code = asyncio.run(main(args.backend, args.subscribers, args.bulletins, args.requests))
    raise SystemExit(code)
