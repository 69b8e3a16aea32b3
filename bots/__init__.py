"""A small framework for XMPP bots on slixmpp, and example bots; see ``bots/README.md``.

::

    from bots import Bot, Context

    bot = Bot("hello")

    @bot.command("greet", help="Say hello to someone")
    def greet(ctx: Context, name: str) -> str:
        return f"Hello, {name}!"

    if __name__ == "__main__":
        raise SystemExit(bot.main())
"""

from .commands import CommandError, UsageError
from .framework import Bot, Context, is_delayed
from .runner import BotError
from .settings import ConfigError, Mode, Option, Settings, load_settings

__all__ = ["Bot", "BotError", "CommandError", "ConfigError", "Context", "Mode", "Option",
           "Settings", "UsageError", "is_delayed", "load_settings"]
