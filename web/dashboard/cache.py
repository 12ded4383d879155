"""A small time-limited cache for figures that cost a pass over the whole audience."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class Cached(Generic[V]):
    value: V
    computed_at: float  # the cache's clock (monotonic seconds) when `value` was computed


class TtlCache(Generic[V]):
    """Values computed at most once per `ttl` seconds per key, in this process.

    Concurrent misses of one key share a single computation (the first caller's), so a
    dozen officials opening the same page at once cost one count, not twelve. At most
    `max_entries` keys are kept (least recently used go first). Failures are not cached.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, Cached[V]] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[Cached[V]]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[V]]) -> Cached[V]:
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.computed_at < self.ttl:
            self._entries.move_to_end(key)
            return entry
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this caller was cancelled
            # The caller computing it went away (a closed connection): compute it here.
            return await self.get(key, compute)
        future: asyncio.Future[Cached[V]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            entry = Cached(await compute(), self.clock())
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            # Nobody else may be waiting; mark the exception as seen so asyncio stays quiet.
            future.exception()
            raise
        finally:
            del self._pending[key]
        future.set_result(entry)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        self._entries.clear()
