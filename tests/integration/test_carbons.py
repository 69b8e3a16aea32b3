"""XEP-0280 Message Carbons end to end: three slixmpp clients of one account, and a correspondent.

Bob is online as laptop (priority 5), phone (1) and tablet (0); laptop and phone enable carbons
with slixmpp's xep_0280 plugin, tablet does not.  Alice talks to him by full and bare JID, he
answers from different devices, sends a private message and a note to himself, then the laptop
disables carbons.  At the end every client's whole message log is compared with what XEP-0280
§7-§9 promise, in order: each message or copy exactly once, and copies only from Bob's bare JID.
Nothing sleeps: each step waits for what it causes, and a final ``headline`` from Alice to each
client (never copied, §6.1) proves that nothing more was on its way (the server writes to a
client in order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slixmpp.stanza import Message
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xmppcore.modules.carbons import NS_CARBONS, NS_FORWARD

from .clients import SlixClient, SlixPool
from .conftest import RunningServer, make_config, start_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

_CLIENT = "{jabber:client}"
_PLUGINS = ("xep_0280",)
Seen = tuple[str, str, str]  # (original | sent | received, the outer 'from', the body)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = make_config(tmp_path)
    modules = dataclasses.replace(config.modules, enabled=(*config.modules.enabled, "carbons"))
    running = await start_server(dataclasses.replace(config, modules=modules))
    try:
        await running.add_user("alice")
        await running.add_user("bob")
        yield running
    finally:
        await running.server.stop()


def seen(message: Message) -> Seen:
    """What a client got: the message itself or, for a carbon, which kind and the copied body."""
    for kind in ("sent", "received"):
        wrapper = message.xml.find(f"{{{NS_CARBONS}}}{kind}")
        if wrapper is not None:
            inner = wrapper.find(f"{{{NS_FORWARD}}}forwarded/{_CLIENT}message")
            assert inner is not None, "a carbon wraps the original in <forwarded/> (XEP-0297)"
            return kind, str(message["from"]), inner.findtext(f"{_CLIENT}body") or ""
    return "original", str(message["from"]), message["body"]


def record(client: SlixClient) -> list[Message]:
    """Every message ``client`` receives from now on, in order (its inbox gives up what a test takes)."""
    log: list[Message] = []

    def keep(stanza: StanzaBase) -> None:
        assert isinstance(stanza, Message)
        log.append(stanza)

    client.xmpp.register_handler(Callback("test: carbons log", MatchXPath(f"{_CLIENT}message"), keep))
    return log


async def finish(alice: SlixClient, client: SlixClient, log: list[Message]) -> list[Seen]:
    """Everything in ``log`` once Alice's closing headline reached ``client``."""
    alice.send_message(client.jid, "end of test", kind="headline")
    await client.receive("end of test")
    return [seen(m) for m in log]


async def test_three_resources_see_both_sides_exactly_once(server: RunningServer) -> None:
    async with SlixPool(server) as pool:
        alice = await pool.login("alice", "home")
        bob = {name: await pool.login("bob", name, plugins=_PLUGINS) for name in ("laptop", "phone", "tablet")}
        clients = {"alice": alice, **bob}
        logs = {name: record(client) for name, client in clients.items()}
        await alice.announce()
        for name, priority in (("laptop", 5), ("phone", 1), ("tablet", 0)):
            await bob[name].announce(priority)
        for name in ("laptop", "phone"):
            await bob[name].xmpp.plugin["xep_0280"].enable()  # §4: an empty IQ result

        alice.send_message("bob@localhost/phone", "to your phone")
        await bob["phone"].receive("to your phone")
        alice.send_message("bob@localhost", "to you")  # RFC 6121 §8.5.2.1.1: the laptop has the top priority
        await bob["laptop"].receive("to you")
        bob["tablet"].send_message("alice@localhost/home", "from the tablet")
        await alice.receive("from the tablet")
        private = bob["phone"].xmpp.make_message(mto="alice@localhost/home", mbody="just between us", mtype="chat")
        private.enable("carbon_private")  # §9
        private.send()
        got = await alice.receive("just between us")
        assert got.xml.find(f"{{{NS_CARBONS}}}private") is None  # the receiving server removed it
        bob["tablet"].send_message("bob@localhost/phone", "note to my phone")
        await bob["phone"].receive("note to my phone")
        await bob["laptop"].xmpp.plugin["xep_0280"].disable()  # §5
        alice.send_message("bob@localhost/phone", "after the laptop left")
        await bob["phone"].receive("after the laptop left")

        seen_by = {name: await finish(alice, client, logs[name]) for name, client in clients.items()}

    end = ("original", "alice@localhost/home", "end of test")
    assert seen_by["laptop"] == [
        ("received", "bob@localhost", "to your phone"),
        ("original", "alice@localhost/home", "to you"),
        ("sent", "bob@localhost", "from the tablet"),
        ("sent", "bob@localhost", "note to my phone"),
        end,
    ]
    assert seen_by["phone"] == [
        ("original", "alice@localhost/home", "to your phone"),
        ("received", "bob@localhost", "to you"),
        ("sent", "bob@localhost", "from the tablet"),
        ("original", "bob@localhost/tablet", "note to my phone"),
        ("original", "alice@localhost/home", "after the laptop left"),
        end,
    ]
    assert seen_by["tablet"] == [end]  # it never enabled carbons
    assert seen_by["alice"] == [
        ("original", "bob@localhost/tablet", "from the tablet"),
        ("original", "bob@localhost/phone", "just between us"),
        ("original", "alice@localhost/home", "end of test"),
    ]
