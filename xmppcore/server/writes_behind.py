"""Writes a module starts in the background, per key, that later reads of the key wait for.

A hook handler that records something nobody waits to read (when an account last logged out)
should not hold up the handlers after it, nor the client's next stanza, for a commit that may be
held back to share it with others (``KeyValueStore.set(..., urgent=False)``).  It starts the
write here and goes on; a read of the same key first waits for the key's last write, so it sees
what was recorded, and the writes of one key run one after another, in the order started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["WritesBehind"]


class WritesBehind:
    """Background writes by key; :meth:`settled` waits for a key's last one."""

    __slots__ = ("_last", "_log")

    def __init__(self, log: logging.Logger | logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self._last: dict[str, asyncio.Future[None]] = {}
        self._log = log

    def start(self, key: str, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write()`` in the background, after the key's earlier writes; a failure is logged.

        A store that queues the write when called (SQLite's ``KeyValueStore.set``) costs no task
        here: its future is kept as it is.
        """
        previous = self._last.get(key)
        future = asyncio.ensure_future(write() if previous is None else _after(previous, write))
        self._last[key] = future
        future.add_done_callback(lambda done: self._done(key, done))

    async def settled(self, key: str) -> None:
        """Return once the writes started for ``key`` so far are done (failed or not)."""
        task = self._last.get(key)
        if task is not None:
            await asyncio.wait((task,))

    def _done(self, key: str, future: asyncio.Future[None]) -> None:
        if self._last.get(key) is future:
            del self._last[key]
        if not future.cancelled() and (exc := future.exception()) is not None:
            self._log.error("a background write for %s failed: %s", key, exc)


async def _after(previous: asyncio.Future[None], write: Callable[[], Awaitable[None]]) -> None:
    await asyncio.wait((previous,))
    await write()
