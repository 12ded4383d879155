"""SMS throughput through an SMPP 3.4 gateway (bot.smpp over smpplib) against the fake SMSC
(tests/fakes/smpp.py, real TCP on 127.0.0.1), with delivery receipts.

For each contract rate (submit_sm per second the SMSC allows one account) and encoding
(unaccented GSM-7, or Vietnamese in UCS-2), two runs: the gateway paced at the contract
(SmppConfig.throughput, as a deployment configures it) and unpaced, left to the SMSC's
throttling (ESME_RTHROTTLED, waited out and retried as the sender does). Printed for
each: messages/s and parts/s accepted, receipts/s (until every message's receipt is in),
throttled submits, and how long after the last acceptance the last receipt came. The
messages are a bulletin cut at random lengths (one to four parts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import Counter

from bot.smpp import Receipt, SmppConfig, SmppGateway
from broadcasts import sms
from tests.fakes.smpp import FakeSmsc, deliver

TEXT = (
    "Tin bão khẩn cấp: Bão số 3 đang di chuyển theo hướng Tây Tây Bắc, gió mạnh cấp 10-11, "
    "giật cấp 13. Đề nghị tàu thuyền đang hoạt động ở vùng biển Quảng Ngãi – Đà Nẵng khẩn "
    "trương về nơi trú ẩn an toàn trước 17 giờ ngày 12/10. Trả lời DA NHAN khi nhận được tin."
)


def _config(smsc: FakeSmsc, encoding: sms.Encoding, paced: float | None) -> SmppConfig:
    return SmppConfig(
        host="127.0.0.1", port=smsc.port, system_id=smsc.system_id, password=smsc.password,
        brandname="HAIDANG", tariff=sms.GatewayTariff(cost_per_part_vnd=550),
        encoding=encoding, throughput=paced, throttle_wait_s=0.2, reconnect_wait_s=0.1,
    )  # fmt: skip


async def run(
    messages: int, contract: float, encoding: sms.Encoding, paced: bool, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    with FakeSmsc(throughput=contract) as smsc:
        receipts: dict[str, float] = {}
        every_receipt = asyncio.Event()

        def received(receipt: Receipt) -> None:
            receipts[receipt.message_id] = time.monotonic()
            if len(receipts) == messages:
                every_receipt.set()

        gateway = SmppGateway(
            _config(smsc, encoding, contract if paced else None), on_receipt=received
        )
        jobs = [
            (f"0912{i:06d}", TEXT[: rng.randint(80, len(TEXT))] + f" #{i}") for i in range(messages)
        ]
        seen: Counter[str] = Counter()

        async def one(number: str, text: str) -> None:
            await deliver(gateway, number, text, seen)

        started = time.monotonic()
        await asyncio.gather(*(one(*job) for job in jobs))
        accepted = time.monotonic() - started
        with contextlib.suppress(TimeoutError):  # a missing receipt shows in the count
            await asyncio.wait_for(every_receipt.wait(), 30)
        all_in = max(receipts.values(), default=started) - started
        await gateway.close()
        parts = len(smsc.submits)
    return {
        "messages": messages,
        "parts": parts,
        "msg_s": messages / accepted,
        "parts_s": parts / accepted,
        "receipts": len(receipts),
        "receipts_s": len(receipts) / all_in if all_in else 0.0,
        "throttled": smsc.throttled,
        "last_receipt_ms": 1000 * max(0.0, all_in - accepted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[50.0, 200.0],
        help="contract rates in submit_sm (parts) per second",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    print("$ " + " ".join([sys.executable, "-m", "bench.smpp", *sys.argv[1:]]))
    print(
        f"{'contract parts/s':>16} {'encoding':>15} {'paced':>5} {'messages':>8} "
        f"{'parts':>6} {'msg/s':>6} {'parts/s':>7} {'receipts':>8} {'rcpt/s':>6} "
        f"{'throttled':>9} {'last rcpt ms':>12}"
    )
    for contract in args.rates:
        for encoding in sms.Encoding:
            for paced in (True, False):
                r = asyncio.run(run(args.messages, contract, encoding, paced, args.seed))
                print(
                    f"{contract:>16.0f} {encoding.value:>15} {'yes' if paced else 'no':>5} "
                    f"{r['messages']:>8.0f} {r['parts']:>6.0f} {r['msg_s']:>6.1f} "
                    f"{r['parts_s']:>7.1f} {r['receipts']:>8.0f} {r['receipts_s']:>6.1f} "
                    f"{r['throttled']:>9.0f} {r['last_receipt_ms']:>12.1f}"
                )


if __name__ == "__main__":
    main()
