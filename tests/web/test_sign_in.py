"""Sign-in: sign-out ends the session on the server; guessing is slowed, never a lock-out,
and no refusal tells which names exist."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import statistics
import time

from fastapi import FastAPI
from sqlalchemy import func, select

from db.models import AuditEntry, LoginThrottle, Official
from tests.conftest import Database
from tests.web.dashboard_helpers import PASSWORDS, Client, make_officials, settings
from web.dashboard import make_router
from web.dashboard.auth import COOKIE_NAME, DEVICE_COOKIE

START = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)


class Clock:
    """The dashboard's `now`, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def _app(database: Database, clock: Clock) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(database.sessions, settings(), clock=clock))
    return app


async def _try(client: Client, username: str, password: str) -> int:
    await client.get("/dashboard/login")
    response = await client.post("/dashboard/login", {"username": username, "password": password})
    return response.status_code


async def test_a_copied_cookie_is_worthless_after_sign_out(seeded: Database) -> None:
    ids = await make_officials(seeded)
    app = _app(seeded, Clock())
    async with Client(app) as editor, Client(app) as thief, Client(app) as desk:
        await editor.login("editor")
        await desk.login("editor")  # the same official on a second computer
        copied = editor.http.cookies[COOKIE_NAME]
        thief.http.cookies.set(COOKIE_NAME, copied)
        assert (await thief.get("/dashboard/bulletins")).status_code == 200
        assert (await editor.post("/dashboard/logout")).status_code == 303

        replay = await thief.get("/dashboard/bulletins")
        assert replay.status_code == 303
        assert replay.headers["location"].startswith("/dashboard/login")
        # Sign-out ends every session of the official, not only the browser's own.
        assert (await desk.get("/dashboard/bulletins")).status_code == 303
        # Signing in again works and gives a new session the old cookie does not share.
        assert (await editor.login("editor")).status_code == 303
        assert (await editor.get("/dashboard/bulletins")).status_code == 200
        assert (await thief.get("/dashboard/bulletins")).status_code == 303
    async with seeded.sessions() as session:
        logouts = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "official.logout", AuditEntry.official_id == ids["editor"])
        )
    assert logouts == 1


async def test_guessing_delays_the_guesser_but_not_the_official_at_their_desk(
    seeded: Database,
) -> None:
    await make_officials(seeded)
    clock = Clock()
    app = _app(seeded, clock)
    right = PASSWORDS["editor"]
    async with Client(app, client_ip="203.0.113.9") as desk:
        # The official signed in from this browser last week: it holds a device cookie.
        assert (await desk.login("editor")).status_code == 303
        assert DEVICE_COOKIE in desk.http.cookies
        await desk.post("/dashboard/logout")

    async with Client(app, client_ip="198.51.100.66") as attacker:
        answers = [await _try(attacker, "editor", f"doan-sai-{n}") for n in range(30)]
        assert set(answers) == {401}
        # The attacker is now delayed: even the right password is refused, unchecked.
        assert await _try(attacker, "editor", right) == 401

    # Many other addresses guessing the same name (a botnet) delay every new browser too.
    for n in range(12):
        async with Client(app, client_ip=f"192.0.2.{n + 1}") as bot:
            assert await _try(bot, "editor", f"sai-{n}") == 401
    async with Client(app, client_ip="203.0.113.77") as new_browser:
        assert await _try(new_browser, "editor", right) == 401

    # The official at their usual desk signs in at once: the device cookie is judged by
    # its own failures only, and it has none.
    async with Client(app, client_ip="203.0.113.9") as desk_again:
        desk_again.http.cookies.set(DEVICE_COOKIE, desk.http.cookies[DEVICE_COOKIE])
        assert (await desk_again.login("editor")).status_code == 303
        assert (await desk_again.get("/dashboard/bulletins")).status_code == 200

    # No lock: the delays run out (at most 15 minutes) and a new browser gets in.
    clock.now += dt.timedelta(minutes=16)
    async with Client(app, client_ip="203.0.113.77") as new_browser:
        assert await _try(new_browser, "editor", right) == 303

    # The attacker's own growing delay does not let it guess again in the meantime.
    async with Client(app, client_ip="198.51.100.66") as attacker:
        assert await _try(attacker, "editor", "mot-lan-nua") == 401
        clock.now += dt.timedelta(seconds=30)
        assert await _try(attacker, "editor", right) == 401

    # A known browser is judged by its own failures: past five it waits as well.
    async with Client(app, client_ip="203.0.113.9") as desk_again:
        desk_again.http.cookies.set(DEVICE_COOKIE, desk.http.cookies[DEVICE_COOKIE])
        assert {await _try(desk_again, "editor", f"go-nham-{n}") for n in range(6)} == {401}
        assert await _try(desk_again, "editor", right) == 401
        clock.now += dt.timedelta(minutes=16)
        assert await _try(desk_again, "editor", right) == 303

    async with seeded.sessions() as session:
        delayed: list[object] = list(
            await session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "official.login_failed")
            )
        )
        lockouts = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "official.lockout")
        )
    assert any(d == {"delayed": True} for d in delayed)
    assert lockouts == 0


_CSRF = re.compile(r'(name="csrf_token" value=")[^"]*(")')


def _shape(html: str, username: str) -> str:
    """The page without what differs by design: the fresh CSRF token, the typed name."""
    return _CSRF.sub(r"\1…\2", html).replace(f'value="{username}"', 'value="…"')


async def test_every_refusal_looks_and_takes_the_same(seeded: Database) -> None:
    ids = await make_officials(seeded)
    clock = Clock()
    app = _app(seeded, clock)
    async with seeded.sessions.begin() as session:
        (await session.get_one(Official, ids["xa-khac"])).active = False

    async def answer(ip: str, username: str, password: str) -> tuple[int, str, float]:
        async with Client(app, client_ip=ip) as client:
            await client.get("/dashboard/login")
            started = time.perf_counter()
            response = await client.post(
                "/dashboard/login", {"username": username, "password": password}
            )
            return (
                response.status_code,
                _shape(response.text, username),
                time.perf_counter() - started,
            )

    # A delayed name: another address has guessed it too often.
    for n in range(4):
        await answer("198.51.100.5", "approver", f"sai-{n}")
    cases = {
        "unknown": ("203.0.113.1", "khong-co-ai", "mat-khau-bat-ky"),
        "wrong": ("203.0.113.2", "editor", "mat-khau-sai"),
        "inactive": ("203.0.113.3", "xa-khac", PASSWORDS["xa-khac"]),
        "delayed": ("198.51.100.5", "approver", PASSWORDS["approver"]),
    }
    times: dict[str, list[float]] = {kind: [] for kind in cases}
    bodies: dict[str, set[tuple[int, str]]] = {kind: set() for kind in cases}
    for round_ in range(5):
        for kind, (ip, username, password) in cases.items():
            # A new address each round keeps "unknown" and "wrong" from becoming delayed.
            address = ip if kind == "delayed" else f"{ip}{round_}"
            status, body, took = await answer(address, username, password)
            bodies[kind].add((status, body))
            times[kind].append(took)
    shapes = set().union(*bodies.values())
    assert len(shapes) == 1, "the four refusals differ"
    assert next(iter(shapes))[0] == 401
    # Each refusal checks one password hash, so their times are alike; the bound is wide
    # (a hash takes tens of milliseconds, the 10× gap found was 15 ms against 136 ms).
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    slowest, fastest = max(medians.values()), min(medians.values())
    assert slowest < fastest * 2.5, medians


async def test_parallel_failures_are_each_counted(seeded: Database) -> None:
    await make_officials(seeded)
    app = _app(seeded, Clock())

    async def guess(n: int) -> int:
        async with Client(app, client_ip="198.51.100.44") as client:
            return await _try(client, "root", f"sai-{n}")

    assert set(await asyncio.gather(*(guess(n) for n in range(10)))) == {401}
    async with seeded.sessions() as session:
        counts = sorted((await session.scalars(select(LoginThrottle.failures))).all())
    # The pair, the client and the name each saw all ten failures, none lost to a race.
    assert counts == [10, 10, 10]
