"""How a view's hooks are called: each a plain ``def`` or an ``async def``, maybe inside a framework's guard.

A view's hooks (``HOOK_NAMES``) may be written either way; the class says
which when it is defined (``plain_hooks``), and anything else under a hook's
name is a ``TypeError`` then. An ``async def`` is awaited on the
connection's loop. A plain ``def`` is called in the same greenlet or thread
through the loop's ``call_outside``, with no loop running, as in a WSGI
request: it may block (gevent-cooperatively under gevent, plainly on a
thread), and libraries that refuse to run inside a running loop work.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["HOOK_NAMES", "HookGuard", "accepts_frame", "call_guarded", "plain_hooks", "run_hook"]

HOOK_NAMES = ("authorize", "on_open", "on_receive", "on_close")


class HookGuard(Protocol):
    """What a framework runs around each of a view's hooks, outside the event loop.

    Django's closes the database connections that are too old or broken
    before and after each hook, as Django does around each request
    (``duck_ws_sync.django``).
    """

    def enter(self) -> None: ...
    def exit(self) -> None: ...


def plain_hooks(view_class: type) -> frozenset[str]:
    """The hooks of ``view_class`` written with a plain ``def``.

    Raises:
        TypeError: For anything but a function under a hook's name.
    """
    plain = set()
    for name in HOOK_NAMES:
        hook = getattr(view_class, name)
        if inspect.iscoroutinefunction(hook):
            continue
        if not inspect.isroutine(hook):
            raise TypeError(
                f"{view_class.__qualname__}.{name} must be a function (def or async def), "
                f"not {type(hook).__name__} {hook!r}"
            )
        plain.add(name)
    return frozenset(plain)


def accepts_frame(on_close: Callable[..., Any]) -> bool:
    """Tell whether an ``on_close`` function (unbound) takes the Close frame (Duck's two signatures)."""
    try:
        parameters = list(inspect.signature(on_close).parameters.values())
    except (TypeError, ValueError):
        return True
    return any(
        parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD, parameter.VAR_POSITIONAL)
        for parameter in parameters[1:]
    )


def call_guarded(guard: HookGuard | None, hook: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call ``hook(*args)`` between ``guard``'s ``enter`` and ``exit``."""
    if guard is None:
        return hook(*args)
    guard.enter()
    try:
        return hook(*args)
    finally:
        guard.exit()


async def run_hook(plain: bool, guard: HookGuard | None, hook: Callable[..., Any], *args: Any) -> None:
    """Run ``hook(*args)`` from a task of a connection's loop (``engine.tasks.TaskCounting``).

    A plain ``def`` is called outside the loop (``call_outside``); if it
    returns something awaitable (a decorator's coroutine), that is awaited.
    """
    loop: Any = asyncio.get_running_loop()
    if plain:
        result = loop.call_outside(call_guarded, guard, hook, args)
        if inspect.isawaitable(result):
            await result
        return
    if guard is None:
        await hook(*args)
        return
    loop.call_outside(guard.enter)
    try:
        await hook(*args)
    finally:
        loop.call_outside(guard.exit)
