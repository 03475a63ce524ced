"""Independent calls at once, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def bounded_gather(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``calls`` with at most ``limit`` in flight; their results in the calls' order.

    Every call is let finish; then the first failure, in the calls' order, is raised as it is (not wrapped in a
    group, so callers catch the marketplace's errors as they would from one call). A single call runs in line."""
    if len(calls) <= 1:
        return [await call() for call in calls]
    gate = asyncio.Semaphore(max(limit, 1))

    async def gated(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    outcomes = await asyncio.gather(*(gated(call) for call in calls), return_exceptions=True)
    results: list[T] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        results.append(outcome)
    return results
