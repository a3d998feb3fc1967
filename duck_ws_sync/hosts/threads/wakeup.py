"""How another thread wakes a connection's thread that waits on its socket: one eventfd, written only when it waits.

A connection's thread sleeps in ``poll`` on two descriptors: the client's
socket and this wake-up (``loop.py``). Another thread that gives the loop
work (``call_soon_threadsafe``: a broadcast to finish, a deadline armed by
another thread's Close, ``run_coroutine_threadsafe``) makes the wake-up
readable, and the ``poll`` returns.

Why one descriptor made with the loop, and not one made later, when another
thread first needs it: a thread already in ``poll`` on its socket alone
cannot be made to look at a descriptor made after it began waiting (a
signal does not do it: ``select.poll`` retries after EINTR in any thread
but the main one), so a lazy wake-up needs a bounded wait to be correct,
and a bounded wait wakes every idle connection over and over. An eventfd is
one descriptor and no Python object; where there is none (macOS), a
non-blocking pipe does the same with two.

The waiting thread and a waking one agree through ``lock``: the thread
marks itself waiting and looks for work that came meanwhile under the lock,
the waker looks whether it is waiting under the lock after queueing its
work, so either the thread sees the work or the waker sees the wait and
writes. A thread that does not wait costs its wakers no system call. The
descriptor is closed under the same lock, so a late waker never writes to
a number that the process has given to another file meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["Wakeup"]


class Wakeup:
    """A descriptor that another thread makes readable to end a connection thread's ``poll``.

    Attributes:
        fd: What ``poll`` watches (-1 once closed).
        lock: Held to change or read ``waiting``, and to write or close the descriptor.
        waiting: The loop's thread is in (or about to enter) ``poll``.
    """

    __slots__ = ("_write_fd", "fd", "lock", "waiting")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = False
        if hasattr(os, "eventfd"):
            self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._write_fd = -1
        else:  # pragma: no cover (no eventfd outside Linux)
            self.fd, self._write_fd = os.pipe()
            for end in (self.fd, self._write_fd):
                os.set_blocking(end, False)

    def wake(self) -> None:
        """Make the descriptor readable if the loop's thread waits on it (from any thread)."""
        with self.lock:
            if self.waiting and self.fd >= 0:
                self.waiting = False  # one write is enough until the thread waits again
                self._write()

    def _write(self) -> None:
        # A full pipe, or an eventfd at its maximum count, is readable already.
        with contextlib.suppress(BlockingIOError):
            if self._write_fd < 0:
                os.eventfd_write(self.fd, 1)
            else:  # pragma: no cover (no eventfd outside Linux)
                os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        """Take what wakers wrote (the loop's thread, once ``poll`` said the descriptor is readable)."""
        with contextlib.suppress(BlockingIOError, OSError):
            if self._write_fd < 0:
                os.eventfd_read(self.fd)
            else:  # pragma: no cover (no eventfd outside Linux)
                while os.read(self.fd, 4096):
                    pass

    def close(self) -> None:
        """Close the descriptor(s); later wakers write nothing."""
        with self.lock:
            fds, self.fd, self._write_fd = (self.fd, self._write_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
