"""PostgreSQL storage driver (asyncpg): the shared store for a cluster of xmppcore nodes.

The same Prosody-style generic tables as the SQLite driver (one per store shape), reached
through a small connection pool. Every statement runs in its own implicit transaction, which
PostgreSQL commits (and, with the default synchronous_commit=on, flushes to its WAL) before
the awaited call returns. Several nodes may open the same database at once: migrations run
under a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from .api import (
    ArchiveItem, ArchiveStore, JSONValue, KeyValueStore, MapStore, StorageError, _ArchiveQuery,
    _committed, _decode_value, _encode_value, _format_archive_id, _parse_archive_ids,
)

__all__ = ["PostgresDriver", "SCHEMA_VERSION"]

_log = logging.getLogger(__name__)

_POOL_MIN_SIZE = 1
_POOL_MAX_SIZE = 8
_CONNECT_TIMEOUT = 10.0  # seconds, per connection attempt
_ACQUIRE_TIMEOUT = 10.0  # waiting for a free pooled connection
_COMMAND_TIMEOUT = 30.0  # one statement
_CLOSE_TIMEOUT = 10.0  # then in-flight connections are terminated
# pg_advisory_xact_lock key serialising migrations between nodes: b"xmppcore" as an int64.
_MIGRATION_LOCK = int.from_bytes(b"xmppcore", "big")

_DRIVER_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    OSError, TimeoutError,
)
# While connecting asyncpg also raises a bare ValueError for a DSN it cannot parse.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (*_DRIVER_ERRORS, ValueError)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1: the three generic tables
        """CREATE TABLE keyval (
            host text NOT NULL, store text NOT NULL, "user" text NOT NULL, value text NOT NULL,
            PRIMARY KEY (host, store, "user"))""",
        """CREATE TABLE map (
            host text NOT NULL, store text NOT NULL, "user" text NOT NULL, "key" text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (host, store, "user", "key"))""",
        """CREATE TABLE archive (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            host text NOT NULL, store text NOT NULL, "user" text NOT NULL,
            "when" double precision NOT NULL, with_jid text NOT NULL, value text NOT NULL)""",
        'CREATE INDEX archive_by_id ON archive (host, store, "user", id)',
        'CREATE INDEX archive_by_when ON archive (host, store, "user", "when")',
        'CREATE INDEX archive_by_with ON archive (host, store, "user", with_jid, id)',
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CREATE_SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version integer PRIMARY KEY, applied_at double precision NOT NULL)"
)


class PostgresDriver:
    """A StorageDriver on a PostgreSQL database given by an asyncpg DSN.

    Query parameters the DSN does not define for libpq become server settings, so
    `...?search_path=xmpp` puts the tables in the schema `xmpp`.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=_POOL_MIN_SIZE, max_size=_POOL_MAX_SIZE,
                timeout=_CONNECT_TIMEOUT, command_timeout=_COMMAND_TIMEOUT,
            )
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgres: cannot connect: {exc}") from exc
        self._pool = pool
        try:
            version = await self._migrate()
        except BaseException:
            self._pool = None
            pool.terminate()
            raise
        _log.info("postgres storage open (schema version %d)", version)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT)
        except TimeoutError:
            _log.warning("postgres storage: connections still busy at close; terminating them")
            pool.terminate()
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"postgres: closing failed: {exc}") from exc

    def keyval(self, host: str, store: str) -> KeyValueStore:
        return _PostgresKeyValueStore(self, host, store)

    def map(self, host: str, store: str) -> MapStore:
        return _PostgresMapStore(self, host, store)

    def archive(self, host: str, store: str) -> ArchiveStore:
        return _PostgresArchiveStore(self, host, store)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; every driver failure inside becomes StorageError."""
        pool = self._pool
        if pool is None:
            raise StorageError("postgres storage driver is not open")
        try:
            async with pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"postgres: {exc}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection() as conn:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._connection() as conn:
            await conn.execute(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchval(sql, *args)

    async def _migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION in one transaction; return the version."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_CREATE_SCHEMA_VERSION)
            current: int = await conn.fetchval(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            )
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"postgres: database schema version {current} is newer than this "
                    f"xmppcore supports ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _log.info("postgres storage: applying schema migration %d", version)
                for statement in _MIGRATIONS[version - 1]:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                    version, time.time(),
                )
        return SCHEMA_VERSION


class _PostgresKeyValueStore:
    def __init__(self, driver: PostgresDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def get(self, user: str) -> JSONValue | None:
        text = await self._driver._fetchval(
            'SELECT value FROM keyval WHERE host = $1 AND store = $2 AND "user" = $3',
            *self._ns, user,
        )
        return None if text is None else _decode_value(text)

    async def set(self, user: str, value: JSONValue | None, *, urgent: bool = True) -> None:
        if value is None:
            await self._driver._execute(
                'DELETE FROM keyval WHERE host = $1 AND store = $2 AND "user" = $3',
                *self._ns, user,
            )
            return
        await self._driver._execute(
            'INSERT INTO keyval (host, store, "user", value) VALUES ($1, $2, $3, $4) '
            'ON CONFLICT (host, store, "user") DO UPDATE SET value = EXCLUDED.value',
            *self._ns, user, _encode_value(value),
        )

    async def users(self) -> list[str]:
        rows = await self._driver._fetch(
            'SELECT "user" FROM keyval WHERE host = $1 AND store = $2', *self._ns
        )
        # Sorted here, not by ORDER BY: the database collation is not code point order.
        return sorted(row[0] for row in rows)


class _PostgresMapStore:
    def __init__(self, driver: PostgresDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def get(self, user: str, key: str) -> JSONValue | None:
        text = await self._driver._fetchval(
            'SELECT value FROM map WHERE host = $1 AND store = $2 AND "user" = $3 '
            'AND "key" = $4',
            *self._ns, user, key,
        )
        return None if text is None else _decode_value(text)

    async def set(self, user: str, key: str, value: JSONValue | None) -> None:
        if value is None:
            await self._driver._execute(
                'DELETE FROM map WHERE host = $1 AND store = $2 AND "user" = $3 AND "key" = $4',
                *self._ns, user, key,
            )
            return
        await self._driver._execute(
            'INSERT INTO map (host, store, "user", "key", value) VALUES ($1, $2, $3, $4, $5) '
            'ON CONFLICT (host, store, "user", "key") DO UPDATE SET value = EXCLUDED.value',
            *self._ns, user, key, _encode_value(value),
        )

    async def get_all(self, user: str) -> dict[str, JSONValue]:
        rows = await self._driver._fetch(
            'SELECT "key", value FROM map WHERE host = $1 AND store = $2 AND "user" = $3',
            *self._ns, user,
        )
        return {row[0]: _decode_value(row[1]) for row in rows}

    async def delete_user(self, user: str) -> None:
        await self._driver._execute(
            'DELETE FROM map WHERE host = $1 AND store = $2 AND "user" = $3', *self._ns, user
        )


class _PostgresArchiveStore:
    def __init__(self, driver: PostgresDriver, host: str, store: str) -> None:
        self._driver = driver
        self._ns = (host, store)

    async def append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> str:
        number: int = await self._driver._fetchval(
            'INSERT INTO archive (host, store, "user", "when", with_jid, value) '
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            *self._ns, user, float(when), with_jid, _encode_value(value),
        )
        return _format_archive_id(number)

    async def start_append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> tuple[str, asyncio.Future[None]]:
        # The id comes from the database's sequence, with the commit.
        return await self.append(user, value, when=when, with_jid=with_jid), _committed()

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
        rows = await self._driver._fetch(sql, *params)
        return [
            ArchiveItem(id=_format_archive_id(row[0]), when=row[1], with_jid=row[2],
                        value=_decode_value(row[3]))
            for row in rows
        ]

    async def delete(self, user: str, ids: Sequence[str] | None = None) -> int:
        where = 'host = $1 AND store = $2 AND "user" = $3'
        params: list[Any] = [*self._ns, user]
        if ids is not None:
            numbers = _parse_archive_ids(ids)
            if not numbers:
                return 0
            where += " AND id = ANY($4::bigint[])"
            params.append(numbers)
        deleted: int = await self._driver._fetchval(
            f"WITH gone AS (DELETE FROM archive WHERE {where} RETURNING 1) "
            "SELECT COUNT(*) FROM gone",
            *params,
        )
        return deleted

    async def count(self, user: str) -> int:
        total: int = await self._driver._fetchval(
            'SELECT COUNT(*) FROM archive WHERE host = $1 AND store = $2 AND "user" = $3',
            *self._ns, user,
        )
        return total


def _select_archive(wanted: _ArchiveQuery, owner: tuple[str, str, str]) -> tuple[str, list[Any]]:
    """The SELECT for a query: SQL from fixed fragments only, every value a parameter."""
    params: list[Any] = list(owner)
    conditions = ["host = $1", "store = $2", '"user" = $3']
    optional: tuple[tuple[str, Any], ...] = (
        ('"when" >= ${}', wanted.start),
        ('"when" <= ${}', wanted.end),
        ("with_jid = ${}", wanted.with_jid),
        ("id > ${}", wanted.after),
        ("id < ${}", wanted.before),
        ("id = ANY(${}::bigint[])", None if wanted.numbers is None else list(wanted.numbers)),
    )
    for condition, value in optional:
        if value is not None:
            params.append(value)
            conditions.append(condition.format(len(params)))
    sql = (
        'SELECT id, "when", with_jid, value FROM archive WHERE '
        + " AND ".join(conditions)
        + (" ORDER BY id DESC" if wanted.reverse else " ORDER BY id ASC")
    )
    if wanted.limit is not None:
        params.append(wanted.limit)
        sql += f" LIMIT ${len(params)}"
    return sql, params
