"""RFC 6120 §4.1, §8: matching what a server sent against an XML pattern from a scenario.

A pattern is ordinary XML whose default namespace is ``jabber:client`` and where the
``stream:`` prefix is already bound to ``http://etherx.jabber.org/streams`` (RFC 6120 §4.8),
so a scenario can write ``<iq type='result' id='p1'/>`` or ``<stream:features/>`` as is.

An expected element matches a received one when
- name and namespace are equal;
- every expected attribute is present with an equal value, where ``*`` in the expected value
  stands for any run of characters (``*`` alone: any value; ``{alice}/*``: any resource);
  attributes the pattern does not name are allowed;
- every expected child element matches a distinct received child, in any order, recursively;
  extra received children are allowed unless matching is ``exact``;
- the expected text, when there is any after stripping whitespace, equals the received text
  (stripped), with the same ``*`` wildcard.

:func:`match` returns ``None`` or a :class:`Mismatch` saying where and why, and
:func:`explain` turns one into the "expected / got / why" text a failing scenario shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from xmppcore.stanza.errors import StreamError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STREAMS
from xmppcore.xml.parser import StreamParser
from xmppcore.xml.serializer import serialize

__all__ = [
    "PatternError", "Mismatch", "parse_fragment", "parse_pattern", "match", "explain", "render", "wildcard_equal",
]

WILDCARD = "*"

_WRAPPER_OPEN = f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode()
_WRAPPER_CLOSE = b"</stream:stream>"


class PatternError(ValueError):
    """A pattern is not one well-formed XML element."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why an expected element does not match: ``path`` is where (``iq/error``), ``reason`` what."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"at {self.path}: {self.reason}"


def parse_fragment(xml: str) -> list[Element]:
    """Parse a sequence of complete elements, as a client would send them on its stream.

    Placeholders must already be substituted.  The text is read by the same parser the
    server's input goes through, so what RFC 6120 §11 forbids (comments, DTDs) is refused here.
    """
    parser = StreamParser(max_stanza_size=1 << 20)
    try:
        events = parser.feed(_WRAPPER_OPEN + xml.strip().encode() + _WRAPPER_CLOSE)
    except StreamError as exc:
        raise PatternError(f"not well-formed XML ({exc.condition.value}: {exc.text}): {xml.strip()!r}") from None
    elements = [e for e in events if isinstance(e, Element)]
    if len(events) != len(elements) + 2:  # the wrapper's header and footer around the elements
        raise PatternError(f"not a sequence of complete elements: {xml.strip()!r}")
    return elements


def parse_pattern(xml: str) -> Element:
    """Parse one pattern element (placeholders must already be substituted)."""
    elements = parse_fragment(xml)
    if len(elements) != 1:
        raise PatternError(f"a pattern must be exactly one element: {xml.strip()!r}")
    return elements[0]


def render(element: Element) -> str:
    """The element as XML text in a ``jabber:client`` stream, for messages."""
    return serialize(element, NS_CLIENT)


@lru_cache(maxsize=1024)
def _wildcard_regex(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split(WILDCARD)), re.DOTALL)


def wildcard_equal(expected: str, got: str) -> bool:
    """``got`` equals ``expected``, where each ``*`` in ``expected`` stands for any characters."""
    if WILDCARD not in expected:
        return expected == got
    return _wildcard_regex(expected).fullmatch(got) is not None


def _label(element: Element) -> str:
    return f"stream:{element.name}" if element.ns == NS_STREAMS else element.name


def _short(element: Element) -> str:
    return f"<{_label(element)} xmlns='{element.ns}'>"


def match(expected: Element, received: Element, *, exact: bool = False) -> Mismatch | None:
    """``None`` when ``received`` satisfies ``expected``; otherwise the first reason it does not."""
    return _match(expected, received, exact, _label(expected))


def _match(expected: Element, received: Element, exact: bool, path: str) -> Mismatch | None:
    if (expected.ns, expected.name) != (received.ns, received.name):
        return Mismatch(path, f"expected {_short(expected)}, got {_short(received)}")
    for key, want in expected.attrs.items():
        got = received.attrs.get(key)
        if got is None:
            return Mismatch(path, f"missing attribute {key}={want!r}")
        if not wildcard_equal(want, got):
            return Mismatch(path, f"attribute {key}: expected {want!r}, got {got!r}")
    want_text = expected.text.strip()
    if want_text and not wildcard_equal(want_text, received.text.strip()):
        return Mismatch(path, f"text: expected {want_text!r}, got {received.text.strip()!r}")
    return _match_children(list(expected.elements()), list(received.elements()), exact, path)


def _match_children(
    expected: Sequence[Element], received: Sequence[Element], exact: bool, path: str,
) -> Mismatch | None:
    if exact and len(received) > len(expected):
        extra = ", ".join(_short(r) for r in received)
        return Mismatch(path, f"exact: expected {len(expected)} child element(s), got {len(received)}: {extra}")
    if _assign(expected, received, 0, frozenset(), exact, path):
        return None
    return _explain_children(expected, received, exact, path)


def _assign(
    expected: Sequence[Element], received: Sequence[Element], index: int, used: frozenset[int],
    exact: bool, path: str,
) -> bool:
    """Backtracking search for a distinct received child for each expected child."""
    if index == len(expected):
        return True
    want = expected[index]
    child_path = f"{path}/{_label(want)}"
    for i, candidate in enumerate(received):
        if i in used or _match(want, candidate, exact, child_path) is not None:
            continue
        if _assign(expected, received, index + 1, used | {i}, exact, path):
            return True
    return False


def _explain_children(
    expected: Sequence[Element], received: Sequence[Element], exact: bool, path: str,
) -> Mismatch:
    """The most useful reason no assignment exists: the first expected child that fails alone,
    reported through the received child of the same name when there is one."""
    for want in expected:
        child_path = f"{path}/{_label(want)}"
        same_name = [r for r in received if (r.ns, r.name) == (want.ns, want.name)]
        failures = [_match(want, r, exact, child_path) for r in same_name]
        if not same_name:
            present = ", ".join(_short(r) for r in received) or "none"
            return Mismatch(path, f"missing child {_short(want)} (children: {present})")
        if all(f is not None for f in failures):
            first = failures[0]
            assert first is not None
            if len(same_name) == 1:
                return first
            return Mismatch(path, f"none of the {len(same_name)} <{_label(want)}> children matches "
                                  f"{render(want)} (the first: {first})")
    # Each expected child matches something alone, but not all at once: duplicates.
    return Mismatch(path, "expected children cannot each be matched by a different received child")


def explain(expected: Element, received: Element, mismatch: Mismatch) -> str:
    """A readable account of a failed match: the pattern, the element, and why."""
    return (f"expected: {render(expected)}\n"
            f"     got: {render(received)}\n"
            f"     why: {mismatch}")
