"""XEP-0114 external components against the real server: slixmpp's ComponentXMPP and a raw socket.

A component serving ``echo.localhost`` connects with its secret; clients reach it and its JIDs,
it answers from any JID at its domain, and the server refuses what XEP-0114 and RFC 6120 §4.9
say it must: a wrong secret, an unknown domain, a second connection, a foreign ``from``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from xmppcore.stanza.errors import StreamCondition
from xmppcore.xml.namespaces import NS_STREAMS
from xmppcore.xml.parser import StreamHeader

from .clients import SlixPool
from .conftest import RunningServer, make_config, start_server
from .rawclient import RawClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

COMPONENT, SECRET = "echo.localhost", "component-secret"
WAIT = 5.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = make_config(tmp_path)
    config = replace(config, components=replace(config.components, port=0, secrets={COMPONENT: SECRET}))
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.server.stop()


def component_port(server: RunningServer) -> int:
    return server.server.components.addresses[0][1]


class EchoComponent:
    """slixmpp's ComponentXMPP answering every chat message with "echo: <body>" from the JID it was sent to."""

    def __init__(self, server: RunningServer, secret: str = SECRET) -> None:
        self.xmpp = slixmpp.ComponentXMPP(COMPONENT, secret, "127.0.0.1", component_port(server))
        self.xmpp.register_plugin("xep_0030")
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.xmpp.add_event_handler("session_start", lambda _: self.ready.set())
        self.xmpp.add_event_handler("disconnected", lambda _: self.closed.set())
        self.xmpp.add_event_handler("message", self._echo)

    def _echo(self, msg: slixmpp.Message) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.xmpp.send_message(mto=msg["from"], mfrom=msg["to"], mbody=f"echo: {msg['body']}", mtype="chat")

    async def start(self) -> EchoComponent:
        self.xmpp.connect()
        await asyncio.wait_for(self.ready.wait(), WAIT)
        return self

    async def stop(self) -> None:
        self.xmpp.disconnect()
        await asyncio.wait_for(self.closed.wait(), WAIT)


async def test_clients_reach_the_component_and_its_answers_come_back(server: RunningServer) -> None:
    component = await EchoComponent(server).start()
    try:
        async with SlixPool(server) as pool:
            await server.add_user("alice")
            alice = await pool.login("alice", "phone")
            for to in (COMPONENT, f"weather@{COMPONENT}", f"weather@{COMPONENT}/station"):
                alice.send_message(to, f"hello {to}")
                answer = await alice.receive(f"echo: hello {to}")
                assert str(answer["from"]) == to
    finally:
        await component.stop()


async def test_the_component_is_in_the_servers_disco_items_and_unreachable_when_gone(server: RunningServer) -> None:
    async with SlixPool(server) as pool:
        await server.add_user("alice")
        alice = await pool.login("alice", "phone", plugins=["xep_0030"])
        items = await alice.xmpp.plugin["xep_0030"].get_items(jid="localhost", timeout=WAIT)
        assert [item[0] for item in items["disco_items"]["items"]] == [COMPONENT]
        # Not connected: service-unavailable (RFC 6120 §8.3.3.19), for messages and IQs.
        alice.send_message(COMPONENT, "anyone?")
        error = await alice.messages.get(lambda m: m["type"] == "error")
        assert (str(error["from"]), error["error"]["condition"]) == (COMPONENT, "service-unavailable")
        with pytest.raises(IqError) as failure:
            await alice.xmpp.plugin["xep_0030"].get_info(jid=COMPONENT, timeout=WAIT)
        assert failure.value.iq["error"]["condition"] == "service-unavailable"
        # Connected: its own disco#info answers (slixmpp's component serves it).
        component = await EchoComponent(server).start()
        try:
            info = await alice.xmpp.plugin["xep_0030"].get_info(jid=COMPONENT, timeout=WAIT)
            assert str(info["from"]) == COMPONENT
        finally:
            await component.stop()


# ------------------------------------------------------------------------------ raw component


def component_header(domain: str) -> bytes:
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept'"
            f" xmlns:stream='{NS_STREAMS}' to='{domain}'>").encode()


async def raw_component(server: RunningServer, domain: str = COMPONENT) -> tuple[RawClient, str]:
    """Connected and header exchanged; returns the connection and the stream id."""
    raw = await RawClient.connect("127.0.0.1", component_port(server), domain=domain)
    await raw.send_header(component_header(domain))
    header = await raw.next_event()
    assert isinstance(header, StreamHeader), header
    return raw, header.attrs["id"]


def handshake(stream_id: str, secret: str) -> str:
    return f"<handshake>{hashlib.sha1((stream_id + secret).encode()).hexdigest()}</handshake>"


async def authenticated(server: RunningServer) -> RawClient:
    raw, stream_id = await raw_component(server)
    await raw.send(handshake(stream_id, SECRET))
    answer = await raw.next_element()
    assert answer.name == "handshake" and not answer.children
    return raw


async def test_a_wrong_secret_is_not_authorized(server: RunningServer) -> None:
    raw, stream_id = await raw_component(server)
    await raw.send(handshake(stream_id, "not the secret"))
    assert await raw.expect_stream_error() is StreamCondition.NOT_AUTHORIZED


async def test_an_unknown_domain_is_host_unknown(server: RunningServer) -> None:
    raw = await RawClient.connect("127.0.0.1", component_port(server), domain="nope.localhost")
    await raw.send_header(component_header("nope.localhost"))
    assert await raw.expect_stream_error() is StreamCondition.HOST_UNKNOWN


async def test_a_second_connection_for_the_domain_is_refused_and_the_first_keeps_working(
        server: RunningServer) -> None:
    first = await authenticated(server)
    second, stream_id = await raw_component(server)
    await second.send(handshake(stream_id, SECRET))
    assert await second.expect_stream_error() is StreamCondition.CONFLICT
    async with SlixPool(server) as pool:
        await server.add_user("alice")
        alice = await pool.login("alice", "phone")
        alice.send_message(COMPONENT, "still you?")
        got = await first.wait_for(lambda e: e.name == "message")
        assert got.findtext("body", "jabber:component:accept") == "still you?"
        assert got.get("from") == alice.jid


async def test_a_stanza_from_another_domain_ends_the_stream_and_reaches_nobody(server: RunningServer) -> None:
    raw = await authenticated(server)
    async with SlixPool(server) as pool:
        await server.add_user("alice")
        alice = await pool.login("alice", "phone", plugins=["xep_0199"])
        await alice.announce()
        await raw.send(f"<message from='bot@{COMPONENT}' to='alice@localhost' type='chat'><body>fine</body></message>")
        await alice.receive("fine")
        await raw.send("<message from='admin@localhost' to='alice@localhost' type='chat'><body>spoofed</body></message>")
        assert await raw.expect_stream_error() is StreamCondition.INVALID_FROM
        # A round trip later, the spoofed message has still not arrived (and alice is unharmed).
        await alice.xmpp.plugin["xep_0199"].send_ping(slixmpp.JID("localhost"), timeout=WAIT)
        assert [m for m in alice.messages.pending if m["body"] == "spoofed"] == []
