"""A shop's rate limit as GCRA (the generic cell rate algorithm): one timestamp of state, easy to persist.

Only the holder of a connection's sync lease calls that shop, so the state can live in the holder's memory
during a run and in the database between runs (``channel_connections.rate_next_at``): the limit then holds
across every worker process, without a shared limiter service. Hand-written because the libraries that do GCRA
(``limits``, ``aiolimiter``) keep their state in memory or in Redis, not in a row we already lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from agrimarket.channels.base import RateLimit


class Gcra:
    """``acquire()`` returns when the next call may go out. ``tat`` (theoretical arrival time, epoch seconds) is
    the whole state: a call at ``now`` is allowed when ``tat − now ≤ (burst − 1) × interval``."""

    def __init__(
        self,
        limit: RateLimit,
        next_at: datetime | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = limit.interval
        self.tolerance = limit.interval * (limit.burst - 1)
        self._clock = clock
        self._sleep = sleep
        self._tat = next_at.timestamp() if next_at is not None else 0.0
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting for the limit, for reports

    async def acquire(self) -> None:
        async with self._lock:  # calls in flight at once still take their turns one by one
            while True:
                now = self._clock()
                tat = max(self._tat, now)
                wait = tat - self.tolerance - now
                if wait <= 0:
                    self._tat = tat + self.interval
                    return
                self.waited += wait
                await self._sleep(wait)

    def hold_until(self, instant: float) -> None:
        """The platform said to wait (``Retry-After``): no call before ``instant``, then the burst starts over."""
        self._tat = max(self._tat, instant + self.tolerance)

    @property
    def next_at(self) -> datetime | None:
        return datetime.fromtimestamp(self._tat, UTC) if self._tat > 0 else None
