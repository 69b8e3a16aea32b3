"""Storage: keyval, map and archive stores behind memory, SQLite and PostgreSQL drivers.

`create_driver(kind, path=…, dsn=…)` makes a driver; the PostgreSQL driver (asyncpg, an
optional dependency) is only imported when asked for.
"""

from .api import (
    DRIVER_KINDS, ArchiveItem, ArchiveStore, JSONValue, KeyValueStore, MapStore, StorageDriver,
    StorageError, StoreKind, create_driver,
)
from .memory import MemoryDriver
from .sqlite import SqliteDriver

__all__ = [
    "JSONValue", "StoreKind", "StorageError", "KeyValueStore", "MapStore", "ArchiveItem",
    "ArchiveStore", "StorageDriver", "DRIVER_KINDS", "create_driver", "MemoryDriver",
    "SqliteDriver",
]
