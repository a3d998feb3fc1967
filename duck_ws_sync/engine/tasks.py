"""What the engine needs of a connection's event loop beyond asyncio's: its tasks counted, plain calls outside it.

Both hosts' loops (``GreenletEventLoop`` on gevent, ``ThreadEventLoop`` on
a thread) mix this in. The tasks are counted as they start and cancelled
when the session ends: ``asyncio.all_tasks(loop)`` scans every task of the
process, which thousands of connections ending together cannot afford. A
view's plain ``def`` hooks run through ``call_outside``: in the loop's
greenlet or thread, but with no running loop, as in any WSGI request. And
the set of the loop's async generators is made when the first one starts
(an idle connection keeps its loop: the loops set ``_asyncgens`` to None).
"""

from __future__ import annotations

import asyncio
import weakref
from asyncio import events
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["TaskCounting"]


class TaskCounting(asyncio.BaseEventLoop):
    """An event loop that knows how many of its tasks are not done, and runs plain calls outside itself."""

    _pending_tasks = 0

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = super().create_task(coro, **kwargs)
        self._pending_tasks += 1
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._pending_tasks -= 1

    def cancel_remaining_tasks(self, timeout: float) -> None:
        """Cancel every task still on the loop and let them finish, for at most ``timeout`` seconds."""
        if not self._pending_tasks:
            return
        tasks = [task for task in asyncio.all_tasks(self) if not task.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        gather = asyncio.gather(*tasks, return_exceptions=True)
        self.run_until_complete(asyncio.wait_for(gather, timeout) if timeout else gather)

    _asyncgens: weakref.WeakSet[Any] | None

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens is None:
            self._asyncgens = weakref.WeakSet()
        super()._asyncgen_firstiter_hook(agen)  # type: ignore[misc]

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        if self._asyncgens is not None:
            super()._asyncgen_finalizer_hook(agen)  # type: ignore[misc]

    async def shutdown_asyncgens(self) -> None:
        if self._asyncgens is None:
            self._asyncgens_shutdown_called = True
        else:
            await super().shutdown_asyncgens()

    def call_outside(self, function: Callable[..., T], *args: Any) -> T:
        """Call ``function`` here, from a task of this loop, as if no loop were running.

        The loop does nothing meanwhile: ``function`` may block (a database
        query, ``time.sleep``), and libraries that refuse to run inside a
        running loop (Django's ORM) work. ``asyncio.get_running_loop()``
        raises inside it.
        """
        events._set_running_loop(None)
        try:
            return function(*args)
        finally:
            events._set_running_loop(self)
