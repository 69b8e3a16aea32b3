"""The ``xmppcore`` command (DESIGN: Configuration and operation), run as a real subprocess.

Account commands against a temporary data directory, ``check-config`` on good and bad TOML
(v1.0) files, and ``serve``: a slixmpp client logs in over STARTTLS (RFC 6120 §5) and direct
TLS (XEP-0368) to the printed ports, SIGTERM stops it cleanly, and the data directory holds
the key with mode 0600 and no plaintext password (RFC 5802 §3: only salted keys are stored).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .clients import TIMEOUT, Endpoint, LoginFailed, SlixClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

_COMMAND = (sys.executable, "-m", "xmppcore.cli")
_LISTENING = re.compile(r"c2s \((?P<kind>STARTTLS|direct TLS)\) on (?P<address>\S+):(?P<port>\d+)$")
OLD_PASSWORD = "first secret, never stored"
NEW_PASSWORD = "second secret, never stored either"


def xmppcore(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``xmppcore ARGS`` with ``tmp_path`` as the working directory."""
    return subprocess.run([*_COMMAND, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=15, check=False)


def password_file(tmp_path: Path, password: str) -> str:
    """A file holding ``password`` on its first line (what ``--password-file`` reads)."""
    path = tmp_path / ("old-password.txt" if password == OLD_PASSWORD else "new-password.txt")
    path.write_text(password + "\n", encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------ accounts


def test_account_lifecycle(tmp_path: Path) -> None:
    data = str(tmp_path / "data")

    added = xmppcore(tmp_path, "adduser", "alice@localhost", "--password-file",
                     password_file(tmp_path, OLD_PASSWORD), "--data-dir", data)
    assert (added.returncode, added.stdout) == (0, "created alice@localhost\n")
    listed = xmppcore(tmp_path, "users", "--data-dir", data)
    assert (listed.returncode, listed.stdout) == (0, "alice@localhost\n")

    changed = xmppcore(tmp_path, "passwd", "alice@localhost", "--password-file",
                       password_file(tmp_path, NEW_PASSWORD), "--data-dir", data)
    assert (changed.returncode, changed.stdout) == (0, "changed the password of alice@localhost\n")

    deleted = xmppcore(tmp_path, "deluser", "alice@localhost", "--data-dir", data)
    assert (deleted.returncode, deleted.stdout) == (0, "deleted alice@localhost\n")
    listed = xmppcore(tmp_path, "users", "--data-dir", data)
    assert (listed.returncode, listed.stdout) == (0, "")


def test_adduser_of_an_existing_account_fails(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    secret = password_file(tmp_path, OLD_PASSWORD)
    assert xmppcore(tmp_path, "adduser", "alice@localhost", "--password-file", secret, "--data-dir", data).returncode == 0

    again = xmppcore(tmp_path, "adduser", "alice@localhost", "--password-file", secret, "--data-dir", data)

    assert again.returncode == 2
    assert again.stderr.strip() == "xmppcore: alice@localhost already exists"
    assert again.stdout == ""


def test_deluser_of_an_unknown_account_fails(tmp_path: Path) -> None:
    result = xmppcore(tmp_path, "deluser", "nobody@localhost", "--data-dir", str(tmp_path / "data"))

    assert result.returncode == 2
    assert result.stderr.strip() == "xmppcore: nobody@localhost does not exist"


# ------------------------------------------------------------------------------ check-config


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "good.toml"
    config.write_text('domains = ["example.org"]\n\n[c2s]\nport = 5322\ndirect_tls_port = -1\n', encoding="utf-8")

    result = xmppcore(tmp_path, "check-config", "--config", str(config))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK (example.org)\n"


def test_check_config_accepts_the_shipped_example(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "xmppcore.example.toml"

    result = xmppcore(tmp_path, "check-config", "--config", str(example))

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("[c2s]\nport = 70000\n", "c2s.port: expected an integer from 0 to 65535, or -1 to disable, got 70000"),
    ("[c2s]\nprot = 5222\n", "c2s.prot: unknown option (did you mean 'port'?)"),
    ('domains = ["localhost"]\nlog_level = \n', "invalid TOML at line 2"),
], ids=["out-of-range", "typo", "syntax"])
def test_check_config_rejects_a_bad_file(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")

    result = xmppcore(tmp_path, "check-config", "--config", str(config))

    assert result.returncode == 2
    assert result.stderr.startswith(f"xmppcore: {config}: {expected}"), result.stderr
    assert result.stdout == ""


# ------------------------------------------------------------------------------ serve


async def _read_listeners(stdout: asyncio.StreamReader) -> dict[str, tuple[str, int]]:
    """The listener lines ``serve`` prints, up to its "serving" line."""
    listeners: dict[str, tuple[str, int]] = {}
    while True:
        line = (await asyncio.wait_for(stdout.readline(), TIMEOUT)).decode().strip()
        assert line, "serve exited before it was ready"
        match = _LISTENING.search(line)
        if match:
            listeners[match["kind"]] = (match["address"], int(match["port"]))
        elif line.startswith("xmppcore: serving "):
            return listeners


@pytest.fixture
async def served_data_dir(tmp_path: Path) -> AsyncIterator[tuple[Path, asyncio.subprocess.Process, dict[str, tuple[str, int]]]]:
    """Two accounts made with the CLI (alice's password changed once), then ``xmppcore serve``."""
    data = tmp_path / "data"
    for args in (("adduser", "alice@localhost", "--password-file", password_file(tmp_path, OLD_PASSWORD)),
                 ("passwd", "alice@localhost", "--password-file", password_file(tmp_path, NEW_PASSWORD)),
                 ("adduser", "bob@localhost", "--password-file", password_file(tmp_path, OLD_PASSWORD))):
        assert xmppcore(tmp_path, *args, "--data-dir", str(data)).returncode == 0
    with open(tmp_path / "serve.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *_COMMAND, "serve", "--c2s-port", "0", "--direct-tls-port", "0", "--s2s-port", "-1", "--data-dir", str(data),
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        listeners = await _read_listeners(process.stdout)
        yield data, process, listeners
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_runs_the_server_and_stops_on_sigterm(
    tmp_path: Path, served_data_dir: tuple[Path, asyncio.subprocess.Process, dict[str, tuple[str, int]]],
) -> None:
    data, process, listeners = served_data_dir
    assert set(listeners) == {"STARTTLS", "direct TLS"}
    cafile = data / "cert.pem"
    starttls = Endpoint(*listeners["STARTTLS"], direct_tls=False, cafile=cafile)
    direct = Endpoint(*listeners["direct TLS"], direct_tls=True, cafile=cafile)

    alice = await SlixClient("alice@localhost/cli", NEW_PASSWORD, starttls).connect()
    bob = await SlixClient("bob@localhost/cli", OLD_PASSWORD, direct).connect()
    await bob.announce()
    alice.send_message("bob@localhost", "hello through the CLI server")
    got = await bob.receive("hello through the CLI server")
    assert str(got["from"]) == "alice@localhost/cli"
    # passwd replaced the keys: the old password no longer works.
    with pytest.raises(LoginFailed) as failure:
        await SlixClient("alice@localhost/old", OLD_PASSWORD, starttls).connect()
    assert failure.value.condition == "not-authorized"
    await asyncio.gather(alice.disconnect(), bob.disconnect())

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0

    assert stat.S_IMODE(os.stat(data / "key.pem").st_mode) == 0o600
    assert (data / "cert.pem").is_file()
    assert (data / "xmppcore.sqlite3").is_file()
    for path in [*data.iterdir(), tmp_path / "serve.log"]:
        content = path.read_bytes()
        for secret in (OLD_PASSWORD, NEW_PASSWORD):
            assert secret.encode() not in content, f"{path.name} contains a plaintext password"
