"""Process roles of `haidang serve` (web, worker, scheduler): which parts a process runs."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Role(enum.StrEnum):
    """What a process runs; `haidang serve` without --role runs all three."""

    web = "web"  # the web app: dashboard, library, audio pages and downloads, webhooks
    worker = "worker"  # bot front ends (polling, or webhook turns), senders, audio work
    scheduler = "scheduler"  # fires schedules into broadcast runs (one active: a lease)


ALL_ROLES = frozenset(Role)


class RoleError(ValueError):
    """A --role choice this deployment cannot run; the message says what to do."""


def chosen_roles(roles: Iterable[Role], *, sqlite: bool) -> frozenset[Role]:
    """The roles a process runs: those named (repeats allowed), or all when none is.

    Raises RoleError for a split (fewer than all roles) on SQLite: several processes
    share the work through leases and `FOR UPDATE SKIP LOCKED` claims in one PostgreSQL
    database; one SQLite file belongs to one process.
    """
    chosen = frozenset(roles) or ALL_ROLES
    if chosen != ALL_ROLES and sqlite:
        named = " ".join(f"--role {role.value}" for role in sorted(chosen))
        raise RoleError(
            f"`{named}` runs part of the service, for several processes sharing one "
            "PostgreSQL database; DATABASE_URL is SQLite, which one process must run alone. "
            "Run `haidang serve` without --role (every role in one process), or set "
            "DATABASE_URL=postgresql://… for every process."
        )
    return chosen
