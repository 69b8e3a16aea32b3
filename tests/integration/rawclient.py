"""RFC 6120 §4–§7 from the client's side, byte by byte: a raw XMPP client for hostile tests.

Unlike slixmpp or aioxmpp it sends exactly the bytes a test gives it, so a test can open a
stream with a DOCTYPE, send a comment or invalid UTF-8 mid-stream, or forge a ``from``.  What
the server sends back is parsed with our own :class:`StreamParser` as it arrives, so tests
assert on elements.  Everything the server sends is parsed the moment it is received (an
``asyncio.Protocol``, not a ``StreamReader``): when the server closes with a reset right after
its stream error, the error that was already received is not thrown away with the connection.

Every wait has a timeout (``asyncio.wait_for``); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xmppcore.jid import JID
from xmppcore.protocol.sasl import ScramClient, parse_mechanism, plain_client_message
from xmppcore.stanza.errors import SaslCondition, StreamCondition, StreamError
from xmppcore.transport.tls import client_ssl_context, tls_exporter
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamHeader, StreamParser
from xmppcore.xml.serializer import serialize

__all__ = [
    "RawClient", "ConnectionEnded", "WAIT", "stream_header_bytes", "stream_error_condition",
    "sasl_failure_condition", "ClientEvent", "best_scram",
]

WAIT = 5.0  # seconds: the default bound on every wait for the server


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The server ended the TCP connection (FIN, reset or TLS close)."""

    error: str | None = None


ClientEvent = ParseEvent | ConnectionEnded


def stream_header_bytes(to: str = "localhost", ns: str = NS_CLIENT, version: str = "1.0") -> bytes:
    """An initial stream header (RFC 6120 §4.7) with ``ns`` as the default namespace."""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='{NS_STREAMS}'"
        f" to='{to}' version='{version}'>"
    ).encode()


def stream_error_condition(element: Element) -> StreamCondition:
    """The defined condition of a ``<stream:error/>`` (RFC 6120 §4.9.2)."""
    assert (element.ns, element.name) == (NS_STREAMS, "error"), f"not a stream error: {element!r}"
    conditions = [c for c in element.elements() if c.ns == NS_STREAM_ERRORS and c.name != "text"]
    assert len(conditions) == 1, f"a stream error has exactly one condition: {element!r}"
    return StreamCondition(conditions[0].name)


class _Protocol(asyncio.Protocol):
    """Parses incoming bytes on arrival and queues the events."""

    def __init__(self) -> None:
        self.parser = StreamParser(max_stanza_size=1 << 20)
        self.events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.ended = False
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for event in self.parser.feed(data):
                self.events.put_nowait(event)
        except StreamError as exc:  # the server sent something our parser refuses: a test failure
            self._end(f"server sent bad XML: {exc}")

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(repr(exc) if exc is not None else None)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def writable(self) -> None:
        await self._can_write.wait()

    def _end(self, error: str | None) -> None:
        self._can_write.set()  # writers must not wait on a dead connection
        if not self.ended:
            self.ended = True
            self.events.put_nowait(ConnectionEnded(error))


class RawClient:
    """One client connection driven byte by byte."""

    def __init__(self, protocol: _Protocol, host: str, domain: str = "localhost") -> None:
        self._protocol = protocol
        self._host = host
        # The service's domain: the default stream 'to' and the name the TLS certificate must
        # carry (RFC 6120 §13.7.2.1: the client checks the certificate against the domain).
        self.domain = domain
        self.jid: JID | None = None

    # -- connection ----------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls, host: str, port: int, *, timeout: float = WAIT, direct_tls_cafile: Path | None = None,
        domain: str = "localhost",
    ) -> RawClient:
        """Open a TCP connection; with ``direct_tls_cafile``, TLS from the first byte (XEP-0368).

        ``domain`` is the service the client means to reach (stream 'to', TLS server name).
        """
        loop = asyncio.get_running_loop()
        if direct_tls_cafile is None:
            connecting = loop.create_connection(_Protocol, host, port)
        else:
            context = client_ssl_context(cafile=direct_tls_cafile)
            context.set_alpn_protocols(["xmpp-client"])
            connecting = loop.create_connection(_Protocol, host, port, ssl=context, server_hostname=domain)
        _, protocol = await asyncio.wait_for(connecting, timeout)
        return cls(protocol, host, domain)

    def channel_binding(self) -> bytes | None:
        """RFC 9266 ``tls-exporter`` data of this connection, computed on the client's side."""
        transport = self._protocol.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return tls_exporter(ssl_object) if ssl_object is not None else None

    @classmethod
    async def login(
        cls, host: str, port: int, cafile: Path, username: str, password: str, resource: str | None = None,
        *, domain: str = "localhost", mechanism: str | None = None,
    ) -> RawClient:
        """Connect to the STARTTLS port, negotiate TLS, SCRAM and bind.

        Without ``mechanism`` the best SCRAM the server offers is used (:func:`best_scram`).
        """
        client = await cls.connect(host, port, domain=domain)
        await client.open_stream()
        features = await client.starttls(cafile)
        chosen = mechanism or best_scram(features)
        assert chosen is not None, f"the server offers no SCRAM-SHA-256 or SCRAM-SHA-1: {features!r}"
        result = await client.authenticate(username, password, mechanism=chosen)
        assert result.name == "success", f"login of {username} failed: {result!r}"
        await client.open_stream()
        await client.bind(resource)
        return client

    @property
    def ended(self) -> bool:
        """True once the server has ended the connection."""
        return self._protocol.ended

    @property
    def has_input(self) -> bool:
        """True when the server has sent something not yet read by the test."""
        return not self._protocol.events.empty()

    def close(self) -> None:
        """Drop the connection without a closing tag."""
        if self._protocol.transport is not None:
            self._protocol.transport.abort()

    # -- output --------------------------------------------------------------------------------
    async def send(self, data: bytes | str) -> None:
        """Write raw bytes; waits while the transport's buffer is full (flow control)."""
        transport = self._protocol.transport
        assert transport is not None
        if not transport.is_closing():
            transport.write(data.encode() if isinstance(data, str) else data)
        await self._protocol.writable()

    async def send_element(self, element: Element) -> None:
        await self.send(serialize(element, NS_CLIENT))

    # -- input ---------------------------------------------------------------------------------
    async def next_event(self, timeout: float = WAIT) -> ClientEvent:
        """The next thing the server did: a header, an element, the footer or ending the connection."""
        queue = self._protocol.events
        if queue.empty() and self._protocol.ended:
            return ConnectionEnded("already ended")
        return await asyncio.wait_for(queue.get(), timeout)

    async def next_element(self, timeout: float = WAIT) -> Element:
        """The next top-level element; anything else fails the test."""
        event = await self.next_event(timeout)
        assert isinstance(event, Element), f"expected an element, got {event!r}"
        return event

    async def wait_for(self, match: Callable[[Element], bool], timeout: float = WAIT) -> Element:
        """Skip elements until one matches; the stream ending first fails the test."""
        async def scan() -> Element:
            while True:
                event = await self.next_event(timeout)
                if isinstance(event, Element) and match(event):
                    return event
                assert not isinstance(event, (StreamFooter, ConnectionEnded)), f"stream ended: {event!r}"
        return await asyncio.wait_for(scan(), timeout)

    async def expect_stream_error(self, timeout: float = WAIT) -> StreamCondition:
        """The next element must be ``<stream:error/>`` (after the server's header, if the
        error is about our initial header, RFC 6120 §4.9.1.2); returns its condition."""
        event = await self.next_event(timeout)
        if isinstance(event, StreamHeader):
            event = await self.next_event(timeout)
        assert isinstance(event, Element), f"expected a stream error, got {event!r}"
        return stream_error_condition(event)

    async def expect_closed(self, timeout: float = WAIT) -> None:
        """The server closes the stream (RFC 6120 §4.4) and then the connection."""
        event = await self.next_event(timeout)
        assert isinstance(event, StreamFooter | ConnectionEnded), f"expected the stream to close, got {event!r}"
        while not isinstance(event, ConnectionEnded):
            event = await self.next_event(timeout)
            assert isinstance(event, ConnectionEnded), f"expected the connection to end, got {event!r}"

    # -- negotiation ---------------------------------------------------------------------------
    async def send_header(self, header: bytes) -> None:
        """Send a stream header (initial or restart) without reading the answer.

        Our parser starts a new document first: the server answers a restart with a new
        header (RFC 6120 §4.3.3), which would otherwise nest inside the old stream.
        """
        self._protocol.parser.reset()
        await self.send(header)

    async def open_stream(self, to: str | None = None) -> Element:
        """Send a stream header (initial or restart); return the server's ``<features/>``."""
        await self.send_header(stream_header_bytes(self.domain if to is None else to))
        header = await self.next_event()
        assert isinstance(header, StreamHeader), f"expected the server's stream header, got {header!r}"
        features = await self.next_element()
        assert (features.ns, features.name) == (NS_STREAMS, "features"), f"expected features, got {features!r}"
        return features

    async def starttls(self, cafile: Path) -> Element:
        """RFC 6120 §5.4: STARTTLS, the TLS handshake and the stream restart; returns the features."""
        await self.send_element(Element("starttls", NS_TLS))
        proceed = await self.next_element()
        assert (proceed.ns, proceed.name) == (NS_TLS, "proceed"), f"expected <proceed/>, got {proceed!r}"
        await self.tls_handshake(cafile)
        return await self.open_stream()

    async def tls_handshake(self, cafile: Path, timeout: float = WAIT) -> None:
        """RFC 6120 §5.4.3.3: the TLS handshake after ``<proceed/>``, verifying ``self.domain``."""
        context = client_ssl_context(cafile=cafile)
        loop = asyncio.get_running_loop()
        old = self._protocol.transport
        assert old is not None
        new = await asyncio.wait_for(
            loop.start_tls(old, self._protocol, context, server_hostname=self.domain), timeout)
        assert new is not None
        self._protocol.transport = new

    async def authenticate(
        self, username: str, password: str, *, mechanism: str = "SCRAM-SHA-256", authzid: str | None = None,
        channel_binding_data: bytes | None = None,
    ) -> Element:
        """One SASL exchange (RFC 6120 §6.4); returns ``<success/>`` or ``<failure/>``.

        On success the caller restarts the stream with :meth:`open_stream`.
        """
        if mechanism == "PLAIN":
            payload = plain_client_message(username, password, authzid or "")
            await self._send_auth(mechanism, payload)
            return await self._sasl_outcome()
        parsed = parse_mechanism(mechanism)
        assert parsed is not None, f"unsupported here: {mechanism}"
        hash_name, plus = parsed
        binding = None
        if plus:
            # The -PLUS variants bind to this TLS connection (RFC 5802 §6, RFC 9266); a test
            # may pass other data to see the server refuse it.
            data = channel_binding_data if channel_binding_data is not None else self.channel_binding()
            assert data is not None, "no TLS channel binding on this connection"
            binding = ("tls-exporter", data)
        scram = ScramClient(hash_name, username=username, password=password,
                            client_nonce=secrets.token_hex(16), authzid=authzid,
                            channel_binding=binding, plus=plus, server_supports_plus=plus)
        await self._send_auth(mechanism, scram.client_first())
        challenge = await self.next_element()
        if challenge.name != "challenge":
            return self._checked_outcome(challenge)
        final = scram.receive_server_first(base64.b64decode(challenge.text))
        await self.send_element(Element("response", NS_SASL, text=base64.b64encode(final).decode()))
        outcome = await self._sasl_outcome()
        if outcome.name == "success":
            scram.receive_server_final(base64.b64decode(outcome.text))  # the server knows our key
        return outcome

    async def _send_auth(self, mechanism: str, initial: bytes) -> None:
        text = base64.b64encode(initial).decode() or "="
        await self.send_element(Element("auth", NS_SASL, {"mechanism": mechanism}, [text]))

    async def _sasl_outcome(self) -> Element:
        return self._checked_outcome(await self.next_element())

    @staticmethod
    def _checked_outcome(element: Element) -> Element:
        assert element.ns == NS_SASL and element.name in ("success", "failure"), f"not a SASL outcome: {element!r}"
        return element

    async def bind(self, resource: str | None = None) -> JID:
        """RFC 6120 §7: bind a resource; returns the full JID."""
        iq = Element("iq", NS_CLIENT, {"type": "set", "id": "bind-1"})
        bind = iq.add("bind", NS_BIND)
        if resource:
            bind.add("resource", text=resource)
        await self.send_element(iq)
        reply = await self.next_element()
        assert reply.get("type") == "result" and reply.get("id") == "bind-1", f"bind failed: {reply!r}"
        bound = reply.find("bind", NS_BIND)
        assert bound is not None, f"bind result without <bind/>: {reply!r}"
        self.jid = JID.parse(bound.findtext("jid", NS_BIND) or "")
        return self.jid


def best_scram(features: Element) -> str | None:
    """The strongest of SCRAM-SHA-256 and SCRAM-SHA-1 the features offer (RFC 6120 §6.4.1)."""
    mechanisms = features.find("mechanisms", NS_SASL)
    if mechanisms is None:
        return None
    offered = {m.text.strip() for m in mechanisms.findall("mechanism", NS_SASL)}
    for name in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        if name in offered:
            return name
    return None


def sasl_failure_condition(element: Element) -> SaslCondition:
    """The condition of a SASL ``<failure/>`` (RFC 6120 §6.5)."""
    assert (element.ns, element.name) == (NS_SASL, "failure"), f"not a SASL failure: {element!r}"
    conditions = [c for c in element.elements() if c.ns == NS_SASL and c.name != "text"]
    assert len(conditions) == 1, f"a SASL failure has one condition: {element!r}"
    return SaslCondition(conditions[0].name)

