"""XEP-0114: the external component core driven with raw XML.

A component (or a hostile peer) is played by hand-written XML; the runtime is played by the
``secret_for`` and ``admit`` callables.  Every check is on the bytes and events that come out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol import events as ev
from xmppcore.protocol.component import (
    TRANSITIONS,
    ComponentServer,
    ComponentState,
    handshake_digest,
)
from xmppcore.stanza.errors import ProtocolUsageError, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import (
    NS_CLIENT,
    NS_COMPONENT,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    NS_TLS,
)
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamHeader, StreamParser

# XEP-0114 §3's own example: component name, stream id and handshake.  The XEP does not print
# the secret; "test" is the one whose digest is the example's handshake value.
COMPONENT = "plays.shakespeare.lit"
XEP_STREAM_ID = "3BF96D32"
XEP_SECRET = "test"
XEP_HANDSHAKE = "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
OTHER = "chat.shakespeare.lit"      # another configured component
SECRETS = {COMPONENT: XEP_SECRET, OTHER: "0ther-s3cret"}
HEADER = (f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='{NS_STREAMS}' to='{COMPONENT}'>")
OUR_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
              f" xmlns:stream='{NS_STREAMS}' id='{{id}}' from='{COMPONENT}'>")
HANDSHAKE = f"<handshake>{XEP_HANDSHAKE}</handshake>"
PAYLOAD = "urn:example:payload"


class RecordingComponent(ComponentServer):
    """The core, checking each state change against TRANSITIONS and keeping the history."""

    history: list[ComponentState]

    @property
    def state(self) -> ComponentState:
        return self.history[-1]

    @state.setter
    def state(self, value: ComponentState) -> None:
        if not hasattr(self, "history"):
            self.history = []
        if self.history and self.history[-1] is not value:
            assert value in TRANSITIONS[self.history[-1]], f"unlisted transition {self.history[-1]} -> {value}"
        if not self.history or self.history[-1] is not value:
            self.history.append(value)


class RawComponent:
    """Hand-written XML into the core; what comes back is kept as bytes and parsed."""

    def __init__(self, *, refuse: StreamCondition | None = None, secrets: dict[str, str] | None = None,
                 ids: Callable[[], str] = lambda: XEP_STREAM_ID, **options: Any) -> None:
        self.admitted: list[str] = []
        self.looked_up: list[str] = []
        configured = SECRETS if secrets is None else secrets

        def secret_for(domain: str) -> str | None:
            self.looked_up.append(domain)
            return configured.get(domain)

        def admit(domain: str) -> StreamCondition | None:
            self.admitted.append(domain)
            return refuse

        options.setdefault("now", 0.0)
        self.core = RecordingComponent(secret_for=secret_for, admit=admit, id_factory=ids, **options)
        self.events: list[ev.Event] = []
        self.items: list[ParseEvent] = []  # what the last send() parsed to
        self._parser = StreamParser()

    def send(self, text: str | bytes) -> bytes:
        self.core.receive_data(text.encode() if isinstance(text, str) else text, now=0.0)
        return self.read()

    def read(self) -> bytes:
        data = self.core.data_to_send()
        self.events += self.core.pop_events()
        self.items = self._parser.feed(data)
        return data

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def authenticate(self) -> None:
        assert self.send(HEADER) == OUR_HEADER.format(id=XEP_STREAM_ID).encode()
        assert self.send(HANDSHAKE) == b"<handshake/>"
        assert self.core.authenticated


@pytest.fixture
def raw() -> RawComponent:
    return RawComponent()


@pytest.fixture
def authed() -> RawComponent:
    raw = RawComponent()
    raw.authenticate()
    return raw


def stream_error(raw: RawComponent) -> str:
    """The condition of the stream error the last send() ended with; the core must be closed."""
    items = raw.items
    assert isinstance(items[-1], StreamFooter), items
    error = items[-2]
    assert isinstance(error, Element) and (error.ns, error.name) == (NS_STREAMS, "error"), items
    closes = raw.of_type(ev.StreamClosed)
    assert raw.core.state is ComponentState.CLOSED and len(closes) == 1 and not closes[0].by_peer
    condition = next(c.name for c in error.elements() if c.ns == NS_STREAM_ERRORS and c.name != "text")
    assert closes[0].condition is StreamCondition(condition)
    assert not raw.core.authenticated and raw.core.get_timer() is None
    return condition


def header(**attrs: str | None) -> str:
    values: dict[str, str | None] = {"xmlns": NS_COMPONENT, "xmlns:stream": NS_STREAMS, "to": COMPONENT}
    values.update({k.replace("_", ":"): v for k, v in attrs.items()})
    return "<stream:stream " + " ".join(f"{k}='{v}'" for k, v in values.items() if v is not None) + ">"


def stanza_text(name: str = "message", frm: str | None = f"hamlet@{COMPONENT}/elsinore",
                to: str | None = "ophelia@montague.example") -> str:
    addresses = "".join(f" {k}='{v}'" for k, v in (("from", frm), ("to", to)) if v is not None)
    return f"<{name}{addresses} id='s1'><body>hi</body></{name}>"


# -- the stream header (XEP-0114 §3, RFC 6120 §4.9.1.2) ------------------------------------------
def test_our_header_names_the_component_and_has_no_version_and_no_features(raw: RawComponent) -> None:
    assert raw.core.domain == "" and raw.core.stream_id == "" and not raw.core.authenticated
    assert raw.send("<?xml version='1.0'?>" + HEADER) == OUR_HEADER.format(id=XEP_STREAM_ID).encode()
    assert raw.events == [ev.StreamOpened(to=COMPONENT, from_=None, version="")]
    assert raw.core.domain == COMPONENT and raw.core.stream_id == XEP_STREAM_ID and not raw.core.authenticated
    assert raw.looked_up == [COMPONENT] and raw.admitted == []


def test_a_component_announcing_a_version_still_gets_none(raw: RawComponent) -> None:
    assert raw.send(header(version="1.0")) == OUR_HEADER.format(id=XEP_STREAM_ID).encode()
    assert raw.events == [ev.StreamOpened(to=COMPONENT, from_=None, version="1.0")]


def test_the_domain_is_normalised_before_the_lookup(raw: RawComponent) -> None:
    assert raw.send(header(to="Plays.Shakespeare.LIT")) == OUR_HEADER.format(id=XEP_STREAM_ID).encode()
    assert raw.looked_up == [COMPONENT] and raw.core.domain == COMPONENT


@pytest.mark.parametrize("text,condition", [
    (header(to=None), "improper-addressing"),
    (header(to=""), "improper-addressing"),
    (header(to="montague.example"), "host-unknown"),                 # not a configured component
    (header(to=f"hamlet@{COMPONENT}"), "host-unknown"),              # a component is a domain
    (header(to="@broken"), "host-unknown"),
    (header(xmlns="jabber:client"), "invalid-namespace"),
    (header(xmlns="jabber:server"), "invalid-namespace"),
    (header(xmlns="jabber:component:connect"), "invalid-namespace"),
    (header(xmlns_stream="urn:example:not-streams"), "invalid-namespace"),
    (f"<s:stream xmlns='{NS_COMPONENT}' xmlns:s='{NS_STREAMS}' to='{COMPONENT}'>", "bad-namespace-prefix"),
    (f"<stream xmlns='{NS_STREAMS}' to='{COMPONENT}'>", "bad-namespace-prefix"),
])
def test_header_errors_come_after_our_own_header(raw: RawComponent, text: str, condition: str) -> None:
    data = raw.send(text)
    assert data.startswith(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
                           b" xmlns:stream='http://etherx.jabber.org/streams' id='3BF96D32'>")
    assert len(raw.items) == 3 and stream_error(raw) == condition
    assert raw.core.domain == "" and raw.admitted == [] and not raw.of_type(ev.StreamOpened)


# -- the handshake (XEP-0114 §3) ----------------------------------------------------------------
def test_the_xep_example_values() -> None:
    assert handshake_digest(XEP_STREAM_ID, XEP_SECRET) == XEP_HANDSHAKE
    assert XEP_HANDSHAKE == hashlib.sha1(b"3BF96D32test").hexdigest()


def test_the_right_handshake_is_acknowledged_and_admitted(raw: RawComponent) -> None:
    raw.send(HEADER)
    assert raw.send(f"<handshake>{XEP_HANDSHAKE}</handshake>") == b"<handshake/>"
    assert raw.admitted == [COMPONENT]
    assert raw.events == [ev.StreamOpened(to=COMPONENT, from_=None, version=""),
                          ev.ComponentAuthenticated(domain=COMPONENT)]
    assert raw.core.authenticated and raw.core.state is ComponentState.AUTHENTICATED


@pytest.mark.parametrize("value", [XEP_HANDSHAKE.upper(), f"\n  {XEP_HANDSHAKE}\n"])
def test_upper_case_and_surrounding_whitespace_are_accepted(raw: RawComponent, value: str) -> None:
    raw.send(HEADER)
    assert raw.send(f"<handshake>{value}</handshake>") == b"<handshake/>"
    assert raw.of_type(ev.ComponentAuthenticated) == [ev.ComponentAuthenticated(domain=COMPONENT)]


def test_the_digest_covers_the_stream_id_we_issued() -> None:
    raw = RawComponent(ids=lambda: "fresh-id-7")
    assert raw.send(HEADER) == OUR_HEADER.format(id="fresh-id-7").encode()
    raw.send(HANDSHAKE)  # right secret, but the digest of another stream id: a replay
    assert stream_error(raw) == "not-authorized"
    raw = RawComponent(ids=lambda: "fresh-id-7")
    raw.send(HEADER)
    assert raw.send(f"<handshake>{handshake_digest('fresh-id-7', XEP_SECRET)}</handshake>") == b"<handshake/>"


@pytest.mark.parametrize("value", [
    handshake_digest(XEP_STREAM_ID, SECRETS[OTHER]),   # another component's secret
    XEP_HANDSHAKE[:-1],                                # one digit short
    XEP_HANDSHAKE + "0",
    "",                                                # <handshake/> from the component
    hashlib.sha1(b"3bf96d32test").hexdigest(),         # the stream id's case matters
    "é" * 40,                                          # not even ASCII
    "aaee83c2 6aeeafcbabeabfcbcd50df997e0a2a1e",
])
def test_a_wrong_handshake_is_not_authorized(raw: RawComponent, value: str) -> None:
    raw.send(HEADER)
    raw.send(f"<handshake>{value}</handshake>")
    assert stream_error(raw) == "not-authorized"
    assert raw.admitted == [] and not raw.of_type(ev.ComponentAuthenticated)
    assert b"<handshake/>" not in raw.core.data_to_send()


@pytest.mark.parametrize("digested", ["a&b<c>'d\"", "a&amp;b&lt;c&gt;&apos;d&quot;"])
def test_secrets_with_entity_characters_accept_raw_or_escaped(digested: str) -> None:
    # XEP-0114 §3 step 1 speaks of escaping such characters; the raw text is what most use.
    raw = RawComponent(secrets={COMPONENT: "a&b<c>'d\""})
    raw.send(HEADER)
    assert raw.send(f"<handshake>{handshake_digest(XEP_STREAM_ID, digested)}</handshake>") == b"<handshake/>"


def test_a_second_handshake_is_a_policy_violation(authed: RawComponent) -> None:
    authed.send(HANDSHAKE)
    assert stream_error(authed) == "policy-violation"
    assert authed.of_type(ev.ComponentAuthenticated) == [ev.ComponentAuthenticated(domain=COMPONENT)]


def test_admit_refusing_with_conflict_refuses_this_connection() -> None:
    raw = RawComponent(refuse=StreamCondition.CONFLICT)
    raw.send(HEADER)
    data = raw.send(HANDSHAKE)
    assert data == (f"<stream:error><conflict xmlns='{NS_STREAM_ERRORS}'/></stream:error>"
                    "</stream:stream>").encode()
    assert stream_error(raw) == "conflict"
    assert raw.admitted == [COMPONENT] and not raw.of_type(ev.ComponentAuthenticated)


@pytest.mark.parametrize("element", [
    stanza_text("message"), stanza_text("presence"), stanza_text("iq"),
    f"<message from='{COMPONENT}' to='{COMPONENT}'/>",
    "<hello xmlns='urn:example'/>",
    f"<starttls xmlns='{NS_TLS}'/>",
    f"<handshake xmlns='jabber:client'>{XEP_HANDSHAKE}</handshake>",  # not ours: not a handshake
])
def test_anything_before_the_handshake_is_not_authorized(raw: RawComponent, element: str) -> None:
    raw.send(HEADER)
    raw.send(element)
    assert stream_error(raw) == "not-authorized"
    assert not raw.of_type(ev.StanzaReceived) and raw.admitted == []


def test_a_pipelined_handshake_and_stanza_both_count(raw: RawComponent) -> None:
    data = raw.send(HEADER + HANDSHAKE + stanza_text())
    assert data == OUR_HEADER.format(id=XEP_STREAM_ID).encode() + b"<handshake/>"
    assert [type(e) for e in raw.events] == [ev.StreamOpened, ev.ComponentAuthenticated, ev.StanzaReceived]


# -- stanzas from the component (XEP-0114 §3, RFC 6120 §4.9.3) ----------------------------------
@pytest.mark.parametrize("frm", [
    COMPONENT, f"hamlet@{COMPONENT}", f"hamlet@{COMPONENT}/elsinore", f"{COMPONENT}/bot",
    "Hamlet@PLAYS.shakespeare.lit/Elsinore",
])
@pytest.mark.parametrize("name", ["message", "presence", "iq"])
def test_any_jid_at_the_component_domain_may_send(authed: RawComponent, frm: str, name: str) -> None:
    assert authed.send(stanza_text(name, frm=frm)) == b""
    (received,) = authed.of_type(ev.StanzaReceived)
    assert received.stanza == Element(name, NS_CLIENT, {"from": frm, "to": "ophelia@montague.example", "id": "s1"},
                                      [Element("body", NS_CLIENT, text="hi")])
    assert not authed.core.closed


@pytest.mark.parametrize("frm", [
    "montague.example", "romeo@montague.example/orchard", OTHER, f"x@{OTHER}",
    f"sub.{COMPONENT}", f"hamlet@sub.{COMPONENT}", "shakespeare.lit",
])
def test_another_domain_in_from_is_invalid_from(authed: RawComponent, frm: str) -> None:
    authed.send(stanza_text(frm=frm))
    assert stream_error(authed) == "invalid-from" and not authed.of_type(ev.StanzaReceived)


@pytest.mark.parametrize("frm,to", [
    (None, "ophelia@montague.example"),        # RFC 6120 §4.9.3.7: lacks 'from'
    ("", "ophelia@montague.example"),          # ... has no value
    ("@broken", "ophelia@montague.example"),   # ... violates the address rules
    (f"hamlet@{COMPONENT}/", "ophelia@montague.example"),
    (f"hamlet@{COMPONENT}", None),             # lacks 'to'
    (f"hamlet@{COMPONENT}", ""),
    (f"hamlet@{COMPONENT}", "ophelia@"),
    ("montague.example", None),                # broken addressing is reported before the sender
])
def test_missing_or_malformed_addresses_are_improper_addressing(authed: RawComponent, frm: str | None,
                                                                to: str | None) -> None:
    authed.send(stanza_text(frm=frm, to=to))
    assert stream_error(authed) == "improper-addressing" and not authed.of_type(ev.StanzaReceived)


def test_stanzas_in_another_namespace_are_invalid_namespace(authed: RawComponent) -> None:
    authed.send(f"<message xmlns='jabber:client' from='{COMPONENT}' to='{COMPONENT}'/>")
    assert stream_error(authed) == "invalid-namespace"


@pytest.mark.parametrize("element", [
    "<hello xmlns='urn:example'/>", f"<starttls xmlns='{NS_TLS}'/>", "<route/>", "<log/>",
])
def test_other_elements_after_the_handshake_are_unsupported(authed: RawComponent, element: str) -> None:
    authed.send(element)
    assert stream_error(authed) == "unsupported-stanza-type"


def test_inbound_stanzas_move_to_jabber_client_with_foreign_payload_untouched(authed: RawComponent) -> None:
    authed.send(f"<message from='hamlet@{COMPONENT}' to='ophelia@montague.example' type='chat'>"
                f"<body>hi</body><thread>t1</thread><x xmlns='{PAYLOAD}'><body>inner</body></x></message>"
                f"<iq from='{COMPONENT}' to='montague.example' type='get' id='q1'>"
                "<query xmlns='jabber:iq:version'/></iq>")
    message, iq = (e.stanza for e in authed.of_type(ev.StanzaReceived))
    assert message == Element("message", NS_CLIENT, {
        "from": f"hamlet@{COMPONENT}", "to": "ophelia@montague.example", "type": "chat"}, [
        Element("body", NS_CLIENT, text="hi"), Element("thread", NS_CLIENT, text="t1"),
        Element("x", PAYLOAD, children=[Element("body", PAYLOAD, text="inner")])])
    assert iq == Element("iq", NS_CLIENT, {"from": COMPONENT, "to": "montague.example", "type": "get", "id": "q1"},
                         [Element("query", "jabber:iq:version")])


# -- stanzas to the component ---------------------------------------------------------------------
def test_outbound_stanzas_are_written_in_the_component_namespace(authed: RawComponent) -> None:
    stanza = Element("message", NS_CLIENT, {"from": "ophelia@montague.example/home", "to": f"hamlet@{COMPONENT}"})
    stanza.add("body", text="hello <there>")
    stanza.add("x", PAYLOAD).add("body", text="inner")
    authed.core.send_stanza(stanza)
    assert authed.read() == (b"<message from='ophelia@montague.example/home' to='hamlet@plays.shakespeare.lit'>"
                             b"<body>hello &lt;there&gt;</body><x xmlns='urn:example:payload'><body>inner</body>"
                             b"</x></message>")
    assert stanza.ns == NS_CLIENT  # the caller's element is not changed
    received = authed.items[0]
    assert isinstance(received, Element) and received.ns == NS_COMPONENT
    assert [(c.name, c.ns) for c in received.elements()] == [("body", NS_COMPONENT), ("x", PAYLOAD)]


def test_send_stanza_before_the_handshake_is_a_usage_error(raw: RawComponent) -> None:
    stanza = Element("message", NS_CLIENT, {"from": "montague.example", "to": COMPONENT})
    with pytest.raises(ProtocolUsageError):
        raw.core.send_stanza(stanza)
    raw.send(HEADER)
    with pytest.raises(ProtocolUsageError):
        raw.core.send_stanza(stanza)
    assert raw.core.data_to_send() == b""


def test_send_stanza_after_the_end_is_silently_nothing(authed: RawComponent) -> None:
    authed.core.close()
    assert authed.read() == b"</stream:stream>"
    authed.core.send_stanza(Element("message", NS_CLIENT, {"from": "montague.example", "to": COMPONENT}))
    assert authed.core.data_to_send() == b""


# -- limits and timers ----------------------------------------------------------------------------
def test_an_oversized_stanza_is_a_policy_violation() -> None:
    raw = RawComponent(max_stanza_size=200)
    raw.authenticate()
    raw.send(f"<message from='{COMPONENT}' to='{COMPONENT}'><body>{'x' * 300}</body></message>")
    assert stream_error(raw) == "policy-violation"


def test_no_handshake_in_time_is_a_connection_timeout() -> None:
    raw = RawComponent(now=100.0, auth_timeout=10.0)
    assert raw.core.get_timer() == 110.0  # armed from the first byte
    raw.send(HEADER)
    assert raw.core.get_timer() == 110.0
    raw.core.handle_timer(109.9)
    assert not raw.core.closed and raw.read() == b""
    raw.core.handle_timer(110.0)
    raw.read()
    assert stream_error(raw) == "connection-timeout"
    raw.core.handle_timer(200.0)
    assert raw.core.data_to_send() == b"" and len(raw.of_type(ev.StreamClosed)) == 1


def test_a_silent_peer_times_out_with_our_header_first() -> None:
    raw = RawComponent(auth_timeout=5.0)
    raw.core.handle_timer(5.0)
    raw.read()
    assert isinstance(raw.items[0], StreamHeader) and raw.items[0].attrs == {"id": XEP_STREAM_ID}
    assert stream_error(raw) == "connection-timeout"


def test_an_authenticated_component_has_no_timer(authed: RawComponent) -> None:
    assert authed.core.get_timer() is None
    authed.core.handle_timer(1e9)
    assert not authed.core.closed and authed.core.data_to_send() == b""


# -- the end of the stream ------------------------------------------------------------------------
def test_peer_closing_tag_is_answered_with_ours(authed: RawComponent) -> None:
    assert authed.send("</stream:stream>") == b"</stream:stream>"
    assert authed.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]
    assert authed.core.state is ComponentState.CLOSED and not authed.core.authenticated


def test_peer_stream_error_ends_the_stream_even_before_the_handshake(raw: RawComponent) -> None:
    raw.send(HEADER)
    raw.send(f"<stream:error><system-shutdown xmlns='{NS_STREAM_ERRORS}'/></stream:error>")
    assert raw.of_type(ev.StreamClosed) == [
        ev.StreamClosed(condition=StreamCondition.SYSTEM_SHUTDOWN, by_peer=True)]


def test_connection_lost_and_nothing_read_after_close(authed: RawComponent) -> None:
    authed.core.connection_lost()
    authed.read()
    assert authed.core.state is ComponentState.CLOSED and authed.of_type(ev.StreamClosed) == [
        ev.StreamClosed(by_peer=True)]
    authed.send(stanza_text())
    assert not authed.of_type(ev.StanzaReceived) and authed.core.data_to_send() == b""
    assert authed.core.get_timer() is None


# -- the transition table -------------------------------------------------------------------------
def test_table_covers_every_state_and_every_state_can_close() -> None:
    assert set(TRANSITIONS) == set(ComponentState)
    assert all(ComponentState.CLOSED in after
               for before, after in TRANSITIONS.items() if before is not ComponentState.CLOSED)
    assert not TRANSITIONS[ComponentState.CLOSED]


def test_history_of_a_component_session(authed: RawComponent) -> None:
    authed.send("</stream:stream>")
    S = ComponentState
    assert authed.core.history == [S.WAIT_HEADER, S.WAIT_HANDSHAKE, S.AUTHENTICATED, S.CLOSED]


def test_byte_by_byte_gives_the_same_result() -> None:
    script = (HEADER + HANDSHAKE + stanza_text() + f"<presence from='{COMPONENT}' to='x@montague.example'/>"
              + "</stream:stream>").encode()
    outputs = []
    for size in (len(script), 1):
        raw = RawComponent()
        data = b""
        for start in range(0, len(script), size):
            raw.core.receive_data(script[start:start + size], now=0.0)
            data += raw.core.data_to_send()
        outputs.append((data, raw.core.pop_events()))
    assert outputs[0] == outputs[1]
    assert [type(e) for e in outputs[0][1]] == [ev.StreamOpened, ev.ComponentAuthenticated, ev.StanzaReceived,
                                                ev.StanzaReceived, ev.StreamClosed]


# -- fuzzing: only a stream error may come out -------------------------------------------------
FRAGMENTS = st.binary(max_size=64) | st.sampled_from([
    b"<", b">", b"/>", b"</stream:stream>", HEADER.encode(), HANDSHAKE.encode(), b"<handshake>",
    b"</handshake>", b"<handshake/>", XEP_HANDSHAKE.encode(), stanza_text().encode(),
    stanza_text(frm="montague.example").encode(), stanza_text(to=None).encode(), b"<message><body>",
    b"</message>", b"&amp;", b"&unknown;", b"\xff", b"<!-- c -->", b"<?pi x?>",
    f"<stream:error><conflict xmlns='{NS_STREAM_ERRORS}'/></stream:error>".encode(),
])


def check_only_stream_errors(raw: RawComponent, chunks: list[bytes]) -> None:
    for chunk in chunks:
        raw.core.receive_data(chunk, now=0.0)  # must never raise
        raw.events += raw.core.pop_events()
    allowed = (ev.StreamOpened, ev.ComponentAuthenticated, ev.StanzaReceived, ev.StreamClosed)
    assert all(isinstance(e, allowed) for e in raw.events)
    closes = raw.of_type(ev.StreamClosed)
    assert len(closes) <= 1 and raw.core.closed == bool(closes)
    if closes:
        assert raw.core.state is ComponentState.CLOSED
        # Either the peer ended it, or we did, with a stream error and our closing tag.
        assert closes[0].by_peer or (closes[0].condition is not None
                                     and raw.core.data_to_send().endswith(b"</stream:stream>"))
    for received in raw.of_type(ev.StanzaReceived):
        assert received.stanza.ns == NS_CLIENT
        assert received.stanza.get("from", "").lower().split("@")[-1].split("/")[0] == COMPONENT
    assert len(raw.of_type(ev.ComponentAuthenticated)) <= 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=st.lists(FRAGMENTS, max_size=12))
def test_arbitrary_bytes_after_a_valid_header(chunks: list[bytes]) -> None:
    raw = RawComponent()
    raw.send(HEADER)
    check_only_stream_errors(raw, chunks)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=st.lists(FRAGMENTS, max_size=8))
def test_arbitrary_bytes_from_the_first_byte(chunks: list[bytes]) -> None:
    check_only_stream_errors(RawComponent(), chunks)
