"""The federation test environment: the reference ejabberd and Prosody federate with each other.

This tests no xmppcore code.  It shows that the peers' s2s settings (STARTTLS, then Server
Dialback, XEP-0220, since their certificates are self-signed) and the ``/etc/hosts`` mapping
work, so that when a federation test with xmppcore fails, the fault is not in the environment.
Each direction opens its own s2s stream (RFC 6120 §4.2: streams are unidirectional).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping

import pytest

from .peers import S2S_TIMEOUT, PeerClients, PeerPool, RunningPeer, ping, require_peer

DIRECTIONS = [pytest.param("ejabberd", "prosody", id="ejabberd-to-prosody"),
              pytest.param("prosody", "ejabberd", id="prosody-to-ejabberd")]


@pytest.fixture(scope="module")
def reference_peers() -> Iterator[Mapping[str, RunningPeer]]:
    """Both reference servers, started for this module (skipped when they cannot run here)."""
    pool = PeerPool()
    try:
        yield {name: require_peer(pool, name) for name in ("ejabberd", "prosody")}
    finally:
        pool.close()


def run_token() -> str:
    """Unique per test, so nothing an earlier test or run left behind can match."""
    return uuid.uuid4().hex[:10]


@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
async def test_chat_message_reaches_full_jid_on_other_server(
        reference_peers: Mapping[str, RunningPeer], sender: str, receiver: str) -> None:
    """RFC 6121 §8.5.3.1: a message to a remote full JID reaches that resource, stamped with the
    sender's full JID (RFC 6120 §8.1.2.1)."""
    token = run_token()
    async with PeerClients() as clients:
        alice = await clients.login(reference_peers[sender], "alice", f"smoke-{token}")
        bob = await clients.login(reference_peers[receiver], "bob", f"smoke-{token}")
        body = f"across the federation {token}"
        alice.send_message(bob.jid, body)
        received = await bob.messages.get(lambda m: m["body"] == body, timeout=S2S_TIMEOUT)
    assert str(received["from"]) == alice.jid
    assert str(received["to"]) == bob.jid
    assert received["type"] == "chat"


@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
async def test_ping_answered_by_remote_client_and_remote_server(
        reference_peers: Mapping[str, RunningPeer], sender: str, receiver: str) -> None:
    """XEP-0199 §4.2 (server to server) and §4.3 (to a client): an IQ goes across and its result
    comes back from the entity pinged."""
    token = run_token()
    async with PeerClients() as clients:
        alice = await clients.login(reference_peers[sender], "alice", f"ping-{token}", plugins=["xep_0199"])
        bob = await clients.login(reference_peers[receiver], "bob", f"ping-{token}", plugins=["xep_0199"])
        remote_domain = reference_peers[receiver].server.domain
        to_client = await ping(alice, bob.jid)
        to_server = await ping(alice, remote_domain)
    assert (to_client["type"], str(to_client["from"])) == ("result", bob.jid)
    assert (to_server["type"], str(to_server["from"])) == ("result", remote_domain)

