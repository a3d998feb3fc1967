"""The broadcasts waiting for one member, written by the member's own loop.

``groups.deliver`` pushes a message to each member's ``Outbox``: with
nothing waiting, the message is written at once when the member's socket
takes it without waiting (the common case: one system call, no switch to
the member); else it waits here and the member's own loop (its greenlet, or
its thread) writes it, in order, so a member whose client reads slowly
holds up no one but itself. Once more than ``BROADCAST_BUFFER`` bytes wait
for it, it is closed with 1013 (Try Again Later) and a log line.

A direct ``send_*`` is not queued: it is written at once, and may overtake
broadcasts still in the member's outbox.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import deque
from typing import TYPE_CHECKING

from ..protocol import OpCode, State

if TYPE_CHECKING:
    from .session import Session

__all__ = ["OVERFLOW_CODE", "Outbox"]

logger = logging.getLogger("duck_ws_sync")

# The close code of a member that fell too far behind (RFC 6455's registry: Try Again Later).
OVERFLOW_CODE = 1013
OVERFLOW_REASON = "Too slow to keep up with broadcasts"


class Outbox:
    """The broadcasts waiting to be written to one member, and the member's loop that writes them."""

    __slots__ = (
        "_frame_limit",
        "_items",
        "_lock",
        "_overflowed",
        "_quarter",
        "_scheduled",
        "_session",
        "_size",
        "_unchecked",
    )

    def __init__(self, session: Session) -> None:
        self._session = session
        endpoint = session.endpoint
        # Written as one frame up to this size (MAX_FRAME_SIZE); the socket's queue is looked at each quarter.
        self._frame_limit = math.inf if endpoint.MAX_FRAME_SIZE is None else endpoint.MAX_FRAME_SIZE
        self._quarter = endpoint.BROADCAST_BUFFER // 4
        self._items: deque[tuple[bytes, OpCode]] | None = None  # made when a message first has to wait
        self._size = 0
        self._scheduled = False  # a drain is due on the member's loop
        self._overflowed = False
        self._unchecked = 0  # bytes written at once since the socket's queue was last looked at
        self._lock = threading.Lock()

    def push(self, data: bytes, opcode: OpCode, frame: bytes | None = None) -> bool:
        """Send one message, or queue it, from any greenlet or thread; False if the member is gone or was too slow.

        ``frame``: the message as one final frame, built once for every
        member; written as it is where the member takes it
        (``Session.send_frame_nowait``).
        """
        if frame is not None and not self._scheduled and not self._overflowed:
            # The common case, kept short (it runs for every member): nothing
            # waits for this member, and the socket's queue was looked at
            # less than a quarter of BROADCAST_BUFFER ago.
            unchecked = self._unchecked + len(data)
            if unchecked < self._quarter and len(data) <= self._frame_limit:
                sent = self._session.send_frame_nowait(frame)
                if sent is not None:
                    self._unchecked = unchecked
                    return sent
        return self._push(data, opcode, frame)

    def _push(self, data: bytes, opcode: OpCode, frame: bytes | None) -> bool:
        """``push``, the general way: the member's state, its socket's queue, its outbox, the 1013."""
        session = self._session
        loop = session.loop
        if loop is None or loop.is_closed() or session.state is not State.OPEN:
            return False
        with self._lock:
            overflowed, idle = self._overflowed, not self._scheduled
        if overflowed:
            return False
        limit = session.endpoint.BROADCAST_BUFFER
        behind = 0  # bytes the socket holds that the client has not taken
        if idle:
            # What waits in the socket counts too (the kernel buffers
            # megabytes for a client that stopped reading); it is looked at
            # after every quarter of BROADCAST_BUFFER written this way.
            self._unchecked += len(data)
            if self._unchecked >= limit // 4:
                self._unchecked = 0
                behind = session.unsent_bytes()
            if behind + len(data) <= limit:
                fragment_size = session.endpoint.MAX_FRAME_SIZE
                sent = None
                if frame is not None and (fragment_size is None or len(data) <= fragment_size):
                    sent = session.send_frame_nowait(frame)
                if sent is None:
                    sent = session.send_nowait(session.connection.send_message, opcode, data, fragment_size)
                if sent is not None:
                    return sent
        with self._lock:
            if self._overflowed:
                return False
            if behind + self._size + len(data) > limit and (self._items or behind):
                self._overflowed = True
                self._items = None
                waiting, self._size = behind + self._size, 0
            else:
                waiting = -1
                if self._items is None:
                    self._items = deque()
                self._items.append((data, opcode))
                self._size += len(data)
            schedule = not self._scheduled and waiting < 0
            self._scheduled = self._scheduled or schedule
        if waiting >= 0:
            logger.warning(
                "closing %s with %d: %d bytes of broadcasts were waiting for it (BROADCAST_BUFFER %d)",
                session.name,
                OVERFLOW_CODE,
                waiting,
                limit,
            )
            _close_behind(session)
            return False
        if schedule:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed meanwhile
                return False
        return True

    def _drain(self) -> None:
        """Write the queued messages, in the member's loop (a slow client holds up only this member)."""
        session = self._session
        while True:
            with self._lock:
                if self._overflowed or not self._items:
                    self._items = None  # an idle member keeps no queue
                    self._scheduled = False
                    return
                data, opcode = self._items.popleft()
                self._size -= len(data)
            if not session.send_message(data, opcode):
                with self._lock:
                    self._items = None
                    self._size = 0
                    self._scheduled = False
                return


def _close_behind(session: Session) -> None:
    """Close a member that fell behind with 1013, without waiting for it.

    When no frame is being written, the Close goes out at once and the
    closing handshake runs as usual (``CLOSE_TIMEOUT``). When one is (half
    written, the client not reading), nothing may follow it: TCP is dropped
    now, and the member's loop records our Close for ``on_close``.
    """
    if session.send_nowait(session.connection.send_close, OVERFLOW_CODE, OVERFLOW_REASON) is not None:
        return
    session.abort()
    with contextlib.suppress(RuntimeError):  # the loop has closed: the session is over
        session.loop.call_soon_threadsafe(session.fail_now, OVERFLOW_CODE, OVERFLOW_REASON)
