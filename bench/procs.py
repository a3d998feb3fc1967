"""Processes: the servers under test (pinned to core 0), their memory and CPU time, and the machine's load.

Every server is a subprocess on 127.0.0.1 with an ephemeral port, started in
a session (and so a process group) of its own, pinned with ``taskset -c 0``
and given a high RLIMIT_NOFILE with ``prlimit`` (both exec the command, so
the pid we hold is the server's). ``stop()`` ends it by that pid, then
kills whatever is left of the process group it created.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SERVER_CORE = 0
CLIENT_CORE = 1
NOFILE = 65536  # open files for servers and clients: 10,000 connections and room
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A measurement failed; ``log`` is the end of the server's output, when known."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class ServerError(BenchError):
    """A server did not start, exited, or does not answer; the message ends with its output's last line."""

    def __init__(self, message: str, log: str = "") -> None:
        last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), "")
        super().__init__(f"{message}: {last}" if last else message, log)


@functools.cache
def nofile_limit() -> int:
    """NOFILE when we may raise the hard limit that far (root with CAP_SYS_RESOURCE), else the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= NOFILE:
        return NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, NOFILE))  # our own limit: a test of the privilege
    except (ValueError, OSError):
        return hard
    return NOFILE


def pinned(core: int, command: Sequence[str]) -> list[str]:
    """``command`` run on one CPU core, with RLIMIT_NOFILE raised."""
    limit = nofile_limit()
    return ["taskset", "-c", str(core), "prlimit", f"--nofile={limit}:{limit}", *command]


@dataclass(frozen=True)
class Spec:
    """How to start one server under test."""

    key: str  # for --only and the JSON file
    label: str  # the table's column title
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # added to the environment
    cwd: Path | None = None  # also first on sys.path for ``python -m``
    raw: bool = False  # plain TCP echo, no WebSocket
    floor: bool = False  # the minimal WebSocket echo: no W4, whose memory it would not represent
    threaded: bool = False  # a thread per connection: W4 only at sizes it has threads for
    http: bool = False  # plain HTTP only: the startup check is a GET
    gunicorn: bool = False  # the serving process is the master's child
    workers: int = 1  # gunicorn workers; with more than one, the master stands for them (W5 only)
    bcast_only: bool = False  # measured on W5 only (broadcast through groups)
    redis: bool = False  # needs the bench's redis-server (run.py starts it)
    root: Path | None = None  # duck_ws_sync's: the checkout it is imported from

    @property
    def duck(self) -> bool:
        return self.root is not None


class Server:
    """One running server process."""

    def __init__(self, spec: Spec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.key}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pid = 0  # the serving process: gunicorn's worker, or the server itself

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                pinned(SERVER_CORE, self.spec.command),
                cwd=self.spec.cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **dict(self.spec.env)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, probe: Callable[[Server], None], timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait for the port (and gunicorn's worker), then until ``probe`` (one echo) succeeds."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        port_line = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)|LISTENING (\d+)")
        while not self.port or not self.pid:
            if match := port_line.search(self.log_path.read_bytes()):
                self.port = int(match.group(1) or match.group(2))
            self.pid = self._worker_pid() if self.spec.gunicorn else self.process.pid
            self._check_deadline(deadline, timeout, "did not start listening")
            time.sleep(0.05)
        while True:
            try:
                probe(self)
                return
            except Exception as exc:
                self._check_deadline(deadline, timeout, f"does not answer ({exc})")
                time.sleep(0.2)

    def _check_deadline(self, deadline: float, timeout: float, what: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ServerError(f"exited with status {self.process.returncode}", self.log_tail())
        if time.monotonic() > deadline:
            raise ServerError(f"{what} within {timeout:.0f} s", self.log_tail())

    def _worker_pid(self) -> int:
        """gunicorn's worker: the master's only child (0 until it exists); the master once all of several exist."""
        assert self.process is not None
        master = self.process.pid
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            if self.spec.workers > 1:
                return master if len(children) == self.spec.workers else 0
            return int(children[0]) if len(children) == 1 else 0
        found = re.findall(rb"Booting worker with pid: (\d+)", self.log_path.read_bytes())
        return int(found[-1]) if found else 0

    def running(self) -> bool:
        """Whether the server (and for gunicorn, the same worker) still runs."""
        if self.process is None or self.process.poll() is not None:
            return False
        return not self.spec.gunicorn or self._worker_pid() == self.pid

    def rss_kib(self) -> int:
        """Resident memory of the serving process, KiB."""
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE_KIB

    def cpu_seconds(self) -> float:
        """User + system CPU time of the serving process so far."""
        return sum(self.cpu_times())

    def cpu_times(self) -> tuple[float, float]:
        """User and system (kernel) CPU time of the serving process so far, seconds."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after STOP_TIMEOUT; then SIGKILL to anything left in its process group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the group we created: an orphaned worker, if any


def start_all(specs: Sequence[Spec], log_dir: Path, ready: Callable[[Server], None]) -> dict[str, Server | BenchError]:
    """Start every server side by side; the result maps each key to its Server, or to why it did not start.

    ``ready(server)`` returns once a started server answers (and has been warmed
    up), or raises BenchError. Servers that started are in the result even when
    others failed: the caller stops them all.
    """
    servers = {spec.key: Server(spec, log_dir) for spec in specs}
    result: dict[str, Server | BenchError] = {}
    try:
        for key, server in servers.items():
            result[key] = server
            server.start()
        for key, server in servers.items():
            try:
                ready(server)
            except BenchError as exc:
                server.stop()
                result[key] = BenchError(f"did not start: {exc}", exc.log)
    except BaseException:  # interrupted: nothing started may be left running
        stop_all(servers)
        raise
    return result


def stop_all(servers: Mapping[str, Server | BenchError]) -> None:
    for server in servers.values():
        if isinstance(server, Server):
            server.stop()


# The machine's other load.


@dataclass
class LoadSnapshot:
    """What the machine and we had used at one moment."""

    at: float  # monotonic seconds
    loadavg: tuple[float, float, float]
    busy: float  # CPU seconds of every process, all cores (from /proc/stat)
    ours: float  # CPU seconds of this process and the children it reaped (servers, load generators, wrk)

    @classmethod
    def take(cls) -> LoadSnapshot:
        loadavg = tuple(float(value) for value in Path("/proc/loadavg").read_text().split()[:3])
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        busy = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
        return cls(time.monotonic(), loadavg, busy, ours)  # type: ignore[arg-type]


def other_load(before: LoadSnapshot, after: LoadSnapshot) -> dict[str, object]:
    """CPU time used between two snapshots by processes other than ours (never below zero)."""
    elapsed = after.at - before.at
    other = max(0.0, (after.busy - before.busy) - (after.ours - before.ours))
    return {
        "elapsed_s": round(elapsed, 1),
        "loadavg_before": before.loadavg,
        "loadavg_after": after.loadavg,
        "our_cpu_s": round(after.ours - before.ours, 1),
        "other_cpu_s": round(other, 1),
        "other_cores": round(other / elapsed, 3) if elapsed > 0 else 0.0,  # average cores busy with others
    }


@contextlib.contextmanager
def redis_server(port: int, needed: bool) -> Iterator[None]:
    """A redis-server on 127.0.0.1:``port``, pinned beside the servers, for as long as the block (if ``needed``)."""
    if not needed:
        yield
        return
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(pinned(SERVER_CORE, command), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"redis-server did not start on port {port} (is it installed? apt-get install redis-server)"
                )
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
