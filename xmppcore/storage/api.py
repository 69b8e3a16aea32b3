"""Storage API: three store shapes (keyval, map, archive) behind swappable drivers.

The shapes follow Prosody's storage manager (one generic table per shape, so a new XEP never
needs a migration); the archive serves XEP-0160 offline messages and XEP-0313 Message Archive
Management. Every driver passes the one contract suite in tests/storage/test_contract.py.

Values are JSON documents. Every driver stores the JSON text, so a value read back is always a
fresh copy with JSON semantics (tuples come back as lists, dict keys as strings), whatever the
driver. A value that cannot be encoded is the caller's bug (TypeError/ValueError); a failure of
the backing store is a StorageError.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

__all__ = [
    "JSONValue", "StoreKind", "StorageError", "KeyValueStore", "MapStore", "ArchiveItem",
    "ArchiveStore", "StorageDriver", "DRIVER_KINDS", "create_driver",
]

JSONValue: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None

DRIVER_KINDS = ("memory", "sqlite", "postgres")


class StoreKind(enum.Enum):
    """The three shapes a module may ask for (`mod.open_store(name, kind)`)."""

    KEYVAL = "keyval"
    MAP = "map"
    ARCHIVE = "archive"


class StorageError(Exception):
    """The backing store failed; the IQ dispatcher answers internal-server-error/wait."""


class KeyValueStore(Protocol):
    """One document per user (private XML, vCard, account data)."""

    async def get(self, user: str) -> JSONValue | None: ...

    def set(self, user: str, value: JSONValue | None, *, urgent: bool = True) -> Awaitable[None]:
        """Store `value` for `user`; None deletes it.  Durable once awaited.

        A driver may queue the write when called (SQLite does, so that writes keep the order
        they were made in); awaiting waits for the commit.

        `urgent=False` is for bookkeeping nobody waits to read (when an account last logged out):
        the driver may hold the write back for a while (SQLite: up to 50 ms, or until an
        urgent write) to commit it with others, and reads meanwhile may not see it yet.
        """

    async def users(self) -> list[str]:
        """Every user with a document in this store, sorted by code point."""


class MapStore(Protocol):
    """User x key -> value (roster items, bookmarks, blocklist entries)."""

    async def get(self, user: str, key: str) -> JSONValue | None: ...

    async def set(self, user: str, key: str, value: JSONValue | None) -> None:
        """Store `value` under (`user`, `key`); None deletes it."""

    async def get_all(self, user: str) -> dict[str, JSONValue]: ...

    async def delete_user(self, user: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """One archived entry, as returned by ArchiveStore.query."""

    id: str  # server-assigned, unique per store, sorts (as a string) in insertion order
    when: float  # unix time given by the caller
    with_jid: str  # the conversation partner (bare JID string), "" allowed
    value: JSONValue


class ArchiveStore(Protocol):
    """Append-only, time-ordered entries per user (XEP-0160 offline, XEP-0313 MAM)."""

    async def append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> str:
        """Append an item and return its new id; durable when the call returns."""

    async def start_append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> tuple[str, asyncio.Future[None]]:
        """Append an item; return its new id as soon as it is known, and a future done once the
        item is committed (failed with StorageError when it is not).

        Until that future is done, the id must not be shown to anyone: a crash may undo the
        append, and a later one may get the same id (``server/durability.py`` holds what
        carries it).  A driver that learns the id only from the commit returns a done future.
        """

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
        """Items matching every given filter, in insertion order (newest first if `reverse`).

        `start`/`end` are inclusive (XEP-0313 §4.1.2). `after_id`/`before_id` are exclusive
        positions: an id that was never issued still orders, and one that is not an id of
        this driver at all matches nothing. `ids` restricts to those ids (XEP-0313 'ids'
        field; also how a caller checks that an id exists). `limit` counts from the oldest,
        or from the newest when `reverse` is set (RSM "last page": reverse, then flip).
        """

    async def delete(self, user: str, ids: Sequence[str] | None = None) -> int:
        """Delete the given ids of `user` (None: all of them); return how many went."""

    async def count(self, user: str) -> int: ...


class StorageDriver(Protocol):
    """A backend; store objects may be made before open() and are used after it."""

    async def open(self) -> None:
        """Connect and create or migrate the schema; calling it again is harmless."""

    async def close(self) -> None: ...

    def keyval(self, host: str, store: str) -> KeyValueStore: ...

    def map(self, host: str, store: str) -> MapStore: ...

    def archive(self, host: str, store: str) -> ArchiveStore: ...


def create_driver(kind: str, *, path: str | None = None, dsn: str | None = None) -> StorageDriver:
    """Make a driver: "memory", "sqlite" (needs `path`) or "postgres" (needs an asyncpg `dsn`)."""
    # Imports are local: drivers import this module, and asyncpg is an optional dependency.
    if kind == "memory":
        from .memory import MemoryDriver

        return MemoryDriver()
    if kind == "sqlite":
        if not path:
            raise ValueError("the sqlite storage driver needs a database file path")
        from .sqlite import SqliteDriver

        return SqliteDriver(path)
    if kind == "postgres":
        if not dsn:
            raise ValueError("the postgres storage driver needs a DSN")
        from .postgres import PostgresDriver

        return PostgresDriver(dsn)
    raise ValueError(f"unknown storage driver {kind!r}; expected one of {', '.join(DRIVER_KINDS)}")


# -- shared by the drivers (package-internal) -------------------------------------------------

# Fixed width makes ids sort as strings in insertion order; 19 digits hold any positive int64,
# which is what the SQL drivers' id columns are.
_ID_WIDTH = 19
_MAX_ID = 2**63 - 1


def _committed() -> asyncio.Future[None]:
    """A future already done: for ``start_append`` where the id came with the commit."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _format_archive_id(number: int) -> str:
    return f"{number:0{_ID_WIDTH}d}"


def _parse_archive_id(archive_id: str) -> int | None:
    """The row number behind an id, or None when it is not an id any driver issues."""
    if len(archive_id) != _ID_WIDTH or not archive_id.isascii() or not archive_id.isdigit():
        return None
    number = int(archive_id)
    return number if 0 < number <= _MAX_ID else None


def _parse_archive_ids(archive_ids: Sequence[str]) -> list[int]:
    """Row numbers of the well-formed ids; malformed ones cannot match anything."""
    numbers = (_parse_archive_id(archive_id) for archive_id in archive_ids)
    return sorted({number for number in numbers if number is not None})


def _encode_value(value: JSONValue) -> str:
    """JSON text for storage; TypeError/ValueError for values JSON cannot carry (a caller bug)."""
    # allow_nan=False: NaN/Infinity are not JSON and PostgreSQL tools would choke on them.
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # A lone surrogate survives json.dumps but not UTF-8; refuse it here for every driver alike.
    text.encode("utf-8")
    return text


def _decode_value(text: str) -> JSONValue:
    try:
        value: JSONValue = json.loads(text)
    except ValueError as exc:
        raise StorageError("stored value is not valid JSON") from exc
    return value


@dataclass(frozen=True, slots=True)
class _ArchiveQuery:
    """ArchiveStore.query's filters with ids turned into row numbers, for a driver to apply."""

    start: float | None
    end: float | None
    with_jid: str | None
    after: int | None
    before: int | None
    numbers: tuple[int, ...] | None
    limit: int | None
    reverse: bool

    @classmethod
    def parse(
        cls,
        *,
        start: float | None,
        end: float | None,
        with_jid: str | None,
        after_id: str | None,
        before_id: str | None,
        limit: int | None,
        reverse: bool,
        ids: Sequence[str] | None,
    ) -> _ArchiveQuery | None:
        """The query, or None when nothing can match (so the driver need not ask)."""
        if limit is not None and limit < 0:
            raise ValueError(f"archive query limit must not be negative, got {limit}")
        after = None if after_id is None else _parse_archive_id(after_id)
        before = None if before_id is None else _parse_archive_id(before_id)
        numbers = None if ids is None else tuple(_parse_archive_ids(ids))
        if (
            limit == 0
            or (after_id is not None and after is None)
            or (before_id is not None and before is None)
            or numbers == ()
        ):
            return None
        return cls(
            start=None if start is None else float(start),
            end=None if end is None else float(end),
            with_jid=with_jid, after=after, before=before, numbers=numbers,
            limit=limit, reverse=reverse,
        )
