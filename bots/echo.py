"""Echo bot: answers every chat message with the same text (``help`` is the one command).

As an account, with the server's certificate when it is self-signed::

    python -m bots.echo --jid echo@example.org --password-file echo.pass --cafile server.pem

As an external component (XEP-0114) of a server configured for it::

    python -m bots.echo --component echo.example.org --secret-file echo.secret \\
        --server 127.0.0.1:5347

``--config echo.toml`` reads the same settings from a file (see bots/README.md); SIGTERM or
Ctrl-C disconnects it cleanly.
"""

from __future__ import annotations

from bots import Bot, Context


def make_bot() -> Bot:
    bot = Bot("echo", description="Answers every message with its own text.")

    @bot.on_chat
    def echo(ctx: Context, text: str) -> str:
        return text

    return bot


if __name__ == "__main__":
    raise SystemExit(make_bot().main())
