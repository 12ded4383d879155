"""`haidang serve --role …`: the choice refused where it cannot work, and five real processes
(two web, two workers, a scheduler) on one PostgreSQL database with a worker killed mid-run."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from broadcasts.sender import SenderConfig
from db.engine import make_engine
from db.models import Platform
from haidang.roles import ALL_ROLES, Role, RoleError, chosen_roles
from haidang.settings import normalise_database_url
from tests.broadcasts.engine import migrated_with_urgent_bulletin, warnings_received
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_serve import _env, _free_port

ASKED = "Bà con đồng ý chứ?"  # the answer to /start asks for consent
SECRET = "telegram-secret-123"
LEASE_TTL_S = 3.0
REPLAYED = 70_000  # a chat whose /start is posted to both replicas
RATE = 20.0  # the bot's msg/s: the warning to WARNED people takes a few seconds


def test_no_role_is_every_role_and_repeats_are_allowed() -> None:
    assert chosen_roles([], sqlite=True) == ALL_ROLES
    assert chosen_roles([Role.web, Role.worker, Role.scheduler, Role.web], sqlite=True) == (
        ALL_ROLES
    )
    assert chosen_roles([Role.web, Role.web], sqlite=False) == {Role.web}
    assert chosen_roles([Role.web, Role.worker], sqlite=False) == {Role.web, Role.worker}


def test_split_roles_are_refused_on_sqlite() -> None:
    with pytest.raises(RoleError, match="PostgreSQL"):
        chosen_roles([Role.worker], sqlite=True)


def test_serve_refuses_a_split_on_sqlite_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "haidang", "serve", "--role", "web", "--role", "worker"],
        env=_env(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, _free_port()),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "error: `--role web --role worker` runs part of the service" in result.stderr
    assert "PostgreSQL" in result.stderr and "Traceback" not in result.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "haidang", "serve", "--role", "sender"],
        env=_env(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, _free_port()),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "sender" in unknown.stderr and "web" in unknown.stderr


# --- several processes on PostgreSQL ----------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for `predicate`; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _ready(port: int) -> bool:
    try:
        return _get(port, "/readyz")[0] == 200
    except OSError:
        return False


def _bot_lease_holder(url: str) -> str | None:
    from sqlalchemy import text

    async def read() -> str | None:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                holder = await connection.scalar(
                    text(
                        "SELECT holder FROM leases"
                        " WHERE name LIKE 'sender:%' AND expires_at > now()"
                    )
                )
                return None if holder is None else str(holder)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _stop_all(processes: dict[str, tuple[subprocess.Popen[bytes], int]]) -> None:
    """SIGTERM to every process still running, then wait for each (killed after 30 s)."""
    for process, _ in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in processes.values():
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _post_update(port: int, update: dict[str, object]) -> int:
    """POST an update to a replica's webhook as Telegram would; the HTTP status."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/telegram", data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http to 127.0.0.1
        return int(response.status)


def _answers(api: FakeTelegramAPI, chats: list[int]) -> Counter[int]:
    """How many times each chat was asked for consent (the answer to /start)."""
    asked: Counter[int] = Counter()
    for chat in chats:
        asked[chat] = sum(1 for r in api.sent_to(chat) if r.text and ASKED in r.text)
    return asked


def test_web_and_worker_replicas_share_one_database(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: several processes share one database (SQLite is one process)")
    url = normalise_database_url(database_url)
    warned = [str(40_000 + n) for n in range(120)]
    migrated_with_urgent_bulletin(url, {Platform.telegram: warned}, rate=RATE)
    first = [50_000 + n for n in range(40)]
    second = [60_000 + n for n in range(40)]
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    with FakeTelegramAPI().running_in_thread() as api:
        for warned_chat in warned:
            api.register_chat(int(warned_chat))
        web_ports = [_free_port(), _free_port()]
        public = f"http://127.0.0.1:{web_ports[0]}"

        def start(name: str, role: str, port: int, *, token: bool) -> None:
            env = _env(database_url, tmp_path / name, port)
            env.update(
                PUBLIC_BASE_URL=public, TELEGRAM_WEBHOOK_SECRET=SECRET,
                BOT_LEASE_TTL_S=str(LEASE_TTL_S),
            )  # fmt: skip
            if token:  # web replicas and the scheduler get no token: they never call the API
                env.update(TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url)
            with (logs / f"{name}.log").open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "haidang", "serve", "--role", role],
                    env=env, stdout=out, stderr=out,
                )  # fmt: skip
            processes[name] = (process, port)

        try:
            start("web1", "web", web_ports[0], token=False)
            start("web2", "web", web_ports[1], token=False)
            start("worker1", "worker", _free_port(), token=True)
            start("worker2", "worker", _free_port(), token=True)
            start("scheduler", "scheduler", _free_port(), token=False)
            for name, (process, port) in processes.items():

                def up(port: int = port, process: subprocess.Popen[bytes] = process) -> bool:
                    return _ready(port) or process.poll() is not None

                _until(up, 60, name)
                assert process.poll() is None, (logs / f"{name}.log").read_text()
            _until(lambda: api.webhook_url is not None, 20, "a worker to set the webhook")

            # Each web replica receives half of the first crowd.
            for index, chat in enumerate(first):
                if index == len(first) // 2:
                    api._set_webhook(
                        f"http://127.0.0.1:{web_ports[1]}/webhooks/telegram", SECRET,
                        drop_pending=False,
                    )  # fmt: skip
                api.user_sends(chat, "/start")
            _until(lambda: all(_answers(api, first).values()), 60, "the first crowd's answers")
            time.sleep(1.0)  # outcomes written (every 0.25 s): the kill repeats none of them

            # Kill the worker running the bot, mid-warning; the second crowd keeps writing.
            holder = _bot_lease_holder(url)
            assert holder is not None
            pid = int(holder.split(":")[1])
            victim = next(n for n, (p, _) in processes.items() if p.pid == pid)
            assert victim.startswith("worker")
            assert 0 < sum(warnings_received(api).values()) < len(warned), "kill mid-warning"
            processes[victim][0].send_signal(signal.SIGKILL)
            processes[victim][0].wait(10)
            killed_at = time.monotonic()
            for index, chat in enumerate(second):
                api._set_webhook(
                    f"http://127.0.0.1:{web_ports[index % 2]}/webhooks/telegram", SECRET,
                    drop_pending=False,
                )  # fmt: skip
                api.user_sends(chat, "/start")
            survivor = "worker2" if victim == "worker1" else "worker1"
            survivor_port = processes[survivor][1]

            def survivor_runs_the_bot() -> bool:
                parts = _get(survivor_port, "/healthz")[1]["parts"]
                assert isinstance(parts, dict)
                return bool(parts["telegram"]["active"])

            _until(survivor_runs_the_bot, LEASE_TTL_S + 10, "the other worker to take the bot")
            took_over = time.monotonic() - killed_at
            _until(lambda: all(_answers(api, second).values()), 60, "the second crowd's answers")
            _until(lambda: set(warnings_received(api)) == set(warned), 60, "the warning everywhere")

            # A replayed update: delivered to the first replica, then posted again to both.
            api._set_webhook(
                f"http://127.0.0.1:{web_ports[0]}/webhooks/telegram", SECRET, drop_pending=False
            )
            replay = api.user_sends(REPLAYED, "/start")
            _until(lambda: all(_answers(api, [REPLAYED]).values()), 30, "the replayed update")
            replayed_status = [_post_update(port, replay) for port in (web_ports[1], web_ports[0])]
            time.sleep(1.0)  # anything said twice would be said by now
        finally:
            _stop_all(processes)
        deliveries = api.webhook_deliveries

    # Both replicas received updates, every one answered 200 and turned exactly once.
    by_replica = Counter(d.url.split("/webhooks")[0].rsplit(":", 1)[1] for d in deliveries)
    assert set(by_replica) == {str(p) for p in web_ports}, by_replica
    assert all(d.status == 200 for d in deliveries), [d for d in deliveries if d.status != 200]
    assert set(_answers(api, first).values()) == {1}, _answers(api, first)
    assert set(_answers(api, second).values()) == {1}, _answers(api, second)
    # The same update posted to both replicas (and again to the first) is turned once.
    assert replayed_status == [200, 200]
    assert _answers(api, [REPLAYED]) == {REPLAYED: 1}
    # Taken over within the lease's time (plus the worker's start of the bot).
    assert took_over < LEASE_TTL_S + 5, took_over
    # The warning reached everyone; what the killed sender sent twice stays in the bound.
    received = warnings_received(api)
    duplicates = sum(received.values()) - len(warned)
    assert duplicates <= SenderConfig(bot_id=0, rate_per_second=RATE).duplicate_bound, received
    for name, (process, _) in processes.items():
        text = (logs / f"{name}.log").read_text()
        if name != victim:
            assert process.returncode == 0, text
            assert "Traceback" not in text, text
        if not name.startswith("worker"):
            assert api.token not in text
    print(f"took over in {took_over:.1f} s; {duplicates} warnings sent twice; {by_replica}")


SECOND_TOKEN = "8123456789:AAE-second-bot-token-0123456789"
PEOPLE_PER_BOT = 1000  # 2,000 subscribers over two bots
BOT_RATE = 30.0  # each fake refuses more than Telegram's 30 msg/s per bot


def _bot_lease_holders(url: str) -> dict[int, str]:
    """Bot id → the process holding its lease, from the leases table."""
    from sqlalchemy import text

    async def read() -> dict[int, str]:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT name, holder FROM leases"
                        " WHERE name LIKE 'sender:%' AND expires_at > now()"
                    )
                )
                return {int(str(name).split(":")[1]): str(holder) for name, holder in rows.all()}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _follow_up(url: str, bulletin_id: int) -> dict[str, object]:
    from broadcasts import reports
    from db.engine import make_sessionmaker

    async def read() -> dict[str, object]:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await reports.bulletin_report(session, bulletin_id)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_two_bots_over_five_processes_with_a_worker_killed_mid_warning(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    """Two web, two worker and one scheduler processes; 2,000 people over two Telegram bots
    (two fakes behind one API address); one urgent warning reaches everyone through
    their own bot, both bots sending at once, though a worker is killed mid-send."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: several processes share one database (SQLite is one process)")
    from tests.broadcasts.engine import BotPeople
    from tests.fakes.router import TokenRouter

    url = normalise_database_url(database_url)
    first_people = [str(100_000 + n) for n in range(PEOPLE_PER_BOT)]
    second_people = [str(200_000 + n) for n in range(PEOPLE_PER_BOT)]
    bulletin_id = migrated_with_urgent_bulletin(
        url,
        # English readers: the warning has no English version, so each gets the Vietnamese
        # text alone (one message, no voice): 1,000 a bot take about 35 s at 30 msg/s.
        [BotPeople(Platform.telegram, first_people, language="en"),
         BotPeople(Platform.telegram, second_people, name="quang-ngai", token=SECOND_TOKEN,
                   language="en")],
        rate=BOT_RATE,
    )  # fmt: skip
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    first_api = FakeTelegramAPI()
    second_api = FakeTelegramAPI(token=SECOND_TOKEN, bot_username="haidang_qng_bot")
    for api in (first_api, second_api):  # Telegram's limit, per bot
        api.set_rate_limits(rate_limit_per_second=int(BOT_RATE))
    with first_api.running_in_thread(), second_api.running_in_thread():
        router = TokenRouter(
            {first_api.token: first_api.base_url, SECOND_TOKEN: second_api.base_url}
        )
        with router.running_in_thread():
            web_ports = [_free_port(), _free_port()]

            def start(name: str, role: str, port: int) -> None:
                env = _env(database_url, tmp_path / name, port)
                env.update(
                    PUBLIC_BASE_URL=f"http://127.0.0.1:{web_ports[0]}",
                    TELEGRAM_WEBHOOK_SECRET=SECRET, BOT_LEASE_TTL_S=str(LEASE_TTL_S),
                )  # fmt: skip
                if role == "worker":
                    env.update(
                        TELEGRAM_BOT_TOKEN=first_api.token, TELEGRAM_API_BASE_URL=router.base_url
                    )
                with (logs / f"{name}.log").open("wb") as out:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "haidang", "serve", "--role", role],
                        env=env, stdout=out, stderr=out,
                    )  # fmt: skip
                processes[name] = (process, port)

            try:
                start("web1", "web", web_ports[0])
                start("web2", "web", web_ports[1])
                start("worker1", "worker", _free_port())
                start("worker2", "worker", _free_port())
                for name, (process, port) in processes.items():

                    def up(port: int = port, process: subprocess.Popen[bytes] = process) -> bool:
                        return _ready(port) or process.poll() is not None

                    _until(up, 60, name)
                    assert process.poll() is None, (logs / f"{name}.log").read_text()
                # The two workers share the two bots before the warning fires.
                _until(
                    lambda: len(set(_bot_lease_holders(url).values())) == 2, 30,
                    "each worker to run one bot",
                )  # fmt: skip
                start("scheduler", "scheduler", _free_port())

                def sent() -> int:
                    return sum(warnings_received(first_api).values()) + sum(
                        warnings_received(second_api).values()
                    )

                _until(lambda: sent() >= 400, 60, "the warning to be under way")
                holders = _bot_lease_holders(url)
                victim_pid = int(next(iter(holders.values())).split(":")[1])
                victim = next(n for n, (p, _) in processes.items() if p.pid == victim_pid)
                assert victim.startswith("worker")
                assert sent() < 2 * PEOPLE_PER_BOT, "kill mid-warning"
                processes[victim][0].send_signal(signal.SIGKILL)
                processes[victim][0].wait(10)
                killed_at = time.monotonic()
                _until(
                    lambda: len(_bot_lease_holders(url)) == 2
                    and len(set(_bot_lease_holders(url).values())) == 1,
                    LEASE_TTL_S + 15, "the other worker to take both bots",
                )  # fmt: skip
                took_over = time.monotonic() - killed_at
                _until(
                    lambda: set(warnings_received(first_api)) == set(first_people)
                    and set(warnings_received(second_api)) == set(second_people),
                    120, "the warning everywhere",
                )  # fmt: skip
                time.sleep(1.0)  # outcomes written
                report = _follow_up(url, bulletin_id)
            finally:
                _stop_all(processes)

    # Everyone reached through their own bot, never the other's.
    first_got, second_got = warnings_received(first_api), warnings_received(second_api)
    assert set(first_got) == set(first_people) and set(second_got) == set(second_people)
    # What the killed worker sent twice stays within one sender's bound.
    bound = SenderConfig(bot_id=0, rate_per_second=BOT_RATE).duplicate_bound
    duplicates = sum(first_got.values()) + sum(second_got.values()) - 2 * PEOPLE_PER_BOT
    assert duplicates <= bound, (duplicates, bound)
    # Each bot kept to its own limit, both at once (a 429 on a loaded machine is retried,
    # and the counts above show nothing was lost to one).
    refused = [api.stats.responses_429 for api in (first_api, second_api)]
    # The report adds up: everyone sent once, each bot's share its own people.
    counts = report["counts"]
    assert isinstance(counts, dict)
    assert counts["sent"] == 2 * PEOPLE_PER_BOT and report["sent"] == 2 * PEOPLE_PER_BOT
    shares = report["bots"]
    assert isinstance(shares, list)
    assert sorted(row.counts["sent"] for row in shares) == [PEOPLE_PER_BOT, PEOPLE_PER_BOT]
    for state, count in counts.items():
        assert sum(row.counts[state] for row in shares) == count
    assert took_over < LEASE_TTL_S + 10, took_over
    for name, (process, _) in processes.items():
        text = (logs / f"{name}.log").read_text()
        if name != victim:
            assert process.returncode == 0, text
            assert "Traceback" not in text, text
        assert SECOND_TOKEN not in text  # the stored token is never logged
    print(f"took over in {took_over:.1f} s; {duplicates} warnings sent twice (bound {bound}); "
          f"429s per bot {refused}")  # fmt: skip
