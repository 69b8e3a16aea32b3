"""The benchmark suite of issue 8 in one command: scenarios × runs against xmppcore, medians.

Scenarios (bench/loadgen.py, bench/scenarios.py, bench/scenarios_msglat.py):
``login`` (logins/s, SCRAM-SHA-1 + bind), ``idle`` (server memory per idle authenticated
session), ``msglat500`` and ``msglat2000`` (latency at 500 and 2,000 offered msg/s), ``presence``
(fan-out deliveries/s; bench/scenarios_presence.py, rosters written before the start) and ``msg``
(saturated throughput, archiving on).  Every run starts ``xmppcore serve`` as a subprocess
(plaintext c2s on loopback, SQLite, the modules of msg_mam.py's benchmark configuration with
``mam``) pinned to one CPU, this generator pinned to another, on a data directory whose accounts
are created once per scenario.  Only xmppcore is measured for now: ejabberd-config/ and
prosody-config/ require STARTTLS, and plaintext variants of them are not written yet.

    python bench/compare.py                             # all scenarios, 3 runs each
    python bench/compare.py --scenarios login idle --runs 1 --scale 0.01
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import MsgParams, Target, run, run_msg
from bench.msg_mam import XmppcoreProcess, _cpus, bench_config, create_accounts, to_toml
from bench.scenarios import IdleParams, LoginParams, run_idle, run_login
from bench.scenarios_msglat import LatParams, run_msglat
from bench.scenarios_presence import PresenceParams, create_rosters, run_presence

__all__ = ["SCENARIOS", "Scenario", "main", "scenarios"]

Runner = Callable[[Target, int], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: the accounts it needs, how to run it, and its headline metric."""

    name: str
    accounts: int
    metric: str      # key of the summary shown in the table
    unit: str
    runner: Runner
    prepare: Callable[[Path], Awaitable[None]] | None = None  # on the config file, before the server starts


def scenarios(scale: float = 1.0, duration: float = 10.0) -> dict[str, Scenario]:
    """The suite; ``scale`` multiplies the client counts (1.0: the full run)."""
    def n(count: int) -> int:
        return max(1, round(count * scale))
    login = LoginParams(concurrency=n(50), duration=duration)
    idle = IdleParams(sessions=n(10_000), concurrency=min(100, n(10_000)), settle=5.0 if scale >= 1 else 0.2)
    presence = PresenceParams(users=max(n(1000), 22), rounds=5)
    msg = MsgParams(pairs=n(100), duration=duration, warmup=min(2.0, duration / 5))

    def lat(rate: float) -> LatParams:
        return LatParams(rate=rate * scale, pairs=n(20), duration=duration, warmup=min(1.0, duration / 5))

    async def do_login(t: Target, pid: int) -> dict[str, Any]:
        return (await run_login(t, login)).summary()

    async def do_idle(t: Target, pid: int) -> dict[str, Any]:
        return (await run_idle(t, idle, pid)).summary()

    async def do_msg(t: Target, pid: int) -> dict[str, Any]:
        return (await run_msg(t, msg)).summary()

    async def do_presence(t: Target, pid: int) -> dict[str, Any]:
        return (await run_presence(t, presence)).summary()

    async def prepare_presence(config_file: Path) -> None:
        await create_rosters(config_file, Target(), presence)

    def do_lat(rate: float) -> Runner:
        async def runner(t: Target, pid: int) -> dict[str, Any]:
            return (await run_msglat(t, lat(rate))).summary()
        return runner

    return {s.name: s for s in (
        Scenario("login", login.concurrency, "rate", "logins/s", do_login),
        Scenario("idle", idle.sessions, "kib_per_session", "KiB/session", do_idle),
        Scenario("msglat500", 2 * lat(500).pairs, "p99_ms", "ms p99", do_lat(500)),
        Scenario("msglat2000", 2 * lat(2000).pairs, "p99_ms", "ms p99", do_lat(2000)),
        Scenario("presence", presence.users, "rate", "deliveries/s", do_presence, prepare_presence),
        Scenario("msg", 2 * msg.pairs, "rate", "msg/s", do_msg),
    )}


SCENARIOS = tuple(scenarios())


async def _scenario_runs(scenario: Scenario, runs: int, cpu: int | None) -> list[dict[str, Any]]:
    """``runs`` runs, each on a freshly started server over the same accounts."""
    with tempfile.TemporaryDirectory(prefix="xmppcore-compare-") as tmp:
        workdir = Path(tmp)
        config_file = workdir / "xmppcore.toml"
        config_file.write_text(to_toml(bench_config(workdir / "data", mam=True)))
        await create_accounts(config_file, Target(), scenario.accounts)
        if scenario.prepare is not None:
            await scenario.prepare(config_file)
        summaries = []
        for index in range(runs):
            server = XmppcoreProcess(workdir, mam=True, cpu=cpu, target=Target())
            try:
                target = await server.start(0)
                assert server.proc is not None
                summaries.append(await scenario.runner(target, server.proc.pid))
            finally:
                await server.stop()
            print(f"{scenario.name} run {index + 1}: {summaries[-1]}", flush=True)
    return summaries


def table(results: dict[str, list[dict[str, Any]]], suite: dict[str, Scenario]) -> str:
    """Markdown: per scenario the median of its headline metric over the runs."""
    lines = ["| scenario | metric | xmppcore (median) | runs |", "|---|---|---:|---|"]
    for name, summaries in results.items():
        values = [float(s[suite[name].metric]) for s in summaries]
        lines.append(f"| {name} | {suite[name].unit} | {statistics.median(values):,.2f} "
                     f"| {' / '.join(f'{v:,.2f}' for v in values)} |")
    lines.append("\nxmppcore only: no ratios (ejabberd/Prosody plaintext configurations are not set up yet)")
    return "\n".join(lines)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The issue 8 benchmark suite against xmppcore.")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="client counts and rates × this (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default 10)")
    return parser.parse_args(argv)


def _raise_fd_limit() -> None:
    """10,000 idle sessions need 10,000 descriptors here and in the server (which inherits)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _main(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    suite = scenarios(args.scale, args.duration)
    server_cpu, generator_cpu = _cpus()
    print(f"server on CPU {server_cpu}, generator on CPU {generator_cpu}; scale {args.scale:g}, "
          f"{args.runs} runs; load average {os.getloadavg()[0]:.2f}", flush=True)
    return {name: await _scenario_runs(suite[name], args.runs, server_cpu) for name in args.scenarios}


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    _raise_fd_limit()
    results = run(_main(args))
    print()
    print(table(results, scenarios(args.scale, args.duration)))
    failed = [s for runs in results.values() for s in runs if s.get("lost", 0) or s.get("failures", 0)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
