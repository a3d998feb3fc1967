"""The tasks of a connection's event loop: counted as they start, cancelled when the session ends.

Both hosts' loops (``GreenletEventLoop`` on gevent, ``ThreadEventLoop`` on
a thread) mix this in: ``asyncio.all_tasks(loop)`` scans every task of the
process, which thousands of connections ending together cannot afford.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["TaskCounting"]


class TaskCounting(asyncio.BaseEventLoop):
    """An event loop that knows how many of its tasks are not done."""

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
