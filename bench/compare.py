"""The benchmark suite of issue 8 in one command: xmppcore, ejabberd and Prosody side by side.

Scenarios (bench/loadgen.py, bench/scenarios.py, bench/scenarios_msglat.py,
bench/scenarios_presence.py): ``login`` (logins/s, SCRAM-SHA-1 + bind), ``idle`` (server memory
per idle authenticated session), ``msglat500`` and ``msglat2000`` (latency at 500 and 2,000
offered msg/s), ``presence`` (fan-out deliveries/s over rosters made before the runs), ``msg``
(saturated 1:1 throughput, archiving off) and ``msgmam`` (the same with every message archived).
Archiving is off on every server for every scenario but ``msgmam``.  Each server
(bench/refservers.py) is set up once (accounts, rosters), then each scenario runs ``--runs``
times against it, every run on a newly started server process pinned to one CPU, this
generator pinned to the other.  Prints every run, then a table of medians with, per reference
server, how many times better xmppcore is.
Exits 1 if a run failed, lost a message or presence, or archived when it should not (or not).

    python bench/compare.py                                     # every installed server, 3 runs
    python bench/compare.py --servers xmppcore --scale 0.01 --duration 1 --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import MsgParams, Target, run, run_msg  # noqa: E402 - after the path is set
from bench.msg_mam import _cpus  # noqa: E402 - after the path is set
from bench.refservers import PRESENCE_PREFIX, SERVERS, ServerUnderTest, installed, make  # noqa: E402 - after the path is set
from bench.scenarios import IdleParams, LoginParams, run_idle, run_login  # noqa: E402 - after the path is set
from bench.scenarios_msglat import LatParams, run_msglat  # noqa: E402 - after the path is set
from bench.scenarios_presence import PresenceParams, run_presence  # noqa: E402 - after the path is set

__all__ = ["LOCK", "SCENARIOS", "Metric", "Results", "Scenario", "main", "problems", "scenarios", "table"]

Runner = Callable[[Target, ServerUnderTest], Awaitable[dict[str, Any]]]
Results = dict[str, dict[str, list[dict[str, Any]]]]  # server -> scenario -> one summary per run
LOCK = Path("/tmp/xmppcore-bench-compare.lock")


@dataclass(frozen=True)
class Metric:
    """A row of the table: a key of the run summaries, and which way is better (None: no ratio)."""

    key: str
    unit: str
    higher_is_better: bool | None = True


@dataclass(frozen=True)
class Scenario:
    """A named scenario: the accounts it needs, how to run it, and the metrics it reports."""

    name: str
    accounts: int                 # accounts bench1..N it logs in
    metrics: tuple[Metric, ...]
    runner: Runner
    mam: bool = False             # archiving on
    presence: PresenceParams | None = None  # rosters it needs (accounts presence1..N)


def _archived(summary: dict[str, Any]) -> dict[str, Any]:
    return summary | {"archived_pct": 100.0 * summary["stamped"] / max(summary["received"], 1)}


def scenarios(scale: float = 1.0, duration: float = 10.0) -> dict[str, Scenario]:
    """The suite; ``scale`` multiplies client counts and offered rates (1.0: the full run)."""
    def n(count: int) -> int:
        return max(1, round(count * scale))
    login = LoginParams(concurrency=n(100), duration=duration)  # as in issue 8: 100 concurrent
    idle = IdleParams(sessions=n(10_000), concurrency=min(100, n(10_000)), settle=5.0 if scale >= 1 else 0.2)
    presence = PresenceParams(users=max(n(1000), 22), rounds=5)
    msg = MsgParams(pairs=n(100), duration=duration, warmup=min(2.0, duration / 5))
    # Archiving servers can be slow (ejabberd on SQLite: 130-230 msg/s here): the 2,000 messages in
    # flight when sending stops may take longer than the default 10 s to arrive, and count lost.
    msgmam = dataclasses.replace(msg, drain=60.0)

    def lat(rate: float) -> LatParams:
        return LatParams(rate=rate * scale, pairs=n(20), duration=duration, warmup=min(1.0, duration / 5))

    async def do_login(t: Target, s: ServerUnderTest) -> dict[str, Any]:
        return (await run_login(t, login)).summary()

    async def do_idle(t: Target, s: ServerUnderTest) -> dict[str, Any]:
        return (await run_idle(t, idle, s.pid)).summary()

    def do_msg(params: MsgParams) -> Runner:
        async def runner(t: Target, s: ServerUnderTest) -> dict[str, Any]:
            return _archived((await run_msg(t, params, s.cpu_seconds)).summary())
        return runner

    async def do_presence(t: Target, s: ServerUnderTest) -> dict[str, Any]:
        return (await run_presence(dataclasses.replace(t, user_prefix=PRESENCE_PREFIX), presence)).summary()

    def do_lat(rate: float) -> Runner:
        async def runner(t: Target, s: ServerUnderTest) -> dict[str, Any]:
            return (await run_msglat(t, lat(rate))).summary()
        return runner

    p99 = (Metric("p99_ms", "ms p99", higher_is_better=False),)
    rate = Metric("rate", "msg/s")
    return {s.name: s for s in (
        Scenario("login", login.concurrency, (Metric("rate", "logins/s"),), do_login),
        Scenario("idle", idle.sessions, (Metric("kib_per_session", "KiB/session", higher_is_better=False),), do_idle),
        Scenario("msglat500", 2 * lat(500).pairs, p99, do_lat(500)),
        Scenario("msglat2000", 2 * lat(2000).pairs, p99, do_lat(2000)),
        Scenario("presence", 0, (Metric("rate", "deliveries/s"),), do_presence, presence=presence),
        Scenario("msg", 2 * msg.pairs, (rate,), do_msg(msg)),
        Scenario("msgmam", 2 * msgmam.pairs, (rate, Metric("archived_pct", "% archived", None)), do_msg(msgmam),
                 mam=True),
    )}


SCENARIOS = tuple(scenarios())


async def _one_run(server: ServerUnderTest, scenario: Scenario) -> dict[str, Any]:
    """One run; a failure is reported in the summary (``error``) and the suite goes on."""
    summary: dict[str, Any]
    try:
        target = await server.begin_run(mam=scenario.mam)
        summary = await scenario.runner(target, server)
    except Exception as exc:  # noqa: BLE001 - a broken run must not hide the others
        summary = {"error": repr(exc)[:500]}
    try:
        await server.end_run()
    except Exception as exc:  # noqa: BLE001
        summary.setdefault("error", repr(exc)[:500])
    return summary


async def _server_runs(server: ServerUnderTest, suite: dict[str, Scenario], names: Sequence[str],
                       runs: int) -> dict[str, list[dict[str, Any]]]:
    """Set ``server`` up once, run each scenario ``runs`` times on it, stop it."""
    chosen = [suite[name] for name in names]
    accounts = max(s.accounts for s in chosen)
    presence = next((s.presence for s in chosen if s.presence is not None), None)
    began = time.monotonic()
    print(f"{server.version()}: setting up {accounts} accounts"
          f"{f' and {presence.users} rosters' if presence else ''}...", flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        try:
            await server.setup(accounts, presence)
        except Exception as exc:  # noqa: BLE001 - the other servers still run
            print(f"{server.name}: setup failed: {exc!r}", flush=True)
            return {s.name: [{"error": f"setup failed: {exc!r}"[:500]}] for s in chosen}
        print(f"{server.name}: set up in {time.monotonic() - began:.0f} s: {server.setup_note}", flush=True)
        for scenario in chosen:
            results[scenario.name] = []
            for index in range(runs):
                results[scenario.name].append(await _one_run(server, scenario))
                print(f"{server.name} {scenario.name} run {index + 1}: {results[scenario.name][-1]}", flush=True)
    finally:
        await server.shutdown()
    return results


def _median(summaries: list[dict[str, Any]], key: str) -> float | None:
    values = [float(s[key]) for s in summaries if "error" not in s and key in s]
    return statistics.median(values) if values else None


def _cell(value: float | None) -> str:
    if value is None:
        return "failed"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def _advantage(ours: float | None, theirs: float | None, higher_is_better: bool | None) -> str:
    """How many times better xmppcore is (> 1: better); blank when it does not apply."""
    if higher_is_better is None or ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return "—"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}×"


def table(results: Results, suite: dict[str, Scenario]) -> str:
    """Markdown: per scenario and metric, each server's median and xmppcore's advantage."""
    servers = list(results)
    others = [s for s in servers if s != "xmppcore"] if "xmppcore" in servers else []
    lines = ["| scenario | metric | better | " + " | ".join(servers)
             + "".join(f" | xmppcore vs {o}" for o in others) + " |",
             "|---|---|---|" + "---:|" * (len(servers) + len(others))]
    names = [n for n in suite if any(n in r for r in results.values())]
    for name in names:
        for metric in suite[name].metrics:
            medians = {s: _median(results[s].get(name, []), metric.key) for s in servers}
            better = {True: "higher", False: "lower", None: ""}[metric.higher_is_better]
            lines.append(f"| {name} | {metric.unit} | {better} | "
                         + " | ".join(_cell(medians[s]) for s in servers)
                         + "".join(f" | {_advantage(medians['xmppcore'], medians[o], metric.higher_is_better)}"
                                   for o in others) + " |")
    if others:
        lines.append("\nxmppcore vs X: how many times better xmppcore's median is than X's on that row "
                     "(> 1: xmppcore better, < 1: worse); xmppcore ÷ X where higher is better, "
                     "X ÷ xmppcore where lower is better.")
    return "\n".join(lines)


def problems(results: Results, suite: dict[str, Scenario]) -> list[str]:
    """What makes the comparison unsound: failed runs, losses, archiving not as configured."""
    found = []
    for server, by_scenario in results.items():
        for name, summaries in by_scenario.items():
            for index, s in enumerate(summaries, 1):
                where = f"{server} {name} run {index}"
                if "error" in s:
                    found.append(f"{where}: {s['error']}")
                    continue
                for key in ("lost", "bounced", "failures"):
                    if s.get(key, 0):
                        found.append(f"{where}: {key} {s[key]}")
                if "archived_pct" in s and (s["archived_pct"] < 100.0 if suite[name].mam else s["stamped"] > 0):
                    found.append(f"{where}: {s['archived_pct']:.1f} % archived with archiving "
                                 f"{'on' if suite[name].mam else 'off'}")
    return found


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The issue 8 benchmark suite: xmppcore, ejabberd, Prosody.")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=installed(),
                        help=f"default: those installed here ({' '.join(installed())})")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="client counts and rates × this (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default 10)")
    parser.add_argument("--reprovision", action="store_true",
                        help="register the reference servers' accounts and make their rosters anew, "
                             "not from the copy an earlier run left (bench/refservers.py)")
    return parser.parse_args(argv)


def _raise_fd_limit() -> None:
    """10,000 idle sessions need 10,000 descriptors here and in the server (which inherits)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _lock(servers: Sequence[str]) -> IO[str] | None:
    """The reference servers have fixed run directories and ports: one suite at a time uses them."""
    if servers == ["xmppcore"]:
        return None
    handle = LOCK.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SystemExit(f"another bench/compare.py runs the reference servers ({LOCK} is locked)") from None
    return handle


async def _main(args: argparse.Namespace) -> Results:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # stop the servers on kill too
    suite = scenarios(args.scale, args.duration)
    server_cpu, generator_cpu = _cpus()
    print(f"server on CPU {server_cpu}, generator on CPU {generator_cpu}; servers {' '.join(args.servers)}; "
          f"scale {args.scale:g}, {args.runs} runs, {args.duration:g} s each; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    results: Results = {}
    for name in args.servers:
        server = make(name, server_cpu, reuse_setup=not args.reprovision)
        results[name] = await _server_runs(server, suite, args.scenarios, args.runs)
        print(f"{server.version()}: archiving in msgmam: {server.archive}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    _raise_fd_limit()
    lock = _lock(args.servers)
    began = time.monotonic()
    try:
        results = run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM: the servers are stopped
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.close()
    suite = scenarios(args.scale, args.duration)
    print()
    print(table(results, suite))
    found = problems(results, suite)
    for problem in found:
        print(f"PROBLEM: {problem}")
    print(f"\n{time.monotonic() - began:.0f} s in all; load average {os.getloadavg()[0]:.2f} at the end")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
