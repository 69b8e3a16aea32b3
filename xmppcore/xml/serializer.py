"""RFC 6120 §11 and XML 1.0: writing stanzas and stream headers as text.

Everything is escaped (§11.1: no unescaped ``&``, ``<``, ``>``); attributes use single quotes.
A character XML 1.0 cannot carry (§2.2: controls other than TAB, LF, CR; U+FFFE, U+FFFF; lone
surrogates) raises ``ValueError`` instead of reaching the wire, and so does a name that is not
an XML name.  The output is ``str``; the caller encodes it as UTF-8 (§11.6).

Namespaces (§11.2): an element whose namespace equals the default in scope carries no
``xmlns``; elements in the streams namespace are written ``stream:name`` relying on the header's
``xmlns:stream`` and leave the default namespace unchanged for their children.  On
server-to-server streams, whose header also declares ``xmlns:db`` (XEP-0220 §2.1), the
stream's dialback elements are written ``db:result``/``db:verify`` (``serialize_dialback``), as
every peer expects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from .element import Element
from .namespaces import NS_DIALBACK, NS_STREAMS, NS_XML

__all__ = ["escape_text", "escape_attr", "serialize", "serialize_dialback", "stream_header", "STREAM_FOOTER"]

STREAM_FOOTER: str = "</stream:stream>"

# XML 1.0 §2.2 Char, negated: what may never be written.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# XML 1.0 §2.3 NameStartChar / NameChar without ":" (Namespaces in XML 1.0 §3 NCName).
_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NCNAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]*")

_XML_PREFIX = "{" + NS_XML + "}"


def _check_chars(s: str) -> None:
    bad = _FORBIDDEN.search(s)
    if bad is not None:
        raise ValueError(f"character U+{ord(bad.group()):04X} cannot be written in XML 1.0")


# Fast paths: most text and attribute values need no escaping and hold no forbidden character;
# one search tells, instead of a search and four to eight replace() calls (docs/performance.md).
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile("[&<>\"'\n\r\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape_text(s: str) -> str:
    """Character data: ``&``, ``<``, ``>`` as entities; CR as ``&#13;`` so it survives parsing.

    (XML 1.0 §2.11 turns a literal CR into LF on input.)
    """
    if _TEXT_SPECIAL.search(s) is None:
        return s
    _check_chars(s)
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attr(s: str) -> str:
    """An attribute value for either quote style; TAB, LF, CR as character references.

    (XML 1.0 §3.3.3 would otherwise normalise them to spaces.)
    """
    if _ATTR_SPECIAL.search(s) is None:
        return s
    _check_chars(s)
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        .replace('"', "&quot;").replace("'", "&apos;")
        .replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    )


@functools.lru_cache(maxsize=4096)
def _checked_name(name: str) -> str:
    if _NCNAME.fullmatch(name) is None:
        raise ValueError(f"not an XML name: {name!r}")
    return name


def serialize(el: Element, parent_ns: str = "") -> str:
    """``el`` as XML text, inside a parent whose default namespace is ``parent_ns``."""
    out: list[str] = []
    _write(el, parent_ns, out)
    return "".join(out)


def serialize_dialback(el: Element, content_ns: str) -> str:
    """A top-level XEP-0220 element as ``<db:name ...>`` on a stream declaring ``xmlns:db``.

    Only the stream's own dialback elements take the prefix: the same namespace inside a
    stanza's payload is written with ``xmlns`` like any other.
    """
    if el.ns != NS_DIALBACK:
        raise ValueError("not a dialback element")
    out = ["<db:" + _checked_name(el.name)]
    if el.attrs:
        out.append(_attributes(el.attrs))
    if not el.children:
        out.append("/>")
        return "".join(out)
    out.append(">")
    for child in el.children:
        if isinstance(child, str):
            out.append(escape_text(child))
        else:
            _write(child, content_ns, out)
    out.append(f"</db:{el.name}>")
    return "".join(out)


def _write(el: Element, default_ns: str, out: list[str]) -> None:
    name = _checked_name(el.name)
    ns = el.ns
    if ns == NS_STREAMS:
        # RFC 6120 §11.2.1: the streams namespace always goes with the "stream:" prefix.
        tag = "stream:" + name
        inner_ns = default_ns
        out.append("<" + tag)
    else:
        tag = name
        inner_ns = ns
        if ns == default_ns:
            out.append("<" + name)
        else:
            out.append(f"<{name} xmlns='{escape_attr(ns)}'")
    if el.attrs:
        out.append(_attributes(el.attrs))
    if not el.children:
        out.append("/>")
        return
    out.append(">")
    for child in el.children:
        if isinstance(child, str):
            out.append(escape_text(child))
        else:
            _write(child, inner_ns, out)
    out.append(f"</{tag}>")


def _attributes(attrs: Mapping[str, str]) -> str:
    """`` k='v'`` pairs; ``{ns}local`` keys get ``xml:`` or a locally declared prefix."""
    parts: list[str] = []
    prefixes: dict[str, str] = {}
    for key, value in attrs.items():
        if key[:1] != "{":
            if key == "xmlns":  # a namespace declaration, never an attribute (Namespaces §3)
                raise ValueError("'xmlns' is not an attribute; set the element's ns instead")
            parts.append(f" {_checked_name(key)}='{escape_attr(value)}'")
        elif key.startswith(_XML_PREFIX):
            parts.append(f" xml:{_checked_name(key[len(_XML_PREFIX):])}='{escape_attr(value)}'")
        else:
            ns, brace, local = key[1:].partition("}")
            if not brace or not ns:
                raise ValueError(f"bad qualified attribute name: {key!r}")
            prefix = prefixes.get(ns)
            if prefix is None:
                prefix = prefixes[ns] = f"a{len(prefixes)}"
                parts.append(f" xmlns:{prefix}='{escape_attr(ns)}'")
            parts.append(f" {prefix}:{_checked_name(local)}='{escape_attr(value)}'")
    return "".join(parts)


def stream_header(
    *, content_ns: str, attrs: Mapping[str, str], xml_declaration: bool = True, dialback: bool = False
) -> str:
    """The opening ``<stream:stream ...>`` tag (RFC 6120 §4.2, §4.7), open for the stanzas.

    ``dialback`` declares ``xmlns:db`` (XEP-0220 §2.1), which also tells a server-to-server
    peer that we support dialback.
    """
    decl = "<?xml version='1.0'?>" if xml_declaration else ""
    db = f" xmlns:db='{NS_DIALBACK}'" if dialback else ""
    return (
        f"{decl}<stream:stream xmlns='{escape_attr(content_ns)}'"
        f" xmlns:stream='{NS_STREAMS}'{db}{_attributes(attrs)}>"
    )
