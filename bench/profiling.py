"""``bench/run.py --profile``: W2 (or W3) against our pywsgi server under cProfile, per message.

The server (``peers/duck_pywsgi.py --profile FILE --count-switches``) counts
greenlet switches with a greenlet tracer and writes cProfile's stats when it
is stopped; this prints switches per message, calls per message, and the
functions with the most own time.

The default clock, wall, is cheap, but the time a greenlet waits in the hub
for the next message is charged to the function that waits, and a socket
call's own time includes the process being descheduled in it; ``cpu``
charges CPU time only, at the price of a system call per profiler event.
"""

from __future__ import annotations

import dataclasses
import pstats
import re
from pathlib import Path

import catalog
from clients import loadgen, probe
from procs import Server
from workloads import Settings

# The echo workloads that can be profiled: load generator flags.
WORKLOADS = {
    "W2": {"conns": 100, "size": 32},
    "W3": {"conns": 1, "size": 1 << 20, "binary": True},
}


def profile(root: Path, settings: Settings, log_dir: Path, clock: str, top: int, workload: str = "W2") -> None:
    spec = next(spec for spec in catalog.servers(root) if spec.key == "duck-pywsgi")
    stats_path = log_dir / "server.prof"
    options = ("--profile", str(stats_path), "--profile-clock", clock, "--count-switches")
    server = Server(dataclasses.replace(spec, command=spec.command + options), log_dir)
    try:
        server.start()
        server.wait_ready(probe)
        seconds = settings.warmup + settings.duration + 10
        flags = WORKLOADS[workload]
        result = loadgen(server, "echo", seconds, warmup=settings.warmup, duration=settings.duration, **flags)
    finally:
        server.stop()  # SIGTERM: the server writes its stats and its switch count
    if not stats_path.exists():
        raise SystemExit(f"no profile written:\n{server.log_tail()}")
    stats = pstats.Stats(str(stats_path))
    switches = re.findall(r"GREENLET SWITCHES (\d+)", server.log_path.read_text(errors="replace"))
    messages = result["msgs_total"] + 2  # every round trip, warm-up included, and the probe's two
    print(
        f"duck_ws_sync on gevent.pywsgi under cProfile ({clock} clock), {workload}: {messages:,} messages of "
        f"{flags['size']:,} B on {flags['conns']} connection(s), {result['msgs_per_s']:,.0f} msgs/s while profiled"
    )
    if switches:
        print(f"greenlet switches (switch + throw): {int(switches[-1]) / messages:.2f} per message")
    entries = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        location = f"{_short(filename)}:{line}({name})" if line else name
        entries.append((own, calls, cumulative, location))
    entries.sort(reverse=True)
    total = sum(entry[0] for entry in entries)
    python_calls = sum(calls for _, calls, _, location in entries if ".py:" in location)
    builtin_calls = sum(calls for _, calls, _, location in entries if ".py:" not in location)
    print(
        f"calls per message: {python_calls / messages:.1f} Python functions, {builtin_calls / messages:.1f} builtins; "
        f"profiled time per message {total / messages * 1e6:.1f} µs"
    )
    print(f"\n{'calls/msg':>10} {'own µs/msg':>11} {'own %':>6}  function (top {top} by own time)")
    for own, calls, _, location in entries[:top]:
        print(f"{calls / messages:10.2f} {own / messages * 1e6:11.2f} {100 * own / total:6.1f}  {location}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "duck_ws_sync/", "lib/python", "peers/"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename
