"""WebSocket benchmark: duck_ws_sync next to raw gevent TCP and other Python WebSocket servers.

The others: aiohttp, websockets, picows, gevent-websocket, uWSGI and
Flask-Sock. One command runs every workload (W1-W5, HTTP and PRESENCE, see
bench/README.md) against every server, in ``--rounds`` interleaved rounds,
the server order rotating from round to round, each server warmed up once
it has started; servers are pinned to core 0 and our Go load generator
(built on first use) to core 1. It prints a markdown table of
medians with each server's ratio to the raw gevent TCP echo of the same
round, the per-round numbers and the machine's other load, and writes all of
it to a JSON file under build/bench/.

    python3 bench/run.py                 # the full run (about 30 minutes)
    python3 bench/run.py --quick         # a smoke test (about 3 minutes)
    python3 bench/run.py --only duck-pywsgi --workloads W2,W4
    python3 bench/run.py --compare ../other-checkout
    python3 bench/run.py --profile       # W2 against our pywsgi server under cProfile
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import catalog
import presence
import report
from clients import ensure_built
from procs import BenchError, LoadSnapshot, Server, ServerError, Spec, other_load, redis_server, start_all, stop_all
from workloads import GROUPS, HTTP, QUICK, Settings, Workload, get_ready, http_warm_up, merge_slices, table

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "build" / "bench"


def rotate(items: list[Any], by: int) -> list[Any]:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def attempt(
    row: Workload, spec: Spec, servers: dict[str, Server | BenchError], settings: Settings, log_dir: Path
) -> dict[str, Any]:
    """One measurement; a failure becomes ``{"error": reason, "log": the server's last lines}``, and the run goes on."""
    started = time.monotonic()
    server: Server | BenchError | None = None
    try:
        if row.fresh:
            cell = row.measure(spec, settings, log_dir)
        else:
            server = servers[spec.key]
            if isinstance(server, BenchError):
                raise BenchError(str(server), server.log)
            if not server.running():  # it died in an earlier workload: start it again
                server.stop()
                server = servers[spec.key] = Server(spec, log_dir)
                server.start()
                get_ready(server, settings)
            cell = row.measure(server, settings, log_dir)
            if not server.running():
                raise ServerError("the server exited during the workload", server.log_tail())
    except Exception as exc:
        cell = {"error": f"{type(exc).__name__}: {exc}"}
        log = getattr(exc, "log", "") or (server.log_tail(8) if isinstance(server, Server) else "")
        if log:
            cell["log"] = log
    cell["seconds"] = round(time.monotonic() - started, 1)
    shown = f"{cell['value']:,.2f}" if "error" not in cell else "FAILED: " + cell["error"].splitlines()[0][:150]
    print(f"    {row.key:<9} {spec.label:<32} {shown}  ({cell['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return cell


def http_round(
    order: list[Spec], servers: dict[str, Server | BenchError], settings: Settings, log_dir: Path
) -> dict[str, dict[str, Any]]:
    """The HTTP pair in short slices, the order reversed every slice (A B B A ...): slow drifts of the
    machine's speed hit both alike. Each cell is the median of its server's slices."""
    for spec in order:
        server = servers[spec.key]
        if isinstance(server, Server):
            with contextlib.suppress(Exception):  # a failing server fails its slices, reported there
                http_warm_up(server, settings)
    slices: dict[str, list[dict[str, Any]]] = {spec.key: [] for spec in order}
    for index in range(settings.http_slices):
        for spec in order if index % 2 == 0 else order[::-1]:
            slices[spec.key].append(attempt(HTTP, spec, servers, settings, log_dir))
    return {key: merge_slices(cells) for key, cells in slices.items()}


def run_round(
    number: int, specs: list[Spec], http_specs: list[Spec], rows: list[Workload], settings: Settings, log_dir: Path
) -> dict[str, Any]:
    """Every selected workload against every server, in this round's order; the round's servers run throughout."""
    order = rotate(specs, number)
    http_order = rotate(http_specs, number)
    needed = [spec for spec in order if any(not row.fresh and row.applies(spec) for row in rows)]
    before = LoadSnapshot.take()
    cells: dict[str, dict[str, Any]] = {}
    servers = start_all(needed + http_order, log_dir, lambda server: get_ready(server, settings))
    try:
        for row in rows:
            cells[row.key] = {
                spec.key: attempt(row, spec, servers, settings, log_dir) for spec in order if row.applies(spec)
            }
        if http_order:
            cells[HTTP.key] = http_round(http_order, servers, settings, log_dir)
    finally:
        stop_all(servers)
    return {
        "round": number + 1,
        "order": [spec.key for spec in order + http_order],
        "load": other_load(before, LoadSnapshot.take()),
        "cells": cells,
    }


def settings_from(arguments: argparse.Namespace) -> Settings:
    settings = QUICK if arguments.quick else Settings()
    overrides = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(Settings)
        if getattr(arguments, field.name, None) is not None
    }
    return dataclasses.replace(settings, **overrides)


def select(arguments: argparse.Namespace) -> tuple[list[Spec], list[Spec], list[Workload], Settings]:
    settings = settings_from(arguments)
    groups = [group.strip().upper() for group in arguments.workloads.split(",") if group.strip()]
    if unknown := set(groups) - set(GROUPS):
        raise SystemExit(f"--workloads: unknown {', '.join(sorted(unknown))} (choose from {', '.join(GROUPS)})")
    compare = [Path(directory).resolve() for directory in arguments.compare]
    for directory in compare:
        if not (directory / "duck_ws_sync").is_dir():
            raise SystemExit(f"--compare {directory}: no duck_ws_sync/ there")
    most = max((*settings.idle_sizes, settings.many, settings.bcast_conns), default=0)
    specs = catalog.servers(arguments.root, compare, most)
    if arguments.only:
        wanted = {key.strip() for key in arguments.only.split(",") if key.strip()}
        if unknown := wanted - {spec.key for spec in specs}:
            keys = ", ".join(spec.key for spec in specs)
            raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))} (choose from {keys})")
        keep = wanted | {catalog.RAW} | {f"duck-pywsgi-{number}" for number in range(1, len(compare) + 1)}
        specs = [spec for spec in specs if spec.key in keep]  # raw: the reference; --compare's: asked for
    rows = [row for row in table(settings) if row.group in groups]
    specs = [spec for spec in specs if spec.key == catalog.RAW or any(row.applies(spec) for row in rows)]
    http_specs = catalog.http_servers(arguments.root) if "HTTP" in groups else []
    return specs, http_specs, rows, settings


def metadata(arguments: argparse.Namespace, settings: Settings, specs: list[Spec]) -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(["python3", "bench/run.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "versions": catalog.versions(),
        "root": str(arguments.root),
        "root_state": catalog.source_state(arguments.root),
        "compare": {
            spec.key: f"{spec.root} at {catalog.source_state(spec.root)}"
            for spec in specs
            if spec.root is not None and spec.root != arguments.root
        },
        "rounds": arguments.rounds,
        "settings": dataclasses.asdict(settings),
        "pinning": "servers: taskset -c 0; load generators: taskset -c 1",
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a short smoke test of every server and workload")
    parser.add_argument("--only", metavar="KEYS", help="servers to run, comma-separated keys (raw always runs)")
    parser.add_argument("--workloads", default=",".join(GROUPS), help="comma-separated, from " + ",".join(GROUPS))
    parser.add_argument("--warmup", type=float, help="W1-W3: seconds before the window (1)")
    parser.add_argument("--duration", type=float, help="W1-W3: seconds measured (5)")
    parser.add_argument("--many", type=int, help="W2's second size, for duck_ws_sync and raw (1000)")
    parser.add_argument(
        "--idle-sizes", type=lambda text: tuple(int(size) for size in text.split(",")), help="W4 (5000,10000)"
    )
    parser.add_argument("--hold", type=float, help="W4: seconds of hold sampled for RSS (5)")
    parser.add_argument("--idle-hold", type=float, help="W4: duck_ws_sync's hold at the largest size (60)")
    parser.add_argument("--bcast-conns", type=int, help="W5: clients (1000)")
    parser.add_argument("--bcast-rounds", type=int, help="W5: timed broadcasts per measurement (10)")
    parser.add_argument("--http-seconds", type=float, help="HTTP: wrk -d of one slice (2)")
    parser.add_argument("--http-slices", type=int, help="HTTP: slices per server and round, alternating (6)")
    parser.add_argument("--http-conns", type=int, help="HTTP: wrk -c (50)")
    parser.add_argument("--http-threads", type=int, help="HTTP: wrk -t (1)")
    parser.add_argument(
        "--root", type=lambda value: Path(value).resolve(), default=REPO, metavar="DIR",
        help="the checkout whose duck_ws_sync is benchmarked (default: this one)",
    )  # fmt: skip
    parser.add_argument(
        "--compare", metavar="DIR", action="append", default=[],
        help="also run another checkout's duck_ws_sync on pywsgi, in the same rounds (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--cold", action="store_const", const=True,
        help="no warm-up: each server gets only its startup check before the workloads (see bench/README.md)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="FILE", help="where to write the results (build/bench/...)")
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep the servers' logs in DIR")
    parser.add_argument("--profile", action="store_true", help="instead: W2 against our pywsgi server under cProfile")
    parser.add_argument("--profile-workload", choices=["W2", "W3"], default="W2", help="what --profile runs")
    parser.add_argument("--profile-clock", choices=["cpu", "wall"], default="wall", help="cProfile's timer")
    parser.add_argument("--profile-top", type=int, default=30, help="functions listed by --profile")
    arguments = parser.parse_args()
    if arguments.rounds is None:
        arguments.rounds = 1 if arguments.quick else 3
    return arguments


def main() -> None:
    arguments = parse_arguments()
    specs, http_specs, rows, settings = select(arguments)
    ensure_built()
    with tempfile.TemporaryDirectory(prefix="duck-bench-") as temporary:
        log_dir = arguments.logs or Path(temporary)
        log_dir.mkdir(parents=True, exist_ok=True)
        if arguments.profile:
            import profiling

            profiling.profile(
                arguments.root,
                settings,
                log_dir,
                arguments.profile_clock,
                arguments.profile_top,
                arguments.profile_workload,
            )
            return
        results: dict[str, Any] = {
            "meta": metadata(arguments, settings, specs),
            "servers": {spec.key: spec.label for spec in specs},
            "http_servers": {spec.key: spec.label for spec in http_specs},
            "workloads": [{"key": row.key, "title": row.title, "lower_is_better": row.lower_is_better} for row in rows],
            "rounds": [],
        }
        path = (arguments.json or OUTPUT / time.strftime("results-%Y%m%d-%H%M%S.json")).resolve()
        before = LoadSnapshot.take()
        try:
            timing_presence = "PRESENCE" in arguments.workloads.upper()
            with redis_server(catalog.REDIS_PORT, timing_presence or any(spec.redis for spec in specs)):
                for number in range(arguments.rounds):
                    print(f"round {number + 1}/{arguments.rounds}", file=sys.stderr, flush=True)
                    results["rounds"].append(run_round(number, specs, http_specs, rows, settings, log_dir))
                if timing_presence:
                    print("presence()", file=sys.stderr, flush=True)
                    results["presence"] = presence.measure(arguments.root, catalog.REDIS_URL)
        finally:
            results["machine_load"] = other_load(before, LoadSnapshot.take())
            results["summary"] = report.summarize(results)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1) + "\n")
    print(report.render(results))
    print(f"\nall numbers: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
