"""The PostgreSQL connection-pool budget of one process, from the roles it runs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from bot.answers import MAX_TURNS
from haidang.roles import ALL_ROLES, Role
from haidang.settings import Settings

# (pool size, overflow) each role adds to a process's pool. A worker takes conversation
# turns (at most half its pool at once: PoolBudget.turns) beside each bot's sender (a claim
# ahead, outcome writes, its lease) and answers (outcome writes, adoption) and audio work;
# a web replica answers pages and keeps webhook updates; the scheduler ticks once a second.
ROLE_POOLS: dict[Role, tuple[int, int]] = {
    Role.web: (5, 5),
    Role.worker: (10, 10),
    Role.scheduler: (2, 0),
}


@dataclass(frozen=True)
class PoolBudget:
    """How many PostgreSQL connections one process may hold, and for how long it waits.

    `size` stay open; `overflow` more are opened under load and closed when returned.
    A process never holds more than `connections`: a unit of work finding none free waits
    up to `timeout_s`, then fails (and is retried by its loop)."""

    size: int
    overflow: int
    timeout_s: float
    recycle_s: int
    application_name: str  # shown in pg_stat_activity

    @property
    def connections(self) -> int:
        return self.size + self.overflow

    @property
    def turns(self) -> int:
        """Conversation turns taken at once in the process (each holds a connection): half
        the pool at most, so a crowd never takes the connections the senders, the
        scheduler and the answers' outcome writes need."""
        return max(1, min(MAX_TURNS, self.connections // 2))

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of db.engine.make_engine for a PostgreSQL URL."""
        return {
            "pool_size": self.size,
            "max_overflow": self.overflow,
            "pool_timeout": self.timeout_s,
            "pool_recycle": self.recycle_s,
            "pool_pre_ping": True,  # a connection dropped while idle is replaced at checkout
            "connect_args": {"server_settings": {"application_name": self.application_name}},
        }

    def describe(self) -> str:
        return (
            f"pool {self.size}+{self.overflow} connections (wait {self.timeout_s:g} s, "
            f"recycled after {self.recycle_s} s), {self.turns} turns at once, "
            f"application_name {self.application_name}"
        )


def pool_budget(settings: Settings, roles: Collection[Role] = ALL_ROLES) -> PoolBudget:
    """The pool of a process running `roles`: DB_POOL_SIZE / DB_MAX_OVERFLOW when set,
    else the sum of ROLE_POOLS over its roles (web 5+5, worker 10+10, scheduler 2+0)."""
    chosen = frozenset(roles) or ALL_ROLES
    size = sum(ROLE_POOLS[role][0] for role in chosen)
    overflow = sum(ROLE_POOLS[role][1] for role in chosen)
    names = "+".join(sorted(chosen)) if chosen != ALL_ROLES else "all"
    return PoolBudget(
        size=settings.db_pool_size if settings.db_pool_size is not None else size,
        overflow=settings.db_max_overflow if settings.db_max_overflow is not None else overflow,
        timeout_s=settings.db_pool_timeout_s,
        recycle_s=settings.db_pool_recycle_s,
        application_name=f"haidang-{names}",
    )
