"""What a running part of the service (a bot, the scheduler, a sender) reports about itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartStatus:
    """Whether one part of the service runs, and why not when it does not."""

    active: bool
    detail: str
    # Configured but failing for now (a platform unreachable, a token refused); it tries
    # again by itself, and /healthz reports the service as degraded meanwhile.
    retrying: bool = False
