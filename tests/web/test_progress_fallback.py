"""The follow-up page's "Chuỗi dự phòng": an urgent bulletin's fallback steps with their counts."""

from __future__ import annotations

from broadcasts import fallback
from tests.broadcasts.test_fallback import CHAIN_MINUTES, MINUTE, SENT_AT, build_world
from tests.conftest import Database
from tests.web.dashboard_helpers import Client, make_app, make_officials


def _cell(row: str, field: str) -> str:
    return row.split(f'data-field="{field}">')[1].split("<")[0]


async def test_the_page_lists_the_chains_steps(seeded: Database) -> None:
    await make_officials(seeded)
    world = await build_world(seeded)
    async with seeded.sessions.begin() as session:
        await fallback.advance(session, SENT_AT + CHAIN_MINUTES * MINUTE)
    async with Client(make_app(seeded)) as editor:
        await editor.login("editor")
        page = await editor.get(f"/dashboard/bulletins/{world.bulletin_id}/progress")
    assert page.status_code == 200
    assert "<h2>Chuỗi dự phòng</h2>" in page.text
    zns = page.text.split('<tr class="fallback-step" data-step="1" data-platform="zns">')[1]
    zns = zns.split("</tr>")[0]
    sms = page.text.split('<tr class="fallback-step" data-step="2" data-platform="sms">')[1]
    sms = sms.split("</tr>")[0]
    phones = {p.phone for p in world.people if p.phone and not p.acked}
    assert "Zalo ZNS" in zns and "SMS" in sms
    assert _cell(zns, "created") == _cell(zns, "pending") == f"{len(phones):,}".replace(",", ".")
    assert _cell(zns, "not_yet_due") == "0"
    # Everyone reached by ZNS waits for SMS, except those subscribed by SMS.
    waiting = [p for p in world.people if p.phone and not p.acked and p.kind != "sms"]
    assert _cell(sms, "created") == "0"
    assert _cell(sms, "not_yet_due") == f"{len(waiting):,}".replace(",", ".")


async def test_no_chain_no_section(seeded: Database) -> None:
    await make_officials(seeded)
    world = await build_world(seeded, platforms=())
    async with Client(make_app(seeded)) as editor:
        await editor.login("editor")
        page = await editor.get(f"/dashboard/bulletins/{world.bulletin_id}/progress")
    assert page.status_code == 200
    assert "Chuỗi dự phòng" not in page.text
