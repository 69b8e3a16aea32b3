"""RFC 6120 §4: the parts of an XML stream every role shares — framing, output, closing.

A role (c2s server, c2s client, later s2s and components) subclasses :class:`XmlStream` and
implements ``_on_header`` and ``_on_element``.  The base owns the parser, the outbox, the
event list and the rules for ending a stream with or without a stream error (§4.4, §4.9).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from ..stanza.errors import ProtocolUsageError, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import NS_STREAMS
from ..xml.parser import ParseEvent, ParseFailure, StreamFooter, StreamHeader, StreamParser
from ..xml.serializer import STREAM_FOOTER, serialize, stream_header
from . import events as ev

__all__ = ["XmlStream", "checked_move", "expect_state"]

_S = TypeVar("_S", bound=enum.Enum)


def checked_move(current: _S, new: _S, table: Mapping[_S, frozenset[_S]]) -> _S:
    """``new`` if the role's transition table allows moving there from ``current`` (STYLE rule 2)."""
    if new is not current and new not in table[current]:
        raise ProtocolUsageError(f"no transition {current.value} -> {new.value}")
    return new


def expect_state(current: _S, wanted: _S) -> None:
    """Refuse a runtime answer that does not fit where the stream stands."""
    if current is not wanted:
        raise ProtocolUsageError(f"expected state {wanted.value}, in {current.value}")


class XmlStream:
    """Shared machinery of one XML stream over one transport connection."""

    __slots__ = ("_parser", "_out", "_events", "_header_sent", "_closed")
    content_ns: str = ""
    declares_dialback = False  # server-to-server roles declare xmlns:db in their header

    def __init__(self, *, max_stanza_size: int) -> None:
        self._parser = StreamParser(max_stanza_size=max_stanza_size)
        self._out: list[str] = []
        self._events: list[ev.Event] = []
        self._header_sent = False
        self._closed = False

    # -- the sans-I/O surface ----------------------------------------------------------------
    def receive_data(self, data: bytes, *, now: float) -> None:
        """Feed bytes read from the transport."""
        if self._closed:
            return
        self._on_input(now)
        try:
            try:
                items = self._parser.feed(data)
            except ParseFailure as failure:
                # What was complete before the error still counts (nothing is lost).
                self._handle_items(failure.events)
                raise
            self._handle_items(items)
        except StreamError as err:
            self._fail(err)

    def _handle_items(self, items: list[ParseEvent]) -> None:
        for item in items:
            if self._closed:
                return
            if isinstance(item, Element):
                self._on_element(item)
            elif isinstance(item, StreamHeader):
                self._on_header(item)
            elif isinstance(item, StreamFooter):
                self._on_footer()

    def connection_lost(self) -> None:
        """The transport went away without a closing tag."""
        if not self._closed:
            self._closed = True
            self._events.append(ev.StreamClosed(by_peer=True))

    def quiet(self) -> None:
        """The peer has been quiet for a while: give back the parser's memory when it stands
        between stanzas (it resumes, unchanged, with the next bytes; an idle stream costs less)."""
        self._parser.release()

    def pop_events(self) -> list[ev.Event]:
        """Events since the last call, in order."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """Bytes to write to the transport since the last call."""
        if not self._out:
            return b""
        data = "".join(self._out).encode("utf-8")
        self._out.clear()
        return data

    @property
    def closed(self) -> bool:
        """True once the stream has ended (either side)."""
        return self._closed

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        """End the stream, with a stream error when ``condition`` is given (RFC 6120 §4.4)."""
        if condition is None:
            self._finish(None, by_peer=False)
        else:
            self._fail(StreamError(condition, text))

    # -- for roles ---------------------------------------------------------------------------
    def _on_input(self, now: float) -> None:
        """Hook: a chunk of input arrived at ``now``."""

    def _on_header(self, header: StreamHeader) -> None:
        raise NotImplementedError

    def _on_element(self, element: Element) -> None:
        raise NotImplementedError

    def _on_footer(self) -> None:
        # RFC 6120 §4.4: answer the peer's closing tag with ours, then the connection ends.
        self._finish(None, by_peer=True)

    def _header_attrs(self) -> dict[str, str]:
        """Attributes of the header we send; roles override."""
        return {"version": "1.0"}

    def _send_header(self) -> None:
        self._out.append(stream_header(content_ns=self.content_ns, attrs=self._header_attrs(),
                                       dialback=self.declares_dialback))
        self._header_sent = True

    def _send(self, element: Element) -> None:
        self._out.append(serialize(element, self.content_ns))

    def _send_raw(self, text: str) -> None:
        self._out.append(text)

    def _restart(self) -> None:
        """A stream restart (after TLS or SASL, RFC 6120 §4.3.3): a new document follows."""
        self._parser.reset()
        self._header_sent = False

    def _fail(self, err: StreamError) -> None:
        """Send a stream error and close (RFC 6120 §4.9.1.1)."""
        if self._closed:
            return
        if not self._header_sent:
            # §4.9.1.2: an error about the initial header still needs our own header first.
            self._send_header()
        self._send(err.to_element())
        self._finish(err, by_peer=False)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        if self._closed:
            return
        if not self._header_sent:
            self._send_header()
        self._out.append(STREAM_FOOTER)
        self._closed = True
        self._events.append(ev.StreamClosed(
            condition=err.condition if err else None,
            by_peer=by_peer,
            text=err.text if err else None,
        ))

    def _peer_stream_error(self, element: Element) -> None:
        """The peer sent ``<stream:error>``: it ends the stream (§4.9.1.3); we close ours."""
        condition = StreamCondition.UNDEFINED_CONDITION
        text = None
        for child in element.elements():
            if child.name == "text":
                text = child.text
                continue
            try:
                condition = StreamCondition(child.name)
            except ValueError:
                pass
        self._finish(StreamError(condition, text), by_peer=True)

    @staticmethod
    def _is_stream_error(element: Element) -> bool:
        return element.ns == NS_STREAMS and element.name == "error"
