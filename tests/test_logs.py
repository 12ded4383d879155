"""The log keeps secrets out: a refused token in a start-up traceback, chat libraries' DEBUG."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import schema
from haidang import logs
from haidang.settings import normalise_database_url
from tests.bot.harness import free_port
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_serve import _env, _health, _wait_for_health

# Shaped like a real token (digits, colon, 35 characters), so the pattern would know it too;
# the fake expects another one and answers 401, which PTB reports quoting this token.
REFUSED_TOKEN = "8123456789:AAHrefusedTokenRefusedTokenRefused12"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    levels = {
        name: logging.getLogger(name).level for name in ("", *logs.THIRD_PARTY, *logs.AT_WARNING)
    }
    handlers = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    logs._installed.clear()
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_refused_token_never_reaches_the_log(database_url: str, tmp_path: Path) -> None:
    # A refused token no longer stops the service (the part retries), so the test waits
    # for /healthz to name the failure, stops the service and reads everything it logged.
    schema.upgrade(normalise_database_url(database_url))
    port = free_port()
    with FakeTelegramAPI().running_in_thread() as api:
        env = _env(database_url, tmp_path, port)
        env.update(TELEGRAM_BOT_TOKEN=REFUSED_TOKEN, TELEGRAM_API_BASE_URL=api.base_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "haidang", "serve"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            status, body = _wait_for_health(port, process)
            # The web part answers first; the bot's first attempt may still be under way.
            deadline = time.monotonic() + 30
            while not body["parts"]["telegram"]["retrying"] and time.monotonic() < deadline:  # type: ignore[index]
                time.sleep(0.2)
                status, body = _health(port)
            assert status == 200, body
            telegram = body["parts"]["telegram"]  # type: ignore[index]
            assert telegram["retrying"] is True, body
            assert "InvalidToken" in telegram["detail"], body
            assert REFUSED_TOKEN.split(":", 1)[1] not in json.dumps(body)
        finally:
            process.terminate()
            stdout, stderr = process.communicate(timeout=30)
    output = stdout + stderr
    assert "telegram: cannot start (InvalidToken" in output, output  # reported once, short
    assert REFUSED_TOKEN not in output
    assert REFUSED_TOKEN.split(":", 1)[1] not in output
    assert "Traceback" not in stderr


def test_a_token_in_a_logged_traceback_is_redacted(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO")
    try:
        raise RuntimeError(f"The token `{REFUSED_TOKEN}` was rejected by the server.")
    except RuntimeError:
        logging.getLogger("haidang.serve").exception("start-up failed")
    err = capsys.readouterr().err
    assert "Traceback" in err and "[TOKEN]" in err
    assert REFUSED_TOKEN.split(":", 1)[1] not in err


def test_chat_libraries_stop_at_info_even_at_debug(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG")
    update = "Update(message=Message(chat=Chat(id=912345678, first_name='Nguyễn Văn A')))"
    for name in logs.THIRD_PARTY:
        logging.getLogger(f"{name}.inner").debug("received %s", update)
    logging.getLogger("haidang.serve").debug("our own debug line")
    logging.getLogger("telegram.ext").info("an info line stays")
    err = capsys.readouterr().err
    assert "Nguyễn Văn A" not in err
    assert "912345678" not in err
    assert "our own debug line" in err
    assert "an info line stays" in err


def test_sql_statements_and_their_parameters_stay_out_of_the_log(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLAlchemy echoes statements and parameters (names, chat ids) at INFO; the CLI's
    # output once filled with them after another command had configured logging.
    logs.configure("INFO")
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT ... (%s,)", "0912345678")
    logging.getLogger("sqlalchemy.engine.Engine").warning("a warning stays")
    err = capsys.readouterr().err
    assert "SELECT" not in err
    assert "a warning stays" in err
