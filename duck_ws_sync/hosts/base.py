"""The host contract: what a host provides to the engine, and what the engine's session offers it.

A host serves WebSocket connections in some kind of concurrency: gevent's
greenlets (``hosts/gevent/``) or one OS thread per connection
(``hosts/threads/``). The engine (``engine/``) does everything else, once:
the protocol, the message path, the deadlines, the rate limit, groups and
broadcasts, counting, logging. Between them are three small interfaces.

``Host`` is a host as a whole, which the middleware hands an upgraded
connection to (``hosts/choice.py`` picks it from what the takeover of the
server's socket found). It makes the connection's event loop and runs the
session on it, through ``engine.lifecycle.run``, until it has ended; and it
ends its sessions when the process stops.

``Transport`` is one connection's I/O and clock on that host:

- *writing*: ``write`` (whole, waiting at most SEND_TIMEOUT), ``write_one``
  (the same for one chunk, the common case), ``write_what_fits`` (without
  waiting), ``can_write_now`` and ``hand_over`` (what did not fit is
  finished elsewhere, where waiting is allowed), with ``write_lock`` held by
  the caller and ``core_lock`` guarding the protocol core where several
  threads use it;
- *reading*: from ``start`` to ``stop``, the transport reads the socket and
  gives each read to the session (``receive``; ``receive_message`` for
  the common read, between two iterations of the loop), and pauses while the
  session's inbox is ``full`` until its ``on_space``;
- *time*: ``arm`` keeps the session's one deadline and calls its
  ``on_timer`` when it comes; ``send_from_timer`` sends the heartbeat's Ping
  from there; ``in_background`` runs what may block (a Close that waits
  for the socket);
- *the end*: ``linger`` ends TCP without losing our last frame.

``SessionSide`` is what a transport may call on its session
(``engine.session.Session`` is the one implementation). Declared here, at
the bottom of ``hosts/``, the contract is what the engine and the hosts
both build on; ``tests/test_hosts.py`` runs one suite against both hosts.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Host", "Lock", "SessionSide", "Transport"]


class Lock(Protocol):
    """A lock as the engine uses one: ``with``, and ``acquire(blocking=False)``/``release``."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None, /
    ) -> None: ...


class SessionSide(Protocol):
    """What a transport may call on its session (``engine.session.Session``)."""

    @property
    def inbox(self) -> Any:
        """The messages on their way to the view: ``full`` (pause reading) and ``on_space`` (resume)."""

    @property
    def connection(self) -> Any:
        """The protocol core: ``receive_buffer()`` for a large frame's payload, read in place."""

    @property
    def reading(self) -> bool:
        """Whether the client's frames are still read."""

    @property
    def broken(self) -> bool:
        """Whether the socket failed or was dropped."""

    @property
    def expects_pong(self) -> bool:
        """Whether a Ping of ours waits for its Pong (the next read is likely one)."""

    @property
    def limits(self) -> Any:
        """The connection's timeouts in seconds (``engine.clock.Limits``): ``send_timeout``, ``close_timeout``."""

    def receive(self, data: memoryview | bytes | int | None, direct: bool) -> None:
        """Feed one read (None: the end; an int: bytes read into ``connection.receive_buffer()``)."""

    def receive_message(self, data: memoryview | bytes) -> bool:
        """Feed the common read, the loop between iterations; True: it ended with a frame, so none is partway."""

    def parse(self, data: memoryview | bytes | int) -> tuple[list[Any], int, bool]:
        """Feed one read without acting on it: its events, frames, and whether frames wait to go out."""

    def act_on(self, events: list[Any], frames: int, flush: bool, direct: bool) -> None:
        """Act on what ``parse`` returned."""

    def take_pong(self, data: memoryview | bytes) -> bool:
        """Handle a read that is one Pong frame alone here and now, unparsed; False to ``parse`` it instead."""

    def take_pongs(self, events: list[Any], flush: bool) -> bool:
        """Handle a parsed read of Pongs only here and now; False to act on it instead."""

    def on_timer(self) -> None:
        """The deadline that ``Transport.arm`` was given has come."""

    def schedule(self) -> None:
        """Arm the transport again for the session's earliest deadline (from the connection's own context)."""

    def send(self, action: Callable[..., None], *args: Any) -> bool:
        """Call a sending method of the core and write its frames (may wait for the socket)."""

    def send_nowait(self, action: Callable[..., None], *args: Any) -> bool | None:
        """The same without waiting; None when it cannot be done from here."""

    def finish_writing(self, chunks: list[Any]) -> None:
        """Write what ``hand_over`` was given, then release the write lock."""

    def abort(self) -> None:
        """Drop TCP at once."""

    def end_writes(self) -> None:
        """Nothing more is written: the transport ends TCP (``linger``)."""


class Transport(Protocol):
    """One connection's I/O and clock, as its host provides them (see the module's docstring).

    Attributes:
        socket: The client's socket, taken over from the server.
        write_lock: Held while frames are written, so that they go out
            whole and in the core's order.
        core_lock: Guards the protocol core against other threads; a no-op
            context where one thread uses the core.
        shared_core: Other threads call into the core too (``core_lock`` is
            a real lock, with ``acquire`` and ``release``): the session's
            short paths take it as well.
        direct: Frames may be written from the sending greenlet or thread
            at once (the short text path of ``Session.send_text``).
    """

    @property
    def socket(self) -> socket.socket: ...

    @property
    def write_lock(self) -> Lock: ...

    @property
    def core_lock(self) -> Any: ...

    @property
    def shared_core(self) -> bool: ...

    @property
    def direct(self) -> bool: ...

    def start(self, session: SessionSide, loop: Any) -> None:
        """Start reading for ``session`` (from the loop's greenlet or thread, before the loop runs)."""

    def stop(self) -> None:
        """Stop reading (the session is over)."""

    def reading_ended(self) -> None:
        """The session will read no more (the client's Close, the end, a failure): stop the reader."""

    def write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT; on failure drop TCP (``abort``) and return False."""

    def write_one(self, chunk: bytes | memoryview) -> bool:
        """``write([chunk])``, the shortest way."""

    def write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting; return what did not fit."""

    def can_write_now(self) -> bool:
        """Whether ``write_what_fits`` may be called from the calling greenlet or thread."""

    def hand_over(self, chunks: list[Any]) -> bool:
        """Have ``session.finish_writing(chunks)`` run where waiting is allowed; False if that cannot be."""

    def arm(self, wake_at: float) -> None:
        """Call ``session.on_timer()`` once, at or after ``wake_at`` (``time.monotonic()``), replacing the
        deadline armed before; ``inf``: none. From the connection's own context, or from any thread."""

    def send_from_timer(self, action: Callable[..., None], *args: Any) -> None:
        """Send from ``on_timer`` (the heartbeat's Ping), which on some hosts must not block."""

    def in_background(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)``, which may block, without blocking the caller (``on_timer``)."""

    def linger(self) -> None:
        """End TCP without losing our last frame: half-close, drain, then shut both ways (RFC 6455 §7.1.1)."""


class Host(Protocol):
    """A way of running sessions (``hosts/gevent``, ``hosts/threads``), for the middleware."""

    #: What the host is called in logs and errors.
    name: str

    def event_loop(self) -> Any:
        """A new event loop of the host's kind (``authorize`` runs on one before the session)."""

    def serve(
        self, session: Any, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], takeover: Any
    ) -> None:
        """Run ``session`` (its 101 written) over ``sock``; ``ended()`` once it is over.

        ``takeover`` is what ``hosts.takeover`` found of the server: whether
        the socket was detached from it (the session may outlive the WSGI
        call) and which server it is.
        """
