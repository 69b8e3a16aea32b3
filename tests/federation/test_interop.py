"""xmppcore federates with ejabberd 23.01 and Prosody 0.12 from Debian's packages (RFC 6120 §2.5).

xmppcore serves ``xmppcore.test`` with its s2s listener on 127.0.0.4:5269, where both reference
servers find it through ``/etc/hosts`` (``federation-config/hosts.sh``); it reaches them through
``s2s.routes``.  Their certificates are self-signed and so is ours: every stream is authenticated
with Server Dialback (XEP-0220) after STARTTLS.  In both directions, with each peer: chat messages
arrive, pings are answered, a presence subscription reaches ``both`` on both sides, and a message
to an account that does not exist comes back with ``service-unavailable``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from ..integration.clients import SlixClient
from .nodes import Node, node_config, running_node
from .peers import (
    EJABBERD, PROSODY, S2S_TIMEOUT, XMPPCORE_ADDRESS, XMPPCORE_DOMAIN, PeerClients, PeerPool, RunningPeer, ping,
    require_peer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PEER_NAMES = ["ejabberd", "prosody"]


@pytest.fixture(scope="module")
def reference_peers() -> Iterator[Mapping[str, RunningPeer]]:
    pool = PeerPool()
    try:
        yield {name: require_peer(pool, name) for name in PEER_NAMES}
    finally:
        pool.close()


@pytest.fixture
async def xmppcore(tmp_path: Path, reference_peers: Mapping[str, RunningPeer]) -> AsyncIterator[Node]:
    routes = {peer.domain: f"{peer.address}:{peer.s2s_port}" for peer in (EJABBERD, PROSODY)}
    config = node_config(tmp_path, XMPPCORE_DOMAIN, host=XMPPCORE_ADDRESS, s2s_port=5269, routes=routes,
                         connect_timeout=S2S_TIMEOUT)
    async with running_node(config) as node:
        for user in ("alice", "bob"):
            await node.add_user(user)
        yield node


def token() -> str:
    return uuid.uuid4().hex[:10]


async def login_xmppcore(node: Node, clients: list[SlixClient], user: str) -> SlixClient:
    client = await node.login(user, f"interop-{token()}")
    clients.append(client)
    return client


@pytest.fixture
async def ours() -> AsyncIterator[list[SlixClient]]:
    clients: list[SlixClient] = []
    yield clients
    for client in clients:
        await client.disconnect()


@pytest.mark.parametrize("peer_name", PEER_NAMES)
async def test_chat_messages_cross_in_both_directions(xmppcore: Node, reference_peers: Mapping[str, RunningPeer],
                                                      ours: list[SlixClient], peer_name: str) -> None:
    peer = reference_peers[peer_name]
    async with PeerClients() as theirs:
        alice = await login_xmppcore(xmppcore, ours, "alice")
        bob = await theirs.login(peer, "bob", f"interop-{token()}")
        body = f"to {peer_name} {token()}"
        alice.send_message(bob.jid, body)
        received = await bob.messages.get(lambda m: m["body"] == body, timeout=S2S_TIMEOUT)
        assert (str(received["from"]), received["type"]) == (alice.jid, "chat")
        back = f"from {peer_name} {token()}"
        bob.send_message(alice.jid, back)
        answer = await alice.messages.get(lambda m: m["body"] == back, timeout=S2S_TIMEOUT)
        assert str(answer["from"]) == bob.jid
    methods = {link[3] for link in xmppcore.links() if link[2] == peer.server.domain}
    assert methods == {"dialback"}


@pytest.mark.parametrize("peer_name", PEER_NAMES)
async def test_pings_are_answered_in_both_directions(xmppcore: Node, reference_peers: Mapping[str, RunningPeer],
                                                     ours: list[SlixClient], peer_name: str) -> None:
    peer = reference_peers[peer_name]
    async with PeerClients() as theirs:
        alice = await login_xmppcore(xmppcore, ours, "alice")
        bob = await theirs.login(peer, "bob", f"ping-{token()}", plugins=["xep_0199"])
        for client, target in ((alice, peer.server.domain), (alice, bob.jid),
                               (bob, XMPPCORE_DOMAIN), (bob, alice.jid)):
            reply = await ping(client, target)
            assert (reply["type"], str(reply["from"])) == ("result", target)


@pytest.mark.parametrize("peer_name", PEER_NAMES)
async def test_an_unknown_user_on_the_other_side_is_reported(xmppcore: Node,
                                                            reference_peers: Mapping[str, RunningPeer],
                                                            ours: list[SlixClient], peer_name: str) -> None:
    peer = reference_peers[peer_name]
    async with PeerClients() as theirs:
        alice = await login_xmppcore(xmppcore, ours, "alice")
        bob = await theirs.login(peer, "bob", f"unknown-{token()}", plugins=["xep_0199"])
        nobody_there = f"nobody-{token()}@{peer.server.domain}"
        alice.send_message(nobody_there, "hello?")
        error = await alice.messages.get(
            lambda m: m["type"] == "error" and str(m["from"]) == nobody_there, timeout=S2S_TIMEOUT)
        assert error["error"]["condition"] == "service-unavailable"
        nobody_here = f"nobody-{token()}@{XMPPCORE_DOMAIN}"
        bob.send_message(nobody_here, "hello?")
        error = await bob.messages.get(
            lambda m: m["type"] == "error" and str(m["from"]) == nobody_here, timeout=S2S_TIMEOUT)
        assert error["error"]["condition"] == "service-unavailable"
        with pytest.raises(IqError) as failure:
            await ping(bob, f"{nobody_here}/gone")
        assert failure.value.iq["error"]["condition"] == "service-unavailable"


async def subscribe_mutually(asker: SlixClient, answerer: SlixClient, asker_bare: str, answerer_bare: str) -> None:
    """RFC 6121 §3.1: ``asker`` subscribes, ``answerer`` approves and subscribes back, ``asker`` approves."""
    a, b = asker, answerer
    a.xmpp.send_presence(pto=answerer_bare, ptype="subscribe")
    await b.presences.get(lambda p: p["type"] == "subscribe" and str(p["from"]) == asker_bare,
                          timeout=S2S_TIMEOUT)
    b.xmpp.send_presence(pto=asker_bare, ptype="subscribed")
    b.xmpp.send_presence(pto=asker_bare, ptype="subscribe")
    await a.presences.get(lambda p: p["type"] == "subscribe" and str(p["from"]) == answerer_bare,
                          timeout=S2S_TIMEOUT)
    a.xmpp.send_presence(pto=answerer_bare, ptype="subscribed")


@pytest.mark.parametrize("first", ["xmppcore", "peer"])
@pytest.mark.parametrize("peer_name", PEER_NAMES)
async def test_a_presence_subscription_reaches_both(xmppcore: Node, reference_peers: Mapping[str, RunningPeer],
                                                    ours: list[SlixClient], peer_name: str, first: str) -> None:
    peer = reference_peers[peer_name]
    # Each combination uses its own pair of accounts, so state left on the peer cannot interfere.
    their_user = "alice" if first == "xmppcore" else "bob"
    our_user = "alice" if first == "xmppcore" else "bob"
    async with PeerClients() as theirs:
        mine = await login_xmppcore(xmppcore, ours, our_user)
        other = await theirs.login(peer, their_user, f"sub-{token()}")
        mine_bare, other_bare = f"{our_user}@{XMPPCORE_DOMAIN}", peer.server.jid(their_user)
        try:
            await mine.announce()
            await other.announce()
            if first == "xmppcore":
                await subscribe_mutually(mine, other, mine_bare, other_bare)
            else:
                await subscribe_mutually(other, mine, other_bare, mine_bare)
            # Availability now flows both ways (RFC 6121 §4.2, §4.3 probes and broadcasts).
            await mine.presences.get(
                lambda p: p["type"] == "available" and str(p["from"]) == other.jid, timeout=S2S_TIMEOUT)
            await other.presences.get(
                lambda p: p["type"] == "available" and str(p["from"]) == mine.jid,
                timeout=S2S_TIMEOUT)
            for client, contact in ((mine, other_bare), (other, mine_bare)):
                await client.xmpp.get_roster()
                assert client.xmpp.client_roster[contact]["subscription"] == "both"
        finally:
            # Leave the peer's roster as we found it for the next run.
            await other.xmpp.del_roster_item(mine_bare)
