"""WebSocket echo: duck_ws_sync next to gevent-websocket, in one run, on the same machine.

Servers, each a subprocess on 127.0.0.1 with an ephemeral port, all started
side by side and stopped by pid at the end:

- duck_ws_sync's ``examples/echo.py`` app on gevent.pywsgi;
- the same app under ``gunicorn -k gevent -w 1``;
- gevent-websocket's ``WebSocketHandler`` on gevent.pywsgi (a receive/send loop);
- a raw gevent TCP echo: the ceiling (no WebSocket work at all).

The client is a raw-socket WebSocket client written here (blocking socket,
TCP_NODELAY, masking with duck_ws_sync's native ``apply_mask``, frames read
with ``recv_into``) so that the client is not what is measured. Every echo is
checked (opcode, length, first and last bytes; whole payloads regularly).

Measurements, interleaved so that machine noise hits every server alike:
in each round, the servers take turns in short slices (the first one
rotating); the table shows medians over rounds, and the ratios to
gevent-websocket are medians of the ratios within each round.

(a) sequential round trips of 32-byte text messages on one connection:
    messages/s, p50 and p99 latency, and the server's CPU time per message;
(b) 1 MiB binary messages echoed one at a time on one connection: GB/s,
    counting the bytes of one direction;
(c) 100 connections, each with one 32-byte message in flight: messages/s
    and the server's CPU time per message.

Usage: ``python bench/echo.py [--rounds 5] [--seconds 2] [--bulk-seconds 1]``
(about 1.5 minutes). ``--compare DIR`` adds another checkout's duck_ws_sync;
``--profile`` runs (a) against our pywsgi server under cProfile instead.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import platform
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from duck_ws_sync.protocol import mask

ROOT = Path(__file__).resolve().parents[1]
SERVERS_SCRIPT = Path(__file__).resolve().with_name("servers.py")
apply_mask = mask.apply_mask

BULK_SIZE = 1 << 20  # our MAX_FRAME_SIZE: accepted (the limit is inclusive) and echoed as one frame
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA

STARTUP_TIMEOUT = 30.0
SOCKET_TIMEOUT = 10.0  # any single send or receive; a stuck server fails the run, it does not hang it
STOP_TIMEOUT = 5.0


class BenchError(Exception):
    """A server misbehaved: wrong echo, refused handshake, closed connection."""


# The client.


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """A masked, final client frame."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + apply_mask(payload, key)


class Client:
    """One blocking WebSocket connection (or, ``raw=True``, a plain TCP one for the echo ceiling)."""

    def __init__(self, port: int, raw: bool = False, path: str = "/ws/echo", timeout: float = SOCKET_TIMEOUT) -> None:
        self.raw = raw
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._recv_into = self.sock.recv_into
        self._buffer = bytearray(2 * BULK_SIZE + 64)
        self._view = memoryview(self._buffer)
        self._start = 0  # unread bytes are _buffer[_start:_end]
        self._end = 0
        self._keys = [os.urandom(4) for _ in range(256)]
        if not raw:
            try:
                self._handshake(path)
            except BaseException:
                self.sock.close()
                raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def key(self, index: int) -> bytes:
        return self._keys[index & 255]

    def _handshake(self, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        while (end := self._buffer.find(b"\r\n\r\n", 0, self._end)) < 0:
            if self._end > 65536:
                raise BenchError("handshake response too long")
            self._receive_more()
        head = bytes(self._buffer[:end]).decode("latin-1")
        self._start = end + 4
        status_line, *lines = head.split("\r\n")
        if status_line.split()[1:2] != ["101"]:
            raise BenchError(f"handshake refused: {status_line!r}")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise BenchError(f"bad Sec-WebSocket-Accept: {headers.get('sec-websocket-accept')!r}")
        if headers.get("sec-websocket-extensions"):
            raise BenchError("the server negotiated an extension nobody asked for")

    def _receive_more(self) -> None:
        size = self._recv_into(self._view[self._end :])
        if not size:
            raise BenchError("the server closed the connection")
        self._end += size

    def _fill(self, need: int) -> None:
        """Make at least ``need`` unread bytes available, starting at ``_start``."""
        if self._end - self._start >= need:
            return
        if self._start + need > len(self._buffer):
            unread = self._end - self._start
            if need > len(self._buffer):
                self._view.release()
                self._buffer = self._buffer[self._start : self._end] + bytearray(need)
                self._view = memoryview(self._buffer)
            else:
                self._buffer[:unread] = self._buffer[self._start : self._end]
            self._start, self._end = 0, unread
        while self._end - self._start < need:
            self._receive_more()

    def send(self, data: bytes | bytearray) -> None:
        self.sock.sendall(data)

    def receive_exact(self, size: int) -> memoryview:
        """The next ``size`` bytes as they came (raw mode); valid until the next receive."""
        if self._start == self._end:
            self._start = self._end = 0
        self._fill(size)
        start = self._start
        self._start = start + size
        return self._view[start : start + size]

    def receive_frame(self) -> tuple[int, bool, memoryview]:
        """The next frame: (opcode, fin, payload); the payload is valid until the next receive."""
        if self._start == self._end:
            self._start = self._end = 0
        self._fill(2)
        buffer = self._buffer
        first, second = buffer[self._start], buffer[self._start + 1]
        if second & 0x80 or first & 0x70:
            raise BenchError(f"unexpected frame header {first:#04x} {second:#04x}")
        length, header = second & 0x7F, 2
        if length >= 126:
            header = 4 if length == 126 else 10
            self._fill(header)
            length = int.from_bytes(buffer[self._start + 2 : self._start + header], "big")
            buffer = self._buffer
        self._fill(header + length)
        start = self._start + header
        self._start = start + length
        return first & 0x0F, bool(first & 0x80), self._view[start : start + length]

    def receive_message(self) -> tuple[int, memoryview | bytes]:
        """The next data message; answers pings, raises on a Close."""
        fragments: list[bytes] = []
        opcode = 0
        while True:
            frame_opcode, fin, payload = self.receive_frame()
            if frame_opcode >= 8:
                if frame_opcode == PING:
                    self.send(client_frame(PONG, bytes(payload), os.urandom(4)))
                elif frame_opcode == CLOSE:
                    raise BenchError(f"the server closed the WebSocket: {bytes(payload)!r}")
                continue
            if fin and not fragments:
                return frame_opcode, payload
            opcode = opcode or frame_opcode
            fragments.append(bytes(payload))
            if fin:
                return opcode, b"".join(fragments)

    def close(self) -> None:
        """Closing handshake (bounded in time), then close TCP."""
        try:
            if not self.raw:
                self.sock.settimeout(2.0)
                self.send(client_frame(CLOSE, struct.pack("!H", 1000), os.urandom(4)))
                with contextlib.suppress(BenchError):
                    while self.receive_frame()[0] != CLOSE:
                        pass
        except OSError:
            pass
        finally:
            self.sock.close()


# The measurements. Each is a runner bound to one server: it opens its
# connections and warms them up when created, then ``run(seconds)`` may be
# called many times (the servers' turns are interleaved in short slices), and
# ``result()`` sums up every slice.


@dataclass
class SmallResult:
    count: int  # messages timed
    rate: float  # messages/s
    p50: float  # seconds
    p99: float
    server_cpu: float | None  # seconds of server CPU per message
    client_cpu: float  # seconds of client CPU per message


class SmallRun:
    """(a): one 32-byte text message at a time on one connection."""

    def __init__(self, server: Server, warmup: int = 200) -> None:
        self.server = server
        self.client = Client(server.port, server.raw)
        self.latencies: list[int] = []
        self.sent = 0
        self.count = 0
        self.elapsed = 0.0
        self.server_cpu: float | None = 0.0
        self.client_cpu = 0.0
        try:
            self._exchange(warmup, None)
        except BaseException:
            self.client.close()
            raise

    def _exchange(self, messages: int, deadline: int | None) -> int:
        """Round trips until ``messages`` were done or ``deadline`` (perf_counter_ns) passed; return the count."""
        perf = time.perf_counter_ns
        client, raw = self.client, self.server.raw
        send, receive_message, receive_exact, key = (
            client.send,
            client.receive_message,
            client.receive_exact,
            client.key,
        )
        record = self.latencies.append if deadline is not None else _discard
        done = 0
        while done < messages:
            payload = b"%032d" % self.sent
            frame = b"\x81\xa0" + (k := key(self.sent)) + apply_mask(payload, k)
            self.sent += 1
            before = perf()
            send(frame)
            if raw:
                echoed: Any = receive_exact(len(frame))
                if echoed != frame:
                    raise BenchError(f"bad echo {bytes(echoed)!r}, expected {frame!r}")
            else:
                opcode, echoed = receive_message()
                if opcode != TEXT or echoed != payload:
                    raise BenchError(f"bad echo {opcode} {bytes(echoed)!r}, expected {payload!r}")
            after = perf()
            record(after - before)
            done += 1
            if deadline is not None and after >= deadline:
                break
        return done

    def run(self, seconds: float) -> None:
        server_before, client_before = self.server.cpu_seconds(), time.process_time()
        started = time.perf_counter_ns()
        self.count += self._exchange(sys.maxsize, started + int(seconds * 1e9))
        self.elapsed += (time.perf_counter_ns() - started) / 1e9
        self.client_cpu += time.process_time() - client_before
        server_after = self.server.cpu_seconds()
        if server_before is None or server_after is None or self.server_cpu is None:
            self.server_cpu = None
        else:
            self.server_cpu += server_after - server_before

    def result(self) -> SmallResult:
        latencies = sorted(self.latencies)
        return SmallResult(
            count=self.count,
            rate=self.count / self.elapsed,
            p50=latencies[len(latencies) // 2] / 1e9,
            p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e9,
            server_cpu=None if self.server_cpu is None else self.server_cpu / self.count,
            client_cpu=self.client_cpu / self.count,
        )

    def close(self) -> None:
        self.client.close()


def _discard(value: int) -> None:
    pass


class BulkRun:
    """(b): 1 MiB binary messages, one at a time, on one connection; the result is bytes/s (one direction).

    The payload is masked once; per message only its first and last 8 bytes
    (a counter) change, patched into the masked frame (offsets 0 and
    ``BULK_SIZE - 8`` are multiples of 4, so they are masked with the same key
    bytes). The echo's opcode, length and both counters are checked every
    time, the whole payload every ``FULL_CHECK_EVERY`` messages.
    """

    FULL_CHECK_EVERY = 8

    def __init__(self, server: Server, warmup: int = 1) -> None:
        self.server = server
        self.payload = bytearray(os.urandom(BULK_SIZE))
        self.key = os.urandom(4)
        self.frame = bytearray(client_frame(BINARY, bytes(self.payload), self.key))
        self.offset = len(self.frame) - BULK_SIZE  # where the payload starts
        self.sent = 0
        self.count = 0
        self.elapsed = 0.0
        self.client = Client(server.port, server.raw)
        try:
            for _ in range(warmup):
                self._exchange()
        except BaseException:
            self.client.close()
            raise

    def _exchange(self) -> None:
        tag = struct.pack("!Q", self.sent)
        masked_tag = apply_mask(tag, self.key)
        frame, offset = self.frame, self.offset
        frame[offset : offset + 8] = masked_tag
        frame[-8:] = masked_tag
        self.client.send(frame)
        expected: bytes | bytearray
        if self.server.raw:
            echoed: Any = self.client.receive_exact(len(frame))
            expected, opcode = frame, BINARY
        else:
            opcode, echoed = self.client.receive_message()
            self.payload[:8] = self.payload[-8:] = tag
            expected = self.payload
        if (
            opcode != BINARY
            or len(echoed) != len(expected)
            or echoed[:16] != expected[:16]
            or echoed[-16:] != expected[-16:]
            or (self.sent % self.FULL_CHECK_EVERY == 0 and bytes(echoed) != expected)
        ):
            raise BenchError(f"bad 1 MiB echo #{self.sent}: opcode {opcode}, {len(echoed)} bytes")
        self.sent += 1

    def run(self, seconds: float, min_messages: int = 1) -> None:
        started = now = time.perf_counter()
        done = 0
        while done < min_messages or now - started < seconds:
            self._exchange()
            done += 1
            now = time.perf_counter()
        self.count += done
        self.elapsed += now - started

    def result(self) -> float:
        return self.count * BULK_SIZE / self.elapsed

    def close(self) -> None:
        self.client.close()


@dataclass
class ConcurrentResult:
    rate: float  # messages/s
    server_cpu: float | None  # seconds of server CPU per message
    client_cpu: float  # seconds of client CPU per message


class ConcurrentRun:
    """(c): many connections, each keeping one 32-byte text message in flight; the result is messages/s.

    One epoll loop drives them all (non-blocking sockets, level-triggered).
    Each slice starts with one message sent on every connection and ends
    when the answers still in flight at its deadline are in (counted, and the
    time they took too).
    """

    def __init__(self, server: Server, connections: int) -> None:
        self.server = server
        self.server_cpu: float | None = 0.0
        self.client_cpu = 0.0
        self.clients: list[Client] = []
        self.poller = select.epoll()
        self.flows: dict[int, _Flow] = {}
        self.count = 0
        self.elapsed = 0.0
        try:
            for _ in range(connections):
                client = Client(server.port, server.raw)
                self.clients.append(client)
                client.sock.setblocking(False)
                self.flows[client.sock.fileno()] = _Flow(client, server.raw)
                self.poller.register(client.sock.fileno(), select.EPOLLIN)
            self._slice(None)  # warm-up: every connection answers once
        except BaseException:
            self.close()
            raise

    def _slice(self, seconds: float | None) -> int:
        flows = self.flows.values()
        before = sum(flow.done for flow in flows)
        for flow in flows:
            flow.stopping = seconds is None  # the warm-up sends one message per connection
            flow.send_next()
        if seconds is not None:
            deadline = time.monotonic() + seconds
            self._pump(lambda: time.monotonic() < deadline, deadline + SOCKET_TIMEOUT, deadline)
        for flow in flows:  # stop sending; take the answers still in flight
            flow.stopping = True
        self._pump(lambda: any(flow.in_flight for flow in flows), time.monotonic() + SOCKET_TIMEOUT)
        return sum(flow.done for flow in flows) - before

    def _pump(self, go_on: Callable[[], bool], give_up: float, deadline: float | None = None) -> None:
        poll, flows = self.poller.poll, self.flows
        while go_on():
            now = time.monotonic()
            if now > give_up:
                raise BenchError("no answer in time")
            for fd, _ in poll(0.5 if deadline is None else max(min(0.5, deadline - now), 0.0)):
                flows[fd].readable()

    def run(self, seconds: float) -> None:
        server_before, client_before = self.server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        done = self._slice(seconds)
        self.elapsed += time.perf_counter() - started
        self.client_cpu += time.process_time() - client_before
        self.count += done
        server_after = self.server.cpu_seconds()
        if server_before is None or server_after is None or self.server_cpu is None:
            self.server_cpu = None
        else:
            self.server_cpu += server_after - server_before

    def result(self) -> ConcurrentResult:
        return ConcurrentResult(
            rate=self.count / self.elapsed,
            server_cpu=None if self.server_cpu is None else self.server_cpu / self.count,
            client_cpu=self.client_cpu / self.count,
        )

    def close(self) -> None:
        self.poller.close()
        for client in self.clients:
            client.sock.settimeout(2.0)
            client.close()


class _Flow:
    """One connection of the concurrent test: sends the next message when the last came back."""

    def __init__(self, client: Client, raw: bool) -> None:
        self.client = client
        self.sock = client.sock
        self.raw = raw
        self.buffer = bytearray()
        self.expected = b""
        self.frame = b""
        self.sent = 0
        self.done = 0
        self.in_flight = False
        self.stopping = False

    def send_next(self) -> None:
        self.expected = payload = b"%032d" % self.sent
        key = self.client.key(self.sent)
        self.sent += 1
        self.frame = frame = b"\x81\xa0" + key + apply_mask(payload, key)
        self.in_flight = True
        sent = self.sock.send(frame)
        if sent != len(frame):  # never with 38 bytes and one message in flight; be correct anyway
            self.sock.setblocking(True)
            try:
                self.sock.sendall(frame[sent:])
            finally:
                self.sock.setblocking(False)

    def readable(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise BenchError("the server closed a connection")
        self.buffer += data
        while self.in_flight:
            buffer = self.buffer
            if self.raw:
                size = len(self.frame)
                if len(buffer) < size:
                    return
                if buffer[:size] != self.frame:
                    raise BenchError(f"bad echo {bytes(buffer[:size])!r}")
            else:
                if len(buffer) < 2:
                    return
                length = buffer[1] & 0x7F
                if length >= 126 or buffer[1] & 0x80:
                    raise BenchError(f"unexpected frame header {bytes(buffer[:2])!r}")
                size = 2 + length
                if len(buffer) < size:
                    return
                if buffer[0] & 0x0F == PING:
                    self.sock.setblocking(True)
                    try:
                        self.sock.sendall(client_frame(PONG, bytes(buffer[2:size]), os.urandom(4)))
                    finally:
                        self.sock.setblocking(False)
                    del buffer[:size]
                    continue
                if buffer[0] != 0x81 or buffer[2:size] != self.expected:
                    raise BenchError(f"bad echo {bytes(buffer[:size])!r}, expected {self.expected!r}")
            del buffer[:size]
            self.in_flight = False
            self.done += 1
            if not self.stopping:
                self.send_next()


# The servers.


@dataclass
class Server:
    """A server process: started with ``command``, which prints its port."""

    name: str
    command: list[str]
    raw: bool = False  # a TCP echo, not a WebSocket server
    gunicorn: bool = False
    root: Path = ROOT  # the checkout whose duck_ws_sync and examples it imports
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    worker_pid: int | None = None  # the process that serves (gunicorn's worker); its CPU time is measured
    log_path: Path | None = None
    error: str | None = None
    results: dict[str, list[Any]] = field(default_factory=lambda: {"small": [], "bulk": [], "concurrent": []})

    def start(self, directory: Path) -> None:
        self.log_path = directory / f"{re.sub(r'[^a-z0-9]+', '-', self.name.lower())}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.root,
                env=dict(os.environ, PYTHONPATH=str(self.root), PYTHONUNBUFFERED="1"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop the servers
            )

    def wait_ready(self, deadline: float) -> None:
        """Wait for the port (and gunicorn's worker), then for one good echo."""
        assert self.process is not None and self.log_path is not None
        port_pattern = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)|LISTENING (\d+)")
        worker_pattern = re.compile(rb"Booting worker with pid: (\d+)")
        while True:
            text = self.log_path.read_bytes()
            if match := port_pattern.search(text):
                self.port = int(match.group(1) or match.group(2))
            if (match := worker_pattern.search(text)) and self.gunicorn:
                self.worker_pid = int(match.group(1))
            elif not self.gunicorn:
                self.worker_pid = self.process.pid
            if self.port and self.worker_pid:
                break
            if self.process.poll() is not None:
                raise BenchError(f"exited with status {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"did not start in time:\n{self.log_tail()}")
            time.sleep(0.05)
        while True:
            try:
                SmallRun(self, warmup=1).close()
                return
            except (OSError, BenchError) as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"does not echo: {exc}\n{self.log_tail()}") from exc
                time.sleep(0.1)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the serving process (Linux), or None."""
        if self.worker_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.worker_pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after ``STOP_TIMEOUT``; gunicorn's worker too if it outlived its master."""
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
        worker = self.worker_pid
        if worker is not None and worker != process.pid and _is_ours(worker, "gunicorn"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)


def _is_ours(pid: int, word: str) -> bool:
    """Whether ``pid`` still runs a command containing ``word`` (so a reused pid is left alone)."""
    try:
        return word in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def make_servers(arguments: argparse.Namespace) -> list[Server]:
    python, script = sys.executable, str(SERVERS_SCRIPT)
    gunicorn_options = ["--no-control-socket"] if _gunicorn_has("control_socket_disable") else []
    gunicorn = [
        python, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", "127.0.0.1:0", "--graceful-timeout", "2",
        "--log-level", "info", *gunicorn_options, "examples.echo:app",
    ]  # fmt: skip
    root = arguments.root
    servers = [
        Server("duck_ws_sync, gevent.pywsgi", [python, script, "ours", "--root", str(root)], root=root),
        Server("duck_ws_sync, gunicorn -k gevent", gunicorn, gunicorn=True, root=root),
        Server(
            f"gevent-websocket {_version('gevent-websocket')}, pywsgi" + (" +NODELAY" if arguments.gws_nodelay else ""),
            [python, script, "gws", *(["--nodelay"] if arguments.gws_nodelay else [])],
        ),
    ]
    for index, other in enumerate(arguments.compare, 1):
        root = Path(other).resolve()
        if not (root / "duck_ws_sync").is_dir() or not (root / "examples" / "echo.py").is_file():
            raise SystemExit(f"--compare {other}: no duck_ws_sync/ and examples/echo.py there")
        print(f"compare #{index}: {root}{_source_state(root)}", flush=True)
        servers.append(
            Server(f"duck_ws_sync #{index}, gevent.pywsgi", [python, script, "ours", "--root", str(root)], root=root)
        )
    if not arguments.no_ceiling:
        servers.append(Server("raw gevent TCP echo (ceiling)", [python, script, "tcp"], raw=True))
    return servers


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _gunicorn_has(setting: str) -> bool:
    from gunicorn.config import Config

    return setting in Config().settings


@contextlib.contextmanager
def running(servers: list[Server], logs: Path | None = None) -> Iterator[list[Server]]:
    """Start every server side by side (logs in ``logs``, or a temporary directory); stop them all by pid."""
    with tempfile.TemporaryDirectory(prefix="duck-echo-bench-") as directory:
        try:
            for server in servers:
                server.start(logs or Path(directory))
            deadline = time.monotonic() + STARTUP_TIMEOUT
            for server in servers:
                try:
                    server.wait_ready(deadline)
                except BenchError as exc:
                    server.error = f"did not start: {exc}"
                    print(f"  ! {server.name} {server.error}", file=sys.stderr)
            yield servers
        finally:
            for server in servers:
                server.stop()


# The run.


def measure(servers: list[Server], arguments: argparse.Namespace) -> None:
    """Every measurement, round after round; within a round the servers take turns in short slices."""

    def attempt(server: Server, action: Callable[..., Any], *args: Any) -> Any:
        if server.error is not None:
            return None
        try:
            return action(*args)
        except (OSError, BenchError) as exc:
            server.error = f"{type(exc).__name__}: {exc}"
            print(f"  ! {server.name} failed: {server.error}\n{server.log_tail(10)}", file=sys.stderr)
            return None

    tests: list[tuple[str, Callable[[Server], Any], float]] = [
        ("small", SmallRun, arguments.seconds),
        ("bulk", BulkRun, arguments.bulk_seconds),
    ]
    if arguments.connections:
        tests.append(("concurrent", lambda s: ConcurrentRun(s, arguments.connections), arguments.concurrent_seconds))
    print("warming up...", file=sys.stderr, flush=True)
    for server in servers:
        for _, make, _ in tests:
            runner = attempt(server, make, server)
            if runner is not None:
                attempt(server, runner.run, 0.2)
                runner.close()
    count = len(servers)
    for round_number in range(arguments.rounds):
        print(f"round {round_number + 1}/{arguments.rounds}", file=sys.stderr, flush=True)
        for name, make, seconds in tests:
            runners: dict[str, Any] = {}
            try:
                for server in servers:
                    runners[server.name] = attempt(server, make, server)
                for slice_number in range(arguments.slices):
                    shift = (round_number + slice_number) % count
                    for server in servers[shift:] + servers[:shift]:
                        attempt(server, runners[server.name].run, seconds / arguments.slices)
                for server in servers:
                    if server.error is None:
                        server.results[name].append(runners[server.name].result())
            finally:
                for runner in runners.values():
                    if runner is not None:
                        with contextlib.suppress(OSError, BenchError):
                            runner.close()


# Per-round values of each reported metric (``bigger``: whether more is better).
METRICS: dict[str, tuple[Callable[[Server], list[Any]], bool]] = {
    "rate": (lambda s: [r.rate for r in s.results["small"]], True),
    "p50": (lambda s: [r.p50 for r in s.results["small"]], False),
    "p99": (lambda s: [r.p99 for r in s.results["small"]], False),
    "server_cpu": (lambda s: [r.server_cpu for r in s.results["small"]], False),
    "client_cpu": (lambda s: [r.client_cpu for r in s.results["small"]], False),
    "bulk": (lambda s: list(s.results["bulk"]), True),
    "concurrent": (lambda s: [r.rate for r in s.results["concurrent"]], True),
    "concurrent_cpu": (lambda s: [r.server_cpu for r in s.results["concurrent"]], False),
    "concurrent_client_cpu": (lambda s: [r.client_cpu for r in s.results["concurrent"]], False),
}


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _format(value: float | None, scale: float, spec: str) -> str:
    return "-" if value is None else format(value * scale, spec)


def paired_ratio(ours: Server, theirs: Server, metric: str) -> str:
    """Median over rounds of the ratio measured within each round (better for us when > 1), and its range."""
    values, bigger = METRICS[metric]
    pairs = [(a, b) for a, b in zip(values(ours), values(theirs), strict=False) if a and b]
    if not pairs or len(values(ours)) != len(values(theirs)):
        return "-"
    ratios = sorted(a / b if bigger else b / a for a, b in pairs)
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def report(servers: list[Server], arguments: argparse.Namespace) -> None:
    summaries = {server.name: {name: _median(get(server)) for name, (get, _) in METRICS.items()} for server in servers}
    connections = arguments.connections
    columns = [
        ("(a) msgs/s", "rate", 1, ",.0f"),
        ("p50 µs", "p50", 1e6, ".1f"),
        ("p99 µs", "p99", 1e6, ".1f"),
        ("srv µs/msg", "server_cpu", 1e6, ".1f"),
        ("(b) GB/s", "bulk", 1e-9, ".3f"),
    ]
    if connections:
        columns += [("(c) msgs/s", "concurrent", 1, ",.0f"), ("srv µs/msg", "concurrent_cpu", 1e6, ".1f")]
    width = max(len(server.name) for server in servers) + 2
    print(
        "\n(a) 32 B text round trips, one connection; srv µs/msg: server CPU time per message"
        "\n(b) 1 MiB binary echoes, one connection, bytes of one direction per second"
        + (f"\n(c) {connections} connections, one 32 B message in flight on each" if connections else "")
        + f"\nmedians of {arguments.rounds} interleaved rounds\n"
    )
    print("server".ljust(width) + "".join(title.rjust(12) for title, *_ in columns))
    for server in servers:
        values = summaries[server.name]
        line = server.name.ljust(width)
        for _, name, scale, spec in columns:
            line += _format(values[name], scale, spec).rjust(12)
        print(line + ("  FAILED" if server.error else ""))
    print("client CPU µs/msg (a): " + ", ".join(_format(s["client_cpu"], 1e6, ".1f") for s in summaries.values()))
    if connections:
        cpus = [_format(s["concurrent_client_cpu"], 1e6, ".1f") for s in summaries.values()]
        print("client CPU µs/msg (c): " + ", ".join(cpus))

    reference = next((s for s in servers if s.name.startswith("gevent-websocket")), None)
    ours = [s for s in servers if s.name.startswith("duck_ws_sync")]
    if reference is not None and ours:
        metrics = [("(a) msgs/s", "rate"), ("p50", "p50"), ("p99", "p99"), ("(b) GB/s", "bulk")]
        if connections:
            metrics.append(("(c) msgs/s", "concurrent"))
        print("\nours / gevent-websocket: median of the ratios within each round (min-max); > 1: better for us")
        print("(for latencies, theirs / ours)")
        print(" " * width + "".join(label.rjust(22) for label, _ in metrics))
        for server in ours:
            print(server.name.ljust(width) + "".join(paired_ratio(server, reference, m).rjust(22) for _, m in metrics))
    ceiling = next((s for s in servers if s.raw), None)
    if ceiling is not None:
        top = summaries[ceiling.name]
        print("\nshare of the raw TCP echo ceiling ((a) msgs/s, (b) GB/s" + (", (c) msgs/s):" if connections else "):"))
        for server in servers:
            if server is not ceiling:
                values = summaries[server.name]
                keys = ["rate", "bulk"] + (["concurrent"] if connections else [])
                print(f"  {server.name.ljust(width)}" + ", ".join(_percent(values[k], top[k]) for k in keys))

    print("\nper round:")
    for server in servers:
        rates = ", ".join(f"{r.rate:,.0f}" for r in server.results["small"])
        bulk = ", ".join(f"{b / 1e9:.3f}" for b in server.results["bulk"])
        line = f"  {server.name.ljust(width)}(a) [{rates}]  (b) [{bulk}]"
        if connections:
            line += "  (c) [" + ", ".join(f"{c.rate:,.0f}" for c in server.results["concurrent"]) + "]"
        print(line)
    for server in servers:
        if server.error:
            print(f"\n{server.name} FAILED: {server.error}\n{server.log_tail()}")


def _percent(value: float | None, total: float | None) -> str:
    return "-" if not value or not total else f"{100 * value / total:.0f}%"


def environment(arguments: argparse.Namespace) -> str:
    version = _version
    concurrent = f", {arguments.concurrent_seconds:g} s with {arguments.connections} connections"
    return (
        f"Python {platform.python_version()}, gevent {version('gevent')}, greenlet {version('greenlet')}, "
        f"gunicorn {version('gunicorn')}, gevent-websocket {version('gevent-websocket')}; "
        f"{os.cpu_count()} CPUs; client apply_mask: {mask.IMPLEMENTATION}\n"
        f"servers run duck_ws_sync from {arguments.root}{_source_state(arguments.root)}\n"
        f"{arguments.rounds} rounds x ({arguments.seconds:g} s of 32 B round trips, "
        f"{arguments.bulk_seconds:g} s of 1 MiB echoes" + (concurrent if arguments.connections else "") + ") per server"
    )


def _source_state(root: Path = ROOT) -> str:
    """The commit, and a digest of uncommitted changes to the package, when ROOT is a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        diff = git("diff", "HEAD", "--", "duck_ws_sync", "examples")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", "duck_ws_sync")
    except (OSError, subprocess.SubprocessError):
        return ""
    if not diff and not untracked:
        return f" at {commit}"
    digest = hashlib.sha1((diff + untracked).encode()).hexdigest()[:10]
    return f" at {commit} + uncommitted changes (diff digest {digest})"


# Profiling.


def profile(arguments: argparse.Namespace) -> None:
    """(a) against one server under cProfile; print where the server's time goes, per message."""
    import pstats

    warmup = 200
    with tempfile.TemporaryDirectory(prefix="duck-echo-profile-") as directory:
        stats_path = Path(directory) / "server.prof"
        server = Server(
            f"{arguments.profile} on gevent.pywsgi (cProfile)",
            [sys.executable, str(SERVERS_SCRIPT), arguments.profile, "--root", str(arguments.root),
             "--profile", str(stats_path), "--profile-clock", arguments.profile_clock, "--count-switches"],
            root=arguments.root,
        )  # fmt: skip
        with running([server], Path(directory)):
            if server.error:
                raise SystemExit(server.error)
            runner = SmallRun(server, warmup=warmup)
            runner.run(arguments.seconds)
            runner.close()
            result = runner.result()
        # Stopped: the server wrote its stats and its switch count on SIGTERM.
        if not stats_path.exists():
            raise SystemExit(f"no profile written:\n{server.log_tail()}")
        stats = pstats.Stats(str(stats_path))
        switches = re.findall(r"GREENLET SWITCHES (\d+)", server.log_tail())
    messages = result.count + warmup  # the server saw these (plus a couple at start-up)
    clock = "CPU time" if arguments.profile_clock == "cpu" else "wall-clock time"
    print(
        f"{server.name}: {messages:,} round trips of 32 B, profiled in {clock} ({result.rate:,.0f} msgs/s, "
        f"server CPU {_format(result.server_cpu, 1e6, '.1f')} µs/msg while profiled)"
    )
    if switches:
        print(f"greenlet switches (switch + throw): {int(switches[-1]) / messages:.2f} per message")
    if arguments.profile_clock == "wall":
        print(
            "wall clock: a greenlet's wait in the hub for the next message is charged to the function that waits\n"
            "(our loop.py select), and a socket call's own time includes the process being descheduled in it"
        )
    entries = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        location = f"{_short(filename)}:{line}({name})" if line else name
        entries.append((tottime, calls, cumtime, location))
    entries.sort(reverse=True)
    total = sum(entry[0] for entry in entries)
    python_calls = sum(calls for _, calls, _, location in entries if ".py:" in location)
    builtin_calls = sum(calls for _, calls, _, location in entries if ".py:" not in location)
    print(
        f"calls per message: {python_calls / messages:.1f} Python functions, {builtin_calls / messages:.1f} builtins; "
        f"profiled time per message {total / messages * 1e6:.1f} µs"
    )
    print(f"\n{'calls/msg':>10} {'own µs/msg':>11} {'own %':>6}  function (top {arguments.profile_top} by own time)")
    for tottime, calls, _, location in entries[: arguments.profile_top]:
        print(f"{calls / messages:10.2f} {tottime / messages * 1e6:11.2f} {100 * tottime / total:6.1f}  {location}")
    print(f"\n{'calls/msg':>10} {'cum µs/msg':>11}  selected functions (cumulative times span greenlet switches)")
    wanted = re.compile(arguments.profile_select)
    for _, calls, cumtime, location in sorted(entries, key=lambda entry: entry[3]):
        if wanted.search(location) and calls >= messages / 4:
            print(f"{calls / messages:10.2f} {cumtime / messages * 1e6:11.2f}  {location}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "duck_ws_sync/", "lib/python"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the table shows medians")
    parser.add_argument("--seconds", type=float, default=2.0, help="(a) 32 B round trips, per server and round")
    parser.add_argument("--bulk-seconds", type=float, default=1.0, help="(b) 1 MiB echoes, per server and round")
    parser.add_argument("--connections", type=int, default=100, help="(c) concurrent connections; 0 skips (c)")
    parser.add_argument("--concurrent-seconds", type=float, default=1.0, help="(c) per server and round")
    parser.add_argument(
        "--root",
        type=lambda value: Path(value).resolve(),
        default=ROOT,
        metavar="DIR",
        help="the checkout whose duck_ws_sync (and examples/echo.py) is ours; default: this one",
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        action="append",
        default=[],
        help="also run the duck_ws_sync of another checkout (a copy with a change to try) on pywsgi; repeatable",
    )
    parser.add_argument("--slices", type=int, default=8, help="turns each server takes per measurement and round")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the raw TCP echo server")
    parser.add_argument("--gws-nodelay", action="store_true", help="set TCP_NODELAY in gevent-websocket's app")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="ours",
        choices=["ours", "gws"],
        help="instead: profile our pywsgi server (or gevent-websocket's) during (a)",
    )
    parser.add_argument(
        "--profile-clock",
        choices=["cpu", "wall"],
        default="wall",
        help="cProfile's timer: wall (cheap; waits are charged to the waiting function) or cpu (process time)",
    )
    parser.add_argument("--profile-top", type=int, default=30, help="functions listed by --profile")
    parser.add_argument(
        "--profile-select",
        default=r"_run_once|recv_into|sendall|\(send\b|\(wait\b|call_soon|create_future|Inbox|_read_forever|"
        r"_dispatch|receive_data|events_received|data_to_send|on_receive|select\b|switch",
        help="regex of functions whose call counts --profile lists",
    )
    arguments = parser.parse_args()
    if arguments.profile:
        profile(arguments)
        return
    print(environment(arguments), flush=True)
    started = time.monotonic()
    with running(make_servers(arguments)) as servers:
        measure(servers, arguments)
    report(servers, arguments)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
