"""bench/: the message benchmark at tiny scale, so that it cannot rot (issue 7; no timing asserted).

The load generator's ``msg`` scenario runs against the real server on loopback, in process,
with XEP-0313 archiving on and off, over plaintext and over STARTTLS (RFC 6120 §5), and the
checks are on what crossed the wire: every message arrived once, none bounced, and archived
ones carried the server's XEP-0359 ``<stanza-id/>``.  Then ``bench/msg_mam.py`` runs as a
program end to end (``xmppcore serve`` subprocesses, one run each way) and prints its table.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.loadgen import LoginError, MsgParams, Target, login_all, run_msg
from bench.msg_mam import bench_config, create_accounts, to_toml
from xmppcore.config import load_config
from xmppcore.server.app import Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
TINY = MsgParams(pairs=2, window=5, messages=20, duration=30.0, warmup=0.0, drain=10.0)


async def start(tmp_path: Path, *, mam: bool, tls_required: bool = False) -> tuple[Server, Target]:
    """A benchmark-configured server on a free port, with the 2×pairs accounts created."""
    data = bench_config(tmp_path / "data", mam=mam)
    data["c2s"]["tls_required"] = tls_required
    config_file = tmp_path / "xmppcore.toml"
    config_file.write_text(to_toml(data))
    target = Target()
    await create_accounts(config_file, target, 2 * TINY.pairs)
    server = Server(load_config(config_file))
    await server.start()
    return server, Target(port=server.c2s_addresses[0][1], starttls=tls_required)


@pytest.fixture
async def server_with_mam(tmp_path: Path) -> AsyncIterator[Target]:
    server, target = await start(tmp_path, mam=True)
    try:
        yield target
    finally:
        await server.stop()


async def test_every_message_arrives_once_and_archived(server_with_mam: Target) -> None:
    result = await run_msg(server_with_mam, TINY, cpu_probe=time.process_time)
    assert (result.sent, result.received, result.bounced, result.duplicated, result.lost) == (40, 40, 0, 0, 0)
    assert result.stamped == 40  # XEP-0313 §3.5: each archived message carries its stanza-id
    assert len(result.latencies) == 40 and result.rate > 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.server_cpu >= 0


async def test_without_archiving_nothing_is_stamped(tmp_path: Path) -> None:
    server, target = await start(tmp_path, mam=False)
    try:
        result = await run_msg(target, TINY)
    finally:
        await server.stop()
    assert (result.received, result.lost, result.stamped) == (40, 0, 0)
    assert result.server_cpu == -1.0  # no probe given


async def test_over_starttls(tmp_path: Path) -> None:
    server, target = await start(tmp_path, mam=True, tls_required=True)
    try:
        result = await run_msg(target, TINY)
    finally:
        await server.stop()
    assert (result.received, result.lost, result.stamped) == (40, 0, 40)


async def test_a_time_bound_ends_the_run(server_with_mam: Target) -> None:
    params = MsgParams(pairs=1, window=1, messages=10**9, duration=0.5, warmup=0.0, drain=10.0)
    result = await run_msg(server_with_mam, params)
    assert 0 < result.sent < 10**9
    assert result.received == result.sent and result.lost == 0


async def test_a_wrong_password_is_reported(server_with_mam: Target) -> None:
    wrong = Target(port=server_with_mam.port, password="not the password")
    with pytest.raises(LoginError, match="1 of 1 logins failed"):
        await login_all(wrong, [1])


def test_msg_mam_prints_the_table() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "msg_mam.py"), "--runs", "1", "--pairs", "2",
         "--messages", "20", "--warmup", "0", "--duration", "30"],
        cwd=REPO, capture_output=True, text=True, timeout=50, check=False)
    assert completed.returncode == 0, completed.stderr
    rows = [line for line in completed.stdout.splitlines() if line.startswith("| xmppcore |")]
    assert [row.split("|")[2].strip() for row in rows] == ["on", "off"]
    assert [row.split("|")[8].strip() for row in rows] == ["100%", "0%"]  # archived share
    assert "archiving on / off:" in completed.stdout
