"""The shop's rate limiter (GCRA) on a fake clock: bursts, the sustained rate, a platform's Retry-After, and state
that survives a hand-over to another worker."""

from __future__ import annotations

from agrimarket.channels.base import RateLimit
from agrimarket.sync.ratelimit import Gcra


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def _calls(limiter: Gcra, time: FakeTime, count: int) -> list[float]:
    starts = []
    for _ in range(count):
        await limiter.acquire()
        starts.append(round(time.now - 1_000_000.0, 6))
    return starts


async def test_a_burst_goes_at_once_then_calls_keep_the_sustained_rate() -> None:
    time = FakeTime()
    limiter = Gcra(RateLimit(calls=10, per_seconds=1.0, burst=3), clock=time.clock, sleep=time.sleep)
    assert await _calls(limiter, time, 6) == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]


async def test_without_a_burst_every_call_waits_its_interval() -> None:
    time = FakeTime()
    limiter = Gcra(RateLimit(calls=2, per_seconds=1.0), clock=time.clock, sleep=time.sleep)
    assert await _calls(limiter, time, 3) == [0.0, 0.5, 1.0]
    assert limiter.waited == 1.0


async def test_retry_after_holds_every_call_until_then() -> None:
    time = FakeTime()
    limiter = Gcra(RateLimit(calls=100, per_seconds=1.0, burst=5), clock=time.clock, sleep=time.sleep)
    limiter.hold_until(time.now + 2.0)
    assert (await _calls(limiter, time, 2))[0] == 2.0


async def test_the_state_handed_to_the_next_worker_keeps_the_limit() -> None:
    time = FakeTime()
    first = Gcra(RateLimit(calls=4, per_seconds=1.0), clock=time.clock, sleep=time.sleep)
    await _calls(first, time, 2)
    second = Gcra(RateLimit(calls=4, per_seconds=1.0), first.next_at, clock=time.clock, sleep=time.sleep)
    assert await _calls(second, time, 1) == [0.5]  # not at 0.25 again: the last call's slot is remembered
