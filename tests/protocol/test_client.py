"""RFC 6120 §4–§7: the c2s client core against a scripted server, XML in, XML out."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol import events as ev
from xmppcore.protocol.client import C2SClientState
from xmppcore.protocol.sasl import ScramServer, derive_scram_credentials
from xmppcore.stanza.errors import Condition, ProtocolUsageError, SaslCondition, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamHeader, StreamParser

from .pair import DOMAIN, EXPORTER, PASSWORD, RecordingClient, make_client, stream_error

S = C2SClientState
SERVER_HEADER = (f"<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAMS}' id='abc'"
                 f" from='{DOMAIN}' version='1.0'>")
STARTTLS = f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"
BIND_FEATURES = f"<stream:features><bind xmlns='{NS_BIND}'/></stream:features>"


def mechanisms(*names: str, cb_types: tuple[str, ...] | None = None) -> str:
    inner = "".join(f"<mechanism>{n}</mechanism>" for n in names)
    cb = ""
    if cb_types is not None:
        types = "".join(f"<channel-binding type='{t}'/>" for t in cb_types)
        cb = f"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>{types}</sasl-channel-binding>"
    return f"<stream:features><mechanisms xmlns='{NS_SASL}'>{inner}</mechanisms>{cb}</stream:features>"


class Script:
    """Plays the server: feeds XML to the client core and parses what it writes."""

    def __init__(self, client: RecordingClient) -> None:
        self.client = client
        self.parser = StreamParser()
        self.events: list[ev.Event] = []

    def say(self, xml: str, *, restart: bool = False) -> list[ParseEvent]:
        """Feed ``xml``; ``restart`` when the client will open a new stream (a new document)."""
        self.client.receive_data(xml.encode(), now=0.0)
        self.events += self.client.pop_events()
        if restart:
            self.parser.reset()
        return self.read()

    def read(self) -> list[ParseEvent]:
        return self.parser.feed(self.client.data_to_send())

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def start(jid: str = f"juliet@{DOMAIN}/balcony", **options: Any) -> tuple[Script, StreamHeader]:
    script = Script(make_client(jid, **options))
    script.client.start()
    (header,) = script.read()
    assert isinstance(header, StreamHeader)
    return script, header


def direct_tls(**options: Any) -> Script:
    """A client on a TLS-from-the-start transport with tls-exporter binding data."""
    options.setdefault("tls_active", True)
    options.setdefault("channel_bindings", {"tls-exporter": EXPORTER})
    return start(**options)[0]


def auth_of(out: list[ParseEvent]) -> tuple[str, bytes]:
    (auth,) = out
    assert isinstance(auth, Element) and (auth.ns, auth.name) == (NS_SASL, "auth"), out
    return auth.get("mechanism") or "", base64.b64decode(auth.text)


def bound(resource: str = "balcony") -> Script:
    """A direct-TLS client authenticated with PLAIN and bound."""
    script = direct_tls(mechanisms=("PLAIN",), jid=f"juliet@{DOMAIN}/{resource}")
    script.say(SERVER_HEADER + mechanisms("PLAIN"))
    (header,) = script.say(f"<success xmlns='{NS_SASL}'/>", restart=True)
    assert isinstance(header, StreamHeader) and header.attrs["from"] == f"juliet@{DOMAIN}"
    (iq,) = script.say(SERVER_HEADER + BIND_FEATURES)
    assert isinstance(iq, Element) and iq.get("id")
    script.say(f"<iq type='result' id='{iq.get('id')}'><bind xmlns='{NS_BIND}'>"
               f"<jid>juliet@{DOMAIN}/{resource}</jid></bind></iq>")
    assert script.client.state is S.BOUND
    return script


# -- the stream header -----------------------------------------------------------------------
def test_header_names_the_domain_and_hides_the_jid_before_tls() -> None:
    script, header = start()
    assert header.attrs["to"] == DOMAIN and header.attrs["version"] == "1.0" and "from" not in header.attrs
    assert header.namespaces[""] == NS_CLIENT and header.namespaces["stream"] == NS_STREAMS
    with pytest.raises(ProtocolUsageError):
        script.client.start()


def test_from_is_sent_once_tls_is_up() -> None:
    script, _ = start()
    assert [e.name for e in script.say(SERVER_HEADER + STARTTLS) if isinstance(e, Element)] == ["starttls"]
    assert script.say(f"<proceed xmlns='{NS_TLS}'/>") == [] and script.of_type(ev.TlsProceed) == [ev.TlsProceed()]
    assert script.client.state is S.TLS_HANDSHAKE
    script.client.tls_established(channel_bindings={"tls-exporter": EXPORTER})
    script.parser.reset()
    (header,) = script.read()
    assert isinstance(header, StreamHeader) and header.attrs["from"] == f"juliet@{DOMAIN}"


def test_data_before_start_is_a_usage_error() -> None:
    client = make_client()
    with pytest.raises(ProtocolUsageError):
        client.receive_data(SERVER_HEADER.encode(), now=0.0)


@pytest.mark.parametrize("header,condition", [
    (SERVER_HEADER.replace("version='1.0'", ""), "unsupported-version"),
    (SERVER_HEADER.replace("jabber:client", "jabber:server"), "invalid-namespace"),
    (SERVER_HEADER.replace("<stream:stream", "<stream:other").replace("'>", "'>"), "invalid-namespace"),
])
def test_bad_server_headers(header: str, condition: str) -> None:
    script, _ = start()
    assert stream_error(script.say(header)) == condition
    assert script.client.state is S.CLOSED


def test_bad_jid_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        make_client(DOMAIN)  # no localpart: no account to log into


# -- STARTTLS --------------------------------------------------------------------------------
@pytest.mark.parametrize("options,features", [
    ({}, mechanisms("SCRAM-SHA-1")),                                    # required by us, not offered
    ({"tls_available": False, "require_tls": False}, STARTTLS),         # required by the server
])
def test_tls_required_but_impossible(options: dict[str, Any], features: str) -> None:
    script, _ = start(**options)
    out = script.say(SERVER_HEADER + features)
    assert out == [StreamFooter()]  # nothing else: certainly no credentials
    assert len(script.of_type(ev.NegotiationFailed)) == 1
    assert script.of_type(ev.StreamClosed) == [ev.StreamClosed()]


def test_starttls_refused() -> None:
    script, _ = start()
    script.say(SERVER_HEADER + STARTTLS)
    assert script.say(f"<failure xmlns='{NS_TLS}'/>") == [StreamFooter()]
    assert script.of_type(ev.NegotiationFailed) and script.client.state is S.CLOSED


# -- choosing a mechanism (RFC 6120 §6.3.3) ----------------------------------------------------------
@pytest.mark.parametrize("offered,cb_types,bindings,expected,gs2", [
    (("SCRAM-SHA-1",), None, True, "SCRAM-SHA-1", b"y,,"),                 # we could bind; server can't
    (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), None, True, "SCRAM-SHA-256-PLUS", b"p=tls-exporter,,"),
    (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), ("tls-exporter",), True, "SCRAM-SHA-256-PLUS", b"p=tls-exporter,,"),
    (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), ("tls-unique",), True, "SCRAM-SHA-256", b"n,,"),
    (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), None, False, "SCRAM-SHA-256", b"n,,"),
    (("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"), None, True, "SCRAM-SHA-1-PLUS", b"p=tls-exporter,,"),
    (("PLAIN", "SCRAM-SHA-1"), None, True, "SCRAM-SHA-1", b"y,,"),
])
def test_mechanism_choice(offered: tuple[str, ...], cb_types: tuple[str, ...] | None, bindings: bool,
                          expected: str, gs2: bytes) -> None:
    script = direct_tls(channel_bindings={"tls-exporter": EXPORTER} if bindings else None)
    mechanism, initial = auth_of(script.say(SERVER_HEADER + mechanisms(*offered, cb_types=cb_types)))
    assert mechanism == expected and initial.startswith(gs2 + b"n=juliet,r=")
    assert script.client.mechanism == expected and script.client.state is S.AUTHENTICATING


def test_preference_order_is_ours() -> None:
    script = direct_tls(mechanisms=("PLAIN", "SCRAM-SHA-256"))
    assert auth_of(script.say(SERVER_HEADER + mechanisms("SCRAM-SHA-256", "PLAIN"))) == (
        "PLAIN", f"\0juliet\0{PASSWORD}".encode())


@pytest.mark.parametrize("options,offered", [
    ({"require_tls": False, "tls_available": False, "mechanisms": ("PLAIN",)}, ("PLAIN",)),  # never in clear
    ({"tls_active": True}, ()),
    ({"tls_active": True}, ("DIGEST-MD5", "X-OAUTH2")),
])
def test_no_acceptable_mechanism(options: dict[str, Any], offered: tuple[str, ...]) -> None:
    script, _ = start(**options)
    assert script.say(SERVER_HEADER + mechanisms(*offered)) == [StreamFooter()]
    assert len(script.of_type(ev.NegotiationFailed)) == 1 and script.client.state is S.CLOSED


# -- the SCRAM exchange against a real ScramServer -------------------------------------------------
def scram_server(initial: bytes, password: str = PASSWORD) -> tuple[ScramServer, bytes]:
    server = ScramServer("sha-1", plus=False, server_nonce="servernonce", channel_bindings={}, plus_advertised=False)
    server.receive_client_first(initial)
    creds = derive_scram_credentials(password, "sha-1", salt=b"saltsalt", iterations=4096)
    return server, server.server_first(creds)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_until_final() -> tuple[Script, ScramServer, bytes]:
    script = direct_tls(mechanisms=("SCRAM-SHA-1",))
    _, initial = auth_of(script.say(SERVER_HEADER + mechanisms("SCRAM-SHA-1")))
    server, first = scram_server(initial)
    (response,) = script.say(f"<challenge xmlns='{NS_SASL}'>{b64(first)}</challenge>")
    assert isinstance(response, Element) and response.name == "response"
    return script, server, server.receive_client_final(base64.b64decode(response.text))


def test_scram_success_restarts_the_stream() -> None:
    script, _, final = scram_until_final()
    (header,) = script.say(f"<success xmlns='{NS_SASL}'>{b64(final)}</success>", restart=True)
    assert isinstance(header, StreamHeader)  # RFC 6120 §6.4.6: a new stream over the same channel
    assert script.of_type(ev.Authenticated) == [ev.Authenticated(mechanism="SCRAM-SHA-1")]
    assert script.client.state is S.WAIT_HEADER


def test_compat_server_final_in_a_challenge() -> None:
    script, _, final = scram_until_final()
    (empty,) = script.say(f"<challenge xmlns='{NS_SASL}'>{b64(final)}</challenge>")
    assert isinstance(empty, Element) and empty.name == "response" and empty.text == ""
    script.say(f"<success xmlns='{NS_SASL}'/>", restart=True)
    assert script.of_type(ev.Authenticated) and script.client.state is S.WAIT_HEADER


@pytest.mark.parametrize("success", ["", b64(b"v=" + b64(b"x" * 20).encode())])
def test_scram_success_without_a_valid_signature_is_refused(success: str) -> None:
    # The server does not know our key (or hides it): never trust it (RFC 5802 §5).
    script, _, _ = scram_until_final()
    out = script.say(f"<success xmlns='{NS_SASL}'>{success}</success>")
    assert out == [StreamFooter()]
    assert [e.condition for e in script.of_type(ev.AuthFailed)] == [SaslCondition.NOT_AUTHORIZED]
    assert not script.of_type(ev.Authenticated)


@pytest.mark.parametrize("challenge,condition", [
    (b64(b"r=othernonce,s=c2FsdA==,i=4096"), SaslCondition.NOT_AUTHORIZED),  # nonce not extending ours
    ("%%%", SaslCondition.INCORRECT_ENCODING),
])
def test_bad_challenge_is_aborted(challenge: str, condition: SaslCondition) -> None:
    script = direct_tls(mechanisms=("SCRAM-SHA-1",))
    script.say(SERVER_HEADER + mechanisms("SCRAM-SHA-1"))
    out = script.say(f"<challenge xmlns='{NS_SASL}'>{challenge}</challenge>")
    assert [(e.ns, e.name) for e in out if isinstance(e, Element)] == [(NS_SASL, "abort")]
    assert [e.condition for e in script.of_type(ev.AuthFailed)] == [condition]
    assert isinstance(out[-1], StreamFooter)


def test_challenge_to_plain_is_aborted() -> None:
    script = direct_tls(mechanisms=("PLAIN",))
    script.say(SERVER_HEADER + mechanisms("PLAIN"))
    out = script.say(f"<challenge xmlns='{NS_SASL}'>=</challenge>")
    assert [e.name for e in out if isinstance(e, Element)] == ["abort"]


@pytest.mark.parametrize("child,condition", [
    ("<not-authorized/>", SaslCondition.NOT_AUTHORIZED),
    ("<temporary-auth-failure/><text>later</text>", SaslCondition.TEMPORARY_AUTH_FAILURE),
    ("<x-custom/>", SaslCondition.NOT_AUTHORIZED),
])
def test_sasl_failure_ends_the_stream(child: str, condition: SaslCondition) -> None:
    script = direct_tls(mechanisms=("PLAIN",))
    script.say(SERVER_HEADER + mechanisms("PLAIN"))
    assert script.say(f"<failure xmlns='{NS_SASL}'>{child}</failure>") == [StreamFooter()]
    assert script.of_type(ev.AuthFailed) == [ev.AuthFailed(username="juliet", condition=condition, mechanism="PLAIN")]


# -- binding ---------------------------------------------------------------------------------
def authenticated(jid: str = f"juliet@{DOMAIN}/balcony") -> Script:
    script = direct_tls(mechanisms=("PLAIN",), jid=jid)
    script.say(SERVER_HEADER + mechanisms("PLAIN"))
    script.say(f"<success xmlns='{NS_SASL}'/>", restart=True)
    return script


@pytest.mark.parametrize("jid,resource", [(f"juliet@{DOMAIN}/balcony", "balcony"), (f"juliet@{DOMAIN}", None)])
def test_bind_asks_for_the_resource_of_the_jid(jid: str, resource: str | None) -> None:
    script = authenticated(jid)
    (iq,) = script.say(SERVER_HEADER + BIND_FEATURES)
    assert isinstance(iq, Element) and iq.get("type") == "set"
    bind = iq.find("bind", NS_BIND)
    assert bind is not None and bind.findtext("resource") == resource


def test_bind_refused_then_retried() -> None:
    script = authenticated()
    (iq,) = script.say(SERVER_HEADER + BIND_FEATURES)
    assert isinstance(iq, Element)
    out = script.say(f"<iq type='error' id='{iq.get('id')}'><bind xmlns='{NS_BIND}'/><error type='wait'>"
                     f"<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    assert out == [] and script.of_type(ev.BindFailed) == [ev.BindFailed(condition=Condition.RESOURCE_CONSTRAINT)]
    with pytest.raises(ProtocolUsageError):
        script.client.send_stanza(Element("message", NS_CLIENT))
    script.client.bind()
    (again,) = script.read()
    assert isinstance(again, Element) and again.get("id") != iq.get("id")
    assert again.find("bind", NS_BIND) == Element("bind", NS_BIND)  # no resource: the server picks
    with pytest.raises(ProtocolUsageError):
        script.client.bind()  # one request at a time


@pytest.mark.parametrize("jid_text", [f"romeo@{DOMAIN}/balcony", f"juliet@{DOMAIN}", "", "@@"])
def test_bind_result_for_another_address_is_refused(jid_text: str) -> None:
    script = authenticated()
    (iq,) = script.say(SERVER_HEADER + BIND_FEATURES)
    assert isinstance(iq, Element)
    out = script.say(f"<iq type='result' id='{iq.get('id')}'><bind xmlns='{NS_BIND}'><jid>{jid_text}</jid></bind></iq>")
    assert out == [StreamFooter()] and script.of_type(ev.NegotiationFailed) and not script.of_type(ev.Bound)


def test_no_bind_feature() -> None:
    script = authenticated()
    assert script.say(SERVER_HEADER + "<stream:features/>") == [StreamFooter()]
    assert script.of_type(ev.NegotiationFailed)


# -- once bound ------------------------------------------------------------------------------------
def test_bound_client_exchanges_stanzas() -> None:
    script = bound()
    assert script.of_type(ev.Bound) == [ev.Bound(jid=f"juliet@{DOMAIN}/balcony")]
    assert script.say("<message from='romeo@example.org/x'><body>hi</body></message>") == []
    (received,) = script.of_type(ev.StanzaReceived)
    assert received.stanza.findtext("body") == "hi"
    script.client.send_stanza(Element("presence", NS_CLIENT))
    assert script.read() == [Element("presence", NS_CLIENT)]


@pytest.mark.parametrize("xml,condition", [
    ("<message xmlns='jabber:server'/>", "invalid-namespace"),
    ("<r xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
])
def test_bound_client_refuses(xml: str, condition: str) -> None:
    script = bound()
    assert stream_error(script.say(xml)) == condition


def test_unexpected_element_during_negotiation() -> None:
    script, _ = start()
    assert stream_error(script.say(SERVER_HEADER + "<message/>")) == "unsupported-stanza-type"


def test_server_stream_error_and_footer() -> None:
    script = bound()
    out = script.say(f"<stream:error><conflict xmlns='{NS_STREAM_ERRORS}'/>"
                     f"<text xmlns='{NS_STREAM_ERRORS}'>replaced</text></stream:error>")
    assert out == [StreamFooter()]
    assert script.of_type(ev.StreamClosed) == [ev.StreamClosed(condition=StreamCondition.CONFLICT, by_peer=True, text="replaced")]
    script.client.send_stanza(Element("message", NS_CLIENT))  # dropped once closed
    assert script.read() == []
    other = bound()
    assert other.say("</stream:stream>") == [StreamFooter()]
    assert other.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]


def test_connection_lost() -> None:
    script = bound()
    script.client.connection_lost()
    assert script.client.pop_events() == [ev.StreamClosed(by_peer=True)]
    assert script.client.state is S.CLOSED and script.client.get_timer() is None


# -- timers ------------------------------------------------------------------------------------
def test_negotiation_timeout() -> None:
    script, _ = start(now=10.0, negotiation_timeout=5.0)
    assert script.client.get_timer() == 15.0
    script.client.handle_timer(14.0)
    assert script.read() == []
    script.client.handle_timer(15.0)
    assert stream_error(script.read()) == "connection-timeout"


def test_keepalive_once_bound() -> None:
    script = direct_tls(mechanisms=("PLAIN",), keepalive_interval=30.0)
    assert script.client.get_timer() == 30.0  # the negotiation deadline first
    script.say(SERVER_HEADER + mechanisms("PLAIN"))
    script.say(f"<success xmlns='{NS_SASL}'/>", restart=True)
    (iq,) = script.say(SERVER_HEADER + BIND_FEATURES)
    assert isinstance(iq, Element)
    script.client.receive_data(f"<iq type='result' id='{iq.get('id')}'><bind xmlns='{NS_BIND}'>"
                               f"<jid>juliet@{DOMAIN}/balcony</jid></bind></iq>".encode(), now=100.0)
    assert script.client.get_timer() == 130.0
    script.client.handle_timer(130.0)
    assert script.client.data_to_send() == b" " and script.client.get_timer() == 160.0


# -- fuzzing -------------------------------------------------------------------------------------
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=st.lists(st.binary(max_size=48) | st.sampled_from([
    STARTTLS.encode(), mechanisms("SCRAM-SHA-1", "PLAIN").encode(), f"<proceed xmlns='{NS_TLS}'/>".encode(),
    f"<challenge xmlns='{NS_SASL}'>cj1h</challenge>".encode(), f"<success xmlns='{NS_SASL}'/>".encode(),
    f"<failure xmlns='{NS_SASL}'/>".encode(), b"</stream:stream>", b"<", b"\x00",
]), max_size=10))
def test_arbitrary_server_bytes_never_raise(chunks: list[bytes]) -> None:
    script = direct_tls()
    script.client.receive_data(SERVER_HEADER.encode(), now=0.0)
    for chunk in chunks:
        script.client.receive_data(chunk, now=0.0)
    events = script.client.pop_events()
    closes = [e for e in events if isinstance(e, ev.StreamClosed)]
    assert len(closes) <= 1
    if script.client.closed:
        assert closes and script.client.state is S.CLOSED
        assert script.client.data_to_send().endswith(b"</stream:stream>")
