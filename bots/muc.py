"""XEP-0045 Multi-User Chat for bots: entering rooms, and telling which messages speak to the bot.

A bot enters a room by sending presence to ``room@service/nick``; it is in once the room sends
the bot its own presence back, marked with status 110 (§7.2.3).  It asks for no history
(§7.2.15: ``maxstanzas='0'``) and, since a room may replay some anyway, ignores every message
that carries a XEP-0203 delay.  When the room did not exist, the service creates it with the bot
as its owner and keeps it locked, to everyone else, until the owner configures it (status 201,
§10.1.1): the bot accepts the service's default configuration by submitting an empty form, which
makes it an "instant room" (§10.1.2).

In a room, a message is meant for the bot when it starts with the bot's nick, the way chat
clients complete one: ``helper: roll 2d6``, ``helper, help``, ``@helper time``.  The room sends
everyone's messages to every occupant, the bot's own included (§7.4): those are not mentions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from slixmpp import JID
from slixmpp.basexmpp import BaseXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Message, Presence
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from .framework import is_delayed

__all__ = ["STATUS_ROOM_CREATED", "STATUS_SELF", "Mention", "RoomError", "addressed_to",
           "enter_room", "mention_in"]

STATUS_SELF = 110          # §7.2.3: this presence is about you
STATUS_ROOM_CREATED = 201  # §10.1.1: a new room, locked until its owner configures it
_SEPARATORS = (":", ",")   # "nick: …", "nick, …"


class RoomError(Exception):
    """The room refused the bot (its nick in use, §7.2.10; members only; banned…) or was silent."""


@dataclass(frozen=True, slots=True)
class Mention:
    """A live room message addressed to the bot."""

    room: str     # the room's bare JID
    speaker: str  # the nick of the occupant who wrote it
    text: str     # what follows the bot's nick ("" when it was only the nick)


def addressed_to(nick: str, text: str) -> str | None:
    """What ``text`` says to ``nick`` when it starts by naming it (``nick: …``, ``nick, …``,
    ``@nick …``, ``nick …`` or just ``nick``), else ``None``.  Nicks are compared without
    regard to case; ``nickname: hi`` does not name ``nick``."""
    words = text.strip().removeprefix("@")
    if not nick or words[:len(nick)].casefold() != nick.casefold():
        return None
    rest = words[len(nick):]
    if rest.startswith(_SEPARATORS):
        return rest[1:].strip()
    if rest and not rest[0].isspace():
        return None
    return rest.strip()


def mention_in(message: Message, nick: str) -> Mention | None:
    """The mention of ``nick`` in a ``groupchat`` message of a room the bot is in as ``nick``;
    ``None`` for history (delayed), for the room's own messages (no occupant nick), for the
    bot's own messages and for messages that do not start by naming it."""
    if message["type"] != "groupchat" or is_delayed(message):
        return None
    sender = message["from"]
    if not sender.resource or sender.resource == nick:
        return None
    text = addressed_to(nick, str(message["body"]))
    return None if text is None else Mention(str(sender.bare), str(sender.resource), text)


async def enter_room(xmpp: BaseXMPP, room: str, nick: str, *, timeout: float) -> str:
    """Enter ``room`` as ``nick`` and return the nick the room gave (a service may change it,
    status 210); make the room an instant room when it was created for us.  ``xmpp`` must have
    the ``xep_0045`` plugin.  :class:`RoomError` when the room refuses or does not answer."""
    muc = xmpp.plugin["xep_0045"]
    join = muc.make_join_stanza(JID(room), nick, maxstanzas=0)  # §7.2.15: no history, please
    presence = await _answer_to(xmpp, join, timeout)
    if presence["type"] == "error":
        raise RoomError(f"{room} refused {nick!r}: {presence['error']['condition']}")
    if STATUS_ROOM_CREATED in presence["muc"]["status_codes"]:
        try:  # §10.1.2: an empty submitted form accepts the default configuration
            empty = xmpp.plugin["xep_0004"].make_form(  # type: ignore[no-untyped-call]
                ftype="submit")
            await muc.set_room_config(JID(room), empty, timeout=timeout)
        except IqError as exc:
            raise RoomError(f"{room} refused to become an instant room: "
                            f"{exc.iq['error']['condition']}") from None
        except IqTimeout:
            raise RoomError(f"{room} did not confirm its configuration in {timeout:g} s") from None
    return str(presence["from"].resource)


async def _answer_to(xmpp: BaseXMPP, join: Presence, timeout: float) -> Presence:
    """Send ``join`` and return the room's answer: our own presence, marked with status 110
    (§7.2.3), or an error.  (slixmpp's ``join_muc_wait`` misses errors that do not repeat the
    ``<x xmlns='http://jabber.org/protocol/muc'/>`` of the request, as Prosody's do not.)"""
    room = join["to"].bare
    answer: asyncio.Future[Presence] = asyncio.get_running_loop().create_future()

    def on_presence(stanza: StanzaBase) -> None:
        if not isinstance(stanza, Presence) or stanza["from"].bare != room or answer.done():
            return
        user = stanza.get_plugin("muc", check=True)  # <x xmlns='…muc#user'/>
        if stanza["type"] == "error" or (user is not None and STATUS_SELF in user["status_codes"]):
            answer.set_result(stanza)

    name = f"bots.muc: entering {room} ({id(answer)})"
    xmpp.register_handler(Callback(name, MatchXPath(f"{{{xmpp.default_ns}}}presence"), on_presence))
    try:
        join.send()
        return await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        raise RoomError(f"{room} did not let us in within {timeout:g} s") from None
    finally:
        xmpp.remove_handler(name)
