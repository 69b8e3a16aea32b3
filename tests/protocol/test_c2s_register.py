"""XEP-0077 §3.1.1 and §8: in-band registration on the c2s server core, before authentication.

The core only recognises registration requests, hands them to the runtime as
``RegistrationRequested`` and writes the runtime's answer; these tests play the runtime by hand.
"""

from __future__ import annotations

from typing import Any

import pytest

from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import NS_REGISTER, NS_REGISTER_FEATURE, TRANSITIONS, C2SState
from xmppcore.stanza.errors import ProtocolUsageError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_SASL
from xmppcore.xml.parser import ParseEvent, StreamParser

from .pair import DOMAIN, HEADER, RawClient, elements, iq_error, make_server, plain_auth, stream_error

GET = f"<iq type='get' id='reg1'><query xmlns='{NS_REGISTER}'/></iq>"
SET = (f"<iq type='set' id='reg2'><query xmlns='{NS_REGISTER}'>"
       f"<username>bill</username><password>Calliope</password></query></iq>")


def registering(enabled: bool = True, **options: object) -> RawClient:
    server = make_server(in_band_registration=lambda domain: enabled and domain == DOMAIN, **options)
    return RawClient(server)


def requests(raw: RawClient) -> list[Element]:
    return [e.stanza for e in raw.answers.of_type(ev.RegistrationRequested)]


def answer(raw: RawClient, reply: str) -> list[ParseEvent]:
    """The runtime answers the pending request; returns what the core wrote."""
    raw.server.send_registration_reply(_parse(reply))
    while raw.answers.handle(raw.server):
        pass
    return raw.read()


def _parse(text: str) -> Element:
    (element,) = elements(StreamParser().feed((HEADER + text).encode()))
    return element


def test_the_feature_is_offered_after_tls_only() -> None:
    raw = registering()
    assert raw.open().find("register", NS_REGISTER_FEATURE) is None  # §10: not in the clear
    raw = registering()
    features = raw.negotiate_tls()
    assert features.find("register", NS_REGISTER_FEATURE) is not None
    assert features.find("mechanisms", NS_SASL) is not None  # alongside SASL, before it


@pytest.mark.parametrize("options", [
    {"enabled": False},                                           # the host has no register module
    {"enabled": True, "tls_available": False, "tls_required": False},  # no TLS: never offered
])
def test_no_feature_and_service_unavailable_when_not_offered(options: dict[str, Any]) -> None:
    raw = registering(**options)
    features = raw.open() if options.get("tls_available") is False else raw.negotiate_tls()
    assert features.find("register", NS_REGISTER_FEATURE) is None
    # XEP-0077 §3.1: a host without in-band registration "MUST return a service-unavailable error".
    assert iq_error(raw.send(GET)) == "service-unavailable"
    assert raw.server.state is C2SState.NEGOTIATING and not requests(raw)


def test_a_get_becomes_an_event_and_the_answer_goes_out() -> None:
    raw = registering()
    raw.negotiate_tls()
    assert raw.send(GET) == []
    assert raw.server.history[-1] is C2SState.REGISTRATION_PENDING
    assert requests(raw) == [_parse(GET)]
    out = answer(raw, f"<iq type='result' id='reg1'><query xmlns='{NS_REGISTER}'><username/><password/>"
                      f"</query></iq>")
    (reply,) = elements(out)
    assert reply.get("type") == "result" and reply.find("query", NS_REGISTER) is not None
    assert raw.server.state is C2SState.NEGOTIATING


@pytest.mark.parametrize("to", ["", f" to='{DOMAIN}'"])
def test_a_request_to_the_server_or_to_nobody_loses_any_from(to: str) -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(f"<iq type='set' id='r'{to} from='mallory@{DOMAIN}/x'><query xmlns='{NS_REGISTER}'/></iq>")
    (stanza,) = requests(raw)
    assert stanza.get("from") is None and stanza.get("id") == "r"


def test_register_then_authenticate_on_the_same_stream() -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(SET)
    raw.answers.accounts["bill"] = "Calliope"  # the runtime created the account
    assert [e.get("type") for e in elements(answer(raw, "<iq type='result' id='reg2'/>"))] == ["result"]
    assert [e.name for e in elements(raw.send(plain_auth("bill", "Calliope")))] == ["success"]
    assert raw.answers.of_type(ev.AuthSucceeded) == [ev.AuthSucceeded(username="bill", mechanism="PLAIN")]


def test_sasl_pipelined_behind_the_request_waits_for_the_answer() -> None:
    raw = registering()
    raw.negotiate_tls()
    assert raw.send(SET + plain_auth("bill", "Calliope")) == []
    assert not raw.answers.of_type(ev.CredentialsNeeded)  # held until the account exists
    raw.answers.accounts["bill"] = "Calliope"
    out = elements(answer(raw, "<iq type='result' id='reg2'/>"))
    assert [e.name for e in out] == ["iq", "success"]


def test_a_second_request_pipelined_behind_the_first_is_answered_in_turn() -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(GET + SET)
    assert [s.get("id") for s in requests(raw)] == ["reg1"]
    answer(raw, "<iq type='result' id='reg1'/>")
    assert [s.get("id") for s in requests(raw)] == ["reg1", "reg2"]
    assert raw.server.state is C2SState.REGISTRATION_PENDING


def test_too_much_pipelined_input_is_a_policy_violation() -> None:
    raw = registering()
    raw.negotiate_tls()
    out = raw.send(SET + "<presence/>" * 17)
    assert stream_error(out) == "policy-violation" and raw.server.state is C2SState.CLOSED


def test_a_held_stanza_is_refused_as_before_authentication() -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(SET + "<message to='romeo@example.org'/>")
    assert stream_error(answer(raw, "<iq type='result' id='reg2'/>")) == "not-authorized"  # RFC 6120 §4.9.3.12


@pytest.mark.parametrize("stanza", [
    f"<iq type='get' id='x' to='romeo@{DOMAIN}'><query xmlns='{NS_REGISTER}'/></iq>",  # not to the server
    f"<iq type='result' id='x'><query xmlns='{NS_REGISTER}'/></iq>",                   # not a request
    "<iq type='get' id='x'><query xmlns='jabber:iq:version'/></iq>",                  # not registration
])
def test_anything_else_before_authentication_is_still_not_authorized(stanza: str) -> None:
    raw = registering()
    raw.negotiate_tls()
    assert stream_error(raw.send(stanza)) == "not-authorized"


def test_the_reply_must_answer_the_request() -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(GET)
    with pytest.raises(ProtocolUsageError):
        raw.server.send_registration_reply(Element("iq", NS_CLIENT, {"type": "result", "id": "other"}))
    with pytest.raises(ProtocolUsageError):
        registering().server.send_registration_reply(Element("iq", NS_CLIENT, {"type": "result", "id": "reg1"}))


def test_the_pending_state_returns_only_to_negotiation() -> None:
    assert TRANSITIONS[C2SState.REGISTRATION_PENDING] == frozenset({C2SState.NEGOTIATING, C2SState.CLOSED})


def test_the_authentication_timeout_still_runs_while_registering() -> None:
    raw = registering(auth_timeout=10.0)
    raw.negotiate_tls()
    raw.send(GET)
    raw.server.handle_timer(10.0)
    assert stream_error(raw.read()) == "connection-timeout"


def test_an_answer_after_the_stream_closed_is_a_usage_error() -> None:
    raw = registering()
    raw.negotiate_tls()
    raw.send(GET + "</stream:stream>")
    assert raw.server.state is C2SState.CLOSED
    with pytest.raises(ProtocolUsageError):
        raw.server.send_registration_reply(_parse("<iq type='result' id='reg1'/>"))
