"""SQLite for the writer connection, run on the event loop's own thread instead of aiosqlite's.

aiosqlite runs each connection in a thread of its own and hands every call across: a statement costs three or four
hand-offs (cursor, execute, fetch, close), each a thread wake-up and a turn of the event loop, during which the
loop runs whatever else is ready. Measured on the drain's write transactions (bench.orders, SQLite): 20 statements
took 4.7 ms between them, yet the transaction held the writer connection for 23 ms, the rest spent waiting for the
loop to come back to it while pushes queued for the same connection.

SQLite is a library call, not a network round trip: a typical statement here takes 0.1–0.5 ms. So the one writer
connection of a SQLite file (see :mod:`agrimarket.db`) runs its statements inline, on the loop's thread, through
this aiosqlite-shaped wrapper handed to SQLAlchemy's aiosqlite dialect with ``async_creator``. What must not block
the loop does not:

- **Waiting for the lock.** The connection's busy timeout is 0: a statement that finds the database locked by
  another process (a CLI command) fails at once, and is tried again after an ``asyncio.sleep`` (1 ms, doubling to
  10 ms) until ``busy_timeout`` has passed; SQLite guarantees a statement refused as busy changed nothing. Writers of
  this process never meet here: they queue for the connection before they reach SQLite.
- **Bulk statements.** An ``executemany`` of ``BULK_ROWS`` rows or more (an import's thousands) runs in a worker
  thread, the loop free meanwhile; the connection is this task's alone until its transaction ends, so nothing else
  touches it.

Readers keep aiosqlite (their own engine): a long page read must not stop the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_FIRST_RETRY = 0.001
# An executemany of at least this many rows runs in a worker thread; fewer run inline (a hand-off to a thread costs
# more than a few rows, up to the interpreter's 5 ms switch interval when the loop is busy).
BULK_ROWS = 500
_LONGEST_RETRY = 0.01


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "database is locked" in str(error)  # pragma: no cover - Python < 3.11


class InlineCursor:
    """An aiosqlite-like cursor whose coroutines finish without suspending (bar the waits described above)."""

    def __init__(self, connection: InlineConnection) -> None:
        self._owner = connection
        self._cursor = connection._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        await self._owner._retrying(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> InlineCursor:
        rows = list(seq_of_parameters)
        big = len(rows) >= BULK_ROWS
        await self._owner._retrying(lambda: self._cursor.executemany(sql, rows), in_thread=big)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunNow:
    """SQLAlchemy sets ``isolation_level`` by putting (future, function) on aiosqlite's queue: run it now."""

    def __init__(self) -> None:
        self.closed = False

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """What SQLAlchemy's aiosqlite dialect uses of an ``aiosqlite.Connection``, on a plain ``sqlite3`` one."""

    def __init__(self, conn: sqlite3.Connection, busy_timeout: float) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn  # the dialect checks it before commit and rollback
        self._tx = _RunNow()
        self.busy_timeout = busy_timeout

    async def _retrying(self, call: Callable[[], Any], *, in_thread: bool = False) -> Any:
        deadline = time.monotonic() + self.busy_timeout
        pause = _FIRST_RETRY
        while True:
            try:
                return await asyncio.to_thread(call) if in_thread else call()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_RETRY)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        await self._retrying(self._conn.commit)

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def inline_connector(path: str, busy_timeout_ms: int) -> Callable[[], Any]:
    """An ``async_creator`` for :func:`sqlalchemy.ext.asyncio.create_async_engine`: connections to the SQLite file
    at ``path`` run inline (busy timeout 0 in SQLite itself; ``busy_timeout_ms`` of polite retries instead)."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(path, check_same_thread=False)  # executemany may run in a worker thread
        conn.execute("PRAGMA busy_timeout=0")
        return InlineConnection(conn, busy_timeout_ms / 1000)

    return connect
