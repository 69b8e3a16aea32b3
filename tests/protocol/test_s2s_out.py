"""RFC 6120 §4–§6, XEP-0220, XEP-0178, XEP-0288: the outgoing s2s core against a scripted peer.

XML in, XML out: the test plays the receiving server (``montague.example``) with hand-written
XML and checks the exact bytes and events of the initiating server (``capulet.example``).  The
dialback values are those of XEP-0220's examples (secret, stream ids and keys).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.protocol import events as ev
from xmppcore.protocol.s2s_out import MAX_PENDING_VERIFICATIONS, OUT_TRANSITIONS, S2SOutgoing, S2SOutState
from xmppcore.stanza.errors import ProtocolUsageError, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS

S = S2SOutState
LOCAL, REMOTE = "capulet.example", "montague.example"
SECRET = b"s3cr3tf0rd14lb4ck"
# XEP-0220 Example 1: the key for capulet.example -> montague.example on stream D60000229F.
KEY_D6 = "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
# XEP-0220 Example 5: the key montague.example handed to capulet.example on stream 417GAF25.
KEY_417 = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"

OUR_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
              f" xmlns:stream='{NS_STREAMS}' xmlns:db='jabber:server:dialback'"
              f" from='{LOCAL}' to='{REMOTE}' version='1.0' xml:lang='en'>")
STARTTLS = f"<stream:features><starttls xmlns='{NS_TLS}'><required/></starttls></stream:features>"
PROCEED = f"<proceed xmlns='{NS_TLS}'/>"
EXTERNAL = f"<mechanisms xmlns='{NS_SASL}'><mechanism>EXTERNAL</mechanism></mechanisms>"
DIALBACK = "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
BIDI = "<bidi xmlns='urn:xmpp:features:bidi'/>"
AUTH_EXTERNAL = f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>"
SUCCESS = f"<success xmlns='{NS_SASL}'/>"
FOOTER = "</stream:stream>"


def header(stream_id: str = "D60000229F", *, db: bool = True, ns: str = "jabber:server",
           version: str | None = "1.0") -> str:
    decl = " xmlns:db='jabber:server:dialback'" if db else ""
    ver = f" version='{version}'" if version is not None else ""
    return (f"<stream:stream xmlns='{ns}' xmlns:stream='{NS_STREAMS}'{decl} id='{stream_id}'"
            f" from='{REMOTE}' to='{LOCAL}'{ver}>")


def features(*children: str) -> str:
    return f"<stream:features>{''.join(children)}</stream:features>"


def db_result(key: str) -> str:
    return f"<db:result from='{LOCAL}' to='{REMOTE}'>{key}</db:result>"


def db_verify(stream_id: str, key: str) -> str:
    return f"<db:verify from='{LOCAL}' to='{REMOTE}' id='{stream_id}'>{key}</db:verify>"


def verdict(kind: str, *, name: str = "result", extra: str = "", inner: str = "") -> str:
    body = f">{inner}</db:{name}>" if inner else "/>"
    return f"<db:{name} from='{REMOTE}' to='{LOCAL}' type='{kind}'{extra}{body}"


def stream_error(condition: str) -> str:
    return (f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
            + FOOTER)


class RecordingOutgoing(S2SOutgoing):
    """The core, checking each state change against OUT_TRANSITIONS (STYLE rule 2)."""

    history: list[S2SOutState]

    @property
    def state(self) -> S2SOutState:
        return self.history[-1]

    @state.setter
    def state(self, value: S2SOutState) -> None:
        if not hasattr(self, "history"):
            self.history = [value]
        elif value is not self.history[-1]:
            assert value in OUT_TRANSITIONS[self.history[-1]], f"unlisted {self.history[-1]} -> {value}"
            self.history.append(value)


class Peer:
    """Plays the receiving server: feeds XML to the core, returns what the core writes."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("local", LOCAL)
        options.setdefault("remote", REMOTE)
        options.setdefault("now", 0.0)
        options.setdefault("dialback_secret", SECRET)
        self.core = RecordingOutgoing(**options)
        self.events: list[ev.Event] = []
        self.now = 0.0

    def start(self) -> str:
        self.core.start()
        return self.read()

    def say(self, xml: str) -> str:
        self.core.receive_data(xml.encode(), now=self.now)
        return self.read()

    def read(self) -> str:
        self.events += self.core.pop_events()
        return self.core.data_to_send().decode()

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def tls(self, valid_for: tuple[str, ...] = (REMOTE,)) -> str:
        """Answer <proceed/>: TLS is up with a peer certificate valid for ``valid_for``."""
        self.core.tls_established(peer_certificate_valid_for=lambda domain: domain in valid_for)
        return self.read()


def after_tls(valid_for: tuple[str, ...] = (REMOTE,), **options: Any) -> Peer:
    """A core past STARTTLS, waiting for the peer's second header."""
    peer = Peer(**options)
    assert peer.start() == OUR_HEADER
    assert peer.say(header("plain1") + STARTTLS) == f"<starttls xmlns='{NS_TLS}'/>"
    assert peer.say(PROCEED) == "" and peer.of_type(ev.TlsProceed) == [ev.TlsProceed()]
    assert peer.core.state is S.TLS_HANDSHAKE
    assert peer.tls(valid_for) == OUR_HEADER  # RFC 6120 §5.4.3.3: the same header again
    return peer


def dialback_ready(**options: Any) -> Peer:
    peer = after_tls(**options)
    assert peer.say(header() + features(DIALBACK)) == db_result(KEY_D6)
    assert peer.say(verdict("valid")) == ""
    assert peer.core.ready
    return peer


def external_ready(*offers: str, **options: Any) -> Peer:
    peer = after_tls(**options)
    out = peer.say(header() + features(EXTERNAL, DIALBACK, *offers))
    assert out.endswith(AUTH_EXTERNAL)
    assert peer.say(SUCCESS) == OUR_HEADER  # RFC 6120 §6.4.6: restart
    assert peer.say(header("after-sasl") + features(*offers)) == ""
    assert peer.core.ready
    return peer


def closed_with(peer: Peer, out: str, condition: str | None) -> None:
    if condition:
        start = out.rindex("<stream:error>")
        assert out[start:].startswith(f"<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/>"), out
        assert out.endswith("</stream:error>" + FOOTER), out
    else:
        assert out.endswith(FOOTER) and "<stream:error>" not in out, out
    assert peer.core.state is S.CLOSED and peer.core.closed
    closed = peer.of_type(ev.StreamClosed)
    assert len(closed) == 1 and closed[0].by_peer is False
    assert closed[0].condition == (StreamCondition(condition) if condition else None)


# -- the stream header -----------------------------------------------------------------------
def test_header_names_both_domains_and_declares_dialback() -> None:
    peer = Peer()
    assert peer.start() == OUR_HEADER
    with pytest.raises(ProtocolUsageError):
        peer.core.start()
    assert peer.core.state is S.WAIT_HEADER


def test_data_before_start_is_a_usage_error() -> None:
    with pytest.raises(ProtocolUsageError):
        Peer().say(header())


@pytest.mark.parametrize("bad_header,condition", [
    (header(version=None), "unsupported-version"),
    (header(version="0.9"), "unsupported-version"),
    (header(ns="jabber:client"), "invalid-namespace"),
])
def test_bad_peer_headers(bad_header: str, condition: str) -> None:
    peer = Peer()
    peer.start()
    closed_with(peer, peer.say(bad_header), condition)


# -- STARTTLS (RFC 6120 §5) ------------------------------------------------------------------
def test_starttls_then_the_stream_id_of_the_new_stream_is_used() -> None:
    peer = after_tls()
    # The key is bound to the header after TLS (XEP-0220 §2.1.1 "stream ID of the response").
    assert peer.say(header("D60000229F") + features(DIALBACK)) == db_result(KEY_D6)
    assert peer.core.stream_id == "D60000229F"


@pytest.mark.parametrize("offer", [features(DIALBACK), features(EXTERNAL, DIALBACK)])
def test_tls_required_but_not_offered(offer: str) -> None:
    peer = Peer()
    peer.start()
    out = peer.say(header() + offer)
    assert out == FOOTER  # nothing else: no key travels in the clear
    assert [type(e) for e in peer.events] == [ev.FeaturesReceived, ev.NegotiationFailed, ev.StreamClosed]
    closed_with(peer, out, None)


def test_starttls_refused() -> None:
    peer = Peer()
    peer.start()
    peer.say(header() + STARTTLS)
    out = peer.say(f"<failure xmlns='{NS_TLS}'/>")
    assert len(peer.of_type(ev.NegotiationFailed)) == 1
    closed_with(peer, out, None)


def test_without_tls_when_allowed_and_not_offered_dialback_goes_in_the_clear() -> None:
    peer = Peer(tls_required=False)
    peer.start()
    # EXTERNAL is offered but meaningless without TLS: no certificate was presented.
    assert peer.say(header() + features(EXTERNAL, DIALBACK, BIDI)) == db_result(KEY_D6)
    assert peer.say(verdict("valid")) == ""
    assert peer.of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="dialback", bidi=False)]


def test_starttls_is_used_when_offered_even_if_not_required() -> None:
    peer = Peer(tls_required=False)
    peer.start()
    assert peer.say(header() + features(f"<starttls xmlns='{NS_TLS}'/>", DIALBACK)) == f"<starttls xmlns='{NS_TLS}'/>"


def test_direct_tls_skips_starttls() -> None:
    peer = Peer(tls_active=True, peer_certificate_valid_for=lambda domain: domain == REMOTE)
    peer.start()
    assert peer.say(header() + features(EXTERNAL, BIDI)) == "<bidi xmlns='urn:xmpp:bidi'/>" + AUTH_EXTERNAL


def test_tls_established_only_answers_proceed() -> None:
    peer = Peer()
    peer.start()
    with pytest.raises(ProtocolUsageError):
        peer.tls()


# -- SASL EXTERNAL (RFC 6120 §6, XEP-0178) ----------------------------------------------------
def test_external_is_chosen_when_offered() -> None:
    peer = after_tls()
    assert peer.say(header() + features(EXTERNAL, DIALBACK)) == AUTH_EXTERNAL
    assert peer.core.state is S.AUTHENTICATING and not peer.core.ready
    assert peer.say(SUCCESS) == OUR_HEADER
    assert peer.of_type(ev.PeerAuthenticated) == []  # not before the restarted stream's features
    assert peer.say(header("after-sasl") + features()) == ""
    assert peer.core.ready and peer.core.stream_id == "after-sasl"
    assert peer.of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="EXTERNAL", bidi=False)]


def test_external_needs_no_valid_peer_certificate() -> None:
    # EXTERNAL authenticates us to the peer; the peer's certificate matters for bidi only.
    peer = after_tls(valid_for=())
    assert peer.say(header() + features(EXTERNAL, BIDI)) == AUTH_EXTERNAL


def test_external_not_used_when_we_cannot() -> None:
    peer = after_tls(can_use_external=False)
    assert peer.say(header() + features(EXTERNAL, DIALBACK)) == db_result(KEY_D6)


def test_external_failure_falls_back_to_dialback() -> None:
    peer = after_tls()
    peer.say(header() + features(EXTERNAL, DIALBACK))
    assert peer.say(f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>") == db_result(KEY_D6)
    assert peer.core.state is S.DIALBACK
    peer.say(verdict("valid"))
    assert [e.method for e in peer.of_type(ev.PeerAuthenticated)] == ["dialback"]


def test_external_failure_without_dialback_gives_up() -> None:
    peer = after_tls(dialback=False)
    peer.say(header() + features(EXTERNAL, DIALBACK))
    out = peer.say(f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>")
    assert "EXTERNAL" in peer.of_type(ev.NegotiationFailed)[0].reason
    closed_with(peer, out, None)


def test_a_challenge_to_external_is_aborted() -> None:
    peer = after_tls()
    peer.say(header() + features(EXTERNAL, DIALBACK))
    assert peer.say(f"<challenge xmlns='{NS_SASL}'/>") == f"<abort xmlns='{NS_SASL}'/>"
    assert peer.say(f"<failure xmlns='{NS_SASL}'><aborted/></failure>") == db_result(KEY_D6)


# -- Server Dialback (XEP-0220) ----------------------------------------------------------------
def test_dialback_key_and_valid_result() -> None:
    peer = after_tls()
    assert peer.say(header() + features(DIALBACK)) == db_result(KEY_D6)
    assert peer.core.state is S.DIALBACK
    with pytest.raises(ProtocolUsageError):
        peer.core.send_stanza(Element("message", NS_CLIENT, {"from": LOCAL, "to": REMOTE}))
    assert peer.say(verdict("valid")) == ""
    assert peer.core.ready and peer.core.get_timer() == 600.0
    assert peer.of_type(ev.PeerAuthenticated) == [
        ev.PeerAuthenticated(local=LOCAL, remote=REMOTE, method="dialback", bidi=False)]


def test_dialback_by_namespace_declaration_alone() -> None:
    # XEP-0220 §2.4.1: the xmlns:db declaration announces (traditional) dialback.
    peer = after_tls()
    assert peer.say(header() + features()) == db_result(KEY_D6)


def test_dialback_by_feature_alone() -> None:
    peer = after_tls()
    assert peer.say(header(db=False) + features(DIALBACK)) == db_result(KEY_D6)


@pytest.mark.parametrize("options,offer", [
    ({}, header(db=False) + features()),                 # the peer knows no dialback
    ({"dialback": False}, header() + features(DIALBACK)),  # we do not use it
])
def test_no_way_to_authenticate(options: dict[str, Any], offer: str) -> None:
    peer = after_tls(**options)
    out = peer.say(offer)
    assert "dialback is not possible" in peer.of_type(ev.NegotiationFailed)[0].reason
    closed_with(peer, out, None)


def test_invalid_result_gives_up() -> None:
    peer = after_tls()
    peer.say(header() + features(DIALBACK))
    out = peer.say(verdict("invalid"))
    assert "invalid" in peer.of_type(ev.NegotiationFailed)[0].reason
    assert peer.of_type(ev.PeerAuthenticated) == []
    closed_with(peer, out, None)


def test_error_result_gives_up_with_its_condition() -> None:
    peer = after_tls()
    peer.say(header() + features(DIALBACK))
    inner = "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
    out = peer.say(verdict("error", inner=inner))
    assert peer.of_type(ev.NegotiationFailed) == [ev.NegotiationFailed(reason="dialback error: item-not-found")]
    closed_with(peer, out, None)


@pytest.mark.parametrize("stray", [
    f"<db:result from='{REMOTE}' to='other.example' type='valid'/>",
    f"<db:result from='evil.example' to='{LOCAL}' type='valid'/>",
])
def test_unsolicited_results_are_ignored(stray: str) -> None:
    peer = after_tls()
    peer.say(header() + features(DIALBACK))
    assert peer.say(stray) == "" and peer.core.state is S.DIALBACK
    assert peer.of_type(ev.PeerAuthenticated) == []


def test_a_valid_result_before_any_request_is_ignored() -> None:
    # XEP-0288 §4: never act on a verdict we did not ask for.
    peer = after_tls()
    peer.say(header())
    assert peer.say(verdict("valid")) == "" and not peer.core.ready


# -- require_valid_certificate ---------------------------------------------------------------
def test_require_valid_certificate_refuses_an_invalid_one() -> None:
    peer = after_tls(valid_for=("other.example",), require_valid_certificate=True)
    out = peer.say(header() + features(EXTERNAL, DIALBACK))
    assert peer.of_type(ev.NegotiationFailed)[0].reason == f"the peer's certificate is not valid for {REMOTE}"
    closed_with(peer, out, None)
    assert "auth" not in out and "db:result" not in out


def test_require_valid_certificate_uses_external() -> None:
    peer = after_tls(require_valid_certificate=True)
    assert peer.say(header() + features(EXTERNAL, DIALBACK)) == AUTH_EXTERNAL


def test_require_valid_certificate_never_uses_dialback() -> None:
    peer = after_tls(require_valid_certificate=True)
    out = peer.say(header() + features(EXTERNAL, DIALBACK))
    assert peer.say(f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>") == FOOTER
    assert "db:result" not in out and len(peer.of_type(ev.NegotiationFailed)) == 1


# -- XEP-0288 bidi ---------------------------------------------------------------------------
def test_bidi_requested_before_auth_with_a_valid_certificate() -> None:
    peer = external_ready(BIDI)
    assert peer.core.bidi_negotiated
    assert peer.of_type(ev.PeerAuthenticated)[0].bidi is True


def test_bidi_requested_before_the_dialback_key() -> None:
    peer = after_tls()
    assert peer.say(header() + features(DIALBACK, BIDI)) == "<bidi xmlns='urn:xmpp:bidi'/>" + db_result(KEY_D6)
    peer.say(verdict("valid"))
    assert peer.of_type(ev.PeerAuthenticated)[0] == ev.PeerAuthenticated(
        local=LOCAL, remote=REMOTE, method="dialback", bidi=True)


@pytest.mark.parametrize("valid_for,options,offer", [
    ((), {}, features(DIALBACK, BIDI)),                 # certificate not valid for the peer
    (("other.example",), {}, features(DIALBACK, BIDI)),
    ((REMOTE,), {"bidi": False}, features(DIALBACK, BIDI)),
    ((REMOTE,), {}, features(DIALBACK)),                # not offered
])
def test_no_bidi(valid_for: tuple[str, ...], options: dict[str, Any], offer: str) -> None:
    peer = after_tls(valid_for, **options)
    assert peer.say(header() + offer) == db_result(KEY_D6)
    peer.say(verdict("valid"))
    assert not peer.core.bidi_negotiated and peer.of_type(ev.PeerAuthenticated)[0].bidi is False


# -- verification requests (XEP-0220 §2.1.2) --------------------------------------------------
VERIFY_417 = db_verify("417GAF25", KEY_417)


def test_verification_waits_for_tls_and_features_then_follows_the_key() -> None:
    peer = Peer()
    peer.start()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    assert peer.read() == ""
    assert peer.say(header("plain1") + STARTTLS) == f"<starttls xmlns='{NS_TLS}'/>"
    peer.say(PROCEED)
    assert peer.tls() == OUR_HEADER
    assert peer.say(header() + features(DIALBACK)) == db_result(KEY_D6) + VERIFY_417


def test_verification_waits_for_external_to_finish() -> None:
    peer = after_tls()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    assert peer.say(header() + features(EXTERNAL, DIALBACK)) == AUTH_EXTERNAL  # a restart would lose it
    assert peer.say(SUCCESS) == OUR_HEADER
    assert peer.say(header("after-sasl") + features()) == VERIFY_417


def test_verification_is_sent_at_once_when_possible() -> None:
    peer = dialback_ready()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    assert peer.read() == VERIFY_417


@pytest.mark.parametrize("kind,valid", [("valid", True), ("invalid", False), ("error", None), ("odd", None)])
def test_verification_answers(kind: str, valid: bool | None) -> None:
    peer = dialback_ready()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    peer.read()
    assert peer.say(verdict(kind, name="verify", extra=" id='417GAF25'")) == ""
    assert peer.of_type(ev.DialbackVerifyResult) == [ev.DialbackVerifyResult(
        originating=REMOTE, receiving=LOCAL, stream_id="417GAF25", valid=valid)]
    # Answered once: the same answer again is unsolicited.
    peer.say(verdict(kind, name="verify", extra=" id='417GAF25'"))
    assert len(peer.of_type(ev.DialbackVerifyResult)) == 1


@pytest.mark.parametrize("stray", [
    f"<db:verify from='{REMOTE}' to='{LOCAL}' id='other' type='valid'/>",
    f"<db:verify from='evil.example' to='{LOCAL}' id='417GAF25' type='valid'/>",
    f"<db:verify from='{REMOTE}' to='other.example' id='417GAF25' type='valid'/>",
])
def test_unsolicited_verify_answers_are_dropped(stray: str) -> None:
    peer = dialback_ready()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    assert peer.read() == VERIFY_417
    assert peer.say(stray) == "" and peer.of_type(ev.DialbackVerifyResult) == []


@pytest.mark.parametrize("ending", [
    lambda peer: peer.say(FOOTER),
    lambda peer: peer.say(stream_error("system-shutdown")),
    lambda peer: peer.core.connection_lost(),
    lambda peer: peer.core.close(),
])
def test_pending_verifications_fail_when_the_stream_ends(ending: Any) -> None:
    peer = after_tls()
    peer.say(header() + features(DIALBACK))
    peer.core.request_verification(stream_id="sent", key=KEY_417)  # goes out with the key
    peer.say(verdict("valid", name="verify", extra=" id='sent'"))
    peer.core.request_verification(stream_id="asked", key=KEY_417)
    ending(peer)
    peer.read()
    results = peer.of_type(ev.DialbackVerifyResult)
    assert [(r.stream_id, r.valid) for r in results] == [("sent", True), ("asked", None)]
    assert isinstance(peer.events[-1], ev.StreamClosed)  # the failures come before the end
    with pytest.raises(ProtocolUsageError):
        peer.core.request_verification(stream_id="late", key=KEY_417)


def test_queued_verifications_fail_when_negotiation_fails() -> None:
    peer = Peer()
    peer.start()
    peer.core.request_verification(stream_id="q1", key=KEY_417)
    peer.say(header() + features(DIALBACK))  # TLS required, not offered
    assert [type(e) for e in peer.events] == [
        ev.FeaturesReceived, ev.NegotiationFailed, ev.DialbackVerifyResult, ev.StreamClosed]


def test_verifications_fail_when_the_peer_knows_no_dialback() -> None:
    peer = after_tls()
    peer.core.request_verification(stream_id="q1", key=KEY_417)
    peer.say(header(db=False) + features(EXTERNAL))
    assert peer.say(SUCCESS) == OUR_HEADER
    assert peer.say(header("after-sasl", db=False) + features()) == ""
    assert peer.of_type(ev.DialbackVerifyResult) == [ev.DialbackVerifyResult(
        originating=REMOTE, receiving=LOCAL, stream_id="q1", valid=None)]


def test_verifications_are_bounded() -> None:
    peer = Peer()
    for n in range(MAX_PENDING_VERIFICATIONS):
        peer.core.request_verification(stream_id=f"id{n}", key="k")
    assert peer.read() == "" and peer.of_type(ev.DialbackVerifyResult) == []
    peer.core.request_verification(stream_id="one-too-many", key="k")
    peer.read()
    assert [(r.stream_id, r.valid) for r in peer.of_type(ev.DialbackVerifyResult)] == [("one-too-many", None)]


def test_a_dialback_error_waits_for_pending_verify_answers() -> None:
    peer = after_tls()
    peer.core.request_verification(stream_id="417GAF25", key=KEY_417)
    peer.say(header() + features(DIALBACK))
    inner = "<error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
    # XEP-0220 §2.4: the error does not end the stream; the verify answer may still come.
    assert peer.say(verdict("error", inner=inner)) == ""
    assert peer.core.state is S.DRAINING and len(peer.of_type(ev.NegotiationFailed)) == 1
    out = peer.say(verdict("valid", name="verify", extra=" id='417GAF25'"))
    assert peer.of_type(ev.DialbackVerifyResult)[0].valid is True
    closed_with(peer, out, None)


# -- stanzas ---------------------------------------------------------------------------------
def chat(ns: str = NS_CLIENT, **attrs: str) -> Element:
    attrs = {"from": f"romeo@{LOCAL}/orchard", "to": f"juliet@{REMOTE}", "type": "chat"} | attrs
    message = Element("message", ns, attrs)
    message.add("body", text="Art thou not Romeo?")
    message.add("x", "jabber:x:oob").add("url", text="https://example/")
    return message


def test_send_stanza_writes_jabber_server() -> None:
    peer = dialback_ready()
    stanza = chat()
    peer.core.send_stanza(stanza)
    assert peer.read() == (f"<message from='romeo@{LOCAL}/orchard' to='juliet@{REMOTE}' type='chat'>"
                           "<body>Art thou not Romeo?</body><x xmlns='jabber:x:oob'><url>https://example/</url></x>"
                           "</message>")
    assert stanza == chat()  # the caller's copy is untouched


@pytest.mark.parametrize("attrs", [{"from": "romeo@elsewhere.example"}, {"to": "juliet@elsewhere.example"}, {"to": ""}])
def test_send_stanza_only_for_our_domain_pair(attrs: dict[str, str]) -> None:
    peer = dialback_ready()
    with pytest.raises(ProtocolUsageError):
        peer.core.send_stanza(chat(**attrs))
    assert peer.read() == ""


def test_send_stanza_before_ready_or_after_close() -> None:
    peer = Peer()
    with pytest.raises(ProtocolUsageError):
        peer.core.send_stanza(chat())
    peer = dialback_ready()
    peer.core.close()
    with pytest.raises(ProtocolUsageError):
        peer.core.send_stanza(chat())


def test_stanzas_from_the_peer_without_bidi_are_refused() -> None:
    peer = dialback_ready()
    incoming = f"<message from='juliet@{REMOTE}' to='romeo@{LOCAL}'><body>hi</body></message>"
    out = peer.say(incoming)
    closed_with(peer, out, "not-authorized")  # RFC 6120 §4.9.3.12
    assert peer.of_type(ev.StanzaReceived) == []


def test_stanzas_from_the_peer_with_bidi_come_out_as_jabber_client() -> None:
    peer = external_ready(BIDI)
    incoming = (f"<message from='juliet@{REMOTE}/balcony' to='romeo@{LOCAL}'><body>hi</body>"
                "<x xmlns='jabber:x:oob'/></message>")
    assert peer.say(incoming) == ""
    (received,) = peer.of_type(ev.StanzaReceived)
    expected = Element("message", NS_CLIENT, {"from": f"juliet@{REMOTE}/balcony", "to": f"romeo@{LOCAL}"})
    expected.add("body", text="hi")
    expected.add("x", "jabber:x:oob")
    assert received.stanza == expected


@pytest.mark.parametrize("stanza,condition", [
    (f"<iq from='juliet@evil.example' to='{LOCAL}' type='get' id='1'/>", "invalid-from"),
    (f"<iq from='{REMOTE}' to='romeo@other.example' type='get' id='1'/>", "host-unknown"),
    (f"<iq to='{LOCAL}' type='get' id='1'/>", "improper-addressing"),
    (f"<iq from='{REMOTE}' type='get' id='1'/>", "improper-addressing"),
    (f"<iq from='{REMOTE}' to='a@b@c' type='get' id='1'/>", "improper-addressing"),
    (f"<iq xmlns='jabber:client' from='{REMOTE}' to='{LOCAL}' type='get' id='1'/>", "invalid-namespace"),
    ("<foo/>", "unsupported-stanza-type"),
    (f"<db:result from='{REMOTE}' to='{LOCAL}'>key</db:result>", None),
])
def test_stanza_refusals_with_bidi(stanza: str, condition: str | None) -> None:
    peer = external_ready(BIDI)
    out = peer.say(stanza)
    if condition is None:
        # XEP-0288 §2.2 lets the peer try dialback back; we answer with a dialback error.
        assert out == (f"<db:result from='{LOCAL}' to='{REMOTE}' type='error'><error type='cancel'>"
                       "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>")
        assert peer.core.ready
    else:
        closed_with(peer, out, condition)
    assert peer.of_type(ev.StanzaReceived) == []


def test_dialback_requests_without_bidi_are_refused() -> None:
    peer = dialback_ready()
    closed_with(peer, peer.say(f"<db:verify from='{REMOTE}' to='{LOCAL}' id='x'>key</db:verify>"),
                "unsupported-stanza-type")


def test_stanzas_before_authentication_are_refused_even_with_bidi() -> None:
    peer = after_tls()
    peer.say(header() + features(DIALBACK, BIDI))
    assert peer.core.bidi_negotiated and peer.core.state is S.DIALBACK
    closed_with(peer, peer.say(f"<iq from='{REMOTE}' to='{LOCAL}' type='get' id='1'/>"), "not-authorized")


# -- timers and peer errors ----------------------------------------------------------------------
def test_auth_timeout() -> None:
    peer = Peer(now=100.0, auth_timeout=30.0)
    peer.start()
    assert peer.core.get_timer() == 130.0
    peer.core.handle_timer(129.0)
    assert peer.read() == "" and not peer.core.closed
    peer.core.handle_timer(130.0)
    out = peer.read()
    assert peer.of_type(ev.NegotiationFailed) == [ev.NegotiationFailed(reason="timeout")]
    closed_with(peer, out, "connection-timeout")
    assert peer.core.get_timer() is None


def test_idle_timeout_closes_cleanly_and_counts_traffic() -> None:
    peer = dialback_ready(idle_timeout=100.0)
    assert peer.core.get_timer() == 100.0
    peer.core.handle_timer(99.0)
    assert not peer.core.closed
    peer.core.send_stanza(chat())  # traffic without a clock reading
    peer.read()
    peer.core.handle_timer(100.0)
    assert not peer.core.closed and peer.core.get_timer() == 200.0
    peer.core.handle_timer(200.0)
    closed_with(peer, peer.read(), None)


def test_idle_timer_follows_input() -> None:
    peer = dialback_ready(idle_timeout=100.0)
    peer.core.request_verification(stream_id="v", key="k")
    peer.read()
    peer.now = 70.0
    peer.say(verdict("valid", name="verify", extra=" id='v'"))
    assert peer.core.get_timer() == 170.0


def test_no_idle_timer_when_disabled() -> None:
    assert dialback_ready(idle_timeout=0).core.get_timer() is None


def test_peer_stream_error() -> None:
    peer = after_tls()
    out = peer.say(header() + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                   "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></stream:error>")
    assert out == FOOTER
    assert peer.of_type(ev.StreamClosed) == [ev.StreamClosed(
        condition=StreamCondition.HOST_UNKNOWN, by_peer=True, text="no such host")]
    assert peer.core.state is S.CLOSED


def test_peer_closing_the_stream() -> None:
    peer = dialback_ready()
    assert peer.say(FOOTER) == FOOTER
    assert peer.of_type(ev.StreamClosed) == [ev.StreamClosed(by_peer=True)]


# -- robustness ----------------------------------------------------------------------------------
FRAGMENTS = [
    header(), header(db=False), header(version=None), STARTTLS, PROCEED, features(EXTERNAL, DIALBACK, BIDI),
    features(), SUCCESS, f"<failure xmlns='{NS_SASL}'/>", f"<challenge xmlns='{NS_SASL}'/>",
    verdict("valid"), verdict("invalid"), verdict("error"), verdict("valid", name="verify", extra=" id='v'"),
    f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>", f"<db:verify from='{REMOTE}' to='{LOCAL}'/>",
    f"<message from='{REMOTE}' to='{LOCAL}'/>", "<iq/>", f"<failure xmlns='{NS_TLS}'/>", FOOTER, " ", "<",
    "<stream:error/>", "<db:result/>", "<db:verify type='valid'/>",
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    peer = Peer()
    peer.start()
    peer.core.receive_data(data, now=1.0)
    peer.read()
    assert len(peer.of_type(ev.StreamClosed)) == (1 if peer.core.closed else 0)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12), st.sets(st.sampled_from(["tls", "verify", "direct"])),
       st.binary(max_size=40))
def test_random_peer_scripts_never_raise(script: list[str], steps: set[str], tail: bytes) -> None:
    direct = "direct" in steps
    peer = Peer(tls_active=direct, peer_certificate_valid_for=(lambda d: True) if direct else None)
    peer.start()
    if "verify" in steps:
        peer.core.request_verification(stream_id="v", key="k")
    for fragment in script:
        if peer.core.closed:
            break
        peer.say(fragment)
        if "tls" in steps and peer.core.state is S.TLS_HANDSHAKE:
            peer.tls()
    peer.core.receive_data(tail, now=2.0)
    peer.core.handle_timer(1000.0)
    peer.read()
    assert len(peer.of_type(ev.StreamClosed)) == (1 if peer.core.closed else 0)
    if "verify" in steps and peer.core.closed:
        assert len(peer.of_type(ev.DialbackVerifyResult)) == 1
