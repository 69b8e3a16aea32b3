"""What a message's archive copies promise, through the real server on loopback (SQLite storage).

A client's stanzas are routed in order, and the routing of one does not wait for the commit of
the archive copies it wrote (server/durability.py): the next stanza is routed at once.  But
nobody sees a stanza-id before its entry is committed — the recipient's session holds the
message, and everything after it, until then — and XEP-0198 acknowledges a message only once
both copies are committed.

The commit is held up by a gate in front of the SQLite driver's thread: while it is closed,
every round of statements waits on the thread, the event loop goes on.  Raw clients
(:mod:`.rawclient`) say exactly what goes over the wire.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xmppcore.config import resolved_storage_path
from xmppcore.storage.sqlite_thread import SqliteThread
from xmppcore.xml.element import Element

from .conftest import RunningServer
from .rawclient import RawClient
from .test_mam import SID, login, mam_config, next_stanza, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SM = "urn:xmpp:sm:3"
CHAT_STATES = "http://jabber.org/protocol/chatstates"
NOT_BEFORE_THE_COMMIT = 0.3  # seconds a stanza that must not come yet is waited for


class Gate:
    """Holds every round of SQLite statements on the driver's thread while closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._open = threading.Event()
        self._open.set()
        submit = SqliteThread.submit
        is_open = self._open

        def gated(thread: SqliteThread, fn: Callable[[sqlite3.Connection], Any]) -> Any:
            def after_the_gate(conn: sqlite3.Connection) -> Any:
                is_open.wait(timeout=30)
                return fn(conn)
            return submit(thread, after_the_gate)

        monkeypatch.setattr(SqliteThread, "submit", gated)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()


async def enable_sm(client: RawClient) -> None:
    await client.send(f"<enable xmlns='{SM}'/>")
    await client.wait_for(lambda el: (el.ns, el.name) == (SM, "enabled"))


async def acked(client: RawClient) -> int:
    await client.send(f"<r xmlns='{SM}'/>")
    answer = await client.wait_for(lambda el: (el.ns, el.name) == (SM, "a"))
    return int(answer.get("h") or "-1")


async def alice_with_sm_and_bob_available(server: RunningServer) -> tuple[RawClient, RawClient]:
    """Alice logged in with XEP-0198 enabled, bob logged in and available."""
    await server.add_user("alice")
    await server.add_user("bob")
    alice, bob = await login(server, "alice", "home"), await login(server, "bob", "pc")
    await enable_sm(alice)
    await bob.send("<presence/>")
    await next_stanza(bob, "presence")
    return alice, bob


def archived_ids(database: Path, user: str) -> set[int]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {row[0] for row in conn.execute(
            "SELECT id FROM archive WHERE store = 'mam' AND \"user\" = ?", (user,))}


async def test_the_stream_goes_on_while_a_commit_runs_and_nothing_is_seen_or_acked_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(monkeypatch)
    config = mam_config(tmp_path)
    database = resolved_storage_path(config)
    async with running(config) as server:
        try:
            alice, bob = await alice_with_sm_and_bob_available(server)
            # A first message loads what the routing reads from storage (preferences and such).
            await alice.send("<message to='bob@localhost' type='chat' id='m0'><body>0</body></message>")
            assert (await next_stanza(bob, "message")).get("id") == "m0"
            assert await acked(alice) == 1

            gate.close()
            await alice.send(
                "<message to='bob@localhost' type='chat' id='m1'><body>1</body></message>"
                f"<message to='bob@localhost' type='chat' id='m2'><active xmlns='{CHAT_STATES}'/></message>"
                "<iq to='localhost' type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
            # The ping after m1 is answered while m1's archive copies wait for their commit...
            reply = await alice.wait_for(lambda el: el.name == "iq")
            assert (reply.get("id"), reply.get("type")) == ("ping", "result")
            # ...but none of the three counts as handled yet: the server answers <r/> once every
            # stanza received before it is (XEP-0198 §4), and bob has neither m1 nor the chat
            # state behind it, which is not archived, nor the answer to his own ping after them.
            await alice.send(f"<r xmlns='{SM}'/>")
            await bob.send("<iq to='localhost' type='get' id='bob-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
            with pytest.raises(TimeoutError):
                await bob.next_element(timeout=NOT_BEFORE_THE_COMMIT)
            with pytest.raises(TimeoutError):
                await alice.next_element(timeout=NOT_BEFORE_THE_COMMIT)
            assert len(archived_ids(database, "bob")) == 1  # only m0's copy is committed

            gate.open()
            first = await bob.next_element()
            assert (first.name, first.get("id")) == ("message", "m1")
            stamp = first.find("stanza-id", SID)
            assert stamp is not None and stamp.get("by") == "bob@localhost"
            assert len(archived_ids(database, "bob")) == 2  # committed before bob saw its id
            second, third = await bob.next_element(), await bob.next_element()
            assert [(el.name, el.get("id")) for el in (second, third)] == [("message", "m2"), ("iq", "bob-ping")]
            assert second.find("active", CHAT_STATES) is not None and second.find("stanza-id", SID) is None
            answer = await alice.next_element()
            assert (answer.ns, answer.name, answer.get("h")) == (SM, "a", "4")  # m0, m1, m2 and the ping
            assert len(archived_ids(database, "alice")) == 2  # the sender's copies of m0 and m1
        finally:
            gate.open()


async def test_a_burst_is_delivered_in_order_with_every_id_committed(tmp_path: Path) -> None:
    config = mam_config(tmp_path)
    database = resolved_storage_path(config)
    count = 300
    async with running(config) as server:
        alice, bob = await alice_with_sm_and_bob_available(server)
        burst = "".join(
            f"<message to='bob@localhost' type='chat' id='m{n}'><body>{n}</body></message>" if n % 3
            else f"<message to='bob@localhost' type='chat' id='m{n}'><composing xmlns='{CHAT_STATES}'/></message>"
            for n in range(count))
        await alice.send(burst)
        seen: list[str] = []
        stamped: list[int] = []
        for _ in range(count):
            message: Element = await next_stanza(bob, "message")
            seen.append(message.get("id") or "")
            stamp = message.find("stanza-id", SID)
            if stamp is not None:
                stamped.append(len(seen) - 1)
        assert seen == [f"m{n}" for n in range(count)]  # RFC 6120 §10.1: in the order sent
        assert stamped == [n for n in range(count) if n % 3]  # only those with a body are archived
        assert len(archived_ids(database, "bob")) == len(stamped)
        assert await acked(alice) == count
