"""The TCP pump's timers (transport/tcp.py): the core's deadline is never missed when it moves
earlier or later, and a core whose peer stops sending is told it is ``quiet()`` once per pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from xmppcore.protocol import events as ev
from xmppcore.transport import tcp
from xmppcore.transport.tcp import StreamTransport

WAIT = 5.0


@dataclass
class FakeCore:
    """A core that asks for the deadline a test sets and records what the pump did."""

    deadline: float | None = None
    received: list[bytes] = field(default_factory=list)
    timer_calls: list[float] = field(default_factory=list)
    quiet_calls: int = 0
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def receive_data(self, data: bytes, *, now: float) -> None:
        self.received.append(data)
        self.changed.set()

    def connection_lost(self) -> None:
        self.closed = True

    def pop_events(self) -> list[ev.Event]:
        return []

    def data_to_send(self) -> bytes:
        return b""

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        self.changed.set()

    def quiet(self) -> None:
        self.quiet_calls += 1
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until ``condition`` holds, checking after each thing the pump did."""
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), WAIT)


@dataclass
class FakeHandler:
    core: FakeCore

    def handle_event(self, event: ev.Event) -> None:
        pass

    def transport_closed(self) -> None:
        pass


@dataclass
class Link:
    core: FakeCore
    writer: asyncio.StreamWriter


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    core = FakeCore()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StreamTransport(lambda t: FakeHandler(core)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Link(core, writer)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


async def test_a_deadline_moved_earlier_is_rearmed(link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "QUIET_AFTER", 3600.0)  # no quiet spell to wake the pump meanwhile
    core, loop = link.core, asyncio.get_running_loop()
    core.deadline = loop.time() + 3600  # armed on connect
    link.writer.write(b"a")
    await core.until(lambda: core.received)
    soon = core.deadline = loop.time() + 0.01
    link.writer.write(b"b")  # the pump runs after it and must arm the earlier deadline
    await core.until(lambda: any(now >= soon for now in core.timer_calls))  # not an hour later


async def test_a_deadline_moved_later_is_still_met(link: Link) -> None:
    core, loop = link.core, asyncio.get_running_loop()
    core.deadline = loop.time() + 0.01
    link.writer.write(b"a")
    await core.until(lambda: core.received)
    later = core.deadline = loop.time() + 0.2
    link.writer.write(b"b")  # the timer armed for the earlier deadline may fire first; then the later one
    await core.until(lambda: any(now >= later for now in core.timer_calls))


async def test_the_core_is_told_once_per_quiet_spell(link: Link, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "QUIET_AFTER", 0.01)
    core = link.core
    link.writer.write(b"a")
    await core.until(lambda: core.quiet_calls == 1)
    assert core.received == [b"a"]
    link.writer.write(b"b")
    await core.until(lambda: core.quiet_calls == 2)
    assert core.received == [b"a", b"b"]
