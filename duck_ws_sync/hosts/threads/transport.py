"""One WebSocket connection served by an OS thread of its own: reading, writing and the clock.

The connection's thread runs the view's asyncio event loop (``loop.py``),
whose one blocking point is a ``poll`` on the client's socket and the
loop's wake-up, with the session's deadline as its timeout. An idle
connection costs its thread, the session and the loop: no buffer, no
descriptor but the socket and one eventfd.

- reading: when ``poll`` finds the socket readable, the loop's thread
  reads it there (``read_inline``, between two iterations of the loop) into
  a receive buffer lent by a pool that every thread shares, and gives the
  read to the session, which hands a message straight to the view's
  coroutine. While the session is behind (the inbox is full) the socket is
  left out of the ``poll``, and TCP pushes back on the client;
- writing, from any thread: the view's own, another connection's, a
  background thread, a plain WSGI view. The protocol core is not
  thread-safe, so every call into it holds the core lock; the write lock,
  taken first and held until the frames are on the wire, keeps frames
  whole and in the core's order. A send waits for a client that does not
  read for at most SEND_TIMEOUT, then drops TCP: a half-written frame
  cannot be followed by anything;
- the session's one deadline (heartbeat, receive timeout, closing
  handshake) is ``wake_at``, the timeout of the loop's ``poll``. Armed from
  another thread (its Close starts the closing handshake), the loop's
  thread is woken to arm it itself;
- TLS: the ``ssl`` socket object may hold decrypted bytes that ``poll``
  cannot see, so a read that leaves some (``pending()``) is followed by
  another before the loop waits (``more``); a record that would block must
  be sent again as it was, so TLS is never written without waiting
  (``can_write_now``).

The core is used by several threads (``shared_core``), so a read is parsed
under the core lock and its messages delivered with the lock released
(``Session.receive_message``: a read that is one whole message takes one
call into C under the lock), and frames are asked of the core under it
(``Session.send``; a short text message's frame too, which the sending
thread then writes at once: ``direct``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from ..base import SessionSide
from ..chunks import send_what_fits
from .loop import ThreadEventLoop

__all__ = ["ThreadTransport"]

logger = logging.getLogger("duck_ws_sync")

# The size of a receive buffer (a frame's payload of 64 KiB or more is read
# straight into place, ``ServerConnection.receive_buffer``).
RECEIVE_SIZE = 64 * 1024
# Buffers kept for the next reads once returned; more are made when more
# threads read at once, and dropped when they come back.
SPARE_BUFFERS = 8
# What a non-blocking socket raises when it would block (TLS: when a record is incomplete or cannot go out yet).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_spare_buffers: list[memoryview] = []


def _take_buffer() -> memoryview:
    """A receive buffer for one read (``read_inline`` says why one is lent, not kept)."""
    try:
        return _spare_buffers.pop()
    except IndexError:
        return memoryview(bytearray(RECEIVE_SIZE))


def _give_back(buffer: memoryview) -> None:
    if len(_spare_buffers) < SPARE_BUFFERS:
        _spare_buffers.append(buffer)


class ThreadTransport:
    """A session's I/O and clock, served by the thread of the connection's event loop.

    Args:
        sock: The client's socket, after the 101 response was written.
        initial_data: Bytes the server read past the upgrade request.

    Attributes:
        fd: The socket's descriptor, which the loop polls.
        wake_at: The session's deadline (``arm``), which the loop's wait ends at.
        more: The last read may have left bytes to read (it filled its
            buffer, or TLS keeps decrypted bytes that ``poll`` cannot see).
    """

    __slots__ = (
        "_between_frames",
        "_gather",
        "_initial_data",
        "_loop",
        "_loop_thread",
        "_reading",
        "_tls",
        "core_lock",
        "fd",
        "more",
        "session",
        "socket",
        "wake_at",
        "write_lock",
    )

    # Other threads send too: the short text path frames under the core lock, then writes at once.
    shared_core = True
    direct = True

    def __init__(self, sock: socket.socket, initial_data: bytes = b"") -> None:
        self.socket = sock
        self.fd = sock.fileno()
        self._initial_data = initial_data
        self.core_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self._reading = False  # the loop polls the socket
        self._loop: ThreadEventLoop | None = None
        self._loop_thread = 0
        self.wake_at = math.inf
        self.more = False
        self._between_frames = False  # the last read ended with a frame (``read_inline``)
        # TLS: decrypted bytes may wait in the socket object, unseen by
        # ``poll``, and records are written one send() at a time.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._gather = not self._tls
        sock.setblocking(False)

    def start(self, session: SessionSide, loop: ThreadEventLoop) -> None:
        """Start reading for ``session``; from the loop's thread, before the loop runs."""
        self.session = session
        self._loop = loop
        self._loop_thread = threading.get_ident()
        loop.attach_reader(self)
        session.inbox.on_space = self._resume_reading
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            session.receive(data, direct=True)
        self._resume_reading()

    def stop(self) -> None:
        """Stop reading (the session is over)."""
        self._pause_reading()

    # Writing, from any thread.

    def write_one(self, chunk: bytes | memoryview) -> bool:
        """Write one chunk: one send() when the socket takes it at once; the caller holds the write lock."""
        try:
            sent = self.socket.send(chunk)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            return self._lost(exc)
        return sent == len(chunk) or self._write_rest([memoryview(chunk)[sent:]])

    def write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting, in one system call; return what did not fit."""
        return send_what_fits(self.socket, chunks, self._gather, _WOULD_BLOCK)

    def write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT in all; the caller holds the write lock."""
        if len(chunks) == 1:
            return self.write_one(chunks[0])
        try:
            chunks = self.write_what_fits(chunks)
        except OSError as exc:
            return self._lost(exc)
        return not chunks or self._write_rest(chunks)

    def _write_rest(self, chunks: list[Any]) -> bool:
        """Write what the socket did not take at once, as the client reads it."""
        try:
            self._write_waiting(chunks)
        except TimeoutError:
            logger.info("send timed out after %s s: dropping the connection", self.session.limits.send_timeout)
            self.session.abort()
            return False
        except OSError as exc:
            return self._lost(exc)
        return True

    def _lost(self, exc: OSError) -> bool:
        logger.debug("connection lost while sending: %s", exc)
        self.session.abort()
        return False

    def _write_waiting(self, chunks: list[Any]) -> None:
        """Write the rest as the client takes it; TimeoutError after SEND_TIMEOUT."""
        deadline = time.monotonic() + self.session.limits.send_timeout
        while chunks:
            _wait_writable(self.socket, deadline)
            chunks = self.write_what_fits(chunks)

    def can_write_now(self) -> bool:
        return not self._tls  # a TLS record that would block must be sent again as it was

    def hand_over(self, chunks: list[Any]) -> bool:
        # The connection's own thread finishes the frames, holding the write lock until they are out.
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(self.session.finish_writing, chunks)
        except RuntimeError:  # the loop has closed: the session is over
            return False
        return True

    # Reading, in the loop's thread, from its wait (``InlineReader``).

    def read_inline(self) -> None:
        """Read what the socket has, without blocking, and give it to the session.

        The buffer is lent for the read alone: the session parses it before
        this returns and the core copies what it keeps, so an idle
        connection holds none, and the process keeps about as many as
        threads read at once. After a read that ended with a frame (the
        common one: a whole message) no frame is partway, and the core need
        not be asked where to read.
        """
        session = self.session
        target = None
        if not self._between_frames:
            core_lock = self.core_lock
            core_lock.acquire()  # not ``with``: half the cost, on every read
            try:
                # The rest of a large frame is read straight into its payload.
                target = session.connection.receive_buffer()
            finally:
                core_lock.release()
        if target is not None:
            self._read_in_place(target)
        else:
            # ``_take_buffer`` and ``_give_back``, inline: on every read.
            try:
                buffer = _spare_buffers.pop()  # another thread may take the last one between a test and a pop
            except IndexError:
                buffer = memoryview(bytearray(RECEIVE_SIZE))
            try:
                size = self._receive_into(buffer)
                if size:
                    self._between_frames = session.receive_message(buffer[:size])
                elif size is not None:
                    session.receive(None, direct=True)
                self.more = size == RECEIVE_SIZE
            finally:
                if len(_spare_buffers) < SPARE_BUFFERS:
                    _spare_buffers.append(buffer)
        if session.inbox.full:
            self._pause_reading()
        elif self._tls and self._reading and self.socket.pending():  # type: ignore[attr-defined]
            self.more = True

    def _read_in_place(self, target: memoryview) -> None:
        capacity = len(target)
        try:
            size = self._receive_into(target)
        finally:
            target.release()
        if size is not None:
            self.session.receive(size if size else None, direct=True)
        self.more = size == capacity

    def _receive_into(self, buffer: memoryview) -> int | None:
        """Bytes read into ``buffer``: 0 at the end of the stream (or a failure), None when there were none yet."""
        try:
            return self.socket.recv_into(buffer)
        except _WOULD_BLOCK:
            return None
        except OSError as exc:
            logger.debug("connection lost while reading: %s", exc)
            return 0

    def _resume_reading(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # a closed loop: the session is over
                loop.call_soon_threadsafe(self._resume_reading)
            return
        session = self.session
        if not self._reading and session.reading and not session.inbox.full:
            self._reading = True
            # Read before waiting: TLS may hold bytes decrypted before the pause, which ``poll`` does not report.
            self.more = True
            loop.watch_reader(True)

    def _pause_reading(self) -> None:
        loop = self._loop
        self.more = False
        if self._reading and loop is not None:
            self._reading = False
            loop.watch_reader(False)

    def reading_ended(self) -> None:
        self._pause_reading()

    # The clock: the deadline that ends the loop's wait.

    def arm(self, wake_at: float) -> None:
        if threading.get_ident() == self._loop_thread:
            self.wake_at = wake_at
            return
        # Another thread's send started the closing handshake: the loop's thread arms the deadline, woken for it.
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the session is over
                loop.call_soon_threadsafe(self.session.schedule)

    def on_deadline(self) -> None:
        """The deadline came (in the loop's wait)."""
        self.wake_at = math.inf
        self.session.on_timer()

    def in_background(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)  # the connection's own thread may block

    def send_from_timer(self, action: Callable[..., None], *args: Any) -> None:
        self.session.send(action, *args)

    def linger(self) -> None:
        """End TCP without losing our last frame: half-close, drain, then shut both ways (RFC 6455 §7.1.1).

        The socket is shut down, not closed: the server that owns it closes
        it, and anything it might still write there fails.
        """
        sock = self.socket
        session = self.session
        if not session.broken:
            session.end_writes()
            buffer = _take_buffer()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + min(session.limits.close_timeout, 2.0)
                while True:
                    try:
                        if not sock.recv_into(buffer):
                            break
                    except _WOULD_BLOCK:
                        if not _wait_readable(sock, deadline):
                            break
            _give_back(buffer)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _wait_writable(sock: socket.socket, deadline: float) -> None:
    """Wait until ``sock`` can take more bytes; TimeoutError at ``deadline``."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if poller.poll(None if left == math.inf else max(1, math.ceil(left * 1000))):
            return


def _wait_readable(sock: socket.socket, deadline: float) -> bool:
    """Wait until ``sock`` has bytes (or its end) to read; False at ``deadline``."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    left = deadline - time.monotonic()
    return left > 0 and bool(poller.poll(max(1, math.ceil(left * 1000))))
