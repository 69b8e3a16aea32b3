"""A small, typed XML element tree for stanzas (RFC 6120 §4.1 streams carry these).

Each element knows its local name and namespace; attributes are a plain dict whose keys are
the local name for unqualified attributes and ``{namespace}name`` for qualified ones (only
``xml:lang`` in practice).  Children keep document order and may mix elements with text,
which is what XHTML-IM bodies need; ``text`` reads and writes the concatenated text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["Element"]



class Element:
    """An XML element: ``name`` in namespace ``ns`` with attributes and ordered children."""

    __slots__ = ("name", "ns", "attrs", "children")

    def __init__(
        self,
        name: str,
        ns: str = "",
        attrs: Mapping[str, str] | None = None,
        children: list[Element | str] | None = None,
        text: str | None = None,
    ) -> None:
        self.name = name
        self.ns = ns
        self.attrs: dict[str, str] = dict(attrs) if attrs else {}
        self.children: list[Element | str] = children if children is not None else []
        if text:
            self.children.append(text)

    # -- reading ---------------------------------------------------------------------------
    def get(self, attr: str, default: str | None = None) -> str | None:
        """The value of attribute ``attr`` or ``default``."""
        return self.attrs.get(attr, default)

    @property
    def text(self) -> str:
        """The concatenated character data directly inside this element."""
        return "".join(c for c in self.children if isinstance(c, str))

    @text.setter
    def text(self, value: str) -> None:
        self.children = [c for c in self.children if not isinstance(c, str)]
        if value:
            self.children.insert(0, value)

    def elements(self) -> Iterator[Element]:
        """The child elements, in order, without text."""
        for child in self.children:
            if isinstance(child, Element):
                yield child

    def find(self, name: str, ns: str | None = None) -> Element | None:
        """The first child named ``name`` in ``ns`` (default: this element's namespace)."""
        want_ns = self.ns if ns is None else ns
        for child in self.children:
            if isinstance(child, Element) and child.name == name and child.ns == want_ns:
                return child
        return None

    def findall(self, name: str, ns: str | None = None) -> list[Element]:
        """Every child named ``name`` in ``ns`` (default: this element's namespace)."""
        want_ns = self.ns if ns is None else ns
        return [
            c for c in self.children
            if isinstance(c, Element) and c.name == name and c.ns == want_ns
        ]

    def findtext(self, name: str, ns: str | None = None) -> str | None:
        """The text of the first child named ``name`` in ``ns``, or None when absent."""
        child = self.find(name, ns)
        return None if child is None else child.text

    @property
    def qname(self) -> tuple[str, str]:
        """``(namespace, name)``: the key modules register handlers under."""
        return (self.ns, self.name)

    # -- building --------------------------------------------------------------------------
    def append(self, child: Element | str) -> None:
        """Add a child element or text after the existing children."""
        self.children.append(child)

    def add(
        self,
        name: str,
        ns: str | None = None,
        attrs: Mapping[str, str] | None = None,
        text: str | None = None,
    ) -> Element:
        """Create, append and return a child element (namespace defaults to ours)."""
        child = Element(name, self.ns if ns is None else ns, attrs, text=text)
        self.children.append(child)
        return child

    def copy(self) -> Element:
        """A deep copy: routing changes copies, never inbound stanzas (DESIGN: Stanzas)."""
        return Element(
            self.name,
            self.ns,
            self.attrs,
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    def renamespaced(self, old: str, new: str) -> Element:
        """A deep copy with every element in namespace ``old`` moved to ``new``.

        RFC 6120 §4.8.3: stanzas travel as ``jabber:client`` between a server and its clients
        and as ``jabber:server`` between servers; a server rewrites them at the boundary,
        payloads in other namespaces untouched.
        """
        return Element(
            self.name,
            new if self.ns == old else self.ns,
            self.attrs,
            [c.renamespaced(old, new) if isinstance(c, Element) else c for c in self.children],
        )

    # -- comparison and display ------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.name == other.name
            and self.ns == other.ns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<Element {{{self.ns}}}{self.name} attrs={self.attrs!r} children={len(self.children)}>"
