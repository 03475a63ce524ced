"""Engines and sessions.

SQLite: WAL, foreign keys, a busy timeout, and transactions that start with ``BEGIN IMMEDIATE`` so two writers
queue for the lock instead of failing half-way on an upgrade from a read lock. Read-only requests use a
deferred ``BEGIN`` so they never wait for writers. PostgreSQL: plain transactions; row locks where needed.

SQLite takes one writer at a time, and a connection that finds the lock taken waits in SQLite's busy handler,
which sleeps and retries (1, 2, 5, 10 … 100 ms): with a handful of writers in one process a push could sleep for
hundreds of milliseconds after the lock was already free. So a file database's engine has **one** connection, and
the process's writers queue for it in order (the pool's queue wakes the next one the moment the last returns it).
That connection runs its statements on the event loop's thread (:mod:`agrimarket.kit.inline_sqlite`), with
SQLite's busy timeout at 0: a lock held by another process (a CLI command beside the server) is waited for with
``asyncio.sleep``, never by blocking the loop. Reads go through a
second engine of their own (:func:`reader`), ``db_pool_size`` connections beginning deferred, never behind that
queue: WAL lets them read while the writer writes. Writers in :func:`urgent_writes` (a marketplace's push, whose
answer it is waiting for) go to the head of the queue; the others keep their order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, NullPool
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from agrimarket.config import Settings
from agrimarket.kit import jsontext
from agrimarket.kit.inline_sqlite import inline_connector
from agrimarket.models.base import Base

SQLITE_BEGIN_OPTION = "agrimarket_sqlite_begin"

# A SQLite file engine's reading twin (see the module's docstring), by the writing engine.
_READERS: WeakKeyDictionary[Engine, AsyncEngine] = WeakKeyDictionary()
_URGENT: ContextVar[bool] = ContextVar("agrimarket_urgent_writes", default=False)
_T = TypeVar("_T")


@contextmanager
def urgent_writes() -> Iterator[None]:
    """Transactions begun inside go ahead of the other writers waiting for SQLite's one writer connection."""
    token = _URGENT.set(True)
    try:
        yield
    finally:
        _URGENT.reset(token)


class _WriterQueue(QueueCommon[_T], Generic[_T]):
    """The pool's queue of idle connections, and of the writers waiting for one: a returned connection goes to
    the longest-waiting urgent writer, else to the longest-waiting writer. Runs in SQLAlchemy's greenlets (the
    pool's ``get`` is synchronous there; ``await_only`` waits on the event loop)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo  # read by the pool's recreate(); idle connections here are one, so moot
        self._idle: deque[_T] = deque()
        self._waiters: list[tuple[int, int, asyncio.Future[_T]]] = []  # a heap: (0 urgent / 1 not, arrival, …)
        self._arrivals = itertools.count()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: _T) -> None:
        while self._waiters:
            _rank, _arrival, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # else it gave up (timed out, cancelled)
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> _T:
        if not self._idle:
            raise Empty()
        return self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if self._idle or not block:
            return self.get_nowait()
        waiter: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if _URGENT.get() else 1, next(self._arrivals), waiter))
        try:
            if timeout is None:
                return await_only(waiter)
            return await_only(asyncio.wait_for(asyncio.shield(waiter), timeout))
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed over just as we gave up: pass it on, never lose it
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise Empty() from exc
            raise


class _WriterPool(AsyncAdaptedQueuePool):
    _queue_class = _WriterQueue[ConnectionPoolEntry]


def _install_sqlite_hooks(sync_engine: Engine, busy_timeout_ms: int, begin: str = "IMMEDIATE") -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver, so the "begin" hook below decides how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, begin)
        connection.exec_driver_sql(f"BEGIN {mode}")


def json_dumps(value: Any) -> str:
    """JSON columns' serializer: anything JSON has no type for (a datetime, a UUID in a marketplace's raw order) is
    kept as its text, as the stdlib's ``default=str`` does, so callers need not copy a value through JSON first
    (:mod:`agrimarket.kit.jsontext`, by orjson)."""
    return jsontext.dumps(value)


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    url = url or settings.database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if ":memory:" not in url:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = settings.sqlite_busy_timeout_ms
        if ":memory:" in url:  # each connection its own database: nothing to share or queue for
            engine = create_async_engine(
                url, poolclass=NullPool, json_serializer=json_dumps, json_deserializer=jsontext.loads
            )
            _install_sqlite_hooks(engine.sync_engine, busy_ms)
            return engine
        # The writers' one connection, its statements run on the loop's thread (agrimarket.kit.inline_sqlite); a
        # writer waits for it as long as SQLite would have waited for the lock.
        engine = create_async_engine(
            url,
            json_serializer=json_dumps,
            json_deserializer=jsontext.loads,
            async_creator=inline_connector(path, busy_ms),
            poolclass=_WriterPool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=busy_ms / 1000,
        )
        _install_sqlite_hooks(engine.sync_engine, 0)  # waits for other processes' locks are the connector's
        readers = create_async_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=10,
            json_serializer=json_dumps,
            json_deserializer=jsontext.loads,
        )
        _install_sqlite_hooks(readers.sync_engine, busy_ms, begin="DEFERRED")
        _READERS[engine.sync_engine] = readers

        @event.listens_for(engine.sync_engine, "engine_disposed")
        def _dispose_readers(_engine: Engine) -> None:
            # Called inside AsyncEngine.dispose()'s greenlet, where awaiting is allowed.
            await_only(readers.dispose())

        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        json_serializer=json_dumps,
        json_deserializer=jsontext.loads,
    )


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine to only read with: a SQLite file's reading twin (its own connections, deferred transactions),
    else the same engine (SQLite in memory: with deferred transactions)."""
    readers = _READERS.get(engine.sync_engine)
    if readers is not None:
        return readers
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def bound_engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine ``sessionmaker`` binds its sessions to."""
    bind = sessionmaker.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


def read_sessionmaker(sessionmaker: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read, beside ``sessionmaker``'s (:func:`reader`): on SQLite they never queue for the
    writer connection. Sessions bound to one connection (a test's transaction) read through it."""
    bind = sessionmaker.kw.get("bind")
    return make_sessionmaker(reader(bind)) if isinstance(bind, AsyncEngine) else sessionmaker


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work outside a request (CLI, worker): commit on success, roll back on error."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def table_of(model: type[Base]) -> Table:
    """The model's table, for Core statements that skip the ORM's layers."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


_ROW_INSERTS: dict[type[Base], tuple[Insert, tuple[str, ...]]] = {}


async def insert_objects(session: AsyncSession, model: type[Base], objects: Sequence[Base]) -> None:
    """Insert new objects kept out of the session as rows, every column as the object holds it, in one executemany
    of one statement built once per process: for rows that are only ever added, no unit of work. The objects stay
    out of the session; fill in what column defaults would have (ids, times) before."""
    if not objects:
        return
    known = _ROW_INSERTS.get(model)
    if known is None:
        table = table_of(model)
        known = _ROW_INSERTS[model] = (insert(table), tuple(column.key for column in table.columns))
    statement, columns = known
    await session.execute(statement, [{column: getattr(obj, column) for column in columns} for obj in objects])


# insert_or_nothing's statements, built once per process: building one (and its cache key) cost as much again as
# running it (measured: 300 → 157 µs a one-row insert on SQLite).
_INSERTS: dict[tuple[str, type[Base], tuple[str, ...] | None, str], ReturningInsert[Any]] = {}


async def insert_or_nothing(
    session: AsyncSession,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[InstrumentedAttribute[Any]] | None,
    returning: InstrumentedAttribute[_T],
) -> list[_T]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` each row (every row with the same keys), in the rows' order, on
    ``conflict``'s unique index (None: any); ``returning`` of the rows inserted.

    One statement, compiled once per process: the rows go as executemany parameters, which SQLAlchemy renders as
    multi-row VALUES pages ("insertmanyvalues"); ``insert(...).values(rows)`` would be a new statement, compiled
    again, for every number of rows (measured: a tenth of the server's CPU under a burst of pushes). On the table, not
    the ORM entity: no unit of work, no identity map; Python-side column defaults still apply."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    key = (dialect, model, tuple(column.key for column in conflict) if conflict is not None else None, returning.key)
    statement = _INSERTS.get(key)
    if statement is None:
        table = table_of(model)
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        insert = (
            insert.on_conflict_do_nothing(index_elements=[column.key for column in conflict])
            if conflict is not None
            else insert.on_conflict_do_nothing()
        )
        statement = _INSERTS[key] = insert.returning(table.c[returning.key])
    result = await session.execute(statement, list(rows))
    return list(result.scalars())
