"""RFC 6120 §4 and §11: the incremental XML stream parser.

Bytes in, events out: the stream header (the ``<stream:stream>`` start tag), each stanza (a
depth-1 element) as one :class:`Element` once its end tag arrives, and the footer.  Input may be
split at any byte.  Built on ``xml.parsers.expat`` with handlers that build :class:`Element`
directly (docs/decisions/0001-xml-parser.md has the measurements behind that choice).

Refusals are :class:`StreamError`; once one is raised the stream is dead and every later
``feed()`` raises it again.  Events parsed earlier in the failing ``feed()`` call are dropped:
the caller sends the stream error and closes, so nothing more from that peer is acted upon.

- Restricted XML (§11.1): DOCTYPE (rejected at its start, so no entity is ever declared or
  expanded), entity references other than the five predefined ones, comments and processing
  instructions give ``restricted-xml``.  An XML declaration is allowed at the start of each
  document (§11.5); one declaring an encoding other than UTF-8 gives ``unsupported-encoding``
  (§11.6).
- Ill-formed input (§11.3) gives ``not-well-formed``; non-whitespace text between stanzas gives
  ``bad-format``; whitespace there is a keepalive and is dropped (§11.7).
- Whitespace after ``</stream:stream>`` is ignored; anything else there is ``not-well-formed``
  (a comment or PI there is ``restricted-xml``, like anywhere else).
- ``release()`` gives back expat's memory (a dozen KiB) between stanzas; the next ``feed()``
  resumes in a new parser primed with the root's start tag and namespace declarations, so what
  follows parses exactly as it would have: an idle stream costs a few hundred bytes.
- Bounds against a stranger (§13.12): a stanza's size in bytes, from the ``<`` of its start
  tag to the ``>`` of its end tag, the nesting depth inside a stanza, the attributes on one
  element, and the bytes before the header is complete all give ``policy-violation``.  Expat
  is fed at most ``_SLICE`` bytes at a time and the limits are checked between slices, so a
  10 MiB stanza is refused after a few hundred KiB, without building a 10 MiB tree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from ..stanza.errors import StreamCondition, StreamError
from .element import Element

__all__ = ["StreamHeader", "StreamFooter", "ParseEvent", "ParseFailure", "StreamParser"]

_SLICE = 64 * 1024
_SEP = "}"  # expat joins "uri}local"; expat itself refuses a namespace URI containing it
_WHITESPACE = " \t\r\n"  # XML's S production (§2.3); str.strip() alone would also eat U+00A0
_NAME_CACHE_MAX = 4096  # a stranger can invent names; the caches must not grow with them
_TEXT_BUFFER = 1024  # pyexpat's text buffer per parser (its default is 8 KiB); longer runs come in pieces
_ROOT_NAME = re.compile(rb"<([^\s/>]+)")

# Shared by every parser of the process (one thread, the event loop's), emptied when full:
# expat's names interned once, not once per stream, and each one split once into (local, ns).
_INTERNED: dict[str, str] = {}
_NAMES: dict[str, tuple[str, str]] = {}
_PRIMES: dict[bytes, bytes] = {}  # root start tags to resume from (see release()), deduplicated
_PRIMES_MAX, _PRIME_SHARED_MAX = 256, 512  # entries, and bytes of one (longer ones are not shared)
# Stands for "released" (never fed, never given handlers), so the handlers need no None checks.
_RELEASED = expat.ParserCreate()


def _expat_codes(*names: str) -> frozenset[int]:
    # pyexpat's errors.XML_ERROR_* are the messages; errors.codes maps them to numbers.
    return frozenset(
        expat.errors.codes[getattr(expat.errors, name)]
        for name in names if hasattr(expat.errors, name)
    )


# Expat errors that mean "a restricted construct" rather than "broken XML" (§11.1).
_RESTRICTED_ERRORS = _expat_codes(
    "XML_ERROR_UNDEFINED_ENTITY", "XML_ERROR_EXTERNAL_ENTITY_HANDLING",
    "XML_ERROR_RECURSIVE_ENTITY_REF", "XML_ERROR_BINARY_ENTITY_REF",
    "XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF", "XML_ERROR_ASYNC_ENTITY",
    "XML_ERROR_ENTITY_DECLARED_IN_PE",
)
_ENCODING_ERRORS = _expat_codes("XML_ERROR_UNKNOWN_ENCODING", "XML_ERROR_INCORRECT_ENCODING")


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The stream's root start tag (RFC 6120 §4.2, attributes in §4.7)."""

    name: str
    ns: str
    attrs: dict[str, str]
    namespaces: dict[str, str]


@dataclass(frozen=True, slots=True)
class StreamFooter:
    """The root end tag ``</stream:stream>`` (RFC 6120 §4.4)."""


ParseEvent = StreamHeader | Element | StreamFooter

_FOOTER = StreamFooter()
_NO_EVENTS: list[ParseEvent] = []  # outside feed(): the last call's events are not kept alive
_NO_NAMESPACES: dict[str, str] = {}  # after the header (the root's declarations went with it)


def _refuse(condition: StreamCondition, text: str) -> NoReturn:
    raise StreamError(condition, text)


class ParseFailure(StreamError):
    """A stream error raised after some events of the same ``feed()`` call were complete."""

    def __init__(self, condition: StreamCondition, text: str | None, *, events: list[ParseEvent]) -> None:
        super().__init__(condition, text)
        self.events = events


class StreamParser:
    """Incremental parser for one direction of an XML stream; ``reset()`` on stream restart."""

    __slots__ = (
        "_max_stanza", "_max_depth", "_max_attrs", "_max_header", "_expat", "_prime",
        "_events", "_stack", "_text", "_in_root", "_closed", "_root_ns", "_error",
        "_data", "_data_base", "_slice_lo", "_stanza_start", "_idle_mark",
    )

    def __init__(
        self,
        *,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        max_attributes: int = 100,
        max_header_size: int = 65536,
    ) -> None:
        self._max_stanza = max_stanza_size
        self._max_depth = max_depth
        self._max_attrs = max_attributes
        self._max_header = max_header_size
        self._error: StreamError | None = None
        self._events = _NO_EVENTS
        self._start_document()

    # -- public ----------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[ParseEvent]:
        """Parse more bytes; return the events they complete (possibly none)."""
        if self._error is not None:
            raise StreamError(self._error.condition, self._error.text)
        if not isinstance(data, bytes):
            data = bytes(data)
        expat_parser = self._expat
        if expat_parser is _RELEASED:
            expat_parser = self._resume_document()
        events: list[ParseEvent] = []
        self._events = events
        self._data = data
        parse = expat_parser.Parse
        try:
            for lo in range(0, len(data), _SLICE):
                self._slice_lo = lo
                parse(data if len(data) <= _SLICE else data[lo:lo + _SLICE], False)
                self._check_pending(self._data_base + min(lo + _SLICE, len(data)))
        except StreamError as exc:
            self._fail(exc)
        except expat.ExpatError as exc:
            self._fail(_from_expat(exc))
        finally:
            self._data = b""
            self._events = _NO_EVENTS
            if len(_INTERNED) > _NAME_CACHE_MAX:
                _INTERNED.clear()
        self._data_base += len(data)
        return events

    def reset(self) -> None:
        """Expect a new document: the peer restarts the stream (RFC 6120 §4.3.3).

        A dead stream stays dead: after an error, ``feed()`` keeps raising it.
        """
        self._start_document()

    @property
    def releasable(self) -> bool:
        """Between stanzas, nothing pending: ``release()`` would free expat's memory."""
        return (self._expat is not _RELEASED and self._in_root and not self._stack
                and self._idle_mark >= self._data_base and self._prime is not None and self._error is None)

    def release(self) -> None:
        """Give back the expat parser while the peer is quiet, when ``releasable``; the next
        ``feed()`` resumes in a new one as if nothing had happened (events, limits, errors)."""
        if self.releasable:
            self._expat = _RELEASED

    # -- document lifecycle ----------------------------------------------------------------
    @staticmethod
    def _new_expat() -> expat.XMLParserType:
        parser = expat.ParserCreate("UTF-8", _SEP, intern=_INTERNED)  # the override ignores declared encodings
        parser.buffer_size = _TEXT_BUFFER  # allocates it; set before buffer_text, which would allocate 8 KiB
        parser.buffer_text = True
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        if hasattr(parser, "SetReparseDeferralEnabled"):
            # Expat >= 2.6 may hold back complete tokens until more data arrives; a stanza
            # must be delivered as soon as its end tag is in, and _stanza_end relies on it.
            parser.SetReparseDeferralEnabled(False)
        return parser

    def _install_handlers(self, parser: expat.XMLParserType) -> None:
        parser.StartElementHandler = self._on_start
        parser.EndElementHandler = self._on_end
        parser.CharacterDataHandler = self._on_text
        parser.XmlDeclHandler = _on_xml_declaration
        for handler, refusal in _REFUSING_HANDLERS:
            setattr(parser, handler, refusal)

    def _start_document(self) -> None:
        parser = self._new_expat()
        self._install_handlers(parser)
        parser.StartNamespaceDeclHandler = self._on_root_namespace
        self._expat = parser
        self._prime: bytes | None = None  # the root start tag to resume from, once known
        self._stack: list[Element] = []
        self._text: list[str] = []
        self._in_root = False
        self._closed = False
        self._root_ns: dict[str, str] = {}
        self._data = b""
        self._data_base = 0  # document offset of self._data[0]
        self._slice_lo = 0  # offset in self._data of the slice expat is parsing
        self._stanza_start = 0
        self._idle_mark = 0  # document offset before which nothing is pending between stanzas

    def _resume_document(self) -> expat.XMLParserType:
        """A new expat parser standing where the released one stood: inside the root, between
        stanzas, with the root's namespace declarations in scope (see ``release``)."""
        assert self._prime is not None
        parser = self._new_expat()
        parser.Parse(self._prime, False)  # no handlers yet: the root is not reported again
        self._install_handlers(parser)
        self._expat = parser
        # Offsets count from the new parser's start; what it parsed so far is the prime.
        self._data_base = self._idle_mark = self._stanza_start = len(self._prime)
        return parser

    def _fail(self, exc: StreamError) -> NoReturn:
        self._error = exc
        self._stack = []
        self._text = []
        if self._events:
            # Stanzas completed before the error in this same chunk are still the peer's
            # words: hand them over with the error so nothing well-formed is lost.
            raise ParseFailure(exc.condition, exc.text, events=self._events)
        raise exc

    def _check_pending(self, fed: int) -> None:
        """Bound what expat may be holding after a slice (it buffers incomplete tokens)."""
        if not self._in_root:
            if not self._closed and fed > self._max_header:
                _refuse(StreamCondition.POLICY_VIOLATION,
                        f"stream header exceeds {self._max_header} bytes")
        elif self._stack:
            if fed - self._stanza_start > self._max_stanza:
                self._too_big()
        elif fed - self._idle_mark > self._max_stanza + _SLICE:
            # A start tag still incomplete after this many bytes cannot fit the limit.
            self._too_big()

    def _too_big(self) -> NoReturn:
        _refuse(StreamCondition.POLICY_VIOLATION,
                f"stanza exceeds the maximum size of {self._max_stanza} bytes")

    # -- element handlers (the hot path) ---------------------------------------------------
    def _on_start(self, name: str, attrs: dict[str, str]) -> None:
        stack = self._stack
        if stack:
            if len(stack) >= self._max_depth:
                _refuse(StreamCondition.POLICY_VIOLATION,
                        f"elements nested deeper than {self._max_depth}")
            if self._expat.CurrentByteIndex - self._stanza_start > self._max_stanza:
                self._too_big()
            parent = stack[-1]
            if self._text:
                parent.children.append(self._take_text())
        elif self._in_root:
            self._stanza_start = self._expat.CurrentByteIndex
        else:
            self._open_root(name, attrs)
            return
        try:
            local, ns = _NAMES[name]
        except KeyError:
            local, ns = _split_name(name)
        if attrs:
            if len(attrs) > self._max_attrs:
                self._too_many_attributes()
            if _SEP in "".join(attrs):
                attrs = _qualify(attrs)
        element = Element(local, ns, attrs)
        if stack:
            parent.children.append(element)
        stack.append(element)

    def _on_end(self, name: str) -> None:
        stack = self._stack
        if not stack:
            self._in_root = False
            self._closed = True
            self._events.append(_FOOTER)
            return
        element = stack.pop()
        if self._text:
            element.children.append(self._take_text())
        if not stack:
            end = self._stanza_end()
            if end - self._stanza_start > self._max_stanza:
                self._too_big()
            self._idle_mark = end
            self._events.append(element)

    def _take_text(self) -> str:
        parts = self._text
        text = parts[0] if len(parts) == 1 else "".join(parts)
        parts.clear()
        return text

    def _stanza_end(self) -> int:
        """Document offset just past the ``>`` of the end tag expat is reporting."""
        pos = self._expat.CurrentByteIndex  # the end tag's "<"
        lo = max(pos - self._data_base, self._slice_lo)
        # No ">" can occur inside an end tag, and expat reports it as soon as its ">" is
        # parsed, so that ">" is the first one from the tag's start within this slice.
        gt = self._data.find(b">", lo, self._slice_lo + _SLICE)
        return self._data_base + gt + 1 if gt >= 0 else pos

    def _on_text(self, data: str) -> None:
        if self._stack:
            self._text.append(data)  # joined once, when a child starts or the element ends
            return
        # Between stanzas only whitespace keepalives are allowed (RFC 6120 §11.7).
        if data.strip(_WHITESPACE):
            _refuse(StreamCondition.BAD_FORMAT, "character data between stanzas")
        # pyexpat hands buffered text over just before the next event or at the end of a
        # slice, so the current index is where the whitespace ends.
        self._idle_mark = self._expat.CurrentByteIndex

    # -- the root --------------------------------------------------------------------------
    def _open_root(self, name: str, attrs: dict[str, str]) -> None:
        if len(attrs) > self._max_attrs:
            self._too_many_attributes()
        local, ns = _split_name(name)
        if self._header_size_at_least(local, attrs) > self._max_header:
            _refuse(StreamCondition.POLICY_VIOLATION,
                    f"stream header exceeds {self._max_header} bytes")
        self._events.append(StreamHeader(local, ns, _qualify(attrs), self._root_ns))
        self._in_root = True
        self._expat.StartNamespaceDeclHandler = None  # only the root's declarations matter
        self._idle_mark = self._expat.CurrentByteIndex
        self._prime = self._root_start_tag()
        self._root_ns = _NO_NAMESPACES  # the header event has them; nothing adds any now

    def _root_start_tag(self) -> bytes | None:
        """The root's start tag as written (its name, with its prefix) with only its namespace
        declarations: what a new parser reads to stand where this one stands after the header.
        None when the tag began in an earlier ``feed()`` (its name is gone): never released."""
        start = self._expat.CurrentByteIndex - self._data_base  # where its "<" is in this chunk
        found = _ROOT_NAME.match(self._data, start) if start >= 0 else None
        if found is None:
            return None
        # quoteattr escapes tabs and newlines too: the URIs parse back unchanged.
        declarations = "".join(f" xmlns:{prefix}={quoteattr(uri)}" if prefix else f" xmlns={quoteattr(uri)}"
                               for prefix, uri in self._root_ns.items())
        tag = b"<" + found[1] + declarations.encode() + b">"
        if len(tag) > _PRIME_SHARED_MAX:
            return tag
        if len(_PRIMES) >= _PRIMES_MAX:
            _PRIMES.clear()
        return _PRIMES.setdefault(tag, tag)

    def _header_size_at_least(self, local: str, attrs: dict[str, str]) -> int:
        """A lower bound of the header's bytes: what precedes the root tag, plus the tag as
        parsed (names without prefixes, values after unescaping, one space per attribute).

        The tag's exact end is not known here (">" may occur inside its attribute values);
        anything the bound misses is caught by the per-slice check of the bytes fed.
        """
        size = self._expat.CurrentByteIndex + len(local) + 2  # "<" name ">"
        for key, value in attrs.items():
            size += len(key.rpartition(_SEP)[2]) + len(value.encode()) + 4  # " k='v'"
        for prefix, uri in self._root_ns.items():
            size += len(prefix) + len(uri.encode()) + 9  # " xmlns:p='u'"
        return size

    def _on_root_namespace(self, prefix: str | None, uri: str | None) -> None:
        self._root_ns[prefix or ""] = uri or ""

    def _too_many_attributes(self) -> NoReturn:
        _refuse(StreamCondition.POLICY_VIOLATION,
                f"more than {self._max_attrs} attributes on one element")

# -- restricted XML (RFC 6120 §11.1) and encodings (§11.6) ---------------------------------------
def _on_xml_declaration(version: str, encoding: str | None, standalone: int) -> None:
    if encoding is not None and encoding.upper() != "UTF-8":
        _refuse(StreamCondition.UNSUPPORTED_ENCODING, f"encoding {encoding!r}; only UTF-8")


def _refusing(text: str) -> Callable[..., NoReturn]:
    def refuse(*_: Any) -> NoReturn:
        _refuse(StreamCondition.RESTRICTED_XML, text)
    return refuse


_REFUSING_HANDLERS = [  # shared by every parser
    ("StartDoctypeDeclHandler", _refusing("DOCTYPE is not allowed")),
    ("EntityDeclHandler", _refusing("entity declarations are not allowed")),
    ("ExternalEntityRefHandler", _refusing("external entities are not allowed")),
    ("CommentHandler", _refusing("comments are not allowed")),
    ("ProcessingInstructionHandler", _refusing("processing instructions are not allowed")),
]


def _split_name(name: str) -> tuple[str, str]:
    """Expat's ``uri}local`` as (local, uri), interned, remembered in the shared cache."""
    ns, _, local = name.rpartition(_SEP)
    pair = (sys.intern(local), sys.intern(ns))
    if len(_NAMES) >= _NAME_CACHE_MAX:
        _NAMES.clear()
    _NAMES[name] = pair
    return pair


def _qualify(attrs: dict[str, str]) -> dict[str, str]:
    """Expat's ``uri}local`` attribute names as ``{uri}local``; unqualified ones unchanged."""
    return {("{" + key) if _SEP in key else key: value for key, value in attrs.items()}


def _from_expat(exc: expat.ExpatError) -> StreamError:
    code = exc.code
    if code in _RESTRICTED_ERRORS:
        condition = StreamCondition.RESTRICTED_XML
    elif code in _ENCODING_ERRORS:
        condition = StreamCondition.UNSUPPORTED_ENCODING
    else:
        condition = StreamCondition.NOT_WELL_FORMED
    return StreamError(condition, expat.ErrorString(code) if code is not None else str(exc))

