"""The TCP pump (RFC 6120 §3, XEP-0368): bytes in, core, events out, bytes back, timers.

Holds no protocol decisions (DESIGN: Transport).  ``StreamTransport`` is an
``asyncio.Protocol`` that feeds a sans-I/O core, hands its events to a handler, writes what
the core wants sent and re-arms the core's timer — the aioquic pattern.  STARTTLS upgrades
the same connection in place with ``loop.start_tls``.

The timer is re-armed only when the core's next deadline moves earlier: one that moved later
(each input postpones a keepalive) lets the armed timer fire early, the core finds nothing due,
and the pump arms the new deadline — one wake-up a second at most on a busy stream instead of a
cancel and a new timer per read.  After ``QUIET_AFTER`` seconds without input the core is told
it is ``quiet()`` once, and gives back memory only input needs (its parser's).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Callable
import typing
from typing import Protocol

from ..protocol import events as ev

__all__ = ["StreamCore", "StreamHandler", "StreamTransport"]

log = logging.getLogger(__name__)

# Past this much unsent output the peer is not reading: drop it rather than buffer forever.
MAX_WRITE_BUFFER = 8 * 1024 * 1024
TLS_HANDSHAKE_TIMEOUT = 30.0
QUIET_AFTER = 1.0  # seconds without input before the core may shed memory (XmlStream.quiet)


class StreamCore(Protocol):
    """What the pump needs from a protocol core (protocol/c2s.py and friends)."""

    @property
    def closed(self) -> bool: ...
    def receive_data(self, data: bytes, *, now: float) -> None: ...
    def connection_lost(self) -> None: ...
    def pop_events(self) -> list[ev.Event]: ...
    def data_to_send(self) -> bytes: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...  # must do nothing when called early
    def quiet(self) -> None: ...


class StreamHandler(Protocol):
    """The runtime side of one connection."""

    @property
    def core(self) -> StreamCore: ...
    def handle_event(self, event: ev.Event) -> None: ...
    def transport_closed(self) -> None: ...


class StreamTransport(asyncio.Protocol):
    """One TCP (or TLS) connection pumping a protocol core."""

    __slots__ = (
        "_make_handler", "_handler", "_transport", "_loop", "_timer", "_timer_at", "_quiet_at",
        "_pumping", "_flush_scheduled", "_closing", "_tls_pending", "_held", "peer_address",
    )

    def __init__(self, make_handler: Callable[[StreamTransport], StreamHandler]) -> None:
        self._make_handler: Callable[[StreamTransport], StreamHandler] | None = make_handler  # dropped once used
        self._handler: StreamHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._quiet_at: float | None = None  # when to tell the core it is quiet, once
        self._pumping = False
        self._flush_scheduled = False
        self._closing = False
        # Plaintext the TLS layer decrypted before the core heard that TLS is up: with TLS 1.3
        # a client sends its Finished and the restarted stream header in one flight.
        self._tls_pending = False
        self._held: bytearray | None = None
        self.peer_address = ""

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self._transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        # Interned: thousands of connections from one address share the string.
        self.peer_address = sys.intern(str(peer[0])) if isinstance(peer, tuple) and peer else "unknown"
        # TCP_NODELAY: asyncio (3.7+) and uvloop set it on every TCP transport they make;
        # setting it again cost two system calls and a socket object per connection.
        assert self._make_handler is not None
        self._handler, self._make_handler = self._make_handler(self), None
        self.pump()

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is None or self._closing:
            return
        if self._tls_pending:
            # RFC 6120 §5.4.3.3: it belongs to the stream after the restart.
            if self._held is None:
                self._held = bytearray()
            self._held += data
            return
        now = self._loop.time()
        self._quiet_at = now + QUIET_AFTER
        handler.core.receive_data(data, now=now)
        self.pump()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handler = self._handler
        if handler is not None:
            handler.core.connection_lost()
            self.pump()
            handler.transport_closed()

    # -- the pump ----------------------------------------------------------------------------
    def pump(self) -> None:
        """Move events to the handler and bytes to the socket until the core is quiet."""
        handler = self._handler
        if handler is None or self._pumping:
            return  # the outer pump picks up whatever a nested call produced
        self._pumping = True
        try:
            core = handler.core
            while True:
                data = core.data_to_send()
                if data and self._transport is not None and not self._transport.is_closing():
                    self._transport.write(data)
                events = core.pop_events()
                if not events and not data:
                    break
                for event in events:
                    handler.handle_event(event)
            if core.closed:
                self._close_transport()
            else:
                self._check_write_buffer()
                when, quiet = core.get_timer(), self._quiet_at
                if quiet is not None and (when is None or quiet < when):
                    when = quiet
                self._arm_timer(when)
        finally:
            self._pumping = False

    def pump_soon(self) -> None:
        """Pump once the callbacks ready in this loop iteration have run.

        Stanzas queued for this connection meanwhile leave in one ``write`` (one system call)
        instead of one each; the delay is the rest of the current iteration, no timer.
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._flush_scheduled = False
        self.pump()

    def _check_write_buffer(self) -> None:
        if self._transport is not None and self._transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("peer %s is not reading; dropping the connection", self.peer_address)
            self._transport.abort()

    def _arm_timer(self, when: float | None) -> None:
        timer = self._timer
        if timer is not None:
            if when is not None and self._timer_at is not None and self._timer_at <= when:
                return  # it fires first; the pump after it arms the later deadline
            timer.cancel()
            self._timer = self._timer_at = None
        if when is not None and not self._closing:
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        handler = self._handler
        if handler is not None and not self._closing:
            now = self._loop.time()
            if self._quiet_at is not None and now >= self._quiet_at:
                self._quiet_at = None
                handler.core.quiet()
            handler.core.handle_timer(now)
            self.pump()

    def _close_transport(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # flushes what was written first

    # -- services for the handler ----------------------------------------------------------------
    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        if self._held and not self._tls_pending:
            held, self._held = bytes(self._held), None
            self.data_received(held)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        if self._transport is None:
            return None
        obj = self._transport.get_extra_info("ssl_object")
        return typing.cast(ssl.SSLObject, obj) if obj is not None else None

    async def start_tls(
        self, context: ssl.SSLContext, *, server_side: bool = True, server_hostname: str | None = None,
    ) -> ssl.SSLObject | None:
        """Upgrade this connection to TLS (RFC 6120 §5.4.3.3).

        As the server by default; ``server_side=False`` for the initiating side of an s2s
        stream after ``<proceed/>``, with the remote domain as ``server_hostname`` (SNI).
        """
        assert self._transport is not None
        if server_side and server_hostname is not None:
            raise ValueError("server_hostname is only meaningful on the client side")
        self._tls_pending = True
        try:
            new = await self._loop.start_tls(
                self._transport, self, context, server_side=server_side,
                server_hostname=server_hostname, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        finally:
            # Held bytes are fed by resume_reading(), after the core knows TLS is up.
            self._tls_pending = False
        if new is None:
            return None
        self._transport = new
        return self.ssl_object

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
