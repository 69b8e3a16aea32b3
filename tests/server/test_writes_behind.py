"""server/writes_behind.py: background writes per key, and reads that wait for them."""

from __future__ import annotations

import asyncio
import logging

import pytest

from xmppcore.server.writes_behind import WritesBehind

log = logging.getLogger("test.writes_behind")


async def test_writes_of_a_key_run_in_the_order_started_and_settled_waits_for_the_last() -> None:
    loop = asyncio.get_running_loop()
    writes = WritesBehind(log)
    done: list[str] = []
    first_gate: asyncio.Future[None] = loop.create_future()

    async def first() -> None:
        await first_gate  # the first write is slow
        done.append("first")

    async def second() -> None:
        done.append("second")

    writes.start("alice", first)
    writes.start("alice", second)
    writes.start("bob", lambda: asyncio.sleep(0))  # another key does not wait for alice's
    await writes.settled("bob")
    assert done == []
    settled = asyncio.ensure_future(writes.settled("alice"))
    await asyncio.sleep(0)
    assert not settled.done()
    first_gate.set_result(None)
    await settled
    assert done == ["first", "second"]


async def test_a_failed_write_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    writes = WritesBehind(log)
    done: list[str] = []

    async def failing() -> None:
        raise OSError("disk full")

    async def after() -> None:
        done.append("after")

    writes.start("alice", failing)
    writes.start("alice", after)
    with caplog.at_level(logging.ERROR, logger=log.name):
        await writes.settled("alice")  # never raises
    assert done == ["after"]
    assert "disk full" in caplog.text


async def test_settled_without_writes_returns_at_once() -> None:
    await WritesBehind(log).settled("nobody")
