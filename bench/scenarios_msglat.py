"""Scenario ``msglat`` for the load generator: latency at a fixed offered rate (open loop).

``pairs`` sender/receiver pairs (accounts 2i-1 → 2i) share an offered ``rate`` of chat messages
per second, sent on a fixed tick whatever the server's answers, for ``duration`` seconds; the
latency of each message from its send tick to its arrival at the receiver gives percentiles.
Unlike ``msg`` (closed loop, a window in flight), a slow server here builds a queue, and the
percentiles show it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import Client, Target, _scanner, login_all, percentile
from xmppcore.xml.serializer import escape_attr, escape_text

__all__ = ["LatParams", "LatResult", "run_msglat"]

_TICK = 0.005  # seconds between send batches


@dataclass(frozen=True)
class LatParams:
    """One ``msglat`` run."""

    rate: float = 500.0      # offered messages/s, all pairs together
    pairs: int = 20
    duration: float = 10.0   # seconds of sending
    warmup: float = 1.0      # seconds whose messages are not counted
    drain: float = 10.0
    body: str = "Hello! This is a benchmark message of a typical chat length, about 70 bytes."


@dataclass
class LatResult:
    offered: float = 0.0
    achieved: float = 0.0     # messages/s sent
    sent: int = 0
    received: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "latencies"} | {"lost": self.lost}


class _Paced:
    def __init__(self, params: LatParams, clients: list[Client]) -> None:
        self.params = params
        self.result = LatResult(offered=params.rate)
        self.sent_at: list[float] = []
        self.arrived = bytearray()
        self.all_in = asyncio.Event()
        self.done_sending = False
        self.measure_from = time.perf_counter() + params.warmup
        self.senders = clients[0::2]
        body = escape_text(params.body)
        self.frames = [(f"<message type='chat' to='{escape_attr(r.jid)}' id='m".encode(),
                        f"'><body>{body}</body></message>".encode()) for r in clients[1::2]]
        for receiver in clients[1::2]:
            receiver.sink = _scanner(lambda ids, _stamped, now: self.settle(ids, now))

    def settle(self, ids: list[bytes], now: float) -> None:
        for raw in ids:
            seq = int(raw)
            if seq < len(self.arrived) and not self.arrived[seq]:
                self.arrived[seq] = 1
                self.result.received += 1
                if self.sent_at[seq] >= self.measure_from:
                    self.result.latencies.append(now - self.sent_at[seq])
        if self.done_sending and self.result.received == len(self.sent_at):
            self.all_in.set()

    def send(self, count: int, now: float) -> None:
        """``count`` messages round-robin over the pairs, each write a batch of one sender's."""
        batches: dict[int, list[bytes]] = {}
        for _ in range(count):
            seq = len(self.sent_at)
            pair = seq % len(self.senders)
            prefix, suffix = self.frames[pair]
            batches.setdefault(pair, []).append(prefix + str(seq).encode() + suffix)
            self.sent_at.append(now)
            self.arrived.append(0)
        for pair, frames in batches.items():
            self.senders[pair].write(b"".join(frames))
        self.result.sent += count


async def run_msglat(target: Target, params: LatParams) -> LatResult:
    """Scenario ``msglat``: log in accounts 1..2·pairs, send at ``rate``, report percentiles."""
    clients = await login_all(target, range(1, 2 * params.pairs + 1))
    try:
        paced = _Paced(params, clients)
        start = time.perf_counter()
        while (now := time.perf_counter()) < start + params.duration:
            due = int((now - start) * params.rate) - paced.result.sent
            if due > 0:
                paced.send(due, now)
            await asyncio.sleep(_TICK)
        if (due := int(params.duration * params.rate) - paced.result.sent) > 0:
            paced.send(due, time.perf_counter())  # the last tick's share: rate × duration in all
        paced.done_sending = True
        paced.result.achieved = paced.result.sent / params.duration
        if paced.result.received < paced.result.sent:
            try:
                await asyncio.wait_for(paced.all_in.wait(), params.drain)
            except TimeoutError:
                pass  # what is missing counts as lost
        return _finish(paced.result)
    finally:
        for client in clients:
            client.close()


def _finish(result: LatResult) -> LatResult:
    ordered = result.latencies = sorted(result.latencies)
    result.p50_ms, result.p90_ms = percentile(ordered, 0.5) * 1000, percentile(ordered, 0.9) * 1000
    result.p99_ms, result.p999_ms = percentile(ordered, 0.99) * 1000, percentile(ordered, 0.999) * 1000
    result.max_ms = (ordered[-1] if ordered else 0.0) * 1000
    return result
