"""RFC 6120 §4–§7: the c2s server core against our client core and hand-written XML, in memory.

Happy paths run client core <-> server core (tests/protocol/pair.py); every refusal of the
server core is provoked with raw XML, as a broken or hostile client would send it.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import TRANSITIONS, C2SState
from xmppcore.protocol.client import CLIENT_TRANSITIONS, C2SClientState
from xmppcore.stanza.errors import Condition, SaslCondition, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS
from xmppcore.xml.parser import StreamFooter, StreamHeader

from .pair import (
    DOMAIN, HEADER, PASSWORD, RawClient, ServerAnswers, elements, iq_error, make_pair, make_server,
    offered_mechanisms, plain_auth, sasl_failure, stream_error,
)

SASL = f"xmlns='{NS_SASL}'"
SCRAM = ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS")


def closed_with(raw: RawClient, condition: StreamCondition | None, *, by_peer: bool = False) -> bool:
    """The server core reported exactly one StreamClosed, with ``condition``, and is CLOSED."""
    raw.answers.handle(raw.server)
    closed = raw.answers.of_type(ev.StreamClosed)
    return raw.server.state is C2SState.CLOSED and [(e.condition, e.by_peer) for e in closed] == [(condition, by_peer)]


@pytest.fixture
def raw() -> RawClient:
    return RawClient()


# -- happy paths: client core <-> server core ----------------------------------------------------
@pytest.mark.parametrize("mechanism", [*SCRAM, "PLAIN"])
@pytest.mark.parametrize("resource", ["balcony", None])
def test_negotiation_reaches_bound(mechanism: str, resource: str | None) -> None:
    jid = f"juliet@{DOMAIN}" + (f"/{resource}" if resource else "")
    pair = make_pair(jid, client={"mechanisms": (mechanism,)})
    expected = f"juliet@{DOMAIN}/{resource or 'generated1'}"
    assert pair.client_of_type(ev.Authenticated) == [ev.Authenticated(mechanism=mechanism)]
    assert pair.answers.of_type(ev.AuthSucceeded) == [ev.AuthSucceeded(username="juliet", mechanism=mechanism)]
    assert pair.answers.of_type(ev.BindRequested) == [ev.BindRequested(resource=resource)]
    assert pair.client_of_type(ev.Bound) == [ev.Bound(jid=expected)]
    assert pair.client.state is C2SClientState.BOUND and pair.server.state is C2SState.BOUND
    assert str(pair.server.jid) == expected and str(pair.client.jid) == expected


def test_stanzas_flow_both_ways_once_bound() -> None:
    pair = make_pair()
    pair.client.send_stanza(Element("message", NS_CLIENT, {"to": "romeo@example.org"}, [Element("body", NS_CLIENT, text="hi")]))
    pair.server.send_stanza(Element("presence", NS_CLIENT, {"from": "romeo@example.org/a"}))
    pair.pump()
    (received,) = pair.answers.of_type(ev.StanzaReceived)
    assert received.stanza.name == "message" and received.stanza.findtext("body") == "hi"
    assert [e.stanza.name for e in pair.client_of_type(ev.StanzaReceived)] == ["presence"]


_DIRECT_TLS = {"tls_active": True, "channel_bindings": {"tls-exporter": b"x" * 32}}


_ALL = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


@pytest.mark.parametrize("options,expected,offered", [
    ({}, "SCRAM-SHA-256-PLUS", _ALL),                                  # both sides can bind
    ({"answers": ServerAnswers(exporter=None)}, "SCRAM-SHA-256", _ALL[2:]),  # the server can't: gs2 'y'
    ({"client": {"tls_available": False, "require_tls": False},       # no TLS: no -PLUS, no PLAIN
      "server": {"tls_available": False, "tls_required": False}}, "SCRAM-SHA-256", _ALL[2:4]),
    ({"client": _DIRECT_TLS, "server": _DIRECT_TLS}, "SCRAM-SHA-256-PLUS", _ALL),  # XEP-0368
])
def test_default_preference_picks_the_strongest_common_mechanism(
        options: dict[str, Any], expected: str, offered: list[str]) -> None:
    pair = make_pair(**options)
    assert pair.client.mechanism == expected and pair.client.state is C2SClientState.BOUND
    offers = [offered_mechanisms(e.features) for e in pair.client_of_type(ev.FeaturesReceived)]
    assert [o for o in offers if o] == [offered]


def test_different_channels_refuse_plus() -> None:
    # A man in the middle terminates two TLS channels: the exporters differ, -PLUS fails.
    pair = make_pair(client_exporter=b"\xff" * 32)
    assert [e.condition for e in pair.client_of_type(ev.AuthFailed)] == [SaslCondition.NOT_AUTHORIZED]
    assert [e.condition for e in pair.answers.of_type(ev.AuthFailed)] == [SaslCondition.NOT_AUTHORIZED]
    # The client gives up after a failure and closes; the server follows.
    assert pair.answers.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN"])
def test_own_bare_jid_as_authzid_is_accepted(mechanism: str) -> None:
    pair = make_pair(client={"mechanisms": (mechanism,), "authzid": f"juliet@{DOMAIN}"})
    assert pair.client.state is C2SClientState.BOUND


def test_byte_by_byte_gives_the_same_result() -> None:
    whole = make_pair()
    split = make_pair(chunk=1)
    assert split.client_events == whole.client_events
    assert split.answers.events == whole.answers.events
    assert split.to_client == whole.to_client and split.to_server == whole.to_server
    assert split.client.history == whole.client.history and split.server.history == whole.server.history
    assert split.server.state is C2SState.BOUND


def test_client_close_ends_both_streams() -> None:
    pair = make_pair()
    pair.client.close()
    pair.pump()
    assert pair.answers.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]
    assert pair.client_of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=False)]
    assert pair.to_client.endswith(b"</stream:stream>") and pair.to_server.endswith(b"</stream:stream>")


# -- SASL refusals seen through the pair --------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
@pytest.mark.parametrize("jid,password", [(f"juliet@{DOMAIN}", "wrong"), (f"nobody@{DOMAIN}", PASSWORD)])
def test_wrong_password_or_unknown_user_is_not_authorized(mechanism: str, jid: str, password: str) -> None:
    pair = make_pair(jid, client={"mechanisms": (mechanism,), "password": password})
    for events in (pair.client_of_type(ev.AuthFailed), pair.answers.of_type(ev.AuthFailed)):
        assert [e.condition for e in events] == [SaslCondition.NOT_AUTHORIZED]
    assert pair.answers.of_type(ev.AuthFailed)[0].username == jid.split("@")[0]
    assert pair.client.state is C2SClientState.CLOSED


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN"])
def test_authzid_naming_another_user_is_refused(mechanism: str) -> None:
    pair = make_pair(client={"mechanisms": (mechanism,), "authzid": f"romeo@{DOMAIN}"})
    assert [e.condition for e in pair.answers.of_type(ev.AuthFailed)] == [SaslCondition.INVALID_AUTHZID]
    assert not pair.answers.of_type(ev.CredentialsNeeded)  # refused before any lookup


def test_storage_failure_is_temporary_auth_failure() -> None:
    pair = make_pair(answers=ServerAnswers(credentials_available=False))
    assert [e.condition for e in pair.client_of_type(ev.AuthFailed)] == [SaslCondition.TEMPORARY_AUTH_FAILURE]


# -- stream header errors (RFC 6120 §4.7, §4.9.3) ---------------------------------------------------
def _header(**attrs: str | None) -> str:
    values: dict[str, str | None] = {"xmlns": "jabber:client", "xmlns:stream": NS_STREAMS,
                                     "to": DOMAIN, "version": "1.0"}
    values.update({k.replace("_", ":"): v for k, v in attrs.items()})
    text = " ".join(f"{k}='{v}'" for k, v in values.items() if v is not None)
    return f"<stream:stream {text}>"


def expected_version(header: str) -> str | None:
    if "version='0.9'" in header:
        return "0.9"
    return "1.0" if "version=" in header else None


@pytest.mark.parametrize("header,condition", [
    (_header(to="elsewhere.example"), "host-unknown"),
    (_header(to=None), "improper-addressing"),
    (_header(version=None), "unsupported-version"),
    (_header(version="0.9"), "unsupported-version"),
    (_header(version="2.0"), "unsupported-version"),
    (_header(xmlns_stream="urn:example:not-streams"), "invalid-namespace"),
    (_header(xmlns="jabber:server"), "invalid-namespace"),
    (f"<s:stream xmlns='jabber:client' xmlns:s='{NS_STREAMS}' to='{DOMAIN}' version='1.0'>", "bad-namespace-prefix"),
    (f"<stream xmlns='{NS_STREAMS}' to='{DOMAIN}' version='1.0'>", "bad-namespace-prefix"),
    (_header(**{"from": "@broken"}), "invalid-from"),
])
def test_header_errors_come_after_our_own_header(raw: RawClient, header: str, condition: str) -> None:
    out = raw.send(header)
    # RFC 6120 §4.9.1.2: even an error about the initial header is preceded by our header.
    assert isinstance(out[0], StreamHeader) and out[0].attrs["id"]
    # §4.7.5: our header carries the lower of the two versions, and none when the client gave none.
    assert out[0].attrs.get("version") == expected_version(header)
    assert len(out) == 3 and stream_error(out) == condition
    assert closed_with(raw, StreamCondition(condition))


def test_restart_must_keep_the_domain(raw: RawClient) -> None:
    raw.open()
    raw.send(f"<starttls xmlns='{NS_TLS}'/>")
    raw.restart()
    # After TLS the client reopens to another domain (RFC 6120 §4.3.3: same 'to').
    out = raw.send(_header(to="other.example"))
    assert isinstance(out[0], StreamHeader) and stream_error(out) == "host-unknown"


# -- STARTTLS (RFC 6120 §5) ----------------------------------------------------------------------
def test_sasl_before_required_tls_is_encryption_required(raw: RawClient) -> None:
    features = raw.open()
    assert features.find("mechanisms", NS_SASL) is None  # §5.3.1: only STARTTLS is offered
    assert sasl_failure(raw.send(plain_auth("juliet", PASSWORD))) == "encryption-required"
    assert raw.server.state is C2SState.NEGOTIATING  # the stream goes on; TLS still works
    assert [e.name for e in elements(raw.send(f"<starttls xmlns='{NS_TLS}'/>"))] == ["proceed"]


def test_nothing_pipelined_after_starttls_survives_into_tls(raw: RawClient) -> None:
    # Plaintext sent after <starttls/> must never be read as if it came over TLS.
    raw.open()
    out = raw.send(f"<starttls xmlns='{NS_TLS}'/>" + plain_auth("juliet", PASSWORD))
    assert [e.name for e in elements(out)][:1] == ["proceed"] and stream_error(out) == "policy-violation"
    assert not raw.answers.of_type(ev.CredentialsNeeded) and raw.server.state is C2SState.CLOSED


@pytest.mark.parametrize("tls_available", [True, False])
def test_starttls_that_cannot_happen_is_failure_and_close(tls_available: bool) -> None:
    # RFC 6120 §5.4.2.2: TLS already active, or not available at all.
    raw = RawClient(make_server(tls_available=tls_available, tls_required=tls_available))
    if tls_available:
        raw.negotiate_tls()
    else:
        raw.open()
    out = raw.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert [(e.ns, e.name) for e in elements(out)] == [(NS_TLS, "failure")] and isinstance(out[-1], StreamFooter)
    assert closed_with(raw, None)


@pytest.mark.parametrize("stanza,condition", [
    ("<message to='romeo@example.org'/>", "not-authorized"),  # RFC 6120 §4.9.3.12
    ("<iq type='get' id='1'/>", "not-authorized"),
    ("<presence/>", "not-authorized"),
    ("<hello xmlns='urn:example'/>", "unsupported-stanza-type"),
])
def test_stanzas_before_authentication(raw: RawClient, stanza: str, condition: str) -> None:
    raw.negotiate_tls()
    assert stream_error(raw.send(stanza)) == condition


# -- SASL (RFC 6120 §6) -----------------------------------------------------------------------
def test_plain_is_not_offered_without_tls() -> None:
    raw = RawClient(make_server(tls_available=False, tls_required=False))
    offered = offered_mechanisms(raw.open())
    assert "PLAIN" not in offered and not any(m.endswith("-PLUS") for m in offered)
    # RFC 6120 §6.5.4: a mechanism we would offer under TLS gets encryption-required.
    assert sasl_failure(raw.send(plain_auth("juliet", PASSWORD))) == "encryption-required"


@pytest.mark.parametrize("auth,condition", [
    (f"<auth {SASL} mechanism='DIGEST-MD5'>=</auth>", "invalid-mechanism"),
    (f"<auth {SASL}>=</auth>", "invalid-mechanism"),
    (f"<auth {SASL} mechanism='PLAIN'>!!not base64!!</auth>", "incorrect-encoding"),
    (f"<auth {SASL} mechanism='PLAIN'>{base64.b64encode(b'juliet').decode()}</auth>", "malformed-request"),
    (f"<auth {SASL} mechanism='SCRAM-SHA-1'>{base64.b64encode(b'garbage').decode()}</auth>", "malformed-request"),
    (f"<response {SASL}>=</response>", "malformed-request"),
    (plain_auth("juliet", "wrong"), "not-authorized"),
    (plain_auth("nobody", PASSWORD), "not-authorized"),
    (plain_auth("juliet", PASSWORD, authzid=f"romeo@{DOMAIN}"), "invalid-authzid"),
    (f"<abort {SASL}/>", "aborted"),
])
def test_sasl_failures(raw: RawClient, auth: str, condition: str) -> None:
    raw.negotiate_tls()
    assert sasl_failure(raw.send(auth)) == condition
    assert raw.server.state is C2SState.NEGOTIATING  # RFC 6120 §6.4.5: the client may retry
    assert raw.send(plain_auth("juliet", PASSWORD))[0].name == "success"  # type: ignore[union-attr]


def test_abort_while_credentials_are_looked_up() -> None:
    raw = RawClient(answers=ServerAnswers(answer_credentials=False))
    raw.negotiate_tls()
    assert raw.send(plain_auth("juliet", PASSWORD)) == [] and raw.server.state is C2SState.AUTH_PENDING
    out = raw.send(f"<abort {SASL}/>")
    if raw.server.state is C2SState.AUTH_PENDING:  # the core may wait for the lookup to end
        raw.server.provide_credentials(raw.answers.credentials("juliet", "sha-256"))
        out += raw.read()
    assert sasl_failure(out) == "aborted"
    assert raw.server.history[-1] is C2SState.NEGOTIATING and raw.server.username is None


def test_a_stale_credentials_answer_never_serves_another_exchange() -> None:
    # Pipelined: auth as juliet (lookup outstanding), abort, auth as romeo with juliet's
    # password.  The lookup for juliet must not complete romeo's exchange.
    raw = RawClient(answers=ServerAnswers(answer_credentials=False))
    raw.negotiate_tls()
    raw.send(plain_auth("juliet", PASSWORD) + f"<abort {SASL}/>" + plain_auth("romeo", PASSWORD))
    if raw.server.state is C2SState.AUTH_PENDING:
        raw.server.provide_credentials(raw.answers.credentials("juliet", "sha-256"))
    raw.answers.handle(raw.server)
    assert raw.server.username != "romeo"  # fails today: see the report (c2s.py abort in AUTH_PENDING)
    assert not raw.answers.of_type(ev.AuthSucceeded)


def test_scram_abort_mid_exchange(raw: RawClient) -> None:
    raw.negotiate_tls()
    first = base64.b64encode(b"n,,n=juliet,r=abcdef").decode()
    out = raw.send(f"<auth {SASL} mechanism='SCRAM-SHA-1'>{first}</auth>")
    assert [e.name for e in elements(out)] == ["challenge"]
    assert sasl_failure(raw.send(f"<abort {SASL}/>")) == "aborted"


def test_anything_but_abort_while_credentials_pending_is_a_policy_violation() -> None:
    raw = RawClient(answers=ServerAnswers(answer_credentials=False))
    raw.negotiate_tls()
    raw.send(plain_auth("juliet", PASSWORD))
    assert stream_error(raw.send(plain_auth("juliet", PASSWORD))) == "policy-violation"


def test_too_many_failures_end_the_stream_with_policy_violation() -> None:
    # RFC 6120 §6.4.5: after the configured retries the stream ends; policy-violation is the
    # condition the RFC recommends (some servers send not-authorized).
    raw = RawClient(make_server(max_auth_failures=3))
    raw.negotiate_tls()
    for _ in range(2):
        assert sasl_failure(raw.send(plain_auth("juliet", "wrong"))) == "not-authorized"
    out = raw.send(plain_auth("juliet", "wrong"))
    assert sasl_failure(out[:1]) == "not-authorized" and stream_error(out) == "policy-violation"
    assert [e.condition for e in raw.answers.of_type(ev.AuthFailed)] == [SaslCondition.NOT_AUTHORIZED] * 3
    assert raw.server.state is C2SState.CLOSED


def test_failures_below_the_limit_still_allow_success() -> None:
    raw = RawClient(make_server(max_auth_failures=3))
    raw.negotiate_tls()
    for _ in range(2):
        raw.send(plain_auth("juliet", "wrong"))
    assert [e.name for e in elements(raw.send(plain_auth("juliet", PASSWORD)))] == ["success"]


def test_authentication_timeout() -> None:
    raw = RawClient(make_server(now=100.0, auth_timeout=30.0))
    raw.open()
    assert raw.server.get_timer() == 130.0
    raw.server.handle_timer(129.9)
    assert raw.read() == []
    raw.server.handle_timer(130.0)
    assert stream_error(raw.read()) == "connection-timeout"
    assert closed_with(raw, StreamCondition.CONNECTION_TIMEOUT)
    assert raw.server.get_timer() is None


# -- resource binding (RFC 6120 §7) -------------------------------------------------------------------
BIND = "urn:ietf:params:xml:ns:xmpp-bind"


def test_bind_refused_then_retried() -> None:
    pair = make_pair(answers=ServerAnswers(bind_refusals=[Condition.RESOURCE_CONSTRAINT]))
    assert pair.client_of_type(ev.BindFailed) == [ev.BindFailed(condition=Condition.RESOURCE_CONSTRAINT)]
    assert pair.server.state is C2SState.WAIT_BIND and pair.client.state is C2SClientState.WAIT_BIND
    pair.client.bind("window")
    pair.pump()
    assert pair.client_of_type(ev.Bound) == [ev.Bound(jid=f"juliet@{DOMAIN}/window")]


def test_invalid_resource_is_bad_request(raw: RawClient) -> None:
    raw.login()
    out = raw.send(f"<iq type='set' id='b'><bind xmlns='{BIND}'><resource>{'r' * 1100}</resource></bind></iq>")
    assert iq_error(out) == "bad-request" and raw.server.state is C2SState.WAIT_BIND


def test_stanzas_before_bind(raw: RawClient) -> None:
    raw.login()
    assert iq_error(raw.send("<iq type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>")) == "not-authorized"
    assert raw.send(f"<message to='juliet@{DOMAIN}'><body>x</body></message>") == []  # own account: dropped
    assert raw.send(f"<iq type='get' id='g'><bind xmlns='{BIND}'/></iq>") != []  # a get is no bind
    assert raw.server.state is C2SState.WAIT_BIND
    assert stream_error(raw.send("<r xmlns='urn:xmpp:sm:3'/>")) == "unsupported-stanza-type"


def test_a_stanza_to_someone_else_before_bind_ends_the_stream(raw: RawClient) -> None:
    # RFC 6120 §7.1: the server MUST NOT process it and closes with not-authorized.
    raw.login()
    out = raw.send("<message to='romeo@example.org'><body>x</body></message>")
    assert stream_error(out) == "not-authorized"


def test_second_bind_is_not_allowed(raw: RawClient) -> None:
    raw.login()
    raw.bind()
    assert iq_error(raw.send(f"<iq type='set' id='b2'><bind xmlns='{BIND}'/></iq>")) == "not-allowed"
    assert raw.server.state is C2SState.BOUND


def test_legacy_session_is_acknowledged(raw: RawClient) -> None:
    features = raw.login()
    assert features.find("session", "urn:ietf:params:xml:ns:xmpp-session") is not None
    raw.bind()
    (result,) = elements(raw.send("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"))
    assert (result.get("type"), result.get("id"), result.children) == ("result", "s", [])


def test_whitespace_keepalive_after_bind() -> None:
    raw = RawClient(make_server(keepalive_interval=60.0))
    raw.login()
    raw.now = 10.0
    raw.bind()
    assert raw.server.get_timer() == 70.0
    raw.server.handle_timer(69.0)
    assert raw.server.data_to_send() == b""
    raw.server.handle_timer(70.0)
    assert raw.server.data_to_send() == b" " and raw.server.get_timer() == 130.0


# -- after binding ---------------------------------------------------------------------------
@pytest.mark.parametrize("stanza,condition", [
    ("<r xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
    ("<message xmlns='jabber:server' to='romeo@example.org'/>", "invalid-namespace"),
])
def test_bound_stream_refuses(raw: RawClient, stanza: str, condition: str) -> None:
    raw.login()
    raw.bind()
    assert stream_error(raw.send(stanza)) == condition


def test_peer_closing_tag_is_answered_with_ours(raw: RawClient) -> None:
    raw.login()
    raw.bind()
    assert raw.send("</stream:stream>") == [StreamFooter()]
    assert closed_with(raw, None, by_peer=True)


def test_peer_stream_error_ends_the_stream(raw: RawClient) -> None:
    raw.login()
    out = raw.send(f"<stream:error><system-shutdown xmlns='{NS_STREAM_ERRORS}'/></stream:error>")
    assert out == [StreamFooter()]
    assert closed_with(raw, StreamCondition.SYSTEM_SHUTDOWN, by_peer=True)


def test_nothing_is_read_after_close(raw: RawClient) -> None:
    raw.login()
    raw.bind()
    raw.server.close(StreamCondition.SYSTEM_SHUTDOWN)
    assert stream_error(raw.read()) == "system-shutdown"
    raw.server.receive_data(b"<message/>", now=0.0)
    assert raw.server.data_to_send() == b"" and raw.server.get_timer() is None
    raw.server.send_stanza(Element("message", NS_CLIENT))  # a late delivery is dropped
    assert raw.server.data_to_send() == b""


def test_connection_lost_closes_the_core(raw: RawClient) -> None:
    raw.login()
    raw.bind()
    raw.server.connection_lost()
    assert raw.server.pop_events() == [ev.StreamClosed(by_peer=True)]
    assert raw.server.state is C2SState.CLOSED  # fails today: see the report (c2s.py connection_lost)


# -- the transition tables ---------------------------------------------------------------------
def test_tables_cover_every_state_and_every_state_can_close() -> None:
    assert set(TRANSITIONS) == set(C2SState) and set(CLIENT_TRANSITIONS) == set(C2SClientState)
    for table, closed in ((TRANSITIONS, C2SState.CLOSED), (CLIENT_TRANSITIONS, C2SClientState.CLOSED)):
        assert all(closed in after for before, after in table.items() if before is not closed)
        assert not table[closed]  # type: ignore[index]


def test_recording_cores_refuse_unlisted_transitions() -> None:
    server = make_server()
    with pytest.raises(AssertionError, match="unlisted transition"):
        server.state = C2SState.BOUND  # WAIT_HEADER -> BOUND is not in the table


def test_happy_path_history() -> None:
    pair = make_pair()
    S = C2SState
    assert pair.server.history == [S.WAIT_HEADER, S.NEGOTIATING, S.TLS_PENDING, S.WAIT_HEADER, S.NEGOTIATING,
                                   S.AUTH_PENDING, S.NEGOTIATING, S.WAIT_HEADER, S.WAIT_BIND, S.BIND_PENDING, S.BOUND]


# -- fuzzing ---------------------------------------------------------------------------------
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=st.lists(st.binary(max_size=64) | st.sampled_from([
    b"<", b">", b"/>", b"</stream:stream>", b"<iq type='set' id='1'>", b"</iq>",
    f"<starttls xmlns='{NS_TLS}'/>".encode(), plain_auth("juliet", PASSWORD).encode(),
    f"<bind xmlns='{BIND}'/>".encode(), b"<message><body>", b"&amp;", b"&unknown;", b"\xff",
]), max_size=12))
def test_arbitrary_bytes_after_a_valid_header(chunks: list[bytes]) -> None:
    raw = RawClient()
    raw.send(HEADER)
    for chunk in chunks:
        raw.server.receive_data(chunk, now=0.0)  # must never raise
        while raw.answers.handle(raw.server):
            pass
    raw.answers.handle(raw.server)
    allowed = (ev.StreamOpened, ev.TlsRequested, ev.CredentialsNeeded, ev.AuthSucceeded, ev.AuthFailed,
               ev.BindRequested, ev.StanzaReceived, ev.StreamClosed)
    assert all(isinstance(e, allowed) for e in raw.answers.events)
    closes = raw.answers.of_type(ev.StreamClosed)
    assert len(closes) <= 1
    written = raw.server.data_to_send()
    if raw.server.closed:
        # Once closed, the server has ended its side of the stream.
        assert len(closes) == 1 and raw.server.state is C2SState.CLOSED
        assert written.endswith(b"</stream:stream>")


def test_an_auth_without_initial_response_gets_an_empty_challenge(raw: RawClient) -> None:
    # RFC 6120 §6.4.2 / RFC 4422 §5: no initial response (not even '='): the server asks for
    # it with an empty challenge, and the response carries what the initial response would have.
    raw.negotiate_tls()
    out = elements(raw.send(f"<auth {SASL} mechanism='PLAIN'/>"))
    assert [(e.name, e.text) for e in out] == [("challenge", "=")]
    payload = base64.b64encode(f"\0juliet\0{PASSWORD}".encode()).decode()
    assert [e.name for e in elements(raw.send(f"<response {SASL}>{payload}</response>"))] == ["success"]
