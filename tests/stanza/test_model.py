"""The stanza envelope helpers (RFC 6120 §8) and the error vocabulary (§4.9, §6.5, §8.3)."""

from __future__ import annotations

from xmppcore.stanza.errors import (
    Condition, ErrorType, SaslCondition, SaslFailure, StanzaError, StreamCondition, StreamError,
)
from xmppcore.stanza.model import IqType, MessageType, PresenceType, error_reply, iq_payload, result_reply
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_PING, NS_SASL, NS_STANZA_ERRORS, NS_STREAM_ERRORS
from xmppcore.xml.serializer import serialize


def _iq() -> Element:
    iq = Element("iq", NS_CLIENT, {"type": "get", "id": "p1", "from": "a@x/r", "to": "x"})
    iq.add("ping", NS_PING)
    return iq


def test_error_reply_swaps_addresses_keeps_id_and_echoes_the_payload() -> None:
    reply = error_reply(_iq(), StanzaError(Condition.SERVICE_UNAVAILABLE))
    assert reply.attrs == {"type": "error", "id": "p1", "from": "x", "to": "a@x/r"}
    assert [c.name for c in reply.elements()] == ["ping", "error"]
    error = reply.find("error", NS_CLIENT)
    assert error is not None and error.get("type") == "cancel"
    assert error.find("service-unavailable", NS_STANZA_ERRORS) is not None


def test_each_condition_has_the_customary_type_of_rfc_6120() -> None:
    assert StanzaError(Condition.BAD_REQUEST).type is ErrorType.MODIFY
    assert StanzaError(Condition.FORBIDDEN).type is ErrorType.AUTH
    assert StanzaError(Condition.RESOURCE_CONSTRAINT).type is ErrorType.WAIT
    assert StanzaError(Condition.ITEM_NOT_FOUND, type=ErrorType.MODIFY).type is ErrorType.MODIFY
    assert all(StanzaError(c).type in ErrorType for c in Condition)


def test_stanza_error_round_trips_through_its_element() -> None:
    err = StanzaError(Condition.NOT_ALLOWED, "read-only", by="x")
    back = StanzaError.from_element(err.to_element(NS_CLIENT))
    assert (back.condition, back.text, back.type, back.by) == (Condition.NOT_ALLOWED, "read-only", ErrorType.CANCEL, "x")


def test_unknown_error_conditions_read_as_undefined_condition() -> None:
    error = Element("error", NS_CLIENT, {"type": "bogus"})
    error.add("no-such-thing", NS_STANZA_ERRORS)
    assert StanzaError.from_element(error).condition is Condition.UNDEFINED_CONDITION


def test_result_reply_carries_the_payload() -> None:
    reply = result_reply(_iq(), Element("query", "jabber:iq:version"))
    assert serialize(reply, NS_CLIENT) == (
        "<iq type='result' to='a@x/r' from='x' id='p1'><query xmlns='jabber:iq:version'/></iq>")


def test_iq_payload_requires_exactly_one_child() -> None:
    assert iq_payload(_iq()) is not None
    two = _iq()
    two.add("ping", NS_PING)
    assert iq_payload(two) is None
    assert iq_payload(Element("iq", NS_CLIENT)) is None


def test_types_default_as_the_rfcs_say() -> None:
    assert MessageType.of(Element("message", NS_CLIENT)) is MessageType.NORMAL
    assert MessageType.of(Element("message", NS_CLIENT, {"type": "weird"})) is MessageType.NORMAL
    assert PresenceType.of(Element("presence", NS_CLIENT)) is PresenceType.AVAILABLE
    assert PresenceType.of(Element("presence", NS_CLIENT, {"type": "available"})) is None
    assert IqType("get") is IqType.GET


def test_stream_and_sasl_errors_serialise_in_their_namespaces() -> None:
    stream = serialize(StreamError(StreamCondition.POLICY_VIOLATION, "too big").to_element(), NS_CLIENT)
    assert stream == (f"<stream:error><policy-violation xmlns='{NS_STREAM_ERRORS}'/>"
                      f"<text xmlns='{NS_STREAM_ERRORS}'>too big</text></stream:error>")
    sasl = serialize(SaslFailure(SaslCondition.NOT_AUTHORIZED).to_element(), NS_CLIENT)
    assert sasl == f"<failure xmlns='{NS_SASL}'><not-authorized/></failure>"
