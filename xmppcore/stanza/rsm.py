"""XEP-0059: Result Set Management — the ``<set/>`` element of requests and of returned pages.

A requester limits a page with ``<max/>``, pages forwards with ``<after>UID</after>``, backwards
with ``<before>UID</before>``, asks for the last page with an empty ``<before/>`` (§2.5) and may
jump to a position with ``<index/>`` (§2.6).  The responder describes the page it returns with
``<first index='…'/>``, ``<last/>`` and ``<count/>``; an empty page carries neither ``<first/>`` nor
``<last/>`` (§2.2).  Version 1.1 adds ``exact`` on ``<count/>`` and ``exact-index`` on ``<first/>``,
RECOMMENDED whenever the responder knows.

Pure parsing and building: what a page holds is the using protocol's business (XEP-0313 for
message archives).  A malformed ``<set/>`` raises :class:`RsmError`, which callers answer with
``bad-request``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..xml.element import Element

__all__ = ["NS_RSM", "RsmError", "RsmPage", "RsmRequest", "find_request", "parse_page", "parse_request"]

NS_RSM = "http://jabber.org/protocol/rsm"

# xs:int in the XEP's schema (§8): a position or page size never exceeds it.
_MAX_INT = 2**31 - 1


class RsmError(ValueError):
    """A ``<set/>`` that does not follow XEP-0059 (the answer is ``bad-request``)."""


@dataclass(frozen=True, slots=True)
class RsmRequest:
    """What a requester asked for.

    ``before`` is None when absent and ``""`` for an empty ``<before/>``: the last page (§2.5).
    ``after`` and ``before`` are opaque UIDs (§2.2: "the requesting entity MUST treat all UIDs
    as opaque").
    """

    max: int | None = None
    after: str | None = None
    before: str | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        for name in ("max", "index"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= _MAX_INT:
                raise RsmError(f"<{name}/> must be from 0 to {_MAX_INT}, got {value}")
        if self.after == "":
            raise RsmError("<after/> needs the UID of an item")
        if self.index is not None and (self.after is not None or self.before is not None):
            # §2.6: an index is for when no UID next to the page is known.
            raise RsmError("<index/> cannot be combined with <after/> or <before/>")

    @property
    def backwards(self) -> bool:
        """True when the page ends at ``before`` (or at the end of the set) — §2.3, §2.5."""
        return self.before is not None

    def element(self) -> Element:
        """``<set xmlns='http://jabber.org/protocol/rsm'/>`` asking for this page."""
        set_el = Element("set", NS_RSM)
        if self.max is not None:
            set_el.add("max", text=str(self.max))
        if self.after is not None:
            set_el.add("after", text=self.after)
        if self.before is not None:
            set_el.add("before", text=self.before or None)
        if self.index is not None:
            set_el.add("index", text=str(self.index))
        return set_el


@dataclass(frozen=True, slots=True)
class RsmPage:
    """What a responder says about the page it returns (§2.2)."""

    first: str | None = None
    first_index: int | None = None
    last: str | None = None
    count: int | None = None
    exact: bool = False  # count and index are exact (XEP-0059 1.1 'exact', 'exact-index')

    def __post_init__(self) -> None:
        if (self.first is None) != (self.last is None):
            raise RsmError("a page has both <first/> and <last/> or neither (§2.2)")
        if self.first is None and self.first_index is not None:
            raise RsmError("an empty page has no <first/> to carry an index")

    def element(self) -> Element:
        """The ``<set/>`` describing this page."""
        set_el = Element("set", NS_RSM)
        if self.first is not None:
            attrs: dict[str, str] = {}
            if self.first_index is not None:
                attrs["index"] = str(self.first_index)
                if self.exact:
                    attrs["exact-index"] = "true"
            set_el.add("first", attrs=attrs, text=self.first)
        if self.last is not None:
            set_el.add("last", text=self.last)
        if self.count is not None:
            set_el.add("count", attrs={"exact": "true"} if self.exact else None, text=str(self.count))
        return set_el


def find_request(parent: Element) -> RsmRequest | None:
    """The request in ``parent``'s ``<set/>`` child, or None when it has none."""
    set_el = parent.find("set", NS_RSM)
    return None if set_el is None else parse_request(set_el)


def parse_request(set_el: Element) -> RsmRequest:
    """Read a requester's ``<set/>``; :class:`RsmError` when it is malformed."""
    _check_is_set(set_el)
    before = _single(set_el, "before")
    after = _single(set_el, "after")
    return RsmRequest(
        max=_integer(set_el, "max"),
        after=None if after is None else after.text,
        # An empty <before/> (whitespace aside) asks for the last page (§2.5).
        before=None if before is None else (before.text if before.text.strip() else ""),
        index=_integer(set_el, "index"),
    )


def parse_page(set_el: Element) -> RsmPage:
    """Read a responder's ``<set/>`` (what clients and tests see)."""
    _check_is_set(set_el)
    first = _single(set_el, "first")
    last = _single(set_el, "last")
    index = None if first is None else first.get("index")
    count = _single(set_el, "count")
    return RsmPage(
        first=None if first is None else first.text,
        first_index=None if index is None else _parse_int(index, "index"),
        last=None if last is None else last.text,
        count=None if count is None else _parse_int(count.text, "count"),
        exact=count is not None and count.get("exact") == "true",
    )


def _check_is_set(el: Element) -> None:
    if (el.ns, el.name) != (NS_RSM, "set"):
        raise RsmError(f"expected <set xmlns='{NS_RSM}'/>, got <{el.name} xmlns='{el.ns}'/>")


def _single(set_el: Element, name: str) -> Element | None:
    found = set_el.findall(name)
    if len(found) > 1:
        raise RsmError(f"<set/> holds <{name}/> more than once")  # §8: maxOccurs='1'
    return found[0] if found else None


def _integer(set_el: Element, name: str) -> int | None:
    child = _single(set_el, name)
    return None if child is None else _parse_int(child.text, name)


def _parse_int(text: str, name: str) -> int:
    digits = text.strip()
    # Only plain decimal digits: int() would also take '+5', '٣' and '1_000'.
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 10:
        raise RsmError(f"<{name}/> must be a non-negative integer, got {text!r}")
    value = int(digits)
    if value > _MAX_INT:
        raise RsmError(f"<{name}/> must be at most {_MAX_INT}, got {value}")
    return value
