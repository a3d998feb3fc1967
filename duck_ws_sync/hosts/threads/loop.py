"""The event loop of a connection's thread: asyncio's own selector loop, counting its tasks."""

from __future__ import annotations

import asyncio

from ...engine.tasks import TaskCounting

__all__ = ["ThreadEventLoop"]


class ThreadEventLoop(TaskCounting, asyncio.SelectorEventLoop):
    """An asyncio selector loop that knows its unfinished tasks (``TaskCounting``).

    ``run_in_executor(None, ...)`` uses the loop's own pool of threads, as
    asyncio does; the socket is watched with ``add_reader``.
    """
