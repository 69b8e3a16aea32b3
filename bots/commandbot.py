"""Command bot: ``help``, ``time [zone]``, ``roll [dice]``, ``uptime``, and ``shutdown`` for admins.

::

    python -m bots.commandbot --jid helper@example.org --password-file helper.pass \\
        --admin alice@example.org

then, in a chat with it: ``roll 2d6`` → ``2d6: 3 + 5 = 8``; ``time Europe/Paris``;
``uptime``; ``help roll``.  Only the admins (``--admin``, repeatable) may use ``shutdown``.
Run it as a component with ``--component DOMAIN --secret-file FILE --server HOST:PORT``.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Collection
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bots import Bot, CommandError, Context

_DICE = re.compile(r"^(\d{0,3})d(\d{1,4})$", re.IGNORECASE)
MAX_DICE = 100
MAX_SIDES = 1000


def parse_dice(dice: str) -> tuple[int, int]:
    """``NdM`` (``dM`` is ``1dM``) as ``(N, M)``; :class:`CommandError` when out of bounds."""
    match = _DICE.match(dice)
    if match is None:
        raise CommandError(f"dice look like 2d6, not {dice!r}")
    count, sides = int(match[1] or 1), int(match[2])
    if not 1 <= count <= MAX_DICE or not 2 <= sides <= MAX_SIDES:
        raise CommandError(f"between 1 and {MAX_DICE} dice of 2 to {MAX_SIDES} sides, please")
    return count, sides


def add_time_and_dice(bot: Bot) -> None:
    """Give ``bot`` the ``time`` and ``roll`` commands (the group-chat bot has them too)."""

    @bot.command("time", help="The current time, in UTC or a zone such as Europe/Paris")
    def current_time(ctx: Context, zone: str = "UTC") -> str:
        try:
            now = datetime.now(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(f"unknown time zone {zone!r}") from None
        return now.isoformat(timespec="seconds").replace("+00:00", "Z") + f" ({zone})"

    @bot.command("roll", help="Roll dice, e.g. roll 2d6 (default: one six-sided die)")
    def roll(ctx: Context, dice: str = "1d6") -> str:
        count, sides = parse_dice(dice)
        rolls = [random.randint(1, sides) for _ in range(count)]
        return f"{dice}: {' + '.join(map(str, rolls))} = {sum(rolls)}"


def make_bot(admins: Collection[str] = ()) -> Bot:
    bot = Bot("commandbot", description="Tells the time, rolls dice, reports its uptime.",
              admins=admins)
    add_time_and_dice(bot)

    @bot.command("uptime", help="How long the bot has been running")
    def uptime(ctx: Context) -> str:
        return f"up {timedelta(seconds=int(time.monotonic() - ctx.bot.started_at))}"

    @bot.command("shutdown", help="Disconnect and exit", allowed=())
    def shutdown(ctx: Context) -> str:
        ctx.bot.log.info("shutdown asked by %s", ctx.sender_bare)
        ctx.bot.stop()
        return "Bye."

    return bot


if __name__ == "__main__":
    raise SystemExit(make_bot().main())
