"""`haidang serve` as a real process: health on SQLite with no token, logs, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from db import schema
from haidang.settings import normalise_database_url


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
