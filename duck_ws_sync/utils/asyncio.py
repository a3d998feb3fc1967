"""Duck's ``duck.utils.asyncio.create_task``, for views running on a connection's loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["create_task"]

logger = logging.getLogger("duck_ws_sync")

T = TypeVar("T")


def create_task(
    coro: Coroutine[Any, Any, T],
    on_complete: Callable[[asyncio.Task[T]], Any] | None = None,
    raise_on_exception: bool = True,
    ignore_errors: Sequence[type[BaseException]] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Task[T]:
    """Start ``coro`` as a task, with Duck's error reporting.

    Inside a view's hooks the task belongs to the connection: it is cancelled
    when the connection ends.

    Args:
        coro: The coroutine to run.
        on_complete: Called with the task when it is done.
        raise_on_exception: Log the task's exception with its traceback
            (a done callback cannot raise anywhere useful); False ignores it.
        ignore_errors: Exception types never reported; default
            ``[asyncio.CancelledError]``.
        loop: The loop to run on; default the running loop.

    Returns:
        The task.
    """
    ignored = tuple(ignore_errors) if ignore_errors is not None else (asyncio.CancelledError,)
    task = (loop or asyncio.get_running_loop()).create_task(coro)

    def done(task: asyncio.Task[T]) -> None:
        if raise_on_exception and not task.cancelled():
            exception = task.exception()
            if exception is not None and not isinstance(exception, ignored):
                logger.error("task %r failed", task, exc_info=exception)
        if on_complete is not None:
            on_complete(task)

    task.add_done_callback(done)
    return task
