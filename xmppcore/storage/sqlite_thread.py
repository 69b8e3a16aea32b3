"""The SQLite driver's connection on a thread of its own (docs/performance.md).

``sqlite3`` blocks, so the connection lives on one worker thread and the event loop hands it
work.  What the loop hands over is a whole function — a round of statements, a migration — so
that one trip to the thread and back carries as many statements as are waiting, instead of one
trip each: a trip costs tens of microseconds of the event loop's time (a future, a wake-up, a
callback), which at tens of thousands of statements a second was the limit of the SQLite
driver (bench/RESULTS.md, issue 8).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["SqliteThread"]

T = TypeVar("T")


class SqliteThread:
    """One ``sqlite3.Connection``, created, used and closed on one dedicated thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xmppcore-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: str, *, busy_timeout: float) -> None:
        """Connect to ``path`` in autocommit mode (``isolation_level=None``): a statement outside
        an explicit ``BEGIN`` is a transaction of its own."""
        def connect() -> sqlite3.Connection:
            return sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        self._conn = await self._run(connect)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread; its result or exception comes back here."""
        return await self.submit(fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Hand ``fn(connection)`` to the thread now; a future of its result.  The thread starts
        on it at once (or after what was submitted before), while the caller goes on."""
        conn = self._conn
        if conn is None:
            raise ValueError("the sqlite connection is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(conn))

    async def close(self) -> None:
        """Close the connection (on its thread) and let the thread end."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await self._run(conn.close)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
