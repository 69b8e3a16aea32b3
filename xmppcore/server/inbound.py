"""Stanzas a server or component stream received, routed one at a time in arrival order.

RFC 6120 §10.1 asks a server to keep the order of stanzas between two entities; a stream's
stanzas therefore go through the router one after the other.  When the router falls behind,
the stream stops being read until the queue has drained (backpressure instead of memory).
The stream's core has already checked both addresses; ``from`` and ``to`` are required here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from ..jid import JID, InvalidJID
from ..transport.tcp import StreamTransport
from ..xml.element import Element

if TYPE_CHECKING:
    from .router import Router

__all__ = ["AddressedInbound"]

log = logging.getLogger(__name__)


class AddressedInbound:
    """The ordered inbound queue of one stream whose stanzas carry both addresses."""

    def __init__(self, router: Router, transport: StreamTransport, *, tag: str,
                 high: int = 512, low: int = 64) -> None:
        self._router = router
        self._transport = transport
        self._tag = tag
        self._high, self._low = high, low
        self._queue: deque[Element] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._paused = False

    def put(self, stanza: Element) -> None:
        self._queue.append(stanza)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._run())
        if len(self._queue) >= self._high and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    async def _run(self) -> None:
        while self._queue:
            stanza = self._queue.popleft()
            try:
                sender, to = JID.parse(stanza.attrs["from"]), JID.parse(stanza.attrs["to"])
                await self._router.route(stanza, sender, to)
            except (InvalidJID, KeyError):
                log.warning("[%s] dropping a stanza without valid addresses", self._tag)
            except Exception:
                log.exception("[%s] routing <%s/> failed", self._tag, stanza.name)
            if self._paused and len(self._queue) <= self._low:
                self._paused = False
                self._transport.resume_reading()
