"""Writes a stanza's routing started and did not wait for: its commitments (issue 8).

A client's stanzas are routed one after another (RFC 6120 §10.1), and a stanza counts as handled
— XEP-0198 acknowledges it — only once what its routing wrote is committed.  Waiting for each
commit inside the routing would let a connection put one message into each group commit of the
archive (docs/performance.md).  Instead, a module whose storage can name a new entry before it is
committed (:meth:`~xmppcore.storage.api.ArchiveStore.start_append`) hands the commit to the
routing under way with :func:`promise` and carries on; the connection routes its next stanza at
once, and acknowledges each stanza, in order, when its commitments are done.

Nothing written that way may be seen before it is committed: while the routing that made a
promise delivers stanzas, a client session holds them (in order, behind anything it already
holds) until that routing's commitments are done (:func:`unfinished`;
``ClientSession.deliver``).  A crash before the commit therefore loses nothing anyone was shown,
and the sender, never acknowledged, sends the stanza again.

The commitments travel in a context variable: set by the connection around the routing of one
stanza (:func:`collecting`), seen by every handler the routing runs and by tasks it starts.
Where nobody collects (a stanza from another server, one the server makes), :func:`promise`
says so and the module waits for its commit itself, as before.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

__all__ = ["Commitments", "collecting", "promise", "unfinished"]

_current: contextvars.ContextVar[Commitments | None] = contextvars.ContextVar("xmppcore_commitments", default=None)


class Commitments:
    """The commits one stanza's routing promised; done when all of them are, failed or not
    (the module that promised one reports its failure: the stanza still counts as handled)."""

    __slots__ = ("_futures", "_token")

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[Any]] = []
        self._token: contextvars.Token[Commitments | None] | None = None

    def __enter__(self) -> Commitments:
        self._token = _current.set(self)
        return self

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def add(self, future: asyncio.Future[Any]) -> None:
        self._futures.append(future)

    @property
    def done(self) -> bool:
        futures = self._futures
        if futures and all(future.done() for future in futures):
            futures.clear()
        return not futures

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every commitment is done (at once if they are)."""
        waiting = [future for future in self._futures if not future.done()]
        if not waiting:
            callback()
            return
        remaining = len(waiting)

        def one_done(_: asyncio.Future[Any]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                self.when_done(callback)  # again: more may have been promised meanwhile

        for future in waiting:
            future.add_done_callback(one_done)

    async def wait(self) -> None:
        """Return once every commitment is done (never raises for a failed one: the module
        that promised it reports it)."""
        while not self.done:
            await asyncio.wait(list(self._futures))


def collecting() -> Commitments:
    """Collect the commitments of the routing run inside the ``with`` block (the context
    variable is set on entry and restored on exit)."""
    return Commitments()


def promise(future: asyncio.Future[Any]) -> bool:
    """Hand ``future`` (a commit) to the routing under way; False when there is none, and the
    caller must wait for it itself."""
    commitments = _current.get()
    if commitments is None:
        return False
    commitments.add(future)
    return True


def unfinished() -> Commitments | None:
    """The commitments of the routing under way, while some are not done; else None."""
    commitments = _current.get()
    return commitments if commitments is not None and not commitments.done else None
