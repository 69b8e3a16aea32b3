"""The group-chat bot (``bots/groupchat.py``) in XEP-0045 rooms of Prosody's MUC service.

xmppcore has no MUC yet, so the rooms are on ``muc.prosody.test`` (``prosody-config/``).  The bot
logs in on Prosody itself, on ejabberd (and enters the room over ejabberd↔Prosody federation) and
on an xmppcore serving xmppcore.test (over xmppcore↔Prosody federation, RFC 6120 §2.5).  Each test
uses a room of its own, which the bot creates: it becomes the owner and makes it an instant room
(§10.1.2) so that others may enter.  alice, a real slixmpp client on Prosody, then enters too and
speaks; the bot's answers are groupchat messages to the room (§7.4) from ``room/dicebot``.
To show that a line got no answer, alice asks something else afterwards: the room relays one
occupant's messages in order, so an answer to the first would have come before the second's.
"""

from __future__ import annotations

import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from slixmpp import JID
from slixmpp.stanza import Message

from bots import ConfigError, Mode, Settings, groupchat
from bots.muc import addressed_to, mention_in

from ..federation.nodes import Node, node_config, running_node
from ..federation.peers import (
    EJABBERD,
    PROSODY,
    S2S_TIMEOUT,
    XMPPCORE_ADDRESS,
    XMPPCORE_DOMAIN,
    PeerClients,
    PeerPool,
    RunningPeer,
    require_peer,
)
from ..integration.clients import SlixClient
from .conftest import BotPool, LogLines
from .test_process import BotProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MUC = "muc.prosody.test"   # prosody-config/prosody.cfg.lua
NICK = "dicebot"
JOIN_TIMEOUT = 2 * S2S_TIMEOUT  # the first stanza to the room may open s2s streams both ways
_ROLLED = re.compile(r"alice: 1d6: ([1-6]) = \1")


def token() -> str:
    return uuid.uuid4().hex[:8]


# ------------------------------------------------------------------ recognising mentions


@pytest.mark.parametrize(("text", "request_text"), [
    ("dicebot: roll 2d6", "roll 2d6"), ("dicebot, help", "help"), ("@dicebot time", "time"),
    ("  DiceBot:roll", "roll"), ("dicebot roll", "roll"), ("dicebot", ""), ("dicebot:", ""),
    ("dicebots: roll", None), ("dicebot's roll", None), ("roll dicebot", None), ("", None),
])
def test_addressed_to(text: str, request_text: str | None) -> None:
    assert addressed_to(NICK, text) == request_text


def room_message(sender: str, body: str, *, delayed: bool = False) -> Message:
    xml = ET.Element("{jabber:client}message", {"type": "groupchat", "from": sender, "to": "bot@x.test/r"})
    ET.SubElement(xml, "{jabber:client}body").text = body
    if delayed:  # XEP-0203, as a room marks the history it replays (XEP-0045 §7.2.15)
        ET.SubElement(xml, "{urn:xmpp:delay}delay", {"stamp": "2024-01-01T00:00:00Z", "from": "r@m.test"})
    return Message(xml=xml)  # type: ignore[no-untyped-call]


def test_mentions_are_live_messages_of_others_that_name_the_bot() -> None:
    found = mention_in(room_message("r@m.test/alice", "dicebot: roll 1d6"), NICK)
    assert found is not None and (found.room, found.speaker, found.text) == ("r@m.test", "alice", "roll 1d6")
    assert mention_in(room_message("r@m.test/alice", "dicebot: roll", delayed=True), NICK) is None
    assert mention_in(room_message("r@m.test/dicebot", "dicebot: roll"), NICK) is None  # its own
    assert mention_in(room_message("r@m.test", "dicebot: roll"), NICK) is None  # the room itself
    assert mention_in(room_message("r@m.test/alice", "roll 1d6"), NICK) is None


def test_runs_as_an_account_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    argv = ["--component", "dice.example.org", "--secret-file", str(secret), "--server", "127.0.0.1:5347",
            "--room", f"lobby@{MUC}"]
    assert groupchat.make_bot().main(argv, prog="groupchat") == 2
    assert capsys.readouterr().err == ("groupchat: groupchat cannot run as a component (--component); "
                                       "run it as an account (--jid)\n")
    with pytest.raises(ConfigError, match="--room takes room@service"):
        groupchat.room_list("muc.example.org")


# ------------------------------------------------------------------ in rooms


def has_muc(peer: RunningPeer) -> bool:
    laid_out = peer.cafile.parent.parent / "prosody.cfg.lua"  # in prosody.sh's run directory
    return f'Component "{MUC}"' in laid_out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def prosody() -> Iterator[RunningPeer]:
    pool = PeerPool()
    try:
        peer = require_peer(pool, "prosody")
        if not has_muc(peer):
            # A Prosody left running (XMPPCORE_KEEP_PEERS=1) from before it had a MUC service.
            subprocess.run(["bash", str(PROSODY.script), "stop"], check=True, timeout=60)
            pool.close()
            pool = PeerPool()
            peer = require_peer(pool, "prosody")
        yield peer
    finally:
        pool.close()


@pytest.fixture(scope="module")
def ejabberd() -> Iterator[RunningPeer]:
    pool = PeerPool()
    try:
        yield require_peer(pool, "ejabberd")
    finally:
        pool.close()


@pytest.fixture
async def xmppcore(tmp_path: Path, prosody: RunningPeer) -> AsyncIterator[Node]:
    """xmppcore.test on 127.0.0.4, federating on 5269 like ``tests/federation/test_interop.py``."""
    routes = {domain: f"{PROSODY.address}:{PROSODY.s2s_port}" for domain in (PROSODY.domain, MUC)}
    routes[EJABBERD.domain] = f"{EJABBERD.address}:{EJABBERD.s2s_port}"
    config = node_config(tmp_path, XMPPCORE_DOMAIN, host=XMPPCORE_ADDRESS, s2s_port=5269, routes=routes,
                         connect_timeout=S2S_TIMEOUT)
    async with running_node(config) as node:
        await node.add_user("dicebot")
        yield node


def on_peer(peer: RunningPeer, user: str) -> Settings:
    """The bot as ``user`` on ``peer``, with a resource of its own (other tests use the account)."""
    server = peer.server
    return Settings(Mode.CLIENT, f"{server.jid(user)}/bot-{token()}", server.password,
                    server=(server.address, server.c2s_port), cafile=peer.cafile)


def in_room(settings: Settings, room: str) -> Settings:
    """``settings`` for the group-chat bot in ``room`` as ``dicebot``, reconnecting at once."""
    return replace(settings, options=MappingProxyType({"room": room, "nick": NICK}),
                   reconnect_delay=0.05, reconnect_max_delay=0.5)


async def enter_as_alice(clients: PeerClients, prosody: RunningPeer, room: str) -> SlixClient:
    alice = await clients.login(prosody, "alice", f"asker-{token()}", plugins=["xep_0045"])
    await alice.xmpp.plugin["xep_0045"].join_muc_wait(JID(room), "alice", maxstanzas=0, timeout=S2S_TIMEOUT)
    return alice


async def say(alice: SlixClient, room: str, text: str) -> str:
    """Say ``text`` in the room; the body of the bot's next message there (to everyone)."""
    alice.send_message(room, text, kind="groupchat")
    answer = await alice.messages.get(lambda m: str(m["from"]) == f"{room}/{NICK}", timeout=S2S_TIMEOUT)
    assert answer["type"] == "groupchat"
    return str(answer["body"])


async def answers_mentions(settings: Settings, prosody: RunningPeer, bots: BotPool) -> None:
    room = f"dice-{token()}@{MUC}"
    with LogLines("bots.groupchat") as log:
        await bots.start(groupchat.make_bot(), in_room(settings, room))
        await log.lines.get(lambda line: line == f"in {room} as {NICK}", timeout=JOIN_TIMEOUT)
    async with PeerClients() as clients:
        alice = await enter_as_alice(clients, prosody, room)
        assert _ROLLED.fullmatch(await say(alice, room, f"{NICK}: roll 1d6"))
        alice.send_message(room, "roll 1d6", kind="groupchat")            # names no one
        alice.send_message(room, f"{NICK}: dance", kind="groupchat")      # no such command
        assert (await say(alice, room, f"{NICK}, time")).endswith("Z (UTC)")
        assert (await say(alice, room, f"@{NICK} help")).startswith("alice: Commands:\n  help [command]")


async def test_a_bot_on_prosody_answers_in_a_room(prosody: RunningPeer, bots: BotPool) -> None:
    await answers_mentions(on_peer(prosody, "bob"), prosody, bots)


async def test_a_bot_on_ejabberd_answers_in_a_room_across_federation(
        prosody: RunningPeer, ejabberd: RunningPeer, bots: BotPool) -> None:
    await answers_mentions(on_peer(ejabberd, "carol"), prosody, bots)


async def test_a_bot_on_xmppcore_answers_in_a_room_across_federation(
        prosody: RunningPeer, xmppcore: Node, bots: BotPool) -> None:
    settings = Settings(Mode.CLIENT, f"dicebot@{XMPPCORE_DOMAIN}", "federation-secret",
                        server=xmppcore.c2s, cafile=xmppcore.cafile)
    await answers_mentions(settings, prosody, bots)


async def test_the_bot_enters_again_after_a_reconnection(prosody: RunningPeer, bots: BotPool) -> None:
    room = f"again-{token()}@{MUC}"
    with LogLines("bots.groupchat") as log:
        bot = await bots.start(groupchat.make_bot(), in_room(on_peer(prosody, "bob"), room))
        await log.lines.get(lambda line: line == f"in {room} as {NICK}", timeout=JOIN_TIMEOUT)
        async with PeerClients() as clients:
            alice = await enter_as_alice(clients, prosody, room)
            bot.xmpp.abort()  # the connection is lost: the room sees the bot leave
            await alice.presences.get(lambda p: str(p["from"]) == f"{room}/{NICK}" and p["type"] == "unavailable",
                                      timeout=S2S_TIMEOUT)
            # Said while the bot is away: the room keeps it as history, not for the bot to answer.
            alice.send_message(room, f"{NICK}: roll 3d6", kind="groupchat")
            await log.lines.get(lambda line: line == f"in {room} as {NICK}", timeout=JOIN_TIMEOUT)
            assert _ROLLED.fullmatch(await say(alice, room, f"{NICK}: roll 1d6"))


async def test_a_nick_in_use_keeps_the_bot_out_of_that_room_only(prosody: RunningPeer, bots: BotPool) -> None:
    """XEP-0045 §7.2.10: the room refuses another user's occupant with the same nick (``conflict``;
    Prosody lets sessions of the same account share one)."""
    room = f"taken-{token()}@{MUC}"
    with LogLines("bots.groupchat") as log:
        await bots.start(groupchat.make_bot(), in_room(on_peer(prosody, "bob"), room))
        await log.lines.get(lambda line: line == f"in {room} as {NICK}", timeout=JOIN_TIMEOUT)
        second = await bots.start(groupchat.make_bot(), in_room(on_peer(prosody, "alice"), room))
        refused = await log.lines.get(lambda line: line.startswith(f"not in {room}"), timeout=JOIN_TIMEOUT)
    assert refused == f"not in {room}: {room} refused '{NICK}': conflict"
    assert second.online


async def test_python_m_bots_groupchat(prosody: RunningPeer, tmp_path: Path) -> None:
    room = f"process-{token()}@{MUC}"
    password = tmp_path / "bob.pass"
    password.write_text(PROSODY.password + "\n", encoding="utf-8")
    bot = await BotProcess.start(
        "bots.groupchat", "--jid", f"bob@{PROSODY.domain}/process-{token()}", "--password-file", str(password),
        "--server", f"{PROSODY.address}:{PROSODY.c2s_port}", "--cafile", str(prosody.cafile),
        "--room", room, "--nick", NICK)
    try:
        await bot.line(re.compile(re.escape(f"in {room} as {NICK}") + "$"))
        async with PeerClients() as clients:
            alice = await enter_as_alice(clients, prosody, room)
            assert _ROLLED.fullmatch(await say(alice, room, f"{NICK}: roll 1d6"))
        bot.process.terminate()
        assert await bot.exit_status() == 0, "\n".join(bot.log)
    finally:
        bot.kill()
