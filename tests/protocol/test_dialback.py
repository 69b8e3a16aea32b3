"""XEP-0185 dialback keys and the XEP-0220 elements, checked against the XEPs' own examples."""

from __future__ import annotations

import pytest

from xmppcore.protocol.dialback import (
    dialback_error_condition,
    dialback_key,
    keys_match,
    result_element,
    verify_answer,
    verify_element,
)
from xmppcore.stanza.errors import Condition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DIALBACK, NS_SERVER, NS_STANZA_ERRORS, NS_STREAMS
from xmppcore.xml.parser import StreamParser
from xmppcore.xml.serializer import serialize_dialback

STANZAS = f"xmlns='{NS_STANZA_ERRORS}'"


# -- keys (XEP-0185 §2) ------------------------------------------------------------------------
@pytest.mark.parametrize("secret,receiving,originating,stream_id,key", [
    # XEP-0185 §3: the worked example (SHA256(secret) = a7136eb1...).
    (b"s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F",
     "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"),
    # XEP-0220 §2.1.1 and §2.2.2, the keys of its examples.
    (b"s3cr3tf0rd14lb4ck", "montague.example", "capulet.example", "D60000229F",
     "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"),
    (b"d14lb4ck43v3r", "capulet.example", "montague.example", "417GAF25",
     "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"),
])
def test_keys_match_the_xep_examples(secret: bytes, receiving: str, originating: str, stream_id: str,
                                     key: str) -> None:
    assert dialback_key(secret, receiving=receiving, originating=originating, stream_id=stream_id) == key
    # The examples send the key with the whitespace of pretty-printed XML around it.
    assert keys_match(secret, f"\n        {key}\n      ", receiving=receiving, originating=originating,
                      stream_id=stream_id)


@pytest.mark.parametrize("change", [
    {"receiving": "capulet.example"}, {"originating": "rooms.capulet.example"}, {"stream_id": "D60000229G"},
])
def test_a_key_is_bound_to_both_domains_and_the_stream(change: dict[str, str]) -> None:
    args = {"receiving": "montague.example", "originating": "capulet.example", "stream_id": "D60000229F"}
    key = dialback_key(b"s3cr3tf0rd14lb4ck", **args)
    assert not keys_match(b"s3cr3tf0rd14lb4ck", key, **(args | change))
    assert not keys_match(b"another secret", key, **args)


@pytest.mark.parametrize("bogus", ["", "0" * 64, "é" * 64, "\ud800", "b4835385" * 100])
def test_bogus_keys_never_match_and_never_raise(bogus: str) -> None:
    assert not keys_match(b"s3cr3tf0rd14lb4ck", bogus, receiving="montague.example",
                          originating="capulet.example", stream_id="D60000229F")


def test_the_space_separator_keeps_concatenations_apart() -> None:
    # XEP-0185 §2 note 5: "example.inform.example.org" must not read two ways.
    one = dialback_key(b"s", receiving="example.info", originating="rm.example.org", stream_id="x")
    two = dialback_key(b"s", receiving="example.in", originating="form.example.org", stream_id="x")
    assert one != two


# -- elements (XEP-0220 §2.1, §2.5) -----------------------------------------------------------
def test_a_key_and_the_answers_as_written_on_a_stream() -> None:
    key = result_element(from_="capulet.example", to="montague.example", key="b4835385")
    assert serialize_dialback(key, NS_SERVER) == (
        "<db:result from='capulet.example' to='montague.example'>b4835385</db:result>")
    valid = result_element(from_="montague.example", to="capulet.example", type_="valid")
    assert serialize_dialback(valid, NS_SERVER) == (
        "<db:result from='montague.example' to='capulet.example' type='valid'/>")
    request = verify_element(from_="capulet.example", to="montague.example", stream_id="417GAF25", key="225cc5aa")
    assert serialize_dialback(request, NS_SERVER) == (
        "<db:verify from='capulet.example' to='montague.example' id='417GAF25'>225cc5aa</db:verify>")


@pytest.mark.parametrize("condition,kind", [
    (Condition.ITEM_NOT_FOUND, "cancel"),            # as in the examples of XEP-0220 §2.1 and §2.2
    (Condition.REMOTE_SERVER_NOT_FOUND, "cancel"),
    (Condition.REMOTE_SERVER_TIMEOUT, "wait"),
    (Condition.POLICY_VIOLATION, "modify"),
    (Condition.NOT_AUTHORIZED, "auth"),
    (Condition.FORBIDDEN, "auth"),
    (Condition.NOT_ACCEPTABLE, "modify"),
])
def test_dialback_errors_carry_the_rfc_type_of_their_condition(condition: Condition, kind: str) -> None:
    error = result_element(from_="montague.example", to="capulet.example", error=condition)
    assert serialize_dialback(error, NS_SERVER) == (
        f"<db:result from='montague.example' to='capulet.example' type='error'><error type='{kind}'>"
        f"<{condition.value} {STANZAS}/></error></db:result>")
    assert dialback_error_condition(error) is condition


def parse_on_a_stream(text: str) -> Element:
    parser = StreamParser()
    header = f"<stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DIALBACK}'>"
    items = parser.feed((header + text).encode())
    element = items[-1]
    assert isinstance(element, Element)
    return element


def test_the_error_condition_is_read_from_the_xep_example() -> None:
    # The dialback error of XEP-0220 §2.1.2, as a peer would send it.
    element = parse_on_a_stream(
        "<db:verify from='montague.example' id='417GAF25' to='capulet.example' type='error'>"
        f"<error type='cancel'><item-not-found {STANZAS}/></error></db:verify>")
    assert (element.ns, element.name) == (NS_DIALBACK, "verify")
    assert dialback_error_condition(element) is Condition.ITEM_NOT_FOUND


@pytest.mark.parametrize("inner", [
    "", "<error type='cancel'/>", f"<error type='cancel'><gone-fishing {STANZAS}/></error>",
    f"<error type='cancel'><text {STANZAS}>why</text></error>",
])
def test_unreadable_error_conditions_are_undefined(inner: str) -> None:
    element = parse_on_a_stream(f"<db:result from='a.example' to='b.example' type='error'>{inner}</db:result>")
    assert dialback_error_condition(element) is Condition.UNDEFINED_CONDITION


# -- the authoritative server's answer (XEP-0220 §2.2.2) ---------------------------------------------
def hosted(domain: str) -> bool:
    return domain == "montague.example"


def test_verify_answer_valid() -> None:
    key = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"
    answer = verify_answer(originating="montague.example", receiving="capulet.example", stream_id="417GAF25",
                           key=key, secret=b"d14lb4ck43v3r", is_hosted=hosted)
    assert serialize_dialback(answer, NS_SERVER) == (
        "<db:verify from='montague.example' to='capulet.example' id='417GAF25' type='valid'/>")


@pytest.mark.parametrize("secret,stream_id", [(b"d14lb4ck43v3r", "417GAF26"), (b"not the secret", "417GAF25")])
def test_verify_answer_invalid(secret: bytes, stream_id: str) -> None:
    key = "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d"
    answer = verify_answer(originating="montague.example", receiving="capulet.example", stream_id=stream_id,
                           key=key, secret=secret, is_hosted=hosted)
    assert answer.get("type") == "invalid" and answer.get("id") == stream_id


def test_verify_answer_for_a_domain_we_do_not_host() -> None:
    answer = verify_answer(originating="elsewhere.example", receiving="capulet.example", stream_id="417GAF25",
                           key="k", secret=b"d14lb4ck43v3r", is_hosted=hosted)
    assert serialize_dialback(answer, NS_SERVER) == (
        "<db:verify from='elsewhere.example' to='capulet.example' id='417GAF25' type='error'>"
        f"<error type='cancel'><item-not-found {STANZAS}/></error></db:verify>")
