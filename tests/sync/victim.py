"""A worker in its own process running the real sync handler, to be killed with SIGKILL mid-push by test_kill.

Run: ``python -m tests.sync.victim`` with AGRIMARKET_* settings in the environment.
"""

from __future__ import annotations

import asyncio

from agrimarket.config import Settings
from agrimarket.db import create_engine
from agrimarket.worker import Worker, load_task_modules


async def main() -> None:
    settings = Settings()
    load_task_modules()
    engine = create_engine(settings)
    async with Worker(engine, settings, worker_id="victim", scheduler=False, metrics=False):
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
