"""Scenarios beyond ``msg`` for the load generator (bench/loadgen.py), on loopback only.

``login``: ``concurrency`` clients each repeatedly connect, authenticate (SCRAM-SHA-1,
RFC 5802), bind (RFC 6120 §7), send initial presence and close; logins/s over ``duration``
seconds or ``logins`` in all.  ``idle``: ``sessions`` authenticated clients stay open; the
server's memory (``/proc/<pid>/status`` VmRSS, ``smaps_rollup`` Pss) is read before and after
a settling pause, and the difference per session reported.
(``msglat``, at a fixed offered rate, is in bench/scenarios_msglat.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Target, connect, login_all, percentile

__all__ = ["IdleParams", "IdleResult", "LoginParams", "LoginResult", "memory_kib", "run_idle", "run_login"]


def _summary(result: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "latencies"}


# -- login ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoginParams:
    """One ``login`` run: clients logging in at once, and the bounds in count and time."""

    concurrency: int = 50
    logins: int = 1_000_000  # in all
    duration: float = 10.0   # seconds


@dataclass
class LoginResult:
    rate: float = 0.0        # logins/s
    logins: int = 0
    failures: int = 0
    p50_ms: float = 0.0      # one login, connect to ready
    p99_ms: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return _summary(self)


async def run_login(target: Target, params: LoginParams) -> LoginResult:
    """Scenario ``login``: worker i logs in account i (1..concurrency) again and again."""
    sha1 = dataclasses.replace(target, mechanisms=("SCRAM-SHA-1",))
    result, times = LoginResult(), list[float]()
    start = time.perf_counter()
    deadline, issued = start + params.duration, 0

    async def worker(index: int) -> None:
        nonlocal issued
        while issued < params.logins and time.perf_counter() < deadline:
            issued += 1
            began = time.perf_counter()
            try:
                client = await connect(sha1, sha1.jid(index))
            except Exception:  # noqa: BLE001 - counted, the run goes on
                result.failures += 1
                continue
            times.append(time.perf_counter() - began)
            client.close()

    await asyncio.gather(*(worker(i) for i in range(1, params.concurrency + 1)))
    result.seconds = max(time.perf_counter() - start, 1e-9)
    result.logins = len(times)
    result.rate = result.logins / result.seconds
    times.sort()
    result.p50_ms, result.p99_ms = percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000
    return result


# -- idle ----------------------------------------------------------------------------------------
def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, Pss) of a process in KiB, from proc(5) status and smaps_rollup (-1 if unreadable)."""
    def field_of(path: str, name: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return -1
    return field_of("status", "VmRSS"), field_of("smaps_rollup", "Pss")


@dataclass(frozen=True)
class IdleParams:
    """One ``idle`` run: sessions held open, logins at once, seconds to settle before reading."""

    sessions: int = 10_000
    concurrency: int = 100
    settle: float = 5.0


@dataclass
class IdleResult:
    sessions: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    pss_before_kib: int = 0
    pss_after_kib: int = 0
    kib_per_session: float = 0.0  # Pss difference per session (VmRSS when Pss is unreadable)
    login_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return _summary(self)


async def run_idle(target: Target, params: IdleParams, pid: int) -> IdleResult:
    """Scenario ``idle``: accounts 1..sessions log in and stay; server ``pid``'s memory is compared."""
    result = IdleResult()
    await asyncio.sleep(params.settle)
    result.rss_before_kib, result.pss_before_kib = memory_kib(pid)
    began = time.perf_counter()
    clients = await login_all(target, range(1, params.sessions + 1), params.concurrency)
    try:
        result.login_seconds = time.perf_counter() - began
        result.sessions = len(clients)
        await asyncio.sleep(params.settle)
        result.rss_after_kib, result.pss_after_kib = memory_kib(pid)
    finally:
        for client in clients:
            client.close()
    use_pss = result.pss_before_kib >= 0 and result.pss_after_kib >= 0
    before, after = ((result.pss_before_kib, result.pss_after_kib) if use_pss
                     else (result.rss_before_kib, result.rss_after_kib))
    result.kib_per_session = (after - before) / max(result.sessions, 1)
    return result
