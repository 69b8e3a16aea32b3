"""The example bots end to end against xmppcore: a real slixmpp client asks, the bot answers.

Each bot logs in as an account of the in-process server over STARTTLS with the server's
certificate verified (RFC 6120 §5, §13.7.2), sends initial presence (RFC 6121 §4.2), and answers
chat messages to its full JID with a chat message back to the sender's (RFC 6121 §5.2.2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import slixmpp

from bots import commandbot, echo
from bots.framework import Bot

from ..integration.clients import Inbox, SlixClient, SlixPool
from ..integration.conftest import RunningServer
from .conftest import BotPool, bot_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def ask(client: SlixClient, bot: Bot, text: str) -> str:
    """Send ``text`` to the bot's full JID; the body of its next chat message to the client."""
    bot_jid = str(bot.xmpp.boundjid.full)
    client.send_message(bot_jid, text)
    reply = await client.messages.get(lambda m: str(m["from"]) == bot_jid)
    assert reply["type"] == "chat"
    assert str(reply["to"]) == client.jid
    return str(reply["body"])


async def test_echo_bot_echoes(xmppcore: RunningServer, bots: BotPool) -> None:
    bot = await bots.start(echo.make_bot(), bot_settings(xmppcore, "echobot"))
    async with SlixPool(xmppcore) as clients:
        alice = await clients.login("alice", "phone")
        assert await ask(alice, bot, "hello, bot") == "hello, bot"
        assert await ask(alice, bot, '  with "quotes" & <markup>  ') == 'with "quotes" & <markup>'
        assert (await ask(alice, bot, "help")).startswith("Commands:\n  help [command]")


async def test_command_bot_answers_commands(xmppcore: RunningServer, bots: BotPool) -> None:
    bot = await bots.start(commandbot.make_bot(), bot_settings(xmppcore, "commandbot"))
    async with SlixPool(xmppcore) as clients:
        alice = await clients.login("alice", "phone")
        listing = await ask(alice, bot, "help")
        assert [line.split()[0] for line in listing.splitlines()[1:]] == ["help", "time", "roll", "uptime"]
        assert await ask(alice, bot, "help roll") == (
            "roll [dice]\nRoll dice, e.g. roll 2d6 (default: one six-sided die)")

        rolled = re.fullmatch(r"3d6: (\d) \+ (\d) \+ (\d) = (\d+)", await ask(alice, bot, "roll 3d6"))
        assert rolled is not None
        faces = [int(face) for face in rolled.groups()[:3]]
        assert all(1 <= face <= 6 for face in faces) and sum(faces) == int(rolled[4])
        assert await ask(alice, bot, "roll 2x6") == "dice look like 2d6, not '2x6'"

        stamp = (await ask(alice, bot, "time")).removesuffix(" (UTC)")
        assert stamp.endswith("Z")  # XEP-0082 UTC
        told = datetime.fromisoformat(stamp)
        assert abs(datetime.now(UTC) - told) < timedelta(seconds=5)
        assert (await ask(alice, bot, "time Asia/Tokyo")).endswith("+09:00 (Asia/Tokyo)")

        assert re.fullmatch(r"up 0:00:\d\d", await ask(alice, bot, "uptime"))
        assert await ask(alice, bot, "dance") == "Unknown command 'dance'; send 'help' for the list."


async def test_command_bot_refuses_and_obeys_by_bare_jid(xmppcore: RunningServer, bots: BotPool) -> None:
    bot = await bots.start(commandbot.make_bot(), bot_settings(
        xmppcore, "commandbot", admins=frozenset({"alice@localhost"})))
    async with SlixPool(xmppcore) as clients:
        mallory = await clients.login("mallory", "desk")
        alice = await clients.login("alice", "phone")
        assert await ask(mallory, bot, "shutdown") == "Not allowed: shutdown"
        assert "shutdown" not in await ask(mallory, bot, "help")
        assert bot.online  # still serving after the refusal
        assert "shutdown" in await ask(alice, bot, "help")
        assert await ask(alice, bot, "shutdown") == "Bye."
        await bots.stopped(bot)
        assert not bot.online


async def test_subscription_policy(xmppcore: RunningServer, bots: BotPool) -> None:
    """RFC 6121 §3.1: requests from JIDs the bot answers are approved, with a request back;
    others are refused with ``unsubscribed``."""
    restricted = Bot("restricted", admins=["alice@localhost"])
    restricted.command("only-bob", help="", allowed=["bob@localhost"])(lambda ctx: "hi")
    await bots.start(restricted, bot_settings(xmppcore, "commandbot"))
    async with SlixPool(xmppcore) as clients:
        bob = await clients.login("bob", "desk")
        mallory = await clients.login("mallory", "desk")
        for client in (bob, mallory):
            await client.announce()  # RFC 6121 §3.1.6: the answer goes to available resources
            client.xmpp.send_presence_subscription(pto="commandbot@localhost")
        answer = await bob.presences.get(lambda p: p["type"] == "subscribed")
        assert str(answer["from"]) == "commandbot@localhost"
        asked_back = await bob.presences.get(lambda p: p["type"] == "subscribe")
        assert str(asked_back["from"]) == "commandbot@localhost"
        refused = await mallory.presences.get(lambda p: p["type"] in ("subscribed", "unsubscribed"))
        assert (refused["type"], str(refused["from"])) == ("unsubscribed", "commandbot@localhost")


async def test_messages_stored_while_offline_are_not_answered(xmppcore: RunningServer, bots: BotPool) -> None:
    """XEP-0160 §2: what was said while the bot was away arrives with a
    XEP-0203 delay when it comes online; a command is meant for its own time, so no answer."""
    async with SlixPool(xmppcore) as clients:
        alice = await clients.login("alice", "phone", plugins=["xep_0199"])
        alice.send_message("echobot@localhost", "said while you were away")
        # A session's stanzas are routed in order: once the ping is answered the message is stored.
        await alice.xmpp.plugin["xep_0199"].send_ping(slixmpp.JID("localhost"), timeout=5)
        bot = await bots.start(echo.make_bot(), bot_settings(xmppcore, "echobot"))
        # The stored message reached the bot with its initial presence, before this one.
        assert await ask(alice, bot, "said now") == "said now"
        assert [str(m["body"]) for m in alice.messages.pending] == []


async def test_groupchat_messages_go_to_the_groupchat_hooks(xmppcore: RunningServer, bots: BotPool) -> None:
    """What a group-chat bot builds on: ``groupchat`` messages (XEP-0045 §7.4) reach the
    ``on_groupchat`` hooks with the stanza, and are not taken for commands."""
    bot = echo.make_bot()
    heard: Inbox[str] = Inbox()
    bot.on_groupchat(lambda running, message: heard.put(f"{message['from']}: {message['body']}"))
    await bots.start(bot, bot_settings(xmppcore, "echobot"))
    async with SlixPool(xmppcore) as clients:
        alice = await clients.login("alice", "phone")
        alice.send_message(str(bot.xmpp.boundjid.full), "help", kind="groupchat")
        assert await heard.get() == f"{alice.jid}: help"
        assert await ask(alice, bot, "after") == "after"  # and nothing was answered before this
        assert alice.messages.pending == []
