"""Times offline render + master of a ~60 s bulletin (<= 3 s) and a studio cache hit (<= 50 ms)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from audio import mastering, studio
from audio.store import LocalStore
from audio.tts import EspeakEngine
from broadcasts import bulletins, officials
from db.engine import make_engine, make_sessionmaker
from db.models import Base, OfficialRole
from db.seed import seed_all

BULLETIN = (
    "Hồi 7 giờ sáng nay, vị trí tâm bão số 3 ở vào khoảng 19,5 độ Vĩ Bắc, 109,2 độ Kinh "
    "Đông, cách Quảng Ninh khoảng 250 ki-lô-mét về phía Đông Nam. Sức gió mạnh nhất vùng "
    "gần tâm bão mạnh cấp 10, giật cấp 12. Dự báo trong 24 giờ tới, bão di chuyển theo "
    "hướng Tây Tây Bắc, mỗi giờ đi được 15 đến 20 ki-lô-mét. Vùng biển Quảng Ninh – Hải "
    "Phòng có gió mạnh cấp 7 đến cấp 8, sau tăng lên cấp 9, giật cấp 11; sóng biển cao từ "
    "3 đến 5 mét, biển động rất mạnh. Đề nghị các chủ tàu thuyền đang hoạt động trên biển "
    "khẩn trương di chuyển vào nơi tránh trú an toàn. Các tàu thuyền đang neo đậu tại cảng "
    "cần gia cố, chằng buộc chắc chắn. Nghiêm cấm tàu thuyền ra khơi kể từ 12 giờ trưa nay "
    "cho đến khi có thông báo mới. Bà con ngư dân cần thường xuyên theo dõi bản tin dự báo "
    "thời tiết trên các phương tiện thông tin đại chúng. Mọi thông tin cần hỗ trợ, xin liên "
    "hệ Ban chỉ huy phòng chống thiên tai xã qua số điện thoại đường dây nóng."
)
HEADING = "Đài truyền thanh xã Cát Hải xin thông báo."
NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
CACHE_HIT_TARGET_S = 0.050


async def render_once(out_dir: Path) -> dict[str, float]:
    engine = EspeakEngine()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    heading = await engine.synthesize(HEADING)
    body = await engine.synthesize(BULLETIN)
    t1 = time.perf_counter()
    programme = mastering.master(body, heading=heading)
    t2 = time.perf_counter()
    outputs = mastering.encode(
        programme,
        out_dir,
        basename="bulletin",
        tags=mastering.Tags("Tin bão số 3", "Cát Hải", dt.date(2025, 7, 20)),
    )
    t3 = time.perf_counter()
    cpu = time.process_time() - cpu0
    return {
        "cpu": cpu,
        "speech_s": body.duration_seconds + heading.duration_seconds,
        "master_s": programme.duration_seconds,
        "lufs": programme.integrated_lufs,
        "dbtp": programme.true_peak_dbtp,
        "tts": t1 - t0,
        "mastering": t2 - t1,
        "encoding": t3 - t2,
        "total": t3 - t0,
        **{f"{o.format}_kB": o.size_bytes / 1000 for o in outputs},
    }


async def studio_timings(tmp: Path, hits: int) -> dict[str, float]:
    """The same bulletin through audio.studio on a throwaway SQLite database: a miss, then hits.

    Each hit is what a caller pays: a fresh session, the lookups, a stat per file (the
    read step of render_bulletin; nothing is written on a hit).
    """
    engine = make_engine(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:
            await seed_all(session)
            editor = await officials.create(
                session, username="editor", role=OfficialRole.province_editor,
                password="x" * 12, area_code="p31",
            )  # fmt: skip
            approver = await officials.create(
                session, username="approver", role=OfficialRole.approver,
                password="y" * 12, area_code="p31",
            )  # fmt: skip
            bulletin = await bulletins.create(
                session, author=editor, title="Tin bão số 3", body=BULLETIN,
                area_codes=["11914"], now=NOW, submit=True,
            )  # fmt: skip
            await bulletins.approve(session, bulletin, approver, NOW)
        store = LocalStore(tmp / "audio")

        async def render() -> float:
            started = time.perf_counter()
            assets = await studio.render_bulletin(
                sessions, bulletin.id, store=store, engine_name="espeak", tz=TZ, now=NOW,
                work_dir=tmp / "work",
            )  # fmt: skip
            assert len(assets) == 3
            return time.perf_counter() - started

        miss = await render()
        timings = [await render() for _ in range(hits)]
    finally:
        await engine.dispose()
    return {
        "miss": miss,
        "hit_median": statistics.median(timings),
        "hit_p95": sorted(timings)[int(0.95 * (len(timings) - 1))],
        "hit_max": max(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hits", type=int, default=50, help="cache hits to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [asyncio.run(render_once(Path(tmp))) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = asyncio.run(studio_timings(Path(tmp), args.hits))
    first = results[0]
    print(
        f"audio: {first['master_s']:.1f} s mastered ({first['speech_s']:.1f} s of speech), "
        f"{first['lufs']:.2f} LUFS, {first['dbtp']:.2f} dBTP; "
        f"files: mp3 {first['mp3_kB']:.0f} kB, aac {first['aac_kB']:.0f} kB, "
        f"opus {first['opus_kB']:.0f} kB"
    )
    for i, r in enumerate(results, 1):
        print(
            f"run {i}: tts {r['tts']:.2f} s + mastering {r['mastering']:.2f} s + "
            f"encoding {r['encoding']:.2f} s = {r['total']:.2f} s "
            f"(CPU {r['cpu']:.2f} s, all threads)"
        )
    # Wall times stretch on a busy machine; the load and the CPU time tell how much.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs")
    best = min(r["total"] for r in results)
    verdict = "OK" if best <= 3.0 else "OVER"
    print(f"best total {best:.2f} s (target <= 3.00 s): {verdict}")
    hit_verdict = "OK" if cache["hit_median"] <= CACHE_HIT_TARGET_S else "OVER"
    print(
        f"studio on SQLite: first render {cache['miss']:.2f} s (TTS, mastering, 3 files, rows); "
        f"cache hit median {cache['hit_median'] * 1000:.1f} ms, "
        f"p95 {cache['hit_p95'] * 1000:.1f} ms, max {cache['hit_max'] * 1000:.1f} ms "
        f"over {args.hits} (target <= 50 ms): {hit_verdict}"
    )


if __name__ == "__main__":
    main()
