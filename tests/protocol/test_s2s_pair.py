"""RFC 6120, XEP-0220, XEP-0178, XEP-0288: s2s cores federating in memory.

Each link is an ``S2SOutgoing`` of one server wired back to back with an ``S2SIncoming`` of
another; no sockets, no clock.  "TLS" is both sides calling ``tls_established`` with a callable
that says which domains the other server's certificate names.  :class:`Federation` plays the
runtime of every server: it answers ``DialbackKeyReceived`` by asking the originating domain's
authoritative server over an outgoing link of the receiving server (opened on demand), and
hands the ``DialbackVerifyResult`` back to the incoming stream that holds the key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from xmppcore.protocol import events as ev
from xmppcore.protocol.s2s_in import TRANSITIONS as IN_TRANSITIONS
from xmppcore.protocol.s2s_in import S2SIncoming, S2SInState
from xmppcore.protocol.s2s_out import OUT_TRANSITIONS, S2SOutgoing, S2SOutState
from xmppcore.stanza.errors import Condition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

CAPULET, MONTAGUE = "capulet.example", "montague.example"

_State = TypeVar("_State", S2SInState, S2SOutState)


def _enter(history: list[_State], value: _State, table: Mapping[_State, frozenset[_State]]) -> None:
    # Fail at the exact step that takes a transition the module's table does not list.
    if history and value is not history[-1]:
        assert value in table[history[-1]], f"unlisted transition {history[-1]} -> {value}"
    if not history or value is not history[-1]:
        history.append(value)


class Outgoing(S2SOutgoing):
    history: list[S2SOutState]

    @property
    def state(self) -> S2SOutState:
        return self.history[-1]

    @state.setter
    def state(self, value: S2SOutState) -> None:
        self.__dict__.setdefault("history", [])
        _enter(self.history, value, OUT_TRANSITIONS)


class Incoming(S2SIncoming):
    history: list[S2SInState]

    @property
    def state(self) -> S2SInState:
        return self.history[-1]

    @state.setter
    def state(self, value: S2SInState) -> None:
        self.__dict__.setdefault("history", [])
        _enter(self.history, value, IN_TRANSITIONS)


@dataclass
class Server:
    """One federating server: its domain, dialback secret and certificate."""

    domain: str
    secret: bytes
    certificate_names: tuple[str, ...] = ()  # what its certificate is valid for, as peers see it
    ids: Any = field(default_factory=itertools.count)

    def certificate_valid_for(self, domain: str) -> bool:
        return domain in self.certificate_names


@dataclass
class Link:
    """One TCP connection: ``origin``'s outgoing stream to ``target``'s incoming stream."""

    origin: Server
    target: Server
    out: Outgoing
    inc: Incoming
    out_events: list[ev.Event] = field(default_factory=list)
    in_events: list[ev.Event] = field(default_factory=list)
    wire_out: bytearray = field(default_factory=bytearray)  # everything the outgoing side wrote

    def out_of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.out_events if isinstance(e, kind)]

    def inc_events_of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.in_events if isinstance(e, kind)]


@dataclass
class Federation:
    """The runtime of every server at once; ``pump()`` runs all links until nothing moves."""

    servers: dict[str, Server]
    links: list[Link] = field(default_factory=list)
    out_options: dict[str, Any] = field(default_factory=dict)
    in_options: dict[str, Any] = field(default_factory=dict)

    def connect(self, origin: str, target: str, **out_options: Any) -> Link:
        src, dst = self.servers[origin], self.servers[target]
        options = {"dialback_secret": src.secret} | self.out_options | out_options
        out = Outgoing(local=origin, remote=target, now=0.0, **options)
        inc = Incoming(domains=lambda domain: domain == target, id_factory=lambda: f"{target}-{next(dst.ids)}",
                       now=0.0, dialback_secret=dst.secret, **self.in_options)
        link = Link(src, dst, out, inc)
        self.links.append(link)
        out.start()
        return link

    def outgoing(self, origin: str, target: str) -> Link:
        """The live link ``origin`` -> ``target``, opened when there is none (XEP-0220 §2.1.2)."""
        for link in self.links:
            if (link.origin.domain, link.target.domain) == (origin, target) and not link.out.closed:
                return link
        return self.connect(origin, target)

    def pump(self) -> None:
        for _ in range(1000):
            progressed = False
            for link in list(self.links):
                progressed |= self._carry(link)
                progressed |= self._answer_incoming(link)
                progressed |= self._answer_outgoing(link)
            if not progressed:
                return
        raise AssertionError("the federation never went quiet")

    def _carry(self, link: Link) -> bool:
        to_in, to_out = link.out.data_to_send(), link.inc.data_to_send()
        link.wire_out += to_in
        if to_in:
            link.inc.receive_data(to_in, now=0.0)
        if to_out:
            link.out.receive_data(to_out, now=0.0)
        return bool(to_in or to_out)

    def _answer_incoming(self, link: Link) -> bool:
        events = link.inc.pop_events()
        for event in events:
            link.in_events.append(event)
            if isinstance(event, ev.TlsRequested):
                link.inc.tls_established(peer_certificate_valid_for=link.origin.certificate_valid_for)
            elif isinstance(event, ev.DialbackKeyReceived):
                # Ask the authoritative server of the originating domain (XEP-0220 §2.1.2).
                verifier = self.outgoing(event.receiving, event.originating)
                verifier.out.request_verification(stream_id=event.stream_id, key=event.key)
        return bool(events)

    def _answer_outgoing(self, link: Link) -> bool:
        events = link.out.pop_events()
        for event in events:
            link.out_events.append(event)
            if isinstance(event, ev.TlsProceed):
                link.out.tls_established(peer_certificate_valid_for=link.target.certificate_valid_for)
            elif isinstance(event, ev.DialbackVerifyResult):
                self._deliver_verdict(event)
        return bool(events)

    def _deliver_verdict(self, result: ev.DialbackVerifyResult) -> None:
        """Back to the incoming stream that received the key (XEP-0220 §2.2.1)."""
        for link in self.links:
            inc = link.inc
            if inc.stream_id == result.stream_id and inc.local_domain == result.receiving and not inc.closed:
                if result.valid is None:
                    inc.dialback_failed(result.originating, result.receiving, Condition.REMOTE_SERVER_TIMEOUT)
                else:
                    inc.dialback_verified(result.originating, result.receiving, result.valid)
                return  # XEP-0220 §2.1.2: no such stream any more -> dropped silently

    def between(self, origin: str, target: str) -> list[Link]:
        return [link for link in self.links if (link.origin.domain, link.target.domain) == (origin, target)]


def federation(capulet_names: tuple[str, ...] = (), montague_names: tuple[str, ...] = (),
               **options: Any) -> Federation:
    return Federation({
        CAPULET: Server(CAPULET, b"s3cr3tf0rd14lb4ck", capulet_names),
        MONTAGUE: Server(MONTAGUE, b"d14lb4ck43v3r", montague_names),
    }, **options)


def message(sender: str, recipient: str, text: str) -> Element:
    stanza = Element("message", NS_CLIENT, {"from": sender, "to": recipient, "type": "chat"})
    stanza.add("body", text=text)
    return stanza


def received(events: list[ev.Event]) -> list[Element]:
    return [e.stanza for e in events if isinstance(e, ev.StanzaReceived)]


# -- SASL EXTERNAL (XEP-0178) ------------------------------------------------------------------
def test_external_with_valid_certificates() -> None:
    fed = federation((CAPULET,), (MONTAGUE,), out_options={"bidi": False})
    link = fed.connect(CAPULET, MONTAGUE)
    fed.pump()
    assert link.out.ready and link.out.history[-1] is S2SOutState.READY
    assert link.out_of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=CAPULET, remote=MONTAGUE, method="EXTERNAL", bidi=False)]
    assert link.inc_events_of(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=MONTAGUE, remote=CAPULET, method="EXTERNAL", bidi=False)]
    assert link.inc.authenticated_pairs == frozenset({(CAPULET, MONTAGUE)})
    assert len(fed.links) == 1  # no dialback, no second connection
    assert S2SOutState.TLS_HANDSHAKE in link.out.history and S2SOutState.AUTHENTICATING in link.out.history
    link.out.send_stanza(message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}", "hello"))
    fed.pump()
    assert received(link.in_events) == [message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}", "hello")]


# -- Server Dialback (XEP-0220) ----------------------------------------------------------------
def test_dialback_success_through_the_authoritative_server() -> None:
    fed = federation()  # no certificate names anything: EXTERNAL is never offered
    link = fed.connect(CAPULET, MONTAGUE)
    fed.pump()
    (key,) = link.inc_events_of(ev.DialbackKeyReceived)
    assert (key.originating, key.receiving, key.stream_id) == (CAPULET, MONTAGUE, link.inc.stream_id)
    # Montague asked Capulet over a connection of its own...
    (back,) = fed.between(MONTAGUE, CAPULET)
    assert back.out_of_type(ev.DialbackVerifyResult) == [ev.DialbackVerifyResult(
        originating=CAPULET, receiving=MONTAGUE, stream_id=key.stream_id, valid=True)]
    # ...and let Capulet in for the pair.
    assert link.out.ready
    assert link.out_of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=CAPULET, remote=MONTAGUE, method="dialback", bidi=False)]
    assert link.inc.authenticated_pairs == frozenset({(CAPULET, MONTAGUE)})
    # Montague's own connection was verified the same way, over Capulet's first one.
    assert back.out.ready and back.inc.authenticated_pairs == frozenset({(MONTAGUE, CAPULET)})
    assert [r.valid for r in link.out_of_type(ev.DialbackVerifyResult)] == [True]
    assert len(fed.links) == 2
    link.out.send_stanza(message(f"juliet@{CAPULET}", f"romeo@{MONTAGUE}", "wherefore"))
    back.out.send_stanza(message(f"romeo@{MONTAGUE}", f"juliet@{CAPULET}", "here"))
    fed.pump()
    assert [m.findtext("body", NS_CLIENT) for m in received(link.in_events)] == ["wherefore"]
    assert [m.findtext("body", NS_CLIENT) for m in received(back.in_events)] == ["here"]


def test_dialback_with_a_wrong_secret_fails() -> None:
    fed = federation()
    link = fed.connect(CAPULET, MONTAGUE, dialback_secret=b"not capulet's secret")
    fed.pump()
    (back,) = fed.between(MONTAGUE, CAPULET)
    key = link.inc_events_of(ev.DialbackKeyReceived)[0]
    assert ev.DialbackVerifyResult(originating=CAPULET, receiving=MONTAGUE, stream_id=key.stream_id,
                                   valid=False) in back.out_of_type(ev.DialbackVerifyResult)
    assert not link.out.ready and link.out.closed
    assert len(link.out_of_type(ev.NegotiationFailed)) == 1
    assert link.out_of_type(ev.PeerAuthenticated) == [] and link.inc_events_of(ev.PeerAuthenticated) == []
    assert link.inc.authenticated_pairs == frozenset() and link.inc.closed  # XEP-0220 §2.2.1


# -- XEP-0288 bidi -------------------------------------------------------------------------------
def test_bidi_with_a_valid_certificate_carries_stanzas_both_ways() -> None:
    fed = federation((CAPULET,), (MONTAGUE,))
    link = fed.connect(CAPULET, MONTAGUE)
    fed.pump()
    assert link.out.bidi_negotiated and link.inc.bidi_negotiated
    assert link.out_of_type(ev.PeerAuthenticated)[0].bidi and link.inc_events_of(ev.PeerAuthenticated)[0].bidi
    link.out.send_stanza(message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}", "thither"))
    link.inc.send_stanza(message(f"romeo@{MONTAGUE}/orchard", f"juliet@{CAPULET}/balcony", "hither"))
    fed.pump()
    assert received(link.in_events) == [message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}", "thither")]
    assert received(link.out_events) == [message(f"romeo@{MONTAGUE}/orchard", f"juliet@{CAPULET}/balcony", "hither")]
    assert len(fed.links) == 1  # the one connection serves both directions


def test_bidi_over_dialback_when_external_is_not_used() -> None:
    fed = federation((CAPULET,), (MONTAGUE,), out_options={"can_use_external": False})
    link = fed.connect(CAPULET, MONTAGUE)
    fed.pump()
    assert link.out_of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=CAPULET, remote=MONTAGUE, method="dialback", bidi=True)]
    link.inc.send_stanza(message(MONTAGUE, f"juliet@{CAPULET}", "ping"))
    fed.pump()
    assert [m.get("from") for m in received(link.out_events)] == [MONTAGUE]


# -- namespaces (RFC 6120 §4.8.3) -------------------------------------------------------------------
def test_a_stanza_crosses_as_jabber_server_and_arrives_as_jabber_client() -> None:
    fed = federation((CAPULET,), (MONTAGUE,))
    link = fed.connect(CAPULET, MONTAGUE)
    fed.pump()
    stanza = message(f"juliet@{CAPULET}/balcony", f"romeo@{MONTAGUE}", "a rose")
    stanza.add("thread", text="t1")
    stanza.add("x", "jabber:x:oob").add("url", text="https://rose.example/")
    sent = stanza.copy()
    start = len(link.wire_out)
    link.out.send_stanza(stanza)
    fed.pump()
    wire = bytes(link.wire_out[start:]).decode()
    assert wire == (f"<message from='juliet@{CAPULET}/balcony' to='romeo@{MONTAGUE}' type='chat'>"
                    "<body>a rose</body><thread>t1</thread>"
                    "<x xmlns='jabber:x:oob'><url>https://rose.example/</url></x></message>")
    assert "xmlns='jabber:server'" in bytes(link.wire_out[:start]).decode()  # the stream's default
    assert "jabber:client" not in bytes(link.wire_out).decode()
    (arrived,) = received(link.in_events)
    assert arrived == sent and arrived.find("body", NS_CLIENT) is not None
    assert stanza == sent  # the sender's copy is untouched
