"""RFC 6120/6121 conformance report: every scenario on every available server, as a table.

    python -m tests.conformance --report [--target xmppcore] [-k substring] [--verbose] [--dir DIR]

Prints scenario × server (pass / FAIL / differs (expected) / PASSES (remove differs_on) /
skipped), then the reports of the unexpected results.  Exits 1 when any result is unexpected
(a failure, or a pass where ``differs_on`` says the scenario fails), 2 on a broken setup.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .model import TARGET_NAMES, Scenario, ScenarioError, load_scenarios
from .runner import Outcome, RunResult, classify, run_scenario
from .targets import Target, TargetPool, TargetUnavailable

SCENARIO_DIR = Path(__file__).parent / "scenarios"

Cell = tuple[Outcome, RunResult | None]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="run everything and print the table (the default)")
    parser.add_argument("--target", action="append", choices=TARGET_NAMES, help="only this server (repeatable)")
    parser.add_argument("-k", dest="keyword", default="", help="only scenarios whose id contains this")
    parser.add_argument("--verbose", "-v", action="store_true", help="also print why expected differences fail")
    parser.add_argument("--dir", type=Path, default=SCENARIO_DIR,
                        help="the scenario directory (default: %(default)s)")
    return parser.parse_args(argv)


async def _run_all(scenarios: list[Scenario], targets: dict[str, Target | str]) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    for scenario in scenarios:
        for name, target in targets.items():
            if isinstance(target, str):
                cells[scenario.id, name] = (Outcome.SKIPPED, None)
                continue
            result = await run_scenario(scenario, target)
            cells[scenario.id, name] = (classify(scenario, name, result), result)
    return cells


def _table(scenarios: list[Scenario], names: list[str], cells: dict[tuple[str, str], Cell]) -> str:
    width = max([len("scenario"), *(len(s.id) for s in scenarios)])
    columns = [max(len(n), *(len(cells[s.id, n][0].value) for s in scenarios)) for n in names]
    lines = ["  ".join(["scenario".ljust(width), *(n.ljust(w) for n, w in zip(names, columns))])]
    lines.append("  ".join(["-" * width, *("-" * w for w in columns)]))
    for s in scenarios:
        values = (cells[s.id, n][0].value.ljust(w) for n, w in zip(names, columns))
        lines.append("  ".join([s.id.ljust(width), *values]))
    return "\n".join(lines)


def _details(scenarios: list[Scenario], names: list[str], cells: dict[tuple[str, str], Cell], verbose: bool) -> str:
    parts: list[str] = []
    for s in scenarios:
        for n in names:
            outcome, result = cells[s.id, n]
            if outcome is Outcome.UNEXPECTED_PASS:
                parts.append(f"{s.id} on {n} passes, but differs_on says: {s.differs_reason(n)} (remove the note)")
            elif result is not None and (outcome is Outcome.FAIL or (verbose and outcome is Outcome.DIFFERS)):
                parts.append(result.report())
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        scenarios = [s for s in load_scenarios(args.dir) if args.keyword in s.id]
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = list(args.target or TARGET_NAMES)
    pool = TargetPool()
    try:
        targets: dict[str, Target | str] = {}
        for name in names:
            try:
                targets[name] = pool.get(name)
            except TargetUnavailable as exc:
                targets[name] = str(exc)
                print(f"{name}: skipped: {exc}", file=sys.stderr)
            except RuntimeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        cells = asyncio.run(_run_all(scenarios, targets))
    finally:
        pool.close()
    print(_table(scenarios, names, cells))
    details = _details(scenarios, names, cells, args.verbose)
    if details:
        print("\n" + details)
    unexpected = sum(1 for outcome, _ in cells.values() if outcome.unexpected)
    counts = {o: sum(1 for c, _ in cells.values() if c is o) for o in Outcome}
    print("\n" + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
