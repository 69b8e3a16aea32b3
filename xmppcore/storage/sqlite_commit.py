"""Group commit for the SQLite driver (docs/decisions/0003-durability.md).

One task feeds the driver's single connection every statement, in rounds: the reads that
arrived, then the writes, grouped into transactions of up to ``MAX_BATCH``.  The writes that
queue up while the previous commit is being fsync'ed go into one transaction together, so many
concurrent writers share one fsync instead of waiting for one each.  Each caller is answered
only once its transaction is committed; when it fails, every write of the batch fails with
StorageError, and only those.  A statement that fails on its own (SQLite undoes just that
statement) fails just its caller.

A whole round runs in one trip to the connection's thread (``sqlite_thread.py``): the event
loop pays for one hand-over per round, not one per statement (docs/performance.md).  The loop
and the thread work side by side: statements that arrive while a round runs are handed over as
the next round before the finished round's callers are answered, and a big round is answered in
two halves with the first half's next statements started in between, so that one half's commit
runs while the other half's callers do (``Statements._split``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any, Union

from .api import StorageError
from .sqlite_thread import SqliteThread

__all__ = ["LAZY_DELAY", "MAX_BATCH", "Row", "Statements"]

_log = logging.getLogger("xmppcore.storage.sqlite")

MAX_BATCH = 512  # writes committed in one transaction at most
LAZY_DELAY = 0.05  # seconds a write that is not urgent may wait for others to commit with
_STRAGGLER_ITERATIONS = 4  # loop iterations a round waits for statements still arriving
_SPLIT_AT = 64  # a round of this many statements, with nothing waiting after it, is answered in halves

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


# What a statement may raise: sqlite3 errors, and ValueError once the connection is closed.
_SQL_ERRORS = (sqlite3.Error, ValueError)


# What each statement of a round came to: its rows, or what SQLite (or the closed connection) raised.
Outcome = Union[list[Row], BaseException]
_Sql = tuple[str, Sequence[Any]]


class Statements:
    """Runs the driver's statements on its connection from one task, in rounds: the reads that
    arrived, then the writes, grouped into transactions of up to ``MAX_BATCH`` (group commit)."""

    def __init__(self, conn: SqliteThread) -> None:
        self._conn = conn
        self._queued: list[_Statement] = []
        self._lazy: list[_Statement] = []  # writes that are not urgent, waiting for company
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.ensure_future(self._serve())

    def queue(self, sql: str, params: Sequence[Any], *, write: bool, urgent: bool = True) -> asyncio.Future[list[Row]]:
        """Queue a statement now; a future of its rows (a write's: once committed).  A caller
        cancelled while awaiting it cancels its future, not the statement: it still runs.

        A write that is not ``urgent`` waits up to ``LAZY_DELAY`` for company: it goes with the
        next urgent write (before it, in order), or alone when the delay is over.  Reads do not
        wait for it, so they may not see it yet (``KeyValueStore.set``).
        """
        if self._closing or self._task.done():
            raise StorageError("sqlite storage driver is not open")
        statement = _Statement(sql, params, write)
        if write and not urgent:
            self._lazy.append(statement)
            if self._lazy_timer is None:
                self._lazy_timer = asyncio.get_running_loop().call_later(LAZY_DELAY, self._lazy_due)
            return statement.rows
        if write and self._lazy:
            self._take_lazy()  # earlier writes commit first
        self._queued.append(statement)
        self._wakeup.set()
        return statement.rows

    def _take_lazy(self) -> None:
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        self._queued += self._lazy
        self._lazy = []

    def _lazy_due(self) -> None:
        self._lazy_timer = None
        self._take_lazy()
        self._wakeup.set()

    async def close(self) -> None:
        """Run what is queued, then stop."""
        self._closing = True
        self._take_lazy()
        self._wakeup.set()
        await asyncio.shield(self._task)

    async def _serve(self) -> None:
        running: _Round | None = None  # on the connection's thread
        try:
            while True:
                if running is None:
                    if not self._queued:
                        if self._closing:
                            break
                        await self._wakeup.wait()
                        self._wakeup.clear()
                        continue
                    await self._gather_stragglers()
                    running = self._dispatch()
                outcomes = await running.outcomes()
                done, running = running, None
                if self._queued:
                    # What arrived while the thread was busy goes to it at once, and this round's
                    # callers run on the loop meanwhile: the loop and the thread work side by side.
                    running = self._dispatch()
                    done.answer(outcomes)
                elif len(done.statements) >= _SPLIT_AT and not self._closing:
                    running = await self._split(done, outcomes)
                else:
                    done.answer(outcomes)
        finally:
            failure = StorageError("sqlite storage driver closed")
            # Only when this task is cancelled is a round left running: its outcome is unknown.
            if self._lazy_timer is not None:
                self._lazy_timer.cancel()
            for statement in [*(running.statements if running is not None else ()), *self._queued, *self._lazy]:
                statement.failed(failure)

    async def _split(self, done: _Round, outcomes: list[Outcome]) -> _Round | None:
        """Answer a big round in two halves, with the first half's next statements started on the
        thread in between; the round started, if any.

        Otherwise, with every caller waiting on the same round, the loop and the thread would
        take turns: all callers run while the thread idles, then all wait while it commits.
        After one split the two halves alternate by themselves (see ``_serve``): one half's
        statements are committed while the other half's callers run (docs/performance.md).
        """
        half = len(done.statements) // 2
        done.answer(outcomes, stop=half)
        await self._gather_stragglers()
        running = self._dispatch() if self._queued else None
        done.answer(outcomes, start=half)
        return running

    async def _gather_stragglers(self) -> None:
        """Let the callers the last round woke queue their next statements before this round starts.

        A connection routes its stanzas one after another: when a commit answers it, its next
        message reaches the archive a loop iteration or two later.  Starting the next round at once
        would leave that message for the round after, so each connection would get one message into
        every other round.  A few iterations (no timer) while statements keep arriving fix that.
        """
        for _ in range(_STRAGGLER_ITERATIONS):
            before = len(self._queued)
            await asyncio.sleep(0)
            if len(self._queued) == before:
                return

    def _dispatch(self) -> _Round:
        """Hand what is queued to the connection's thread as one round."""
        queued, self._queued = self._queued, []
        reads = [statement for statement in queued if not statement.write]
        writes = [statement for statement in queued if statement.write]
        batches = [writes[start:start + MAX_BATCH] for start in range(0, len(writes), MAX_BATCH)]
        work = ([(s.sql, s.params) for s in reads], [[(s.sql, s.params) for s in batch] for batch in batches])
        try:
            future = self._conn.submit(lambda conn: _run_round(conn, *work))
        except _SQL_ERRORS as exc:  # the connection is closed
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return _Round([*reads, *writes], future)


class _Round:
    """Statements handed to the connection's thread together, in the order they run."""

    __slots__ = ("future", "statements")

    def __init__(self, statements: list[_Statement], future: asyncio.Future[list[Outcome]]) -> None:
        self.statements, self.future = statements, future

    async def outcomes(self) -> list[Outcome]:
        try:
            return await self.future
        except _SQL_ERRORS as exc:  # the connection is gone
            return [exc] * len(self.statements)

    def answer(self, outcomes: list[Outcome], start: int = 0, stop: int | None = None) -> None:
        """Answer the callers of ``statements[start:stop]``, in order."""
        for statement, outcome in zip(self.statements[start:stop], outcomes[start:stop], strict=True):
            if isinstance(outcome, BaseException):
                statement.failed(outcome)
            else:
                statement.done(outcome)


# -- on the connection's thread ------------------------------------------------------------------
def _run_round(conn: sqlite3.Connection, reads: list[_Sql], batches: list[list[_Sql]]) -> list[Outcome]:
    """The reads, then each batch of writes in a transaction; one outcome per statement, in order."""
    outcomes: list[Outcome] = [_execute(conn, statement) for statement in reads]
    for batch in batches:
        outcomes += _commit(conn, batch)
    return outcomes


def _execute(conn: sqlite3.Connection, statement: _Sql) -> Outcome:
    try:
        return _fetch(conn, statement)
    except _SQL_ERRORS as exc:
        return exc


def _commit(conn: sqlite3.Connection, batch: list[_Sql]) -> list[Outcome]:
    """One transaction for ``batch``; a statement's rows count only once it is committed."""
    if len(batch) == 1:
        return [_execute(conn, batch[0])]  # autocommit: a transaction of its own
    outcomes: list[Outcome] = []
    try:
        # IMMEDIATE: take the write lock now (waiting busy_timeout for another process).
        conn.execute("BEGIN IMMEDIATE")
        for statement in batch:
            try:
                outcomes.append(_fetch(conn, statement))
            except _SQL_ERRORS as exc:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back (I/O error, disk full)
                outcomes.append(exc)  # only this statement was undone
        conn.execute("COMMIT")
    except _SQL_ERRORS as exc:
        _roll_back_quietly(conn)
        return [exc] * len(batch)
    return outcomes


def _fetch(conn: sqlite3.Connection, statement: _Sql) -> list[Row]:
    return [tuple(row) for row in conn.execute(*statement).fetchall()]


def _roll_back_quietly(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except _SQL_ERRORS:
        _log.debug("sqlite: rolling back a failed batch also failed", exc_info=True)
