"""Scenario ``presence`` for the load generator: presence fan-out to rosters (RFC 6121 §4.4).

``users`` accounts on a ring, each with the ``contacts`` nearest (half on either side) in its
roster with subscription ``both``; the rosters are written before the server starts, through
its own storage (``create_rosters``).  All users log in (initial presence, §4.2), then each
sends ``rounds`` presence updates with an id of ours; the server must deliver each to every
contact (one resource each), so ``users × rounds × contacts`` deliveries are expected.  Reports
deliveries/s from the first update sent to the last delivery, and what was missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Client, Target, login_all
from xmppcore.config import load_config
from xmppcore.jid import JID
from xmppcore.modules.roster_store import RosterItem
from xmppcore.modules.subscription import SubState
from xmppcore.server.app import Server

__all__ = ["PresenceParams", "PresenceResult", "contacts_of", "create_rosters", "run_presence"]

# Our updates: id='p<sender>-<round>'; attribute order and quotes vary by server.
_PRESENCE_ID = re.compile(rb"<presence\b[^>]*?\sid=[\"']p(\d+)-\d+[\"']")
_PRESENCE_END = b"</presence>"


@dataclass(frozen=True)
class PresenceParams:
    users: int = 1000
    contacts: int = 20        # per user, even
    rounds: int = 5           # presence updates per user
    concurrency: int = 100    # logins at once
    timeout: float = 60.0     # seconds to wait for every delivery


@dataclass
class PresenceResult:
    rate: float = 0.0         # deliveries/s
    expected: int = 0
    delivered: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"lost": self.lost}


def contacts_of(index: int, params: PresenceParams) -> list[int]:
    """User ``index``'s contacts (1-based ring): the ``contacts / 2`` on either side."""
    if params.contacts % 2 or params.contacts >= params.users:
        raise ValueError("contacts must be even and fewer than users")
    half = params.contacts // 2
    return [(index - 1 + k) % params.users + 1 for k in range(-half, half + 1) if k]


async def create_rosters(config_file: Path, target: Target, params: PresenceParams) -> None:
    """Write every user's roster (``both`` with each contact) into the server's storage, offline."""
    server = Server(load_config(config_file))
    await server.open()
    try:
        items, versions = server.storage.map(target.domain, "roster"), server.storage.keyval(target.domain, "roster_version")
        for index in range(1, params.users + 1):
            user = f"{target.user_prefix}{index}"
            for contact in contacts_of(index, params):
                item = RosterItem(JID.parse(target.jid(contact)), state=SubState.BOTH)
                await items.set(user, str(item.jid), item.to_json())
            await versions.set(user, {"epoch": "bench", "n": 1})
    finally:
        await server.storage.close()


def _counter(own: int, on_count: Callable[[int, float], None]) -> Callable[[bytes], None]:
    """A sink counting our presence updates from others in a raw byte stream."""
    tail = b""
    mine = str(own).encode()

    def scan(data: bytes) -> None:
        nonlocal tail
        buf = tail + data if tail else data
        end = buf.rfind(_PRESENCE_END) + len(_PRESENCE_END)
        if end < len(_PRESENCE_END):
            tail = buf[-(1 << 20):]
            return
        tail = buf[end:]
        found = sum(1 for sender in _PRESENCE_ID.findall(buf, 0, end) if sender != mine)
        if found:
            on_count(found, time.perf_counter())
    return scan


async def run_presence(target: Target, params: PresenceParams) -> PresenceResult:
    """Scenario ``presence``: log in accounts 1..users, send the updates, count deliveries."""
    clients: list[Client] = await login_all(target, range(1, params.users + 1), params.concurrency)
    result = PresenceResult(expected=params.users * params.rounds * params.contacts)
    done, last = asyncio.Event(), [0.0]
    try:
        def on_count(count: int, now: float) -> None:
            result.delivered += count
            last[0] = now
            if result.delivered >= result.expected:
                done.set()
        for index, client in enumerate(clients, 1):
            client.sink = _counter(index, on_count)
        start = time.perf_counter()
        for index, client in enumerate(clients, 1):
            client.write(b"".join(f"<presence id='p{index}-{r}'><status>round {r}</status></presence>".encode()
                                  for r in range(params.rounds)))
        try:
            await asyncio.wait_for(done.wait(), params.timeout)
        except TimeoutError:
            pass  # what is missing counts as lost
        result.seconds = max(last[0] - start, 1e-9)
        result.rate = result.delivered / result.seconds
        return result
    finally:
        for client in clients:
            client.close()
