"""`haidang serve` as a real process: health, logs, clean shutdown, an unreachable platform."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from db import schema
from db.models import Platform
from haidang.settings import normalise_database_url
from tests.broadcasts.engine import migrated_with_urgent_bulletin, warnings_received
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.zalo_api import FakeZaloAPI


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(database_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "ZALO_"))}
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(tmp_path / "var"), HTTP_PORT=str(port),
        LOG_LEVEL="INFO", PUBLIC_BASE_URL="",
    )  # fmt: skip
    return env


def serve_logged(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`haidang serve` in a subprocess with `env`, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "haidang", "serve"], env=env, stdout=out, stderr=out
        )


def telegram_env(database_url: str, tmp_path: Path, api: FakeTelegramAPI) -> dict[str, str]:
    """The service's environment with its Telegram bot on the fake `api` (and a free port)."""
    env = _env(database_url, tmp_path, _free_port())
    env.update(TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url)
    return env


def _wait_for_health(port: int, process: subprocess.Popen[str]) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited early: {process.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                return reply.status, json.loads(reply.read())
        except OSError:
            time.sleep(0.1)
    pytest.fail("serve did not answer /healthz within 30 s")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_health_and_stops_cleanly(
    database_url: str, tmp_path: Path, stop_signal: signal.Signals, backend: str
) -> None:
    if backend != "sqlite" and stop_signal is signal.SIGINT:
        pytest.skip("one signal is enough on PostgreSQL")
    schema.upgrade(normalise_database_url(database_url))
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "haidang", "serve"],
        env=_env(database_url, tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, body = _wait_for_health(port, process)
        assert status == 200
        assert body["status"] == "ok"
        parts = body["parts"]
        assert isinstance(parts, dict)
        assert parts["web"]["active"] is True
        assert parts["telegram"] == {
            "active": False,
            "detail": "TELEGRAM_BOT_TOKEN not set",
            "retrying": False,
        }
        assert parts["zalo"] == {
            "active": False,
            "detail": "ZALO_BOT_TOKEN not set",
            "retrying": False,
        }
    finally:
        process.send_signal(stop_signal)
        _, log = process.communicate(timeout=20)
    assert process.returncode == 0, log
    assert f"web: on (http://127.0.0.1:{port})" in log
    assert "telegram: off (TELEGRAM_BOT_TOKEN not set)" in log
    assert "zalo: off (ZALO_BOT_TOKEN not set)" in log
    assert "seeded 34 provinces, 3321 communes, 6 topics" in log  # first start seeds
    assert log.rstrip().endswith("haidang.serve: stopped")
    assert "Traceback" not in log


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    port = _free_port()
    result = subprocess.run(
        [sys.executable, "-m", "haidang", "serve"],
        env=_env(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path, port),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "run `haidang db upgrade` first" in result.stderr


def _health(port: int) -> tuple[int, dict[str, Any]]:
    """/healthz from this machine (details included), whatever its status code."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def test_an_unreachable_telegram_stops_nothing_else(database_url: str, tmp_path: Path) -> None:
    # Telegram blocked in the country: its API address answers nothing (a closed port).
    telegram_port = _free_port()
    zalo_people = [f"zalo-{n}" for n in range(20)]
    telegram_people = [str(20_000 + n) for n in range(20)]
    migrated_with_urgent_bulletin(
        normalise_database_url(database_url),
        {Platform.zalo: zalo_people, Platform.telegram: telegram_people},
    )
    telegram = FakeTelegramAPI(port=telegram_port)
    port = _free_port()
    log = tmp_path / "serve.log"
    with FakeZaloAPI().running_in_thread() as zalo:
        for chat in zalo_people:
            zalo.register_chat(chat)
        env = _env(database_url, tmp_path, port)
        env.update(
            TELEGRAM_BOT_TOKEN=telegram.token,
            TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{telegram_port}",
            ZALO_BOT_TOKEN=zalo.token, ZALO_API_BASE_URL=zalo.base_url,
        )  # fmt: skip
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "haidang", "serve"], env=env, stdout=out, stderr=out
            )
        try:
            _until(lambda: _answers(port), 30, "serve to answer")
            _until(lambda: _health(port)[1]["parts"]["zalo"]["active"], 20, "Zalo to start")
            status, body = _health(port)
            # Degraded, not down: the part that cannot start says why, the rest is on.
            assert (status, body["status"]) == (200, "degraded"), body
            parts = body["parts"]
            assert parts["telegram"]["active"] is False and parts["telegram"]["retrying"]
            assert "retrying in" in parts["telegram"]["detail"]
            assert parts["web"]["active"] is True
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/login") as page:
                assert page.status == 200

            # The Zalo bot answers, and its sender delivers the storm warning.
            zalo.user_sends("zalo-new", "/start")
            _until(lambda: bool(zalo.sent_to("zalo-new")), 20, "Zalo to answer /start")
            _until(
                lambda: set(warnings_received(zalo)) == set(zalo_people), 30, "the warning on Zalo"
            )

            # Telegram's API appears: the part comes up by itself and sends what waited.
            with telegram.running_in_thread():
                _until(
                    lambda: _health(port)[1]["parts"]["telegram"]["active"] is True,
                    70, "Telegram to come up",
                )  # fmt: skip
                _until(
                    lambda: set(warnings_received(telegram)) == set(telegram_people),
                    30,
                    "the warning on Telegram",
                )
                assert _health(port)[1]["status"] == "ok"
            # Blocked again mid-run: polling fails, says so once, and carries on after.
            _until(lambda: "telegram: polling failed" in log.read_text(), 30, "a failed poll")
            time.sleep(2)
            with telegram.running_in_thread():
                telegram.user_sends(30_001, "/start")
                _until(lambda: bool(telegram.sent_to(30_001)), 30, "Telegram to answer again")
                # Stopped while both APIs answer, so shutdown's last calls reach them.
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    text = log.read_text()
    assert process.returncode == 0, text
    assert text.count("telegram: cannot start") == 1, text  # once per change of reason
    assert "telegram: on (" in text and "after retrying" in text
    assert text.count("telegram: polling failed") == 1, text
    assert "Traceback" not in text and telegram.token not in text


def _answers(port: int) -> bool:
    try:
        _health(port)
    except OSError:
        return False
    return True
