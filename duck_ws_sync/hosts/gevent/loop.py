"""An asyncio event loop run by a greenlet, and parked with none while it waits for its socket.

Each WebSocket connection runs its view's ``async def`` hooks on a
``GreenletEventLoop`` of its own, in a greenlet: the one that calls
``run_forever``, or, beyond a WSGI call, whichever runner of the thread
(``runners.py``) is given it while it has work (``run_parked``). It is a real
``asyncio.BaseEventLoop`` (so futures, tasks, ``sleep``, ``wait_for``,
``gather``, ``Queue``, ``Lock``, ``TaskGroup``, ``asyncio.timeout``,
``call_later`` and contextvars behave as usual) whose only blocking point is a
gevent event: where a selector loop would wait for file descriptors, this one
sleeps on the gevent hub until a callback is scheduled or a timer is due.
Gevent-cooperative blocking code in a hook (a monkey-patched ``time.sleep``,
a socket call, a database driver) therefore suspends only its own greenlet.
A parked loop (nothing ready, no timer, its socket read to the end) has no
greenlet at all: its socket's watcher, or a callback scheduled on it,
resumes it in a runner.

asyncio keeps one "running loop" per OS thread, but here many loops run in one
thread, each in its own greenlet. A greenlet switch tracer swaps the running
loop on every switch, so ``asyncio.get_running_loop()`` always answers the
loop of the greenlet that asks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import sys
import weakref
from asyncio import events
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import gevent
import greenlet
from gevent.hub import Waiter

from ...engine.tasks import TaskCounting

__all__ = ["GreenletEventLoop"]

T = TypeVar("T")

_TRACER_INSTALLED = "_duck_ws_sync_loop_tracer"
# The attribute where a greenlet that is switched away from keeps its running
# loop and async generator hooks.
LOOP_ATTRIBUTE = "_duck_ws_sync_running_loop"
# The attribute where a loop's greenlet keeps its reader's ``loop_blocked``
# while it runs callbacks (and None while it waits in select).
_BLOCKED_ATTRIBUTE = "_duck_ws_sync_loop_blocked"
# After this many callbacks-only iterations in a row, the loop lets the rest of
# the worker run: ``await asyncio.sleep(0)`` in a busy hook must not starve
# every other connection.
_FAIRNESS_INTERVAL = 64


def _install_switch_tracer() -> None:
    """Make asyncio's running loop a per-greenlet value in this thread (once per hub).

    The tracer runs on every greenlet switch of the worker, WebSocket or not:
    the native one (``_switches.SwitchTracer``) when it is built, else
    ``_python_tracer``, which does the same.
    """
    hub = gevent.get_hub()
    if getattr(hub, _TRACER_INSTALLED, False):
        return
    arguments = (
        hub,
        LOOP_ATTRIBUTE,
        _BLOCKED_ATTRIBUTE,
        events._get_running_loop,
        events._set_running_loop,
        sys.get_asyncgen_hooks,
        sys.set_asyncgen_hooks,
        tuple(sys.get_asyncgen_hooks()),
        greenlet.gettrace(),
    )
    native = getattr(_load_switches(), "SwitchTracer", None)
    greenlet.settrace(native(*arguments) if native is not None else _python_tracer(*arguments))
    setattr(hub, _TRACER_INSTALLED, True)


def _load_switches() -> Any:
    try:
        return importlib.import_module("duck_ws_sync.hosts.gevent._switches")
    except ImportError:
        return None


def _python_tracer(
    hub: Any,
    loop_attribute: str,
    blocked_attribute: str,
    get_running_loop: Callable[[], Any],
    set_running_loop: Callable[[Any], None],
    get_hooks: Callable[[], Any],
    set_hooks: Callable[..., None],
    no_hooks: tuple[Any, ...],
    previous: Callable[..., Any] | None,
) -> Callable[[str, tuple[greenlet.greenlet, greenlet.greenlet]], None]:
    """The switch tracer in Python (``_switches.SwitchTracer`` is the same in C)."""

    def trace(event: str, args: tuple[greenlet.greenlet, greenlet.greenlet]) -> None:
        if event in ("switch", "throw"):
            origin, target = args
            if target is hub:
                # The hub runs no asyncio code, so the running loop can stay
                # as it is; a GreenletEventLoop's greenlet has its state saved
                # already (run_forever below).
                blocked = getattr(origin, blocked_attribute, None)
                if blocked is not None:
                    blocked()  # a connection's loop blocks outside its select: keep reading its socket
            else:
                if origin is not hub:
                    # The running loop and the async generator hooks (which
                    # finalize abandoned async generators on their own loop)
                    # are per greenlet. The hub's are never restored.
                    with contextlib.suppress(AttributeError):
                        setattr(origin, loop_attribute, (get_running_loop(), get_hooks()))
                loop, hooks = getattr(target, loop_attribute, None) or (None, no_hooks)
                # Set only what changes: setting the running loop allocates.
                if get_running_loop() is not loop:
                    set_running_loop(loop)
                if tuple(get_hooks()) != tuple(hooks):
                    set_hooks(*hooks)
                if origin is not hub:
                    blocked = getattr(origin, blocked_attribute, None)
                    if blocked is not None:
                        blocked()
        if previous is not None:
            previous(event, args)

    return trace


# What ``InlineReader.read_inline`` answers.
NOTHING_READ = 0
READ_SOME = 1  # the socket may have more at once
READ_ALL = 2  # all the socket had: the next read would find nothing, the wait reports what comes


class InlineReader(Protocol):
    """A socket reader that the loop's greenlet serves itself while it is idle.

    Waiting for the socket where the loop waits for callbacks saves two
    greenlet switches per message over a separate reader greenlet. When the
    loop's greenlet blocks elsewhere (a hook in gevent-cooperative code), the
    switch tracer calls ``loop_blocked`` so that a standby greenlet keeps
    reading meanwhile.
    """

    def read_inline(self) -> int: ...  # read without blocking if it should: NOTHING_READ, READ_SOME or READ_ALL
    def loop_idle(self, wake: Callable[[bool], None]) -> None: ...  # the loop waits; wake(True) when there is work
    def loop_busy(self) -> None: ...
    def loop_blocked(self) -> None: ...


class _Wakeup:
    """Stands where a selector-based loop keeps its selector: the loop's greenlet sleeps here."""

    def __init__(self) -> None:
        self._hub = gevent.get_hub()
        self._waiter: Waiter | None = None
        self.busy_iterations = 0
        # The reader's last read took all there was: the next would find nothing, the watcher tells.
        self.read_all = False
        self.reader: InlineReader | None = None
        self.blocked: Callable[[], None] | None = None  # the reader's loop_blocked, for the switch tracer
        self._greenlet: greenlet.greenlet | None = None  # the loop's, once a reader is attached
        # While the loop is parked (``park``): what runs it again.
        self._resume: Callable[[], None] | None = None
        # The watcher's callback while parked, made once (a bound method per park: an allocation per message).
        self._wake_parked = self._unpark

    def attach(self, reader: InlineReader) -> None:
        self.reader = reader
        self.blocked = reader.loop_blocked
        self._greenlet = greenlet.getcurrent()
        setattr(self._greenlet, _BLOCKED_ATTRIBUTE, self.blocked)

    def park(self, resume: Callable[[], None]) -> None:
        """The loop has nothing to do but wait for its socket: no greenlet waits; ``resume()`` when there is work.

        ``resume`` is called from the hub (the socket is readable, the hub
        read it, a callback was scheduled): it must not block.
        """
        runner = self._greenlet
        if runner is not None:
            setattr(runner, _BLOCKED_ATTRIBUTE, None)
            self._greenlet = None
        self.busy_iterations = 0
        self.read_all = False
        self._resume = resume
        if self.reader is not None:
            self.reader.loop_idle(self._wake_parked)

    def _unpark(self, ready: bool = True) -> None:
        """Work for the parked loop (in the hub): resume it."""
        resume = self._resume
        if resume is not None:
            self._resume = None
            if self.reader is not None:
                self.reader.loop_busy()
            resume()

    def throw(self, *args: Any) -> None:
        """The socket was shut down while the parked loop watched it (gevent cancels the wait): resume, see the end."""
        self._unpark()

    def select(self, timeout: float | None) -> list[Any]:
        if timeout == 0:
            self.busy_iterations += 1
            if self.busy_iterations >= _FAIRNESS_INTERVAL:
                self.busy_iterations = 0
                gevent.sleep(0)
            return []
        reader = self.reader
        # After a read that took all the socket had, another would cost a
        # system call and an exception for nothing: the wait reports more.
        if reader is not None and not self.read_all and self.busy_iterations < _FAIRNESS_INTERVAL:
            read = reader.read_inline()
            if read:
                # The next frame is often there already: read it without a
                # trip through the hub (an epoll_wait and two switches).
                self.read_all = read == READ_ALL
                self.busy_iterations += 1
                return []
        self.busy_iterations = 0
        self.read_all = False
        waiter = self._waiter = Waiter(self._hub)
        if reader is not None:
            reader.loop_idle(waiter.switch)
            setattr(self._greenlet, _BLOCKED_ATTRIBUTE, None)
        timer = None
        if timeout is not None:
            timer = self._hub.loop.timer(timeout)
            timer.start(waiter.switch, False)
        try:
            readable = waiter.get()
        except OSError:
            # gevent's socket, shut down by another greenlet, cancels the
            # waits on its watcher: the read that follows sees the end.
            readable = True
        finally:
            self._waiter = None
            if timer is not None:
                timer.close()
            if reader is not None:
                reader.loop_busy()
                setattr(self._greenlet, _BLOCKED_ATTRIBUTE, reader.loop_blocked)
        if readable and reader is not None:
            self.read_all = reader.read_inline() == READ_ALL
        return []

    @property
    def waiting(self) -> bool:
        """True while the loop's greenlet sleeps here, or the loop is parked (and no wake-up is on its way)."""
        return self._waiter is not None or self._resume is not None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._hub.loop.run_callback(waiter.switch, False)
        elif self._resume is not None:
            self._hub.loop.run_callback(self._unpark)


class _ReadyCallbacks(list):  # type: ignore[type-arg]
    """The loop's queue of ready handles: a list, with the one deque method BaseEventLoop uses."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class GreenletEventLoop(TaskCounting):
    """An asyncio loop for one greenlet, woken through the gevent hub.

    Callbacks may be scheduled on it from any greenlet of the same thread
    (another connection's view, a background greenlet): ``call_soon`` wakes the
    loop if it is asleep. From other OS threads use ``call_soon_threadsafe``.

    ``run_in_executor(None, ...)`` runs the function in gevent's pool of real
    threads, so blocking code that gevent cannot make cooperative stays off
    the hub. Sockets and pipes cannot be registered with this loop
    (``add_reader`` and friends): hooks use gevent's cooperative sockets.
    """

    def __init__(self) -> None:
        super().__init__()
        # Lighter than BaseEventLoop's deque and WeakSet (an idle connection
        # keeps its loop): a list for the few ready callbacks, and the set of
        # async generators made when the first one starts.
        self._ready = _ReadyCallbacks()
        self._asyncgens: weakref.WeakSet[Any] | None = None
        _install_switch_tracer()
        self._selector = _Wakeup()
        self._hub = gevent.get_hub()

    def run_forever(self) -> None:
        """Run until ``stop``; the greenlet's attribute tells the switch tracer which loop it runs."""
        current = greenlet.getcurrent()
        saved = getattr(current, LOOP_ATTRIBUTE, None)
        hooks = (self._asyncgen_firstiter_hook, self._asyncgen_finalizer_hook)
        setattr(current, LOOP_ATTRIBUTE, (self, hooks))
        try:
            super().run_forever()
        finally:
            setattr(current, LOOP_ATTRIBUTE, saved)

    def call_outside(self, function: Callable[..., T], *args: Any) -> T:
        """``TaskCounting.call_outside``, which gevent-cooperative blocking in ``function`` does not undo.

        The switch tracer gives this greenlet back its loop when it comes
        back from the hub: it is told there is none for the time of the call.
        """
        current = greenlet.getcurrent()
        saved = getattr(current, LOOP_ATTRIBUTE, None)
        setattr(current, LOOP_ATTRIBUTE, None)
        try:
            return super().call_outside(function, *args)
        finally:
            setattr(current, LOOP_ATTRIBUTE, saved)
            if saved is not None and tuple(sys.get_asyncgen_hooks()) != tuple(saved[1]):
                sys.set_asyncgen_hooks(*saved[1])  # a switch while it ran took them away

    def attach_reader(self, reader: InlineReader) -> None:
        """Let the loop's greenlet read ``reader``'s socket while it has nothing else to do."""
        self._selector.attach(reader)

    def claimed_by(self) -> tuple[Any, Any]:
        """What the greenlet to run this loop (``run_parked``) holds in ``LOOP_ATTRIBUTE`` (set before a switch).

        The switch tracer then makes this loop the running one, with its
        async generator hooks, as the switch happens.
        """
        return (self, (self._asyncgen_firstiter_hook, self._asyncgen_finalizer_hook))

    def run_parked(self, task: asyncio.Future[Any], resume: Callable[[], None]) -> bool:
        """Run the loop in the calling greenlet (claimed: ``claimed_by``) until ``task`` is done or it would wait.

        Returns:
            True when ``task`` is done (the loop is released: see ``release``).
            False when the loop has nothing to do but wait for its socket:
            it is parked, with no greenlet waiting for it (an idle
            connection holds none), and ``resume()`` is called from the hub
            when there is work again (then claim a greenlet and call this
            again). A loop with timers (``call_later``, ``asyncio.sleep``)
            waits for them in the calling greenlet, as ``run_forever`` does.
        """
        selector = self._selector
        reader = selector.reader
        current = selector._greenlet = greenlet.getcurrent()
        if reader is not None:
            setattr(current, _BLOCKED_ATTRIBUTE, selector.blocked)
        ready = self._ready
        try:
            while not task.done():
                if ready or self._scheduled:  # type: ignore[attr-defined]
                    super()._run_once()  # type: ignore[misc]
                    continue
                # Read the socket without waiting, when a read may find something: every message's path.
                if not selector.read_all and selector.busy_iterations < _FAIRNESS_INTERVAL and reader is not None:
                    read = reader.read_inline()
                    if read:
                        selector.read_all = read == READ_ALL
                        selector.busy_iterations += 1
                        continue
                selector.park(resume)  # the running loop stays set: the next greenlet's switch replaces it
                return False
        except BaseException:
            self.release()
            raise
        self.release()
        return True

    def release(self) -> None:
        """The calling greenlet runs this loop no more: no loop is running (``run_until_complete`` may follow)."""
        setattr(greenlet.getcurrent(), LOOP_ATTRIBUTE, None)
        events._set_running_loop(None)

    def _run_once(self) -> None:
        # With nothing ready, no timer and no stop pending, an iteration is
        # only a wait: skip the bookkeeping of BaseEventLoop's.
        if self._ready or self._scheduled or self._stopping:  # type: ignore[attr-defined]
            super()._run_once()  # type: ignore[misc]
        else:
            self._selector.select(None)

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        self._selector.wake()

    def close(self) -> None:
        super().close()
        if self._selector.reader is not None:
            setattr(greenlet.getcurrent(), _BLOCKED_ATTRIBUTE, None)

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        if self._selector.waiting:
            self._selector.wake()
        return handle

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        if self._selector.waiting:
            self._selector.wake()
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        handle = super().call_soon(callback, *args, context=context)
        if self._hub is gevent.get_hub():
            self._selector.wake()
        else:
            # Another OS thread: only the hub's async watcher may cross threads.
            self._hub.loop.run_callback_threadsafe(self._selector.wake)
        return handle

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        future: asyncio.Future[T] = self.create_future()
        result = self._hub.threadpool.spawn(func, *args)

        def deliver(result: Any) -> None:
            if future.cancelled() or self.is_closed():
                return
            if result.successful():
                self.call_soon(_set_result_unless_cancelled, future, result.value)
            else:
                self.call_soon(_set_exception_unless_cancelled, future, result.exception)

        result.rawlink(deliver)
        return future


def _set_result_unless_cancelled(future: asyncio.Future[T], value: T) -> None:
    if not future.cancelled():
        future.set_result(value)


def _set_exception_unless_cancelled(future: asyncio.Future[Any], exception: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exception)
