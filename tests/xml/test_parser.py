"""RFC 6120 §4 and §11: the incremental stream parser, fed bytes with no socket."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmppcore.stanza.errors import StreamCondition, StreamError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STREAMS, NS_XML
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamHeader, StreamParser

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' "
    "xml:lang='en' version='1.0'>"
).encode()

STANZAS = (
    "<message to='juliet@example.com' type='chat' id='a&amp;b'>"
    "<body>Wherefore art thou, Romeo? &lt;3 &#x1F339; — ünïcødé &quot;q&apos;</body>"
    "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>"
    "a <b>bold</b> move<br/>tail</body></html></message>\n  "
    "<presence><show>away</show><c xmlns='http://jabber.org/protocol/caps' ver='x='/></presence>"
    "\r\n\t<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    "<message><body><![CDATA[<not a tag> & ]]> kept</body>"
    "<x:y xmlns:x='urn:x' x:attr='1' xml:lang='de'/><z xmlns=''/></message>"
).encode()

STREAM = HEADER + STANZAS + b"</stream:stream>"


def feed_all(data: bytes, sizes: list[int] | None = None, **limits: int) -> list[ParseEvent]:
    """Feed ``data`` cut into pieces of the given sizes (the rest in one piece)."""
    parser = StreamParser(**limits)
    events: list[ParseEvent] = []
    pos = 0
    for size in sizes or []:
        events += parser.feed(data[pos:pos + size])
        pos += size
    events += parser.feed(data[pos:])
    return events


def refusal(data: bytes, sizes: list[int] | None = None, **limits: int) -> StreamCondition:
    with pytest.raises(StreamError) as info:
        feed_all(data, sizes, **limits)
    return info.value.condition


def bytewise(data: bytes) -> list[int]:
    return [1] * len(data)


# -- events --------------------------------------------------------------------------------

def test_header_stanzas_and_footer() -> None:
    events = feed_all(STREAM)
    header = events[0]
    assert header == StreamHeader(
        name="stream", ns=NS_STREAMS,
        attrs={"to": "example.com", "{%s}lang" % NS_XML: "en", "version": "1.0"},
        namespaces={"": NS_CLIENT, "stream": NS_STREAMS},
    )
    assert [(e.ns, e.name) for e in events[1:-1] if isinstance(e, Element)] == [
        (NS_CLIENT, "message"), (NS_CLIENT, "presence"), (NS_CLIENT, "iq"),
        (NS_STREAMS, "features"), (NS_CLIENT, "message"),
    ]
    assert len(events) == 7 and events[-1] == StreamFooter()


def test_stanza_content_namespaces_and_mixed_text() -> None:
    message = feed_all(STREAM)[1]
    assert isinstance(message, Element)
    assert message.attrs == {"to": "juliet@example.com", "type": "chat", "id": "a&b"}
    assert message.findtext("body") == "Wherefore art thou, Romeo? <3 \U0001F339 — ünïcødé \"q'"
    xhtml = message.find("html", "http://jabber.org/protocol/xhtml-im")
    assert xhtml is not None
    body = xhtml.find("body", "http://www.w3.org/1999/xhtml")
    assert body is not None
    assert body.children == [
        "a ", Element("b", "http://www.w3.org/1999/xhtml", text="bold"), " move",
        Element("br", "http://www.w3.org/1999/xhtml"), "tail",
    ]


def test_cdata_prefixes_and_undeclared_default() -> None:
    message = feed_all(STREAM)[5]
    assert isinstance(message, Element)
    assert message.findtext("body") == "<not a tag> &  kept"  # "]]>" ends the section
    assert message.find("y", "urn:x") == Element(
        "y", "urn:x", {"{urn:x}attr": "1", "{%s}lang" % NS_XML: "de"})
    assert message.find("z", "") == Element("z", "")


def test_whole_bytewise_and_fixed_splits_agree() -> None:
    whole = feed_all(STREAM)
    assert feed_all(STREAM, bytewise(STREAM)) == whole
    for size in (2, 3, 7, 64, 1000):
        assert feed_all(STREAM, [size] * (len(STREAM) // size)) == whole


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=80))
def test_random_splits_give_identical_events(sizes: list[int]) -> None:
    assert feed_all(STREAM, sizes) == feed_all(STREAM)


def test_whitespace_keepalives_are_ignored() -> None:
    parser = StreamParser(max_stanza_size=100)
    assert len(parser.feed(HEADER)) == 1
    for _ in range(20000):  # far more keepalive bytes than the stanza limit
        assert parser.feed(b" \r\n\t") == []
    assert parser.feed(b" " * 300_000) == []
    assert [e.name for e in parser.feed(b"<presence/>") if isinstance(e, Element)] == ["presence"]


@pytest.mark.parametrize("text", ["hello", "\u00a0", " x ", "&amp;", "<![CDATA[x]]>"])
def test_text_between_stanzas_is_bad_format(text: str) -> None:
    assert refusal(HEADER + b"<presence/>" + text.encode()) is StreamCondition.BAD_FORMAT


def test_whitespace_after_footer_is_ignored_anything_else_is_not_well_formed() -> None:
    parser = StreamParser()
    assert parser.feed(HEADER + b"</stream:stream>")[-1] == StreamFooter()
    assert parser.feed(b" \n\r\t ") == []
    with pytest.raises(StreamError) as info:
        parser.feed(b"<message/>")
    assert info.value.condition is StreamCondition.NOT_WELL_FORMED


def test_reset_expects_a_new_document_with_optional_declaration() -> None:
    parser = StreamParser()
    assert len(parser.feed(HEADER + b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")) == 2
    parser.reset()
    events = parser.feed(HEADER.replace(b"example.com", b"example.net") + b"<presence/>")
    assert isinstance(events[0], StreamHeader) and events[0].attrs["to"] == "example.net"
    assert events[1] == Element("presence", NS_CLIENT)
    parser.reset()
    assert isinstance(parser.feed(HEADER[HEADER.index(b"?>") + 2:])[0], StreamHeader)


def test_second_declaration_without_reset_is_refused() -> None:
    assert refusal(HEADER + HEADER) is StreamCondition.NOT_WELL_FORMED


@pytest.mark.parametrize("encoding", ["UTF-8", "utf-8"])
def test_utf8_declaration_accepted(encoding: str) -> None:
    header = HEADER.replace(b"version='1.0'?>", f"version='1.0' encoding='{encoding}'?>".encode())
    assert isinstance(feed_all(header)[0], StreamHeader)


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16", "US-ASCII"])
def test_other_declared_encodings_unsupported(encoding: str) -> None:
    header = HEADER.replace(b"version='1.0'?>", f"version='1.0' encoding='{encoding}'?>".encode())
    assert refusal(header) is StreamCondition.UNSUPPORTED_ENCODING


# -- restricted XML (RFC 6120 §11.1) -------------------------------------------------------

BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
)

RESTRICTED = {
    "billion laughs": BILLION_LAUGHS,
    "internal entity": b"<!DOCTYPE s [<!ENTITY x 'y'>]><s>&x;</s>",
    "external entity": b"<!DOCTYPE s [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><s>&e;</s>",
    "external subset": b"<?xml version='1.0'?><!DOCTYPE s SYSTEM 'http://example/x.dtd'><s/>",
    "bare doctype": b"<!DOCTYPE stream>",
    "undefined entity in text": HEADER + b"<message><body>&nbsp;</body></message>",
    "undefined entity in attr": HEADER + b"<message to='&foo;'/>",
    "undefined entity at depth 1": HEADER + b"&foo;",
    "comment before root": b"<!-- hi --><stream:stream/>",
    "comment at depth 1": HEADER + b"<!-- hi -->",
    "comment in stanza": HEADER + b"<message><!-- hi --></message>",
    "comment after footer": HEADER + b"</stream:stream><!-- hi -->",
    "pi before root": b"<?xml-stylesheet href='a'?><stream:stream/>",
    "pi at depth 1": HEADER + b"<presence/><?foo bar?>",
    "pi in stanza": HEADER + b"<message><?foo?></message>",
}


@pytest.mark.timeout(5)
@pytest.mark.parametrize("data", list(RESTRICTED.values()), ids=list(RESTRICTED))
def test_restricted_xml(data: bytes) -> None:
    assert refusal(data) is StreamCondition.RESTRICTED_XML
    assert refusal(data, bytewise(data)) is StreamCondition.RESTRICTED_XML


def test_predefined_entities_and_character_references_are_fine() -> None:
    data = HEADER + b"<m a='&lt;&gt;&amp;&quot;&apos;&#65;&#x42;'>&lt;&gt;&amp;&#x263A;</m>"
    stanza = feed_all(data)[1]
    assert stanza == Element("m", NS_CLIENT, {"a": "<>&\"'AB"}, text="<>&\u263a")


# -- ill-formed XML (RFC 6120 §11.3) -------------------------------------------------------

ILL_FORMED = {
    "mismatched tags": HEADER + b"<message></presence>",
    "mismatched root end": HEADER + b"</stream:foo>",
    "control char": HEADER + b"<message>\x01</message>",
    "bad char ref": HEADER + b"<message>&#0;</message>",
    "noncharacter ref": HEADER + b"<message>&#xFFFE;</message>",
    "invalid utf-8": HEADER + b"<message>\xff</message>",
    "overlong utf-8": HEADER + b"<message>\xc0\xaf</message>",
    "encoded surrogate": HEADER + b"<message>\xed\xa0\x80</message>",
    "truncated utf-8 then ascii": HEADER + b"<message>\xe2\x82<",
    "undefined prefix": HEADER + b"<foo:bar/>",
    "undefined attr prefix": HEADER + b"<message foo:x='1'/>",
    "duplicate attribute": HEADER + b"<message a='1' a='2'/>",
    "lt in attribute": HEADER + b"<message a='<'/>",
    "unquoted attribute": HEADER + b"<message a=1/>",
    "junk before root": b"hello<stream:stream/>",
    "second root": HEADER + b"</stream:stream><stream:stream>",
    "text after footer": HEADER + b"</stream:stream>x",
    "namespace uri with separator": HEADER + b"<a xmlns='urn:}x'/>",
    "declaration not at start": b" " + HEADER,
}


@pytest.mark.parametrize("data", list(ILL_FORMED.values()), ids=list(ILL_FORMED))
def test_ill_formed_xml(data: bytes) -> None:
    assert refusal(data) is StreamCondition.NOT_WELL_FORMED
    assert refusal(data, bytewise(data)) is StreamCondition.NOT_WELL_FORMED


def test_utf8_split_inside_a_character_is_fine() -> None:
    data = HEADER + "<m>\U0001F600é</m>".encode()
    for cut in range(len(HEADER), len(data)):
        assert feed_all(data, [cut])[1] == Element("m", NS_CLIENT, text="\U0001F600é")


def test_dead_stream_keeps_raising_the_same_error() -> None:
    parser = StreamParser()
    with pytest.raises(StreamError) as first:
        parser.feed(HEADER + b"<!-- no -->")
    for more in (b"", b"<presence/>", HEADER):
        with pytest.raises(StreamError) as again:
            parser.feed(more)
        assert (again.value.condition, again.value.text) == (first.value.condition,
                                                             first.value.text)
    parser.reset()
    with pytest.raises(StreamError):
        parser.feed(HEADER)


# -- limits (RFC 6120 §13.12) --------------------------------------------------------------

def _stanza_of(size: int, end_tag: bytes = b"</message>") -> bytes:
    head, tail = "<message to='a@b'><body>".encode(), b"</body>" + end_tag
    fill = size - len(head) - len(tail)
    return head + "é".encode() * (fill // 2) + b"x" * (fill % 2) + tail


@pytest.mark.parametrize("end_tag", [b"</message>", b"</message \n >"])
@pytest.mark.parametrize("split", ["whole", "bytewise", "chunks"])
def test_stanza_size_limit_is_exact(end_tag: bytes, split: str) -> None:
    stanza = _stanza_of(1000, end_tag)
    assert len(stanza) == 1000
    data = HEADER + b"  " + stanza + b"<presence/>"
    sizes = {"whole": None, "bytewise": bytewise(data), "chunks": [37] * 40}[split]
    assert len(feed_all(data, sizes, max_stanza_size=1000)) == 3
    assert refusal(data, sizes, max_stanza_size=999) is StreamCondition.POLICY_VIOLATION


def test_size_limit_message_says_so() -> None:
    with pytest.raises(StreamError) as info:
        feed_all(HEADER + _stanza_of(2000), max_stanza_size=1000)
    assert info.value.condition is StreamCondition.POLICY_VIOLATION
    assert info.value.text is not None and "1000 bytes" in info.value.text


MIB = 1024 * 1024


@pytest.mark.parametrize(("shape", "max_peak"), [
    ("text", 2 * MIB), ("start tag", 2 * MIB), ("attribute count", 2 * MIB),
    # A tree of tiny elements costs ~28 bytes of Python objects per input byte, so a stanza
    # just under the 256 KiB default may legitimately hold ~7 MiB: the bound follows the limit.
    ("children", 8 * MIB),
])
def test_ten_mib_stanza_in_one_feed_is_refused_with_bounded_memory(
    shape: str, max_peak: int
) -> None:
    body = {
        "text": b"<message><body>" + b"a" * (10 * MIB),
        "children": b"<message>" + b"<x>y</x>" * (10 * MIB // 8),
        "start tag": b"<message a='" + b"a" * (10 * MIB),
        "attribute count": b"<message " + b"".join(b"a%d='' " % i for i in range(MIB)),
    }[shape]
    data = HEADER + body
    parser = StreamParser(max_attributes=10**9)
    tracemalloc.start()
    try:
        with pytest.raises(StreamError) as info:
            parser.feed(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.condition is StreamCondition.POLICY_VIOLATION
    assert peak < max_peak, f"peak {peak} bytes while refusing a 10 MiB stanza"


def test_memory_follows_the_stanza_limit_not_the_input() -> None:
    data = HEADER + b"<message>" + b"<x>y</x>" * (10 * MIB // 8)
    parser = StreamParser(max_stanza_size=32 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(StreamError):
            parser.feed(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * MIB  # against ~7 MiB at the 256 KiB default


@pytest.mark.timeout(5)
def test_deep_nesting_is_refused_fast() -> None:
    data = HEADER + b"<a>" * 20_000
    assert refusal(data, max_depth=64) is StreamCondition.POLICY_VIOLATION


def test_depth_limit_boundary() -> None:
    ok = HEADER + b"<a>" * 64 + b"</a>" * 64
    assert len(feed_all(ok, max_depth=64)) == 2
    assert refusal(HEADER + b"<a>" * 65, max_depth=64) is StreamCondition.POLICY_VIOLATION


@pytest.mark.parametrize("on_root", [False, True])
def test_attribute_limit(on_root: bool) -> None:
    def tag(n: int) -> bytes:
        attrs = b"".join(b" a%d='v'" % i for i in range(n))
        if on_root:  # namespace declarations are not attributes
            return (b"<stream:stream xmlns='jabber:client' "
                    b"xmlns:stream='http://etherx.jabber.org/streams'" + attrs + b">")
        return HEADER + b"<message" + attrs + b"/>"

    assert feed_all(tag(30), max_attributes=30)
    assert refusal(tag(31), max_attributes=30) is StreamCondition.POLICY_VIOLATION


def test_header_size_limit() -> None:
    assert isinstance(feed_all(HEADER, max_header_size=len(HEADER))[0], StreamHeader)
    padded = HEADER.replace(b"version='1.0'>", b"version='1.0' pad='" + b"x" * 500 + b"'>")
    assert refusal(padded, max_header_size=400) is StreamCondition.POLICY_VIOLATION
    assert refusal(padded, bytewise(padded), max_header_size=400) is \
        StreamCondition.POLICY_VIOLATION
    ws = b"<?xml version='1.0'?>" + b"\n" * 100_000
    assert refusal(ws) is StreamCondition.POLICY_VIOLATION


def test_header_limit_does_not_count_stanzas_fed_with_it() -> None:
    data = HEADER + _stanza_of(5000)
    assert len(feed_all(data, max_header_size=len(HEADER))) == 2


# -- fuzzing: only events or a StreamError ---------------------------------------------------

TOKENS = [
    b"<message>", b"</message>", b"<a xmlns='urn:a'>", b"</a>", b"<b/>", b"text", b" ", b"\n",
    b"&amp;", b"&lt", b"&#x41;", b"&#0;", b"&bad;", b"<!--", b"-->", b"<?pi?>", b"<!DOCTYPE x>",
    b"<![CDATA[", b"]]>", b"'", b"\"", b"=", b"<x:y>", b"xmlns:x='u'", b"\xff", b"\xc3",
    b"\xa9", b"</stream:stream>", b"<stream:stream>", b"<?xml version='1.0'?>", b"\x00",
]


def _feed_fuzz(chunks: list[bytes]) -> None:
    parser = StreamParser(max_stanza_size=4096, max_depth=8, max_attributes=4)
    parser.feed(HEADER)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event, (Element, StreamFooter))
    except StreamError as exc:
        assert isinstance(exc.condition, StreamCondition)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_fuzz_arbitrary_bytes_after_header(chunks: list[bytes]) -> None:
    _feed_fuzz(chunks)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join), max_size=12))
def test_fuzz_xml_like_tokens_after_header(chunks: list[bytes]) -> None:
    _feed_fuzz(chunks)
