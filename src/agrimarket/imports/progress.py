"""How far an import has got, for the status endpoint's progress bar.

Written on the import's row in a short transaction of its own, at most a few times a second. One case cannot:
applying on SQLite holds the database's only write lock until it commits, so there the figures live in this
process's memory too (the embedded default runs the worker in the server process, where the status endpoint reads
them). On PostgreSQL the row is written while the apply runs: it does not touch that row until its last statement.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.db import transaction
from agrimarket.imports.repository import ImportRepository
from agrimarket.observability import get_logger

log = get_logger(__name__)

INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class Live:
    processed: int
    total: int


_live: dict[uuid.UUID, Live] = {}


def live(import_id: uuid.UUID) -> Live | None:
    return _live.get(import_id)


class Progress:
    """``await progress.report(done, total)`` after each chunk; ``sessionmaker`` None: memory only."""

    def __init__(self, import_id: uuid.UUID, sessionmaker: async_sessionmaker[AsyncSession] | None) -> None:
        self.import_id = import_id
        self.sessionmaker = sessionmaker
        self._last = 0.0

    async def report(self, processed: int, total: int, *, force: bool = False) -> None:
        _live[self.import_id] = Live(processed, max(total, processed))
        now = time.monotonic()
        if self.sessionmaker is None or (not force and now - self._last < INTERVAL_SECONDS):
            return
        self._last = now
        try:
            async with transaction(self.sessionmaker) as session:
                await ImportRepository(session).set_progress(self.import_id, processed, max(total, processed))
        except Exception:  # a progress bar is not worth failing an import for
            log.warning("import_progress_not_saved", import_id=str(self.import_id), exc_info=True)

    def done(self) -> None:
        _live.pop(self.import_id, None)


class NoProgress(Progress):
    def __init__(self) -> None:
        super().__init__(uuid.UUID(int=0), None)

    async def report(self, processed: int, total: int, *, force: bool = False) -> None:
        return None
