"""RFC 6120 §4–§6, XEP-0220, XEP-0178, XEP-0288: the incoming s2s core driven with raw XML.

A peer server is played by hand-written XML, as ejabberd or Prosody (or a hostile peer) would
send it; the runtime is played by the test calling ``tls_established``, ``dialback_verified``
and ``dialback_failed``.  Every check is on the bytes, elements and events that come out.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol import events as ev
from xmppcore.protocol.dialback import dialback_key
from xmppcore.protocol.s2s_in import TRANSITIONS, S2SIncoming, S2SInState
from xmppcore.stanza.errors import Condition, ProtocolUsageError, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import (
    NS_BIDI_FEATURE,
    NS_CLIENT,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    NS_TLS,
)
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamHeader, StreamParser

LOCAL = "montague.example"
CHAT = "chat.montague.example"
REMOTE = "capulet.example"
ROOMS = "rooms.capulet.example"
SECRET = b"d14lb4ck43v3r"
STREAM_NS = f"xmlns='jabber:server' xmlns:stream='{NS_STREAMS}' xmlns:db='jabber:server:dialback'"
HEADER = f"<stream:stream {STREAM_NS} from='{REMOTE}' to='{LOCAL}' version='1.0'>"
STARTTLS = f"<starttls xmlns='{NS_TLS}'/>"
SASL = f"xmlns='{NS_SASL}'"
BIDI = "<bidi xmlns='urn:xmpp:bidi'/>"
OUR_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
              " xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
              " id='{id}' version='1.0' from='montague.example' to='capulet.example'>")
DIALBACK_FEATURE = f"<dialback xmlns='{NS_DIALBACK_FEATURE}'><errors/></dialback>"
BIDI_FEATURE = f"<bidi xmlns='{NS_BIDI_FEATURE}'/>"
NOT_UTF8 = base64.b64encode(b"\xff").decode()
EXTERNAL_FEATURE = f"<mechanisms {SASL}><mechanism>EXTERNAL</mechanism></mechanisms>"


def valid_for(*domains: str) -> Callable[[str], bool]:
    """What the runtime hands over after TLS: the certificate names exactly ``domains``."""
    return lambda domain: domain in domains


REMOTE_CERTIFICATE = valid_for(REMOTE)
AUTH_EXTERNAL = f"<auth {SASL} mechanism='EXTERNAL'>=</auth>"


class RecordingIncoming(S2SIncoming):
    """The core, checking each state change against TRANSITIONS and keeping the history."""

    history: list[S2SInState]

    @property
    def state(self) -> S2SInState:
        return self.history[-1]

    @state.setter
    def state(self, value: S2SInState) -> None:
        if not hasattr(self, "history"):
            self.history = []
        if self.history and self.history[-1] is not value:
            assert value in TRANSITIONS[self.history[-1]], f"unlisted transition {self.history[-1]} -> {value}"
        if not self.history or self.history[-1] is not value:
            self.history.append(value)


def make_core(**options: Any) -> RecordingIncoming:
    ids = itertools.count(1)
    options.setdefault("domains", lambda domain: domain in (LOCAL, CHAT))
    options.setdefault("id_factory", lambda: f"id{next(ids)}")
    options.setdefault("now", 0.0)
    options.setdefault("dialback_secret", SECRET)
    return RecordingIncoming(**options)


class RawPeer:
    """Hand-written XML into the core; what comes back is kept as bytes and parsed."""

    def __init__(self, **options: Any) -> None:
        self.core = make_core(**options)
        self.events: list[ev.Event] = []
        self.items: list[ParseEvent] = []  # what the last send() parsed to
        self.now = 0.0
        self._parser = StreamParser()

    def send(self, text: str | bytes) -> bytes:
        self.core.receive_data(text.encode() if isinstance(text, str) else text, now=self.now)
        return self.read()

    def read(self) -> bytes:
        data = self.core.data_to_send()
        self.events += self.core.pop_events()
        self.items = self._parser.feed(data)
        return data

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def open(self, header: str = HEADER) -> Element:
        """Send a header; return the features."""
        self.send(header)
        assert len(self.items) == 2 and isinstance(self.items[0], StreamHeader), self.items
        assert isinstance(self.items[1], Element)
        return self.items[1]

    def restart(self) -> None:
        """The core restarted its stream (after <proceed/> or <success/>): a new document follows."""
        self._parser.reset()

    def tls(self, certificate: Callable[[str], bool] = REMOTE_CERTIFICATE) -> Element:
        """Open, STARTTLS, let the runtime finish TLS, reopen; return the features after TLS."""
        self.open()
        assert self.send(STARTTLS) == f"<proceed xmlns='{NS_TLS}'/>".encode()
        assert self.of_type(ev.TlsRequested) == [ev.TlsRequested()]
        self.core.tls_established(peer_certificate_valid_for=certificate)
        self.restart()
        return self.open()

    def external(self, authzid: str = "=") -> Element:
        """TLS, EXTERNAL, restart; return the features after SASL."""
        self.tls()
        assert self.send(f"<auth {SASL} mechanism='EXTERNAL'>{authzid}</auth>") == f"<success {SASL}/>".encode()
        self.restart()
        return self.open()

    def dialback(self, originating: str = REMOTE, receiving: str = LOCAL, key: str = "k3y") -> ev.DialbackKeyReceived:
        """Send a key; return the event the runtime must answer."""
        before = len(self.of_type(ev.DialbackKeyReceived))
        assert self.send(f"<db:result from='{originating}' to='{receiving}'>{key}</db:result>") == b""
        (event,) = self.of_type(ev.DialbackKeyReceived)[before:]
        return event  # type: ignore[no-any-return]

    def verified_pair(self, originating: str = REMOTE, receiving: str = LOCAL) -> None:
        """A dialback key the runtime found valid."""
        self.dialback(originating, receiving)
        self.core.dialback_verified(originating, receiving, True)
        assert self.read() == f"<db:result from='{receiving}' to='{originating}' type='valid'/>".encode()


@pytest.fixture
def raw() -> RawPeer:
    return RawPeer()


def stream_error(raw: RawPeer) -> str:
    """The condition of the stream error the last send() ended with; the core must be closed."""
    items = raw.items
    assert isinstance(items[-1], StreamFooter), items
    error = items[-2]
    assert isinstance(error, Element) and (error.ns, error.name) == (NS_STREAMS, "error"), items
    closes = raw.of_type(ev.StreamClosed)
    assert raw.core.state is S2SInState.CLOSED and len(closes) == 1 and not closes[0].by_peer
    condition = next(c.name for c in error.elements() if c.ns == NS_STREAM_ERRORS and c.name != "text")
    assert closes[0].condition is StreamCondition(condition)
    return condition


def header(**attrs: str | None) -> str:
    values: dict[str, str | None] = {"xmlns": "jabber:server", "xmlns:stream": NS_STREAMS,
                                     "xmlns:db": "jabber:server:dialback", "from": REMOTE, "to": LOCAL,
                                     "version": "1.0"}
    values.update({k.replace("_", ":"): v for k, v in attrs.items()})
    return "<stream:stream " + " ".join(f"{k}='{v}'" for k, v in values.items() if v is not None) + ">"


def stanza_text(name: str = "message", frm: str = f"juliet@{REMOTE}/balcony", to: str = f"romeo@{LOCAL}") -> str:
    return f"<{name} from='{frm}' to='{to}' id='s1'><body>hi</body></{name}>"


# -- the stream header (RFC 6120 §4.7, §4.9.1.2) --------------------------------------------------
def test_our_header_answers_theirs_and_features_offer_only_starttls(raw: RawPeer) -> None:
    data = raw.send("<?xml version='1.0'?>" + HEADER)
    features = f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"
    assert data == (OUR_HEADER.format(id="id1") + features).encode()
    assert raw.events == [ev.StreamOpened(to=LOCAL, from_=REMOTE, version="1.0")]
    assert raw.core.stream_id == "id1" and raw.core.peer_domain == REMOTE and raw.core.local_domain == LOCAL


def test_a_header_without_from_is_answered_without_to(raw: RawPeer) -> None:
    raw.send(header(**{"from": None}))
    assert isinstance(raw.items[0], StreamHeader) and "to" not in raw.items[0].attrs
    assert raw.core.peer_domain == "" and raw.events == [ev.StreamOpened(to=LOCAL, from_=None, version="1.0")]


def test_domains_in_the_header_are_normalised(raw: RawPeer) -> None:
    raw.send(header(**{"from": "Capulet.Example", "to": "MONTAGUE.example"}))
    assert raw.core.peer_domain == REMOTE and raw.core.local_domain == LOCAL


@pytest.mark.parametrize("text,condition", [
    (header(to="elsewhere.example"), "host-unknown"),
    (header(to=None), "improper-addressing"),
    (header(version=None), "unsupported-version"),
    (header(version="0.9"), "unsupported-version"),
    (header(version="2.0"), "unsupported-version"),
    (header(xmlns="jabber:client"), "invalid-namespace"),
    (header(xmlns_stream="urn:example:not-streams"), "invalid-namespace"),
    (f"<s:stream xmlns='jabber:server' xmlns:s='{NS_STREAMS}' to='{LOCAL}' version='1.0'>", "bad-namespace-prefix"),
    (header(**{"from": "@broken"}), "invalid-from"),
    (header(**{"from": f"juliet@{REMOTE}"}), "invalid-from"),  # a server's 'from' is a domain
])
def test_header_errors_come_after_our_own_header(raw: RawPeer, text: str, condition: str) -> None:
    raw.send(text)
    assert isinstance(raw.items[0], StreamHeader) and raw.items[0].attrs["version"] == "1.0"
    assert len(raw.items) == 3 and stream_error(raw) == condition


@pytest.mark.parametrize("text,condition", [
    (header(to=CHAT), "host-unknown"),                   # RFC 6120 §4.3.3: same 'to' after a restart
    (header(**{"from": ROOMS}), "invalid-from"),         # ... and the same 'from'
])
def test_a_restart_must_keep_both_domains(raw: RawPeer, text: str, condition: str) -> None:
    raw.open()
    raw.send(STARTTLS)
    raw.core.tls_established(peer_certificate_valid_for=valid_for(REMOTE))
    raw.read()
    raw.restart()
    raw.send(text)
    assert stream_error(raw) == condition


# -- stream features (RFC 6120 §5.3.1, XEP-0178, XEP-0220 §2.4.2, XEP-0288 §2.1) --------------
def features_text(features: Element) -> list[str]:
    return [f"{child.ns} {child.name}" for child in features.elements()]


@pytest.mark.parametrize("options,expected", [
    ({}, [f"{NS_TLS} starttls"]),
    ({"tls_required": False}, [f"{NS_TLS} starttls", f"{NS_DIALBACK_FEATURE} dialback", f"{NS_BIDI_FEATURE} bidi"]),
    ({"tls_required": False, "tls_available": False},
     [f"{NS_DIALBACK_FEATURE} dialback", f"{NS_BIDI_FEATURE} bidi"]),
    ({"tls_required": False, "dialback": False, "bidi": False}, [f"{NS_TLS} starttls"]),
])
def test_features_before_tls(options: dict[str, Any], expected: list[str]) -> None:
    raw = RawPeer(**options)
    assert features_text(raw.open()) == expected


def test_features_without_required_tls_are_exact() -> None:
    raw = RawPeer(tls_required=False)
    expected = f"<stream:features><starttls xmlns='{NS_TLS}'/>{DIALBACK_FEATURE}{BIDI_FEATURE}</stream:features>"
    assert raw.send(HEADER) == (OUR_HEADER.format(id="id1") + expected).encode()


@pytest.mark.parametrize("options,certificate,expected", [
    ({}, valid_for(REMOTE), EXTERNAL_FEATURE + DIALBACK_FEATURE + BIDI_FEATURE),
    ({}, valid_for(ROOMS), DIALBACK_FEATURE + BIDI_FEATURE),        # not valid for the header's 'from'
    ({"require_valid_certificate": True}, valid_for(REMOTE), EXTERNAL_FEATURE + BIDI_FEATURE),
    ({"require_valid_certificate": True}, valid_for(), BIDI_FEATURE),
    ({"dialback": False, "bidi": False}, valid_for(REMOTE), EXTERNAL_FEATURE),
])
def test_features_after_tls(options: dict[str, Any], certificate: Callable[[str], bool], expected: str) -> None:
    raw = RawPeer(**options)
    raw.open()
    raw.send(STARTTLS)
    raw.core.tls_established(peer_certificate_valid_for=certificate)
    assert raw.read() == b""  # the peer speaks first after TLS
    raw.restart()
    assert raw.send(HEADER) == (OUR_HEADER.format(id="id2") + f"<stream:features>{expected}</stream:features>").encode()


def test_direct_tls_starts_with_the_features_after_tls() -> None:
    # XEP-0368: the connection is encrypted from the first byte; no STARTTLS is offered.
    raw = RawPeer(tls_active=True, peer_certificate_valid_for=valid_for(REMOTE))
    data = raw.send(HEADER)
    expected = f"<stream:features>{EXTERNAL_FEATURE}{DIALBACK_FEATURE}{BIDI_FEATURE}</stream:features>"
    assert data == (OUR_HEADER.format(id="id1") + expected).encode()
    assert raw.send(AUTH_EXTERNAL) == f"<success {SASL}/>".encode()


def test_direct_tls_without_a_certificate_callable_offers_no_external() -> None:
    raw = RawPeer(tls_active=True)
    assert features_text(raw.open()) == [f"{NS_DIALBACK_FEATURE} dialback", f"{NS_BIDI_FEATURE} bidi"]


# -- STARTTLS (RFC 6120 §5) ----------------------------------------------------------------------
@pytest.mark.parametrize("element", [
    AUTH_EXTERNAL, BIDI, "<hello xmlns='urn:example'/>",
])
def test_negotiation_before_required_tls_is_a_policy_violation(raw: RawPeer, element: str) -> None:
    raw.open()
    raw.send(element)
    assert stream_error(raw) == "policy-violation"


def test_nothing_pipelined_after_starttls_survives_into_tls(raw: RawPeer) -> None:
    raw.open()
    raw.send(STARTTLS + "<db:result from='capulet.example' to='montague.example'>k</db:result>")
    assert isinstance(raw.items[0], Element) and raw.items[0].name == "proceed"
    assert stream_error(raw) == "policy-violation" and not raw.of_type(ev.DialbackKeyReceived)


@pytest.mark.parametrize("options", [{"tls_available": False, "tls_required": False}, {"tls_active": True}])
def test_starttls_that_cannot_happen_is_failure_and_close(options: dict[str, Any]) -> None:
    raw = RawPeer(**options)
    raw.open()
    assert raw.send(STARTTLS) == f"<failure xmlns='{NS_TLS}'/></stream:stream>".encode()
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed()] and raw.core.state is S2SInState.CLOSED


def test_tls_established_only_answers_tls_requested(raw: RawPeer) -> None:
    raw.open()
    with pytest.raises(ProtocolUsageError):
        raw.core.tls_established(peer_certificate_valid_for=valid_for(REMOTE))


def test_a_new_stream_id_for_every_header(raw: RawPeer) -> None:
    raw.external()
    assert [item.attrs["id"] for item in raw.items if isinstance(item, StreamHeader)] == ["id3"]
    assert raw.core.stream_id == "id3"


# -- SASL EXTERNAL (RFC 6120 §6, XEP-0178 §3) ---------------------------------------------------
@pytest.mark.parametrize("authzid", ["=", base64.b64encode(REMOTE.encode()).decode(),
                                     base64.b64encode(b"Capulet.Example").decode()])
def test_external_succeeds_for_the_certificate_of_the_header_from(raw: RawPeer, authzid: str) -> None:
    features = raw.external(authzid)
    # After SASL: no mechanisms; only dialback for more pairs (XEP-0220 §2.6).
    assert features_text(features) == [f"{NS_DIALBACK_FEATURE} dialback"]
    assert raw.of_type(ev.PeerAuthenticated) == [ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="EXTERNAL")]
    assert raw.core.authenticated_pairs == {(REMOTE, LOCAL)} and raw.core.state is S2SInState.AUTHENTICATED
    raw.send(stanza_text())
    assert [e.stanza.name for e in raw.of_type(ev.StanzaReceived)] == ["message"]


def test_external_is_authenticated_only_after_the_restart(raw: RawPeer) -> None:
    raw.tls()
    raw.send(AUTH_EXTERNAL)
    assert not raw.of_type(ev.PeerAuthenticated) and raw.core.state is S2SInState.WAIT_HEADER
    raw.restart()
    raw.send(header(**{"from": ROOMS}))  # RFC 6120 §4.3.3: the restart keeps the authenticated 'from'
    assert stream_error(raw) == "invalid-from" and not raw.of_type(ev.PeerAuthenticated)


def test_external_without_initial_response_gets_an_empty_challenge(raw: RawPeer) -> None:
    raw.tls()
    assert raw.send(f"<auth {SASL} mechanism='EXTERNAL'/>") == f"<challenge {SASL}>=</challenge>".encode()
    assert raw.core.state is S2SInState.SASL_PENDING
    assert raw.send(f"<response {SASL}>=</response>") == f"<success {SASL}/>".encode()


@pytest.mark.parametrize("auth,condition", [
    (f"<auth {SASL} mechanism='EXTERNAL'>{base64.b64encode(ROOMS.encode()).decode()}</auth>", "invalid-authzid"),
    (f"<auth {SASL} mechanism='EXTERNAL'>{base64.b64encode(f'juliet@{REMOTE}'.encode()).decode()}</auth>",
     "invalid-authzid"),
    (f"<auth {SASL} mechanism='EXTERNAL'>!!!</auth>", "incorrect-encoding"),
    (f"<auth {SASL} mechanism='EXTERNAL'>{NOT_UTF8}</auth>", "incorrect-encoding"),
    (f"<auth {SASL} mechanism='PLAIN'>AGEAYg==</auth>", "invalid-mechanism"),
    (f"<abort {SASL}/>", "aborted"),
    (f"<response {SASL}>=</response>", "malformed-request"),
])
def test_external_failures_leave_dialback_open(raw: RawPeer, auth: str, condition: str) -> None:
    raw.tls()
    assert raw.send(auth) == f"<failure {SASL}><{condition}/></failure>".encode()
    # XEP-0178 §3 (1.2): after a failure the peer may still try Server Dialback.
    assert raw.core.state is S2SInState.NEGOTIATING and not raw.of_type(ev.PeerAuthenticated)
    raw.verified_pair()
    assert raw.core.authenticated_pairs == {(REMOTE, LOCAL)}


def test_external_with_a_certificate_not_valid_for_the_domain_is_not_authorized(raw: RawPeer) -> None:
    raw.tls(certificate=valid_for(ROOMS))
    assert raw.send(AUTH_EXTERNAL) == f"<failure {SASL}><not-authorized/></failure>".encode()


def test_without_dialback_a_sasl_failure_closes_the_stream() -> None:
    raw = RawPeer(require_valid_certificate=True)
    raw.tls(certificate=valid_for(ROOMS))
    data = raw.send(AUTH_EXTERNAL)
    assert data == f"<failure {SASL}><not-authorized/></failure></stream:stream>".encode()
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed()]


def test_three_sasl_failures_end_the_stream(raw: RawPeer) -> None:
    # RFC 6120 §6.4.5: a few retries, then the stream ends.
    raw.tls()
    aborted = f"<failure {SASL}><aborted/></failure>".encode()
    assert raw.send(f"<abort {SASL}/>") == raw.send(f"<abort {SASL}/>") == aborted
    raw.send(f"<abort {SASL}/>")
    assert stream_error(raw) == "policy-violation"


def test_abort_or_garbage_during_the_external_challenge(raw: RawPeer) -> None:
    raw.tls()
    raw.send(f"<auth {SASL} mechanism='EXTERNAL'/>")
    assert raw.send(f"<abort {SASL}/>") == f"<failure {SASL}><aborted/></failure>".encode()
    raw.send(f"<auth {SASL} mechanism='EXTERNAL'/>")
    raw.send("<db:result from='capulet.example' to='montague.example'>k</db:result>")
    assert stream_error(raw) == "policy-violation"


def test_no_second_authentication_after_external(raw: RawPeer) -> None:
    raw.external()
    raw.send(AUTH_EXTERNAL)
    assert stream_error(raw) == "policy-violation"


# -- Server Dialback: keys (XEP-0220 §2.2.1) ------------------------------------------------------
def test_a_dialback_key_is_handed_to_the_runtime_and_valid_authorizes_the_pair(raw: RawPeer) -> None:
    raw.tls()
    event = raw.dialback(key="\n  b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3\n")
    assert event == ev.DialbackKeyReceived(originating=REMOTE, receiving=LOCAL, stream_id="id2",
                                           key="b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3")
    assert raw.core.history[-1] is S2SInState.NEGOTIATING and not raw.core.authenticated_pairs
    raw.core.dialback_verified(REMOTE, LOCAL, True)
    assert raw.read() == b"<db:result from='montague.example' to='capulet.example' type='valid'/>"
    assert raw.of_type(ev.PeerAuthenticated) == [ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="dialback")]
    assert raw.core.state is S2SInState.AUTHENTICATED and raw.core.authenticated_pairs == {(REMOTE, LOCAL)}


def test_an_invalid_key_is_reported_and_the_stream_closed(raw: RawPeer) -> None:
    # XEP-0220 §2.2.1: "MUST close the XML stream".
    raw.tls()
    raw.dialback()
    raw.core.dialback_verified(REMOTE, LOCAL, False)
    assert raw.read() == b"<db:result from='montague.example' to='capulet.example' type='invalid'/></stream:stream>"
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed()] and not raw.of_type(ev.PeerAuthenticated)


def test_an_invalid_key_for_a_second_pair_keeps_the_first(raw: RawPeer) -> None:
    # XEP-0220 §2.1.2: <forbidden/> refuses the new pair without losing the verified one.
    raw.tls()
    raw.verified_pair()
    raw.dialback(ROOMS, LOCAL)
    raw.core.dialback_verified(ROOMS, LOCAL, False)
    assert raw.read() == (b"<db:result from='montague.example' to='rooms.capulet.example' type='error'>"
                          b"<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                          b"</db:result>")
    assert not raw.core.closed and raw.core.authenticated_pairs == {(REMOTE, LOCAL)}


@pytest.mark.parametrize("condition,kind", [
    (Condition.REMOTE_SERVER_NOT_FOUND, "cancel"), (Condition.REMOTE_SERVER_TIMEOUT, "wait"),
])
def test_dialback_failed_is_a_dialback_error_not_a_stream_error(raw: RawPeer, condition: Condition, kind: str) -> None:
    # XEP-0220 §2.5: the stream stays; the peer may try again.
    raw.tls()
    raw.dialback()
    raw.core.dialback_failed(REMOTE, LOCAL, condition)
    assert raw.read() == (f"<db:result from='{LOCAL}' to='{REMOTE}' type='error'><error type='{kind}'>"
                          f"<{condition.value} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                          "</db:result>").encode()
    assert raw.core.state is S2SInState.NEGOTIATING
    raw.verified_pair()


def test_another_sender_domain_needs_its_own_key(raw: RawPeer) -> None:
    raw.tls()
    raw.verified_pair()
    raw.send(stanza_text(frm=f"someone@{ROOMS}"))
    assert stream_error(raw) == "invalid-from"


def test_piggybacked_pairs(raw: RawPeer) -> None:
    # XEP-0220 §2.6: sender multiplexing (rooms.capulet) and target multiplexing (chat.montague).
    raw.tls()
    raw.verified_pair()
    event = raw.dialback(ROOMS, LOCAL)
    assert event.originating == ROOMS and event.stream_id == "id2"
    raw.core.dialback_verified(ROOMS, LOCAL, True)
    raw.read()
    raw.verified_pair(REMOTE, CHAT)
    assert raw.core.authenticated_pairs == {(REMOTE, LOCAL), (ROOMS, LOCAL), (REMOTE, CHAT)}
    assert [e.remote for e in raw.of_type(ev.PeerAuthenticated)] == [REMOTE, ROOMS, REMOTE]
    raw.send(stanza_text(frm=f"someone@{ROOMS}") + stanza_text(to=f"room@{CHAT}"))
    assert len(raw.of_type(ev.StanzaReceived)) == 2
    raw.send(stanza_text(frm=f"someone@{ROOMS}", to=f"room@{CHAT}"))  # that pair was never verified
    assert stream_error(raw) == "invalid-from"


def test_a_repeated_key_is_not_asked_twice_and_a_verified_pair_is_confirmed(raw: RawPeer) -> None:
    raw.tls()
    raw.dialback()
    assert raw.send(f"<db:result from='{REMOTE}' to='{LOCAL}'>again</db:result>") == b""
    assert len(raw.of_type(ev.DialbackKeyReceived)) == 1
    raw.core.dialback_verified(REMOTE, LOCAL, True)
    raw.read()
    assert raw.send(f"<db:result from='{REMOTE}' to='{LOCAL}'>more</db:result>") == (
        b"<db:result from='montague.example' to='capulet.example' type='valid'/>")
    assert len(raw.of_type(ev.DialbackKeyReceived)) == 1 and len(raw.of_type(ev.PeerAuthenticated)) == 1


def item_not_found(element: str, frm: str, to: str, extra: str = "") -> bytes:
    return (f"<db:{element} from='{frm}' to='{to}'{extra} type='error'><error type='cancel'>"
            f"<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:{element}>").encode()


def test_a_key_for_a_domain_we_do_not_host(raw: RawPeer) -> None:
    # XEP-0220 §2.2.1: a dialback error, not a stream error; the target goes in 'from'.
    raw.tls()
    assert raw.send(f"<db:result from='{REMOTE}' to='elsewhere.example'>k</db:result>") == item_not_found(
        "result", "elsewhere.example", REMOTE)
    assert not raw.of_type(ev.DialbackKeyReceived) and not raw.core.closed


def test_a_key_before_required_tls(raw: RawPeer) -> None:
    # XEP-0220 §2.5 policy-violation: our policy mandates TLS before dialback.
    raw.open()
    assert raw.send(f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>") == (
        b"<db:result from='montague.example' to='capulet.example' type='error'><error type='modify'>"
        b"<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>")
    assert not raw.of_type(ev.DialbackKeyReceived) and not raw.core.closed


@pytest.mark.parametrize("options", [{"require_valid_certificate": True}, {"dialback": False}])
def test_dialback_refused_when_a_certificate_is_required(options: dict[str, Any]) -> None:
    # XEP-0220 §2.5 not-authorized: our policy wants a valid PKIX certificate.
    raw = RawPeer(**options)
    raw.tls(certificate=valid_for())
    assert raw.send(f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>") == (
        b"<db:result from='montague.example' to='capulet.example' type='error'><error type='auth'>"
        b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>")
    assert not raw.of_type(ev.DialbackKeyReceived) and not raw.core.closed


@pytest.mark.parametrize("element", [
    f"<db:result to='{LOCAL}'>k</db:result>", f"<db:result from='{REMOTE}'>k</db:result>",
    f"<db:result from='juliet@{REMOTE}' to='{LOCAL}'>k</db:result>",
    f"<db:verify from='{REMOTE}' id='x'>k</db:verify>", f"<db:verify from='@' to='{LOCAL}' id='x'>k</db:verify>",
])
def test_dialback_elements_without_domains_are_improper_addressing(raw: RawPeer, element: str) -> None:
    raw.tls()
    raw.send(element)
    assert stream_error(raw) == "improper-addressing"


@pytest.mark.parametrize("element", [
    f"<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>",
    f"<db:verify from='{REMOTE}' to='{LOCAL}' id='id2' type='valid'/>",
])
def test_unsolicited_dialback_answers_authorize_nothing(raw: RawPeer, element: str) -> None:
    # XEP-0220 §3.1, XEP-0288 §4: answers we never asked for are dropped.
    raw.tls()
    assert raw.send(element) == b"" and not raw.of_type(ev.DialbackKeyReceived)
    raw.send(stanza_text())
    assert stream_error(raw) == "not-authorized"


def test_too_many_keys_at_once_are_refused(raw: RawPeer) -> None:
    raw.tls()
    for n in range(16):
        raw.dialback(f"d{n}.capulet.example")
    assert raw.send(f"<db:result from='d16.capulet.example' to='{LOCAL}'>k</db:result>") == (
        b"<db:result from='montague.example' to='d16.capulet.example' type='error'><error type='wait'>"
        b"<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>")
    raw.core.dialback_verified("d0.capulet.example", LOCAL, True)
    raw.read()
    raw.dialback("d16.capulet.example")


def test_answers_the_runtime_cannot_give(raw: RawPeer) -> None:
    raw.tls()
    with pytest.raises(ProtocolUsageError):
        raw.core.dialback_verified(REMOTE, LOCAL, True)  # no such key
    raw.dialback()
    raw.core.dialback_failed(REMOTE, LOCAL, Condition.REMOTE_SERVER_TIMEOUT)
    raw.read()
    with pytest.raises(ProtocolUsageError):
        raw.core.dialback_verified(REMOTE, LOCAL, True)  # already answered


def test_a_key_sent_before_tls_is_forgotten_by_tls() -> None:
    # RFC 6120 §5.4.3.3: nothing learnt in the clear survives; the late answer is dropped.
    raw = RawPeer(tls_required=False)
    raw.open()
    raw.dialback()
    raw.send(STARTTLS)
    raw.core.dialback_verified(REMOTE, LOCAL, True)
    assert raw.read() == b""
    raw.core.tls_established(peer_certificate_valid_for=valid_for())
    raw.restart()
    raw.open()
    assert not raw.core.authenticated_pairs and not raw.of_type(ev.PeerAuthenticated)


def test_late_answers_after_close_are_dropped(raw: RawPeer) -> None:
    raw.tls()
    raw.dialback()
    raw.core.close()
    raw.read()
    raw.core.dialback_verified(REMOTE, LOCAL, True)
    assert raw.core.data_to_send() == b"" and not raw.core.authenticated_pairs


# -- Server Dialback: verification requests (XEP-0220 §2.2.2) --------------------------------------
def verify_request(key: str, frm: str = REMOTE, to: str = LOCAL, stream_id: str = "417GAF25") -> str:
    return f"<db:verify from='{frm}' to='{to}' id='{stream_id}'>{key}</db:verify>"


def test_db_verify_valid_on_a_fresh_stream_before_tls(raw: RawPeer) -> None:
    # Receiving servers verify on a new, unauthenticated stream, often without TLS.
    raw.open()
    key = dialback_key(SECRET, receiving=REMOTE, originating=LOCAL, stream_id="417GAF25")
    assert raw.send(verify_request(f"\n  {key}\n")) == (
        b"<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>")
    assert not raw.core.closed and raw.events == [ev.StreamOpened(to=LOCAL, from_=REMOTE, version="1.0")]


def test_db_verify_invalid(raw: RawPeer) -> None:
    # A key made for another of our domains (test_dialback.py covers the other ways to be wrong).
    raw.tls()
    key = dialback_key(SECRET, receiving=REMOTE, originating=CHAT, stream_id="417GAF25")
    assert raw.send(verify_request(key)) == (
        b"<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='invalid'/>")


def test_db_verify_for_a_domain_we_do_not_host(raw: RawPeer) -> None:
    raw.open()
    assert raw.send(verify_request("k", to="elsewhere.example")) == item_not_found(
        "verify", "elsewhere.example", REMOTE, " id='417GAF25'")


def test_db_verify_without_id_is_invalid_xml(raw: RawPeer) -> None:
    raw.open()
    raw.send(f"<db:verify from='{REMOTE}' to='{LOCAL}'>k</db:verify>")
    assert stream_error(raw) == "invalid-xml"


def test_db_verify_is_answered_after_authentication_too(raw: RawPeer) -> None:
    raw.external()
    key = dialback_key(SECRET, receiving=REMOTE, originating=LOCAL, stream_id="x1")
    assert raw.send(verify_request(key, stream_id="x1")).endswith(b"type='valid'/>")


# -- stanzas (RFC 6120 §4.9.3, §8) ----------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True])
def test_stanzas_before_authentication_are_not_authorized(tls: bool) -> None:
    raw = RawPeer()
    raw.tls() if tls else raw.open()
    raw.send(stanza_text())
    assert stream_error(raw) == "not-authorized"  # RFC 6120 §4.9.3.12


def test_a_stanza_while_the_key_is_being_checked_is_not_authorized(raw: RawPeer) -> None:
    raw.tls()
    raw.dialback()
    raw.send(stanza_text())
    assert stream_error(raw) == "not-authorized"


@pytest.mark.parametrize("stanza,condition", [
    (stanza_text(frm=f"iago@{ROOMS}"), "invalid-from"),                       # §4.9.3.9 spoofed sender domain
    (stanza_text(frm="evil.example"), "invalid-from"),
    (stanza_text(to="romeo@elsewhere.example"), "host-unknown"),              # §4.9.3.6
    (stanza_text(to=f"romeo@{CHAT}"), "invalid-from"),                        # a hosted target never negotiated
    (f"<message to='romeo@{LOCAL}'/>", "improper-addressing"),                # §4.9.3.7
    (f"<presence from='juliet@{REMOTE}'/>", "improper-addressing"),
    (f"<iq from='' to='{LOCAL}' type='get' id='1'/>", "improper-addressing"),
    (f"<iq from='juliet@{REMOTE}' to='@{LOCAL}' type='get' id='1'/>", "improper-addressing"),
    (f"<message xmlns='jabber:client' from='juliet@{REMOTE}' to='romeo@{LOCAL}'/>", "invalid-namespace"),
    ("<hello xmlns='urn:example'/>", "unsupported-stanza-type"),              # §4.9.3.22
    ("<foo/>", "unsupported-stanza-type"),
])
def test_stanza_refusals(raw: RawPeer, stanza: str, condition: str) -> None:
    raw.tls()
    raw.verified_pair()
    raw.send(stanza)
    assert stream_error(raw) == condition


def test_stanzas_are_handed_on_in_jabber_client(raw: RawPeer) -> None:
    # RFC 6120 §4.8.3: jabber:server on the wire, jabber:client inside; other payloads untouched.
    raw.tls()
    raw.verified_pair()
    raw.send(f"<message from='juliet@{REMOTE}/balcony' to='romeo@{LOCAL}' type='chat'><body>hi</body>"
             "<thread>t1</thread><x xmlns='urn:example:payload'><body>inner</body></x></message>"
             f"<presence from='juliet@{REMOTE}' to='{LOCAL}'/>")
    message, presence = (e.stanza for e in raw.of_type(ev.StanzaReceived))
    assert (message.ns, message.attrs) == (NS_CLIENT, {"from": f"juliet@{REMOTE}/balcony", "to": f"romeo@{LOCAL}",
                                                       "type": "chat"})
    assert [(c.name, c.ns) for c in message.elements()] == [
        ("body", NS_CLIENT), ("thread", NS_CLIENT), ("x", "urn:example:payload")]
    payload = message.find("x", "urn:example:payload")
    assert payload is not None and [(c.name, c.ns) for c in payload.elements()] == [("body", "urn:example:payload")]
    assert (presence.name, presence.ns) == ("presence", NS_CLIENT)


# -- XEP-0288 bidirectional streams -----------------------------------------------------------
def test_bidi_lets_us_send_the_reverse_of_each_authenticated_pair(raw: RawPeer) -> None:
    raw.tls()
    assert raw.send(BIDI) == b"" and raw.core.bidi_negotiated
    raw.verified_pair()
    assert raw.of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="dialback", bidi=True)]
    reply = Element("message", NS_CLIENT, {"from": f"romeo@{LOCAL}/orchard", "to": f"juliet@{REMOTE}"})
    reply.add("body", text="hello")
    reply.add("x", "urn:example:payload")
    raw.core.send_stanza(reply)
    assert raw.read() == (b"<message from='romeo@montague.example/orchard' to='juliet@capulet.example'>"
                          b"<body>hello</body><x xmlns='urn:example:payload'/></message>")
    with pytest.raises(ProtocolUsageError):  # XEP-0288 §2.2: only pairs the peer authenticated
        raw.core.send_stanza(Element("message", NS_CLIENT, {"from": f"romeo@{CHAT}", "to": f"juliet@{REMOTE}"}))
    with pytest.raises(ProtocolUsageError):
        raw.core.send_stanza(Element("message", NS_CLIENT, {"from": f"romeo@{LOCAL}", "to": f"x@{ROOMS}"}))
    with pytest.raises(ProtocolUsageError):
        raw.core.send_stanza(Element("message", NS_CLIENT, {"to": f"juliet@{REMOTE}"}))
    assert raw.core.data_to_send() == b""


def test_bidi_with_external() -> None:
    raw = RawPeer()
    raw.tls()
    raw.send(BIDI + AUTH_EXTERNAL)
    raw.restart()
    raw.open()
    assert raw.of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="EXTERNAL", bidi=True)]
    raw.core.send_stanza(Element("presence", NS_CLIENT, {"from": LOCAL, "to": REMOTE}))
    assert raw.read() == b"<presence from='montague.example' to='capulet.example'/>"


def test_no_stanzas_go_out_without_bidi_or_authentication(raw: RawPeer) -> None:
    stanza = Element("message", NS_CLIENT, {"from": f"romeo@{LOCAL}", "to": f"juliet@{REMOTE}"})
    raw.tls()
    raw.send(BIDI)
    with pytest.raises(ProtocolUsageError):
        raw.core.send_stanza(stanza)  # XEP-0288 §2.2: not before the peer is authenticated
    plain = RawPeer()
    plain.tls()
    plain.verified_pair()
    with pytest.raises(ProtocolUsageError):
        plain.core.send_stanza(stanza)  # no bidi: our stanzas take our own outgoing stream
    plain.core.close()
    plain.core.send_stanza(stanza)  # after the end, silently nothing
    assert plain.core.data_to_send() == b"</stream:stream>"


def test_bidi_after_authentication_is_a_policy_violation(raw: RawPeer) -> None:
    raw.tls()
    raw.verified_pair()
    raw.send(BIDI)
    assert stream_error(raw) == "policy-violation"


def test_bidi_not_offered_is_unsupported() -> None:
    raw = RawPeer(bidi=False)
    raw.tls()
    raw.send(BIDI)
    assert stream_error(raw) == "unsupported-stanza-type"


def test_bidi_asked_before_optional_tls_is_forgotten_by_tls() -> None:
    raw = RawPeer(tls_required=False)
    raw.open()
    raw.send(BIDI)
    assert raw.core.bidi_negotiated
    raw.send(STARTTLS)
    assert not raw.core.bidi_negotiated  # XEP-0288 §2.1: TLS first, then bidi


# -- timers ------------------------------------------------------------------------------------
def test_authentication_timeout() -> None:
    raw = RawPeer(auth_timeout=10.0)
    raw.tls()
    raw.dialback()
    assert raw.core.get_timer() == 10.0
    raw.core.handle_timer(9.9)
    assert not raw.core.closed
    raw.core.handle_timer(10.0)
    raw.read()
    assert stream_error(raw) == "connection-timeout"
    assert raw.core.get_timer() is None


def test_idle_timeout_closes_cleanly_and_stanzas_either_way_defer_it() -> None:
    raw = RawPeer(idle_timeout=100.0, auth_timeout=10.0)
    raw.tls()
    raw.send(BIDI)
    raw.now = 5.0
    raw.send(f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>")
    raw.core.dialback_verified(REMOTE, LOCAL, True)
    raw.read()
    assert raw.core.get_timer() == 105.0  # the idle clock starts with the first pair
    raw.now = 50.0
    raw.send(stanza_text())
    assert raw.core.get_timer() == 150.0
    raw.now = 60.0
    raw.send(f"<db:verify from='{REMOTE}' to='{LOCAL}' id='x'>k</db:verify>")  # not a stanza
    assert raw.core.get_timer() == 150.0
    raw.core.send_stanza(Element("message", NS_CLIENT, {"from": LOCAL, "to": REMOTE}))
    raw.core.handle_timer(150.0)  # a stanza went out since: keep the stream
    assert not raw.core.closed and raw.core.get_timer() == 250.0
    raw.core.handle_timer(249.0)
    assert not raw.core.closed
    raw.core.handle_timer(250.0)
    assert raw.core.data_to_send().endswith(b"</stream:stream>")
    raw.read()
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed()] and raw.core.get_timer() is None


def test_idle_timeout_zero_means_never(raw: RawPeer) -> None:
    raw = RawPeer(idle_timeout=0)
    raw.tls()
    raw.verified_pair()
    assert raw.core.get_timer() is None
    raw.core.handle_timer(1e9)
    assert not raw.core.closed


# -- the end of the stream --------------------------------------------------------------------------
def test_peer_closing_tag_is_answered_with_ours(raw: RawPeer) -> None:
    raw.open()
    assert raw.send("</stream:stream>") == b"</stream:stream>"
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]


def test_peer_stream_error_ends_the_stream(raw: RawPeer) -> None:
    raw.tls()
    raw.send(f"<stream:error><host-gone xmlns='{NS_STREAM_ERRORS}'/></stream:error>")
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed(condition=StreamCondition.HOST_GONE, by_peer=True)]


def test_connection_lost_and_nothing_read_after_close(raw: RawPeer) -> None:
    raw.open()
    raw.core.connection_lost()
    raw.read()
    assert raw.core.state is S2SInState.CLOSED and raw.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]
    raw.send(stanza_text())
    assert raw.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)] and raw.core.data_to_send() == b""


# -- the transition table ------------------------------------------------------------------------
def test_table_covers_every_state_and_every_state_can_close() -> None:
    assert set(TRANSITIONS) == set(S2SInState)
    assert all(S2SInState.CLOSED in after for before, after in TRANSITIONS.items() if before is not S2SInState.CLOSED)
    assert not TRANSITIONS[S2SInState.CLOSED]


def test_recording_core_refuses_unlisted_transitions() -> None:
    core = make_core()
    with pytest.raises(AssertionError, match="unlisted transition"):
        core.state = S2SInState.TLS_PENDING  # WAIT_HEADER -> TLS_PENDING is not in the table


def test_histories_of_the_two_ways_in() -> None:
    S = S2SInState
    external = RawPeer()
    external.external()
    assert external.core.history == [S.WAIT_HEADER, S.NEGOTIATING, S.TLS_PENDING, S.WAIT_HEADER, S.NEGOTIATING,
                                     S.WAIT_HEADER, S.AUTHENTICATED]
    dialback = RawPeer()
    dialback.tls()
    dialback.verified_pair()
    assert dialback.core.history == [S.WAIT_HEADER, S.NEGOTIATING, S.TLS_PENDING, S.WAIT_HEADER, S.NEGOTIATING,
                                     S.AUTHENTICATED]


def test_byte_by_byte_gives_the_same_result() -> None:
    def tls(core: S2SIncoming) -> None:
        core.tls_established(peer_certificate_valid_for=REMOTE_CERTIFICATE)

    def verdict(core: S2SIncoming) -> None:
        core.dialback_verified(REMOTE, LOCAL, True)

    script: list[str | Callable[[S2SIncoming], None]] = [
        HEADER, STARTTLS, tls, HEADER, BIDI, f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>", verdict,
        stanza_text()]
    outputs = []
    for chunk in (0, 1):
        core = make_core()
        data = b""
        for step in script:
            if callable(step):
                step(core)
                continue
            encoded = step.encode()
            size = chunk or len(encoded)
            for start in range(0, len(encoded), size):
                core.receive_data(encoded[start:start + size], now=0.0)
            data += core.data_to_send()
        outputs.append((data + core.data_to_send(), core.pop_events()))
    assert outputs[0] == outputs[1] and len(outputs[0][1]) == 6


# -- fuzzing: only a stream error may come out -------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(tls_optional=st.booleans(), chunks=st.lists(st.binary(max_size=64) | st.sampled_from([
    b"<", b">", b"/>", b"</stream:stream>", b"<db:result from='capulet.example' to='montague.example'>",
    b"</db:result>", b"<db:verify from='capulet.example' to='montague.example' id='x'>k</db:verify>",
    b"<db:result type='valid' from='a' to='b'/>", STARTTLS.encode(), BIDI.encode(),
    AUTH_EXTERNAL.encode(), f"<auth {SASL} mechanism='EXTERNAL'/>".encode(),
    stanza_text().encode(), b"<message><body>", b"&amp;", b"&unknown;", b"\xff", HEADER.encode(),
]), max_size=12))
def test_arbitrary_bytes_after_a_valid_header(tls_optional: bool, chunks: list[bytes]) -> None:
    raw = RawPeer(tls_required=not tls_optional)
    raw.send(HEADER)
    for chunk in chunks:
        raw.core.receive_data(chunk, now=0.0)  # must never raise
        for event in raw.core.pop_events():
            raw.events.append(event)
            # Like the runtime, answer what the core asks (a valid key only for the real pair).
            if isinstance(event, ev.TlsRequested) and raw.core.state is S2SInState.TLS_PENDING:
                raw.core.tls_established(peer_certificate_valid_for=valid_for(REMOTE))
            elif isinstance(event, ev.DialbackKeyReceived):
                raw.core.dialback_verified(event.originating, event.receiving, event.originating == REMOTE)
    allowed = (ev.StreamOpened, ev.TlsRequested, ev.DialbackKeyReceived, ev.PeerAuthenticated,
               ev.StanzaReceived, ev.StreamClosed)
    assert all(isinstance(e, allowed) for e in raw.events)
    closes = raw.of_type(ev.StreamClosed)
    assert len(closes) <= 1
    if raw.core.closed:
        assert len(closes) == 1 and raw.core.state is S2SInState.CLOSED
        assert raw.core.data_to_send().endswith(b"</stream:stream>") or closes[0].by_peer
    for stanza in raw.of_type(ev.StanzaReceived):
        assert stanza.stanza.ns == NS_CLIENT
