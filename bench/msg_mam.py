"""XEP-0313 Message Archive Management: what archiving costs one-to-one message throughput.

Runs the load generator's ``msg`` scenario (bench/loadgen.py) against xmppcore started as a
subprocess (``xmppcore serve --config <generated toml>``, SQLite in a fresh temporary
directory, plaintext c2s on loopback) with the ``mam`` module on (the default module list) and
off (the same list without ``mam``), alternating, ``--runs`` times each; every run gets a fresh
server and database.  With ``--ejabberd``, the same scenario also runs against the reference
ejabberd of ejabberd-config/ (STARTTLS, which it requires; it has no mod_mam, so only
archiving off).  The server is pinned to one CPU and this process to another when there are
two.  Prints one line per run and a table of medians:

    python bench/msg_mam.py                       # 100 pairs, window 20, 10 s per run, 3 runs
    python bench/msg_mam.py --ejabberd --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import (  # noqa: E402 - after the path is set
    MsgParams,
    MsgResult,
    Target,
    add_arguments,
    from_arguments,
    run,
    run_msg,
)
from xmppcore.config import ModulesConfig, load_config  # noqa: E402
from xmppcore.server.app import Server  # noqa: E402

__all__ = ["Measurement", "XmppcoreProcess", "bench_config", "create_accounts", "main", "to_toml"]

_LISTENING = re.compile(r"c2s \(STARTTLS\) on (\S+):(\d+)")
_EJABBERD_DIR = Path(os.environ.get("EJABBERD_RUN_DIR", "/tmp/xmppcore-ejabberd"))
EJABBERD = Target(host="127.0.0.2", port=5222, domain="ejabberd.test", starttls=True)


def bench_config(data_dir: Path, *, mam: bool, domain: str = "localhost") -> dict[str, Any]:
    """The xmppcore configuration of a benchmark server: the defaults, except what a benchmark
    on loopback needs (plaintext allowed, any free port, no federation, quiet logs)."""
    modules = [name for name in ModulesConfig().enabled if mam or name != "mam"]
    return {
        "domains": [domain],
        "data_dir": str(data_dir),
        "log_level": "warning",
        "c2s": {"bind": ["127.0.0.1"], "port": 0, "direct_tls_port": -1, "tls_required": False,
                "max_unauthenticated_per_ip": 10_000},
        "s2s": {"enabled": False, "port": -1, "direct_tls_port": -1},
        "components": {"port": -1},
        "auth": {"scram_iterations": 4096},  # as ejabberd and Prosody store by default
        "storage": {"driver": "sqlite"},
        "modules": {"enabled": modules},
    }


def to_toml(data: dict[str, Any]) -> str:
    """TOML for ``bench_config``'s shape: scalars and lists at the top, then one level of tables."""
    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "[" + ", ".join(value(x) for x in item) + "]"

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


async def create_accounts(config_file: Path, target: Target, count: int) -> None:
    """Accounts 1..count through the server's own account store, before it starts."""
    server = Server(load_config(config_file))
    await server.open()
    try:
        for index in range(1, count + 1):
            await server.accounts.create(target.domain, f"{target.user_prefix}{index}", target.password)
    finally:
        await server.storage.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (proc(5), fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class XmppcoreProcess:
    """``xmppcore serve`` in a subprocess on a fresh data directory."""

    def __init__(self, workdir: Path, *, mam: bool, cpu: int | None, target: Target) -> None:
        self.workdir = workdir
        self.mam = mam
        self.cpu = cpu
        self.target = target
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, accounts: int) -> Target:
        """Write the config, create the accounts, start; the target with the port it chose."""
        config_file = self.workdir / "xmppcore.toml"
        config_file.write_text(to_toml(bench_config(self.workdir / "data", mam=self.mam, domain=self.target.domain)))
        await create_accounts(config_file, self.target, accounts)
        cpu = self.cpu
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xmppcore.cli", "serve", "--config", str(config_file), cwd=REPO,
            stdout=subprocess.PIPE, stderr=(self.workdir / "server.log").open("wb"),
            preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})))
        assert self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            if not line:
                raise RuntimeError(f"xmppcore exited; see {self.workdir / 'server.log'}")
            found = _LISTENING.search(line)
            if found:
                return Target(host=found[1], port=int(found[2]), domain=self.target.domain,
                              password=self.target.password, user_prefix=self.target.user_prefix)

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Measurement:
    """One run against one server and archiving setting."""

    server: str
    archiving: str
    result: MsgResult


async def xmppcore_run(mam: bool, params: MsgParams, cpu: int | None) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="xmppcore-bench-") as tmp:
        server = XmppcoreProcess(Path(tmp), mam=mam, cpu=cpu, target=Target())
        try:
            target = await server.start(2 * params.pairs)
            result = await run_msg(target, params, server.cpu_seconds)
        finally:
            await server.stop()
    return Measurement("xmppcore", "on" if mam else "off", result)


# -- the reference ejabberd (ejabberd-config/) ---------------------------------------------------
def _ejabberdctl(*args: str) -> list[str]:
    return ["ejabberdctl", "--config-dir", str(_EJABBERD_DIR / "config"), "--spool", str(_EJABBERD_DIR / "spool"),
            "--logs", str(_EJABBERD_DIR / "logs"), *args]


async def _ctl_all(commands: list[list[str]], parallel: int = 4) -> None:
    gate = asyncio.Semaphore(parallel)
    env = {**os.environ, "ERL_INETRC": str(_EJABBERD_DIR / "config" / "inetrc")}

    async def one(command: list[str]) -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.DEVNULL)
            await proc.wait()

    await asyncio.gather(*(one(c) for c in commands))


async def _ejabberd_sh(command: str) -> int:
    proc = await asyncio.create_subprocess_exec("bash", str(REPO / "ejabberd-config" / "ejabberd.sh"), command)
    return await proc.wait()


def _ejabberd_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"beam.smp" in cmdline and str(_EJABBERD_DIR / "spool").encode() in cmdline:
            return int(entry.name)
    return None


def _pin_threads(pid: int, cpus: set[int] | None, saved: dict[int, set[int]]) -> None:
    """Pin every thread of ``pid`` (affinity is per thread on Linux), or restore ``saved``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        tid = int(task.name)
        try:
            if cpus is None:
                os.sched_setaffinity(tid, saved.get(tid, set(range(os.cpu_count() or 1))))
            else:
                saved.setdefault(tid, os.sched_getaffinity(tid))
                os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # the thread ended meanwhile


async def ejabberd_runs(params: MsgParams, runs: int, cpu: int | None) -> list[Measurement]:
    """The scenario against ejabberd: started here if it is not running (and then stopped);
    the benchmark accounts registered for the runs and unregistered afterwards."""
    started = await _ejabberd_sh("status") != 0
    if started and await _ejabberd_sh("start") != 0:
        raise RuntimeError("ejabberd-config/ejabberd.sh start failed")
    users = [f"{EJABBERD.user_prefix}{i}" for i in range(1, 2 * params.pairs + 1)]
    await _ctl_all([_ejabberdctl("register", u, EJABBERD.domain, EJABBERD.password) for u in users])
    pid, saved = _ejabberd_pid(), dict[int, set[int]]()
    try:
        if pid is not None and cpu is not None:
            _pin_threads(pid, {cpu}, saved)
        measurements = []
        for index in range(runs):
            result = await run_msg(EJABBERD, params, (lambda: _cpu_seconds(pid)) if pid else None)
            measurements.append(Measurement("ejabberd", "off (no mod_mam)", result))
            _print_run(index + 1, measurements[-1])
        return measurements
    finally:
        if pid is not None and saved:
            _pin_threads(pid, None, saved)
        await _ctl_all([_ejabberdctl("unregister", u, EJABBERD.domain) for u in users])
        if started:
            await _ejabberd_sh("stop")


# -- report --------------------------------------------------------------------------------------
def _print_run(index: int, m: Measurement) -> None:
    r = m.result
    print(f"run {index}: {m.server:8} archiving {m.archiving:16} {r.rate:9.0f} msg/s  p50 {r.p50_ms:7.2f} ms  "
          f"p99 {r.p99_ms:7.2f} ms  server CPU {r.server_cpu:4.0%}  sent {r.sent} received {r.received} "
          f"archived {r.stamped} lost {r.lost} bounced {r.bounced}", flush=True)


def table(measurements: list[Measurement]) -> str:
    """Markdown table of medians per (server, archiving), and the on/off ratio."""
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.server, m.archiving), []).append(m)
    lines = ["| server | archiving | msg/s (median) | runs msg/s | latency p50 | latency p99 | server CPU | archived | lost |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    medians: dict[tuple[str, str], float] = {}
    for (server, archiving), group in groups.items():
        rates = [m.result.rate for m in group]
        medians[(server, archiving)] = statistics.median(rates)
        received = sum(m.result.received for m in group)
        lines.append(
            f"| {server} | {archiving} | {statistics.median(rates):,.0f} | {' / '.join(f'{x:,.0f}' for x in rates)} "
            f"| {statistics.median(m.result.p50_ms for m in group):.2f} ms "
            f"| {statistics.median(m.result.p99_ms for m in group):.2f} ms "
            f"| {statistics.median(m.result.server_cpu for m in group):.0%} "
            f"| {sum(m.result.stamped for m in group) / max(received, 1):.0%} "
            f"| {sum(m.result.lost + m.result.bounced for m in group)} |")
    on, off = medians.get(("xmppcore", "on")), medians.get(("xmppcore", "off"))
    if on and off:
        lines.append(f"\nxmppcore throughput with archiving on / off: {on / off:.2f}")
    return "\n".join(lines)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Message throughput with XEP-0313 archiving on and off.")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (default 3)")
    add_arguments(parser, MsgParams)
    parser.add_argument("--ejabberd", action="store_true", help="also run against ejabberd-config/'s ejabberd")
    return parser.parse_args(argv)


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, generator CPU); this process moves to the generator's."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    os.sched_setaffinity(0, {available[1]})
    return available[0], available[1]


async def _main(args: argparse.Namespace) -> list[Measurement]:
    params = from_arguments(MsgParams, args)
    server_cpu, generator_cpu = _cpus()
    print(f"pairs {params.pairs}, window {params.window}, {params.duration:g} s per run "
          f"({params.warmup:g} s warm-up), server on CPU {server_cpu}, generator on CPU {generator_cpu}; "
          f"{_load()}", flush=True)
    measurements = []
    for index in range(args.runs):
        for mam in (True, False):
            measurements.append(await xmppcore_run(mam, params, server_cpu))
            _print_run(index + 1, measurements[-1])
    if args.ejabberd:
        measurements += await ejabberd_runs(params, args.runs, server_cpu)
    return measurements


def main(argv: Sequence[str] | None = None) -> int:
    measurements = run(_main(_arguments(argv)))
    print()
    print(table(measurements))
    print(f"\n{_load()} at the end (other work on the machine skews the figures)")
    return 0 if all(m.result.lost == 0 and m.result.bounced == 0 for m in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())
