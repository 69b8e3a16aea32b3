"""Group-chat bot: enters XEP-0045 rooms and answers the messages that name it.

::

    python -m bots.groupchat --jid helper@example.org --password-file helper.pass \\
        --room lobby@muc.example.org --nick helper

then, in the room: ``helper: roll 2d6`` → ``alice: 2d6: 3 + 5 = 8``; ``helper, time Asia/Tokyo``;
``helper: help``.  ``--room`` takes several rooms separated by commas; ``--nick`` defaults to
the JID's local part.  A room that does not exist yet is created with the service's default
configuration (an instant room) and the bot as its owner.

The bot answers, in the room and prefixed with the asker's nick, the lines that start with its
nick and name one of its commands (``help``, ``roll``, ``time``).  It ignores everything else:
other lines (two bots answering each other's "unknown command" would never stop), its own
messages and the history a room replays on entry.  It enters its rooms again after every
reconnection.  A command's sender is the occupant's room address (``room@service/nick``), not
a real JID, so commands restricted to some JIDs or to admins are refused in rooms.  It runs as
an account only; ``--config`` takes the same settings, ``room`` and ``nick`` under ``[options]``.
"""

from __future__ import annotations

import asyncio

from slixmpp import JID
from slixmpp.stanza import Message

from bots import Bot, ConfigError, Context, Mode, Option
from bots.commandbot import add_time_and_dice
from bots.commands import bare_jid
from bots.muc import RoomError, enter_room, mention_in


def room_list(text: str) -> tuple[str, ...]:
    """``--room``: comma-separated bare room JIDs, normalised."""
    rooms = tuple(bare_jid(room) for room in text.split(",") if room.strip())
    if not rooms or any(not JID(room).user for room in rooms):
        raise ConfigError(f"--room takes room@service[,room@service…], not {text!r}")
    return rooms


OPTIONS = (Option("room", "ROOM@SERVICE[,ROOM@SERVICE…]: the rooms to enter", required=True,
                  check=room_list),
           Option("nick", "the bot's nickname in its rooms (default: the JID's local part)"))


def make_bot() -> Bot:
    bot = Bot("groupchat", description="Answers mentions in group chats: help, roll, time.",
              options=OPTIONS, plugins=["xep_0045"], modes=[Mode.CLIENT])
    add_time_and_dice(bot)
    nicks: dict[str, str] = {}  # room -> our nick there, once we are in

    async def enter(running: Bot, room: str, nick: str) -> None:
        try:
            nicks[room] = await enter_room(running.xmpp, room, nick,
                                           timeout=running.settings.connect_timeout)
        except RoomError as exc:
            running.log.warning("not in %s: %s", room, exc)
        else:
            running.log.info("in %s as %s", room, nicks[room])

    @bot.on_start
    async def enter_rooms(running: Bot) -> None:  # a new session is in no room
        nicks.clear()
        options = running.settings.options
        nick = options.get("nick") or str(JID(running.settings.jid).user)
        await asyncio.gather(*(enter(running, room, nick) for room in room_list(options["room"])))

    @bot.on_groupchat
    async def answer_mentions(running: Bot, message: Message) -> None:
        nick = nicks.get(str(message["from"].bare))
        mention = mention_in(message, nick) if nick else None
        request = (mention.text or "help") if mention else ""
        if mention is None or not running.commands.names_command(request):
            return
        ctx = Context(running, str(message["from"]), message)
        answer = await running.run_command(ctx, request)
        if answer is not None:
            ctx.reply(f"{mention.speaker}: {answer}")  # to the room (XEP-0045 §7.4)

    return bot


if __name__ == "__main__":
    raise SystemExit(make_bot().main())
