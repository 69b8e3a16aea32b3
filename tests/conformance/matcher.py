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

In an attribute value or in text, ``{=name}`` is a capture: it stands for any run of characters,
like ``*``, and :func:`match_captures` returns what it stood for under ``name`` (so a scenario
can reuse a value the server made up, such as a roster version, RFC 6121 §2.6).  A name captured
twice in one pattern must stand for the same characters both times.

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
    "PatternError", "Mismatch", "Captures", "CAPTURE", "parse_fragment", "parse_pattern", "match",
    "match_captures", "explain", "render", "wildcard_equal",
]

WILDCARD = "*"
CAPTURE = re.compile(r"\{=([a-z][a-z0-9_]*)\}")  # {=name}: any characters, remembered as ``name``

Captures = dict[str, str]

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
    result = match_captures(expected, received, exact=exact)
    return result if isinstance(result, Mismatch) else None


def match_captures(expected: Element, received: Element, *, exact: bool = False) -> Captures | Mismatch:
    """What each ``{=name}`` of ``expected`` stood for when ``received`` matches; else why not."""
    return _match(expected, received, exact, _label(expected), {})


@lru_cache(maxsize=1024)
def _value_regex(expected: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex for ``expected`` with ``*`` as ``.*`` and each ``{=name}`` as a group, and the names."""
    parts: list[str] = []
    names: list[str] = []
    position = 0
    for capture in CAPTURE.finditer(expected):
        parts.append(_wildcard_regex(expected[position:capture.start()]).pattern)
        parts.append("(.*)")
        names.append(capture.group(1))
        position = capture.end()
    parts.append(_wildcard_regex(expected[position:]).pattern)
    return re.compile("".join(parts), re.DOTALL), tuple(names)


def _match_value(expected: str, got: str, captures: Captures) -> Captures | None:
    """``captures`` plus those of ``expected`` when ``got`` matches it consistently; else None."""
    if "{=" not in expected:
        return captures if wildcard_equal(expected, got) else None
    regex, names = _value_regex(expected)
    found = regex.fullmatch(got)
    if found is None:
        return None
    return _merge(captures, _consistent(names, found.groups()))


def _consistent(names: Sequence[str], values: Sequence[str]) -> Captures | None:
    """The captures of one value; None when a name given twice stood for different text."""
    result: Captures = {}
    for name, value in zip(names, values, strict=True):
        if result.setdefault(name, value) != value:
            return None
    return result


def _merge(captures: Captures, new: Captures | None) -> Captures | None:
    if new is None or any(captures.get(name, value) != value for name, value in new.items()):
        return None
    return {**captures, **new}


def _match(expected: Element, received: Element, exact: bool, path: str, captures: Captures) -> Captures | Mismatch:
    if (expected.ns, expected.name) != (received.ns, received.name):
        return Mismatch(path, f"expected {_short(expected)}, got {_short(received)}")
    for key, want in expected.attrs.items():
        got = received.attrs.get(key)
        if got is None:
            return Mismatch(path, f"missing attribute {key}={want!r}")
        found = _match_value(want, got, captures)
        if found is None:
            return Mismatch(path, f"attribute {key}: expected {want!r}, got {got!r}" + _earlier(want, captures))
        captures = found
    want_text = expected.text.strip()
    if want_text:
        found = _match_value(want_text, received.text.strip(), captures)
        if found is None:
            return Mismatch(path, f"text: expected {want_text!r}, got {received.text.strip()!r}"
                                  + _earlier(want_text, captures))
        captures = found
    return _match_children(list(expected.elements()), list(received.elements()), exact, path, captures)


def _earlier(expected: str, captures: Captures) -> str:
    """For a failed value, what its captures already stood for elsewhere in the pattern."""
    known = [f"{{={name}}} = {captures[name]!r}" for name in _value_regex(expected)[1] if name in captures]
    return f" (captured earlier in this pattern: {', '.join(known)})" if known else ""


def _match_children(
    expected: Sequence[Element], received: Sequence[Element], exact: bool, path: str, captures: Captures,
) -> Captures | Mismatch:
    if exact and len(received) > len(expected):
        extra = ", ".join(_short(r) for r in received)
        return Mismatch(path, f"exact: expected {len(expected)} child element(s), got {len(received)}: {extra}")
    found = _assign(expected, received, 0, frozenset(), exact, path, captures)
    if found is not None:
        return found
    return _explain_children(expected, received, exact, path, captures)


def _assign(
    expected: Sequence[Element], received: Sequence[Element], index: int, used: frozenset[int],
    exact: bool, path: str, captures: Captures,
) -> Captures | None:
    """Backtracking search for a distinct received child for each expected child; the captures
    of the first assignment found (a capture taken in one child binds it in the others)."""
    if index == len(expected):
        return captures
    want = expected[index]
    child_path = f"{path}/{_label(want)}"
    for i, candidate in enumerate(received):
        if i in used:
            continue
        found = _match(want, candidate, exact, child_path, captures)
        if isinstance(found, Mismatch):
            continue
        rest = _assign(expected, received, index + 1, used | {i}, exact, path, found)
        if rest is not None:
            return rest
    return None


def _explain_children(
    expected: Sequence[Element], received: Sequence[Element], exact: bool, path: str, captures: Captures,
) -> Mismatch:
    """The most useful reason no assignment exists: the first expected child that fails alone,
    reported through the received child of the same name when there is one."""
    for want in expected:
        child_path = f"{path}/{_label(want)}"
        same_name = [r for r in received if (r.ns, r.name) == (want.ns, want.name)]
        if not same_name:
            present = ", ".join(_short(r) for r in received) or "none"
            return Mismatch(path, f"missing child {_short(want)} (children: {present})")
        results = [_match(want, r, exact, child_path, captures) for r in same_name]
        failures = [f for f in results if isinstance(f, Mismatch)]
        if len(failures) == len(results):
            first = failures[0]
            if len(same_name) == 1:
                return first
            return Mismatch(path, f"none of the {len(same_name)} <{_label(want)}> children matches "
                                  f"{render(want)} (the first: {first})")
    # Each expected child matches something alone, but not all at once: duplicates, or
    # captures that stand for different values in different children.
    return Mismatch(path, "expected children cannot each be matched by a different received child"
                          + (" with the same value for each capture" if _has_capture(expected) else ""))


def _has_capture(elements: Sequence[Element]) -> bool:
    return any(CAPTURE.search(value) for e in elements for value in (*e.attrs.values(), e.text)) \
        or any(_has_capture(list(e.elements())) for e in elements)


def explain(expected: Element, received: Element, mismatch: Mismatch) -> str:
    """A readable account of a failed match: the pattern, the element, and why."""
    return (f"expected: {render(expected)}\n"
            f"     got: {render(received)}\n"
            f"     why: {mismatch}")
