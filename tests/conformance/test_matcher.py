"""The conformance pattern matcher: what matches, what does not, and what the failure says."""

from __future__ import annotations

import pytest

from xmppcore.xml.namespaces import NS_CLIENT, NS_STANZA_ERRORS, NS_STREAMS

from .matcher import (
    Mismatch, PatternError, explain, match, match_captures, parse_fragment, parse_pattern, wildcard_equal,
)


def _why(expected: str, received: str, *, exact: bool = False) -> str | None:
    mismatch = match(parse_pattern(expected), parse_pattern(received), exact=exact)
    return None if mismatch is None else str(mismatch)


# -- parsing -----------------------------------------------------------------------------------
def test_patterns_default_to_jabber_client_and_know_the_stream_prefix() -> None:
    iq = parse_pattern("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (iq.ns, iq.name) == (NS_CLIENT, "iq")
    features = parse_pattern("<stream:features/>")
    assert (features.ns, features.name) == (NS_STREAMS, "features")


@pytest.mark.parametrize("text", ["<a>", "<a/><b/>", "", "<!-- no --><a/>", "text", "<a/></b>"])
def test_a_pattern_is_exactly_one_well_formed_element(text: str) -> None:
    with pytest.raises(PatternError):
        parse_pattern(text)


def test_a_fragment_is_a_sequence_of_elements() -> None:
    assert [e.name for e in parse_fragment("<presence/> <message/>")] == ["presence", "message"]
    with pytest.raises(PatternError):
        parse_fragment("<presence/>trailing text")


# -- what matches ------------------------------------------------------------------------------
def test_equal_elements_match() -> None:
    assert _why("<iq type='result' id='a'/>", "<iq type='result' id='a'/>") is None


def test_extra_attributes_and_children_are_allowed() -> None:
    assert _why("<iq type='result'/>",
                "<iq type='result' id='a' from='x' xml:lang='en'><query xmlns='q'/></iq>") is None


def test_star_is_any_value_and_a_glob_inside_a_value() -> None:
    assert _why("<iq id='*'/>", "<iq id='whatever-123'/>") is None
    assert _why("<iq to='alice@localhost/*'/>", "<iq to='alice@localhost/phone-1'/>") is None
    assert _why("<iq to='alice@localhost/*'/>", "<iq to='bob@localhost/phone'/>") == (
        "at iq: attribute to: expected 'alice@localhost/*', got 'bob@localhost/phone'")


def test_glob_escapes_everything_but_the_star() -> None:
    assert wildcard_equal("a.b", "a.b")
    assert not wildcard_equal("a.b", "axb")
    assert not wildcard_equal("a[b]", "ab")
    assert wildcard_equal("*", "")


def test_children_match_in_any_order() -> None:
    expected = "<error type='cancel'><text xmlns='s'/><item-not-found xmlns='s'/></error>"
    assert _why(expected, "<error type='cancel'><item-not-found xmlns='s'/><text xmlns='s'>t</text></error>") is None


def test_each_expected_child_needs_its_own_received_child() -> None:
    two = "<query xmlns='q'><item jid='*'/><item jid='*'/></query>"
    assert _why(two, "<query xmlns='q'><item jid='a'/><item jid='b'/></query>") is None
    assert _why(two, "<query xmlns='q'><item jid='a'/></query>") is not None


def test_children_are_assigned_with_backtracking() -> None:
    # The wildcard item must not take the only child the specific one can match.
    expected = "<query xmlns='q'><item jid='*'/><item jid='b'/></query>"
    assert _why(expected, "<query xmlns='q'><item jid='b'/><item jid='a'/></query>") is None


def test_text_is_compared_stripped_and_only_when_expected() -> None:
    assert _why("<body>hello</body>", "<body>  hello\n</body>") is None
    assert _why("<body/>", "<body>anything</body>") is None
    assert _why("<body>*</body>", "<body>anything</body>") is None
    assert _why("<body>hello</body>", "<body>bye</body>") == "at body: text: expected 'hello', got 'bye'"


def test_pretty_printed_patterns_match_compact_elements() -> None:
    expected = """
        <iq type='error'>
          <error type='cancel'>
            <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
          </error>
        </iq>"""
    received = (f"<iq type='error' id='1'><error type='cancel'><service-unavailable xmlns='{NS_STANZA_ERRORS}'/>"
                "</error></iq>")
    assert _why(expected, received) is None


# -- captures ----------------------------------------------------------------------------------
def _captures(expected: str, received: str, *, exact: bool = False) -> dict[str, str] | str:
    result = match_captures(parse_pattern(expected), parse_pattern(received), exact=exact)
    return str(result) if isinstance(result, Mismatch) else result


def test_a_capture_matches_any_value_and_returns_it() -> None:
    assert _captures("<query xmlns='jabber:iq:roster' ver='{=ver}'/>",
                     "<query xmlns='jabber:iq:roster' ver='v-17'/>") == {"ver": "v-17"}
    assert _captures("<query xmlns='q' ver='{=ver}'/>", "<query xmlns='q' ver=''/>") == {"ver": ""}
    assert _captures("<iq type='result'/>", "<iq type='result'/>") == {}


def test_a_capture_may_sit_inside_a_value_with_wildcards_and_in_text() -> None:
    assert _captures("<iq to='alice@localhost/{=res}' id='*-{=n}'/>",
                     "<iq to='alice@localhost/phone-1' id='a-b-7'/>") == {"res": "phone-1", "n": "7"}
    assert _captures("<body>code: {=code}</body>", "<body> code: 42 </body>") == {"code": "42"}


def test_a_capture_still_needs_the_attribute_and_the_rest_of_the_value() -> None:
    assert _captures("<query xmlns='q' ver='{=ver}'/>", "<query xmlns='q'/>") == (
        "at query: missing attribute ver='{=ver}'")
    assert _captures("<iq to='alice@localhost/{=res}'/>", "<iq to='bob@localhost/phone'/>") == (
        "at iq: attribute to: expected 'alice@localhost/{=res}', got 'bob@localhost/phone'")


def test_captures_come_from_children_at_any_depth() -> None:
    expected = "<iq><query xmlns='q' ver='{=ver}'><item jid='{=contact}'/></query></iq>"
    received = "<iq><query xmlns='q' ver='3'><item jid='nurse@localhost'/></query></iq>"
    assert _captures(expected, received) == {"ver": "3", "contact": "nurse@localhost"}


def test_a_name_captured_twice_in_one_pattern_must_stand_for_the_same_value() -> None:
    same = "<iq id='{=x}'><query xmlns='q' ver='{=x}'/></iq>"
    assert _captures(same, "<iq id='7'><query xmlns='q' ver='7'/></iq>") == {"x": "7"}
    assert _captures(same, "<iq id='7'><query xmlns='q' ver='8'/></iq>") == (
        "at iq/query: attribute ver: expected '{=x}', got '8' (captured earlier in this pattern: {=x} = '7')")
    assert _captures("<a v='{=x}-{=x}'/>", "<a v='1-1'/>") == {"x": "1"}
    assert not isinstance(_captures("<a v='{=x}-{=x}'/>", "<a v='1-2'/>"), dict)


def test_children_are_assigned_so_that_captures_agree() -> None:
    # The first <item> the backtracking tries for {=x} is 'a', which the second child cannot
    # match; the assignment that works captures 'b' in both.
    expected = "<q xmlns='q'><item jid='{=x}'/><other jid='{=x}'/></q>"
    assert _captures(expected, "<q xmlns='q'><item jid='a'/><item jid='b'/><other jid='b'/></q>") == {"x": "b"}
    why = _captures(expected, "<q xmlns='q'><item jid='a'/><other jid='b'/></q>")
    assert isinstance(why, str) and "with the same value for each capture" in why


def test_match_ignores_captures_but_not_their_constraints() -> None:
    assert match(parse_pattern("<a v='{=x}'/>"), parse_pattern("<a v='1'/>")) is None
    assert match(parse_pattern("<a v='{=x}' w='{=x}'/>"), parse_pattern("<a v='1' w='2'/>")) is not None


# -- what does not, and why ---------------------------------------------------------------------
def test_name_and_namespace_must_be_equal() -> None:
    assert _why("<iq/>", "<message/>") == (
        "at iq: expected <iq xmlns='jabber:client'>, got <message xmlns='jabber:client'>")
    assert _why("<ping xmlns='urn:xmpp:ping'/>", "<ping xmlns='urn:xmpp:pong'/>") is not None


def test_a_missing_attribute_is_named() -> None:
    assert _why("<iq type='result' id='a'/>", "<iq type='result'/>") == "at iq: missing attribute id='a'"


def test_a_missing_child_lists_what_was_there() -> None:
    why = _why(f"<error><item-not-found xmlns='{NS_STANZA_ERRORS}'/></error>",
               f"<error><service-unavailable xmlns='{NS_STANZA_ERRORS}'/></error>")
    assert why == (f"at error: missing child <item-not-found xmlns='{NS_STANZA_ERRORS}'> "
                   f"(children: <service-unavailable xmlns='{NS_STANZA_ERRORS}'>)")


def test_a_nested_mismatch_names_the_path() -> None:
    why = _why("<iq><query xmlns='q'><item jid='a'/></query></iq>",
               "<iq><query xmlns='q'><item jid='b'/></query></iq>")
    assert why == "at iq/query/item: attribute jid: expected 'a', got 'b'"


def test_several_candidates_are_summarised() -> None:
    why = _why("<mechanisms xmlns='m'><mechanism>SCRAM-SHA-1</mechanism></mechanisms>",
               "<mechanisms xmlns='m'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms>")
    assert why is not None
    assert why.startswith("at mechanisms: none of the 2 <mechanism> children matches")
    assert "SCRAM-SHA-1" in why


def test_exact_refuses_extra_children_at_every_level() -> None:
    assert _why("<iq type='result'/>", "<iq type='result'><query xmlns='q'/></iq>", exact=True) == (
        "at iq: exact: expected 0 child element(s), got 1: <query xmlns='q'>")
    nested = "<iq><query xmlns='q'/></iq>"
    assert _why(nested, "<iq><query xmlns='q'><item/></query></iq>", exact=True) is not None
    assert _why(nested, "<iq><query xmlns='q'><item/></query></iq>") is None


def test_explain_shows_expected_got_and_why() -> None:
    expected, received = parse_pattern("<iq type='result' id='p1'/>"), parse_pattern("<iq type='error' id='p1'/>")
    mismatch = match(expected, received)
    assert mismatch is not None
    assert explain(expected, received, mismatch).splitlines() == [
        "expected: <iq type='result' id='p1'/>",
        "     got: <iq type='error' id='p1'/>",
        "     why: at iq: attribute type: expected 'result', got 'error'",
    ]
