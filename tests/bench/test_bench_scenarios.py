"""bench/: the login, idle, msglat and presence scenarios at tiny scale against the real server (issue 8),
and bench/compare.py end to end with every scenario (msgmam included) against xmppcore.

No timing is asserted; the checks are on counts of what crossed the wire and on the memory
readings being taken from the server process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.loadgen import Target
from bench.msg_mam import bench_config, create_accounts, to_toml
from bench.scenarios import IdleParams, LoginParams, memory_kib, run_idle, run_login
from bench.scenarios_msglat import LatParams, run_msglat
from bench.scenarios_presence import (
    PresenceParams,
    contacts_of,
    create_rosters,
    run_presence,
)
from xmppcore.config import load_config
from xmppcore.server.app import Server

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    """An in-process benchmark server with accounts 1..8."""
    config_file = tmp_path / "xmppcore.toml"
    config_file.write_text(to_toml(bench_config(tmp_path / "data", mam=False)))
    await create_accounts(config_file, Target(), 8)
    server = Server(load_config(config_file))
    await server.start()
    try:
        yield Target(port=server.c2s_addresses[0][1])
    finally:
        await server.stop()


async def test_login_repeats_until_the_count(target: Target) -> None:
    result = await run_login(target, LoginParams(concurrency=3, logins=9, duration=30.0))
    assert (result.logins, result.failures) == (9, 0)
    assert result.rate > 0 and 0 < result.p50_ms <= result.p99_ms


async def test_login_failures_are_counted(target: Target) -> None:
    wrong = Target(port=target.port, password="not the password")
    result = await run_login(wrong, LoginParams(concurrency=2, logins=4, duration=30.0))
    assert (result.logins, result.failures) == (0, 4)


async def test_idle_reads_the_server_memory(target: Target) -> None:
    result = await run_idle(target, IdleParams(sessions=8, concurrency=4, settle=0.0), os.getpid())
    assert result.sessions == 8
    assert result.rss_before_kib > 0 and result.rss_after_kib > 0
    assert result.pss_after_kib != 0  # > 0, or -1 where smaps_rollup is unreadable


def test_memory_of_a_missing_process_is_unreadable() -> None:
    assert memory_kib(2**22 + 12345) == (-1, -1)


async def test_msglat_delivers_everything_at_the_offered_rate(target: Target) -> None:
    params = LatParams(rate=200.0, pairs=2, duration=0.5, warmup=0.0, drain=10.0)
    result = await run_msglat(target, params)
    assert result.sent == 100 and result.received == 100 and result.lost == 0
    assert len(result.latencies) == 100
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms <= result.p999_ms <= result.max_ms


async def test_presence_reaches_every_contact(tmp_path: Path) -> None:
    params = PresenceParams(users=6, contacts=2, rounds=3, concurrency=3, timeout=20.0)
    config_file = tmp_path / "xmppcore.toml"
    config_file.write_text(to_toml(bench_config(tmp_path / "data", mam=False)))
    await create_accounts(config_file, Target(), params.users)
    await create_rosters(config_file, Target(), params)
    server = Server(load_config(config_file))
    await server.start()
    try:
        result = await run_presence(Target(port=server.c2s_addresses[0][1]), params)
    finally:
        await server.stop()
    assert (result.expected, result.delivered, result.lost) == (36, 36, 0)  # RFC 6121 §4.4.2
    assert result.rate > 0


def test_contacts_are_a_symmetric_ring() -> None:
    params = PresenceParams(users=5, contacts=4)
    assert contacts_of(1, params) == [4, 5, 2, 3]
    assert all(1 in contacts_of(c, params) for c in contacts_of(1, params))
    with pytest.raises(ValueError):
        contacts_of(1, PresenceParams(users=4, contacts=3))


def test_compare_prints_a_median_per_scenario() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "compare.py"), "--servers", "xmppcore", "--runs", "1",
         "--scale", "0.01", "--duration", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=55, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    rows = [line.split("|")[1:-1] for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert [row[0].strip() for row in rows[1:]] == [
        "login", "idle", "msglat500", "msglat2000", "presence", "msg", "msgmam", "msgmam"]
    assert rows[0][3].strip() == "xmppcore" and len(rows[0]) == 4  # no reference server: no ratios
    assert "failed" not in completed.stdout
    assert rows[-1][1].strip() == "% archived" and rows[-1][3].strip() == "100.00"  # every message stamped
