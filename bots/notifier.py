"""Notifier: relays lines from stdin, or the bodies POSTed to a local webhook, to one JID.

From stdin, each line is one message, and the bot exits once stdin ends and every line is sent::

    make deploy 2>&1 | python -m bots.notifier --jid notifier@example.org \\
        --password-file notifier.pass --to alice@example.org

With ``--webhook HOST:PORT`` it reads no stdin; each request body is one message::

    python -m bots.notifier --jid notifier@example.org --password-file notifier.pass \\
        --to alice@example.org --webhook 127.0.0.1:8080
    curl -d 'backup finished' http://127.0.0.1:8080/

While it is offline, up to 1000 messages wait; a full queue holds stdin back and answers the
webhook with 503.  The webhook has no authentication: keep it on loopback.
"""

from __future__ import annotations

import asyncio
import sys

from bots import Bot, Option
from bots.commands import bare_jid
from bots.settings import parse_address
from bots.webhook import serve_webhook

QUEUE_SIZE = 1000
MAX_LINE = 64 * 1024


def webhook_address(text: str) -> tuple[str, int]:
    return parse_address(text, 8080, "webhook", any_port=True)


OPTIONS = (Option("to", "the JID that receives the notifications", required=True, check=bare_jid),
           Option("webhook", "HOST:PORT: serve a local HTTP webhook instead of reading stdin",
                  check=webhook_address))


class Notifier:
    """The notifier bot (``.bot``) and where its webhook listens once started."""

    def __init__(self) -> None:
        self.bot = Bot("notifier", description="Relays stdin or webhook posts to a JID.",
                       options=OPTIONS)
        self.bot.background(self._relay)
        self.webhook_address: tuple[str, int] | None = None
        self.webhook_ready = asyncio.Event()

    async def _relay(self, bot: Bot) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        delivery = asyncio.ensure_future(self._deliver(bot, queue, bot.settings.options["to"]))
        try:
            webhook = bot.settings.options.get("webhook")
            if webhook is not None:
                await self._serve_webhook(webhook, queue)
            else:
                await self._read_stdin(bot, queue)
                await queue.join()
                bot.log.info("stdin ended and every line is sent")
                bot.stop()
        finally:
            delivery.cancel()

    async def _deliver(self, bot: Bot, queue: asyncio.Queue[str], to: str) -> None:
        while True:
            text = await queue.get()
            await bot.wait_online()
            bot.send(to, text)
            queue.task_done()

    async def _read_stdin(self, bot: Bot, queue: asyncio.Queue[str]) -> None:
        reader = await _stdin_reader()
        while line := await _next_line(reader, bot):
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.strip():
                await queue.put(text)

    async def _serve_webhook(self, address: str, queue: asyncio.Queue[str]) -> None:
        def accept(text: str) -> bool:
            try:
                queue.put_nowait(text.rstrip("\r\n"))
            except asyncio.QueueFull:
                return False
            return True

        server = await serve_webhook(*webhook_address(address), accept)
        host, port = server.sockets[0].getsockname()[:2]
        self.webhook_address = (host, port)
        self.webhook_ready.set()
        self.bot.log.info("webhook on http://%s:%d/", host, port)
        async with server:
            await server.serve_forever()


async def _stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=MAX_LINE)
    try:
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file: reading it never blocks for long
        reader.feed_data(sys.stdin.buffer.read())
        reader.feed_eof()
    return reader


async def _next_line(reader: asyncio.StreamReader, bot: Bot) -> bytes:
    """The next line (empty at the end); an overlong line is skipped."""
    while True:
        try:
            return await reader.readline()
        except ValueError:
            bot.log.warning("skipped a line longer than %d bytes", MAX_LINE)


if __name__ == "__main__":
    raise SystemExit(Notifier().bot.main())
