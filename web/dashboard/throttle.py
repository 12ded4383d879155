"""Sign-in throttle: growing delays per client, per client and name, and per name.

A hard per-account lock let anyone lock any official out with five wrong passwords, so
failures slow guessing down instead, following OWASP's device-cookie scheme: a browser
that has signed in as a name before carries a signed device cookie and is judged only by
its own failures, so a crowd of strangers guessing an official's password delays the
strangers (and new browsers) but never the official at their usual desk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import insert_for
from db.models import LoginThrottle

FIRST_DELAY = dt.timedelta(seconds=1)  # the delay after the first failure past `free`
KEEP = dt.timedelta(days=1)  # rows idle this long are deleted


@dataclass(frozen=True)
class Rule:
    """How one kind of key is throttled."""

    kind: str
    free: int  # failures before any delay
    cap: dt.timedelta  # the delay doubles per failure up to this
    forget: dt.timedelta  # failures are forgotten this long after the last one


# A known browser (device cookie for this name): its own failures only.
DEVICE = Rule("device", free=5, cap=dt.timedelta(minutes=15), forget=dt.timedelta(hours=1))
# Everyone else: one client guessing one name, one client spraying many names, and many
# clients guessing one name.
PAIR = Rule("pair", free=3, cap=dt.timedelta(minutes=15), forget=dt.timedelta(hours=1))
CLIENT = Rule("client", free=20, cap=dt.timedelta(minutes=15), forget=dt.timedelta(hours=1))
NAME = Rule("name", free=10, cap=dt.timedelta(minutes=15), forget=dt.timedelta(minutes=30))


@dataclass(frozen=True)
class Key:
    rule: Rule
    digest: str  # an HMAC of the kind and value: no address or name stored in clear


def keys_for(secret: str, *, client: str, name: str, device: str | None) -> list[Key]:
    """The keys one attempt counts against: its device alone, or client, pair and name."""

    def key(rule: Rule, value: str) -> Key:
        mac = hmac.new(secret.encode(), f"{rule.kind}:{value}".encode(), hashlib.sha256)
        return Key(rule, mac.hexdigest())

    if device is not None:
        return [key(DEVICE, f"{device}:{name}")]
    return [key(PAIR, f"{client}:{name}"), key(CLIENT, client), key(NAME, name)]


def delay(rule: Rule, failures: int) -> dt.timedelta:
    """How long after its `failures`-th failure a key waits before the next attempt."""
    past = failures - rule.free
    if past <= 0:
        return dt.timedelta(0)
    grown: dt.timedelta = FIRST_DELAY * 2 ** min(past - 1, 30)
    return min(grown, rule.cap)


async def waiting(session: AsyncSession, keys: Sequence[Key], now: dt.datetime) -> bool:
    """True while any of the keys is still in its delay: the attempt is refused unchecked."""
    found = await session.scalar(
        select(func.count())
        .select_from(LoginThrottle)
        .where(LoginThrottle.key.in_([k.digest for k in keys]), LoginThrottle.wait_until > now)
    )
    return bool(found)


async def record_failure(session: AsyncSession, keys: Sequence[Key], now: dt.datetime) -> None:
    """Count a failure against each key; the count is raised in one statement, so parallel
    attempts each see their own number and none is lost."""
    await session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - KEEP))
    insert = insert_for(session)
    for key in keys:
        statement = (
            insert(LoginThrottle)
            .values(key=key.digest, failures=1, last_failure_at=now, wait_until=now)
            .on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "failures": case(
                        (LoginThrottle.last_failure_at < now - key.rule.forget, 1),
                        else_=LoginThrottle.failures + 1,
                    ),
                    "last_failure_at": now,
                },
            )
            .returning(LoginThrottle.failures)
        )
        failures: int = (await session.execute(statement)).scalar_one()
        wait = delay(key.rule, failures)
        if wait:
            await session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key.digest)
                .values(wait_until=now + wait)
            )


async def forget(session: AsyncSession, keys: Sequence[Key]) -> None:
    """After a success: the pair's or device's failures go; the client's and the name's
    stay, so one right guess among many does not clear a spraying client's record."""
    mine = [k.digest for k in keys if k.rule in (PAIR, DEVICE)]
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(mine)))
