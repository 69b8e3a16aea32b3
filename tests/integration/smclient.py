"""XEP-0198 Stream Management from the client's side, raw: a sender that counts what the server acknowledged.

:class:`SmSender` logs in with :class:`~.rawclient.RawClient` (STARTTLS, SCRAM, bind), enables
stream management without resumption (§3), and then sends stanzas as fast as the connection
takes them, asking for an acknowledgement (``<r/>``, §4) every so often.  A task reads whatever
the server sends as it arrives: ``<a h='…'/>`` raises :attr:`SmSender.acked`, the number of
stanzas sent on this stream that the server has handled; the server's own ``<r/>`` is answered
with the count of stanzas received; any other stanza is kept in :attr:`SmSender.received`.  When
the connection ends (the server was killed), :attr:`SmSender.ended` is set and everything
waiting on the sender returns: what counts is the last 'h' received, which is all a client
can know about what the server kept (§4).

Every wait has a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT
from xmppcore.xml.parser import StreamFooter

from .rawclient import WAIT, ConnectionEnded, RawClient

__all__ = ["NS_SM", "SmSender"]

NS_SM = "urn:xmpp:sm:3"
_H_MODULUS = 1 << 32  # §4: 'h' wraps to zero


class SmSender:
    """A logged-in client with stream management enabled, counting acknowledged stanzas."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.sent = 0            # stanzas sent since <enabled/>
        self.acked = 0           # of those, how many the server acknowledged (the last 'h', unwrapped)
        self.inbound = 0         # stanzas received since <enabled/> (our 'h')
        self.received: list[Element] = []
        self.violations: list[str] = []  # what the server did against XEP-0198
        self.ended = asyncio.Event()
        self._progress = asyncio.Event()  # set on every <a/> and when the connection ends
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def login(cls, host: str, port: int, cafile: Path, username: str, password: str,
                    resource: str) -> SmSender:
        """Log in and enable stream management (XEP-0198 §3); the server must agree."""
        client = await RawClient.login(host, port, cafile, username, password, resource)
        await client.send_element(Element("enable", NS_SM))
        answer = await client.next_element()
        assert (answer.ns, answer.name) == (NS_SM, "enabled"), f"stream management refused: {answer!r}"
        sender = cls(client)
        sender._reader = asyncio.ensure_future(sender._read())
        return sender

    # -- sending -----------------------------------------------------------------------------------
    async def send(self, stanza: Element) -> None:
        """Send one stanza (counted for 'h'); waits only for the socket's flow control."""
        self.sent += 1
        await self.client.send_element(stanza)

    async def request_ack(self) -> None:
        """§4: ask the server how many of our stanzas it has handled."""
        await self.client.send_element(Element("r", NS_SM))

    async def wait_acked(self, at_least: int, timeout: float = WAIT) -> bool:
        """Wait until ``acked`` reaches ``at_least``; False when the connection ended first."""
        async def progress() -> None:
            while self.acked < at_least and not self.ended.is_set():
                self._progress.clear()
                await self._progress.wait()
        await asyncio.wait_for(progress(), timeout)
        return self.acked >= at_least

    def close(self) -> None:
        """Drop the connection without a closing tag and stop reading."""
        self.client.close()
        if self._reader is not None:
            self._reader.cancel()

    # -- reading -----------------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            while True:
                try:
                    event = await self.client.next_event(timeout=3600)
                except TimeoutError:
                    continue
                if isinstance(event, (ConnectionEnded, StreamFooter)):
                    return
                if isinstance(event, Element):
                    await self._handle(event)
        finally:
            self.ended.set()
            self._progress.set()

    async def _handle(self, element: Element) -> None:
        if element.ns == NS_SM and element.name == "a":
            self._acknowledged(int(element.get("h") or "0"))
        elif element.ns == NS_SM and element.name == "r":
            with contextlib.suppress(ConnectionError, OSError):
                await self.client.send_element(Element("a", NS_SM, {"h": str(self.inbound % _H_MODULUS)}))
        elif element.ns == NS_CLIENT:
            self.inbound += 1
            self.received.append(element)

    def _acknowledged(self, h: int) -> None:
        # 'h' is the count modulo 2^32 (§4); the sender knows roughly where it is.
        advance = (h - self.acked) % _H_MODULUS
        if self.acked + advance > self.sent:
            self.violations.append(f"acknowledged {self.acked + advance} stanzas of {self.sent} sent")
            return
        self.acked += advance
        self._progress.set()
