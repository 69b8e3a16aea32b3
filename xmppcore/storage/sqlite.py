"""SQLite storage driver: the embedded default, everything in one database file.

Prosody-style generic tables, one per store shape, so a new XEP never needs a migration.
One connection per driver, on a thread of its own (``sqlite_thread.py``), and one task of ours
(:class:`~xmppcore.storage.sqlite_commit.Statements`) feeds it every statement, a round of them
per trip to that thread.  A write is committed when the awaited call
returns; with the WAL journal and synchronous=FULL the commit is also fsync'ed, which is what
lets a stanza acknowledgement promise durability (docs/decisions/0002-storage.md).

Writes are group-committed (``sqlite_commit.py``, docs/decisions/0003-durability.md): concurrent
writers share one transaction and one fsync, each answered only once it is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .api import (
    ArchiveItem,
    ArchiveStore,
    JSONValue,
    KeyValueStore,
    MapStore,
    StorageError,
    _ArchiveQuery,
    _decode_value,
    _encode_value,
    _format_archive_id,
    _parse_archive_ids,
)
from .sqlite_commit import Row as _Row
from .sqlite_commit import Statements as _Statements
from .sqlite_thread import SqliteThread

__all__ = ["SCHEMA_VERSION", "SqliteDriver"]

_log = logging.getLogger(__name__)

# How long a statement waits for another process (e.g. `xmppcore adduser` next to a running
# server) to release the write lock before failing with "database is locked".
_BUSY_TIMEOUT_MS = 5000
_WAL_SWITCH_ATTEMPTS = 20
_WAL_SWITCH_BACKOFF = 0.01  # seconds, times the attempt number (about 2 s in all)
# Page cache of the one connection, KiB (SQLite's default is 2 MiB).  The archive's three
# per-account indexes put each account's newest entries on pages of their own: with a few
# hundred accounts writing, the default cache keeps rereading them (docs/performance.md).
_CACHE_KIB = 32 * 1024
# WAL pages between automatic checkpoints (SQLite's default: 1,000, about 4 MiB).  A checkpoint
# copies each page changed since the last one back into the database once, however often it
# changed, so a longer interval costs fewer copies per commit: measured, 36 -> 21 us per archived
# row at 176 rows per commit (docs/performance.md).
_WAL_AUTOCHECKPOINT_PAGES = 8000
# After a checkpoint the WAL file is cut back to this many bytes, not left at its largest.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1: the three generic tables
        """CREATE TABLE keyval (
            host TEXT NOT NULL, store TEXT NOT NULL, "user" TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (host, store, "user"))""",
        """CREATE TABLE map (
            host TEXT NOT NULL, store TEXT NOT NULL, "user" TEXT NOT NULL, "key" TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (host, store, "user", "key"))""",
        # AUTOINCREMENT: without it SQLite reuses the id of a deleted newest row, and an
        # archive id must never come back (MAM clients keep them as sync points).
        """CREATE TABLE archive (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL, store TEXT NOT NULL, "user" TEXT NOT NULL,
            "when" REAL NOT NULL, with_jid TEXT NOT NULL, value TEXT NOT NULL)""",
        'CREATE INDEX archive_by_id ON archive (host, store, "user", id)',
        'CREATE INDEX archive_by_when ON archive (host, store, "user", "when")',
        'CREATE INDEX archive_by_with ON archive (host, store, "user", with_jid, id)',
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CREATE_SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
)

class SqliteDriver:
    """A StorageDriver on one SQLite file; its parent directory is created on open()."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: SqliteThread | None = None
        self._statements: _Statements | None = None
        # The last archive id handed out.  This process names new entries itself, so that
        # ``start_append`` can return an id before the commit: one process writes the archive
        # (docs/decisions/0003-durability.md), and AUTOINCREMENT keeps ids above every id used.
        self._last_archive_id = 0

    async def open(self) -> None:
        if self._conn is not None:
            return
        conn = await self._connect()
        try:
            await conn.call(_configure)
            version = await conn.call(_migrate)
            self._last_archive_id = await conn.call(_last_archive_id)
        except BaseException:
            await _close_quietly(conn)
            raise
        self._conn = conn
        self._statements = _Statements(conn)
        _log.info("sqlite storage open at %s (schema version %d)", self._path, version)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        statements, self._statements = self._statements, None
        if conn is None:
            return
        try:
            if statements is not None:
                await statements.close()
            await conn.close()
        except (sqlite3.Error, ValueError) as exc:
            raise StorageError(f"sqlite: closing {self._path!r} failed: {exc}") from exc

    def keyval(self, host: str, store: str) -> KeyValueStore:
        return _SqliteKeyValueStore(self, host, store)

    def map(self, host: str, store: str) -> MapStore:
        return _SqliteMapStore(self, host, store)

    def archive(self, host: str, store: str) -> ArchiveStore:
        return _SqliteArchiveStore(self, host, store)

    async def _connect(self) -> SqliteThread:
        conn = SqliteThread()
        try:
            if self._path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
            await conn.open(self._path, busy_timeout=_BUSY_TIMEOUT_MS / 1000)
            return conn
        except (sqlite3.Error, OSError) as exc:
            await conn.close()
            raise StorageError(f"sqlite: cannot open {self._path!r}: {exc}") from exc

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        """Run a query and fetch its rows."""
        return await self._statement(sql, params, write=False)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        """Run a statement that changes the database; return its rows once committed."""
        return await self._statement(sql, params, write=True)

    async def _statement(self, sql: str, params: Sequence[Any], *, write: bool) -> list[_Row]:
        return await self._queue(sql, params, write=write)

    def _queue_write(self, sql: str, params: Sequence[Any], *, urgent: bool = True) -> asyncio.Future[list[_Row]]:
        """Queue a write now; a future of its rows once committed (``Statements.queue``)."""
        return self._queue(sql, params, write=True, urgent=urgent)

    def _queue(self, sql: str, params: Sequence[Any], *, write: bool,
               urgent: bool = True) -> asyncio.Future[list[_Row]]:
        statements = self._statements
        if statements is None:
            raise StorageError("sqlite storage driver is not open")
        return statements.queue(sql, params, write=write, urgent=urgent)

    def _new_archive_id(self) -> int:
        self._last_archive_id += 1
        return self._last_archive_id


def _committed_when(rows: asyncio.Future[list[_Row]]) -> asyncio.Future[None]:
    """A future done (or failed) as the statement's future ``rows`` is, without its rows."""
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    rows.add_done_callback(lambda done: _pass_on(done, committed))
    return committed


def _pass_on(done: asyncio.Future[list[_Row]], committed: asyncio.Future[None]) -> None:
    """Complete ``committed`` as the statement's future ``done`` completed."""
    if committed.done():
        return
    if done.cancelled():
        committed.cancel()
    elif (exc := done.exception()) is not None:
        committed.set_exception(exc)
    else:
        committed.set_result(None)


# -- on the connection's thread (SqliteThread.call) -----------------------------------------------
def _last_archive_id(conn: sqlite3.Connection) -> int:
    """The highest archive id ever used: AUTOINCREMENT's record of it, or a row's (an id must
    never come back, even after its row is deleted)."""
    row = conn.execute(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'archive'), 0), "
        "COALESCE((SELECT MAX(id) FROM archive), 0))"
    ).fetchone()
    return int(row[0])


def _configure(conn: sqlite3.Connection) -> None:
    try:
        # WAL persists in the file; the other settings are per connection.
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS:d}")
        _switch_to_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB:d}")
        conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES:d}")
        conn.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT:d}")
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite: cannot configure the database: {exc}") from exc


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (a no-op once it is).

    Two connections switching a new file at the same moment would each wait for the other's
    lock, so SQLite answers SQLITE_BUSY at once instead of calling the busy handler; back off
    briefly and retry, within a bound (this runs on the connection's thread, not the loop).
    """
    for attempt in range(1, _WAL_SWITCH_ATTEMPTS + 1):
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or attempt == _WAL_SWITCH_ATTEMPTS:
                raise
            time.sleep(_WAL_SWITCH_BACKOFF * attempt)


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION in one transaction; return the version."""
    try:
        # IMMEDIATE takes the write lock first, so two processes cannot migrate at once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _apply_migrations(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite: schema migration failed: {exc}") from exc
    return version


def _apply_migrations(conn: sqlite3.Connection) -> int:
    conn.execute(_CREATE_SCHEMA_VERSION)
    current: int = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"sqlite: database schema version {current} is newer than this xmppcore "
            f"supports ({SCHEMA_VERSION})"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _log.info("sqlite storage: applying schema migration %d", version)
        for statement in _MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version, time.time()),
        )
    return SCHEMA_VERSION


async def _close_quietly(conn: SqliteThread) -> None:
    try:
        await conn.close()
    except (sqlite3.Error, ValueError):
        _log.debug("sqlite: closing after a failed open also failed", exc_info=True)


class _SqliteKeyValueStore:
    def __init__(self, driver: SqliteDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def get(self, user: str) -> JSONValue | None:
        rows = await self._driver._read(
            'SELECT value FROM keyval WHERE host = ? AND store = ? AND "user" = ?',
            (*self._ns, user),
        )
        return _decode_value(rows[0][0]) if rows else None

    def set(self, user: str, value: JSONValue | None, *, urgent: bool = True) -> asyncio.Future[None]:
        # Queued now, so writes keep the order they were made in; the future is the commit.
        if value is None:
            rows = self._driver._queue_write(
                'DELETE FROM keyval WHERE host = ? AND store = ? AND "user" = ?',
                (*self._ns, user), urgent=urgent,
            )
        else:
            rows = self._driver._queue_write(
                'INSERT INTO keyval (host, store, "user", value) VALUES (?, ?, ?, ?) '
                'ON CONFLICT (host, store, "user") DO UPDATE SET value = excluded.value',
                (*self._ns, user, _encode_value(value)), urgent=urgent,
            )
        return _committed_when(rows)

    async def users(self) -> list[str]:
        rows = await self._driver._read(
            'SELECT "user" FROM keyval WHERE host = ? AND store = ?', self._ns
        )
        return sorted(row[0] for row in rows)


class _SqliteMapStore:
    def __init__(self, driver: SqliteDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def get(self, user: str, key: str) -> JSONValue | None:
        rows = await self._driver._read(
            'SELECT value FROM map WHERE host = ? AND store = ? AND "user" = ? AND "key" = ?',
            (*self._ns, user, key),
        )
        return _decode_value(rows[0][0]) if rows else None

    async def set(self, user: str, key: str, value: JSONValue | None) -> None:
        if value is None:
            await self._driver._write(
                'DELETE FROM map WHERE host = ? AND store = ? AND "user" = ? AND "key" = ?',
                (*self._ns, user, key),
            )
            return
        await self._driver._write(
            'INSERT INTO map (host, store, "user", "key", value) VALUES (?, ?, ?, ?, ?) '
            'ON CONFLICT (host, store, "user", "key") DO UPDATE SET value = excluded.value',
            (*self._ns, user, key, _encode_value(value)),
        )

    async def get_all(self, user: str) -> dict[str, JSONValue]:
        rows = await self._driver._read(
            'SELECT "key", value FROM map WHERE host = ? AND store = ? AND "user" = ?',
            (*self._ns, user),
        )
        return {key: _decode_value(text) for key, text in rows}

    async def delete_user(self, user: str) -> None:
        await self._driver._write(
            'DELETE FROM map WHERE host = ? AND store = ? AND "user" = ?', (*self._ns, user)
        )


class _SqliteArchiveStore:
    def __init__(self, driver: SqliteDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> str:
        archive_id, committed = self._insert(user, value, when, with_jid)
        await committed
        return archive_id

    async def start_append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> tuple[str, asyncio.Future[None]]:
        archive_id, rows = self._insert(user, value, when, with_jid)
        return archive_id, _committed_when(rows)

    def _insert(self, user: str, value: JSONValue, when: float, with_jid: str) -> tuple[str, asyncio.Future[list[_Row]]]:
        """Queue the row under a new id; the id, and the future of its commit."""
        text = _encode_value(value)
        number = self._driver._new_archive_id()
        rows = self._driver._queue_write(
            'INSERT INTO archive (id, host, store, "user", "when", with_jid, value) VALUES (?, ?, ?, ?, ?, ?, ?)',
            (number, *self._ns, user, float(when), with_jid, text),
        )
        return _format_archive_id(number), rows

    async def query(
        self,
        user: str,
        *,
        start: float | None = None,
        end: float | None = None,
        with_jid: str | None = None,
        after_id: str | None = None,
        before_id: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
        ids: Sequence[str] | None = None,
    ) -> list[ArchiveItem]:
        wanted = _ArchiveQuery.parse(
            start=start, end=end, with_jid=with_jid, after_id=after_id, before_id=before_id,
            limit=limit, reverse=reverse, ids=ids,
        )
        if wanted is None:
            return []
        sql, params = _select_archive(wanted, (*self._ns, user))
        rows = await self._driver._read(sql, params)
        return [
            ArchiveItem(id=_format_archive_id(number), when=when, with_jid=partner,
                        value=_decode_value(text))
            for number, when, partner, text in rows
        ]

    async def delete(self, user: str, ids: Sequence[str] | None = None) -> int:
        where = 'host = ? AND store = ? AND "user" = ?'
        params: list[Any] = [*self._ns, user]
        if ids is not None:
            numbers = _parse_archive_ids(ids)
            if not numbers:
                return 0
            # One JSON-array parameter instead of a placeholder per id.
            where += " AND id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(numbers))
        rows = await self._driver._write(f"DELETE FROM archive WHERE {where} RETURNING id", params)
        return len(rows)

    async def count(self, user: str) -> int:
        rows = await self._driver._read(
            'SELECT COUNT(*) FROM archive WHERE host = ? AND store = ? AND "user" = ?',
            (*self._ns, user),
        )
        count: int = rows[0][0]
        return count


def _select_archive(wanted: _ArchiveQuery, owner: tuple[str, str, str]) -> tuple[str, list[Any]]:
    """The SELECT for a query: SQL from fixed fragments only, every value a parameter."""
    conditions = ['host = ?', 'store = ?', '"user" = ?']
    params: list[Any] = list(owner)
    optional: tuple[tuple[str, Any], ...] = (
        ('"when" >= ?', wanted.start),
        ('"when" <= ?', wanted.end),
        ("with_jid = ?", wanted.with_jid),
        ("id > ?", wanted.after),
        ("id < ?", wanted.before),
        ("id IN (SELECT value FROM json_each(?))",
         None if wanted.numbers is None else json.dumps(wanted.numbers)),
    )
    for condition, value in optional:
        if value is not None:
            conditions.append(condition)
            params.append(value)
    sql = (
        'SELECT id, "when", with_jid, value FROM archive WHERE '
        + " AND ".join(conditions)
        + (" ORDER BY id DESC" if wanted.reverse else " ORDER BY id ASC")
    )
    if wanted.limit is not None:
        sql += " LIMIT ?"
        params.append(wanted.limit)
    return sql, params
