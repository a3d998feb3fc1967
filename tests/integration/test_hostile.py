"""What one hostile client can do to a real gunicorn worker, and what stops it.

Each test attacks a worker of gunicorn ``-k gevent`` and of ``-k gthread``
(tests/integration/apps/hostile_app.py) with the cheapest way around a
limit, from a raw socket (tests/integration/wire.py): floods of tiny or
empty fragments, Ping floods, a frame header too large behind a message, a
compressed frame that announces 2**62 bytes, a Close from another thread
while frames stream in. The worker's memory is read from /proc: its peak
resident size is reset before an attack and read after it.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BINARY, CLOSE, CONTINUATION, PING, TEXT, close_frame, frame
from tests.integration.conftest import Server, serve
from tests.integration.wire import RawClient

MiB = 1024 * 1024
APP = "tests.integration.apps.hostile_app:app"


@pytest.fixture(scope="module", params=["gunicorn", "gthread"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(request.param, APP) as running:
        yield running


def connect(server: Server, path: str, headers: dict[str, str] | None = None) -> RawClient:
    client = RawClient(server.port, timeout=30)
    assert client.handshake(path, headers) == 101, client.body
    return client


def text_of(client: RawClient) -> str:
    _fin, _rsv1, opcode, payload = client.read_frame()
    assert opcode == TEXT, (opcode, payload)
    return payload.decode()


def worker_pid(server: Server) -> int:
    with connect(server, "/ws/sizes") as client:
        client.send_frame(TEXT, b"pid")
        pid = int(text_of(client))
        client.send_close()
        client.read_close()
    return pid


def status(pid: int, field: str) -> int:
    """A size in /proc/<pid>/status, in bytes (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


class PeakMemory:
    """How far a process's resident size rose above where it was, during a block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.growth = 0

    def __enter__(self) -> PeakMemory:
        # Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) to the current one.
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.before = status(self.pid, "VmRSS")
        assert status(self.pid, "VmHWM") <= self.before + MiB
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.growth = status(self.pid, "VmHWM") - self.before


def send_in_background(client: RawClient, data: bytes) -> threading.Thread:
    """Write ``data`` from a thread; the server may close before it is all written (a hostile client never reads)."""

    def send() -> None:
        with contextlib.suppress(OSError):
            client.sock.sendall(data)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def outcome(client: RawClient) -> tuple[str, int | None]:
    """What the client got in the end: ("message", its length) or ("close", its code)."""
    while True:
        _fin, _rsv1, opcode, payload = client.read_frame()
        if opcode == CLOSE:
            return "close", struct.unpack("!H", payload[:2])[0]
        if opcode == TEXT and payload.startswith(b"len:"):
            return "message", int(payload[4:])


def still_serves(server: Server) -> None:
    with connect(server, "/ws/sizes") as client:
        client.send_frame(TEXT, b"still there?")
        assert text_of(client) == "len:12"
        client.send_close()
        assert client.read_close()[0] == 1000


# A message costs what it weighs, however it is cut.


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("piece", "count", "bound"),
    [(b"ab", 1_000_000, 40 * MiB), (b"", 4_000_000, 24 * MiB)],
    ids=["a million two-byte fragments", "four million empty fragments"],
)
def test_a_flood_of_fragments_costs_the_worker_little_and_ends_in_a_message_or_a_1009(
    server: Server, piece: bytes, count: int, bound: int
) -> None:
    pid = worker_pid(server)
    client = connect(server, "/ws/sizes")
    stream = frame(BINARY, piece, fin=False) + frame(CONTINUATION, piece, fin=False) * (count - 2)
    stream += frame(CONTINUATION, piece)
    with client, PeakMemory(pid) as memory:
        sender = send_in_background(client, stream)
        got = outcome(client)
        sender.join(60)
    # Either outcome would be sound; at 16 bytes a continuation frame beyond
    # its payload, the 16 MiB limit is reached long before the end: a 1009.
    assert got == ("close", 1009)
    assert memory.growth < bound, f"the worker grew by {memory.growth / MiB:.1f} MiB"
    still_serves(server)


# With MAX_MESSAGE_RATE, every frame counts.


@pytest.mark.parametrize(
    "burst",
    [
        frame(TEXT, b"a", fin=False) + frame(CONTINUATION, b"b", fin=False) * 300,
        frame(PING, b"p") * 300,
    ],
    ids=["300 continuation frames", "300 pings"],
)
def test_a_burst_of_frames_over_max_message_rate_gets_1008(server: Server, burst: bytes) -> None:
    with connect(server, "/ws/rate") as client:
        started = time.monotonic()
        client.send(burst)
        assert client.read_close()[0] == 1008  # Pongs may come before it
        assert time.monotonic() - started < 5
        client.send_close()
    still_serves(server)


# A message, then a frame header too large, in one write.


def test_a_message_then_an_oversized_header_in_one_write_gets_1009_at_once(server: Server) -> None:
    with connect(server, "/ws/sizes") as client:
        client.sock.settimeout(3)  # nothing more is sent: the Close must come by itself
        started = time.monotonic()
        client.send(frame(TEXT, b"hello") + frame(BINARY, b"", length=2 * MiB)[:14])
        # The message goes to on_receive, but its answer may not follow our Close (RFC 6455 §5.5.1).
        assert client.read_close()[0] == 1009
        assert time.monotonic() - started < 3


# MAX_FRAME_SIZE = None: the message limit bounds every frame.


def test_a_compressed_frame_announcing_2_to_the_62_gets_1009_and_the_worker_serves_on(server: Server) -> None:
    client = connect(server, "/ws/unbounded", {"Sec-WebSocket-Extensions": "permessage-deflate"})
    with client:
        assert client.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        client.sock.settimeout(5)
        started = time.monotonic()
        client.send(frame(BINARY, b"", rsv1=True, length=1 << 62)[:14] + b"\x00" * 1000)
        assert client.read_close()[0] == 1009
        assert time.monotonic() - started < 5
    still_serves(server)


def test_frames_announced_large_and_sent_small_cost_what_was_sent(server: Server) -> None:
    # 16 MiB announced (MAX_MESSAGE_SIZE, so accepted) and 64 KiB sent, on each of 40 connections:
    # the worker holds what arrived, not what was announced (640 MiB).
    pid = worker_pid(server)
    clients = []
    try:
        with PeakMemory(pid) as memory:
            for _ in range(40):
                client = connect(server, "/ws/unbounded")
                client.send(frame(BINARY, b"", length=16 * MiB)[:14] + b"\x00" * (64 * 1024))
                clients.append(client)
            still_serves(server)  # and every connection above has been read by now, or soon after
            time.sleep(0.5)
        assert memory.growth < 40 * MiB, f"the worker grew by {memory.growth / MiB:.1f} MiB"
    finally:
        for client in clients:
            client.sock.close()


# Our Close, from another thread, while a large frame is being read into place.


class Streamer:
    """A client that streams large frames until the server's Close, then closes as RFC 6455 §7.1.1 says."""

    FRAME = frame(BINARY, b"\xa5" * (4 * MiB))

    def __init__(self, server: Server) -> None:
        self.client = connect(server, "/ws/sink")
        self.client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        self.close_seen = threading.Event()
        self.closed_at: float | None = None  # when the server's Close arrived
        self.ended_at: float | None = None  # when TCP ended after our Close
        self.code: int | None = None
        self.sender = threading.Thread(target=self._send, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.sender.start()
        self.reader.start()

    def _send(self) -> None:
        sock = self.client.sock
        with contextlib.suppress(OSError):
            while not self.close_seen.is_set():
                sock.sendall(self.FRAME)  # whole frames only: a Close may not cut one
            sock.sendall(close_frame(1001))

    def _read(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.code = self.client.read_close()[0]
            self.closed_at = time.monotonic()
            self.close_seen.set()
            self.client.read_to_eof()
            self.ended_at = time.monotonic()

    def close(self) -> None:
        self.close_seen.set()
        self.client.sock.close()


@pytest.mark.timeout(60)
def test_close_all_while_clients_stream_large_frames_completes_every_closing_handshake_at_once(
    server: Server,
) -> None:
    streamers = [Streamer(server) for _ in range(8)]
    try:
        time.sleep(0.5)  # every client is streaming
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/close-all")
        response = connection.getresponse()
        assert (response.status, int(response.read())) == (200, 8)
        connection.close()
        for streamer in streamers:
            streamer.reader.join(10)
        for number, streamer in enumerate(streamers):
            assert streamer.code == 1001, f"client {number} got no Close"
            assert streamer.closed_at is not None and streamer.ended_at is not None, f"client {number} hangs"
            handshake = streamer.ended_at - streamer.closed_at
            assert handshake < 1, f"client {number}: the closing handshake took {handshake:.1f} s"
        assert "Exception in callback" not in server.log()
        assert "LocalProtocolError" not in server.log()
    finally:
        for streamer in streamers:
            streamer.close()
