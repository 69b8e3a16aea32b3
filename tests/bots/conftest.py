"""Bots against real servers: xmppcore started in-process, and the helpers to run a bot in a test.

A bot runs as a task of the test's event loop (:class:`BotPool`), connected to the server like
any deployment would be: STARTTLS, the server's certificate verified against its self-signed
``cert.pem``.  Tests talk to it with the real slixmpp clients of ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from bots import Bot, Mode, Settings

from ..integration.clients import TIMEOUT, Inbox
from ..integration.conftest import PASSWORD, RunningServer, make_config, start_server

__all__ = ["BOT_TIMEOUT", "BotPool", "LogLines", "bot_settings", "started_inbox"]

BOT_TIMEOUT = TIMEOUT * 2  # a bot's login: TCP, STARTTLS, SCRAM, bind, roster, presence


def bot_settings(running: RunningServer, user: str, **changes: Any) -> Settings:
    """Client settings for ``user@localhost`` on ``running`` (STARTTLS, certificate verified);
    ``changes`` replace fields."""
    # Short delays, so that a test sees reconnection at once; the policy is unit-tested.
    settings = Settings(Mode.CLIENT, f"{user}@{running.domain}", PASSWORD,
                        server=(running.host, running.starttls_port), cafile=running.cafile,
                        reconnect_delay=0.05, reconnect_max_delay=0.5, connect_timeout=10.0)
    return replace(settings, **changes)


def started_inbox(bot: Bot) -> Inbox[str]:
    """An inbox that gets the bot's full JID each time one of its sessions is ready."""
    inbox: Inbox[str] = Inbox()
    bot.on_start(lambda running: inbox.put(str(running.xmpp.boundjid.full)))
    return inbox


class LogLines(logging.Handler):
    """The messages one logger (and its children) logs while in a ``with`` block, as an inbox:
    a test waits for the line that shows a state was reached instead of sleeping."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.lines: Inbox[str] = Inbox()
        self._logger = logging.getLogger(name)
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    def __enter__(self) -> Self:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


class BotPool:
    """Runs bots as tasks of the test's loop; stops them all cleanly at the end."""

    def __init__(self) -> None:
        self._running: list[tuple[Bot, asyncio.Task[None]]] = []

    async def start(self, bot: Bot, settings: Settings) -> Bot:
        """Serve ``bot`` and wait until it is online; its error if it gives up first."""
        task = asyncio.ensure_future(bot.serve(settings))
        self._running.append((bot, task))
        online = asyncio.ensure_future(bot.wait_online())
        try:
            await asyncio.wait({task, online}, timeout=BOT_TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            online.cancel()
        if task.done():
            task.result()  # raises what ended it
            raise AssertionError(f"bot {bot.name} stopped before it was online")
        if not bot.online:
            raise TimeoutError(f"bot {bot.name} not online within {BOT_TIMEOUT} s")
        return bot

    async def serve(self, bot: Bot, settings: Settings) -> asyncio.Task[None]:
        """Serve ``bot`` without waiting for it (for tests that watch it fail or connect late)."""
        task = asyncio.ensure_future(bot.serve(settings))
        self._running.append((bot, task))
        return task

    async def stop(self, bot: Bot) -> None:
        """Stop ``bot`` and wait until :meth:`Bot.serve` has returned."""
        bot.stop()
        await self.stopped(bot)

    async def stopped(self, bot: Bot) -> None:
        """Wait until :meth:`Bot.serve` has returned (what ended it is raised)."""
        for running, task in self._running:
            if running is bot:
                await asyncio.wait_for(asyncio.shield(task), BOT_TIMEOUT)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for bot, _task in self._running:
            bot.stop()
        await asyncio.wait_for(asyncio.gather(*(task for _bot, task in self._running),
                                              return_exceptions=True), BOT_TIMEOUT)


@pytest.fixture
async def xmppcore(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The real server on 127.0.0.1 with the accounts the bot tests use."""
    running = await start_server(make_config(tmp_path))
    try:
        for user in ("alice", "bob", "mallory", "echobot", "commandbot", "notifier"):
            await running.add_user(user)
        yield running
    finally:
        await running.server.stop()


@pytest.fixture
async def bots() -> AsyncIterator[BotPool]:
    async with BotPool() as pool:
        yield pool
