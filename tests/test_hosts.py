"""The host contract (``hosts/base.py``), tested once against both hosts: a real ``Session`` over a socketpair.

Each test runs the same ``Session`` (no view, no server: an endpoint with the
settings, and a coroutine that serves the messages) on the gevent host, in
the calling greenlet (``serve_here``) and parked between runs (``start``,
as beyond a WSGI call: no greenlet while idle), and on the thread host (in
the calling thread, and in a thread started for it, as beyond a WSGI call;
plain sockets), with a raw client on the other end of a socketpair. What the engine
asks of a host (reading, writing whole frames, writing without waiting and
handing the rest over, the one deadline, running what may block, ending
TCP) is seen on the wire.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.socket
import greenlet
import pytest

from duck_ws_sync.engine import clock, groups, registry
from duck_ws_sync.engine.inbox import END
from duck_ws_sync.engine.session import Session
from duck_ws_sync.hosts.gevent import sessions as gevent_sessions
from duck_ws_sync.hosts.gevent.sessions import serve_here
from duck_ws_sync.hosts.threads import sessions as thread_sessions
from duck_ws_sync.protocol import Message, OpCode, writer
from tests.helpers import PING, PONG, TEXT, close_frame, frame, parse_server_frames

# The class a server's request thread is made of, whatever a test patches in ``threading``.
REQUEST_THREAD = threading.Thread

CLOSE = 0x8
MiB = 1024 * 1024


class Settings:
    """An endpoint: what a session reads of its view, and nothing else."""

    PING_INTERVAL: float | None = None
    PONG_TIMEOUT: float = 10
    MAX_BACKOFF: float = 45
    RECEIVE_TIMEOUT: float | None = None
    MAX_FRAME_SIZE: int | None = MiB
    MAX_MESSAGE_SIZE: int | None = 16 * MiB
    CLOSE_TIMEOUT: float = 2
    SEND_TIMEOUT: float | None = 5
    RECEIVE_QUEUE_SIZE = 16
    MAX_MESSAGE_RATE: float | None = None
    BROADCAST_BUFFER = MiB
    extensions: tuple[Any, ...] = ()
    subprotocol = None


class Upgrade:
    client_address = ("127.0.0.1", 4242)
    path = "/test"


class Served:
    """A session running on one host, and the client's end of its socketpair."""

    def __init__(self, host: str, settings: type[Settings], serve: Callable[[Session], Coroutine[Any, Any, None]]):
        self.host = host
        self.gevent = host.startswith("gevent")
        self.closed_runs = 0
        self.received: list[Message] = []
        self.session = Session(settings(), Upgrade(), self)
        self._serve = serve
        if host == "gevent":
            server_side, self.client = gevent.socket.socketpair()
            self._runner: Any = gevent.spawn(serve_here, self.session, server_side)
        elif host == "gevent-parked":
            server_side, self.client = gevent.socket.socketpair()
            self._ended = gevent.event.Event()
            gevent.spawn(gevent_sessions.start, self.session, server_side, b"", self._ended.set, False).join(5)
        elif host == "threads-own":  # a thread started for the session, which closes the socket
            server_side, self.client = self.socketpair()
            self._done = threading.Event()
            # As a request's thread would: ``start`` returns at once, or serves the session itself.
            REQUEST_THREAD(target=thread_sessions.start, args=(self.session, server_side, b"", self._done.set)).start()
        else:
            server_side, self.client = self.socketpair()
            self._runner = threading.Thread(
                target=thread_sessions.serve, args=(self.session, server_side, b"", server_side.close), daemon=True
            )
            self._runner.start()
        self.client.settimeout(5)
        self._data = b""

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        """The thread host's connection: (the server's end, the client's end)."""
        return socket.socketpair()

    # The session's hooks (``engine.session.Hooks``).

    def serve(self, session: Session) -> Coroutine[Any, Any, None]:
        return self._serve(session)

    async def closed(self, session: Session) -> None:
        self.closed_runs += 1

    def send(self, data: bytes) -> None:
        self.client.sendall(data)

    def frames(self, count: int) -> list[tuple[bool, bool, int, bytes]]:
        """The next ``count`` whole frames from the server (5 s at most)."""
        deadline = time.monotonic() + 5
        taken: list[tuple[bool, bool, int, bytes]] = []
        while True:
            while len(taken) < count and (size := _whole_frame_size(self._data)):
                taken += parse_server_frames(self._data[:size])
                self._data = self._data[size:]
            if len(taken) == count:
                return taken
            assert time.monotonic() < deadline, f"{count} frames expected, got {taken}"
            chunk = self.client.recv(65536)
            assert chunk, f"the server ended TCP after {taken}"
            self._data += chunk

    def end_of_stream(self) -> bytes:
        """Everything until the server ends TCP."""
        data = self._data
        while chunk := self.client.recv(65536):
            data += chunk
        return data

    def wait(self) -> None:
        """Wait until the session has ended (its ``closed`` run)."""
        if self.host == "gevent":
            self._runner.join(5)
            assert self._runner.dead
        elif self.host == "gevent-parked":
            assert self._ended.wait(5)
        elif self.host == "threads-own":
            assert self._done.wait(5)
        else:
            self._runner.join(5)
            assert not self._runner.is_alive()

    def sleep(self, seconds: float) -> None:
        (gevent.sleep if self.gevent else time.sleep)(seconds)


def _whole_frame_size(data: bytes) -> int:
    """The size of the server frame at the start of ``data``, 0 while it is not all there."""
    if len(data) < 2:
        return 0
    length, header = data[1] & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return 0
        (length,), header = struct.unpack_from("!H", data, 2), 4
    elif length == 127:
        if len(data) < 10:
            return 0
        (length,), header = struct.unpack_from("!Q", data, 2), 10
    return header + length if len(data) >= header + length else 0


async def echo(session: Session) -> None:
    while (message := await session.inbox.get()) is not END:
        session.send_message(message.data, message.opcode)
    session.answer()


@pytest.fixture(params=["gevent", "gevent-parked", "threads", "threads-own"])
def host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(host: str) -> Iterator[Callable[..., Served]]:
    running: list[Served] = []

    def start(settings: type[Settings] = Settings, handler: Any = echo) -> Served:
        served = Served(host, settings, handler)
        running.append(served)
        return served

    yield start
    for served in running:
        served.client.close()
        served.wait()


def test_a_message_is_read_delivered_and_answered(serve):
    served = serve()
    served.send(frame(TEXT, b"hello") + frame(OpCode.BINARY, b"\x00\x01"))
    assert served.frames(2) == [(True, False, TEXT, b"hello"), (True, False, OpCode.BINARY, b"\x00\x01")]
    assert served.session.connection.messages_received == 2


def test_a_large_frame_is_read_in_place_and_written_whole(serve):
    served = serve()
    payload = bytes(range(256)) * 1024  # 256 KiB: read straight into the payload, written in one frame
    served.send(frame(OpCode.BINARY, payload))
    assert served.frames(1) == [(True, False, OpCode.BINARY, payload)]


def test_the_closing_handshake_echoes_the_code_and_runs_closed_once(serve):
    served = serve()
    served.send(frame(TEXT, b"last") + close_frame(4000, b"bye"))
    assert served.frames(2) == [(True, False, TEXT, b"last"), (True, False, CLOSE, struct.pack("!H", 4000))]
    served.client.shutdown(socket.SHUT_WR)
    assert served.end_of_stream() == b""
    served.wait()
    assert served.closed_runs == 1
    assert registry.close_code(served.session.connection) == 4000


def test_the_heartbeat_pings_from_the_deadline_and_a_pong_keeps_the_connection(serve):
    class Beating(Settings):
        PING_INTERVAL = 0.1
        PONG_TIMEOUT = 1

    served = serve(Beating)
    first = served.frames(1)[0]
    assert first[2] == PING
    served.send(frame(PONG, first[3]))
    second = served.frames(1)[0]  # the next one, PING_INTERVAL after the Pong
    assert second[2] == PING and second[3] != first[3]
    served.send(frame(TEXT, b"still here"))
    assert served.frames(1) == [(True, False, TEXT, b"still here")]


def test_heartbeat_pings_go_out_on_a_grid_so_those_of_many_connections_go_together(serve):
    class Beating(Settings):
        PING_INTERVAL = 1.6  # a grid of 0.1 s (HEARTBEAT_GRID)
        PONG_TIMEOUT = 5

    grid = clock.HEARTBEAT_GRID
    connections = []
    for delay in (0.0, 0.013, 0.029, 0.047, 0.071):  # opened off the grid, apart
        time.sleep(delay)
        connections.append(serve(Beating))
    # Each first Ping goes out just after a point of the grid of time.monotonic():
    # its deadline is on the grid, and a deadline fires at most a few ms late.
    phases = []
    for served in connections:
        assert served.frames(1)[0][2] == PING
        phases.append(time.monotonic() % grid)
    assert all(phase < 0.04 for phase in phases), phases


def test_unanswered_pings_close_with_1001(serve):
    class Beating(Settings):
        PING_INTERVAL = 0.05
        PONG_TIMEOUT = 0.05
        MAX_BACKOFF = 0.05

    served = serve(Beating)
    frames = served.frames(4)
    assert [opcode for _, _, opcode, _ in frames] == [PING, PING, PING, CLOSE]
    assert frames[3][3] == struct.pack("!H", 1001) + b"ping timeout"


def test_the_receive_timeout_closes_with_1001_and_the_closing_deadline_drops_tcp(serve):
    class Quiet(Settings):
        RECEIVE_TIMEOUT = 0.2
        CLOSE_TIMEOUT = 0.2

    served = serve(Quiet)
    started = time.monotonic()
    assert served.frames(1) == [(True, False, CLOSE, struct.pack("!H", 1001) + b"receive timeout")]
    assert served.end_of_stream() == b""  # no answer from us: TCP ends at CLOSE_TIMEOUT
    assert time.monotonic() - started < 3
    served.wait()
    assert served.closed_runs == 1


def test_a_send_from_another_thread_or_greenlet_is_written_whole(serve, host):
    served = serve()
    served.send(frame(TEXT, b"open"))
    served.frames(1)
    session = served.session
    sender: Any
    if served.gevent:
        sender = gevent.spawn(session.send_message, b"from elsewhere", OpCode.TEXT)
        sender.join(5)
    else:
        sender = threading.Thread(target=session.send_message, args=(b"from elsewhere", OpCode.TEXT))
        sender.start()
        sender.join(5)
    assert served.frames(1) == [(True, False, TEXT, b"from elsewhere")]


@pytest.mark.parametrize("framing", ["native", "python"])
def test_short_messages_sent_from_many_threads_or_greenlets_at_once_arrive_whole_and_counted(
    serve, host, framing, monkeypatch
):
    if framing == "python":
        monkeypatch.setattr(writer, "_native_text_frame", None)
    # Threads switch as often as they can: the senders interleave as much as they may.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _send_from_many(serve)
    finally:
        sys.setswitchinterval(switch_interval)


def _send_from_many(serve: Callable[..., Served]) -> None:
    served = serve()
    served.send(frame(TEXT, b"open"))
    served.frames(1)
    session = served.session
    senders, count = 8, 200

    def send_all(sender: int) -> None:
        for number in range(count):
            assert session.send_text(f"{sender}:{number}", None)

    workers: list[Any]
    if served.gevent:
        workers = [gevent.spawn(send_all, sender) for sender in range(senders)]
    else:
        workers = [threading.Thread(target=send_all, args=(sender,)) for sender in range(senders)]
        for worker in workers:
            worker.start()
    frames = served.frames(senders * count)  # read while they send: the socket's buffer is small
    if served.gevent:
        gevent.joinall(workers, timeout=10, raise_error=True)
    else:
        for worker in workers:
            worker.join(10)
    seen: dict[int, list[int]] = {sender: [] for sender in range(senders)}
    for fin, rsv1, opcode, data in frames:
        assert (fin, rsv1, opcode) == (True, False, TEXT)
        sender, number = data.decode().split(":")
        seen[int(sender)].append(int(number))
    assert all(numbers == list(range(count)) for numbers in seen.values())
    connection = session.connection
    assert connection.messages_sent == senders * count + 1
    assert connection.frames_sent == senders * count + 1


def test_a_broadcast_to_a_slow_reader_is_handed_over_and_arrives_in_order(serve):
    class Roomy(Settings):
        BROADCAST_BUFFER = 8 * MiB

    served = serve(Roomy)
    served.send(frame(TEXT, b"open"))
    served.frames(1)
    groups.join(served.session, "contract")
    try:
        payload = b"x" * (256 * 1024)
        for number in range(6):  # more than the socket takes at once: the rest is finished by the host
            assert groups.deliver("contract", payload + str(number).encode()) == 1
        frames = served.frames(6)
        assert [data[-1:] for _, _, _, data in frames] == [b"0", b"1", b"2", b"3", b"4", b"5"]
        assert all(len(data) == len(payload) + 1 for _, _, _, data in frames)
    finally:
        groups.leave(served.session, "contract")


def test_close_all_closes_every_open_session_with_1001(serve):
    served = serve()
    served.send(frame(TEXT, b"open"))
    served.frames(1)
    assert registry.close_all(1001, "going away") >= 1
    assert served.frames(1) == [(True, False, CLOSE, struct.pack("!H", 1001) + b"going away")]
    served.send(close_frame(1001))
    assert served.end_of_stream() == b""
    served.wait()
    assert served.session not in registry.live()


def test_an_abort_ends_the_session_with_1006(serve):
    served = serve()
    served.send(frame(TEXT, b"open"))
    served.frames(1)
    served.session.abort()
    assert served.end_of_stream() == b""
    served.wait()
    assert served.closed_runs == 1
    assert registry.close_code(served.session.connection) == 1006


def test_over_the_rate_limit_is_1008(serve):
    class Limited(Settings):
        MAX_MESSAGE_RATE = 5

    served = serve(Limited)
    served.send(frame(TEXT, b"within"))
    assert served.frames(1) == [(True, False, TEXT, b"within")]
    served.send(b"".join(frame(TEXT, b"m") for _ in range(50)))  # one read: every frame of it is dropped
    assert served.frames(1) == [(True, False, CLOSE, struct.pack("!H", 1008) + b"Message rate limit exceeded")]


def test_a_session_behind_stops_reading_until_the_view_catches_up(serve):
    class Small(Settings):
        RECEIVE_QUEUE_SIZE = 1

    release: list[bool] = []

    async def slow(session: Session) -> None:
        while (message := await session.inbox.get()) is not END:
            while not release:
                await asyncio.sleep(0.01)
            session.send_message(message.data, message.opcode)
        session.answer()

    served = serve(Small, slow)
    served.send(b"".join(frame(TEXT, str(number).encode()) for number in range(20)))
    served.sleep(0.2)
    assert served.session.inbox.full  # the reader paused: TCP holds the rest
    release.append(True)
    assert [data for _, _, _, data in served.frames(20)] == [str(number).encode() for number in range(20)]


def test_with_no_thread_to_spare_a_session_is_served_in_the_calling_thread(monkeypatch, caplog):
    class NoThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(thread_sessions.threading, "Thread", NoThread)
    with caplog.at_level("WARNING", logger="duck_ws_sync"):
        served = Served("threads-own", Settings, echo)
        served.send(frame(TEXT, b"served all the same"))
        assert served.frames(1) == [(True, False, TEXT, b"served all the same")]
        served.client.close()
        served.wait()
    assert "no thread for the WebSocket" in caplog.text


def test_the_thread_host_imports_nothing_of_gevent():
    code = (
        "import sys; sys.modules['gevent'] = None; "
        "import duck_ws_sync.hosts.threads, duck_ws_sync.hosts.threads.sessions, duck_ws_sync.views; "
        "import duck_ws_sync.middleware, duck_ws_sync.brokers; "
        "loaded = [name for name, module in sys.modules.items() "
        "if module and name.split('.')[0] in ('gevent', 'greenlet')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def live_greenlets() -> int:
    return sum(1 for item in gc.get_objects() if isinstance(item, greenlet.greenlet) and not item.dead)


def test_idle_connections_on_gevent_hold_no_greenlet_and_wake_for_their_socket_and_for_callbacks():
    gevent.sleep(0)  # the hub exists
    before = live_greenlets()
    served = [Served("gevent-parked", Settings, echo) for _ in range(20)]
    try:
        for index, one in enumerate(served):
            one.send(frame(TEXT, b"%d" % index))
            assert one.frames(1) == [(True, False, TEXT, b"%d" % index)]
        gevent.sleep(0.05)
        # Twenty idle connections: their loops are parked, one runner at most waits for work.
        assert live_greenlets() - before <= 1
        assert all(one.session.runner.loop._selector.waiting for one in served)
        # A callback scheduled from elsewhere runs the parked loop, as a read does.
        done = gevent.event.Event()
        served[3].session.loop.call_soon(done.set)
        assert done.wait(5)
        served[7].send(frame(TEXT, b"again"))
        assert served[7].frames(1) == [(True, False, TEXT, b"again")]
    finally:
        for one in served:
            one.client.close()
            one.wait()
