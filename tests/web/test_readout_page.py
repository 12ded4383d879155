"""The radio read-out where officials and relays get it: the bulletin page, its JSON, the
CLI, and the public text next to the CAP alert."""

from __future__ import annotations

import datetime as dt
import html
import json
from zoneinfo import ZoneInfo

from broadcasts import readout
from broadcasts.readout import Place
from db.models import Priority
from tests.broadcasts.engine import NOW
from tests.cap import approved, cancel
from tests.conftest import Database
from tests.test_cli import cli_env, haidang
from tests.web.dashboard_helpers import Client, make_officials
from tests.web.test_cap_feeds import LATER, app_for, get

__all__ = ["cli_env"]  # the fixture, imported for pytest

TITLE = "Thông báo gió mạnh trên biển"
WIND = "Gió mạnh cấp 6, biển động. Tàu thuyền về nơi trú ẩn an toàn trước 17 giờ."
EXPIRES = dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.UTC)
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _expected(bulletin_id: int, expires_at: dt.datetime = EXPIRES) -> dict[str, object]:
    relay = readout.build(
        TITLE, WIND, priority=Priority.urgent, places=[Place("Cát Hải", "Hải Phòng")],
        expires_at=expires_at, tz=TZ,
    )  # fmt: skip
    assert relay is not None
    return readout.as_json(bulletin_id, relay)


async def test_page_and_json_show_the_readout_to_those_who_see_the_bulletin(
    seeded: Database,
) -> None:
    urgent = await approved(seeded, urgent=True, title=TITLE, body=WIND, expires_at=EXPIRES)
    routine = await approved(seeded, title="Lịch họp tổ đoàn kết", body="Họp lúc 8 giờ.")
    await make_officials(seeded)
    app = app_for(seeded)
    expected = _expected(urgent)
    assert expected["short_chars"] == 159

    async with Client(app) as editor:
        await editor.login("editor")
        page = await editor.get(f"/dashboard/bulletins/{urgent}")
        assert page.status_code == 200
        assert 'id="readout"' in page.text
        assert "Bản đọc cho đài duyên hải / VMS" in page.text
        assert f'<code id="readout-short">{html.escape(str(expected["short"]))}</code>' in page.text
        assert "159/160 ký tự" in page.text
        assert html.escape(str(expected["spoken"])) in page.text
        seconds = round(float(str(expected["spoken_seconds"])))
        assert f"Thời lượng đọc ước tính: khoảng {seconds} giây" in page.text
        assert f'href="/dashboard/bulletins/{urgent}/readout.json"' in page.text

        answer = await editor.get(f"/dashboard/bulletins/{urgent}/readout.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.json() == expected
        assert answer.json()["short_limit"] == 160 and answer.json()["spoken_seconds"] <= 60

        # A routine bulletin has no read-out: no section, and the JSON is not there.
        plain = await editor.get(f"/dashboard/bulletins/{routine}")
        assert plain.status_code == 200 and 'id="readout"' not in plain.text
        assert (await editor.get(f"/dashboard/bulletins/{routine}/readout.json")).status_code == 404

    # The commune's own editor sees it; another commune's editor gets what the page gives.
    async with Client(app) as local, Client(app) as other:
        await local.login("xa-cathai")
        assert (await local.get(f"/dashboard/bulletins/{urgent}/readout.json")).json() == expected
        await other.login("xa-khac")
        page_status = (await other.get(f"/dashboard/bulletins/{urgent}")).status_code
        json_answer = await other.get(f"/dashboard/bulletins/{urgent}/readout.json")
        assert page_status in (403, 404)
        assert json_answer.status_code == page_status
        assert "Khu vuc" not in json_answer.text

    async with Client(app) as nobody:
        anonymous = await nobody.get(f"/dashboard/bulletins/{urgent}/readout.json")
        assert anonymous.status_code == 401


async def test_public_text_for_live_approved_urgent_warnings_only(seeded: Database) -> None:
    live = await approved(seeded, urgent=True, title=TITLE, body=WIND, expires_at=EXPIRES)
    unapproved = await approved(seeded, urgent=True, title=TITLE, body=WIND, approve=False)
    routine = await approved(seeded, title=TITLE, body=WIND)
    weather = await approved(seeded, title=TITLE, body=WIND, topic="thoi-tiet")
    cancelled = await approved(seeded, urgent=True, title=TITLE, body=WIND)
    await cancel(seeded, cancelled, NOW + dt.timedelta(hours=1))
    past = await approved(seeded, urgent=True, body=WIND, expires_at=LATER - dt.timedelta(hours=1))
    app = app_for(seeded)

    response = await get(app, f"/cap/alerts/{live}.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=60"
    expected = _expected(live)
    assert response.text == f"{expected['short']}\n\n{expected['spoken']}\n"
    # Nothing to relay before approval, for routine news (a weather bulletin that is not
    # urgent has a CAP alert but no read-out), once cancelled, or past its expiry.
    for other in (unapproved, routine, weather, cancelled, past, 999_999):
        assert (await get(app, f"/cap/alerts/{other}.txt")).status_code == 404, other
    assert (await get(app, f"/cap/alerts/{weather}.xml")).status_code == 200


def test_cli_prints_the_readout(cli_env: dict[str, str]) -> None:
    env = cli_env
    assert haidang("db", "upgrade", env=env).returncode == 0
    for username, role, area in (("lan", "commune_editor", "11914"),):
        added = haidang(
            "officials", "add", username, "--role", role, "--area", area, "--password-stdin",
            env=env, stdin="một mật khẩu dài\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    # 18:00 local time the day after tomorrow: an expiry still ahead whenever this runs.
    day = (dt.datetime.now(TZ) + dt.timedelta(days=2)).date()
    expires = dt.datetime.combine(day, dt.time(18, 0), TZ)
    urgent = haidang(
        "bulletin", "create", "--title", TITLE, "--body", WIND, "--area", "11914", "--urgent",
        "--expires", expires.isoformat(), "--by", "lan", env=env,
    )  # fmt: skip
    routine = haidang(
        "bulletin", "create", "--title", "Họp tổ", "--body", "Họp lúc 8 giờ.", "--area", "11914",
        "--by", "lan", env=env,
    )  # fmt: skip
    assert urgent.returncode == 0 and routine.returncode == 0, urgent.stderr + routine.stderr
    urgent_id, routine_id = int(urgent.stdout), int(routine.stdout)

    as_json = haidang("bulletin", "readout", str(urgent_id), "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    expected = _expected(urgent_id, expires)
    assert json.loads(as_json.stdout) == expected

    as_text = haidang("bulletin", "readout", str(urgent_id), env=env)
    assert as_text.returncode == 0, as_text.stderr
    lines = as_text.stdout.splitlines()
    assert lines[0] == "short (159/160 characters):"
    assert lines[1] == expected["short"]
    assert lines[2].startswith("spoken (about ") and lines[2].endswith(" s of 60):")
    assert lines[3] == expected["spoken"]

    none = haidang("bulletin", "readout", str(routine_id), env=env)
    assert none.returncode == 1
    assert "routine: only urgent bulletins have a read-out" in none.stderr
    missing = haidang("bulletin", "readout", "999999", "--json", env=env)
    assert missing.returncode == 1 and "no bulletin 999999" in missing.stderr
