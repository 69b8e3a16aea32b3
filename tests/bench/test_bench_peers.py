"""bench/compare.py against Debian's ejabberd and Prosody at tiny scale (issue 8; no timing asserted).

Each reference server is set up from nothing (in-band registration, rosters made over XMPP; the
cache of provisioned data directories is a temporary one), runs every scenario once, and is
stopped.  Skipped when the server's control command is not installed, unless
``XMPPCORE_REQUIRE_PEERS=1`` says it must run (as in CI); skipped too while someone's
``compare.py`` run holds the benchmark instances (they have fixed addresses and run directories).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.refprocess import accepting
from bench.compare import LOCK
from bench.refservers import REFERENCES

REPO = Path(__file__).resolve().parents[2]
CONTROL = {"ejabberd": "ejabberdctl", "prosody": "prosodyctl"}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _compare_running() -> bool:
    """Whether a compare.py run holds the lock on the benchmark instances (a person's full run)."""
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@pytest.mark.parametrize("name", sorted(CONTROL))
def test_compare_runs_every_scenario_against(name: str, tmp_path: Path) -> None:
    if shutil.which(CONTROL[name]) is None:
        reason = f"{CONTROL[name]} is not installed (apt-get install {name})"
        if os.environ.get("XMPPCORE_REQUIRE_PEERS") == "1":
            pytest.fail(f"XMPPCORE_REQUIRE_PEERS=1 but {reason}")
        pytest.skip(reason)
    if _compare_running():
        pytest.skip("another bench/compare.py is using the reference servers' benchmark instances")
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "compare.py"), "--servers", name, "--runs", "1",
         "--scale", "0.01", "--duration", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=80, check=False,
        env={**os.environ, "XMPPCORE_BENCH_CACHE": str(tmp_path / "cache")})
    if completed.returncode != 0 and "is locked" in completed.stderr:
        pytest.skip("another bench/compare.py took the reference servers' benchmark instances meanwhile")
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert "accounts registered in-band, rosters made over XMPP" in completed.stdout
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in completed.stdout.splitlines()
            if line.startswith("| ")]
    assert [row[0] for row in rows[1:]] == [
        "login", "idle", "msglat500", "msglat2000", "presence", "msg", "msgmam", "msgmam"]
    assert all(row[3] != "failed" for row in rows[1:])
    assert rows[-1][1:] == ["% archived", "", "100.00"]  # XEP-0359 stanza-id on every message
    server = REFERENCES[name](None)
    assert not asyncio.run(accepting(server.address, server.port))  # stopped at the end
