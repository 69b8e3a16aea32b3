"""The roster cache (modules/roster_store.py): reads come from memory, and no change is missed."""

from __future__ import annotations

import asyncio
from typing import Any

from xmppcore.jid import JID
from xmppcore.modules.roster_store import RosterItem, RosterStore
from xmppcore.modules.subscription import SubState
from xmppcore.storage import create_driver
from xmppcore.storage.api import MapStore


class CountingMap:
    """A MapStore that counts whole-roster reads and can hold them until told to go on."""

    def __init__(self, inner: MapStore) -> None:
        self.inner = inner
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def get_all(self, user: str) -> Any:
        self.reads += 1
        docs = await self.inner.get_all(user)
        if self.gate is not None:
            await self.gate.wait()
        return docs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _store() -> tuple[RosterStore, CountingMap]:
    driver = create_driver("memory")
    await driver.open()
    items = CountingMap(driver.map("localhost", "roster"))
    return RosterStore(items, driver.keyval("localhost", "roster_version")), items  # type: ignore[arg-type]


async def test_a_roster_is_read_once_and_every_change_shows() -> None:
    store, items = await _store()
    bob, carol = JID.parse("bob@localhost"), JID.parse("carol@localhost")
    await store.put("alice", RosterItem(bob))
    assert [i.jid for i in await store.all("alice")] == [bob]
    assert [i.jid for i in await store.all("alice")] == [bob]
    assert items.reads == 1
    await store.put("alice", RosterItem(carol, state=SubState.BOTH))
    assert [(i.jid, i.state) for i in await store.all("alice")] == [(bob, SubState.NONE), (carol, SubState.BOTH)]
    assert await store.get("alice", carol) == RosterItem(carol, state=SubState.BOTH)
    await store.delete("alice", bob)
    assert [i.jid for i in await store.all("alice")] == [carol]
    await store.delete_user("alice")
    assert await store.all("alice") == []


async def test_a_read_that_overlaps_a_write_is_not_kept() -> None:
    store, items = await _store()
    bob = JID.parse("bob@localhost")
    items.gate = asyncio.Event()
    reading = asyncio.ensure_future(store.all("alice"))
    await asyncio.sleep(0)  # a yield: the read has fetched the empty roster and waits at the gate
    items.gate.set()
    await store.put("alice", RosterItem(bob))  # lands while the read is still on its way back
    items.gate = None
    await reading
    assert [i.jid for i in await store.all("alice")] == [bob]
