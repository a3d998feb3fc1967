"""One WebSocket connection served by an OS thread of its own: reading, writing and the clock.

The connection's thread runs the view's asyncio event loop (a standard
selector loop, ``loop.py``). The socket is non-blocking; the loop watches it
(``add_reader``) and each read is parsed at once, its messages handed to
the session (``Inbox.deliver``). While the session is behind (the inbox is
full) the loop stops watching the socket, and TCP pushes back on the client.

Any thread may send: the view's own, another connection's, a background
thread, a plain WSGI view. The protocol core is not thread-safe, so every
call into it holds the core lock; the write lock, taken first and held
until the frames are on the wire, keeps frames whole and in the core's
order. A send waits for a client that does not read for at most
SEND_TIMEOUT, then drops TCP: a half-written frame cannot be followed by
anything.

The deadlines (heartbeat, receive timeout, closing handshake) are timers of
the connection's loop.
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

from ..channel import MAX_GATHER, Channel, unsent
from ..exceptions import LocalProtocolError
from ..inbox import Inbox
from ..protocol import ServerConnection

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


class ThreadTransport(Channel):
    """Runs a ``ServerConnection`` over a socket, from the thread of the connection's event loop.

    Args:
        sock: The client's socket, after the 101 response was written.
        connection: The protocol core, made with ``answer_close_at_once=False``.
        inbox: Where messages go; ``END`` is put there when reading stops.
        initial_data: Bytes the server read past the upgrade request.
        settings: The view, for its timeouts and heartbeat settings.
    """

    __slots__ = ("_buffer", "_core_lock", "_gather", "_initial_data", "_loop", "_loop_thread", "_reading", "_tls")

    def __init__(
        self,
        sock: socket.socket,
        connection: ServerConnection,
        inbox: Inbox,
        initial_data: bytes = b"",
        settings: Any = None,
    ) -> None:
        self.socket = sock
        self.connection = connection
        self.inbox = inbox
        self._initial_data = initial_data
        self._core_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._broken = False
        self._reading_done = False
        self._reading = False  # the loop watches the socket
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._buffer = _receive_buffer()
        # TLS: decrypted bytes may wait in the socket object, unseen by the
        # selector, and records are written one send() at a time.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._gather = not self._tls
        self._start_clock(settings, time.monotonic())
        sock.setblocking(False)
        inbox.on_space = self._resume_reading

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading and the deadlines; from the loop's thread, before the loop runs."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            self._receive(data)
        self._resume_reading()
        self._schedule()

    def stop(self) -> None:
        """Stop reading and the deadlines (the session is over)."""
        self._reading_done = True
        self._pause_reading()
        self._stop_clock()

    # Writing, from any thread.

    def send(self, action: Callable[..., None], *args: Any) -> bool:
        """Call a sending method of the core and write its frames.

        Returns:
            True when the frames were written; False when the connection is
            no longer open or the socket failed (logged at debug level).
        """
        with self._write_lock:
            if self._broken:
                logger.debug("not sending on a closed connection")
                return False
            try:
                with self._core_lock:
                    action(*args)
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            return self._flush()

    def _flush(self) -> bool:
        """Write what the core has queued; the caller holds the write lock."""
        connection = self.connection
        with self._core_lock:
            closing = connection.close_sent is not None
            chunks = connection.data_to_send()
        if closing:
            self._closing_starts()
        return self._write(chunks)

    def _core_guard(self) -> Any:
        return self._core_lock

    def _can_send_now(self) -> bool:
        return not self._tls  # a TLS record that would block must be sent again as it was

    def _hand_over(self, chunks: list[Any]) -> bool:
        # The connection's own thread finishes the frames, holding the write lock until they are out.
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(self._finish_writing, chunks)
        except RuntimeError:  # the loop has closed: the session is over
            return False
        return True

    def _write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting, in one system call; return what did not fit."""
        batch = chunks[:MAX_GATHER] if self._gather else chunks[:1]
        if not batch:
            return []
        try:
            sent = self.socket.send(batch[0]) if len(batch) == 1 else self.socket.sendmsg(batch)
        except _WOULD_BLOCK:
            sent = 0
        return unsent(chunks, sent)

    def _write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT in all; the caller holds the write lock."""
        sock = self.socket
        deadline = time.monotonic() + self._limits.send_timeout
        try:
            while chunks:
                chunks = self._write_what_fits(chunks)
                if chunks:
                    _wait_writable(sock, deadline)
        except TimeoutError:
            logger.info("send timed out after %s s: dropping the connection", self._limits.send_timeout)
            self.abort()
            return False
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.abort()
            return False
        return True

    # Reading, in the loop's thread.

    def _resume_reading(self) -> None:
        loop = self._loop
        if not self._reading and not self._reading_done and not self.inbox.full and loop is not None:
            self._reading = True
            loop.add_reader(self.socket.fileno(), self._on_readable)

    def _pause_reading(self) -> None:
        loop = self._loop
        if self._reading and loop is not None:
            self._reading = False
            with contextlib.suppress(OSError, ValueError):  # a closed loop or socket
                loop.remove_reader(self.socket.fileno())

    def _reading_ended(self) -> None:
        self._pause_reading()

    def _on_readable(self) -> None:
        connection = self.connection
        with self._core_lock:
            # The rest of a large frame is read straight into its payload.
            target = connection.receive_buffer()
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
            self._receive(None)
        else:
            self._receive(self._buffer[:size] if target is None else size)
        if self.inbox.full:
            self._pause_reading()
        elif self._tls and self._reading and self._loop is not None and self.socket.pending():  # type: ignore[attr-defined]
            self._loop.call_soon(self._on_readable)

    def _receive(self, data: memoryview | bytes | int | None) -> None:
        """Feed one read to the core (None: end of stream) and act on the events."""
        connection = self.connection
        with self._core_lock:
            if data is None:
                connection.receive_eof()
                events = None
            else:
                frames_sent = connection.frames_sent
                frames = self._feed(data)
                events = connection.events_received()
                flush = connection.frames_sent != frames_sent
        if events is None:
            self._end_of_reading()
        else:
            self._act_on(events, frames, flush, direct=True)

    # The clock: timers of the connection's loop.

    def _arm(self, wake_at: float) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            # Another thread's send started the closing handshake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._schedule)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if wake_at == math.inf else loop.call_at(wake_at, self._on_timer)

    def _disarm(self) -> None:
        self._timer.cancel()
        self._timer = None

    def _in_background(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)  # the connection's own thread may block

    def _send_from_timer(self, action: Callable[..., None], *args: Any) -> None:
        self.send(action, *args)

    def linger(self) -> None:
        """End TCP without losing our last frame: half-close, drain, then shut both ways (RFC 6455 §7.1.1).

        The socket is shut down, not closed: the server that owns it closes
        it, and anything it might still write there fails.
        """
        sock = self.socket
        if not self._broken:
            self._broken = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                deadline = time.monotonic() + min(self._limits.close_timeout, 2.0)
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
