"""Groups of connections, and one message to all of a group's members in this process.

``WebSocketView.join(group)`` and ``leave(group)`` keep the membership
here; a session leaves its groups when it ends. ``deliver`` hands a
message to each member's outbox and returns: the one who broadcasts only
appends or writes what the member's socket takes at once. Each member's
own loop (its greenlet, or its thread) writes the rest, in order, so a
member whose client reads slowly holds up no one but itself; once more
than ``BROADCAST_BUFFER`` bytes wait for it, it is closed with 1013 (Try
Again Later) and a log line.

A direct ``send_*`` is not queued: it is written at once, as before, and
may overtake broadcasts still in the member's outbox.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import brokers
from .protocol import OpCode, State

if TYPE_CHECKING:
    from .views import WebSocketView

__all__ = ["OVERFLOW_CODE", "Outbox", "deliver", "join", "leave", "leave_all", "members"]

logger = logging.getLogger("duck_ws_sync")

# The close code of a member that fell too far behind (RFC 6455's registry: Try Again Later).
OVERFLOW_CODE = 1013
OVERFLOW_REASON = "Too slow to keep up with broadcasts"

# Joins, leaves and deliveries may come from several threads; nothing waits while holding it.
_lock = threading.Lock()
_groups: dict[str, set[WebSocketView]] = {}


def join(view: WebSocketView, group: str) -> None:
    """Make ``view`` a member of ``group`` (a no-op once its connection has ended)."""
    if view.state is State.CLOSED:
        return
    with _lock:
        members = _groups.get(group)
        first = members is None
        if members is None:
            members = _groups[group] = set()
        members.add(view)
        if view._groups is None:
            view._groups = set()
        view._groups.add(group)
    if first:  # the broker delivers the group's messages to this process from now on
        brokers.current().subscribe(group)


def leave(view: WebSocketView, group: str) -> None:
    """``view`` is no longer a member of ``group``."""
    with _lock:
        emptied = _leave(view, group)
    if emptied:
        brokers.current().unsubscribe(group)


def leave_all(view: WebSocketView) -> None:
    """``view`` leaves every group (its session has ended)."""
    with _lock:
        emptied = [group for group in list(view._groups or ()) if _leave(view, group)]
    for group in emptied:
        brokers.current().unsubscribe(group)


def _leave(view: WebSocketView, group: str) -> bool:
    """Take ``view`` out of ``group``; True when that left the group without members here."""
    members = _groups.get(group)
    emptied = False
    if members is not None:
        members.discard(view)
        if not members:
            del _groups[group]
            emptied = True
    if view._groups is not None:
        view._groups.discard(group)
    return emptied


def has_members(group: str) -> bool:
    """Whether ``group`` has members in this process."""
    return group in _groups


def members(group: str) -> list[WebSocketView]:
    """The members of ``group`` in this process."""
    with _lock:
        return list(_groups.get(group, ()))


def deliver(group: str, message: str | bytes, exclude: Any = None) -> int:
    """Queue ``message`` (``str``: text, ``bytes``: binary) for every member of ``group`` here but ``exclude``.

    Returns:
        How many members it was queued for.
    """
    if isinstance(message, str):
        data, opcode = message.encode("utf-8"), OpCode.TEXT
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data, opcode = bytes(message), OpCode.BINARY
    else:
        raise TypeError(f"a broadcast is str (text) or bytes (binary), not {type(message).__name__}")
    skipped = _excluded(exclude)
    queued = 0
    for member in members(group):
        if member not in skipped and _outbox(member).push(data, opcode):
            queued += 1
    return queued


def _excluded(exclude: Any) -> set[Any]:
    if exclude is None:
        return set()
    if isinstance(exclude, Iterable):
        return set(exclude)
    return {exclude}


def _outbox(view: WebSocketView) -> Outbox:
    outbox = view._outbox
    if outbox is None:
        with _lock:
            outbox = view._outbox
            if outbox is None:
                outbox = view._outbox = Outbox(view)
    return outbox


class Outbox:
    """The broadcasts waiting to be written to one member, and the member's loop that writes them."""

    __slots__ = ("_items", "_lock", "_overflowed", "_scheduled", "_size", "_unchecked", "_view")

    def __init__(self, view: WebSocketView) -> None:
        self._view = view
        self._items: deque[tuple[bytes, OpCode]] | None = None  # made when a message first has to wait
        self._size = 0
        self._scheduled = False  # a drain is due on the member's loop
        self._overflowed = False
        self._unchecked = 0  # bytes written at once since the socket's queue was last looked at
        self._lock = threading.Lock()

    def push(self, data: bytes, opcode: OpCode) -> bool:
        """Send one message, or queue it, from any greenlet or thread; False if the member is gone or was too slow.

        With nothing queued, the message is written at once if the socket
        takes it without waiting (the common case: one system call, no
        switch to the member); else it waits here for the member's loop.
        """
        view = self._view
        loop, transport = view._loop, view._transport
        if loop is None or transport is None or loop.is_closed() or view.state is not State.OPEN:
            return False
        with self._lock:
            overflowed, idle = self._overflowed, not self._scheduled
        if overflowed:
            return False
        behind = 0  # bytes the socket holds that the client has not taken
        if idle:
            # What waits in the socket counts too (the kernel buffers
            # megabytes for a client that stopped reading); it is looked at
            # after every quarter of BROADCAST_BUFFER written this way.
            self._unchecked += len(data)
            if self._unchecked >= view.BROADCAST_BUFFER // 4:
                self._unchecked = 0
                behind = transport.unsent_bytes()
            if behind + len(data) <= view.BROADCAST_BUFFER:
                sent = transport.send_nowait(transport.connection.send_message, opcode, data, view.MAX_FRAME_SIZE)
                if sent is not None:
                    return sent
        with self._lock:
            if self._overflowed:
                return False
            if behind + self._size + len(data) > view.BROADCAST_BUFFER and (self._items or behind):
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
                type(view).__name__,
                OVERFLOW_CODE,
                waiting,
                view.BROADCAST_BUFFER,
            )
            _close_behind(view, transport, loop)
            return False
        if schedule:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed meanwhile
                return False
        return True

    def _drain(self) -> None:
        """Write the queued messages, in the member's loop (a slow client holds up only this member)."""
        view = self._view
        while True:
            with self._lock:
                if self._overflowed or not self._items:
                    self._items = None  # an idle member keeps no queue
                    self._scheduled = False
                    return
                data, opcode = self._items.popleft()
                self._size -= len(data)
            if not view.send(data, opcode):
                with self._lock:
                    self._items = None
                    self._size = 0
                    self._scheduled = False
                return


def _close_behind(view: WebSocketView, transport: Any, loop: Any) -> None:
    """Close a member that fell behind with 1013, without waiting for it.

    When no frame is being written, the Close goes out at once and the
    closing handshake runs as usual (``CLOSE_TIMEOUT``). When one is (half
    written, the client not reading), nothing may follow it: TCP is dropped
    now, and the member's loop records our Close for ``on_close``.
    """
    if transport.send_nowait(transport.connection.send_close, OVERFLOW_CODE, OVERFLOW_REASON) is not None:
        return
    transport.abort()
    with contextlib.suppress(RuntimeError):  # the loop has closed: the session is over
        loop.call_soon_threadsafe(transport.fail_now, OVERFLOW_CODE, OVERFLOW_REASON)
