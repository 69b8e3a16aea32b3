"""RFC 6120 §5–§7 and XEP-0368 from the client side: real slixmpp and aioxmpp clients for the tests.

Each wrapper connects to one listener of the server under test (STARTTLS or direct TLS),
authenticates with SASL (RFC 6120 §6), binds a resource and collects what it receives in
:class:`Inbox` objects.  Tests wait on inboxes and futures with :data:`TIMEOUT`; nothing
here sleeps.  To show that a stanza was *not* delivered, a test sends a marker stanza after
it on the same path and waits for the marker: the server routes one sender's stanzas in
order (RFC 6120 §10.1), so anything that was coming has arrived by then.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import aioxmpp  # type: ignore[import-untyped]
import aioxmpp.connector  # type: ignore[import-untyped]
import aioxmpp.dispatcher  # type: ignore[import-untyped]
import aioxmpp.security_layer  # type: ignore[import-untyped]
import pytest
import slixmpp
from slixmpp.stanza import Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.matcher import MatchXPath

from .conftest import PASSWORD, RunningServer

__all__ = [
    "TIMEOUT",
    "AioClient",
    "Endpoint",
    "Inbox",
    "LoginFailed",
    "MessageKind",
    "SlixClient",
    "SlixPool",
    "capture_logins",
    "direct_tls",
    "logged_logins",
    "starttls",
]

TIMEOUT = 5.0  # seconds any single wait may take on loopback before the test fails

_T = TypeVar("_T")
MessageKind = Literal["chat", "normal", "headline", "groupchat", "error"]  # RFC 6121 §5.2.2
_CLIENT_NS = "jabber:client"
# The server's INFO line for a successful SASL exchange (xmppcore/server/c2s.py).
_LOGIN_LINE = re.compile(r"(?P<jid>\S+) authenticated with (?P<mechanism>\S+) from ")


class LoginFailed(Exception):
    """The client could not log in; ``condition`` is the SASL failure it saw, if any."""

    def __init__(self, condition: str | None, detail: str = "") -> None:
        super().__init__(f"login failed: {condition or detail or 'connection closed'}")
        self.condition = condition


class Inbox(Generic[_T]):
    """What a client received, in arrival order; ``get`` takes the first match, waiting if needed."""

    def __init__(self) -> None:
        self._items: list[_T] = []
        self._waiters: list[asyncio.Future[None]] = []

    def put(self, item: _T) -> None:
        self._items.append(item)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    @property
    def pending(self) -> list[_T]:
        """Items received and not taken yet (a copy)."""
        return list(self._items)

    async def get(self, match: Callable[[_T], bool] = lambda _: True, timeout: float = TIMEOUT) -> _T:
        """Remove and return the first item that matches; ``TimeoutError`` after ``timeout``."""
        async def first_match() -> _T:
            while True:
                for index, item in enumerate(self._items):
                    if match(item):
                        return self._items.pop(index)
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

        return await asyncio.wait_for(first_match(), timeout)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One client listener of the server under test."""

    host: str
    port: int
    direct_tls: bool   # XEP-0368: TLS from the first byte, no STARTTLS
    cafile: Path       # the server's self-signed certificate, to verify it against


def starttls(server: RunningServer) -> Endpoint:
    return Endpoint(server.host, server.starttls_port, False, server.cafile)


def direct_tls(server: RunningServer) -> Endpoint:
    return Endpoint(server.host, server.direct_tls_port, True, server.cafile)


def logged_logins(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """``(bare JID, SASL mechanism)`` for every login the in-process server logged.

    The test must have called :func:`capture_logins` before the clients connected.
    """
    found = []
    for record in caplog.records:
        if record.name == "xmppcore.server.c2s":
            match = _LOGIN_LINE.search(record.getMessage())
            if match:
                found.append((match["jid"], match["mechanism"]))
    return found


def capture_logins(caplog: pytest.LogCaptureFixture) -> None:
    """Make the server's INFO login lines reach ``caplog`` (for :func:`logged_logins`)."""
    caplog.set_level(logging.INFO, "xmppcore.server.c2s")


# --------------------------------------------------------------------------------- slixmpp


class SlixClient:
    """A slixmpp ``ClientXMPP`` for one endpoint, restricted to one SASL mechanism."""

    def __init__(self, jid: str, password: str, endpoint: Endpoint, *,
                 mechanism: str = "SCRAM-SHA-256", plugins: Sequence[str] = ()) -> None:
        self.endpoint = endpoint
        self.xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
        # Try exactly the transport under test: slixmpp would otherwise try direct TLS
        # first on the STARTTLS port, and fall back to plaintext if told to.
        self.xmpp.enable_direct_tls = endpoint.direct_tls
        self.xmpp.enable_starttls = not endpoint.direct_tls
        self.xmpp.enable_plaintext = False
        self.xmpp.ca_certs = endpoint.cafile
        self.xmpp.whitespace_keepalive = False
        for plugin in plugins:
            self.xmpp.register_plugin(plugin)
        self.messages: Inbox[Message] = Inbox()
        self.presences: Inbox[Presence] = Inbox()
        self.stream_errors: Inbox[str] = Inbox()        # stream error conditions
        self.auth_failures: Inbox[str] = Inbox()        # SASL failure conditions
        self.closed = asyncio.Event()
        self._outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._register_handlers()

    def _register_handlers(self) -> None:
        xmpp = self.xmpp
        xmpp.register_handler(Callback("test inbox: message", MatchXPath(f"{{{_CLIENT_NS}}}message"),
                                       self._on_message))
        xmpp.register_handler(Callback("test inbox: presence", MatchXPath(f"{{{_CLIENT_NS}}}presence"),
                                       self._on_presence))
        xmpp.add_event_handler("stream_error", lambda err: self.stream_errors.put(str(err["condition"])))
        xmpp.add_event_handler("failed_auth", self._on_failed_auth)
        xmpp.add_event_handler("session_start", lambda _: self._settle(None))
        xmpp.add_event_handler("failed_all_auth", lambda _: self._settle("SASL mechanisms exhausted"))
        xmpp.add_event_handler("disconnected", self._on_disconnected)

    def _on_message(self, stanza: StanzaBase) -> None:
        assert isinstance(stanza, Message)
        self.messages.put(stanza)

    def _on_presence(self, stanza: StanzaBase) -> None:
        assert isinstance(stanza, Presence)
        self.presences.put(stanza)

    def _on_failed_auth(self, failure: Any) -> None:
        self.auth_failures.put(str(failure["condition"]))

    def _on_disconnected(self, _reason: object) -> None:
        self.closed.set()
        self._settle("disconnected")

    def _settle(self, failure: str | None) -> None:
        if not self._outcome.done():
            self._outcome.set_result(failure)

    async def connect(self) -> SlixClient:
        """Connect, authenticate and bind; LoginFailed with the SASL condition otherwise."""
        self.xmpp.connect(self.endpoint.host, self.endpoint.port)
        try:
            failure = await asyncio.wait_for(asyncio.shield(self._outcome), TIMEOUT)
        except TimeoutError:
            self.xmpp.cancel_connection_attempt()
            raise
        if failure is not None:
            self.xmpp.cancel_connection_attempt()  # no reconnect loop behind the test's back
            conditions = self.auth_failures.pending
            raise LoginFailed(conditions[0] if conditions else None, failure)
        return self

    async def disconnect(self) -> None:
        if not self.closed.is_set():
            self.xmpp.disconnect(wait=TIMEOUT)
            await asyncio.wait_for(self.closed.wait(), TIMEOUT + 1)
        self.xmpp.cancel_connection_attempt()

    @property
    def jid(self) -> str:
        """The full JID the server bound."""
        return str(self.xmpp.boundjid.full)

    @property
    def mechanism_used(self) -> str | None:
        mech = self.xmpp.plugin["feature_mechanisms"].mech
        return None if mech is None else str(mech.name)

    @property
    def mechanisms_offered(self) -> frozenset[str]:
        return frozenset(self.xmpp.plugin["feature_mechanisms"].mech_list)

    @property
    def negotiated_features(self) -> frozenset[str]:
        """Stream features slixmpp negotiated ("starttls", "mechanisms", "bind", ...)."""
        return frozenset(self.xmpp.features)

    def send_message(self, to: str, body: str, kind: MessageKind = "chat") -> None:
        self.xmpp.send_message(mto=slixmpp.JID(to), mbody=body, mtype=kind)

    async def announce(self, priority: int = 0) -> None:
        """Send available presence (RFC 6121 §4.2) and wait until the server echoes it back."""
        self.xmpp.send_presence(ppriority=priority)
        await self.presences.get(lambda p: str(p["from"]) == self.jid and p["type"] == "available")

    async def receive(self, body: str) -> Message:
        """The next message with this body (any type)."""
        return await self.messages.get(lambda m: m["body"] == body)


class SlixPool:
    """Creates and connects slixmpp clients for a test and disconnects them all at the end."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self._clients: list[SlixClient] = []

    async def login(self, user: str, resource: str, *, password: str = PASSWORD,
                    endpoint: Endpoint | None = None, mechanism: str = "SCRAM-SHA-256",
                    plugins: Sequence[str] = ()) -> SlixClient:
        client = self.make(user, resource, password=password, endpoint=endpoint,
                           mechanism=mechanism, plugins=plugins)
        return await client.connect()

    def make(self, user: str, resource: str, *, password: str = PASSWORD, endpoint: Endpoint | None = None,
             mechanism: str = "SCRAM-SHA-256", plugins: Sequence[str] = ()) -> SlixClient:
        jid = f"{user}@{self.server.domain}/{resource}"
        client = SlixClient(jid, password, endpoint or starttls(self.server), mechanism=mechanism, plugins=plugins)
        self._clients.append(client)
        return client

    async def __aenter__(self) -> SlixPool:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.gather(*(client.disconnect() for client in self._clients), return_exceptions=True)


# --------------------------------------------------------------------------------- aioxmpp


class _RecordingPasswordProvider(aioxmpp.security_layer.PasswordSASLProvider):  # type: ignore[misc]
    """aioxmpp's password SASL provider, remembering which mechanisms the server offered."""

    def __init__(self, password: str) -> None:
        async def give_password(_jid: object, attempt: int) -> str | None:
            return password if attempt == 0 else None

        # One attempt: the failure the server sent reaches the test instead of aioxmpp's
        # "aborted by user" from asking for a second password.
        super().__init__(give_password, max_auth_attempts=1)
        self.offered: frozenset[str] = frozenset()

    async def execute(self, client_jid: Any, features: Any, xmlstream: Any, tls_transport: Any) -> Any:
        mechanisms = features[aioxmpp.security_layer.SASLMechanisms]
        self.offered = frozenset(mechanisms.get_mechanism_list())
        return await super().execute(client_jid, features, xmlstream, tls_transport)


class AioClient:
    """An ``aioxmpp.Client`` for one endpoint, password auth (aioxmpp picks SCRAM-SHA-256)."""

    def __init__(self, jid: str, password: str, endpoint: Endpoint) -> None:
        self.sasl = _RecordingPasswordProvider(password)
        # COMPAT: aioxmpp 0.13's PKIX verifier calls pyOpenSSL's X509.get_extension(), which
        # current pyOpenSSL no longer has, so certificate checks crash; verification is
        # off here and covered by the slixmpp tests, which check against endpoint.cafile.
        layer = aioxmpp.make_security_layer(password, no_verify=True)._replace(sasl_providers=(self.sasl,))
        connector = (aioxmpp.connector.XMPPOverTLSConnector() if endpoint.direct_tls
                     else aioxmpp.connector.STARTTLSConnector())
        self.client = aioxmpp.Client(aioxmpp.JID.fromstr(jid), layer, max_initial_attempts=1,
                                     override_peer=[(endpoint.host, endpoint.port, connector)])
        self.messages: Inbox[Any] = Inbox()
        self.presences: Inbox[Any] = Inbox()
        self.client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher).register_callback(
            None, None, self.messages.put)
        self.client.summon(aioxmpp.dispatcher.SimplePresenceDispatcher).register_callback(
            None, None, self.presences.put)

    async def connect(self) -> AioClient:
        """Connect, authenticate and bind; LoginFailed with the SASL condition otherwise."""
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def settle(result: BaseException | None) -> None:
            if not outcome.done():
                outcome.set_result(result)

        self.client.on_stream_established.connect(lambda: settle(None))
        self.client.on_failure.connect(settle)
        self.client.start()
        error = await asyncio.wait_for(outcome, TIMEOUT)
        if error is not None:
            raise LoginFailed(getattr(error, "opaque_error", None), repr(error)) from error
        return self

    async def stop(self) -> None:
        if not self.client.running:
            return
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_stopped() -> None:
            if not stopped.done():
                stopped.set_result(None)

        self.client.on_stopped.connect(on_stopped)
        self.client.stop()
        await asyncio.wait_for(stopped, TIMEOUT)

    @property
    def jid(self) -> str:
        return str(self.client.local_jid)

    async def send_message(self, to: str, body: str) -> None:
        message = aioxmpp.Message(type_=aioxmpp.MessageType.CHAT, to=aioxmpp.JID.fromstr(to))
        message.body[None] = body
        await self.client.send(message)

    async def announce(self, priority: int = 0) -> None:
        """Send available presence and wait for the server's echo of it."""
        presence = aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE)
        presence.priority = priority
        await self.client.send(presence)
        await self.presences.get(lambda p: str(p.from_) == self.jid and p.type_ == aioxmpp.PresenceType.AVAILABLE)

    async def receive(self, body: str) -> Any:
        return await self.messages.get(lambda m: m.body.any() == body)
