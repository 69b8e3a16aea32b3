"""XEP-0114 Jabber Component Protocol: the runtime side of external components.

A component connects to ``components.port``, proves it knows its domain's secret (the pure core
in ``protocol/component.py``) and from then on receives every stanza addressed to its domain or a
JID at it, and may send from any JID at its domain.  One connection per domain: a second one is
refused with ``conflict`` while the first is up.  Stanzas to a configured component that is not
connected are answered with ``service-unavailable`` (RFC 6120 §8.3.3.19).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from ..jid import JID
from ..protocol import events as ev
from ..protocol.component import ComponentServer
from ..stanza.errors import Condition, StreamCondition
from ..transport.tcp import StreamTransport
from ..xml.element import Element
from .inbound import AddressedInbound

if TYPE_CHECKING:
    from .app import Server

__all__ = ["Components", "ComponentConnection"]

log = logging.getLogger(__name__)


class ComponentConnection:
    """One component's connection: handshake, then stanzas both ways."""

    def __init__(self, components: Components, transport: StreamTransport) -> None:
        self._components = components
        self.transport = transport
        self.tag = secrets.token_hex(4)
        cfg = components.server.config.components
        self.core = ComponentServer(
            secret_for=components.secret_for,
            admit=components.admit,
            id_factory=lambda: secrets.token_hex(16),
            now=asyncio.get_running_loop().time(),
            max_stanza_size=cfg.max_stanza_size,
            auth_timeout=cfg.auth_timeout,
        )
        self.domain = ""
        # The core checked 'from' is at the component's domain and both are JIDs.
        self._inbound = AddressedInbound(components.server.router, transport, tag=self.tag)
        self._ended = False
        log.debug("[%s] component connection from %s", self.tag, transport.peer_address)

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ComponentAuthenticated):
            self.domain = event.domain
            self._components.connected(self)
            log.info("[%s] component %s connected from %s", self.tag, event.domain, self.transport.peer_address)
        elif isinstance(event, ev.StanzaReceived):
            self._inbound.put(event.stanza)
        elif isinstance(event, ev.StreamClosed):
            if event.condition is not None:
                log.info("[%s] component stream closed with %s%s", self.tag, event.condition.value,
                         " by peer" if event.by_peer else "")
            self._end()

    def transport_closed(self) -> None:
        self._end()

    def deliver(self, stanza: Element) -> None:
        if self.core.authenticated and not self.core.closed:
            self.core.send_stanza(stanza)
            self.transport.pump()

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        if not self.core.closed:
            self.core.close(condition, text)
        self.transport.pump()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._components.disconnected(self)


class Components:
    """The configured components of one server and the connections serving them."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._secrets = dict(server.config.components.secrets)
        self._connected: dict[str, ComponentConnection] = {}
        self._connections: set[ComponentConnection] = set()
        self._listeners: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen, when at least one component is configured."""
        cfg = self.server.config.components
        if cfg.port < 0 or not self._secrets:
            return
        loop = asyncio.get_running_loop()
        for address in cfg.bind or self.server.config.c2s.bind:
            srv = await loop.create_server(lambda: StreamTransport(self._accept), address, cfg.port,
                                           reuse_address=True, backlog=128)
            self._listeners.append(srv)
            self.addresses.extend((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in srv.sockets)

    async def stop(self) -> None:
        for srv in self._listeners:
            srv.close()
        for conn in list(self._connections):
            conn.close(StreamCondition.SYSTEM_SHUTDOWN)
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners.clear()

    def _accept(self, transport: StreamTransport) -> ComponentConnection:
        conn = ComponentConnection(self, transport)
        self._connections.add(conn)
        return conn

    # -- for the core ------------------------------------------------------------------------------
    def secret_for(self, domain: str) -> str | None:
        return self._secrets.get(domain)

    def admit(self, domain: str) -> StreamCondition | None:
        """One connection per domain: the second is refused while the first is up."""
        current = self._connected.get(domain)
        if current is not None and not current.core.closed:
            return StreamCondition.CONFLICT
        return None

    def connected(self, conn: ComponentConnection) -> None:
        self._connected[conn.domain] = conn

    def disconnected(self, conn: ComponentConnection) -> None:
        self._connections.discard(conn)
        if self._connected.get(conn.domain) is conn:
            del self._connected[conn.domain]
            log.info("[%s] component %s disconnected", conn.tag, conn.domain)

    # -- for the router ----------------------------------------------------------------------------
    def serves(self, domain: str) -> bool:
        """Whether ``domain`` is a configured component (connected or not)."""
        return domain in self._secrets

    def is_connected(self, domain: str) -> bool:
        return domain in self._connected

    def under(self, host: str) -> list[str]:
        """Configured components that are subdomains of ``host`` (listed in its disco#items)."""
        return sorted(domain for domain in self._secrets if domain.endswith("." + host))

    async def send(self, stanza: Element, sender: JID, to: JID) -> None:
        """Deliver to the component serving ``to.domain``, or bounce ``service-unavailable``."""
        conn = self._connected.get(to.domain)
        if conn is not None and conn.core.authenticated and not conn.core.closed:
            conn.deliver(stanza)
            return
        await self.server.router.bounce(stanza, sender, to, Condition.SERVICE_UNAVAILABLE)
