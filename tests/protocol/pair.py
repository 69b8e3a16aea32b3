"""RFC 6120 c2s streams in memory: a client core talks to a server core (h11's ConnectionPair idea).

No sockets, no event loop, no clock.  "TLS" is both sides calling ``tls_established`` with the
same fake exporter bytes, so the -PLUS mechanisms work in memory.  The recording cores check
every state change they make against the modules' TRANSITIONS tables (STYLE rule 2).  :class:`ServerAnswers` plays
the runtime (accounts, TLS, the session registry); :class:`RawClient` drives a server core with
hand-written XML for the refusals a well-behaved client never provokes.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from xmppcore.jid import JID
from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import TRANSITIONS, C2SServer, C2SState
from xmppcore.protocol.client import CLIENT_TRANSITIONS, C2SClient, C2SClientState
from xmppcore.protocol.sasl import ScramCredentials, derive_scram_credentials
from xmppcore.stanza.errors import Condition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_SASL, NS_STANZA_ERRORS, NS_STREAM_ERRORS, NS_STREAMS
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamParser

__all__ = [
    "DOMAIN", "PASSWORD", "EXPORTER", "HEADER", "RecordingServer", "RecordingClient",
    "ServerAnswers", "ConnectionPair", "RawClient", "plain_auth", "elements", "stream_error",
    "sasl_failure", "iq_error", "offered_mechanisms", "make_server", "make_client", "make_pair",
]

DOMAIN = "example.org"
PASSWORD = "pencil"
EXPORTER = bytes(range(32))  # stands in for RFC 9266 tls-exporter output
HEADER = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}'"
          f" to='{DOMAIN}' version='1.0'>")


def _counter(prefix: str) -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{prefix}{next(numbers)}"


_State = TypeVar("_State", C2SState, C2SClientState)


def _enter(history: list[_State], state: _State, table: Mapping[_State, frozenset[_State]]) -> None:
    # Fail the test at the exact step that makes a transition the table does not list.
    if history and history[-1] is not state:
        assert state in table[history[-1]], f"unlisted transition {history[-1]} -> {state}"
    if not history or history[-1] is not state:
        history.append(state)


class RecordingServer(C2SServer):
    """A server core that checks each state change against TRANSITIONS and keeps the history."""

    history: list[C2SState]

    @property
    def state(self) -> C2SState:
        return self.history[-1]

    @state.setter
    def state(self, value: C2SState) -> None:
        if not hasattr(self, "history"):
            self.history = []
        _enter(self.history, value, TRANSITIONS)


class RecordingClient(C2SClient):
    """The same for the client core and CLIENT_TRANSITIONS."""

    history: list[C2SClientState]

    @property
    def state(self) -> C2SClientState:
        return self.history[-1]

    @state.setter
    def state(self, value: C2SClientState) -> None:
        if not hasattr(self, "history"):
            self.history = []
        _enter(self.history, value, CLIENT_TRANSITIONS)


def make_server(**options: Any) -> RecordingServer:
    options.setdefault("domains", lambda domain: domain == DOMAIN)
    options.setdefault("id_factory", _counter("s"))
    options.setdefault("now", 0.0)
    return RecordingServer(**options)


def make_client(jid: str = f"juliet@{DOMAIN}/balcony", **options: Any) -> RecordingClient:
    options.setdefault("password", PASSWORD)
    options.setdefault("now", 0.0)
    options.setdefault("nonce_factory", _counter("clientnonce"))
    options.setdefault("tls_available", True)
    return RecordingClient(jid=jid, **options)


@dataclass
class ServerAnswers:
    """The runtime's side: accounts, in-memory TLS and a session registry that says yes."""

    accounts: dict[str, str] = field(default_factory=lambda: {"juliet": PASSWORD, "romeo": "rose"})
    exporter: bytes | None = EXPORTER
    credentials_available: bool = True
    answer_credentials: bool = True
    bind_refusals: list[Condition] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)

    def credentials(self, username: str, hash_name: str) -> ScramCredentials | None:
        password = self.accounts.get(username)
        if password is None:
            return None
        return derive_scram_credentials(password, hash_name, salt=f"salt-{username}".encode(), iterations=4096)

    def handle(self, server: C2SServer) -> bool:
        """Answer the server core's pending events; True when there were any."""
        events = server.pop_events()
        for event in events:
            self.events.append(event)
            # Like the runtime, answer only what the core still waits for.
            if isinstance(event, ev.TlsRequested) and server.state is C2SState.TLS_PENDING:
                server.tls_established(channel_bindings={"tls-exporter": self.exporter} if self.exporter else None)
            elif (isinstance(event, ev.CredentialsNeeded) and self.answer_credentials
                  and server.state is C2SState.AUTH_PENDING):
                if self.credentials_available:
                    server.provide_credentials(self.credentials(event.username, event.hash_name))
                else:
                    server.credentials_unavailable()
            elif isinstance(event, ev.BindRequested) and server.state is C2SState.BIND_PENDING:
                if self.bind_refusals:
                    server.bind_failed(self.bind_refusals.pop(0))
                else:
                    assert server.username is not None
                    server.bind_succeeded(JID.make(server.username, server.domain, event.resource or "generated1"))
        return bool(events)

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class ConnectionPair:
    """A client core and a server core wired back to back; ``pump()`` runs them to quiescence."""

    client: RecordingClient
    server: RecordingServer
    answers: ServerAnswers = field(default_factory=ServerAnswers)
    client_exporter: bytes | None = EXPORTER
    chunk: int = 0  # feed bytes in pieces of this size (0: as written)
    now: float = 0.0
    client_events: list[ev.Event] = field(default_factory=list)
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)

    def pump(self) -> None:
        for _ in range(1000):
            progressed = self._carry(self.client.data_to_send(), self.server, self.to_server)
            progressed |= self.answers.handle(self.server)
            progressed |= self._carry(self.server.data_to_send(), self.client, self.to_client)
            progressed |= self._handle_client_events()
            if not progressed:
                return
        raise AssertionError("the pair never went quiet")

    def _carry(self, data: bytes, receiver: C2SServer | C2SClient, wire: bytearray) -> bool:
        wire += data
        step = self.chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            receiver.receive_data(data[start:start + step], now=self.now)
        return bool(data)

    def _handle_client_events(self) -> bool:
        events = self.client.pop_events()
        for event in events:
            self.client_events.append(event)
            if isinstance(event, ev.TlsProceed):
                bindings = {"tls-exporter": self.client_exporter} if self.client_exporter else None
                self.client.tls_established(channel_bindings=bindings)
        return bool(events)

    def client_of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.client_events if isinstance(e, kind)]


def make_pair(jid: str = f"juliet@{DOMAIN}/balcony", *, client: dict[str, Any] | None = None,
              server: dict[str, Any] | None = None, **pair_options: Any) -> ConnectionPair:
    """A started pair, pumped until nothing moves."""
    pair = ConnectionPair(make_client(jid, **(client or {})), make_server(**(server or {})), **pair_options)
    pair.client.start()
    pair.pump()
    return pair


class RawClient:
    """Hand-written XML into a server core; what comes back is parsed as a client would."""

    def __init__(self, server: RecordingServer | None = None, answers: ServerAnswers | None = None) -> None:
        self.server = server if server is not None else make_server()
        self.answers = answers if answers is not None else ServerAnswers()
        self._parser = StreamParser()
        self.now = 0.0

    def send(self, text: str | bytes) -> list[ParseEvent]:
        """Feed ``text`` to the server, answer its events, return what it wrote back."""
        self.server.receive_data(text.encode() if isinstance(text, str) else text, now=self.now)
        while self.answers.handle(self.server):
            pass
        return self.read()

    def read(self) -> list[ParseEvent]:
        return self._parser.feed(self.server.data_to_send())

    def restart(self) -> None:
        """The server restarted its stream (after <proceed/> or <success/>)."""
        self._parser.reset()

    def open(self, header: str = HEADER) -> Element:
        """Send a header; return the features."""
        out = self.send(header)
        assert len(out) == 2 and isinstance(out[1], Element), out
        return out[1]

    def negotiate_tls(self) -> Element:
        """Open, STARTTLS, reopen; return the features after TLS."""
        self.open()
        assert [e.name for e in self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                if isinstance(e, Element)] == ["proceed"]
        self.restart()
        return self.open()

    def login(self, username: str = "juliet", password: str = PASSWORD) -> Element:
        """STARTTLS, PLAIN, restart; return the features that offer binding."""
        self.negotiate_tls()
        out = self.send(plain_auth(username, password))
        assert [e.name for e in out if isinstance(e, Element)] == ["success"], out
        self.restart()
        return self.open()

    def bind(self, resource: str | None = "balcony") -> Element:
        """Bind (after ``login``); return the result iq."""
        inner = f"<resource>{resource}</resource>" if resource else ""
        out = self.send(f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")
        assert len(out) == 1 and isinstance(out[0], Element) and out[0].get("type") == "result", out
        return out[0]


def plain_auth(username: str, password: str, authzid: str = "") -> str:
    """An ``<auth mechanism='PLAIN'>`` element as text."""
    payload = base64.b64encode(f"{authzid}\0{username}\0{password}".encode()).decode()
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>"


# -- reading what a core wrote ------------------------------------------------------------------
def elements(out: list[ParseEvent]) -> list[Element]:
    return [item for item in out if isinstance(item, Element)]


def stream_error(out: list[ParseEvent]) -> str:
    """The condition of the stream error in ``out``; the stream must end right after it."""
    assert isinstance(out[-1], StreamFooter), out
    error = out[-2]
    assert isinstance(error, Element) and (error.ns, error.name) == (NS_STREAMS, "error"), out
    return next(c.name for c in error.elements() if c.ns == NS_STREAM_ERRORS and c.name != "text")


def sasl_failure(out: list[ParseEvent]) -> str:
    (failure,) = elements(out)
    assert (failure.ns, failure.name) == (NS_SASL, "failure"), failure
    return next(c.name for c in failure.elements() if c.name != "text")


def iq_error(out: list[ParseEvent]) -> str:
    (iq,) = elements(out)
    assert iq.get("type") == "error", iq
    error = iq.find("error", NS_CLIENT)
    assert error is not None
    return next(c.name for c in error.elements() if c.ns == NS_STANZA_ERRORS and c.name != "text")


def offered_mechanisms(features: Element) -> list[str]:
    container = features.find("mechanisms", NS_SASL)
    return [] if container is None else [m.text for m in container.findall("mechanism")]
