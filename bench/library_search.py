"""Library search latency: p50/p95 over ~200 varied queries on 10,000 documents, per backend."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broadcasts import library
from db.engine import make_engine, make_sessionmaker
from db.models import Base, Document, DocumentTopic, Topic
from db.seed import seed_topics
from db.text import fold

TARGET_P95_MS = 50.0
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
CORPUS = Path(__file__).parent.parent / "tests" / "data" / "documents"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"  # only ever this machine
SUFFIXES = ("QĐ-TTg", "NĐ-CP", "TT-BNNPTNT", "CT-TTg", "CĐ-TTg", "QĐ-UBND", "KH-UBND", "TB-UBND")


def _vocabulary() -> list[str]:
    """Words of the test corpus, most frequent first (Vietnamese with diacritics)."""
    counts: Counter[str] = Counter()
    for path in CORPUS.iterdir():
        counts.update(re.findall(r"[^\W\d_]+", path.read_text(encoding="utf-8").lower()))
    return [word for word, _ in counts.most_common()]


def _documents(count: int, rng: random.Random) -> list[dict[str, object]]:
    words = _vocabulary()
    # Zipf-like weights: common words are everywhere, rare ones in a few documents.
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(words))]

    def sentence(low: int, high: int) -> str:
        picked = rng.choices(words, weights, k=rng.randint(low, high))
        return " ".join(picked).capitalize() + "."

    rows: list[dict[str, object]] = []
    for n in range(count):
        number = f"{n + 1}/{rng.randint(2010, 2026)}/{rng.choice(SUFFIXES)}" if n % 3 else None
        title = sentence(5, 12).rstrip(".")
        paragraphs = ["\n".join(sentence(8, 16) for _ in range(rng.randint(3, 6)))]
        paragraphs += [
            " ".join(sentence(8, 16) for _ in range(4)) for _ in range(rng.randint(2, 6))
        ]
        rows.append(
            {
                "title": title,
                "number": number,
                "issuer": "Ủy ban nhân dân",
                "issued_on": dt.date(2010, 1, 1) + dt.timedelta(days=rng.randint(0, 5800)),
                "language": "vi" if n % 20 else "en",
                "summary": sentence(15, 30),
                "body": "\n\n".join(paragraphs),
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    return rows


def _queries(rows: list[dict[str, object]], rng: random.Random, topics: list[str]):
    """~200 queries: words, title phrases, unaccented, numbers, unfinished words, topics."""
    words = _vocabulary()
    queries: list[tuple[str, str | None]] = []
    queries += [(rng.choice(words[:50]), None) for _ in range(20)]  # very common words
    queries += [(rng.choice(words[50:]), None) for _ in range(30)]  # rarer words
    for _ in range(50):
        title = str(rng.choice(rows)["title"]).split()
        start = rng.randrange(max(1, len(title) - 3))
        queries.append((" ".join(title[start : start + rng.randint(2, 3)]), None))
    for _ in range(30):
        title = str(rng.choice(rows)["title"]).split()
        queries.append((fold(" ".join(title[: rng.randint(2, 4)])), None))
    numbered = [row["number"] for row in rows if row["number"]]
    for _ in range(20):
        number = str(rng.choice(numbered))
        queries.append((number if rng.random() < 0.5 else number.split("/")[0], None))
    for _ in range(20):
        word = rng.choice(words[:300])
        other = rng.choice(words[:300])
        queries.append((f"{word} {other[: max(2, len(other) - 2)]}", None))  # unfinished
    queries += [
        (f"cho tôi hỏi về {rng.choice(words[:200])} {rng.choice(words)}", None) for _ in range(10)
    ]
    queries += [(rng.choice(words[:200]), rng.choice(topics)) for _ in range(20)]
    return queries


async def _load(sessions: async_sessionmaker[AsyncSession], rows, rng: random.Random) -> float:
    started = time.perf_counter()
    async with sessions.begin() as session:
        await seed_topics(session)
        topic_ids = list((await session.scalars(select(Topic.id))).all())
        for chunk in range(0, len(rows), 1000):
            await session.execute(insert(Document), rows[chunk : chunk + 1000])
        ids = list((await session.scalars(select(Document.id).order_by(Document.id))).all())
        links = [
            {"document_id": doc_id, "topic_id": topic_id}
            for doc_id in ids
            for topic_id in rng.sample(topic_ids, rng.randint(1, 2))
        ]
        await session.execute(insert(DocumentTopic), links)
        await library.reindex_all(session)
    return time.perf_counter() - started


async def _measure(url: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)  # with the search index
    sessions = make_sessionmaker(engine)
    rows = _documents(count, rng)
    load_s = await _load(sessions, rows, rng)
    async with sessions() as session:
        slugs = list((await session.scalars(select(Topic.slug))).all())
    queries = _queries(rows, rng, slugs)
    timings: list[float] = []
    empty = 0
    async with sessions() as session:
        for query, topic in queries[:20]:  # warm the caches and the connection
            await library.search(session, query, topic=topic)
        for query, topic in queries:
            started = time.perf_counter()
            hits = await library.search(session, query, topic=topic, limit=10)
            timings.append((time.perf_counter() - started) * 1000)
            empty += not hits
    await engine.dispose()
    timings.sort()
    p50 = statistics.median(timings)
    p95 = timings[int(len(timings) * 0.95) - 1]
    verdict = "ok" if p95 < TARGET_P95_MS else "OVER TARGET"
    print(
        f"{engine.dialect.name:10} docs={count} queries={len(timings)} (no hits: {empty}) "
        f"load+index={load_s:.1f}s  p50={p50:.1f}ms  p95={p95:.1f}ms  max={timings[-1]:.1f}ms  "
        f"target p95<{TARGET_P95_MS:.0f}ms: {verdict}"
    )


async def _postgresql(count: int, seed: int) -> None:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        await _measure(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", count, seed)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    print(f"$ python -m bench.library_search {' '.join(sys.argv[1:])}".rstrip())
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
            asyncio.run(_measure(url, args.documents, args.seed))
    if args.backend in ("postgresql", "both"):
        asyncio.run(_postgresql(args.documents, args.seed))


if __name__ == "__main__":
    main()
