"""RFC 6121 §3-§4 with real clients: two users subscribe to each other and see each other come and go.

slixmpp (and aioxmpp, a second XML stack) against the server on loopback with its default modules
(roster and presence among them).  The clients answer nothing on their own: each subscription
stanza in these tests is one the test sent, and every assertion is about presence a client received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aioxmpp  # type: ignore[import-untyped]
import pytest
from slixmpp.stanza import Presence

from .clients import AioClient, SlixClient, SlixPool, starttls
from .conftest import PASSWORD, RunningServer
from .rawclient import RawClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(15),
    pytest.mark.filterwarnings("ignore:as of aioxmpp 1.0, PresenceType:DeprecationWarning"),
]


@pytest.fixture
async def clients(xmpp_server: RunningServer) -> AsyncIterator[SlixPool]:
    async with SlixPool(xmpp_server) as pool:
        yield pool


# ------------------------------------------------------------------------------ slixmpp


async def slix_login(clients: SlixPool, user: str, resource: str) -> SlixClient:
    client = await clients.login(user, resource)
    client.xmpp.auto_authorize = None   # never answer a subscription request by itself
    client.xmpp.auto_subscribe = False
    await client.announce()
    return client


def slix_presence(sender: str, kind: str, **fields: str) -> Any:
    """A matcher for a presence from ``sender`` of slixmpp type ``kind`` (and these fields)."""
    def match(presence: Presence) -> bool:
        return (str(presence["from"]) == sender and presence["type"] == kind
                and all(presence[key] == value for key, value in fields.items()))
    return match


async def slix_subscribe(user: SlixClient, contact: SlixClient) -> None:
    """``user`` asks for ``contact``'s presence and ``contact`` approves (RFC 6121 §3.1)."""
    user_bare, contact_bare = str(user.xmpp.boundjid.bare), str(contact.xmpp.boundjid.bare)
    user.xmpp.send_presence(pto=contact_bare, ptype="subscribe")
    await contact.presences.get(slix_presence(user_bare, "subscribe"))
    contact.xmpp.send_presence(pto=user_bare, ptype="subscribed")
    await user.presences.get(slix_presence(contact_bare, "subscribed"))
    # §3.1.5: once approved, the contact's current presence follows.
    await user.presences.get(slix_presence(contact.jid, "available"))


async def test_slixmpp_contacts_see_each_other_come_and_go(xmpp_server: RunningServer, clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await slix_login(clients, "alice", "home")
    bob = await slix_login(clients, "bob", "phone")
    await slix_subscribe(alice, bob)
    await slix_subscribe(bob, alice)

    # §4.4: an update reaches the contact...
    bob.xmpp.send_presence(pshow="away", pstatus="lunch")
    await alice.presences.get(slix_presence("bob@localhost/phone", "away", status="lunch"))
    # ...and a session that ends without unavailable presence is reported gone (§4.5.2).
    bob.xmpp.abort()
    await alice.presences.get(slix_presence("bob@localhost/phone", "unavailable"))

    # §4.2.2 and §4.3: bob comes back: alice hears of it, and bob's new session learns alice's presence.
    tablet = await clients.login("bob", "tablet")
    tablet.xmpp.send_presence(pstatus="back")
    await alice.presences.get(slix_presence("bob@localhost/tablet", "available", status="back"))
    await tablet.presences.get(slix_presence("alice@localhost/home", "available"))

    # §4.5.2: an explicit goodbye, with its status, reaches the contact.
    alice.xmpp.send_presence(ptype="unavailable", pstatus="bye")
    await tablet.presences.get(slix_presence("alice@localhost/home", "unavailable", status="bye"))


async def test_slixmpp_no_presence_without_subscription(xmpp_server: RunningServer, clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("carol")
    alice = await slix_login(clients, "alice", "home")
    carol = await slix_login(clients, "carol", "desk")
    await slix_subscribe(alice, carol)   # alice sees carol; carol does not see alice
    alice.xmpp.send_presence(pstatus="private")
    carol.xmpp.send_presence(pstatus="public")
    await alice.presences.get(slix_presence("carol@localhost/desk", "available", status="public"))
    # A marker after alice's update on the same path (clients.py): had alice's update gone to
    # carol, it would have arrived before this message.
    alice.send_message("carol@localhost/desk", "marker")
    await carol.receive("marker")
    assert not [p for p in carol.presences.pending if str(p["from"]).startswith("alice@")]


async def test_a_goodbye_sent_with_the_stream_end_keeps_its_status(xmpp_server: RunningServer,
                                                                   clients: SlixPool) -> None:
    # RFC 6121 §4.5.2: the unavailable presence the client sent, status and all, is what its
    # contacts get, even when the stream ends in the same packet: the server speaks for a session
    # that ended (SESSION_CLOSED) only after routing everything the session sent before.
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await slix_login(clients, "alice", "home")
    bob = await RawClient.login(xmpp_server.host, xmpp_server.starttls_port, xmpp_server.cafile,
                                "bob", PASSWORD, "raw")
    bob_slix = await slix_login(clients, "bob", "phone")
    await slix_subscribe(alice, bob_slix)
    await bob.send("<presence/><presence type='unavailable'><status>gone home</status></presence></stream:stream>")
    await alice.presences.get(slix_presence("bob@localhost/raw", "available"))
    goodbye = await alice.presences.get(slix_presence("bob@localhost/raw", "unavailable"))
    assert goodbye["status"] == "gone home"
    bob.close()


# ------------------------------------------------------------------------------ aioxmpp


@pytest.fixture
async def aio_clients(xmpp_server: RunningServer) -> AsyncIterator[list[AioClient]]:
    started: list[AioClient] = []
    yield started
    for client in started:
        await client.stop()


async def aio_login(xmpp_server: RunningServer, started: list[AioClient], user: str, resource: str) -> AioClient:
    client = AioClient(f"{user}@{xmpp_server.domain}/{resource}", PASSWORD, starttls(xmpp_server))
    started.append(client)
    return await client.connect()


def aio_presence(sender: str, kind: Any) -> Any:
    return lambda presence: str(presence.from_) == sender and presence.type_ == kind


async def aio_send(client: AioClient, kind: Any, to: str | None = None) -> None:
    presence = aioxmpp.Presence(type_=kind, to=aioxmpp.JID.fromstr(to) if to else None)
    await client.client.send(presence)


async def test_aioxmpp_contacts_see_each_other_come_and_go(xmpp_server: RunningServer,
                                                          aio_clients: list[AioClient]) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await aio_login(xmpp_server, aio_clients, "alice", "home")
    bob = await aio_login(xmpp_server, aio_clients, "bob", "phone")
    await alice.announce()
    await bob.announce()
    kinds = aioxmpp.PresenceType
    for user, contact in ((alice, bob), (bob, alice)):
        user_bare, contact_bare = str(user.client.local_jid.bare()), str(contact.client.local_jid.bare())
        await aio_send(user, kinds.SUBSCRIBE, contact_bare)
        await contact.presences.get(aio_presence(user_bare, kinds.SUBSCRIBE))
        await aio_send(contact, kinds.SUBSCRIBED, user_bare)
        await user.presences.get(aio_presence(contact_bare, kinds.SUBSCRIBED))

    await bob.stop()   # the stream ends: the server says bob is gone (§4.5.2)
    await alice.presences.get(aio_presence("bob@localhost/phone", kinds.UNAVAILABLE))
    tablet = await aio_login(xmpp_server, aio_clients, "bob", "tablet")
    await aio_send(tablet, kinds.AVAILABLE)
    await alice.presences.get(aio_presence("bob@localhost/tablet", kinds.AVAILABLE))
    await tablet.presences.get(aio_presence("alice@localhost/home", kinds.AVAILABLE))
