"""Database connections under WebSockets, as Django handles them for requests.

Django closes a request's database connections when they are too old
(``CONN_MAX_AGE``) or broken, before and after each request
(``close_old_connections`` on ``request_started`` and ``request_finished``).
A WebSocket is no request, so each of its hooks is treated as one
(``DatabaseGuard``): an open, idle WebSocket holds no connection (with the
default ``CONN_MAX_AGE = 0``), and whatever it still holds is closed when
it ends.

Django's connections are per thread (per greenlet under gevent) and per
context, and its ORM refuses to run inside a running event loop. A plain
``def`` hook runs outside the loop and uses the ORM as a view does. In an
``async def`` hook, Django's async API (``await Model.objects.acreate(...)``,
``sync_to_async``) runs its synchronous part through asgiref; on a
connection's loop asgiref runs it here, in the connection's own greenlet
or thread, outside the loop (``run_thread_sensitive_code_here``), not in a
thread shared by every connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from ..engine.session import Session
from ..engine.tasks import TaskCounting
from ..views import ViewHooks

__all__ = ["DJANGO_HOOKS", "DatabaseGuard", "run_thread_sensitive_code_here"]


class DatabaseGuard:
    """Around each hook, outside the loop: Django's ``close_old_connections`` (and ``reset_queries`` before)."""

    __slots__ = ()

    def enter(self) -> None:
        from django.db import close_old_connections, reset_queries  # noqa: PLC0415

        reset_queries()
        close_old_connections()

    def exit(self) -> None:
        from django.db import close_old_connections  # noqa: PLC0415

        close_old_connections()


class DjangoHooks(ViewHooks):
    """A view's hooks inside ``DatabaseGuard``; the session's database connections closed when it ends."""

    __slots__ = ()

    def serve(self, session: Session) -> Coroutine[Any, Any, None]:
        return _closing_connections(super().serve(session))

    def closed(self, session: Session) -> Coroutine[Any, Any, None]:
        return _closing_connections(super().closed(session))


async def _closing_connections(hooks: Coroutine[Any, Any, None]) -> None:
    """Run ``hooks``, then close the database connections they left open (``CONN_MAX_AGE`` above 0)."""
    from django.db import connections  # noqa: PLC0415

    try:
        await hooks
    finally:
        loop: Any = asyncio.get_running_loop()
        loop.call_outside(connections.close_all)


DJANGO_HOOKS = DjangoHooks(DatabaseGuard())


class _Here(concurrent.futures.Executor):
    """Runs each call at once, outside ``loop`` (``call_outside``): in the loop's own greenlet or thread."""

    def __init__(self, loop: TaskCounting) -> None:
        self.loop = loop

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            result = self.loop.call_outside(functools.partial(function, *args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


class _ConnectionLoops(dict):  # type: ignore[type-arg]
    """asgiref's executors by event loop, which also has one for each connection's loop: ``_Here``."""

    def __contains__(self, loop: object) -> bool:
        return super().__contains__(loop) or isinstance(loop, TaskCounting)

    def __getitem__(self, loop: Any) -> Any:
        if super().__contains__(loop):
            return super().__getitem__(loop)
        return _Here(loop)


def run_thread_sensitive_code_here() -> None:
    """Make asgiref's thread-sensitive ``sync_to_async`` run on a connection's own greenlet or thread (once).

    Django's async ORM and sessions run their synchronous part through it.
    By default it would go to one thread that every connection shares,
    holding a database connection that no hook's guard closes.
    """
    from asgiref.sync import AsyncToSync  # noqa: PLC0415

    if not isinstance(AsyncToSync.loop_thread_executors, _ConnectionLoops):
        AsyncToSync.loop_thread_executors = _ConnectionLoops(AsyncToSync.loop_thread_executors)
