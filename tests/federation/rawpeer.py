"""A hand-driven server-to-server peer for the spoofing tests: it says exactly what the test writes.

It reuses the integration tests' :class:`RawClient` (its parser and event queue) with server
headers (``jabber:server``, ``xmlns:db``) and a TLS handshake that can present a certificate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from xmppcore.transport.s2s_tls import s2s_client_context
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DIALBACK, NS_SASL, NS_STREAMS, NS_TLS
from xmppcore.xml.parser import StreamHeader

from ..integration.rawclient import RawClient

WAIT = 10.0


def server_header(from_: str, to: str) -> bytes:
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAMS}'"
            f" xmlns:db='{NS_DIALBACK}' from='{from_}' to='{to}' version='1.0'>").encode()


class RawPeer(RawClient):
    """One connection to a node's s2s port, claiming ``claimed`` and asking for ``target``."""

    claimed = ""
    stream_id = ""

    @classmethod
    async def open(cls, host: str, port: int, *, claimed: str, target: str) -> RawPeer:
        peer = await cls.connect(host, port, domain=target)
        assert isinstance(peer, RawPeer)
        peer.claimed = claimed
        return peer

    async def open_server_stream(self) -> Element:
        """Send our header; return the node's features (and remember its stream id)."""
        await self.send_header(server_header(self.claimed, self.domain))
        header = await self.next_event()
        assert isinstance(header, StreamHeader), f"expected a stream header, got {header!r}"
        self.stream_id = header.attrs.get("id", "")
        features = await self.next_element()
        assert (features.ns, features.name) == (NS_STREAMS, "features"), f"expected features, got {features!r}"
        return features

    async def secure(self, *, certificate: tuple[Path, Path] | None = None, cafile: Path | None = None) -> Element:
        """STARTTLS (presenting ``certificate`` if given), restart; returns the new features."""
        await self.send_element(Element("starttls", NS_TLS))
        proceed = await self.next_element()
        assert proceed.name == "proceed", f"expected <proceed/>, got {proceed!r}"
        cert, key = certificate if certificate is not None else (None, None)
        context = s2s_client_context(cert, key, cafile=cafile)
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        assert protocol.transport is not None
        new = await asyncio.wait_for(
            loop.start_tls(protocol.transport, protocol, context, server_hostname=self.domain), WAIT)
        assert new is not None
        protocol.transport = new
        return await self.open_server_stream()

    async def external(self) -> Element:
        """SASL EXTERNAL with an empty authzid (XEP-0178); returns ``<success/>`` or ``<failure/>``."""
        auth = Element("auth", NS_SASL, {"mechanism": "EXTERNAL"})
        auth.text = "="
        await self.send_element(auth)
        return await self.next_element()
