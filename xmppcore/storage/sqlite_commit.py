"""Group commit for the SQLite driver (docs/decisions/0003-durability.md).

One task feeds the driver's single connection every statement, in rounds: the reads that
arrived, then the writes, grouped into transactions of up to ``MAX_BATCH``.  The writes that
queue up while the previous commit is being fsync'ed go into one transaction together, so many
concurrent writers share one fsync instead of waiting for one each.  Each caller is answered
only once its transaction is committed; when it fails, every write of the batch fails with
StorageError, and only those.  A statement that fails on its own (SQLite undoes just that
statement) fails just its caller.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from .api import StorageError

__all__ = ["Row", "Statements", "MAX_BATCH"]

_log = logging.getLogger("xmppcore.storage.sqlite")

MAX_BATCH = 512  # writes committed in one transaction at most

Row = tuple[Any, ...]


class _Statement:
    """One queued statement and the caller waiting for its rows."""

    __slots__ = ("params", "rows", "sql", "write")

    def __init__(self, sql: str, params: Sequence[Any], write: bool) -> None:
        self.sql, self.params, self.write = sql, params, write
        self.rows: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()

    def done(self, rows: list[Row]) -> None:
        if not self.rows.done():  # the caller may have been cancelled meanwhile
            self.rows.set_result(rows)

    def failed(self, exc: BaseException) -> None:
        if not self.rows.done():
            self.rows.set_exception(_storage_error(exc))


def _storage_error(exc: BaseException) -> StorageError:
    """A StorageError of its own for each caller (one exception object raised in several tasks
    would collect all their tracebacks)."""
    if isinstance(exc, StorageError):
        return StorageError(*exc.args)
    error = StorageError(f"sqlite: {exc}")
    error.__cause__ = exc
    return error


# What a statement may raise: sqlite3 errors, and ValueError for aiosqlite's "Connection closed".
_SQL_ERRORS = (sqlite3.Error, ValueError)


class Statements:
    """Runs the driver's statements on its connection from one task, in rounds: the reads that
    arrived, then the writes, grouped into transactions of up to ``MAX_BATCH`` (group commit)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queued: list[_Statement] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.ensure_future(self._serve())

    async def run(self, sql: str, params: Sequence[Any], *, write: bool) -> list[Row]:
        if self._closing or self._task.done():
            raise StorageError("sqlite storage driver is not open")
        statement = _Statement(sql, params, write)
        self._queued.append(statement)
        self._wakeup.set()
        # A caller cancelled meanwhile cancels its future, not the statement: it still runs.
        return await statement.rows

    async def close(self) -> None:
        """Run what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        await asyncio.shield(self._task)

    async def _serve(self) -> None:
        try:
            while not (self._closing and not self._queued):
                await self._wakeup.wait()
                self._wakeup.clear()
                queued, self._queued = self._queued, []
                for statement in queued:
                    if not statement.write:
                        await self._execute(statement)
                writes = [statement for statement in queued if statement.write]
                for start in range(0, len(writes), MAX_BATCH):
                    await self._commit(writes[start:start + MAX_BATCH])
        finally:
            failure = StorageError("sqlite storage driver closed")
            for statement in self._queued:
                statement.failed(failure)

    async def _execute(self, statement: _Statement) -> None:
        try:
            statement.done(await _fetch(self._conn, statement))
        except _SQL_ERRORS as exc:
            statement.failed(exc)

    async def _commit(self, batch: list[_Statement]) -> None:
        """One transaction for ``batch``; every caller hears only once it is committed."""
        if len(batch) == 1:
            await self._execute(batch[0])  # autocommit: a transaction of its own
            return
        conn = self._conn
        succeeded: list[tuple[_Statement, list[Row]]] = []
        try:
            # IMMEDIATE: take the write lock now (waiting busy_timeout for another process).
            await conn.execute_fetchall("BEGIN IMMEDIATE")
            for statement in batch:
                try:
                    succeeded.append((statement, await _fetch(conn, statement)))
                except _SQL_ERRORS as exc:
                    if not conn.in_transaction:
                        raise  # SQLite rolled the whole transaction back (I/O error, disk full)
                    statement.failed(exc)  # only this statement was undone
            await conn.execute_fetchall("COMMIT")
        except _SQL_ERRORS as exc:
            await _roll_back_quietly(conn)
            for statement in batch:
                statement.failed(exc)
            return
        for statement, rows in succeeded:
            statement.done(rows)


async def _fetch(conn: aiosqlite.Connection, statement: _Statement) -> list[Row]:
    return [tuple(row) for row in await conn.execute_fetchall(statement.sql, statement.params)]


async def _roll_back_quietly(conn: aiosqlite.Connection) -> None:
    try:
        if conn.in_transaction:
            await conn.execute_fetchall("ROLLBACK")
    except _SQL_ERRORS:
        _log.debug("sqlite: rolling back a failed batch also failed", exc_info=True)
