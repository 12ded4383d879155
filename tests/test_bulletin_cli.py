"""`haidang bulletin`, run as a real process against a fresh database on each backend."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import itertools
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from db.engine import make_engine, make_sessionmaker
from db.models import DeliveryState
from haidang.cli import app
from haidang.settings import normalise_database_url
from tests.broadcasts.test_reports import Receipts, build_receipts
from tests.conftest import Database
from tests.test_cli import cli_env, haidang

__all__ = ["cli_env"]  # the fixture, imported for pytest

PASSWORD = "một mật khẩu dài\n"
LOCAL_06 = re.compile(r"^  (\d{4}-\d\d-\d\d)T06:00\+07:00$")


def _official(env: dict[str, str], username: str, role: str, area: str) -> None:
    added = haidang(
        "officials", "add", username, "--role", role, "--area", area, "--password-stdin",
        env=env, stdin=PASSWORD,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def test_create_approve_schedule_status_cancel_report(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = cli_env
    assert haidang("db", "upgrade", env=env).returncode == 0
    _official(env, "lan", "commune_editor", "11914")  # writes for Đặc khu Cát Hải
    _official(env, "minh", "province_editor", "p31")  # approves for Hải Phòng

    created = haidang(
        "bulletin", "create", "--title", "Bão số 3", "--body", "Tàu thuyền vào nơi tránh trú.",
        "--area", "c11914", "--urgent", "--role", "fisherman", "--platform", "telegram",
        "--by", "lan", "--json", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer == {"id": answer["id"], "state": "pending_approval"}
    assert isinstance(answer["id"], int)
    bulletin = str(answer["id"])

    own = haidang("bulletin", "approve", bulletin, "--by", "lan", env=env)
    assert own.returncode == 1
    assert own.stderr.startswith("error: ") and "four-eyes" in own.stderr

    approved = haidang("bulletin", "approve", bulletin, "--by", "minh", env=env)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"approved bulletin {bulletin}"

    # An update of the approved warning (published in CAP as an Update); a second
    # official approves it like any bulletin.
    update = haidang(
        "bulletin", "create", "--title", "Bão số 3 đổi hướng", "--body", "Ở lại nơi trú ẩn.",
        "--area", "11914", "--urgent", "--supersedes", bulletin, "--by", "lan", env=env,
    )  # fmt: skip
    assert update.returncode == 0, update.stderr
    not_a_warning = haidang(
        "bulletin", "create", "--title", "T", "--body", "B", "--area", "11914",
        "--supersedes", bulletin, "--by", "lan", env=env,
    )  # fmt: skip
    assert not_a_warning.returncode == 1
    assert "must be urgent or of the weather topic" in not_a_warning.stderr
    approved_update = haidang("bulletin", "approve", update.stdout.strip(), "--by", "minh", env=env)
    assert approved_update.returncode == 0, approved_update.stderr

    outside = haidang(
        "bulletin", "create", "--title", "T", "--body", "B", "--area", "21040", "--by", "lan",
        env=env,
    )  # fmt: skip
    assert outside.returncode == 1
    assert "lan may not write bulletins for Xã Bình Sơn (21040)" in outside.stderr

    unknown_area = haidang(
        "bulletin", "create", "--title", "T", "--body", "B", "--area", "99999", "--by", "lan",
        env=env,
    )  # fmt: skip
    assert unknown_area.returncode == 1
    assert "unknown area code: 99999" in unknown_area.stderr

    nobody = haidang("bulletin", "cancel", bulletin, "--by", "nobody", env=env)
    assert nobody.returncode == 1
    assert "error: unknown official: nobody" in nobody.stderr

    # A time without a zone is local: 06:00 in Hà Nội time, not 06:00 UTC (13:00 local).
    past = haidang(
        "bulletin", "schedule", bulletin, "--at", "2020-01-01T06:00", "--by", "minh", env=env
    )
    assert past.returncode == 1
    assert "2020-01-01 06:00 is already past" in past.stderr

    bad_cron = haidang(
        "bulletin", "schedule", bulletin, "--cron", "61 6 * * *", "--by", "minh", env=env
    )
    assert bad_cron.returncode == 1
    assert "'61 6 * * *'" in bad_cron.stderr

    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    cron = haidang(
        "bulletin", "schedule", bulletin, "--cron", "0 6 * * *", "--until", until,
        "--by", "minh", env=env,
    )  # fmt: skip
    assert cron.returncode == 0, cron.stderr
    head, *lines = cron.stdout.splitlines()
    assert head == f"scheduled bulletin {bulletin}: '0 6 * * *' in Asia/Ho_Chi_Minh; next runs:"
    days = [dt.date.fromisoformat(match[1]) for line in lines if (match := LOCAL_06.match(line))]
    assert len(days) == len(lines) == 3, cron.stdout
    assert [b - a for a, b in itertools.pairwise(days)] == [dt.timedelta(days=1)] * 2

    status = haidang("bulletin", "status", bulletin, "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {"id", "state", "counts", "acknowledgements", "ack_rate", "runs"} <= set(report)
    assert report["id"] == int(bulletin)
    assert report["state"] == "scheduled"
    assert report["title"] == "Bão số 3"
    assert report["counts"] == {state.value: 0 for state in DeliveryState}
    assert (report["acknowledgements"], report["ack_rate"], report["runs"]) == (0, None, [])

    cancelled = haidang("bulletin", "cancel", bulletin, "--by", "minh", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancelled bulletin {bulletin}: 0 deliveries cancelled"

    text = haidang("bulletin", "status", bulletin, env=env)
    assert text.returncode == 0, text.stderr
    assert f"bulletin {bulletin} (urgent): Bão số 3" in text.stdout
    assert "state: cancelled" in text.stdout

    target = tmp_path / "reports" / "bao-so-3.csv"
    written = haidang("bulletin", "report", bulletin, "--csv", str(target), env=env)
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == f"wrote 0 areas to {target}"
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *rows = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    assert header[:3] == ["mã", "xã/phường", "tỉnh/thành"]
    assert header[-2:] == ["đã nhận", "tỉ lệ đã nhận"]
    assert rows == []
    assert [p.name for p in target.parent.iterdir()] == ["bao-so-3.csv"]  # no temporary left

    missing = haidang("bulletin", "report", "9999", "--csv", str(target), env=env)
    assert missing.returncode == 1
    assert "error: no bulletin 9999" in missing.stderr


def test_reject_sends_it_back(cli_env: dict[str, str]) -> None:
    env = cli_env
    assert haidang("db", "upgrade", env=env).returncode == 0
    _official(env, "lan", "commune_editor", "11914")
    _official(env, "minh", "approver", "p31")
    created = haidang(
        "bulletin", "create", "--title", "Họp dân", "--body", "-", "--area", "11914",
        "--expires", "2099-01-01T00:00+07:00", "--by", "lan", env=env, stdin="Họp lúc 8 giờ.\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    bulletin = created.stdout.strip()
    assert bulletin.isdigit()
    rejected = haidang(
        "bulletin", "reject", bulletin, "--by", "minh", "--comment", "Thiếu địa điểm", env=env
    )
    assert rejected.returncode == 0, rejected.stderr
    status = json.loads(haidang("bulletin", "status", bulletin, "--json", env=env).stdout)
    assert (status["state"], status["priority"], status["ack_rate"]) == (
        "rejected",
        "routine",
        None,
    )


def test_schedule_needs_exactly_one_mode_and_iso_times(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    for extra, message in [
        ([], "choose exactly one of --now, --at or --cron"),
        (["--now", "--cron", "0 6 * * *"], "(got --now and --cron)"),
        (["--at", "tomorrow"], "--at is not an ISO date-time: 'tomorrow'"),
    ]:
        result = runner.invoke(app, ["bulletin", "schedule", "1", "--by", "minh", *extra], env=env)
        assert result.exit_code == 1, result.output
        assert message in result.output
    assert not (tmp_path / "x.db").exists()  # refused before touching the database


def test_status_and_report_of_a_bulletin_with_runs(tmp_path: Path) -> None:
    # In-process on SQLite: the rows come from the report tests' builder, which needs a
    # session on the same database the CLI reads.
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": url}
    runner = CliRunner()
    upgraded = runner.invoke(app, ["db", "upgrade"], env=env)
    assert upgraded.exit_code == 0, upgraded.output

    async def build() -> Receipts:
        engine = make_engine(normalise_database_url(url))
        try:
            return await build_receipts(Database("sqlite", url, engine, make_sessionmaker(engine)))
        finally:
            await engine.dispose()

    ids = asyncio.run(build())
    status = runner.invoke(app, ["bulletin", "status", str(ids.bulletin_id)], env=env)
    assert status.exit_code == 0, status.output
    assert status.output.splitlines() == [
        f"bulletin {ids.bulletin_id} (urgent): Bão số 3",
        "state: sending",
        "deliveries: 1 pending, 14 sent, 3 failed, 1 blocked, 1 unknown, 1 cancelled",
        "failure reasons: chat_not_found 2, bad_request 1, blocked 1",
        "acknowledgements: 6 of 10 reached (60.0%)",
        f"run {ids.run1} at 2026-11-26T06:00+07:00 (done): 1 pending, 9 sent, 3 failed, "
        "1 blocked, 1 unknown; 4 acknowledged (44.4%)",
        f"run {ids.run2} at 2026-11-27T06:00+07:00 (sending): 5 sent, 1 cancelled; "
        "2 acknowledged (40.0%)",
        # The one bot's share: all of it (its taps: all but the one that names no bot).
        "bot telegram:default: 1 pending, 14 sent, 3 failed, 1 blocked, 1 unknown, "
        "1 cancelled; 10 reached; 5 acknowledged (50.0%)",
    ]
    as_json = runner.invoke(app, ["bulletin", "status", str(ids.bulletin_id), "--json"], env=env)
    runs = json.loads(as_json.output)["runs"]
    (bot,) = json.loads(as_json.output)["bots"]
    assert (bot["name"], bot["sent"], bot["acknowledgements"]) == ("default", 10, 5)
    assert [run["fire_at"] for run in runs] == [
        "2026-11-26T06:00:00+07:00",
        "2026-11-27T06:00:00+07:00",
    ]
    assert runs[0]["counts"]["sent"] == 9 and runs[0]["failure_reasons"]["chat_not_found"] == 2

    target = tmp_path / "communes.csv"
    written = runner.invoke(
        app, ["bulletin", "report", str(ids.bulletin_id), "--csv", str(target)], env=env
    )
    assert written.exit_code == 0, written.output
    header, *rows = csv.reader(io.StringIO(target.read_text(encoding="utf-8-sig"), newline=""))
    table = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert table["11914"]["xã/phường"] == "Đặc khu Cát Hải"
    assert (table["11914"]["đã gửi"], table["11914"]["tỉ lệ đã nhận"]) == ("9", "60.0%")
    assert table["11914.1"]["xã/phường"] == "Thôn Liên Minh"
