"""A worker in its own process that takes one job and hangs in it, to be killed with SIGKILL by test_kill.

Run: ``python -m tests.worker.victim MARKER`` with AGRIMARKET_* settings in the environment.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agrimarket.config import Settings
from agrimarket.db import create_engine
from agrimarket.worker import JobContext, Registry, Worker

KIND = "test.kill.victim"


async def main(marker: Path) -> None:
    settings = Settings()
    registry = Registry()

    @registry.handler(KIND)
    async def hang(ctx: JobContext, _payload: dict[str, Any]) -> None:
        scratch = marker.with_suffix(".tmp")
        await asyncio.to_thread(scratch.write_text, f"{ctx.job_id} {ctx.worker_id}")
        scratch.rename(marker)  # atomic: the test never reads a half-written marker
        await asyncio.sleep(3600)

    engine = create_engine(settings)
    async with Worker(engine, settings, registry=registry, worker_id="victim", scheduler=False, metrics=False):
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
