"""RFC 6120 §11: writing stanzas and stream headers, and reading them back unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STREAM_ERRORS, NS_STREAMS, NS_XML
from xmppcore.xml.parser import ParseEvent, StreamHeader, StreamParser
from xmppcore.xml.serializer import (
    STREAM_FOOTER, escape_attr, escape_text, serialize, stream_header,
)

LANG = "{%s}lang" % NS_XML
FORBIDDEN = ["\x00", "\x08", "\x0b", "\x0c", "\x1f", "\ud800", "\udfff", "\ufffe", "\uffff"]


def test_escape_text() -> None:
    assert escape_text("a & b < c > d ]]> 'q' \"q\"\r\n\t") == (
        "a &amp; b &lt; c &gt; d ]]&gt; 'q' \"q\"&#13;\n\t"
    )


def test_escape_attr() -> None:
    assert escape_attr("a&b<c>d\"e'f\ng\rh\ti") == (
        "a&amp;b&lt;c&gt;d&quot;e&apos;f&#10;g&#13;h&#9;i"
    )


@pytest.mark.parametrize("char", FORBIDDEN)
def test_characters_xml_cannot_carry_are_refused(char: str) -> None:
    for escape in (escape_text, escape_attr):
        with pytest.raises(ValueError):
            escape(f"ok{char}ok")
    with pytest.raises(ValueError):
        serialize(Element("body", NS_CLIENT, text=char))
    with pytest.raises(ValueError):
        serialize(Element("body", NS_CLIENT, {"a": char}))
    with pytest.raises(ValueError):
        serialize(Element("body", "urn:" + char))


def test_allowed_edge_characters_pass() -> None:
    s = "\t\n\r \ud7ff\ue000\ufffd\U00010000\U0010ffff"
    assert escape_text(s) == "\t\n&#13; \ud7ff\ue000\ufffd\U00010000\U0010ffff"


def test_default_namespace_omitted_when_inherited() -> None:
    message = Element("message", NS_CLIENT, {"to": "romeo@example.net", "type": "chat"})
    message.add("body", text="hi")
    message.add("active", "http://jabber.org/protocol/chatstates")
    assert serialize(message, NS_CLIENT) == (
        "<message to='romeo@example.net' type='chat'><body>hi</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    assert serialize(message).startswith("<message xmlns='jabber:client' to=")


def test_empty_namespace_under_a_default_is_undeclared() -> None:
    parent = Element("x", "urn:a")
    parent.add("y", "")
    assert serialize(parent) == "<x xmlns='urn:a'><y xmlns=''/></x>"
    assert serialize(Element("y", "")) == "<y/>"


def test_stream_namespace_uses_the_stream_prefix_and_keeps_the_default() -> None:
    features = Element("features", NS_STREAMS)
    features.add("bind", "urn:ietf:params:xml:ns:xmpp-bind")
    features.add("ver", NS_CLIENT)
    assert serialize(features, NS_CLIENT) == (
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ver/>"
        "</stream:features>"
    )
    error = Element("error", NS_STREAMS)
    error.add("conflict", NS_STREAM_ERRORS)
    assert serialize(error, NS_CLIENT) == (
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    )


def test_qualified_attributes() -> None:
    el = Element("x", NS_CLIENT, {LANG: "en", "{urn:a}p": "1", "{urn:b}q": "2", "{urn:a}r": "3"})
    assert serialize(el, NS_CLIENT) == (
        "<x xml:lang='en' xmlns:a0='urn:a' a0:p='1' xmlns:a1='urn:b' a1:q='2' a0:r='3'/>"
    )


def test_mixed_content_in_order() -> None:
    el = Element("p", "urn:x", children=["a ", Element("b", "urn:x", text="<b>"), " & c"])
    assert serialize(el, "urn:x") == "<p>a <b>&lt;b&gt;</b> &amp; c</p>"


@pytest.mark.parametrize("name", ["", "a b", "1a", "a:b", "<x", "a>", "-x", "x\x00"])
def test_bad_element_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        serialize(Element(name, NS_CLIENT))


@pytest.mark.parametrize("key", ["xmlns", "a:b", "a b", "{urn:a}", "{}x", "{urn:a", "1"])
def test_bad_attribute_names_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        serialize(Element("x", NS_CLIENT, {key: "v"}))


def test_stream_header_and_footer() -> None:
    assert stream_header(
        content_ns=NS_CLIENT,
        attrs={"from": "example.com", "id": "++TR84Sm6A3hnt3Q065SnAbbk3Y=", LANG: "en",
               "version": "1.0"},
    ) == (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' from='example.com' "
        "id='++TR84Sm6A3hnt3Q065SnAbbk3Y=' xml:lang='en' version='1.0'>"
    )
    assert stream_header(content_ns="jabber:server", attrs={}, xml_declaration=False) == (
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    assert STREAM_FOOTER == "</stream:stream>"


# -- round trip: parse(serialize(x)) == x --------------------------------------------------

_TEXT_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r&<>'\"]")
_texts = st.text(_TEXT_CHARS, min_size=1, max_size=12)
_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_.\-]{0,6}", fullmatch=True) | st.sampled_from(
    ["body", "é", "x-y", "ñame"]
)
_namespaces = st.sampled_from(["", NS_CLIENT, "urn:a", "urn:b", NS_STREAMS, "http://x/?a&b"])
_attr_keys = _names.filter(lambda k: k != "xmlns") | st.sampled_from(
    [LANG, "{urn:q}k", "{urn:r}k", "{http://x/?a&b}z"]
)


def _normalised(children: list[Element | str]) -> list[Element | str]:
    """What a parser can give back: no empty text, no two texts in a row."""
    out: list[Element | str] = []
    for child in children:
        if isinstance(child, str) and out and isinstance(out[-1], str):
            out[-1] += child
        elif child != "":
            out.append(child)
    return out


_elements = st.recursive(
    st.builds(lambda n, ns, a: Element(n, ns, a), _names, _namespaces,
              st.dictionaries(_attr_keys, st.text(_TEXT_CHARS, max_size=8), max_size=3)),
    lambda kids: st.builds(
        lambda n, ns, a, c: Element(n, ns, a, _normalised(c)),
        _names, _namespaces,
        st.dictionaries(_attr_keys, st.text(_TEXT_CHARS, max_size=8), max_size=3),
        st.lists(kids | _texts, max_size=5),
    ),
    max_leaves=12,
)


def _parse_stanzas(text: str) -> list[ParseEvent]:
    return StreamParser().feed(text.encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(_elements, min_size=1, max_size=4), st.sampled_from(["", "en", "de-CH"]))
def test_round_trip(stanzas: list[Element], lang: str) -> None:
    attrs = {"to": "example.com", "version": "1.0"} | ({LANG: lang} if lang else {})
    wire = stream_header(content_ns=NS_CLIENT, attrs=attrs)
    wire += "\n".join(serialize(s, NS_CLIENT) for s in stanzas) + STREAM_FOOTER
    events = _parse_stanzas(wire)
    header = events[0]
    assert isinstance(header, StreamHeader) and header.attrs == attrs
    assert header.ns == NS_STREAMS and header.namespaces[""] == NS_CLIENT
    assert events[1:-1] == stanzas


@settings(max_examples=100, deadline=None)
@given(_elements)
def test_serialize_is_independent_of_the_in_scope_default(el: Element) -> None:
    inner = Element("wrap", "urn:outer", children=[el])
    wire = stream_header(content_ns="urn:outer", attrs={}) + serialize(inner, "urn:outer")
    assert _parse_stanzas(wire + STREAM_FOOTER)[1] == inner
