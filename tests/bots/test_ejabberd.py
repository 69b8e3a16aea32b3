"""The same bots against the reference ejabberd: as an account, and as an external component.

The bot logs in as carol@ejabberd.test over STARTTLS, verifying ejabberd's self-signed
certificate (RFC 6120 §13.7.2); a real slixmpp client logged in as alice sends it commands.
As a component it connects to ejabberd's XEP-0114 listener (127.0.0.2:5347) for
component.ejabberd.test and answers from whichever address at that domain was written to.
ejabberd is started by ``ejabberd-config/ejabberd.sh`` when needed (tests skip when it cannot run).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType

import pytest

from bots import BotError, Mode, Settings, commandbot, echo
from bots.notifier import Notifier

from ..federation.peers import PeerClients, PeerPool, RunningPeer, require_peer
from .conftest import BOT_TIMEOUT, BotPool
from .test_webhook import http, post
from .test_xmppcore import ask

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

COMPONENT = "component.ejabberd.test"   # ejabberd-config/ejabberd.yml
COMPONENT_SECRET = "component-secret"
COMPONENT_PORT = 5347


@pytest.fixture(scope="module")
def ejabberd() -> Iterator[RunningPeer]:
    pool = PeerPool()
    try:
        yield require_peer(pool, "ejabberd")
    finally:
        pool.close()


def token() -> str:
    return uuid.uuid4().hex[:8]


def account(peer: RunningPeer, user: str = "carol", **changes: object) -> Settings:
    """The bot as ``user@ejabberd.test/bot-…`` (a resource of its own: other tests use carol)."""
    server = peer.server
    settings = Settings(Mode.CLIENT, f"{server.jid(user)}/bot-{token()}", server.password,
                        server=(server.address, server.c2s_port), cafile=peer.cafile,
                        reconnect_delay=0.05, reconnect_max_delay=0.5)
    return replace(settings, **changes)  # type: ignore[arg-type]


def component(secret: str = COMPONENT_SECRET) -> Settings:
    return Settings(Mode.COMPONENT, COMPONENT, secret, server=("127.0.0.2", COMPONENT_PORT),
                    reconnect_delay=0.05, reconnect_max_delay=0.5)


async def test_echo_bot_on_ejabberd(ejabberd: RunningPeer, bots: BotPool) -> None:
    bot = await bots.start(echo.make_bot(), account(ejabberd))
    async with PeerClients() as clients:
        alice = await clients.login(ejabberd, "alice", f"asker-{token()}")
        assert await ask(alice, bot, "hello from alice") == "hello from alice"


async def test_command_bot_on_ejabberd(ejabberd: RunningPeer, bots: BotPool) -> None:
    settings = account(ejabberd, admins=frozenset({"bob@ejabberd.test"}))
    bot = await bots.start(commandbot.make_bot(), settings)
    async with PeerClients() as clients:
        alice = await clients.login(ejabberd, "alice", f"asker-{token()}")
        bob = await clients.login(ejabberd, "bob", f"admin-{token()}")
        assert (await ask(alice, bot, "help")).splitlines()[0] == "Commands:"
        assert re.fullmatch(r"2d6: \d \+ \d = \d+", await ask(alice, bot, "roll 2d6"))
        assert (await ask(alice, bot, "time")).endswith("Z (UTC)")
        assert (await ask(alice, bot, "uptime")).startswith("up 0:")
        assert await ask(alice, bot, "shutdown") == "Not allowed: shutdown"
        assert await ask(bob, bot, "shutdown") == "Bye."
        await bots.stopped(bot)


async def test_notifier_on_ejabberd(ejabberd: RunningPeer, bots: BotPool) -> None:
    notifier = Notifier()
    async with PeerClients() as clients:
        alice = await clients.login(ejabberd, "alice", f"notified-{token()}")
        settings = replace(account(ejabberd), options=MappingProxyType(
            {"to": alice.jid, "webhook": "127.0.0.1:0"}))
        await bots.start(notifier.bot, settings)
        await notifier.webhook_ready.wait()
        assert notifier.webhook_address is not None
        text = f"job {token()} done"
        assert await http(notifier.webhook_address, post(text.encode())) == (202, "queued\n")
        received = await alice.receive(text)
        assert str(received["from"]) == notifier.bot.xmpp.boundjid.full


async def test_echo_bot_as_an_ejabberd_component(ejabberd: RunningPeer, bots: BotPool) -> None:
    """XEP-0114: after the handshake the component gets stanzas for its domain and any JID at it,
    and its answers from those addresses reach the user."""
    await bots.start(echo.make_bot(), component())
    async with PeerClients() as clients:
        alice = await clients.login(ejabberd, "alice", f"asker-{token()}")
        for address in (f"echo@{COMPONENT}", COMPONENT):
            alice.send_message(address, f"to {address}")
            reply = await alice.receive(f"to {address}")
            assert str(reply["from"]) == address
            assert (reply["type"], str(reply["to"])) == ("chat", alice.jid)
        alice.send_message(COMPONENT, "help")
        listing = await alice.messages.get(lambda m: str(m["from"]) == COMPONENT)
        assert str(listing["body"]).startswith("Commands:")


async def test_wrong_component_secret_ends_the_bot(ejabberd: RunningPeer, bots: BotPool) -> None:
    task = await bots.serve(echo.make_bot(), component(secret="not-the-secret"))
    with pytest.raises(BotError, match="not-authorized"):
        await asyncio.wait_for(task, BOT_TIMEOUT)
