"""Login throttling: wrong passwords counted per phone number and per IP address over a sliding window.

In-process, on purpose for the embedded default (one server process): no table, no migration, nothing to clean up.
With several server processes (PostgreSQL deployments) each keeps its own counts, so a guesser spread over N
processes gets N times the attempts; the per-phone limit still caps that at a few dozen guesses an hour against
an 8+ character password hashed with Argon2. Put the limit in the database, or in the proxy, before running many
processes on the open internet. (``limits`` would give the same window with a Redis backend; it is not a
dependency, and the window below is the twenty lines it would replace.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

PHONE_LIMIT = 5  # wrong passwords for one phone number…
IP_LIMIT = 20  # …or from one address (a shared mobile-carrier NAT serves many farmers: keep it loose)
WINDOW_SECONDS = 15 * 60
MAX_KEYS = 50_000  # memory bound: the oldest keys are forgotten first


@dataclass
class SlidingWindow:
    """At most ``limit`` hits per key within any ``window`` seconds."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        cutoff = self.clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str) -> float | None:
        """Seconds until one more attempt is allowed, or None when it is allowed now."""
        hits = self._recent(key)
        if hits is None or len(hits) < self.limit:
            return None
        return max(hits[0] + self.window - self.clock(), 1.0)

    def hit(self, key: str) -> None:
        hits = self._recent(key)
        if hits is None:
            if len(self._hits) >= MAX_KEYS:
                del self._hits[next(iter(self._hits))]
            hits = self._hits[key] = deque(maxlen=self.limit)
        hits.append(self.clock())

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)


@dataclass
class LoginThrottle:
    by_phone: SlidingWindow = field(default_factory=lambda: SlidingWindow(PHONE_LIMIT, WINDOW_SECONDS))
    by_ip: SlidingWindow = field(default_factory=lambda: SlidingWindow(IP_LIMIT, WINDOW_SECONDS))

    def retry_after(self, phone: str, ip: str) -> float | None:
        waits = [w for w in (self.by_phone.retry_after(phone), self.by_ip.retry_after(ip)) if w is not None]
        return max(waits) if waits else None

    def failed(self, phone: str, ip: str) -> None:
        self.by_phone.hit(phone)
        self.by_ip.hit(ip)

    def succeeded(self, phone: str) -> None:
        # The owner got in: their phone's count starts over (the address's does not: a guesser may also own a phone).
        self.by_phone.reset(phone)
