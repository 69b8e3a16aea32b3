"""KeyedLock: one lock per key, forgotten once nobody holds or waits for it."""

from __future__ import annotations

import asyncio

from xmppcore.server.keyed_lock import KeyedLock


async def test_same_key_is_serialised_other_keys_are_not() -> None:
    locks = KeyedLock()
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.locked("alice"):
            order.append("first in")
            inside.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.locked("alice"):
            order.append("second in")

    task1 = asyncio.ensure_future(first())
    await inside.wait()
    task2 = asyncio.ensure_future(second())
    async with locks.locked("bob"):       # another key is not blocked by alice's holder
        order.append("bob")
    release.set()
    await asyncio.gather(task1, task2)
    assert order == ["first in", "bob", "first out", "second in"]
    assert len(locks) == 0                # nothing left behind


async def test_an_exception_releases_and_forgets_the_lock() -> None:
    locks = KeyedLock()
    try:
        async with locks.locked("alice"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0
    async with locks.locked("alice"):
        assert len(locks) == 1
