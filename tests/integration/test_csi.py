"""XEP-0352 Client State Indication end to end: an inactive client is spared presence, not messages.

juliet's slixmpp client (its ``xep_0352`` plugin) says it is inactive; five contacts send ten
presence updates each and a stranger writes to her.  The message arrives at once; the fifty
updates arrive only when she says she is active again, folded to the latest of each contact.
A raw client with XEP-0198 shows that held presence is not counted as sent, and that what was
held when the link dropped arrives, once, after the stream is resumed (which starts active).

Nothing sleeps: a ping round trip to the server means everything the client sent before it has
been routed (RFC 6120 §10.1), and after ``<active/>`` the held presences go out before the answer
to the client's next request (XEP-0352 §5.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SlixJID
from slixmpp.stanza import Presence

from xmppcore.jid import JID
from xmppcore.server.stream_management import ClientSession
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

from .clients import TIMEOUT, SlixClient, SlixPool
from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

NS_CSI = "urn:xmpp:csi:0"
NS_SM = "urn:xmpp:sm:3"
CONTACTS = [f"contact{n}" for n in range(1, 6)]
UPDATES = 10


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = make_config(tmp_path)
    modules = dataclasses.replace(config.modules, enabled=(*config.modules.enabled, "csi"))
    running = await start_server(dataclasses.replace(config, modules=modules))
    try:
        for user in ("juliet", "zed", *CONTACTS):
            await running.add_user(user)
        yield running
    finally:
        await running.server.stop()


async def ping(client: SlixClient) -> None:
    """A round trip to the server: what the client sent before it has been routed."""
    await client.xmpp.plugin["xep_0199"].ping(SlixJID(client.xmpp.boundjid.domain), timeout=TIMEOUT)


async def login(pool: SlixPool, user: str, resource: str, *plugins: str) -> SlixClient:
    client = await pool.login(user, resource, plugins=("xep_0199", *plugins))
    client.xmpp.auto_authorize = None  # the test answers subscription requests itself
    client.xmpp.auto_subscribe = False
    await client.announce()
    return client


async def subscribe(user: SlixClient, contact: SlixClient) -> None:
    """``user`` gets to see ``contact``'s presence (RFC 6121 §3.1)."""
    user_bare, contact_bare = str(user.xmpp.boundjid.bare), str(contact.xmpp.boundjid.bare)
    user.xmpp.send_presence(pto=contact_bare, ptype="subscribe")
    await contact.presences.get(lambda p: str(p["from"]) == user_bare and p["type"] == "subscribe")
    contact.xmpp.send_presence(pto=user_bare, ptype="subscribed")
    await user.presences.get(lambda p: str(p["from"]) == contact.jid and p["type"] == "available")


def updates(client: SlixClient, senders: set[str]) -> list[tuple[str, str]]:
    """``(from, status)`` of the update presences ``client`` got from ``senders``, in order."""
    def is_update(p: Presence) -> bool:
        return str(p["from"]) in senders and str(p["status"]).startswith("update")
    return [(str(p["from"]), str(p["status"])) for p in client.presences.pending if is_update(p)]


async def test_presence_waits_folded_while_messages_flow(server: RunningServer) -> None:
    async with SlixPool(server) as pool:
        juliet = await login(pool, "juliet", "phone", "xep_0352")
        contacts = [await login(pool, user, "desk") for user in CONTACTS]
        for contact in contacts:
            await subscribe(juliet, contact)
        zed = await login(pool, "zed", "desk")
        csi: Any = juliet.xmpp.plugin["xep_0352"]  # slixmpp's XEP_0352 is untyped
        assert csi.enabled  # the server offered <csi/> after authentication (§4.1)

        csi.send_inactive()
        await ping(juliet)  # §5.1: the state changed before the ping was answered
        for n in range(UPDATES):
            for contact in contacts:
                contact.xmpp.send_presence(pstatus=f"update {n}")
        for contact in contacts:
            await ping(contact)  # all fifty routed: delivered or held
        zed.send_message(juliet.jid, "while inactive")
        await juliet.receive("while inactive")  # messages flow at once...
        senders = {contact.jid for contact in contacts}
        assert updates(juliet, senders) == []  # ...and nothing was ahead of it on her stream

        csi.send_active()
        await ping(juliet)  # §5.1: the held presences went out before the answer
        latest = f"update {UPDATES - 1}"
        assert sorted(updates(juliet, senders)) == sorted((jid, latest) for jid in senders)
        contacts[0].xmpp.send_presence(pstatus="update after")
        await juliet.presences.get(lambda p: str(p["status"]) == "update after")  # active: flows again


# -- XEP-0198 -------------------------------------------------------------------------------------------
def unacked(server: RunningServer, full_jid: str) -> int:
    """How many stanzas the server has sent ``full_jid`` and waits to see acknowledged (XEP-0198 §4)."""
    session = server.server.sessions.get(JID.parse(full_jid))
    assert isinstance(session, ClientSession) and session.sm is not None
    return session.sm.unacked


def ping_iq(iq_id: str) -> Element:
    return Element("iq", NS_CLIENT, {"type": "get", "id": iq_id}, [Element("ping", "urn:xmpp:ping")])


async def raw_ping(raw: RawClient, iq_id: str) -> None:
    await raw.send_element(ping_iq(iq_id))
    await raw.wait_for(lambda e: e.name == "iq" and e.get("id") == iq_id)


async def test_held_presence_is_not_sent_until_it_goes_out_even_across_a_resumption(server: RunningServer) -> None:
    async with SlixPool(server) as pool:
        laptop = await login(pool, "juliet", "laptop")  # her other resource: its presence reaches the phone
        raw = await RawClient.login(server.host, server.starttls_port, server.cafile, "juliet", PASSWORD, "phone")
        await raw.send("<presence/>")
        await raw.wait_for(lambda e: e.name == "presence" and e.get("from") == "juliet@localhost/phone")
        await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        previd = (await raw.wait_for(lambda e: e.name == "enabled")).attrs["id"]
        await raw.send(f"<inactive xmlns='{NS_CSI}'/>")
        await raw_ping(raw, "p1")  # the first stanza counted since <enable/>
        for n in range(3):
            laptop.xmpp.send_presence(pstatus=f"update {n}")
        await ping(laptop)
        # Held, not sent: XEP-0198 waits for an acknowledgement of the pong only.
        assert unacked(server, "juliet@localhost/phone") == 1

        raw.close()  # the link drops with the presence still held
        again = await RawClient.connect(server.host, server.starttls_port)
        await again.open_stream()
        await again.starttls(server.cafile)
        assert (await again.authenticate("juliet", PASSWORD)).name == "success"
        await again.open_stream()
        await again.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='1'/>")
        assert (await again.next_element()).name == "resumed"
        # What was held comes once, folded, as the first stanza after <resumed/>...
        held = await again.next_element()
        assert (held.name, held.get("from"), held.findtext("status")) == ("presence", laptop.jid, "update 2")
        await again.send_element(ping_iq("p2"))
        pong = await again.next_element()  # ...and nothing else came before the pong
        assert (pong.name, pong.get("id")) == ("iq", "p2")
        # The resumed stream starts active (§5.2): an update flows at once.
        laptop.xmpp.send_presence(pstatus="update after")
        flowed = await again.wait_for(lambda e: e.name == "presence")
        assert flowed.findtext("status") == "update after"
        # The counts agree: the client has handled the presence, the pong and the update.
        await again.send(f"<a xmlns='{NS_SM}' h='4'/>")
        await raw_ping(again, "p3")
        assert unacked(server, "juliet@localhost/phone") == 1  # the last pong
        again.close()
