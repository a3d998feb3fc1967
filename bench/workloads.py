"""The workloads: each measures one server and returns its numbers, ``value`` being the one in the table.

W1-W3 and W5 run against the round's servers, W4 against a fresh server
process per measurement, HTTP against the two gunicorn HTTP servers. A
workload that fails raises (BenchError, with the server's log when known,
or OSError): the cell says FAILED with the reason, and the run goes on.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients import ClientError, loadgen, probe, warm, wrk
from procs import BenchError, Server, ServerError, Spec

MiB = 1 << 20
GROUPS = ("W1", "W2", "W3", "W4", "W5", "HTTP", "PRESENCE")  # what --workloads selects
SAMPLE_EVERY = 0.25  # seconds between RSS samples during W4's hold


@dataclass(frozen=True)
class Settings:
    """Durations and sizes; ``QUICK`` is the --quick smoke test."""

    warmup: float = 1.0  # W1-W3: seconds before the measured window
    duration: float = 5.0  # W1-W3: seconds measured
    many: int = 1000  # W2's second size, for duck_ws_sync (and raw, the reference)
    idle_sizes: tuple[int, ...] = (5000, 10000)  # W4
    hold: float = 5.0  # W4: seconds of hold over which RSS is sampled
    idle_hold: float = 60.0  # W4: duck_ws_sync's hold at the largest size (heartbeat CPU, still alive after)
    settle: float = 1.0  # W4: seconds between all connected and the hold
    bcast_conns: int = 1000  # W5
    bcast_rounds: int = 10  # W5: timed rounds (after one warm-up)
    http_seconds: float = 2.0  # HTTP: wrk -d of one slice
    http_slices: int = 6  # HTTP: slices per server and round, the servers alternating (ABBA...)
    http_threads: int = 1  # HTTP: wrk -t
    http_conns: int = 50  # HTTP: wrk -c
    dialc: int = 64  # connections dialled at a time
    cold: bool = False  # --cold: no warm-up after the startup check


QUICK = Settings(
    warmup=0.3, duration=1.0, idle_sizes=(500, 1000), hold=1.0, idle_hold=5.0, settle=0.5, bcast_rounds=3,
    http_seconds=1.0, http_slices=2,
)  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """One row of the table."""

    key: str  # "W4@5000"
    group: str  # "W4": what --workloads selects
    title: str  # the row's title
    lower_is_better: bool  # W4, W5: the ratio to raw reads the other way
    fresh: bool  # measured on a fresh server process (W4): ``measure`` gets a Spec, not a Server
    applies: Callable[[Spec], bool]
    measure: Callable[[Any, Settings, Path], dict[str, Any]]


def get_ready(server: Server, settings: Settings) -> None:
    """Wait for a started server's startup check, then warm it up (unless ``settings.cold``); ServerError if not."""
    server.wait_ready(probe)
    if settings.cold:
        return
    try:
        warm(server)
    except (BenchError, OSError) as exc:
        raise ServerError(f"failed its warm-up ({exc})", server.log_tail()) from exc


def _every(spec: Spec) -> bool:
    return True


def _echoes(spec: Spec) -> bool:
    """W1-W3: every server but those there for W5 alone."""
    return not spec.bcast_only


def _idle_at(size: int) -> Callable[[Spec], bool]:
    """W4 at ``size``: every server but the floor and W5's, and a thread-per-connection one only up to 1,000."""

    def applies(spec: Spec) -> bool:
        return not spec.floor and not spec.bcast_only and (not spec.threaded or size <= 1000)

    return applies


def _duck_and_raw(spec: Spec) -> bool:
    return (spec.duck and not spec.bcast_only) or spec.raw


def _dial_seconds(conns: int) -> float:
    return 5.0 + conns * 0.005  # a bound for the load generator's deadline, not an estimate


def _echo(conns: int, size: int, binary: bool) -> Callable[[Server, Settings, Path], dict[str, Any]]:
    """Round trips: the value is msgs/s, or MB/s for binary messages."""
    value = "mb_per_s" if binary else "msgs_per_s"

    def measure(server: Server, settings: Settings, log_dir: Path) -> dict[str, Any]:
        cpu: dict[str, tuple[float, float]] = {}

        def on_mark(name: str) -> None:
            if name in ("window_start", "window_end"):
                cpu[name] = server.cpu_times()

        result = loadgen(
            server, "echo", settings.warmup + settings.duration + _dial_seconds(conns), on_mark=on_mark,
            conns=conns, size=size, binary=binary, warmup=settings.warmup, duration=settings.duration,
            dialc=settings.dialc,
        )  # fmt: skip
        if result["msgs"] == 0:
            raise ClientError(f"no echo completed within the {settings.duration:g} s window")
        keys = ("msgs_per_s", "mb_per_s", "p50_us", "p99_us", "max_us", "msgs", "client_cpu_pct", "dial_s")
        measured = {"value": result[value], **{key: result[key] for key in keys}}
        if len(cpu) == 2:
            # The serving process's CPU per round trip in the window: Python and C (user), the kernel's (system).
            (user0, system0), (user1, system1) = cpu["window_start"], cpu["window_end"]
            measured["server_user_us"] = 1e6 * (user1 - user0) / result["msgs"]
            measured["server_system_us"] = 1e6 * (system1 - system0) / result["msgs"]
        return measured

    return measure


def _idle(conns: int) -> Callable[[Spec, Settings, Path], dict[str, Any]]:
    def measure(spec: Spec, settings: Settings, log_dir: Path) -> dict[str, Any]:
        long_hold = spec.duck and conns == max(settings.idle_sizes)
        return idle_rss(spec, conns, settings.idle_hold if long_hold else settings.hold, settings, log_dir)

    return measure


def idle_rss(spec: Spec, conns: int, hold: float, settings: Settings, log_dir: Path) -> dict[str, Any]:
    """W4 on a fresh server: (RSS during the hold - RSS after its startup check and warm-up) / connections.

    The RSS is the median of samples taken every SAMPLE_EVERY s during the
    first ``settings.hold`` seconds of the hold; over a longer hold, the CPU
    time of the serving process is reported too, and the RSS at its end.
    """
    server = Server(spec, log_dir)
    samples: list[tuple[float, int]] = []
    cpu: dict[str, tuple[float, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        while True:
            try:
                samples.append((time.monotonic(), server.rss_kib()))
            except OSError:
                return  # the server is gone: the measurement fails below
            if stop.wait(SAMPLE_EVERY):
                return

    sampler = threading.Thread(target=sample, daemon=True)

    def on_mark(name: str) -> None:
        if name == "hold_start":
            cpu["start"] = (time.monotonic(), server.cpu_seconds())
            sampler.start()
        elif name == "hold_end":
            stop.set()
            cpu["end"] = (time.monotonic(), server.cpu_seconds())

    try:
        server.start()
        get_ready(server, settings)  # its connections all ended before the baseline
        time.sleep(1.0)
        baseline = server.rss_kib()
        seconds = settings.settle + hold + _dial_seconds(conns) + 10
        result = loadgen(
            server, "idle", seconds, on_mark=on_mark, check_errors=False,
            conns=conns, hold=hold, settle=settings.settle, dialc=settings.dialc,
        )  # fmt: skip
        still_running = server.running()
    except BenchError as exc:
        exc.log = exc.log or server.log_tail()
        raise
    finally:
        stop.set()
        server.stop()
    if result["connected"] < conns:
        raise ClientError(f"{result['connected']:,} of {conns:,} connected: {result['first_error']}", server.log_tail())
    if not still_running or "end" not in cpu or not samples:
        raise ServerError("the server (or its worker) did not last the hold", server.log_tail())
    started = cpu["start"][0]
    window = [rss for at, rss in samples if at - started <= settings.hold + SAMPLE_EVERY / 2]
    held = statistics.median(window)
    (t0, cpu0), (t1, cpu1) = cpu["start"], cpu["end"]
    return {
        "value": (held - baseline) / conns,
        "rss_baseline_kib": baseline,
        "rss_hold_kib": held,
        "rss_end_kib": samples[-1][1],
        "kib_per_conn_end": (samples[-1][1] - baseline) / conns,  # after a long hold: what heartbeats added
        "hold_s": hold,
        "server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "connected": result["connected"],
        "alive": result["alive"],
        "dropped": result["dropped"],
        "errors": result["errors"],
        "first_error": result["first_error"] if result["errors"] else None,
        "dial_s": result["dial_s"],
    }


def _bcast(server: Server, settings: Settings, log_dir: Path) -> dict[str, Any]:
    seconds = settings.bcast_rounds * 1.5 + _dial_seconds(settings.bcast_conns)
    result = loadgen(server, "bcast", seconds, conns=settings.bcast_conns, rounds=settings.bcast_rounds)
    keys = ("bcast_ms", "bcast_max_ms", "bcast_first_median_ms", "client_cpu_s", "dial_s")
    return {"value": result["bcast_median_ms"], **{key: result[key] for key in keys}}


def _http(server: Server, settings: Settings, log_dir: Path) -> dict[str, Any]:
    """One slice: wrk for ``http_seconds`` (the round warmed the server up first)."""
    result = wrk(server.port, settings.http_seconds, settings.http_threads, settings.http_conns)
    return {"value": result["requests_per_s"], **result}


def http_warm_up(server: Server, settings: Settings) -> None:
    """Open wrk's connections and serve the first requests once, before the slices."""
    wrk(server.port, 1, settings.http_threads, settings.http_conns)


def merge_slices(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from a server's HTTP slices: their median, or the first failure."""
    for cell in slices:
        if "error" in cell:
            return cell
    values = [cell["value"] for cell in slices]
    return {
        "value": statistics.median(values),
        "slices": values,
        "seconds": round(sum(cell["seconds"] for cell in slices), 1),
    }


def table(settings: Settings) -> list[Workload]:
    """The rows of the table, in order (the HTTP pair is separate: ``HTTP``)."""
    many = settings.many
    rows = [
        Workload("W1", "W1", "W1: 1 conn x 32 B text echo, msgs/s", False, False, _echoes, _echo(1, 32, False)),
        Workload("W2", "W2", "W2: 100 conns x 32 B text echo, msgs/s", False, False, _echoes, _echo(100, 32, False)),
        Workload(
            f"W2@{many}", "W2", f"W2: {many:,} conns x 32 B text echo, msgs/s", False, False,
            _duck_and_raw, _echo(many, 32, False),
        ),
        Workload("W3", "W3", "W3: 1 conn x 1 MiB binary echo, MB/s", False, False, _echoes, _echo(1, MiB, True)),
    ]  # fmt: skip
    for size in settings.idle_sizes:
        title = f"W4: RSS per idle conn at {size:,} conns, KiB"
        rows.append(Workload(f"W4@{size}", "W4", title, True, True, _idle_at(size), _idle(size)))
    title = f"W5: 32 B to {settings.bcast_conns:,} clients, ms until the last has it"
    rows.append(Workload("W5", "W5", title, True, False, _every, _bcast))
    return rows


HTTP = Workload("HTTP", "HTTP", "HTTP: GET / with wrk, requests/s", False, False, _every, _http)
