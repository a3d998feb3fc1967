"""The event loop of a connection's thread: asyncio's selector loop, waiting in ``poll`` on the client's socket.

A thread per connection must still run the view's ``async def`` hooks on an
asyncio loop, but the loop's only blocking point is its thread's wait for
its own socket, so a stock selector loop is more than it needs: an epoll
descriptor and a socket pair for wake-ups per connection, a deque, weak
sets and a loop iteration between the socket being readable and the read.
``ThreadEventLoop`` keeps asyncio's selector loop (so ``add_reader``,
``sock_recv``, ``open_connection`` and the libraries built on them work in
hooks) with a selector of its own, ``_ConnectionSelector``:

- it waits with ``poll`` on the client's socket, the loop's wake-up
  (``wakeup.py``: one eventfd) and whatever hooks registered, with the
  timeout of the loop's next timer or the session's deadline, whichever
  comes first; ``poll`` keeps no descriptor of its own in the kernel;
- when the socket is readable it reads it there, between two iterations of
  the loop (``InlineReader.read_inline``), and the session hands a message
  straight to the view's coroutine (``Inbox.deliver``): no callback, no
  iteration of the loop per message;
- when the session's deadline (heartbeat, receive timeout, closing
  handshake) has come, it calls it there too (``InlineReader.on_deadline``):
  the deadline is a number the transport keeps, not a timer on the loop's
  heap.

What the loop makes for an idle connection is small and made when first
needed: its ready queue is a list, and its weak sets of async generators
and transports are made by the first one.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from ...engine.tasks import TaskCounting
from .wakeup import Wakeup

__all__ = ["InlineReader", "ThreadEventLoop"]

# ``poll`` takes milliseconds; asyncio caps a wait at a day, and so do we.
_LONGEST_WAIT_MS = 24 * 3600 * 1000
# A deadline this close counts as come (``engine/clock.py`` allows the same).
_DEADLINE_SLACK = 0.001


def _milliseconds(seconds: float) -> int:
    """A wait of ``seconds`` as ``poll`` takes it: milliseconds, rounded up, at most a day; 0 for none."""
    return min(math.ceil(seconds * 1000), _LONGEST_WAIT_MS) if seconds > 0 else 0


class InlineReader(Protocol):
    """The connection's socket as the loop's thread serves it while it waits (``ThreadTransport``).

    Attributes:
        fd: The socket's descriptor.
        wake_at: The session's deadline (``time.monotonic()``), ``inf`` for none.
        more: The last read may have left bytes to read: read before waiting again
            (a read that filled its buffer; TLS bytes decrypted and kept in the socket object).
    """

    fd: int
    wake_at: float
    more: bool

    def read_inline(self) -> None:
        """Read what the socket has, without blocking, and give it to the session."""

    def on_deadline(self) -> None:
        """The session's deadline has come."""


class _ReadyCallbacks(list):  # type: ignore[type-arg]
    """The loop's queue of ready handles: a list (an empty deque costs 700 bytes), with the deque method asyncio uses.

    ``append`` from other threads (``call_soon_threadsafe``) and
    ``pop(0)`` here are each atomic, as a deque's are.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class _ConnectionSelector(selectors.PollSelector):
    """The selector of a connection's loop: one ``poll`` on the client's socket, the wake-up and the hooks' descriptors.

    The socket and the wake-up are watched here directly, outside the
    selector's registry: ``select`` serves them itself and returns only the
    events of descriptors that hooks registered (``add_reader``), for the
    loop to run their callbacks.
    """

    if TYPE_CHECKING:  # PollSelector's own
        _selector: select.poll
        _fd_to_key: dict[int, selectors.SelectorKey]

    def __init__(self, ready: list[Any]) -> None:
        super().__init__()
        self._ready = ready  # the loop's ready queue, looked at before waiting
        self.wakeup = Wakeup()
        self._selector.register(self.wakeup.fd, select.POLLIN)
        self._reader: InlineReader | None = None
        self._watching = False  # the reader's socket is in the poll set
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, reader: InlineReader, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = reader
        self._loop = loop

    def watch(self, on: bool) -> None:
        """Put the reader's socket in the poll set or take it out (backpressure, the end); from the loop's thread."""
        reader = self._reader
        if reader is None or on == self._watching:
            return
        self._watching = on
        if on:
            self._selector.register(reader.fd, select.POLLIN)
        else:
            self._selector.unregister(reader.fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait for the socket, the wake-up, a hook's descriptor or the deadline; serve all but the hooks'.

        The clock is read once per wait, before it: the session's deadline
        is served if it had come by then, or if it ended the wait (``poll``
        rounds its timeout up, so a wait that runs out has reached it). A
        socket that is always readable therefore never holds the deadline
        off, and the common wait reads no clock after it.
        """
        reader = self._reader
        wait_ms = -1 if timeout is None else _milliseconds(timeout)
        due = -math.inf  # the deadline is served if it is at or before this
        deadline_ms = -2  # the wait that ends at the deadline (none)
        if reader is not None:
            wake_at = reader.wake_at
            if wake_at != math.inf:
                now = time.monotonic()
                due = now + _DEADLINE_SLACK
                deadline_ms = _milliseconds(wake_at - now)  # a wait that runs out has reached the deadline
                if wait_ms < 0 or deadline_ms < wait_ms:
                    wait_ms = deadline_ms
            if reader.more and self._watching:
                wait_ms = 0
        wakeup = self.wakeup
        if wait_ms:
            lock = wakeup.lock
            lock.acquire()  # not ``with``: half the cost, on every wait
            try:
                # Under the lock, against ``Wakeup.wake``: a callback queued
                # by another thread before this is seen here, one queued
                # after it finds us waiting and writes the wake-up.
                wakeup.waiting = not self._ready
            finally:
                lock.release()
            if not wakeup.waiting:
                wait_ms = 0
        try:
            polled = self._selector.poll(None if wait_ms < 0 else wait_ms)
        finally:
            wakeup.waiting = False
        events: list[tuple[selectors.SelectorKey, int]] = []
        readable = False
        reader_fd = -1 if reader is None else reader.fd
        for fd, event in polled:
            if fd == reader_fd:
                readable = True
            elif fd == wakeup.fd:
                wakeup.drain()
            else:
                self._add_event(events, fd, event)
        if reader is None:
            return events
        if wait_ms == deadline_ms and not polled:  # the wait ran out at the deadline
            due = wake_at
        # As the loop runs a callback: an error goes to the loop's exception handler, and the loop goes on.
        try:
            if (readable or reader.more) and self._watching:
                reader.read_inline()
            if reader.wake_at <= due:  # a deadline the read moved later is not served
                reader.on_deadline()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            assert self._loop is not None
            self._loop.call_exception_handler({"message": f"Exception serving {reader!r}", "exception": exc})
        return events

    def _add_event(self, events: list[tuple[selectors.SelectorKey, int]], fd: int, event: int) -> None:
        """A hook's descriptor is ready: its key and what it is ready for (as ``PollSelector.select`` does)."""
        key = self._fd_to_key.get(fd)
        if key is None:
            return
        mask = (selectors.EVENT_READ if event & ~select.POLLOUT else 0) | (
            selectors.EVENT_WRITE if event & ~select.POLLIN else 0
        )
        events.append((key, mask & key.events))

    def close(self) -> None:
        self.wakeup.close()
        super().close()


class ThreadEventLoop(TaskCounting, asyncio.SelectorEventLoop):
    """An asyncio selector loop for one connection's thread (see the module's docstring); it counts its tasks.

    ``call_soon_threadsafe`` from another thread writes the wake-up only
    while the thread waits. ``run_in_executor(None, ...)`` uses the loop's
    own pool of threads, as asyncio does.
    """

    if TYPE_CHECKING:  # BaseSelectorEventLoop's own
        _selector: _ConnectionSelector | None

        def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None: ...

    def __init__(self) -> None:
        self._made_transports: weakref.WeakValueDictionary[int, Any] | None = None
        ready = _ReadyCallbacks()
        super().__init__(_ConnectionSelector(ready))
        self._ready = ready
        self._asyncgens: weakref.WeakSet[Any] | None = None

    def attach_reader(self, reader: InlineReader) -> None:
        """Serve ``reader``'s socket and deadline from the loop's wait (``ThreadTransport.start``)."""
        assert self._selector is not None
        self._selector.attach(reader, self)

    def watch_reader(self, on: bool) -> None:
        """Read the reader's socket while waiting, or stop (the session is behind, or reading has ended)."""
        selector = self._selector
        if selector is not None:
            selector.watch(on)

    def _run_once(self) -> None:
        # With nothing ready, no timer and no stop pending, an iteration is
        # only a wait: skip the bookkeeping of BaseEventLoop's.
        if self._ready or self._scheduled or self._stopping:  # type: ignore[attr-defined]
            super()._run_once()  # type: ignore[misc]
        else:
            events = self._selector.select(None)  # type: ignore[union-attr]
            if events:  # a hook's descriptor
                self._process_events(events)

    # The wake-up, in place of asyncio's socket pair.

    def _make_self_pipe(self) -> None:
        pass  # the selector made the wake-up

    def _close_self_pipe(self) -> None:
        pass  # the selector closes it with itself

    def _write_to_self(self) -> None:
        selector = self._selector
        if selector is not None:
            selector.wakeup.wake()

    # Made when first needed.

    @property
    def _transports(self) -> weakref.WeakValueDictionary[int, Any]:
        transports = self._made_transports
        if transports is None:
            transports = self._made_transports = weakref.WeakValueDictionary()
        return transports

    @_transports.setter
    def _transports(self, value: Any) -> None:
        pass  # BaseSelectorEventLoop makes one for every loop: ours is made by the first transport
