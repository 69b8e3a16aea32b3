"""RFC 6120 §2.5 and §3.2: federation — streams to and from other servers, and what waits for them.

The :class:`Federation` owns the server-to-server side of a node:

* listeners for other servers (STARTTLS on ``s2s.port``, direct TLS on ``s2s.direct_tls_port``,
  XEP-0368), with the TLS contexts that request the peer's certificate without failing on it;
* one outgoing route per (local domain, remote domain): stanzas queue while the route resolves
  (``s2s.routes``, then DNS SRV, then the domain on 5269), connects and authenticates, and flow
  when it is ready; a peer that cannot be reached bounces them with ``remote-server-not-found``,
  one that does not answer in ``s2s.connect_timeout`` with ``remote-server-timeout``;
* the authoritative side of Server Dialback: keys are checked from a secret (XEP-0185), and
  keys other servers hand us are verified over our own outgoing stream to their domain;
* XEP-0288: an inbound stream the peer made bidirectional also carries our traffic to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..jid import JID
from ..protocol import events as ev
from ..stanza.errors import Condition, StreamCondition
from ..transport.resolver import ServerResolver, Target
from ..transport.s2s_tls import s2s_client_context, s2s_server_context
from ..transport.tcp import StreamTransport
from ..xml.element import Element
from .s2s_streams import InboundServerStream, OutboundServerStream, ServerStream

if TYPE_CHECKING:
    from .app import Server

__all__ = ["Federation"]

log = logging.getLogger(__name__)

_ALPN = "xmpp-server"  # XEP-0368 §4


@dataclass(eq=False)
class _Route:
    """Everything about sending from ``local`` to ``remote``."""

    local: str
    remote: str
    queue: deque[Element] = field(default_factory=deque)
    stream: OutboundServerStream | None = None
    task: asyncio.Task[None] | None = None
    verifications: list[tuple[str, str]] = field(default_factory=list)  # (stream id, key) to send


class Federation:
    """The s2s side of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config.s2s
        cfg = self.config
        self.resolver = ServerResolver(static=cfg.routes, nameservers=cfg.dns_servers,
                                       timeout=min(5.0, cfg.connect_timeout))
        self.server_context: ssl.SSLContext | None = None
        self.direct_server_context: ssl.SSLContext | None = None
        self.client_context = s2s_client_context(cafile=self._cafile())
        self.has_certificate = False
        self.dialback_secret = b""
        self.addresses: list[tuple[str, int]] = []
        self.direct_tls_addresses: list[tuple[str, int]] = []
        self._listeners: list[asyncio.Server] = []
        self._routes: dict[tuple[str, str], _Route] = {}
        self._bidi: dict[tuple[str, str], InboundServerStream] = {}
        self._streams: set[ServerStream] = set()
        self._answers: dict[tuple[str, str, str], list[asyncio.Future[bool | None]]] = {}
        self._stopping = False

    def _cafile(self) -> Path | None:
        return Path(self.config.ca_file) if self.config.ca_file else None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, certfile: Path, keyfile: Path) -> None:
        """TLS contexts with our certificate, then the listeners (when enabled)."""
        # A secret of its own, derived from the node's: dialback keys reveal nothing about it.
        self.dialback_secret = hmac.new(self.server.secret, b"xmppcore dialback", hashlib.sha256).digest()
        cafile = self._cafile()
        self.server_context = s2s_server_context(certfile, keyfile, cafile=cafile, alpn=())
        self.direct_server_context = s2s_server_context(certfile, keyfile, cafile=cafile, alpn=(_ALPN,))
        self.client_context = s2s_client_context(certfile, keyfile, cafile=cafile)
        self.has_certificate = True
        if not self.config.enabled:
            return
        loop = asyncio.get_running_loop()
        cfg = self.config
        for address in cfg.bind or self.server.config.c2s.bind:
            for port, direct, found in ((cfg.port, False, self.addresses),
                                        (cfg.direct_tls_port, True, self.direct_tls_addresses)):
                if port < 0:
                    continue
                srv = await loop.create_server(
                    lambda direct=direct: StreamTransport(lambda t: self._accept(t, direct_tls=direct)),
                    address, port, reuse_address=True, backlog=1024,
                    ssl=self.direct_server_context if direct else None,
                    ssl_handshake_timeout=30.0 if direct else None)
                self._listeners.append(srv)
                found.extend((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in srv.sockets)

    async def stop(self) -> None:
        """Close listeners and every server stream; queued stanzas are dropped with the node."""
        self._stopping = True
        for srv in self._listeners:
            srv.close()
        for route in list(self._routes.values()):
            if route.task is not None:
                route.task.cancel()
        for stream in list(self._streams):
            stream.close(StreamCondition.SYSTEM_SHUTDOWN)
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners.clear()
        for futures in self._answers.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def _accept(self, transport: StreamTransport, *, direct_tls: bool) -> InboundServerStream:
        stream = InboundServerStream(self, transport, direct_tls=direct_tls)
        self._streams.add(stream)
        return stream

    def admit(self, stream: ServerStream) -> bool:
        """Whether one more server stream fits in ``s2s.max_connections``."""
        return len(self._streams) < self.config.max_connections and not self._stopping

    def stream_ended(self, stream: ServerStream) -> None:
        self._streams.discard(stream)
        for key, inbound in list(self._bidi.items()):
            if inbound is stream:
                del self._bidi[key]
        if isinstance(stream, OutboundServerStream):
            route = self._routes.get((stream.local, stream.remote))
            # While the route is still connecting, _connect says how it failed.
            if route is not None and route.stream is stream and route.task is None:
                del self._routes[(stream.local, stream.remote)]
                self._abandon(route, Condition.REMOTE_SERVER_NOT_FOUND)

    def links(self) -> list[tuple[str, str, str, str, bool]]:
        """``(direction, local, remote, method, bidi)`` of every authenticated stream, in or out."""
        return sorted(
            ("in" if isinstance(stream, InboundServerStream) else "out", *entry)
            for stream in self._streams if not stream.ended for entry in stream.authenticated_as)

    # -- sending -----------------------------------------------------------------------------------
    async def send(self, stanza: Element, sender: JID, to: JID) -> None:
        """Hand ``stanza`` to the stream for ``sender.domain`` → ``to.domain``."""
        local, remote = sender.domain, to.domain
        if not self.config.enabled or not self.server.serves(local):
            await self._bounce(stanza, sender, to, Condition.REMOTE_SERVER_NOT_FOUND)
            return
        inbound = self._bidi.get((local, remote))
        if inbound is not None and not inbound.ended and not inbound.core.closed:
            inbound.send(stanza)
            return
        route = self._route(local, remote)
        if route.stream is not None and route.stream.ready and not route.queue:
            route.stream.send(stanza)
            return
        if len(route.queue) >= self.config.max_queued_per_domain:
            await self._bounce(stanza, sender, to, Condition.RESOURCE_CONSTRAINT)
            return
        route.queue.append(stanza)

    def _route(self, local: str, remote: str) -> _Route:
        route = self._routes.get((local, remote))
        if route is None:
            route = self._routes[(local, remote)] = _Route(local, remote)
        if route.stream is None and route.task is None and not self._stopping:
            route.task = asyncio.ensure_future(self._connect(route))
        return route

    async def _connect(self, route: _Route) -> None:
        condition = Condition.REMOTE_SERVER_NOT_FOUND
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                if await self._establish(route):
                    return
            if route.stream is not None and route.stream.timed_out:
                condition = Condition.REMOTE_SERVER_TIMEOUT
        except TimeoutError:
            condition = Condition.REMOTE_SERVER_TIMEOUT
            log.info("no stream to %s within %.0f s", route.remote, self.config.connect_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("connecting to %s failed", route.remote)
        finally:
            route.task = None
        if self._routes.get((route.local, route.remote)) is route:
            del self._routes[(route.local, route.remote)]
        if route.stream is not None:
            route.stream.close()
        self._abandon(route, condition)

    async def _establish(self, route: _Route) -> bool:
        """Try the targets in order until one connects; True once authenticated."""
        targets = await self.resolver.targets(route.remote)
        for target in targets:
            stream = await self._open(route, target)
            if stream is None:
                continue
            if not stream.core.closed:  # it may have been reset already
                for stream_id, key in route.verifications:
                    stream.outgoing.request_verification(stream_id=stream_id, key=key)
            route.verifications.clear()
            stream.transport.pump()
            # outbound_ready() flushed the queue the moment the stream was authenticated.
            return await stream.authenticated  # False: the server refused; other addresses would too
        log.info("no address of %s accepted a connection (%d tried)", route.remote, len(targets))
        return False

    def outbound_ready(self, stream: OutboundServerStream) -> None:
        """``stream`` is authenticated: what waited for it goes first, in order."""
        route = self._routes.get((stream.local, stream.remote))
        if route is not None and route.stream is stream:
            while route.queue and stream.ready:
                stream.send(route.queue.popleft())

    async def _open(self, route: _Route, target: Target) -> OutboundServerStream | None:
        if len(self._streams) >= self.config.max_connections:
            log.warning("s2s.max_connections reached; not connecting to %s", route.remote)
            return None
        loop = asyncio.get_running_loop()
        made: list[OutboundServerStream] = []

        def handler(transport: StreamTransport) -> OutboundServerStream:
            stream = OutboundServerStream(self, transport, local=route.local, remote=route.remote,
                                          direct_tls=target.direct_tls)
            self._streams.add(stream)
            route.stream = stream  # before any byte arrives: outbound_ready() looks for it
            made.append(stream)
            return stream

        context = None
        if target.direct_tls:
            context = s2s_client_context(*self._certificate_files(), cafile=self._cafile(), alpn=(_ALPN,))
        try:
            await loop.create_connection(
                lambda: StreamTransport(handler), target.host, target.port,
                ssl=context, server_hostname=route.remote if context is not None else None)
        except (OSError, ssl.SSLError) as exc:
            log.info("cannot connect to %s at %s:%d: %s", route.remote, target.host, target.port, exc)
            return None
        return made[0] if made else None

    def _certificate_files(self) -> tuple[Path | None, Path | None]:
        return self.server.certificate_files

    def _abandon(self, route: _Route, condition: Condition) -> None:
        """Bounce what waited for ``route`` and tell verifications it could not be asked."""
        queued, route.queue = list(route.queue), deque()
        for stanza in queued:
            try:
                sender, to = JID.parse(stanza.attrs["from"]), JID.parse(stanza.attrs["to"])
            except (KeyError, ValueError):
                continue
            self.server.spawn(self._bounce(stanza, sender, to, condition))
        for key, futures in list(self._answers.items()):
            if key[:2] == (route.remote, route.local):
                for future in futures:
                    if not future.done():
                        future.set_result(None)
                del self._answers[key]
        route.verifications.clear()

    async def _bounce(self, stanza: Element, sender: JID, to: JID, condition: Condition) -> None:
        if self.server.serves(sender.domain):
            await self.server.router.bounce(stanza, sender, to, condition)

    # -- dialback -----------------------------------------------------------------------------------
    async def verify_key(self, *, local: str, remote: str, stream_id: str, key: str) -> bool | None:
        """XEP-0220 §2.1.2: ask ``remote``'s authoritative server whether ``key`` is its own.

        None when it cannot be asked (unreachable, no answer in time).
        """
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        answer_key = (remote, local, stream_id)
        self._answers.setdefault(answer_key, []).append(future)
        route = self._route(local, remote)
        if route.stream is not None and not route.stream.ended and not route.stream.core.closed:
            route.stream.outgoing.request_verification(stream_id=stream_id, key=key)
            route.stream.transport.pump()
        else:
            route.verifications.append((stream_id, key))
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            futures = self._answers.get(answer_key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._answers.pop(answer_key, None)

    def verification_answered(self, event: ev.DialbackVerifyResult) -> None:
        for future in self._answers.pop((event.originating, event.receiving, event.stream_id), []):
            if not future.done():
                future.set_result(event.valid)

    # -- XEP-0288 -------------------------------------------------------------------------------------
    def bidi_ready(self, stream: InboundServerStream, *, local: str, remote: str) -> None:
        """``remote`` made its stream to us bidirectional: our traffic to it may use it."""
        self._bidi[(local, remote)] = stream
        route = self._routes.get((local, remote))
        if route is not None and route.stream is None:
            while route.queue:
                stream.send(route.queue.popleft())
