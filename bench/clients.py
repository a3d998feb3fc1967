"""The load generators, pinned to core 1: our Go ``loadgen`` (built on first use) and Debian's ``wrk``."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procs import CLIENT_CORE, BenchError, Server, pinned

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCES = HERE / "loadgen"
BUILD_SCRIPT = SOURCES / "build.sh"
BINARY = REPO / "build" / "bench" / "loadgen"
SLACK = 20.0  # seconds a load generator may run past what it was asked for before it is killed
WARM_CONNS = 100  # the warm-up's load: WARM_CONNS connections x 32 B text echo for WARM_SECONDS
WARM_SECONDS = 0.5


class ClientError(BenchError):
    """The load generator failed, or reported errors: the server failed the workload."""


def ensure_built() -> Path:
    """Build the load generator when it is missing or older than its sources (and install wrk when missing)."""
    newest = max(path.stat().st_mtime for path in SOURCES.glob("*.go"))
    if not BINARY.exists() or BINARY.stat().st_mtime < newest or shutil.which("wrk") is None:
        print(f"building {BINARY.relative_to(REPO)} ...", flush=True)
        subprocess.run(["sh", str(BUILD_SCRIPT), str(BINARY)], check=True, timeout=600)
    return BINARY


def loadgen(
    server: Server,
    mode: str,
    seconds: float,
    on_mark: Callable[[str], None] | None = None,
    check_errors: bool = True,
    **flags: Any,
) -> dict[str, Any]:
    """Run the load generator against ``server``; ``seconds`` is how long the run should take.

    ``flags`` become ``-name value`` (``True``: a bare ``-name``). ``on_mark`` is
    called with each ``MARK`` name as it is printed. The result is the
    ``RESULT`` JSON; ClientError when it does not finish, or reports errors
    (unless ``check_errors`` is false: the caller looks at them).
    """
    target = ["-raw", f"127.0.0.1:{server.port}"] if server.spec.raw else ["-url", f"ws://127.0.0.1:{server.port}/ws"]
    deadline = seconds + SLACK
    command = [str(BINARY), "-mode", mode, *target, "-deadline", f"{deadline:.0f}s"]
    for name, value in flags.items():
        if value is True:
            command.append(f"-{name}")
        elif value is not False and value is not None:
            command += [f"-{name}", str(value)]
    result: dict[str, Any] | None = None
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            pinned(CLIENT_CORE, command), stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
        )
        watchdog = threading.Timer(deadline + 10, process.kill)  # its own deadline failed: kill it by pid
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("MARK ") and on_mark is not None:
                    on_mark(line.split()[1])
                elif line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT ") :])
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
                process.wait()
        if result is None:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-2000:]
            raise ClientError(f"loadgen exited with status {process.returncode} and no result: {tail}")
    if check_errors and result["errors"]:
        raise ClientError(f"{result['errors']} error(s), first: {result['first_error']}")
    return result


def probe(server: Server) -> None:
    """The server is up: one echo, text and binary (also W4's warm-up connection), or for HTTP a 200 to GET /."""
    if server.spec.http:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise ClientError(f"GET / answered {response.status} {response.reason}")
        finally:
            connection.close()
    else:
        loadgen(server, "check", seconds=5, timeout="5s")


def warm(server: Server) -> None:
    """Make a server that has passed its startup check as warm as one that has been serving for a while.

    The startup check has opened and closed one WebSocket connection; here a
    plain TCP connection opens and closes (the server reads its end), then
    a short load runs (WARM_CONNS x 32 B text echo for WARM_SECONDS; HTTP
    servers get wrk's warm-up before their slices instead). A server that has
    never read a connection's end can run at half its speed: bench/README.md,
    "Warming".
    """
    connect_and_close(server.port)
    if not server.spec.http:
        loadgen(server, "echo", WARM_SECONDS + 5, conns=WARM_CONNS, size=32, warmup=0, duration=WARM_SECONDS)


def connect_and_close(port: int, timeout: float = 2.0) -> None:
    """One plain TCP connection that sends nothing and ends; waits (up to ``timeout``) until the server ends it too."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):  # a reset; or a timeout: the server keeps a half-closed connection
            connection.recv(1)


def wrk(port: int, seconds: float, threads: int, connections: int) -> dict[str, Any]:
    """Plain GET / with ``wrk``: requests/s, latency, errors; ClientError on non-2xx answers or socket errors."""
    if shutil.which("wrk") is None:
        raise ClientError("wrk is not installed (Debian: apt-get install wrk)")
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", f"http://127.0.0.1:{port}/"
    ]  # fmt: skip
    try:
        done = subprocess.run(
            pinned(CLIENT_CORE, command), capture_output=True, text=True, timeout=seconds + SLACK, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientError(f"wrk did not finish within {seconds + SLACK:.0f} s") from exc
    output = done.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done.returncode != 0 or rate is None:
        raise ClientError(f"wrk failed (status {done.returncode}): {done.stderr.strip() or output.strip()}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", output)
    bad_answers = int(non_2xx.group(1)) if non_2xx else 0
    errors = [int(value) for value in socket_errors.groups()] if socket_errors else [0, 0, 0, 0]
    if bad_answers or any(errors):
        raise ClientError(f"{bad_answers} non-2xx answers; socket errors (connect, read, write, timeout) {errors}")
    return {
        "requests_per_s": float(rate.group(1)),
        "latency_avg": latency.group(1) if latency else None,
        "wrk": " ".join(command),
    }
