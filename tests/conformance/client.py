"""RFC 6120 §4.3, §4.4: one scenario client's view of its stream, on top of the raw client.

The raw client (``tests/integration/rawclient.py``) gives every event the server sends.  This
wrapper keeps the stream-level bookkeeping out of the steps: the server's stream header and the
``<stream:features/>`` that follow it are recorded (for ``expect_header``/``expect_features``)
rather than handed to ``expect``; elements read but not meant for the current step (during
another client's round-trip barrier) are pushed back in order; everything is written to the
scenario's transcript; and every read is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Sequence

from xmppcore.jid import JID
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_PING, NS_STREAMS, NS_XML
from xmppcore.xml.parser import StreamFooter, StreamHeader

from ..integration.rawclient import ClientEvent, ConnectionEnded, RawClient
from .matcher import render
from .model import ClientSpec

__all__ = ["StepFailed", "ScenarioClient", "Transcript", "describe_event", "is_presence"]

Transcript = list[str]
_XML_LANG = f"{{{NS_XML}}}lang"


class StepFailed(Exception):
    """A step did not see what it expects; the message is the report."""


def describe_event(event: ClientEvent) -> str:
    if isinstance(event, Element):
        text = render(event)
        return text if len(text) <= 600 else text[:600] + "…"
    if isinstance(event, StreamHeader):
        attrs = " ".join(f"{k.replace(_XML_LANG, 'xml:lang')}='{v}'" for k, v in event.attrs.items())
        return f"<stream:stream {attrs}>"
    if isinstance(event, StreamFooter):
        return "</stream:stream>"
    return f"[connection ended{': ' + event.error if event.error else ''}]"


def is_presence(element: Element) -> bool:
    return (element.ns, element.name) == (NS_CLIENT, "presence")


class ScenarioClient:
    """A scenario's client: its spec, its connection and what the server has said on it."""

    def __init__(self, spec: ClientSpec, raw: RawClient, transcript: Transcript) -> None:
        self.spec = spec
        self.raw = raw
        self.jid: JID | None = None
        self.resource = ""                      # the unique resource used for {name_resource}
        self.header: StreamHeader | None = None  # the latest server stream header
        self.features: Element | None = None     # the features that followed it, if any
        self.awaiting_header = False             # we opened a stream; its header is not in yet
        self._features_next = False              # the next element may be <stream:features/>
        self._pushed_back: deque[ClientEvent] = deque()
        self._transcript = transcript
        self._barriers = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def ignorable(self, element: Element) -> bool:
        """Presence nobody asked for: servers differ in what they broadcast (RFC 6121 §4.2.2)."""
        return self.spec.ignore_presence and is_presence(element)

    def log(self, line: str) -> None:
        """A note in the transcript (what the raw client did without our reading it)."""
        self._transcript.append(f"{self.name}: {line}")

    # -- output --------------------------------------------------------------------------------
    async def send(self, data: str | bytes) -> None:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        self._transcript.append(f"{self.name} → {text}")
        await self.raw.send(data)

    async def send_header(self, header: str) -> None:
        """A new stream (initial or restart, RFC 6120 §4.3.3): its answer is read lazily."""
        self._transcript.append(f"{self.name} → {header}")
        await self.raw.send_header(header.encode())
        self.awaiting_header = True
        self.header = None
        self.features = None

    # -- input ---------------------------------------------------------------------------------
    async def _pull(self, deadline: float) -> ClientEvent | None:
        """The next event; ``None`` when it was the features, which are recorded instead."""
        if self._pushed_back:
            return self._pushed_back.popleft()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError
        event = await self.raw.next_event(remaining)
        self._transcript.append(f"{self.name} ← {describe_event(event)}")
        if isinstance(event, StreamHeader):
            self.header, self.features = event, None
            self.awaiting_header, self._features_next = False, True
            return event
        if isinstance(event, Element) and self._features_next:
            self._features_next = False
            if (event.ns, event.name) == (NS_STREAMS, "features"):
                self.features = event
                return None
        return event

    async def next_event(self, deadline: float) -> Element | StreamFooter | ConnectionEnded:
        """The next stanza-level event: headers and features are recorded and skipped."""
        while True:
            event = await self._pull(deadline)
            if event is not None and not isinstance(event, StreamHeader):
                return event

    async def settle(self, deadline: float) -> None:
        """Read the server's answer to our latest header: its header and features (if any).

        Anything else arriving first is pushed back, so a stream error stays for the next step.
        """
        while self.awaiting_header or self._features_next:
            event = await self._pull(deadline)
            if isinstance(event, Element | StreamFooter | ConnectionEnded):
                self._pushed_back.appendleft(event)
                self._features_next = False
                return

    def push_back(self, events: Sequence[ClientEvent]) -> None:
        """Put events read too early back in front, in their order."""
        self._pushed_back.extendleft(reversed(events))

    def first_pending(self) -> ClientEvent | None:
        """What a later read returns first, if it has already been read (pushed back)."""
        return self._pushed_back[0] if self._pushed_back else None

    def has_pending_input(self) -> bool:
        return bool(self._pushed_back) or self.raw.has_input

    # -- round trips ---------------------------------------------------------------------------
    async def round_trip(self, deadline: float, on_other: Callable[[Element], bool]) -> list[Element]:
        """XEP-0199 ping to the server; returns what arrived before its answer.

        Any reply (result or error) is the barrier: the server has processed everything we
        sent before it.  ``on_other(element)`` says whether to keep an element that arrived in
        between (returned, in order) or drop it.  The stream ending first is a failure.
        """
        self._barriers += 1
        ping_id = f"barrier-{self._barriers}-{secrets.token_hex(3)}"  # never an id a scenario uses
        await self.send(f"<iq type='get' id='{ping_id}' to='{self.raw.domain}'><ping xmlns='{NS_PING}'/></iq>")
        kept: list[Element] = []
        while True:
            try:
                event = await self.next_event(deadline)
            except TimeoutError:
                raise StepFailed(f"{self.name}: no answer to the barrier ping {ping_id!r} in time") from None
            if not isinstance(event, Element):
                raise StepFailed(f"{self.name}: the stream ended during a barrier ping: {describe_event(event)}")
            if event.name == "iq" and event.get("id") == ping_id and event.get("type") in ("result", "error"):
                return kept
            if on_other(event):
                kept.append(event)

    async def close(self, timeout: float) -> None:
        """End the stream politely (RFC 6120 §4.4), wait for the server to close, then drop it."""
        try:
            # A stream we never opened has nothing to close: just drop the connection.
            if not self.raw.ended and (self.header is not None or self.jid is not None):
                await self.raw.send(b"</stream:stream>")
                deadline = asyncio.get_running_loop().time() + timeout
                while not isinstance(await self._pull(deadline), ConnectionEnded):
                    pass
        except (TimeoutError, OSError):
            pass
        finally:
            self.raw.close()
