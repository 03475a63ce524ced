"""Handlers by kind, periodic schedules, and what a handler is given to do its work."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.observability import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class JobContext:
    """Handed to a handler with the payload. The handler owns its transactions: ``async with ctx.transaction()``."""

    job_id: uuid.UUID
    kind: str
    attempt: int  # 1 on the first run
    max_attempts: int
    organization_id: uuid.UUID | None
    worker_id: str
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        return transaction(self.sessionmaker)


JobHandler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]
PayloadFactory = Callable[[], dict[str, Any]]
H = TypeVar("H", bound=JobHandler)


@dataclass(frozen=True)
class Schedule:
    """Enqueue ``kind`` once per ``seconds`` (periods aligned to the epoch, so every worker agrees on them)."""

    name: str
    seconds: float
    kind: str
    payload_factory: PayloadFactory | None = None

    def payload(self) -> dict[str, Any]:
        return self.payload_factory() if self.payload_factory is not None else {}


class Registry:
    """Which coroutine handles which kind of job, and which jobs recur. One per process (``registry``);
    tests make their own."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}
        self._schedules: dict[str, Schedule] = {}

    def register(self, kind: str, fn: JobHandler) -> None:
        if not kind or len(kind) > 100:
            raise ValueError("A job kind is 1 to 100 characters.")
        existing = self._handlers.get(kind)
        if existing is not None and existing is not fn:
            raise ValueError(f"A handler for job kind {kind!r} is already registered: {existing!r}.")
        self._handlers[kind] = fn

    def handler(self, kind: str) -> Callable[[H], H]:
        """Decorator: ``@handler("orders.fetch") async def fetch(ctx, payload) -> None``."""

        def decorate(fn: H) -> H:
            self.register(kind, fn)
            return fn

        return decorate

    def every(
        self, seconds: float, kind: str, payload_factory: PayloadFactory | None = None, *, name: str | None = None
    ) -> Schedule:
        """Enqueue ``kind`` every ``seconds``; at most once per period however many workers run, and never while
        the previous run is still queued or running."""
        if seconds <= 0:
            raise ValueError("A schedule's period must be positive.")
        schedule = Schedule(name=name or kind, seconds=float(seconds), kind=kind, payload_factory=payload_factory)
        if schedule.name in self._schedules:
            raise ValueError(f"A schedule named {schedule.name!r} is already registered.")
        self._schedules[schedule.name] = schedule
        return schedule

    def get(self, kind: str) -> JobHandler | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())


registry = Registry()
handler = registry.handler
register = registry.register
every = registry.every


def load_task_modules() -> list[str]:
    """Import every ``agrimarket.<package>.tasks`` module, so their handlers and schedules register themselves."""
    import agrimarket

    loaded: list[str] = []
    for module in pkgutil.iter_modules(agrimarket.__path__):
        if not module.ispkg:
            continue
        name = f"agrimarket.{module.name}.tasks"
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name)
        loaded.append(name)
    log.debug("task_modules_loaded", modules=loaded)
    return loaded
