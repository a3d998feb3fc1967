"""The fuzz's command line: ``python3 -m tests.fuzz --minutes 30``, from the repository's root.

Exit status: 0 when no new finding, 1 when there was one (each is printed
and written under ``tests/fuzz/findings/``), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from itertools import count
from pathlib import Path

from duck_ws_sync.protocol.native import speedups

from . import FINDINGS, Finding, fuzz, write_finding
from .cases import Case, from_json, generate_case
from .checks import check_case
from .reduce import reduce_case


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.fuzz",
        description="Differential fuzz of the protocol core (see tests/fuzz/README.md).",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="run for this long")
    length.add_argument("--seconds", type=float, help="run for this long (default: 60)")
    length.add_argument("--cases", type=int, help="run this many cases, however long they take")
    length.add_argument("--seed", type=int, help="run the one case of this seed, and describe it")
    length.add_argument("--replay", type=Path, metavar="FILE", help="run the reduced case of a finding's file")
    parser.add_argument("--start", type=int, help="the first seed (default: a random one); the next cases count up")
    parser.add_argument("--findings", type=Path, default=FINDINGS, help="where findings are written")
    parser.add_argument("--max-findings", type=int, default=10, help="stop after this many new findings")
    parser.add_argument("--reduce-seconds", type=float, default=20.0, help="time to shrink each finding's case")
    return parser.parse_args(argv)


def report_finding(finding: Finding, case: Case, arguments: argparse.Namespace, budget: float) -> None:
    """Print a finding, shrink its case, and write both."""
    print(f"FINDING, seed {finding.seed}: {finding.key}")
    print(f"  {finding.description[:600]}")
    print(f"  case: {case.describe()}")
    reduced = reduce_case(case, finding.key, budget)
    print(f"  reduced: {reduced.describe()}")
    if len(reduced.stream) <= 200:
        print(f"  reduced stream: {reduced.stream!r}")
    path = write_finding(finding, case, reduced, arguments.findings)
    print(f"  written to {shown(path)}")
    print(f"  replay: python3 -m tests.fuzz --replay {shown(path)}  (or --seed {finding.seed})")


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_one(case: Case, arguments: argparse.Namespace) -> int:
    """Check one case and say what it showed."""
    print(f"seed {case.seed}: {case.describe()}")
    report = check_case(case)
    for name, outcome in (("native", report.native), ("python", report.python)):
        if outcome is not None and outcome.facts:
            facts = outcome.facts
            print(f"  {name} run: {len(outcome.events)} events, {outcome.lends} reads into a lent buffer, ", end="")
            print(f"state {facts['state'].name}, close_sent {facts['close_sent']}, error {facts['protocol_error']}")
    if report.finding is None:
        print("  no finding")
        return 0
    if report.known is not None:
        print(f"  known defect: {report.known.name} (pinned by {report.known.test})")
        return 0
    report_finding(report.finding, case, arguments, arguments.reduce_seconds)
    return 1


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if speedups is None:
        print("warning: the native extension is not built: both runs use pure Python", file=sys.stderr)
    if arguments.seed is not None:
        return run_one(generate_case(arguments.seed), arguments)
    if arguments.replay is not None:
        record = json.loads(arguments.replay.read_text())
        return run_one(from_json(record.get("reduced") or record["case"]), arguments)

    start = arguments.start if arguments.start is not None else random.SystemRandom().randrange(1 << 32)
    began = time.monotonic()
    if arguments.cases is not None:
        seeds: range | count[int] = range(start, start + arguments.cases)
        deadline = None
    else:
        seconds = arguments.minutes * 60 if arguments.minutes is not None else arguments.seconds or 60.0
        seeds, deadline = count(start), began + seconds

    def on_finding(finding: Finding, case: Case) -> None:
        # Shrinking stays within the run's time, give or take a second.
        left = arguments.reduce_seconds if deadline is None else max(deadline - time.monotonic(), 1.0)
        report_finding(finding, case, arguments, min(arguments.reduce_seconds, left))

    summary = fuzz(seeds, deadline=deadline, on_finding=on_finding, max_findings=arguments.max_findings)
    print("\n".join(summary.lines()))
    return 1 if summary.findings else 0


if __name__ == "__main__":
    sys.exit(main())
