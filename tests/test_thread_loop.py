"""The thread host's loop and transport in-process: a real ``Session`` over a socketpair, served in an OS thread.

The connection's thread waits in ``poll`` on its socket and one eventfd
(``hosts/threads/loop.py``, ``wakeup.py``). What that must get right is
seen from outside here, with a raw client on the other end: work given by
another thread wakes the waiting thread, at any moment (no wake-up lost);
a Close sent from another thread gets its closing deadline on time from a
client that never answers; sends from several threads and the reads of the
connection's own thread never mix frames; a loop keeps no epoll descriptor
and one eventfd, closed with it, and a late waker writes to nothing; hooks
may still use asyncio's own sockets; TLS is read whole.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import math
import os
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import trustme

from duck_ws_sync.engine.inbox import END
from duck_ws_sync.engine.session import Session
from duck_ws_sync.hosts.threads.loop import ThreadEventLoop
from duck_ws_sync.hosts.threads.wakeup import Wakeup
from duck_ws_sync.protocol import OpCode
from tests import test_hosts
from tests.helpers import CLOSE, TEXT, frame
from tests.test_hosts import Settings, echo

MiB = 1024 * 1024
ON_LINUX = os.path.isdir("/proc/self/fd")


class Served(test_hosts.Served):
    """A session served by ``thread_sessions.serve`` in a thread of its own, over TLS with ``tls``."""

    def __init__(
        self,
        settings: type[Settings],
        handler: Callable[[Session], Coroutine[Any, Any, None]],
        tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    ) -> None:
        self._tls = tls
        super().__init__("threads", settings, handler)

    def socketpair(self) -> tuple[socket.socket, socket.socket]:
        server_side, client = super().socketpair()
        if self._tls is None:
            return server_side, client
        return _tls_pair(server_side, client, *self._tls)

    @property
    def thread(self) -> threading.Thread:
        return self._runner  # type: ignore[no-any-return]

    @property
    def loop(self) -> ThreadEventLoop:
        deadline = time.monotonic() + 5
        while self.session.loop is None:  # the thread is starting the session
            assert time.monotonic() < deadline
            time.sleep(0.001)
        return self.session.loop  # type: ignore[no-any-return]

    def idle(self) -> None:
        """Echo once, then give the thread time to go back to waiting on its socket."""
        self.send(frame(TEXT, b"are you there"))
        assert self.frames(1) == [(True, False, TEXT, b"are you there")]
        time.sleep(0.05)


def _tls_pair(
    server_side: socket.socket, client: socket.socket, server: ssl.SSLContext, client_context: ssl.SSLContext
) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """Both ends of a socketpair wrapped in TLS, their handshake done."""
    wrapped = server.wrap_socket(server_side, server_side=True, do_handshake_on_connect=False)
    handshake = threading.Thread(target=wrapped.do_handshake)
    handshake.start()
    client_end = client_context.wrap_socket(client, server_hostname="localhost")
    handshake.join(5)
    return wrapped, client_end


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    running: list[Served] = []

    def start(
        settings: type[Settings] = Settings,
        handler: Callable[[Session], Coroutine[Any, Any, None]] = echo,
        tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    ) -> Served:
        served = Served(settings, handler, tls)
        running.append(served)
        return served

    yield start
    for served in running:
        served.client.close()
        served.wait()


class Waiting(Settings):
    """A heartbeat far away: the idle thread waits in ``poll`` with a long timeout."""

    PING_INTERVAL = 60


# Waking a thread that waits on its socket.


def test_call_soon_threadsafe_wakes_a_connection_waiting_on_its_socket(serve):
    served = serve(Waiting)
    served.idle()
    ran_in: list[int] = []
    done = threading.Event()
    started = time.monotonic()
    served.loop.call_soon_threadsafe(lambda: (ran_in.append(threading.get_ident()), done.set()))
    assert done.wait(2)
    assert time.monotonic() - started < 0.5
    assert ran_in == [served.thread.ident]


def test_run_coroutine_threadsafe_runs_on_the_connection_loop_and_can_send(serve):
    served = serve(Waiting)
    served.idle()
    loop = served.loop

    async def greet() -> str:
        assert asyncio.get_running_loop() is loop
        await asyncio.sleep(0.01)  # a timer of the loop, then the session's deadline again
        served.session.send_message(b"from another thread's coroutine", OpCode.TEXT)
        return "sent"

    assert asyncio.run_coroutine_threadsafe(greet(), loop).result(2) == "sent"
    assert served.frames(1) == [(True, False, TEXT, b"from another thread's coroutine")]
    served.idle()  # and the connection reads on


def test_no_wake_up_is_lost_whatever_the_moment(serve):
    # Each coroutine is queued from here at a random moment of the thread's
    # iteration (waiting, about to wait, reading a message, just woken):
    # a lost wake-up would leave it waiting for the 60 s heartbeat (or, in
    # the first half, for the client's next message).
    async def swallow(session: Session) -> None:  # reads, never answers: the client need not read
        while await session.inbox.get() is not END:
            pass
        session.answer()

    served = serve(Waiting, swallow)
    loop = served.loop
    time.sleep(0.05)
    stop = threading.Event()

    def chatter() -> None:  # reads for the connection's thread to do meanwhile
        number = 0
        while not stop.is_set():
            served.send(frame(TEXT, b"%d" % number))
            number += 1
            time.sleep(random.random() / 2000)

    async def nothing() -> int:
        return threading.get_ident()

    client = threading.Thread(target=chatter)
    client.start()
    try:
        for number in range(4000):
            if number == 2000:  # then with no message to wake the thread instead
                stop.set()
                client.join(5)
            if number % 4 == 0:
                time.sleep(random.random() / 5000)
            assert asyncio.run_coroutine_threadsafe(nothing(), loop).result(2) == served.thread.ident
    finally:
        stop.set()
        client.join(5)


def test_a_loop_without_a_connection_is_woken_at_any_moment():
    # The loop of ``authorize`` and of plain use: it waits on its wake-up alone.
    loop = ThreadEventLoop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        for number in range(3000):
            done = threading.Event()
            if number % 3 == 0:
                time.sleep(random.random() / 5000)
            loop.call_soon_threadsafe(done.set)
            assert done.wait(2), f"wake-up {number} was lost"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


# A deadline armed from another thread.


def test_a_close_from_another_thread_ends_tcp_at_the_closing_deadline_when_the_client_never_answers(serve):
    class Quick(Waiting):
        CLOSE_TIMEOUT = 0.3

    served = serve(Quick)
    served.idle()  # the thread waits on its socket until the heartbeat, 60 s away
    started = time.monotonic()
    closer = threading.Thread(target=served.session.close, args=(4000, "from elsewhere"))
    closer.start()
    closer.join(2)
    assert served.frames(1) == [(True, False, CLOSE, struct.pack("!H", 4000) + b"from elsewhere")]
    assert served.end_of_stream() == b""  # we never answer: TCP ends at CLOSE_TIMEOUT
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5, elapsed
    served.wait()
    assert served.closed_runs == 1


# Several threads at once.


def test_sends_from_other_threads_while_the_connection_reads_never_mix_frames(serve):
    served = serve(Waiting)
    served.idle()
    payloads = {f"t{sender}-{number}".encode() * 50 for sender in range(4) for number in range(100)}

    def send_100(sender: int) -> None:
        for number in range(100):
            assert served.session.send_message(f"t{sender}-{number}".encode() * 50, OpCode.TEXT)

    echoed = [b"client %d" % number for number in range(300)]

    def client_sends() -> None:
        for message in echoed:
            served.send(frame(TEXT, message))

    threads = [threading.Thread(target=send_100, args=(sender,)) for sender in range(4)]
    threads.append(threading.Thread(target=client_sends))
    for thread in threads:
        thread.start()
    frames = served.frames(700)  # read meanwhile: no side waits for a full socket
    for thread in threads:
        thread.join(5)
    assert all(fin and opcode == TEXT for fin, _, opcode, _ in frames)
    data = [payload for *_, payload in frames]
    assert [payload for payload in data if payload.startswith(b"client")] == echoed  # in order
    assert {payload for payload in data if not payload.startswith(b"client")} == payloads


# Descriptors.


def fd_kinds() -> collections.Counter[str]:
    """The process's open descriptors by kind: ``socket``, ``anon_inode:[eventpoll]``, ``anon_inode:[eventfd]``..."""
    kinds: collections.Counter[str] = collections.Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed since
        kinds[target.split(":[")[0] if target.startswith("socket:") else target] += 1
    return kinds


def settled_fd_kinds() -> collections.Counter[str]:
    """The descriptors once what earlier tests left is closed (the same twice in a row)."""
    gc.collect()
    last = fd_kinds()
    for _ in range(50):
        time.sleep(0.05)
        now = fd_kinds()
        if now == last:
            return now
        last = now
    raise AssertionError(f"the descriptors did not settle: {last}")


@pytest.mark.skipif(not ON_LINUX, reason="reads /proc/self/fd")
def test_a_connection_keeps_no_epoll_descriptor_and_one_eventfd(serve):
    before = settled_fd_kinds()
    connections = [serve(Waiting) for _ in range(8)]
    for served in connections:
        served.idle()
    during = fd_kinds()
    assert during["anon_inode:[eventpoll]"] == before["anon_inode:[eventpoll]"]
    assert during["anon_inode:[eventfd]"] - before["anon_inode:[eventfd]"] == 8
    assert during["socket"] - before["socket"] <= 16  # the socketpairs: no socket pair of the loops' own
    for served in connections:
        served.client.close()
        served.wait()
    assert settled_fd_kinds()["anon_inode:[eventfd]"] == before["anon_inode:[eventfd]"]  # closed with their loops


@pytest.mark.skipif(not ON_LINUX, reason="reads /proc/self/fd")
def test_a_late_waker_writes_nothing_once_the_wake_up_is_closed():
    # A thread that queued its callback just before the loop closed wakes it
    # just after: the descriptor's number may belong to another file by then.
    wakeup = Wakeup()
    number = wakeup.fd
    wakeup.close()
    reader, writer = os.pipe()  # most likely given the number just freed
    try:
        wakeup.waiting = True
        wakeup.wake()
        os.set_blocking(reader, False)
        with pytest.raises(BlockingIOError):
            os.read(reader, 1)
        if writer == number:
            assert os.fstat(writer)  # still the pipe's
    finally:
        os.close(reader)
        os.close(writer)
    loop = ThreadEventLoop()
    loop.close()
    loop._write_to_self()  # after close: nothing, no error
    with pytest.raises(RuntimeError):
        loop.call_soon_threadsafe(print)


# The session's deadline, served from the loop's wait.


class Reader:
    """An ``InlineReader`` on one end of a socketpair: it counts its reads and deadlines, and takes no bytes."""

    def __init__(self, wake_in: float, readable: bool, read_moves_deadline: bool = False) -> None:
        self._ends = socket.socketpair()
        if readable:
            self._ends[1].send(b"!")  # never read: the socket stays readable
        self.fd = self._ends[0].fileno()
        self.wake_at = time.monotonic() + wake_in
        self.more = False
        self.reads = 0
        self.deadlines: list[float] = []
        self._read_moves_deadline = read_moves_deadline

    def read_inline(self) -> None:
        self.reads += 1
        if self._read_moves_deadline:
            self.wake_at = time.monotonic() + 60

    def on_deadline(self) -> None:
        self.deadlines.append(time.monotonic())
        self.wake_at = math.inf

    def close(self) -> None:
        for end in self._ends:
            end.close()


def _serve_for(reader: Reader, seconds: float, timers: bool) -> None:
    """Run a connection's loop serving ``reader`` for ``seconds``: with a timer of the loop's, or with none."""
    loop = ThreadEventLoop()
    loop.attach_reader(reader)  # type: ignore[arg-type]
    loop.watch_reader(True)
    if timers:
        loop.call_later(seconds, loop.stop)
    else:  # the loop waits with no timeout of its own: only the deadline ends the wait
        threading.Timer(seconds, loop.call_soon_threadsafe, (loop.stop,)).start()
    try:
        loop.run_forever()
    finally:
        loop.close()
        reader.close()


@pytest.mark.parametrize("timers", [True, False])
def test_a_wait_that_runs_out_at_the_deadline_serves_it_then(timers):
    reader = Reader(0.1, readable=False)
    wake_at = reader.wake_at
    _serve_for(reader, 0.4, timers)
    assert reader.reads == 0
    assert len(reader.deadlines) == 1
    assert wake_at <= reader.deadlines[0] < wake_at + 0.05  # never early: heartbeats keep to their grid


def test_a_socket_that_is_always_readable_does_not_hold_the_deadline_off():
    # A client that never lets the socket run dry: every wait ends at once with a read.
    reader = Reader(0.1, readable=True)
    wake_at = reader.wake_at
    _serve_for(reader, 0.4, timers=True)
    assert reader.reads > 100
    assert len(reader.deadlines) == 1
    assert wake_at - 0.002 <= reader.deadlines[0] < wake_at + 0.05


def test_a_deadline_that_a_read_moves_later_is_not_served():
    reader = Reader(-1.0, readable=True, read_moves_deadline=True)  # come already, but a read comes first
    _serve_for(reader, 0.2, timers=True)
    assert reader.reads >= 1
    assert reader.deadlines == []


# What hooks may still do on the connection's loop.


def test_hooks_can_use_asyncio_sockets_on_the_connection_loop(serve):
    upper = socket.create_server(("127.0.0.1", 0))

    def serve_upper() -> None:  # a plain TCP service that answers each line in capitals
        connection, _ = upper.accept()
        with connection, connection.makefile("rb") as lines:
            for line in lines:
                connection.sendall(line.upper())

    service = threading.Thread(target=serve_upper, daemon=True)
    service.start()

    async def through_the_service(session: Session) -> None:
        reader, writer = await asyncio.open_connection(*upper.getsockname())
        while (message := await session.inbox.get()) is not END:
            writer.write(message.data + b"\n")
            await writer.drain()
            session.send_message((await reader.readline()).rstrip(b"\n"), OpCode.TEXT)
        writer.close()
        await writer.wait_closed()
        session.answer()

    try:
        served = serve(Waiting, through_the_service)
        for word in (b"first", b"second"):
            served.send(frame(TEXT, word))
            assert served.frames(1) == [(True, False, TEXT, word.upper())]
    finally:
        upper.close()


# TLS.


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_tls_bursts_and_a_large_frame_are_read_whole(serve, tls_contexts):
    served = serve(Waiting, tls=tls_contexts)
    burst = [b"%d" % number * (number % 7 + 1) for number in range(300)]
    served.send(b"".join(frame(TEXT, message) for message in burst))  # many frames in a few TLS records
    assert [payload for *_, payload in served.frames(300)] == burst
    large = os.urandom(3 * 256 * 1024 + 17)  # records read into the payload in place, then what is left
    served.send(frame(OpCode.BINARY, large))
    assert served.frames(1) == [(True, False, OpCode.BINARY, large)]
    served.idle()
