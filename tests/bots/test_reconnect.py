"""Staying connected: backoff, reconnection after the server restarts, and the failures that end a
bot instead (refused credentials, RFC 6120 §6.5; an untrusted certificate, §13.7.2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots import Bot, BotError, Mode, Settings, echo
from bots.runner import Backoff

from ..integration.clients import SlixPool
from ..integration.conftest import RunningServer, make_config, start_server
from ..testca import self_signed
from .conftest import BOT_TIMEOUT, BotPool, LogLines, bot_settings, started_inbox
from .test_xmppcore import ask

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_backoff_grows_is_bounded_and_jittered() -> None:
    low = Backoff(1.0, 8.0, uniform=lambda: 0.0)
    assert [low.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    high = Backoff(1.0, 8.0, uniform=lambda: 1.0)
    assert [high.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    high.reset()
    assert high.next_delay() == 1.0
    real = Backoff(0.1, 1.0)
    delays = [real.next_delay() for _ in range(200)]
    assert all(0.05 <= d <= 1.0 for d in delays) and len(set(delays)) > 100


async def test_reconnects_after_the_server_restarts(tmp_path: Path, bots: BotPool) -> None:
    first = await start_server(make_config(tmp_path))
    await first.add_user("echobot")
    await first.add_user("alice")
    bot = echo.make_bot()
    sessions = started_inbox(bot)
    with LogLines("bots.echo") as log:
        await bots.start(bot, bot_settings(first, "echobot"))
        await sessions.get()
        await first.server.stop()
        # While the server is down the bot fails to connect and backs off (the path we want).
        await log.lines.get(lambda line: line.startswith("cannot connect"), timeout=BOT_TIMEOUT)
        assert not bot.online
        second = await start_server(make_config(tmp_path, port=first.starttls_port,
                                                direct_tls_port=first.direct_tls_port))
        try:
            await sessions.get(timeout=BOT_TIMEOUT)
            async with SlixPool(second) as clients:
                alice = await clients.login("alice", "phone")
                assert await ask(alice, bot, "still there?") == "still there?"
        finally:
            await bots.stop(bot)
            await second.server.stop()


async def test_wrong_password_ends_the_bot(xmppcore: RunningServer, bots: BotPool) -> None:
    task = await bots.serve(echo.make_bot(), bot_settings(xmppcore, "echobot", secret="wrong"))
    with pytest.raises(BotError, match="refused the credentials for echobot@localhost"):
        await asyncio.wait_for(task, BOT_TIMEOUT)


async def test_untrusted_certificate_ends_the_bot(xmppcore: RunningServer, bots: BotPool,
                                                  tmp_path: Path) -> None:
    other_ca, _key = self_signed("localhost", tmp_path / "other")
    task = await bots.serve(echo.make_bot(), bot_settings(xmppcore, "echobot", cafile=other_ca))
    with pytest.raises(BotError, match="certificate does not verify"):
        await asyncio.wait_for(task, BOT_TIMEOUT)


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[str, int]]:
    """A TCP listener that accepts and never says a word (an overloaded or wrong server)."""
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[:2]


async def test_a_stalled_connection_is_dropped_and_retried(silent_server: tuple[str, int],
                                                           xmppcore: RunningServer, bots: BotPool) -> None:
    bot = echo.make_bot()
    settings = bot_settings(xmppcore, "echobot", server=silent_server, connect_timeout=0.2)
    with LogLines("bots.echo") as log:
        task = await bots.serve(bot, settings)
        await log.lines.get(lambda line: line.startswith("no session within 0.2 s; connecting again"))
        await log.lines.get(lambda line: line.startswith("no session within 0.2 s; connecting again"))
        bot.stop()
        await asyncio.wait_for(task, BOT_TIMEOUT)
    assert not bot.online


async def test_stop_while_the_server_is_unreachable(bots: BotPool) -> None:
    """SIGTERM during the backoff: the bot returns at once, without waiting out the delay."""
    closed = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    bot = echo.make_bot()
    settings = Settings(Mode.CLIENT, "echobot@localhost", "unused", server=("127.0.0.1", port),
                        reconnect_delay=30.0, reconnect_max_delay=60.0)
    with LogLines("bots.echo") as log:
        task = await bots.serve(bot, settings)
        line = await log.lines.get(lambda line: line.startswith("cannot connect"))
        assert "connecting again in" in line
        bot.stop()
        await asyncio.wait_for(task, 2.0)


async def test_a_failing_background_task_ends_the_bot_with_its_error(xmppcore: RunningServer,
                                                                     bots: BotPool) -> None:
    bot = echo.make_bot()

    @bot.background
    async def broken(running: Bot) -> None:
        await running.wait_online()
        raise OSError("the feed went away")

    task = await bots.serve(bot, bot_settings(xmppcore, "echobot"))
    with pytest.raises(BotError, match="broken failed: the feed went away"):
        await asyncio.wait_for(task, BOT_TIMEOUT)
    assert not bot.online
