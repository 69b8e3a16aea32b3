"""The runtime side of server-to-server connections (RFC 6120 §5, §13.7.1.2; XEP-0220, XEP-0288).

Two handlers, one per direction, answer the events of the pure cores in ``protocol/s2s_in.py``
and ``protocol/s2s_out.py``: they upgrade the transport to TLS and read the peer's certificate,
ask the :class:`~xmppcore.server.s2s.Federation` to verify dialback keys with the authoritative
server, and hand received stanzas to the router one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..protocol import events as ev
from ..protocol.s2s_in import S2SIncoming
from ..protocol.s2s_out import S2SOutgoing
from ..stanza.errors import Condition, StreamCondition
from ..transport.s2s_tls import peer_certificate
from ..transport.tcp import StreamTransport
from ..xml.element import Element
from .inbound import AddressedInbound

if TYPE_CHECKING:
    from .s2s import Federation

__all__ = ["ServerStream", "InboundServerStream", "OutboundServerStream"]

log = logging.getLogger(__name__)


def _no_certificate(_domain: str) -> bool:
    return False


class ServerStream:
    """What both directions share: TLS, the inbound stanza queue, the end."""

    core: S2SIncoming | S2SOutgoing

    def __init__(self, federation: Federation, transport: StreamTransport) -> None:
        self.federation = federation
        self.transport = transport
        self.stream_tag = secrets.token_hex(4)
        self._tasks: set[asyncio.Task[Any]] = set()
        # The core checked both addresses against the authenticated domains.
        self._inbound = AddressedInbound(federation.server.router, transport, tag=self.stream_tag)
        self.ended = False
        # (local, remote, method, bidi) per authenticated direction, for operators and tests.
        self.authenticated_as: list[tuple[str, str, str, bool]] = []

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _certificate_check(self) -> Callable[[str], bool]:
        obj = self.transport.ssl_object
        if obj is None:
            return _no_certificate
        certificate = peer_certificate(obj)
        if not certificate.verified:
            log.info("[%s] peer certificate not verified: %s", self.stream_tag, certificate.reason)
        return certificate.valid_for

    def send(self, stanza: Element) -> None:
        self.core.send_stanza(stanza)
        self.transport.pump()

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        if not self.core.closed:
            self.core.close(condition, text)
        self.transport.pump()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for task in list(self._tasks):
            task.cancel()
        self.federation.stream_ended(self)


class InboundServerStream(ServerStream):
    """A connection another server opened to us (s2s-in)."""

    def __init__(self, federation: Federation, transport: StreamTransport, *, direct_tls: bool) -> None:
        super().__init__(federation, transport)
        cfg = federation.config
        self.core = self.incoming = S2SIncoming(
            domains=federation.server.serves,
            id_factory=lambda: secrets.token_urlsafe(16),
            now=asyncio.get_running_loop().time(),
            dialback_secret=federation.dialback_secret,
            tls_available=federation.server_context is not None,
            tls_required=cfg.tls_required,
            tls_active=direct_tls,
            peer_certificate_valid_for=self._certificate_check() if direct_tls else None,
            dialback=cfg.dialback,
            require_valid_certificate=cfg.require_valid_certificates,
            bidi=cfg.bidi,
            max_stanza_size=cfg.max_stanza_size,
            auth_timeout=cfg.connect_timeout * 3,
            idle_timeout=cfg.idle_timeout,
        )
        if not federation.admit(self):
            self.core.close(StreamCondition.RESOURCE_CONSTRAINT, "too many server connections")
        log.debug("[%s] server connection from %s", self.stream_tag, transport.peer_address)

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StanzaReceived):
            self._inbound.put(event.stanza)
        elif isinstance(event, ev.TlsRequested):
            self.transport.pause_reading()
            self._spawn(self._start_tls())
        elif isinstance(event, ev.DialbackKeyReceived):
            self._spawn(self._verify(event))
        elif isinstance(event, ev.PeerAuthenticated):
            self.authenticated_as.append((event.local, event.remote, event.method, event.bidi))
            log.info("[%s] %s authenticated (%s%s) for %s", self.stream_tag, event.remote, event.method,
                     ", bidi" if event.bidi else "", event.local)
            if event.bidi:
                self.federation.bidi_ready(self, local=event.local, remote=event.remote)
        elif isinstance(event, ev.StreamClosed):
            self._on_closed(event)

    def transport_closed(self) -> None:
        self._end()

    async def _start_tls(self) -> None:
        context = self.federation.server_context
        assert context is not None
        try:
            await self.transport.start_tls(context)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("[%s] TLS handshake with %s failed: %s", self.stream_tag, self.transport.peer_address, exc)
            self.transport.abort()
            return
        if self.core.closed:
            return
        self.incoming.tls_established(peer_certificate_valid_for=self._certificate_check())
        self.transport.resume_reading()
        self.transport.pump()

    async def _verify(self, event: ev.DialbackKeyReceived) -> None:
        """XEP-0220 §2.1.2: ask the originating domain's authoritative server about the key."""
        valid = await self.federation.verify_key(
            local=event.receiving, remote=event.originating, stream_id=event.stream_id, key=event.key)
        if self.core.closed:
            return
        if valid is None:
            self.incoming.dialback_failed(event.originating, event.receiving, Condition.REMOTE_SERVER_NOT_FOUND)
        else:
            self.incoming.dialback_verified(event.originating, event.receiving, valid)
        self.transport.pump()

    def _on_closed(self, event: ev.StreamClosed) -> None:
        if event.condition is not None:
            log.info("[%s] server stream closed with %s%s", self.stream_tag, event.condition.value,
                     " by peer" if event.by_peer else "")
        self._end()


class OutboundServerStream(ServerStream):
    """A connection we opened to another server for ``local`` → ``remote`` (s2s-out)."""

    def __init__(self, federation: Federation, transport: StreamTransport, *, local: str, remote: str,
                 direct_tls: bool) -> None:
        super().__init__(federation, transport)
        cfg = federation.config
        self.local, self.remote = local, remote
        self.authenticated: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.timed_out = False  # negotiation did not finish in time (remote-server-timeout)
        self.core = self.outgoing = S2SOutgoing(
            local=local, remote=remote,
            now=asyncio.get_running_loop().time(),
            dialback_secret=federation.dialback_secret,
            tls_required=cfg.tls_required,
            tls_active=direct_tls,
            peer_certificate_valid_for=self._certificate_check() if direct_tls else None,
            can_use_external=federation.has_certificate,
            dialback=cfg.dialback,
            require_valid_certificate=cfg.require_valid_certificates,
            bidi=cfg.bidi,
            max_stanza_size=cfg.max_stanza_size,
            auth_timeout=cfg.connect_timeout,
            idle_timeout=cfg.idle_timeout,
        )
        self.outgoing.start()

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StanzaReceived):
            self._inbound.put(event.stanza)  # XEP-0288: the peer's traffic on our connection
        elif isinstance(event, ev.TlsProceed):
            self.transport.pause_reading()
            self._spawn(self._start_tls())
        elif isinstance(event, ev.PeerAuthenticated):
            self.authenticated_as.append((event.local, event.remote, event.method, event.bidi))
            log.info("[%s] authenticated to %s as %s (%s%s)", self.stream_tag, event.remote, event.local,
                     event.method, ", bidi" if event.bidi else "")
            self.federation.outbound_ready(self)
            if not self.authenticated.done():
                self.authenticated.set_result(True)
        elif isinstance(event, ev.DialbackVerifyResult):
            self.federation.verification_answered(event)
        elif isinstance(event, ev.NegotiationFailed):
            self.timed_out = event.reason == "timeout"
            log.info("[%s] stream to %s failed: %s", self.stream_tag, self.remote, event.reason)
        elif isinstance(event, ev.StreamClosed):
            if event.condition is not None:
                log.info("[%s] stream to %s closed with %s%s", self.stream_tag, self.remote,
                         event.condition.value, " by peer" if event.by_peer else "")
            self._end()

    def transport_closed(self) -> None:
        self._end()

    def _end(self) -> None:
        if not self.authenticated.done():
            self.authenticated.set_result(False)
        super()._end()

    async def _start_tls(self) -> None:
        context = self.federation.client_context
        try:
            await self.transport.start_tls(context, server_side=False, server_hostname=self.remote)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("[%s] TLS handshake with %s failed: %s", self.stream_tag, self.remote, exc)
            self.transport.abort()
            return
        if self.core.closed:
            return
        self.outgoing.tls_established(peer_certificate_valid_for=self._certificate_check())
        self.transport.resume_reading()
        self.transport.pump()

    @property
    def ready(self) -> bool:
        return self.outgoing.ready and not self.core.closed
