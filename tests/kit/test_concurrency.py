import asyncio

import pytest

from agrimarket.kit.concurrency import bounded_gather


async def test_bounded_gather_keeps_the_calls_order_and_never_runs_more_than_the_limit_at_once() -> None:
    running = 0
    most = 0

    async def call(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (10 - n))  # the first ones finish last
        running -= 1
        return n

    results = await bounded_gather([lambda n=n: call(n) for n in range(10)], 3)  # type: ignore[misc]

    assert results == list(range(10))
    assert most == 3


async def test_bounded_gather_lets_every_call_finish_then_raises_the_first_failure_in_order() -> None:
    finished: list[int] = []

    async def call(n: int) -> int:
        await asyncio.sleep(0.001 * (5 - n))
        finished.append(n)
        if n in (1, 3):
            raise ValueError(f"call {n}")
        return n

    with pytest.raises(ValueError, match="call 1"):
        await bounded_gather([lambda n=n: call(n) for n in range(5)], 2)  # type: ignore[misc]

    assert sorted(finished) == [0, 1, 2, 3, 4]
