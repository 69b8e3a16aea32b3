"""The echo bot as a XEP-0114 external component of xmppcore: the same bot, chosen by configuration.

xmppcore serves ``echo.localhost`` through its component listener (``[components]``, secret
``s3cret``).  After the handshake (XEP-0114 §3) the bot gets what is sent to the domain and to any
JID at it, and answers from the address that was written to.  xmppcore refuses a second
connection for a domain that is connected with the ``conflict`` stream error: the second bot
ends with :class:`~bots.BotError` (retrying would never help) while the first keeps answering.
A wrong secret and an unknown domain end the bot the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bots import BotError, Mode, Settings, echo

from ..integration.clients import SlixClient, SlixPool
from ..integration.conftest import RunningServer, make_config, start_server
from .conftest import BOT_TIMEOUT, BotPool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPONENT, SECRET = "echo.localhost", "s3cret"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = make_config(tmp_path)
    config = replace(config, components=replace(config.components, port=0, secrets={COMPONENT: SECRET}))
    running = await start_server(config)
    try:
        await running.add_user("alice")
        yield running
    finally:
        await running.server.stop()


def component(server: RunningServer, domain: str = COMPONENT, secret: str = SECRET) -> Settings:
    host, port = server.server.components.addresses[0][:2]
    return Settings(Mode.COMPONENT, domain, secret, server=(host, port),
                    reconnect_delay=0.05, reconnect_max_delay=0.5, connect_timeout=10.0)


async def echoed(alice: SlixClient, address: str, text: str) -> None:
    """``text`` sent to ``address`` comes back from it, as a chat message to alice's full JID."""
    alice.send_message(address, text)
    reply = await alice.messages.get(lambda m: str(m["from"]) == address)
    assert (str(reply["body"]), reply["type"], str(reply["to"])) == (text, "chat", alice.jid)


async def test_the_echo_bot_answers_as_a_component(server: RunningServer, bots: BotPool) -> None:
    await bots.start(echo.make_bot(), component(server))
    async with SlixPool(server) as clients:
        alice = await clients.login("alice", "phone")
        await echoed(alice, COMPONENT, "hello")
        await echoed(alice, f"echo@{COMPONENT}", "hello, echo")
        await echoed(alice, f"echo@{COMPONENT}/desk", "and a full JID")
        alice.send_message(COMPONENT, "help")
        listing = await alice.messages.get(lambda m: str(m["from"]) == COMPONENT)
        assert str(listing["body"]).startswith("Commands:\n  help [command]")


async def test_a_second_bot_for_the_domain_ends_with_conflict(server: RunningServer, bots: BotPool) -> None:
    await bots.start(echo.make_bot(), component(server))
    second = await bots.serve(echo.make_bot(), component(server))
    with pytest.raises(BotError, match="conflict"):
        await asyncio.wait_for(second, BOT_TIMEOUT)
    async with SlixPool(server) as clients:
        alice = await clients.login("alice", "phone")
        await echoed(alice, COMPONENT, "first one still here?")


@pytest.mark.parametrize(("domain", "secret", "condition"), [
    (COMPONENT, "not-the-secret", "not-authorized"),   # XEP-0114 §3
    ("other.localhost", SECRET, "host-unknown"),       # a domain the server does not know
])
async def test_what_retrying_cannot_fix_ends_the_bot(server: RunningServer, bots: BotPool,
                                                     domain: str, secret: str, condition: str) -> None:
    task = await bots.serve(echo.make_bot(), component(server, domain, secret))
    with pytest.raises(BotError, match=condition):
        await asyncio.wait_for(task, BOT_TIMEOUT)
