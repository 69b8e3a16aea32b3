"""RFC 6121 and the everyday XEPs across a restart: what users set up survives (SQLite).

The real server runs twice on the same data directory with its default modules.  In the first
run alice and bob subscribe to each other (RFC 6121 §3.1), alice names and groups bob's item,
blocks carol (XEP-0191), stores a vCard (XEP-0054) and writes to bob while he is offline
(XEP-0160).  Between the runs only the SQLite file carries state, so everything the second run
shows — the roster, presence flowing along the subscription, the block, the vCard and the
offline message with its XEP-0203 delay — was read back from storage.

Raw clients (:mod:`.rawclient`) say exactly what goes over the wire; nothing sleeps: an XEP-0199
ping to the server is the barrier that proves a client's earlier stanzas were handled (RFC 6120
§10.1 keeps one stream's stanzas in order).
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from xmppcore.config import Config
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_ROSTER

from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import WAIT, ConnectionEnded, RawClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

VCARD = "vcard-temp"
BLOCKING = "urn:xmpp:blocking"
DELAY = "urn:xmpp:delay"
PING = "urn:xmpp:ping"
DEFAULTS_NEEDED = ("roster", "presence", "blocking", "vcard", "offline")

_ids = (f"p-{n}" for n in itertools.count(1))
Match = Callable[[Element], bool]


class Peer:
    """A raw client that keeps what it read past while waiting for something else."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.unread: list[Element] = []

    async def wait(self, match: Match, timeout: float = WAIT) -> Element:
        """The first element (already read or still to come) that ``match`` accepts."""
        for element in self.unread:
            if match(element):
                self.unread.remove(element)
                return element
        while True:
            event = await self.client.next_event(timeout)
            assert not isinstance(event, ConnectionEnded), f"the connection ended: {event!r}"
            if isinstance(event, Element):
                if match(event):
                    return event
                self.unread.append(event)

    async def send(self, stanza: str | Element) -> None:
        await (self.client.send_element(stanza) if isinstance(stanza, Element) else self.client.send(stanza))

    async def iq(self, type_: str, payload: Element, to: str | None = None) -> Element:
        """Send an IQ and return its answer."""
        stanza = Element("iq", NS_CLIENT, {"type": type_, "id": next(_ids)})
        if to is not None:
            stanza.attrs["to"] = to
        stanza.append(payload)
        await self.send(stanza)
        return await self.wait(lambda el: el.name == "iq" and el.get("id") == stanza.attrs["id"]
                               and el.get("type") in ("result", "error"))

    async def barrier(self) -> None:
        """Everything sent before has been handled by the server (one ping round trip)."""
        reply = await self.iq("get", Element("ping", PING), to="localhost")
        assert reply.get("type") == "result", reply

    async def log_out(self) -> None:
        """Close the stream and read what is left until the server ends the connection."""
        await self.client.send("</stream:stream>")
        while not isinstance(await self.client.next_event(), ConnectionEnded):
            pass

    def unread_from(self, sender: str, name: str) -> list[Element]:
        return [el for el in self.unread if el.name == name and (el.get("from") or "").startswith(sender)]


def presence_from(sender: str, kind: str | None = None) -> Match:
    """A presence whose 'from' is ``sender`` (a bare JID matches any of its resources)."""
    def match(el: Element) -> bool:
        return (el.name == "presence" and el.get("type") == kind
                and (el.get("from") == sender or (el.get("from") or "").startswith(sender + "/")))
    return match


def im_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path)
    missing = [name for name in DEFAULTS_NEEDED if name not in config.modules.enabled]
    assert not missing, f"the default configuration no longer loads {missing}"
    return config


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[RunningServer]:
    server = await start_server(config)
    try:
        yield server
    finally:
        await server.server.stop()


@asynccontextmanager
async def logged_in(server: RunningServer, username: str, resource: str) -> AsyncIterator[Peer]:
    client = await RawClient.login(server.host, server.starttls_port, server.cafile, username, PASSWORD, resource)
    try:
        yield Peer(client)
    finally:
        client.close()


def vcard(**fields: str) -> Element:
    card = Element("vCard", VCARD)
    for name, value in fields.items():
        card.add(name, text=value)
    return card


def roster_item(jid: str, name: str, *groups: str) -> Element:
    query = Element("query", NS_ROSTER)
    item = query.add("item", NS_ROSTER, {"jid": jid, "name": name})
    for group in groups:
        item.add("group", NS_ROSTER, text=group)
    return query


def error_condition(reply: Element) -> Condition:
    assert reply.get("type") == "error", reply
    error = reply.find("error", NS_CLIENT)
    assert error is not None, reply
    return StanzaError.from_element(error).condition


async def subscribe(user: Peer, user_jid: str, contact: Peer, contact_jid: str) -> None:
    """``user`` asks for ``contact``'s presence and ``contact`` approves (RFC 6121 §3.1)."""
    await user.send(f"<presence to='{contact_jid}' type='subscribe'/>")
    await contact.wait(presence_from(user_jid, "subscribe"))
    await contact.send(f"<presence to='{user_jid}' type='subscribed'/>")
    await user.wait(presence_from(contact_jid, "subscribed"))


async def first_run(server: RunningServer) -> datetime.datetime:
    """Set everything up; returns a time just before bob's offline message was sent."""
    for user in ("alice", "bob", "carol"):
        await server.add_user(user)
    async with logged_in(server, "alice", "laptop") as alice, logged_in(server, "bob", "pc") as bob:
        for peer in (alice, bob):
            await peer.send("<presence/>")
        added = await alice.iq("set", roster_item("bob@localhost", "Bobby", "Friends", "Work"))
        assert added.get("type") == "result", added
        await subscribe(alice, "alice@localhost", bob, "bob@localhost")
        await subscribe(bob, "bob@localhost", alice, "alice@localhost")
        blocked = await alice.iq("set", Element("block", BLOCKING, children=[
            Element("item", BLOCKING, {"jid": "carol@localhost"})]))
        assert blocked.get("type") == "result", blocked
        stored = await alice.iq("set", vcard(FN="Alice Liddell", NICKNAME="alice"))
        assert stored.get("type") == "result", stored
        await bob.log_out()
        # bob has gone offline for alice too: his unavailable presence follows his stream's end.
        await alice.wait(presence_from("bob@localhost/pc", "unavailable"))
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        await alice.send("<message to='bob@localhost' type='chat' id='m1'><body>while you were out</body></message>")
        await alice.barrier()
    assert await server.server.storage.archive(server.domain, "offline").count("bob") == 1
    return before


async def test_rosters_subscriptions_blocks_vcards_and_offline_messages_survive_a_restart(tmp_path: Path) -> None:
    config = im_config(tmp_path)
    async with running(config) as server:
        before = await first_run(server)
    after = datetime.datetime.now(datetime.timezone.utc)

    async with running(config) as server:
        async with logged_in(server, "alice", "phone") as alice:
            # The roster: bob's item with the name and groups alice gave it, subscription both.
            reply = await alice.iq("get", Element("query", NS_ROSTER))
            query = reply.find("query", NS_ROSTER)
            assert reply.get("type") == "result" and query is not None, reply
            items = {item.get("jid"): item for item in query.findall("item", NS_ROSTER)}
            assert set(items) == {"bob@localhost"}
            bob_item = items["bob@localhost"]
            assert (bob_item.get("subscription"), bob_item.get("name"), bob_item.get("ask")) == ("both", "Bobby", None)
            assert sorted(g.text for g in bob_item.findall("group", NS_ROSTER)) == ["Friends", "Work"]
            await alice.send("<presence/>")

            async with logged_in(server, "bob", "tablet") as bob:
                await bob.send("<presence/>")
                # The subscription works: bob's presence reaches alice, and alice's (the answer to
                # bob's probe, RFC 6121 §4.3.2) reaches bob.
                await alice.wait(presence_from("bob@localhost/tablet"))
                await bob.wait(presence_from("alice@localhost/phone"))
                # The offline message, stamped with when it was stored (XEP-0203).
                message = await bob.wait(lambda el: el.name == "message")
                assert (message.get("from"), message.get("type"), message.findtext("body")) == (
                    "alice@localhost/laptop", "chat", "while you were out")
                delay = message.find("delay", DELAY)
                assert delay is not None and delay.get("from") == "localhost", message
                stamp = datetime.datetime.fromisoformat((delay.get("stamp") or "").replace("Z", "+00:00"))
                assert before <= stamp <= after
                await bob.barrier()
                assert bob.unread_from("alice@localhost", "message") == []   # delivered once
                # The vCard, as anyone may read it (XEP-0054 §3.2).
                card = await bob.iq("get", Element("vCard", VCARD), to="alice@localhost")
                assert card.find("vCard", VCARD) == vcard(FN="Alice Liddell", NICKNAME="alice"), card

            async with logged_in(server, "carol", "pc") as carol:
                # The block: carol's message to alice bounces as if alice were offline (XEP-0191 §3.3).
                await carol.send("<message to='alice@localhost' type='chat' id='c1'><body>hi</body></message>")
                bounce = await carol.wait(lambda el: el.name == "message" and el.get("id") == "c1")
                assert bounce.get("from") == "alice@localhost"
                assert error_condition(bounce) is Condition.SERVICE_UNAVAILABLE
            await alice.barrier()
            assert alice.unread_from("carol@localhost", "message") == []
            blocklist = await alice.iq("get", Element("blocklist", BLOCKING))
            listed = blocklist.find("blocklist", BLOCKING)
            assert listed is not None and [i.get("jid") for i in listed.findall("item", BLOCKING)] == [
                "carol@localhost"], blocklist
