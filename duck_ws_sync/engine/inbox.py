"""How a message travels from the socket reader to ``on_receive``, and the session task that receives it.

A view's session is one asyncio task on the connection's loop: it awaits
``Inbox.get()`` for each message and calls the hooks. Waking a task the usual
way (a future's result, a callback, a loop iteration) costs more than the
rest of a small message's path, so the inbox has a shorter way:

When the reader finds a message while the loop's greenlet is between
iterations and the session task is waiting for a message, the inbox resumes
the task's coroutine right there, as the task itself would: in the task's
context, with the task current (``asyncio.current_task()``,
``asyncio.timeout`` and ``TaskGroup`` in the hook see the session task). A
hook that completes without suspending runs straight through, and the
coroutine is back waiting before the reader reads again. A hook that
suspends has awaited some future; the task is told (its waiter completes)
and, stepped by the loop, goes on waiting on that very future, so
cancellation and wake-ups work as if the task had stepped the coroutine
itself. Python 3.12's eager tasks run a task's first step the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["END", "Inbox"]

# Ends the inbox: the reader has stopped.
END = object()
# No hand-over is pending.
_NOTHING = object()

_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


class Inbox:
    """A bounded queue of messages from the reader to the session task.

    Nothing here waits: a reader that finds the queue ``full`` stops
    reading (TCP then pushes back on the client) until ``on_space`` is
    called.

    Args:
        loop: The connection's event loop.
        size: How many messages may wait for the session.

    Attributes:
        full: True when the session is behind: reading should pause.
    """

    __slots__ = (
        "_context",
        "_coroutine",
        "_handoff",
        "_items",
        "_loop",
        "_size",
        "_task",
        "_waiter",
        "full",
        "on_space",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._size = size
        self._items: deque[Any] | None = None  # made for the first message that has to wait
        self.full = False  # an attribute, not a property: the reader asks before every read
        # Called when the queue is no longer full (a reader that paused resumes).
        self.on_space: Callable[[], None] | None = None
        # The future the session waits on while the queue is empty.
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._coroutine: Coroutine[Any, Any, Any] | None = None
        self._context: contextvars.Context | None = None
        # What the session's coroutine waits on after a step taken here,
        # until the task takes over waiting on it.
        self._handoff: Any = _NOTHING

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start the session ``coroutine`` as a task that messages can be handed to directly."""
        self._coroutine = coroutine
        self._context = contextvars.copy_context()
        self._task = self._loop.create_task(TaskCoroutine(self._drive(coroutine)), context=self._context)
        return self._task

    # The reader's side.

    def put(self, item: Any) -> None:
        """Append ``item`` and wake the session (``full`` tells whether reading should pause)."""
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        if len(items) >= self._size:
            self.full = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self, messages: list[Any]) -> None:
        """Hand ``messages`` to the session from the loop's greenlet, between two loop iterations.

        When the session waits for a message, its coroutine takes the first
        at once (and the rest from the queue, in the same step while its
        hooks do not suspend); otherwise they are queued, never waiting for
        space: the loop's greenlet must not block here.
        """
        waiter = self._waiter
        if waiter is None or waiter.done() or self._items:
            for message in messages:
                self.put(message)
            return
        if len(messages) > 1:
            # The rest is queued first: a hook that blocks lets a standby
            # reader queue later messages, which must come after these.
            if self._items is None:
                self._items = deque()
            self._items.extend(messages[1:])
            self.full = len(self._items) >= self._size
        task = self._task
        assert task is not None and self._coroutine is not None and self._context is not None
        _enter_task(self._loop, task)
        try:
            yielded = self._context.run(self._coroutine.send, messages[0])
        except StopIteration as stop:  # the session returned: the task returns its value
            self._hand_over(waiter, _Ended(stop))
            return
        except BaseException as exc:  # the session failed here (a killed greenlet): the task fails too
            self._hand_over(waiter, _Ended(exc))
            raise
        finally:
            _leave_task(self._loop, task)
        if yielded is not self._waiter:
            # The hook suspended: the task must wait on what it awaits.
            self._hand_over(waiter, yielded)

    def _hand_over(self, waiter: asyncio.Future[None], handoff: Any) -> None:
        """Wake the task (its waiter may have been set meanwhile by a standby reader) to take ``handoff``."""
        self._handoff = handoff
        if not waiter.done():
            waiter.set_result(None)

    def wake_consumer(self) -> None:
        """Wake the loop (a no-op wake-up lets its greenlet reconsider what to wait for)."""
        self._loop.call_soon_threadsafe(_nothing)

    def clear(self) -> None:
        """Drop the queued messages (the view will not read them); a reader that paused resumes.

        ``END`` stays: the session still has to learn that reading is over.
        """
        items = self._items
        if items:
            ended = END in items
            items.clear()
            if ended:
                items.append(END)
            self._set_full(len(items) >= self._size)

    # The session's side.

    @types.coroutine
    def get(self) -> Generator[Any, Any, Any]:
        """Take the oldest item, waiting for one."""
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self._loop.create_future()
            waiter._asyncio_future_blocking = True  # what awaiting a future sets, for the task
            item = yield waiter
            if item is not None:  # handed in by ``deliver``
                return item
        items = self._items
        item = items.popleft()
        if len(items) < self._size:
            self._set_full(False)
        return item

    def _set_full(self, full: bool) -> None:
        was_full, self.full = self.full, full
        if was_full and not full and self.on_space is not None:
            self.on_space()

    @types.coroutine
    def _drive(self, coroutine: Coroutine[Any, Any, Any]) -> Generator[Any, Any, Any]:
        """The session task's coroutine: steps ``coroutine`` for the task, and takes over a hand-over.

        After ``deliver`` stepped the coroutine into a suspension of its
        own, the task is woken once; instead of resuming the coroutine it
        then waits on what the coroutine waits on.
        """
        send, throw = coroutine.send, coroutine.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            handoff, self._handoff = self._handoff, _NOTHING
            if type(handoff) is _Ended:
                if isinstance(handoff.exception, StopIteration):
                    return handoff.exception.value
                raise handoff.exception
            try:
                if error is not None:
                    if asyncio.isfuture(handoff):
                        # The task would have cancelled the future it waited on.
                        handoff.cancel()
                    yielded = throw(error)
                elif handoff is not _NOTHING:
                    yielded = handoff
                else:
                    yielded = send(value)
            except StopIteration as stop:
                return stop.value
            try:
                value, error = (yield yielded), None
            except BaseException as exc:
                value, error = None, exc


class _Ended:
    """How the session's coroutine ended during a step taken by ``deliver``."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


def _nothing() -> None:
    pass


class TaskCoroutine:
    """A generator presented to asyncio as a task's coroutine (from Python 3.12 on, tasks take nothing else).

    ``send``, ``throw`` and ``close`` are the generator's own bound methods,
    so a step of the task calls straight into the generator.
    """

    __slots__ = ("_generator", "close", "send", "throw")

    def __init__(self, generator: Generator[Any, Any, Any]) -> None:
        self._generator = generator
        self.send = generator.send
        self.throw = generator.throw
        self.close = generator.close

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._generator

    @property
    def cr_frame(self) -> Any:
        """The generator's frame (for ``Task.get_stack`` and reprs)."""
        return self._generator.gi_frame  # type: ignore[attr-defined]


Coroutine.register(TaskCoroutine)
