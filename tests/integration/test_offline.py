"""XEP-0160 offline messages with XEP-0203 delay, end to end: real clients, real SQLite, a real restart.

A message to an account with no session is stored; the server is stopped and started again on
the same data directory; the recipient logs in with slixmpp (or aioxmpp) and receives it with
a delay stamp both libraries parse.  Nothing here sleeps: an XEP-0199 ping round trip is the
barrier that proves the sender's earlier stanzas were routed (RFC 6120 §10.1 keeps them in order).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import aioxmpp  # type: ignore[import-untyped]
import aioxmpp.ping  # type: ignore[import-untyped]
import pytest
from slixmpp import JID

from xmppcore.config import Config

from .clients import AioClient, SlixClient, SlixPool, starttls
from .conftest import PASSWORD, RunningServer, make_config, start_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(20),
    pytest.mark.filterwarnings("ignore:as of aioxmpp 1.0, PresenceType:DeprecationWarning"),
]


def offline_config(tmp_path: Path) -> Config:
    """The integration test configuration with the offline module loaded."""
    config = make_config(tmp_path)
    enabled = config.modules.enabled
    if "offline" not in enabled:
        enabled = (*enabled, "offline")
    return dataclasses.replace(config, modules=dataclasses.replace(config.modules, enabled=enabled))


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[list[RunningServer]]:
    """The servers a test started (each stopped at the end, if it still runs)."""
    servers: list[RunningServer] = []
    yield servers
    for server in servers:
        await server.server.stop()


async def start(running: list[RunningServer], config: Config) -> RunningServer:
    server = await start_server(config)
    running.append(server)
    return server


async def stored_for(server: RunningServer, user: str) -> int:
    return await server.server.storage.archive(server.domain, "offline").count(user)


async def barrier(client: SlixClient) -> None:
    """An XEP-0199 ping to the server: everything the client sent before it has been routed."""
    await client.xmpp.plugin["xep_0199"].ping(JID(client.xmpp.boundjid.domain), timeout=5)


async def test_an_offline_message_survives_a_restart(tmp_path: Path, running: list[RunningServer]) -> None:
    config = offline_config(tmp_path)
    first = await start(running, config)
    await first.add_user("alice")
    await first.add_user("bob")
    before = datetime.datetime.now(datetime.timezone.utc)
    async with SlixPool(first) as pool:
        alice = await pool.login("alice", "laptop", plugins=("xep_0199",))
        alice.send_message("bob@localhost", "see you after the restart")
        await barrier(alice)
    after = datetime.datetime.now(datetime.timezone.utc)
    assert await stored_for(first, "bob") == 1
    await first.server.stop()

    second = await start(running, config)
    async with SlixPool(second) as pool:
        bob = await pool.login("bob", "phone", plugins=("xep_0199", "xep_0203"))
        bob.xmpp.send_presence()  # initial presence: the stored message follows (XEP-0160 §2)
        message = await bob.receive("see you after the restart")
        assert (str(message["from"]), str(message["to"]), message["type"]) == (
            "alice@localhost/laptop", "bob@localhost", "chat")
        delay = message["delay"]
        assert str(delay["from"]) == "localhost"
        # XEP-0203 §3: the stamp is when the server took the message, in UTC (millisecond precision).
        assert before - datetime.timedelta(milliseconds=1) <= delay["stamp"] <= after
        assert delay["stamp"].utcoffset() == datetime.timedelta(0)
        await barrier(bob)
        assert await stored_for(second, "bob") == 0  # delivered, then deleted


async def test_the_limit_holds_across_a_restart(tmp_path: Path, running: list[RunningServer]) -> None:
    config = offline_config(tmp_path)
    config = dataclasses.replace(config, modules=dataclasses.replace(
        config.modules, options={**config.modules.options, "offline": {"max_messages": 2}}))
    first = await start(running, config)
    await first.add_user("alice")
    await first.add_user("bob")
    async with SlixPool(first) as pool:
        alice = await pool.login("alice", "laptop", plugins=("xep_0199",))
        alice.send_message("bob@localhost", "one")
        alice.send_message("bob@localhost", "two")
        await barrier(alice)
    await first.server.stop()

    second = await start(running, config)
    async with SlixPool(second) as pool:
        alice = await pool.login("alice", "laptop")
        alice.send_message("bob@localhost", "three")
        refused = await alice.messages.get(lambda m: m["type"] == "error")
        assert (str(refused["from"]), refused["error"]["condition"]) == ("bob@localhost", "service-unavailable")
        bob = await pool.login("bob", "phone")
        bob.xmpp.send_presence()
        assert [(await bob.receive(body))["body"] for body in ("one", "two")] == ["one", "two"]


async def test_aioxmpp_reads_the_delay_stamp(tmp_path: Path, running: list[RunningServer]) -> None:
    server = await start(running, offline_config(tmp_path))
    await server.add_user("alice")
    await server.add_user("bob")
    endpoint = starttls(server)
    before = datetime.datetime.now(datetime.timezone.utc)
    alice = await AioClient("alice@localhost/tablet", PASSWORD, endpoint).connect()
    try:
        await alice.send_message("bob@localhost", "stored for aioxmpp")
        await aioxmpp.ping.ping(alice.client, aioxmpp.JID.fromstr("localhost"))  # the barrier
    finally:
        await alice.stop()
    assert await stored_for(server, "bob") == 1
    bob = await AioClient("bob@localhost/watch", PASSWORD, endpoint).connect()
    try:
        await bob.announce()
        got = await bob.receive("stored for aioxmpp")
        assert (str(got.from_), got.type_) == ("alice@localhost/tablet", aioxmpp.MessageType.CHAT)
        [delay] = got.xep0203_delay
        assert str(delay.from_) == "localhost"
        assert before - datetime.timedelta(milliseconds=1) <= delay.stamp <= datetime.datetime.now(datetime.timezone.utc)
    finally:
        await bob.stop()
