"""RFC 6120 §8 and RFC 6121 §8: XML-in/XML-out scenarios against the real server runtime.

A :class:`ScenarioHarness` builds a real :class:`~xmppcore.server.app.Server` with memory
storage and the configured modules loaded on every host, but never listens on a socket.
Clients are :class:`FakeSession` objects bound through the real session registry; a test
sends stanzas as that client would (``await h.send(alice, "<message to='bob@localhost'/>")``)
and reads what each session was handed (``bob.take_xml()``), compared as canonical text so
attribute order never matters and pytest shows a readable diff.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from xmppcore.config import config_from_mapping
from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.app import Server
from xmppcore.server.host import Host
from xmppcore.server.modules import load_modules
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import StreamCondition
from xmppcore.storage import create_driver
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STANZA_ERRORS, NS_STREAMS
from xmppcore.xml.parser import StreamParser
from xmppcore.xml.serializer import serialize

__all__ = [
    "PASSWORD", "DEFAULT_MODULES", "FakeSession", "ScenarioHarness",
    "xml", "canonical", "expect", "error_of",
]

PASSWORD = "correct horse battery staple"
DEFAULT_MODULES: tuple[str, ...] = ("disco", "ping", "version", "time", "presence", "message")

_session_numbers = itertools.count(1)


# -- XML helpers -------------------------------------------------------------------------------
def xml(text: str, *, ns: str = NS_CLIENT) -> Element:
    """Parse one stanza written as XML text, inside a stream whose default namespace is ``ns``.

    Whitespace-only text between child elements is dropped, so expectations may be indented;
    text inside leaf elements (a ``<body> </body>``) is kept.
    """
    header = f"<stream:stream xmlns='{ns}' xmlns:stream='{NS_STREAMS}'>".encode()
    events = StreamParser().feed(header + text.encode("utf-8"))
    stanzas = [event for event in events if isinstance(event, Element)]
    assert len(stanzas) == 1, f"expected exactly one complete stanza in {text!r}, got {len(stanzas)}"
    return _without_indentation(stanzas[0])


def _without_indentation(el: Element) -> Element:
    has_elements = any(isinstance(c, Element) for c in el.children)
    children: list[Element | str] = [
        _without_indentation(c) if isinstance(c, Element) else c
        for c in el.children
        if isinstance(c, Element) or not (has_elements and not c.strip())
    ]
    return Element(el.name, el.ns, el.attrs, children)


def canonical(el: Element) -> str:
    """``el`` serialized with every element's attributes sorted (order never matters in XML)."""
    return serialize(_sorted_attributes(el), NS_CLIENT)


def _sorted_attributes(el: Element) -> Element:
    return Element(
        el.name, el.ns, dict(sorted(el.attrs.items())),
        [_sorted_attributes(c) if isinstance(c, Element) else c for c in el.children],
    )


def expect(*texts: str) -> list[str]:
    """The canonical forms of the stanzas written in ``texts`` (compare with ``take_xml()``)."""
    return [canonical(xml(text)) for text in texts]


def error_of(stanza: Element) -> tuple[str, str] | None:
    """``(type, condition)`` of an error stanza (RFC 6120 §8.3.2), or None when it is none."""
    if stanza.get("type") != "error":
        return None
    error = stanza.find("error")
    if error is None:
        return None
    conditions = [c.name for c in error.elements() if c.ns == NS_STANZA_ERRORS and c.name != "text"]
    assert len(conditions) == 1, f"an error carries exactly one condition (RFC 6120 §8.3.2): {conditions}"
    return error.attrs.get("type", ""), conditions[0]


# -- sessions ------------------------------------------------------------------------------------
class FakeSession(Session):
    """A bound client without a connection: remembers what it was sent and how it was closed."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.inbox: list[Element] = []
        self.closes: list[tuple[StreamCondition | None, str | None]] = []

    def deliver(self, stanza: Element) -> None:
        self.inbox.append(stanza.copy())  # a snapshot: later changes by the sender must not show

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        self.closes.append((condition, text))

    def take(self) -> list[Element]:
        """Everything delivered since the last take, oldest first."""
        taken, self.inbox = self.inbox, []
        return taken

    def take_one(self) -> Element:
        taken = self.take()
        assert len(taken) == 1, f"expected one stanza for {self.jid}, got {[canonical(s) for s in taken]}"
        return taken[0]

    def take_xml(self) -> list[str]:
        return [canonical(stanza) for stanza in self.take()]


# -- the server ----------------------------------------------------------------------------------
class ScenarioHarness:
    """A real server without listeners, and helpers to act as its clients."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.domain = server.config.domains[0]
        self._sessions: list[FakeSession] = []

    @classmethod
    @asynccontextmanager
    async def running(
        cls, data_dir: Path, *, domains: Sequence[str] = ("localhost",),
        modules: Sequence[str] = DEFAULT_MODULES, options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> AsyncIterator[ScenarioHarness]:
        """Open storage, load ``modules`` (with ``[modules.<name>]`` ``options``) on every host."""
        data: dict[str, Any] = {
            "domains": list(domains),
            "data_dir": str(data_dir),
            "storage": {"driver": "memory"},
            "auth": {"scram_iterations": 4096},
            "s2s": {"enabled": False},  # no sockets, no DNS: other domains are unreachable here
            "modules": {"enabled": list(modules), **(options or {})},
        }
        config = config_from_mapping(data, source="<test>", base_dir=data_dir)
        server = Server(config, storage=create_driver("memory"))
        await server.open()
        for host in server.hosts.values():
            load_modules(server, host, config.modules.enabled, config.modules.options, source=config.source)
        try:
            yield cls(server)
        finally:
            await server.stop()

    def host(self, domain: str | None = None) -> Host:
        return self.server.hosts[domain or self.domain]

    async def add_user(self, username: str, *, domain: str | None = None, password: str = PASSWORD) -> JID:
        """Create an account; returns its bare JID."""
        user = await self.server.accounts.create(domain or self.domain, username, password)
        return JID.make(user, domain or self.domain)

    async def connect(self, username: str, resource: str | None = None, *, domain: str | None = None) -> FakeSession:
        """Bind a new session for ``username`` (a generated resource when None), as c2s does."""
        session = FakeSession(f"fake{next(_session_numbers)}")
        jid = self.server.sessions.bind(session, username, domain or self.domain, resource)
        self._sessions.append(session)
        await self.server.hosts[jid.domain].bus.fire(hooks.SESSION_BOUND, hooks.SessionEvent(session))
        return session

    async def online(self, username: str, resource: str, *, priority: int | None = None) -> FakeSession:
        """Connect and send initial presence; then empty every session's inbox (a quiet start)."""
        session = await self.connect(username, resource)
        if priority is None:
            await self.send(session, "<presence/>")
        else:
            await self.send(session, f"<presence><priority>{priority}</priority></presence>")
        self.clear()
        return session

    async def send(self, session: Session, stanza: str | Element) -> None:
        """``session``'s client sends ``stanza`` (XML text or an element) to the server."""
        element = xml(stanza) if isinstance(stanza, str) else stanza
        await self.server.router.route_from_client(session, element)

    async def disconnect(self, session: Session) -> None:
        """The session's stream ended: unbind it and tell the modules, as c2s does."""
        jid = session.jid
        if jid is not None:
            self.server.sessions.unbind(session)  # False for a session replaced by a conflict
            await self.server.hosts[jid.domain].bus.fire(hooks.SESSION_CLOSED, hooks.SessionEvent(session))

    def clear(self) -> None:
        """Forget what every session has been sent so far."""
        for session in self._sessions:
            session.take()

    def quiet(self) -> bool:
        """True when no session has been sent anything since it was last read."""
        return all(not session.inbox for session in self._sessions)
