"""Times offline TTS + mastering + encoding of a ~60 s Vietnamese bulletin (target <= 3 s)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path

from audio import mastering
from audio.tts import EspeakEngine

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


async def render_once(out_dir: Path) -> dict[str, float]:
    engine = EspeakEngine()
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
    return {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [asyncio.run(render_once(Path(tmp))) for _ in range(args.runs)]
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
            f"encoding {r['encoding']:.2f} s = {r['total']:.2f} s"
        )
    best = min(r["total"] for r in results)
    verdict = "OK" if best <= 3.0 else "OVER"
    print(f"best total {best:.2f} s (target <= 3.00 s): {verdict}")


if __name__ == "__main__":
    main()
