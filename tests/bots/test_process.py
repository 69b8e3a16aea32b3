"""``python -m bots.<name>`` as a real process: flags and the config file, stdin, signals, exit codes."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path
from typing import Self

import pytest

from ..integration.clients import SlixPool
from ..integration.conftest import PASSWORD, RunningServer
from .conftest import BOT_TIMEOUT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
_ONLINE = re.compile(r"online as (?P<jid>\S+)$")


class BotProcess:
    """A bot started with ``python -m``; its log lines (stderr) are read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []

    @classmethod
    async def start(cls, module: str, *args: str, stdin: bool = False) -> Self:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)
        return cls(process)

    async def line(self, pattern: re.Pattern[str]) -> re.Match[str]:
        """Read log lines until one matches ``pattern``."""
        assert self.process.stderr is not None
        while True:
            raw = await asyncio.wait_for(self.process.stderr.readline(), BOT_TIMEOUT)
            if not raw:
                raise AssertionError("the bot exited; its log:\n" + "\n".join(self.log))
            self.log.append(raw.decode().rstrip())
            found = pattern.search(self.log[-1])
            if found:
                return found

    async def exit_status(self) -> int:
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), BOT_TIMEOUT)
        self.log += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), BOT_TIMEOUT)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def password_file(directory: Path) -> Path:
    path = directory / "bot.pass"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_disconnects_and_exits_0(xmppcore: RunningServer, tmp_path: Path,
                                              signum: signal.Signals) -> None:
    """The config-file form; the signal ends the stream with its closing tag (RFC 6120 §4.4)."""
    password_file(tmp_path)
    config = tmp_path / "echo.toml"
    config.write_text(f'jid = "echobot@localhost"\npassword_file = "bot.pass"\n'
                      f'server = "127.0.0.1:{xmppcore.starttls_port}"\ncafile = "{xmppcore.cafile}"\n')
    bot = await BotProcess.start("bots.echo", "--config", str(config))
    try:
        bot_jid = (await bot.line(_ONLINE))["jid"]
        async with SlixPool(xmppcore) as clients:
            alice = await clients.login("alice", "phone")
            alice.send_message(bot_jid, "are you a process?")
            await alice.messages.get(lambda m: m["body"] == "are you a process?" and str(m["from"]) == bot_jid)
        bot.process.send_signal(signum)
        assert await bot.exit_status() == 0, "\n".join(bot.log)
    finally:
        bot.kill()
    assert any(line.endswith(f"{signum.name}: disconnecting") for line in bot.log)
    assert bot.log[-1].endswith("bots.echo: stopped")
    assert not any("aborted" in line or "Traceback" in line for line in bot.log), bot.log


async def test_notifier_relays_stdin_and_exits_when_it_ends(xmppcore: RunningServer, tmp_path: Path) -> None:
    async with SlixPool(xmppcore) as clients:
        bob = await clients.login("bob", "desk")
        await bob.announce()
        notifier = await BotProcess.start(
            "bots.notifier", "--jid", "notifier@localhost", "--password-file", str(password_file(tmp_path)),
            "--server", f"127.0.0.1:{xmppcore.starttls_port}", "--cafile", str(xmppcore.cafile),
            "--to", "bob@localhost", stdin=True)
        try:
            assert notifier.process.stdin is not None
            # Written before the bot is online: the lines wait for it.
            notifier.process.stdin.write("backup started\n\nbackup done ✓\n".encode())
            await notifier.process.stdin.drain()
            first = await bob.receive("backup started")
            assert str(first["from"]).startswith("notifier@localhost/")
            await bob.receive("backup done ✓")
            notifier.process.stdin.close()
            assert await notifier.exit_status() == 0, "\n".join(notifier.log)
        finally:
            notifier.kill()
        assert not [m["body"] for m in bob.messages.pending]  # the empty line was not sent
    assert any(line.endswith("stdin ended and every line is sent") for line in notifier.log)


async def test_a_configuration_error_exits_2(tmp_path: Path) -> None:
    bot = await BotProcess.start("bots.commandbot", "--jid", "x@localhost",
                                 "--password-file", str(tmp_path / "missing"))
    try:
        assert await bot.exit_status() == 2
    finally:
        bot.kill()
    missing = tmp_path / "missing"
    assert bot.log == [f"python -m bots.commandbot: cannot read the password file {missing}: No such file or directory"]


async def test_refused_credentials_exit_1(xmppcore: RunningServer, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password")
    bot = await BotProcess.start("bots.echo", "--jid", "echobot@localhost", "--password-file", str(wrong),
                                 "--server", f"127.0.0.1:{xmppcore.starttls_port}",
                                 "--cafile", str(xmppcore.cafile))
    try:
        assert await bot.exit_status() == 1
    finally:
        bot.kill()
    assert any("the server refused the credentials for echobot@localhost" in line for line in bot.log)
