"""In-memory storage driver: the three store shapes in dicts, for tests and throwaway servers.

It keeps the same contract as the SQL drivers (tests/storage/test_contract.py): values are
kept as JSON text, archive ids come from one counter that is never reused, and a store used
while the driver is not open raises StorageError, so a server that forgets to open its storage
fails under test exactly as it would in production. Data lives as long as the driver object
(it survives close() and open(), not the process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from .api import (
    ArchiveItem, ArchiveStore, JSONValue, KeyValueStore, MapStore, StorageError, _ArchiveQuery,
    _committed, _decode_value, _encode_value, _format_archive_id, _parse_archive_ids,
)

__all__ = ["MemoryDriver"]

_Namespace = tuple[str, str]  # (host, store)


@dataclass(frozen=True, slots=True)
class _Row:
    number: int
    when: float
    with_jid: str
    text: str

    def to_item(self) -> ArchiveItem:
        return ArchiveItem(
            id=_format_archive_id(self.number), when=self.when, with_jid=self.with_jid,
            value=_decode_value(self.text),
        )


def _matches(query: _ArchiveQuery, row: _Row) -> bool:
    return (
        (query.start is None or row.when >= query.start)
        and (query.end is None or row.when <= query.end)
        and (query.with_jid is None or row.with_jid == query.with_jid)
        and (query.after is None or row.number > query.after)
        and (query.before is None or row.number < query.before)
        and (query.numbers is None or row.number in query.numbers)
    )


class MemoryDriver:
    """A StorageDriver keeping everything in this object."""

    def __init__(self) -> None:
        self._is_open = False
        self._keyval: dict[_Namespace, dict[str, str]] = {}
        self._map: dict[_Namespace, dict[str, dict[str, str]]] = {}
        self._archive: dict[_Namespace, dict[str, list[_Row]]] = {}
        self._last_number = 0

    async def open(self) -> None:
        self._is_open = True

    async def close(self) -> None:
        self._is_open = False

    def keyval(self, host: str, store: str) -> KeyValueStore:
        return _MemoryKeyValueStore(self, self._keyval.setdefault((host, store), {}))

    def map(self, host: str, store: str) -> MapStore:
        return _MemoryMapStore(self, self._map.setdefault((host, store), {}))

    def archive(self, host: str, store: str) -> ArchiveStore:
        return _MemoryArchiveStore(self, self._archive.setdefault((host, store), {}))

    def _check_open(self) -> None:
        if not self._is_open:
            raise StorageError("memory storage driver is not open")

    def _next_number(self) -> int:
        self._last_number += 1
        return self._last_number


class _MemoryKeyValueStore:
    def __init__(self, driver: MemoryDriver, documents: dict[str, str]) -> None:
        self._driver = driver
        self._documents = documents

    async def get(self, user: str) -> JSONValue | None:
        self._driver._check_open()
        text = self._documents.get(user)
        return None if text is None else _decode_value(text)

    async def set(self, user: str, value: JSONValue | None, *, urgent: bool = True) -> None:
        text = None if value is None else _encode_value(value)
        self._driver._check_open()
        if text is None:
            self._documents.pop(user, None)
        else:
            self._documents[user] = text

    async def users(self) -> list[str]:
        self._driver._check_open()
        return sorted(self._documents)


class _MemoryMapStore:
    def __init__(self, driver: MemoryDriver, entries: dict[str, dict[str, str]]) -> None:
        self._driver = driver
        self._entries = entries

    async def get(self, user: str, key: str) -> JSONValue | None:
        self._driver._check_open()
        text = self._entries.get(user, {}).get(key)
        return None if text is None else _decode_value(text)

    async def set(self, user: str, key: str, value: JSONValue | None) -> None:
        text = None if value is None else _encode_value(value)
        self._driver._check_open()
        if text is not None:
            self._entries.setdefault(user, {})[key] = text
            return
        user_entries = self._entries.get(user)
        if user_entries is not None:
            user_entries.pop(key, None)
            if not user_entries:
                del self._entries[user]

    async def get_all(self, user: str) -> dict[str, JSONValue]:
        self._driver._check_open()
        return {key: _decode_value(text) for key, text in self._entries.get(user, {}).items()}

    async def delete_user(self, user: str) -> None:
        self._driver._check_open()
        self._entries.pop(user, None)


class _MemoryArchiveStore:
    def __init__(self, driver: MemoryDriver, rows: dict[str, list[_Row]]) -> None:
        self._driver = driver
        self._rows = rows  # per user, in ascending number order (append only adds at the end)

    async def append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> str:
        text = _encode_value(value)
        self._driver._check_open()
        row = _Row(self._driver._next_number(), float(when), with_jid, text)
        self._rows.setdefault(user, []).append(row)
        return _format_archive_id(row.number)

    async def start_append(
        self, user: str, value: JSONValue, *, when: float, with_jid: str = ""
    ) -> tuple[str, asyncio.Future[None]]:
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
        self._driver._check_open()
        if wanted is None:
            return []
        rows = self._rows.get(user, [])
        found: list[ArchiveItem] = []
        for row in reversed(rows) if reverse else rows:
            if _matches(wanted, row):
                found.append(row.to_item())
                if len(found) == wanted.limit:
                    break
        return found

    async def delete(self, user: str, ids: Sequence[str] | None = None) -> int:
        self._driver._check_open()
        rows = self._rows.get(user, [])
        if ids is None:
            doomed = len(rows)
            self._rows.pop(user, None)
            return doomed
        numbers = set(_parse_archive_ids(ids))
        kept = [row for row in rows if row.number not in numbers]
        if kept:
            self._rows[user] = kept
        else:
            self._rows.pop(user, None)
        return len(rows) - len(kept)

    async def count(self, user: str) -> int:
        self._driver._check_open()
        return len(self._rows.get(user, []))
