"""Process control for the reference servers of bench/refservers.py: commands, pids, sockets, cache.

- ``run_command``: a control command (``ejabberdctl``, ``prosodyctl``) pinned to the server CPU,
  with the file-descriptor limit raised, optionally as the package's system user, so that the
  daemon it starts inherits all three.
- ``alive``/``stop_process``: a daemon that is not our child, by pid (SIGTERM, then SIGKILL).
- ``accepting``: whether it listens yet.
- ``SetupCache``: a provisioned data directory kept between ``compare.py`` runs, so 10,000
  accounts and 1,000 rosters are made once rather than every time (minutes on one core).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["SetupCache", "accepting", "alive", "dpkg_version", "run_command", "stop_process"]

COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


async def run_command(*command: str, cpu: int | None, user: str | None, cwd: Path) -> str:
    """Run a command to its end; its output.  ``cpu``: pinned there (None: any CPU, whatever
    this process is pinned to); ``user``: as that system
    user when we are root (ejabberdctl would switch with su, whose PAM session puts the
    descriptor limit back to 1024); the descriptor limit at its hard maximum either way."""
    account = pwd.getpwnam(user) if user is not None and os.getuid() == 0 else None

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        os.sched_setaffinity(0, {cpu} if cpu is not None else range(os.cpu_count() or 1))
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
    env = dict(os.environ)
    if account is not None:
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    # Output to a file, not a pipe, and the wait in a thread: the daemon the command starts may
    # keep what it inherited open (with uvloop, waiting for a pipe's end then never returns).
    with tempfile.TemporaryFile() as output:
        done = await asyncio.to_thread(
            subprocess.run, command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=limits, env=env, cwd=cwd, timeout=COMMAND_TIMEOUT, check=False)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {text[-2000:]}")
    return text


def dpkg_version(package: str) -> str:
    try:
        found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                               check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return found.stdout.strip() or "?"


async def accepting(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def stop_process(pid: int) -> None:
    """SIGTERM (both servers shut down cleanly on it), SIGKILL if it is still there after a while."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling the process's state, with a deadline
        if not alive(pid):
            return


class SetupCache:
    """Copies of a server's provisioned data directory, one per setup (what was asked of it and
    the configuration it ran with), the ``keep`` most recent ones."""

    def __init__(self, root: Path, keep: int = 3) -> None:
        self.root = root
        self.keep = keep

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

    def restore(self, key: str, data_dir: Path) -> bool:
        """Copy the cached directory to ``data_dir`` (which must not exist); False if none."""
        cached = self.root / key
        if not cached.is_dir():
            return False
        shutil.copytree(cached, data_dir, symlinks=True)
        os.utime(cached)  # recently used
        return True

    def store(self, key: str, data_dir: Path) -> None:
        """Keep a copy of ``data_dir`` (the server stopped, so its files are consistent)."""
        partial = self.root / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(data_dir, partial, symlinks=True)
        shutil.rmtree(self.root / key, ignore_errors=True)
        partial.rename(self.root / key)
        entries = sorted((p for p in self.root.iterdir() if not p.name.endswith(".partial")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
