"""RFC 6120 §4: a stream parser that gives back its expat parser between stanzas (``release``)
parses what follows exactly as one that never did — events, namespaces, limits and errors."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppcore.stanza.errors import StreamCondition, StreamError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_STREAMS
from xmppcore.xml.parser import ParseEvent, StreamFooter, StreamParser

from .test_parser import HEADER, STANZAS, STREAM, _stanza_of


def feed_releasing(data: bytes, sizes: list[int], **limits: int) -> list[ParseEvent]:
    """Like ``feed_all``, releasing the expat parser after every piece where it can be."""
    parser = StreamParser(**limits)
    events: list[ParseEvent] = []
    pos = 0
    for size in [*sizes, len(data)]:
        events += parser.feed(data[pos:pos + size])
        pos += size
        parser.release()
    return events


def test_released_between_stanzas_resumes_with_the_same_events() -> None:
    pieces = [len(HEADER) + 1] + [7] * (len(STANZAS) // 7)
    assert feed_releasing(STREAM, pieces) == StreamParser().feed(STREAM)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_releasing_at_random_splits_changes_nothing(sizes: list[int]) -> None:
    assert feed_releasing(STREAM, sizes) == StreamParser().feed(STREAM)


def test_releasable_only_between_stanzas_with_nothing_pending() -> None:
    parser = StreamParser()
    assert not parser.releasable  # before the header
    parser.feed(HEADER + b"<presence/>")
    assert parser.releasable
    parser.feed(b"<message><body>half")
    assert not parser.releasable  # inside a stanza
    parser.feed(b"</body></message><iq")
    assert not parser.releasable  # a start tag not complete yet
    parser.feed(b" type='get' id='1'/> \n")
    assert parser.releasable  # a whitespace keepalive is nothing pending
    parser.feed(b"</stream:stream>")
    assert not parser.releasable  # after the footer a new root is not allowed


def test_release_frees_the_expat_parser_memory() -> None:
    tracemalloc.start()  # it sees expat's allocations: pyexpat gives expat PyObject_Malloc
    try:
        parser = StreamParser()
        parser.feed(HEADER + STANZAS)
        before = tracemalloc.get_traced_memory()[0]
        parser.release()
        freed = before - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert freed > 4096  # expat's tables and buffers


def test_a_released_parser_is_not_released_again_and_resumes_once() -> None:
    parser = StreamParser()
    parser.feed(HEADER + b"<presence/>")
    parser.release()
    assert not parser.releasable
    assert [e.name for e in parser.feed(b"<iq type='get' id='1'/>") if isinstance(e, Element)] == ["iq"]
    assert parser.releasable


@pytest.mark.parametrize("root", [
    b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client'>",
    b"<stream xmlns='http://etherx.jabber.org/streams' xmlns:c='jabber:client'>",
    b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='urn:odd&amp;&apos;&lt;&#9;&#10;x'>",
])
def test_the_root_name_and_namespaces_survive_a_release(root: bytes) -> None:
    prefix = b"s:" if root.startswith(b"<s:") else b""
    tail = (b"<" + prefix + b"error><x/></" + prefix + b"error><c:iq xmlns:c='jabber:client' id='1'/>"
            + b"<message/></" + root[1:root.index(b" ")] + b">")
    reference = StreamParser().feed(root + b"<presence/>" + tail)
    parser = StreamParser()
    events = parser.feed(root + b"<presence/>")
    parser.release()
    events += parser.feed(tail)
    assert events == reference
    assert isinstance(events[-1], StreamFooter)
    error = events[2]  # after the header and <presence/>
    assert isinstance(error, Element) and error.ns == NS_STREAMS


def test_a_mismatched_footer_after_a_release_is_still_not_well_formed() -> None:
    parser = StreamParser()
    parser.feed(HEADER + b"<presence/>")
    parser.release()
    with pytest.raises(StreamError) as info:
        parser.feed(b"</stream:other>")
    assert info.value.condition is StreamCondition.NOT_WELL_FORMED


def test_a_header_split_across_reads_is_never_released() -> None:
    parser = StreamParser()
    parser.feed(HEADER[:30])  # inside the root's name
    parser.feed(HEADER[30:] + b"<presence/>")
    assert not parser.releasable  # the root's name is gone: no way to resume
    assert [e.name for e in parser.feed(b"<iq/>") if isinstance(e, Element)] == ["iq"]


def test_limits_after_a_release_are_exact() -> None:
    for limit, refused in ((1000, False), (999, True)):
        parser = StreamParser(max_stanza_size=limit)
        parser.feed(HEADER + b"<presence/>")
        parser.release()
        if refused:
            with pytest.raises(StreamError) as info:
                parser.feed(b" " + _stanza_of(1000))
            assert info.value.condition is StreamCondition.POLICY_VIOLATION
        else:
            assert len(parser.feed(b" " + _stanza_of(1000))) == 1


@pytest.mark.parametrize(("data", "condition"), [
    (b"<!-- hi -->", StreamCondition.RESTRICTED_XML),
    (b"<?pi x?>", StreamCondition.RESTRICTED_XML),
    (b"<message>&ent;</message>", StreamCondition.RESTRICTED_XML),
    (b"text", StreamCondition.BAD_FORMAT),
    (b"<a><b></a>", StreamCondition.NOT_WELL_FORMED),
])
def test_refusals_after_a_release(data: bytes, condition: StreamCondition) -> None:
    parser = StreamParser()
    parser.feed(HEADER + b"<presence/>")
    parser.release()
    with pytest.raises(StreamError) as info:
        parser.feed(data)
    assert info.value.condition is condition
    with pytest.raises(StreamError):
        parser.feed(b"<presence/>")  # a dead stream stays dead


def test_reset_after_a_release_expects_a_new_document() -> None:
    parser = StreamParser()
    parser.feed(HEADER + b"<presence/>")
    parser.release()
    parser.reset()
    events = parser.feed(HEADER + b"<presence/>")
    assert len(events) == 2 and isinstance(events[1], Element)
