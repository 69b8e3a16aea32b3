"""Stanzas for other servers queue while a stream is set up, bounce when the peer cannot be had,
and streams close when idle (RFC 6120 §4.6, §10.4.3, §8.3.3.14–15, §8.3.3.17)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from .nodes import free_port, node_config, running_node, until_links

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def silent_peer() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_unreachable_domain_bounces_with_remote_server_not_found(stack: AsyncExitStack,
                                                                          tmp_path: Path) -> None:
    closed = free_port()  # nobody listens there
    one = await stack.enter_async_context(running_node(node_config(
        tmp_path, "one.test", s2s_port=-1, routes={"gone.test": f"127.0.0.1:{closed}"})))
    await one.add_user("alice")
    alice = await one.login("alice")
    stack.push_async_callback(alice.disconnect)
    alice.send_message("someone@gone.test", "are you there?")
    error = await alice.messages.get(lambda m: m["type"] == "error")
    assert error["error"]["condition"] == "remote-server-not-found"
    assert str(error["from"]) == "someone@gone.test"


async def test_a_peer_that_never_answers_times_out_and_the_queue_is_bounded(
        stack: AsyncExitStack, tmp_path: Path, silent_peer: int) -> None:
    one = await stack.enter_async_context(running_node(node_config(
        tmp_path, "one.test", s2s_port=-1, routes={"hung.test": f"127.0.0.1:{silent_peer}"},
        connect_timeout=1.5, max_queued_per_domain=2)))
    await one.add_user("alice")
    alice = await one.login("alice")
    stack.push_async_callback(alice.disconnect)
    for n in range(3):
        alice.send_message("someone@hung.test", f"message {n}")
    # The third does not fit in the queue: refused at once (§8.3.3.18 resource-constraint).
    first = await alice.messages.get(lambda m: m["type"] == "error")
    assert (first["body"], first["error"]["condition"]) == ("message 2", "resource-constraint")
    # The two queued ones wait for the stream, then come back with remote-server-timeout.
    for n in range(2):
        error = await alice.messages.get(lambda m, n=n: m["type"] == "error" and m["body"] == f"message {n}")
        assert error["error"]["condition"] == "remote-server-timeout"


async def test_messages_sent_while_the_stream_is_set_up_arrive_in_order(stack: AsyncExitStack,
                                                                        tmp_path: Path) -> None:
    ports = {"one.test": free_port(), "two.test": free_port()}
    routes = {domain: f"127.0.0.1:{port}" for domain, port in ports.items()}
    one = await stack.enter_async_context(running_node(node_config(tmp_path, "one.test", s2s_port=ports["one.test"], routes=routes)))
    two = await stack.enter_async_context(running_node(node_config(tmp_path, "two.test", s2s_port=ports["two.test"], routes=routes)))
    await one.add_user("alice")
    await two.add_user("bob")
    alice, bob = await one.login("alice"), await two.login("bob")
    stack.push_async_callback(alice.disconnect)
    stack.push_async_callback(bob.disconnect)
    await bob.announce()
    for n in range(20):  # all before the stream exists: they queue, then flow in order
        alice.send_message("bob@two.test", f"m{n}")
    got = [await bob.messages.get(lambda m: m["body"].startswith("m")) for _ in range(20)]
    assert [m["body"] for m in got] == [f"m{n}" for n in range(20)]


async def test_idle_streams_close_and_reopen_when_needed(stack: AsyncExitStack, tmp_path: Path) -> None:
    ports = {"one.test": free_port(), "two.test": free_port()}
    routes = {domain: f"127.0.0.1:{port}" for domain, port in ports.items()}
    one = await stack.enter_async_context(running_node(node_config(
        tmp_path, "one.test", s2s_port=ports["one.test"], routes=routes, idle_timeout=1.0)))
    two = await stack.enter_async_context(running_node(node_config(
        tmp_path, "two.test", s2s_port=ports["two.test"], routes=routes, idle_timeout=1.0)))
    await one.add_user("alice")
    await two.add_user("bob")
    alice, bob = await one.login("alice"), await two.login("bob")
    stack.push_async_callback(alice.disconnect)
    stack.push_async_callback(bob.disconnect)
    await bob.announce()
    alice.send_message("bob@two.test", "first")
    await bob.receive("first")
    assert one.links()
    await until_links([one, two], lambda: not one.links() and not two.links())  # the idle streams close
    alice.send_message("bob@two.test", "second")
    await bob.receive("second")


async def test_server_connections_beyond_the_limit_are_refused(stack: AsyncExitStack, tmp_path: Path) -> None:
    from xmppcore.stanza.errors import StreamCondition

    from .rawpeer import RawPeer

    two = await stack.enter_async_context(running_node(node_config(
        tmp_path, "two.test", s2s_port=free_port(), routes={}, max_connections=1)))
    first = await RawPeer.open(*two.s2s, claimed="a.test", target="two.test")
    await first.open_server_stream()
    second = await RawPeer.open(*two.s2s, claimed="b.test", target="two.test")
    await second.send_header(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server'"
                             b" xmlns:stream='http://etherx.jabber.org/streams' from='b.test' to='two.test'"
                             b" version='1.0'>")
    assert await second.expect_stream_error() is StreamCondition.RESOURCE_CONSTRAINT
    # The first one is unaffected: it still negotiates.
    assert (await first.secure()).name == "features"
