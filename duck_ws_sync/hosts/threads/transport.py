"""One WebSocket connection served by an OS thread of its own: reading, writing and the clock.

The connection's thread runs the view's asyncio event loop (a standard
selector loop, ``loop.py``). The socket is non-blocking; the loop watches it
(``add_reader``) and each read goes to the session at once
(``Session.receive``), which hands its messages to the view. While the session is behind (the inbox is
full) the loop stops watching the socket, and TCP pushes back on the client.

Any thread may send: the view's own, another connection's, a background
thread, a plain WSGI view. The protocol core is not thread-safe, so every
call into it holds the core lock; the write lock, taken first and held
until the frames are on the wire, keeps frames whole and in the core's
order. A send waits for a client that does not read for at most
SEND_TIMEOUT, then drops TCP: a half-written frame cannot be followed by
anything.

The session's deadline (heartbeat, receive timeout, closing handshake) is a
timer of the connection's loop.
"""

from __future__ import annotations

import asyncio
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

__all__ = ["ThreadTransport"]

logger = logging.getLogger("duck_ws_sync")

# The receive buffer of each thread: small, since a thread serves one
# connection and an idle one must stay cheap (a frame's payload of 64 KiB or
# more is read straight into place, ``ServerConnection.receive_buffer``).
RECEIVE_SIZE = 16 * 1024
# What a non-blocking socket raises when it would block (TLS: when a record is incomplete or cannot go out yet).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

_per_thread = threading.local()


def _receive_buffer() -> memoryview:
    """The calling thread's receive buffer: each read is parsed before the next, and the core copies what it keeps."""
    buffer: memoryview | None = getattr(_per_thread, "buffer", None)
    if buffer is None:
        buffer = _per_thread.buffer = memoryview(bytearray(RECEIVE_SIZE))
    return buffer


class ThreadTransport:
    """A session's I/O and clock, from the thread of the connection's event loop.

    Args:
        sock: The client's socket, after the 101 response was written.
        initial_data: Bytes the server read past the upgrade request.
    """

    __slots__ = (
        "_buffer",
        "_gather",
        "_initial_data",
        "_loop",
        "_loop_thread",
        "_reading",
        "_timer",
        "_tls",
        "core_lock",
        "session",
        "socket",
        "write_lock",
    )

    # A frame is never written from the sending thread without the core lock: no short text path.
    direct = False

    def __init__(self, sock: socket.socket, initial_data: bytes = b"") -> None:
        self.socket = sock
        self._initial_data = initial_data
        self.core_lock = threading.Lock()
        self.write_lock = threading.Lock()
        self._reading = False  # the loop watches the socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = _receive_buffer()
        # TLS: decrypted bytes may wait in the socket object, unseen by the
        # selector, and records are written one send() at a time.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._gather = not self._tls
        sock.setblocking(False)

    def start(self, session: SessionSide, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading for ``session``; from the loop's thread, before the loop runs."""
        self.session = session
        self._loop = loop
        self._loop_thread = threading.get_ident()
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
        return self.write([chunk])

    def write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting, in one system call; return what did not fit."""
        return send_what_fits(self.socket, chunks, self._gather, _WOULD_BLOCK)

    def write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT in all; the caller holds the write lock."""
        sock = self.socket
        send_timeout = self.session.limits.send_timeout
        deadline = time.monotonic() + send_timeout
        try:
            while chunks:
                chunks = self.write_what_fits(chunks)
                if chunks:
                    _wait_writable(sock, deadline)
        except TimeoutError:
            logger.info("send timed out after %s s: dropping the connection", send_timeout)
            self.session.abort()
            return False
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.session.abort()
            return False
        return True

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

    # Reading, in the loop's thread.

    def _resume_reading(self) -> None:
        loop = self._loop
        session = self.session
        if not self._reading and session.reading and not session.inbox.full and loop is not None:
            self._reading = True
            loop.add_reader(self.socket.fileno(), self._on_readable)

    def _pause_reading(self) -> None:
        loop = self._loop
        if self._reading and loop is not None:
            self._reading = False
            with contextlib.suppress(OSError, ValueError):  # a closed loop or socket
                loop.remove_reader(self.socket.fileno())

    def reading_ended(self) -> None:
        self._pause_reading()

    def _on_readable(self) -> None:
        session = self.session
        with self.core_lock:
            # The rest of a large frame is read straight into its payload.
            target = session.connection.receive_buffer()
        try:
            size = self.socket.recv_into(self._buffer if target is None else target)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            logger.debug("connection lost while reading: %s", exc)
            size = 0
        finally:
            if target is not None:
                target.release()
        if not size:
            session.receive(None, direct=True)
        else:
            session.receive(self._buffer[:size] if target is None else size, direct=True)
        if session.inbox.full:
            self._pause_reading()
        elif self._tls and self._reading and self._loop is not None and self.socket.pending():  # type: ignore[attr-defined]
            self._loop.call_soon(self._on_readable)

    # The clock: a timer of the connection's loop.

    def arm(self, wake_at: float) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            # Another thread's send started the closing handshake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._arm_again)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if wake_at == math.inf else loop.call_at(wake_at, self._on_timer)

    def _arm_again(self) -> None:
        self.session.schedule()

    def _on_timer(self) -> None:
        self._timer = None
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
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + min(session.limits.close_timeout, 2.0)
                while True:
                    try:
                        if not sock.recv_into(self._buffer):
                            break
                    except _WOULD_BLOCK:
                        if not _wait_readable(sock, deadline):
                            break
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
