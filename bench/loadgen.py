"""An XMPP load generator: raw RFC 6120 client streams on asyncio (uvloop when installed), loopback only.

Clients log in with the project's sans-I/O client core (``C2SClient``: STARTTLS when asked,
SCRAM of RFC 5802/7677, RFC 6120 §7 binding) and send initial presence (RFC 6121 §4.2); then
their sockets carry pre-serialised stanzas out and are scanned by a regex on the way in.
Scenario ``msg``: N sender/receiver pairs, each with at most ``window`` chat messages in flight
to the receiver's bare JID, for ``messages`` per pair or ``duration`` seconds; reports msg/s,
latency, and counts showing nothing was lost (``stamped``: arrived with an XEP-0359 stanza-id,
i.e. archived, XEP-0313 §3.5).  Accounts <prefix>1..<prefix>2N must exist on the server:
    python bench/loadgen.py msg --port 5222 --password secret --pairs 100
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import math
import re
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmppcore.protocol import events as ev
from xmppcore.protocol.client import C2SClient
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT
from xmppcore.xml.serializer import escape_attr, escape_text

__all__ = ["Client", "LoginError", "MsgParams", "MsgResult", "Target", "add_arguments", "connect",
           "from_arguments", "login_all", "percentile", "run", "run_msg"]

NS_PING = "urn:xmpp:ping"
_T = TypeVar("_T")
# The start tag of a message and our id in it ('m<seq>'); attribute order and quotes vary by server.
_MESSAGE_ID = re.compile(rb"<message\b[^>]*?\sid=[\"']m(\d+)[\"']")
_MESSAGE_END = b"</message>"
_STANZA_ID = b"urn:xmpp:sid:0"  # XEP-0359, stamped on what an archiving server stored


@dataclass(frozen=True)
class Target:
    """Where the server is and how its benchmark accounts are named."""

    host: str = "127.0.0.1"
    port: int = 5222
    domain: str = "localhost"
    password: str = "bench-secret"
    user_prefix: str = "bench"
    starttls: bool = False  # True: negotiate STARTTLS (certificates are not checked: loopback only)
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-1")

    def __post_init__(self) -> None:
        if self.host != "localhost" and not ipaddress.ip_address(self.host).is_loopback:
            raise ValueError(f"loopback addresses only, not {self.host!r}")

    def jid(self, index: int) -> str:
        return f"{self.user_prefix}{index}@{self.domain}"


class LoginError(Exception):
    """A client could not log in (the reason is the message)."""


class Client(asyncio.Protocol):
    """One client connection: the C2SClient core until ``ready``, then raw bytes to ``sink``."""

    def __init__(self, target: Target, jid: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._target = target
        self.jid = jid
        self.core = C2SClient(
            jid=jid, password=target.password, now=self._loop.time(),
            nonce_factory=lambda: secrets.token_urlsafe(18), tls_available=target.starttls,
            require_tls=target.starttls, mechanisms=target.mechanisms)
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.sink: Callable[[bytes], None] | None = None
        # Without a sink, stanzas other than the readiness ping's answer go here (bench/provision.py).
        self.on_stanza: Callable[[Element], None] | None = None
        self.transport: asyncio.Transport | None = None
        self._tls: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # one write per batch of stanzas; Nagle must not hold it back
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.core.start()
        self.write(self.core.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)
            return
        self.core.receive_data(data, now=self._loop.time())
        for event in self.core.pop_events():
            self._on_event(event)
        self.write(self.core.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost ({exc or 'closed by the server'})")
        self.transport = None

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.TlsProceed):
            self._tls = asyncio.ensure_future(self._start_tls())
        elif isinstance(event, ev.Bound):
            # Available (RFC 6121 §4.2), so messages to the bare JID reach us; the server handles
            # a stream's stanzas in order, so the ping's answer (XEP-0199) means it is done.
            self.core.send_stanza(Element("presence", NS_CLIENT))
            iq = Element("iq", NS_CLIENT, {"type": "get", "id": "ready", "to": self._target.domain})
            iq.add("ping", NS_PING)
            self.core.send_stanza(iq)
        elif isinstance(event, ev.StanzaReceived):
            if event.stanza.name == "iq" and event.stanza.get("id") == "ready" and not self.ready.done():
                self.ready.set_result(None)
            elif self.on_stanza is not None:
                self.on_stanza(event.stanza)
        elif isinstance(event, (ev.AuthFailed, ev.NegotiationFailed, ev.StreamClosed)):
            self._fail(repr(event))

    async def _start_tls(self) -> None:
        assert self.transport is not None
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # loopback only
        try:
            upgraded = await self._loop.start_tls(self.transport, self, context, server_hostname=self._target.domain)
        except (TimeoutError, OSError) as exc:
            self._fail(f"TLS handshake failed: {exc}")
            return
        self.transport = cast(asyncio.Transport, upgraded)
        self.core.tls_established()
        self.write(self.core.data_to_send())

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(LoginError(f"{self.jid}: {reason}"))

    def write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """End the stream (RFC 6120 §4.4) and close the socket."""
        if self.transport is not None:
            self.transport.write(b"</stream:stream>")
            self.transport.close()


async def connect(target: Target, jid: str, timeout: float = 30.0) -> Client:
    """Connect, log in, bind, send initial presence; return once the server has handled it."""
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: Client(target, jid), target.host, target.port), timeout)
    try:
        await asyncio.wait_for(client.ready, timeout)
    except BaseException:
        client.close()
        raise
    return client


async def login_all(target: Target, indices: Sequence[int], concurrency: int = 50) -> list[Client]:
    """Log in ``target.jid(i)`` for each index, at most ``concurrency`` negotiating at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Client:
        async with gate:
            return await connect(target, target.jid(index))

    results = await asyncio.gather(*(one(i) for i in indices), return_exceptions=True)
    clients = [r for r in results if isinstance(r, Client)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for client in clients:
            client.close()
        raise LoginError(f"{len(failures)} of {len(indices)} logins failed; first: {failures[0]!r}")
    return clients


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    rank = math.ceil(round(fraction * len(sorted_values), 9))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1] if sorted_values else 0.0


# -- scenario msg ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MsgParams:
    """One ``msg`` run: pairs, window per pair, and its bounds in count and time."""

    pairs: int = 100
    window: int = 20
    messages: int = 1_000_000  # per pair
    duration: float = 10.0     # seconds of sending, warm-up included
    warmup: float = 2.0        # seconds not counted in throughput or latency
    drain: float = 10.0        # seconds to wait for messages still in flight at the end
    body: str = "Hello! This is a benchmark message of a typical chat length, about 70 bytes."


@dataclass
class MsgResult:
    """What one ``msg`` run measured."""

    rate: float = 0.0           # messages/s received in the measured window
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    sent: int = 0
    received: int = 0
    bounced: int = 0            # came back to the sender (as an error)
    duplicated: int = 0
    stamped: int = 0            # received with an XEP-0359 stanza-id: archived by the server
    seconds: float = 0.0        # length of the measured window
    server_cpu: float = -1.0    # CPUs the server used in the measured window (-1: not measured)
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        return self.sent - self.received - self.bounced

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "latencies"} | {"lost": self.lost}


class _MsgRun:
    """Shared state of one run: bounds, counters, the measured window."""

    def __init__(self, params: MsgParams, start: float) -> None:
        self.params = params
        self.result = MsgResult()
        self.measure_from = start + params.warmup
        self.measured = 0
        self.last_receipt = self.measure_from
        self.stopped = False
        self.open_pairs = params.pairs
        self.finished = asyncio.Event()
        self.cpu: tuple[Callable[[], float], float, float] | None = None  # probe, its value, when

    def start_window(self, probe: Callable[[], float]) -> None:
        self.cpu = (probe, probe(), time.perf_counter())

    def stop(self, pairs: list[_Pair]) -> None:
        self.stopped = True
        for pair in pairs:
            pair.pump()  # pairs with nothing in flight finish now

    def finish(self) -> MsgResult:
        result = self.result
        result.seconds = max(self.last_receipt - self.measure_from, 1e-9)
        result.rate = self.measured / result.seconds
        ordered = result.latencies = sorted(result.latencies)
        result.p50_ms, result.p99_ms = percentile(ordered, 0.50) * 1000, percentile(ordered, 0.99) * 1000
        result.max_ms = (ordered[-1] if ordered else 0.0) * 1000
        if self.cpu is not None:
            probe, used, since = self.cpu
            result.server_cpu = (probe() - used) / max(time.perf_counter() - since, 1e-9)
        return result


def _scanner(on_ids: Callable[[list[bytes], int, float], None]) -> Callable[[bytes], None]:
    """A sink finding our message ids in a raw byte stream; an incomplete stanza waits for more."""
    tail = b""

    def scan(data: bytes) -> None:
        nonlocal tail
        buf = tail + data if tail else data
        end = buf.rfind(_MESSAGE_END) + len(_MESSAGE_END)
        if end < len(_MESSAGE_END):
            tail = buf[-(1 << 20):]  # no stanza of ours is that long: keep the end only
            return
        tail = buf[end:]
        on_ids(_MESSAGE_ID.findall(buf, 0, end), buf.count(_STANZA_ID, 0, end), time.perf_counter())
    return scan


class _Pair:
    """One sender keeping up to ``window`` messages in flight to one receiver."""

    def __init__(self, run: _MsgRun, sender: Client, receiver: Client) -> None:
        self._run = run
        self._sender = sender
        self._prefix = f"<message type='chat' to='{escape_attr(receiver.jid)}' id='m".encode()
        self._suffix = f"'><body>{escape_text(run.params.body)}</body></message>".encode()
        self._sent_at: list[float] = []
        self._done = bytearray()  # per sequence number: 0 in flight, 1 received or bounced
        self._in_flight = 0
        self._open = True
        receiver.sink = _scanner(lambda ids, stamped, now: self._settle(ids, stamped, now, bounced=False))
        sender.sink = _scanner(lambda ids, stamped, now: self._settle(ids, stamped, now, bounced=True))

    def pump(self) -> None:
        run, params = self._run, self._run.params
        room = 0 if run.stopped else min(params.window - self._in_flight, params.messages - len(self._sent_at))
        if room > 0:
            now, first = time.perf_counter(), len(self._sent_at)
            self._sender.write(b"".join(
                self._prefix + str(seq).encode() + self._suffix for seq in range(first, first + room)))
            self._sent_at.extend([now] * room)
            self._done.extend(bytes(room))
            self._in_flight += room
            run.result.sent += room
        elif self._in_flight == 0 and self._open:
            self._open = False
            run.open_pairs -= 1
            if run.open_pairs == 0:
                run.finished.set()

    def _settle(self, ids: list[bytes], stamped: int, now: float, *, bounced: bool) -> None:
        """Messages came to the receiver, or back to the sender (as errors: nobody else writes to it)."""
        run, result = self._run, self._run.result
        for raw in ids:
            seq = int(raw)
            if seq >= len(self._done) or self._done[seq]:
                result.duplicated += 1
                continue
            self._done[seq] = 1
            self._in_flight -= 1
            if bounced:
                result.bounced += 1
                continue
            result.received += 1
            if self._sent_at[seq] >= run.measure_from:
                result.latencies.append(now - self._sent_at[seq])
            if now >= run.measure_from:
                run.measured += 1
                run.last_receipt = now
        result.stamped += 0 if bounced else stamped
        self.pump()


async def run_msg(target: Target, params: MsgParams, cpu_probe: Callable[[], float] | None = None) -> MsgResult:
    """Scenario ``msg``: log in accounts 1..2N (2i-1 sends to 2i), send, measure, log out.
    ``cpu_probe()``, the server's CPU seconds so far, read after the warm-up and at the end, gives server_cpu."""
    clients = await login_all(target, range(1, 2 * params.pairs + 1))
    try:
        loop = asyncio.get_running_loop()
        run = _MsgRun(params, time.perf_counter())
        pairs = [_Pair(run, clients[2 * i], clients[2 * i + 1]) for i in range(params.pairs)]
        stop = loop.call_later(params.duration, run.stop, pairs)
        if cpu_probe is not None:
            loop.call_later(params.warmup, run.start_window, cpu_probe)
        for pair in pairs:
            pair.pump()
        try:
            await asyncio.wait_for(run.finished.wait(), params.duration + params.drain)
        except TimeoutError:
            pass  # what is still in flight counts as lost
        stop.cancel()
        return run.finish()
    finally:
        for client in clients:
            client.close()


# -- running -----------------------------------------------------------------------------------
def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run on uvloop when it is installed, else on the default event loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """An option per scalar field of dataclass ``cls`` (``--user-prefix``...), with its default."""
    for item in dataclasses.fields(cls):
        flag = "--" + item.name.replace("_", "-")
        if isinstance(item.default, bool):
            parser.add_argument(flag, action="store_true")
        elif isinstance(item.default, (int, float, str)):
            parser.add_argument(flag, type=type(item.default), default=item.default)


def from_arguments(cls: type[_T], args: argparse.Namespace) -> _T:
    """``cls`` built from what ``add_arguments(parser, cls)`` parsed."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cast(Any, cls)) if hasattr(args, f.name)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a scenario against a server on loopback; prints JSON.")
    parser.add_argument("scenario", choices=("msg",))
    add_arguments(parser, Target)
    add_arguments(parser, MsgParams)
    args = parser.parse_args(argv)
    result = run(run_msg(from_arguments(Target, args), from_arguments(MsgParams, args)))
    print(json.dumps(result.summary()))
    return 0 if result.lost == 0 and result.bounced == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
