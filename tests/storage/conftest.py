"""Backends for the storage contract suite: memory, SQLite in tmp_path, PostgreSQL in a schema.

PostgreSQL is found at XMPPCORE_TEST_POSTGRES_DSN (default: trust auth on loopback); each test
gets its own schema, dropped afterwards. When the server cannot be reached, the postgres
parameters are skipped with the reason, instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xmppcore.storage import StorageDriver, create_driver

POSTGRES_DSN = os.environ.get(
    "XMPPCORE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
_postgres_unreachable: list[str] = []  # the skip reason, once a connection attempt failed


@dataclass
class Backend:
    """One place data lives; `make()` gives a new (unopened) driver on it."""

    kind: str
    factory: Callable[[], StorageDriver]
    # Read/write the database behind the driver's back (SQL backends only).
    run_sql: Callable[[str], Awaitable[list[tuple[Any, ...]]]] | None = None
    drivers: list[StorageDriver] = field(default_factory=list)

    def make(self) -> StorageDriver:
        driver = self.factory()
        self.drivers.append(driver)
        return driver

    async def close_all(self) -> None:
        for driver in self.drivers:
            await driver.close()


def with_search_path(dsn: str, schema: str) -> str:
    """The DSN with a search_path server setting (asyncpg passes unknown query params on)."""
    parts = urllib.parse.urlsplit(dsn)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "nested" / "dir" / "xmppcore.db"

    async def run_sql(sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            return [tuple(row) for row in conn.execute(sql)]

    return Backend("sqlite", lambda: create_driver("sqlite", path=str(path)), run_sql)


@contextlib.asynccontextmanager
async def _postgres_backend() -> AsyncIterator[Backend]:
    asyncpg = pytest.importorskip("asyncpg", reason="asyncpg is not installed")
    if _postgres_unreachable:
        pytest.skip(_postgres_unreachable[0])
    try:
        admin = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        _postgres_unreachable.append(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {exc}")
        pytest.skip(_postgres_unreachable[0])
    schema = f"xmppcore_test_{uuid.uuid4().hex}"  # our own hex; safe to quote into DDL
    dsn = with_search_path(POSTGRES_DSN, schema)

    async def run_sql(sql: str) -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield Backend("postgres", lambda: create_driver("postgres", dsn=dsn), run_sql)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@contextlib.asynccontextmanager
async def open_backend(kind: str, tmp_path: Path) -> AsyncIterator[Backend]:
    backend: Backend
    async with contextlib.AsyncExitStack() as stack:
        if kind == "memory":
            backend = Backend("memory", lambda: create_driver("memory"))
        elif kind == "sqlite":
            backend = _sqlite_backend(tmp_path)
        else:
            backend = await stack.enter_async_context(_postgres_backend())
        try:
            yield backend
        finally:
            await backend.close_all()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(request.param, tmp_path) as found:
        yield found


@pytest.fixture(params=["sqlite", "postgres"])
async def persistent_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    async with open_backend(request.param, tmp_path) as found:
        yield found


@pytest.fixture
async def driver(backend: Backend) -> StorageDriver:
    """An open driver; the backend closes it after the test."""
    opened = backend.make()
    await opened.open()
    return opened
