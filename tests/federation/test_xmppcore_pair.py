"""Two xmppcore nodes federate on loopback: EXTERNAL with a test CA, dialback with self-signed certificates.

``one.test`` and ``two.test`` each run the real server (sockets, TLS, storage); slixmpp clients log
in to each and talk across.  The nodes find each other through ``s2s.routes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SlixJID
from slixmpp.exceptions import IqError

from ..testca import make_ca
from .nodes import Node, free_port, node_config, running_node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ONE, TWO = "one.test", "two.test"


async def pair(stack: AsyncExitStack, tmp_path: Path, *, ca: bool, one: dict[str, Any] | None = None,
               two: dict[str, Any] | None = None) -> tuple[Node, Node]:
    """Start one.test and two.test routed to each other; with ``ca`` both carry CA-issued certificates."""
    ports = {ONE: free_port(), TWO: free_port()}
    routes = {domain: f"127.0.0.1:{port}" for domain, port in ports.items()}
    nodes = []
    authority = make_ca(tmp_path / "ca") if ca else None
    for domain, extra in ((ONE, one or {}), (TWO, two or {})):
        kwargs: dict[str, Any] = {}
        if authority is not None:
            kwargs["certificate"] = authority.issue([domain], tmp_path / f"cert-{domain}")
            kwargs["ca_file"] = authority.cert_path
        config = node_config(tmp_path, domain, s2s_port=ports[domain], routes=routes, **kwargs, **extra)
        nodes.append(await stack.enter_async_context(
            running_node(config, cafile=authority.cert_path if authority else None)))
    return nodes[0], nodes[1]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def users(stack: AsyncExitStack, one: Node, two: Node) -> tuple[Any, Any]:
    await one.add_user("alice")
    await two.add_user("bob")
    alice = await one.login("alice")
    bob = await two.login("bob")
    stack.push_async_callback(alice.disconnect)
    stack.push_async_callback(bob.disconnect)
    await alice.announce()  # available: messages to the bare JIDs reach them (RFC 6121 §8.5.2.1.1)
    await bob.announce()
    return alice, bob


async def chat_both_ways(alice: Any, bob: Any) -> None:
    alice.send_message("bob@two.test", "hello from one")
    received = await bob.receive("hello from one")
    assert str(received["from"]).startswith("alice@one.test/")
    bob.send_message(str(received["from"]), "hello from two")
    answer = await alice.receive("hello from two")
    assert str(answer["from"]).startswith("bob@two.test/")


@pytest.mark.parametrize("ca", [False, True], ids=["dialback", "external"])
async def test_two_nodes_chat_ping_and_answer_for_unknown_users(stack: AsyncExitStack, tmp_path: Path,
                                                               ca: bool) -> None:
    one, two = await pair(stack, tmp_path, ca=ca)
    alice, bob = await users(stack, one, two)
    await chat_both_ways(alice, bob)
    method = "EXTERNAL" if ca else "dialback"
    assert ("out", ONE, TWO, method) in [link[:4] for link in one.links()]
    assert ("in", TWO, ONE, method) in [link[:4] for link in two.links()]
    # XEP-0199 across: the remote server answers a ping to its domain, bob's client to his JID.
    reply = await alice.xmpp.plugin["xep_0199"].send_ping(SlixJID(TWO), timeout=10)
    assert reply is not None
    # RFC 6121 §8.5.2.2: a message to a user the remote server does not have comes back.
    alice.send_message("nobody@two.test", "anyone?")
    error = await alice.messages.get(lambda m: m["type"] == "error" and str(m["from"]) == "nobody@two.test")
    assert error["error"]["condition"] == "service-unavailable"
    with pytest.raises(IqError) as failure:
        await alice.xmpp.plugin["xep_0199"].send_ping(SlixJID("nobody@two.test/x"), timeout=10)
    assert failure.value.iq["error"]["condition"] == "service-unavailable"


async def test_bidi_carries_the_answer_on_the_callers_connection(stack: AsyncExitStack, tmp_path: Path) -> None:
    one, two = await pair(stack, tmp_path, ca=True)
    alice, bob = await users(stack, one, two)
    await chat_both_ways(alice, bob)
    # XEP-0288: two.test answered over the stream one.test opened; it opened none of its own.
    assert [link[0] for link in two.links()] == ["in"]
    assert two.links()[0][4] is True
    assert [link[0] for link in one.links()] == ["out"]


async def test_without_bidi_each_direction_has_its_stream(stack: AsyncExitStack, tmp_path: Path) -> None:
    one, two = await pair(stack, tmp_path, ca=True, one={"bidi": False}, two={"bidi": False})
    alice, bob = await users(stack, one, two)
    await chat_both_ways(alice, bob)
    assert sorted(link[0] for link in two.links()) == ["in", "out"]


async def test_presence_subscription_reaches_both(stack: AsyncExitStack, tmp_path: Path) -> None:
    one, two = await pair(stack, tmp_path, ca=False)
    alice, bob = await users(stack, one, two)
    alice.xmpp.send_presence(pto="bob@two.test", ptype="subscribe")
    await bob.presences.get(lambda p: p["type"] == "subscribe" and str(p["from"]) == "alice@one.test")
    bob.xmpp.send_presence(pto="alice@one.test", ptype="subscribed")
    bob.xmpp.send_presence(pto="alice@one.test", ptype="subscribe")
    await alice.presences.get(lambda p: p["type"] == "subscribe" and str(p["from"]) == "bob@two.test")
    alice.xmpp.send_presence(pto="bob@two.test", ptype="subscribed")
    # Both now see each other's availability (RFC 6121 §3.1.6, §4.2).
    await alice.presences.get(lambda p: p["type"] == "available" and str(p["from"]).startswith("bob@two.test/"))
    await bob.presences.get(lambda p: p["type"] == "available" and str(p["from"]).startswith("alice@one.test/"))
    for client, contact in ((alice, "bob@two.test"), (bob, "alice@one.test")):
        await client.xmpp.get_roster()
        assert client.xmpp.client_roster[contact]["subscription"] == "both"


async def test_a_peer_without_a_valid_certificate_is_refused_when_required(stack: AsyncExitStack,
                                                                          tmp_path: Path) -> None:
    one, two = await pair(stack, tmp_path, ca=False, one={"require_valid_certificates": True})
    alice, bob = await users(stack, one, two)
    alice.send_message("bob@two.test", "over an unverified link?")
    error = await alice.messages.get(lambda m: m["type"] == "error")
    assert error["error"]["condition"] == "remote-server-not-found"
    bob.send_message("alice@one.test", "and the other way?")
    error = await bob.messages.get(lambda m: m["type"] == "error")
    assert error["error"]["condition"] == "remote-server-not-found"
    assert bob.messages.pending == [] and [m for m in alice.messages.pending if m["type"] != "error"] == []
