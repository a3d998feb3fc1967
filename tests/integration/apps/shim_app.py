"""Views that exercise asyncio inside hooks and report what they observe, for test_shim.py.

``/shim/<token>``: each text message is a JSON command ``{"op": name, ...arguments}``;
the view runs ``op_<name>`` in ``on_receive`` and replies ``{"result": ...}`` (or
``{"error": "..."}``). ``/echo`` echoes every message.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from typing import Any

import gevent.event
from gevent import monkey

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

# The real OS-level primitives, whatever gevent has patched.
native_id = monkey.get_original("_thread", "get_native_id")
start_real_thread = monkey.get_original("_thread", "start_new_thread")
real_sleep = monkey.get_original("time", "sleep")

TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("TOKEN", default=None)

# What each connection's on_close saw, by token (one worker process serves every test).
CLOSED: dict[str, gevent.event.AsyncResult] = {}


def closed_result(token: str) -> gevent.event.AsyncResult:
    return CLOSED.setdefault(token, gevent.event.AsyncResult())


def loop_id() -> int:
    return id(asyncio.get_running_loop())


class Echo(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class Shim(WebSocketView):
    PING_INTERVAL = None

    async def on_open(self) -> None:
        self.token = self.kwargs["token"]
        self.loop_on_open = loop_id()
        self.token_before_set = TOKEN.get()
        TOKEN.set(self.token)

    async def on_receive(self, data: bytes, opcode: int) -> None:
        command = json.loads(data)
        operation = getattr(self, "op_" + command.pop("op"))
        try:
            reply: dict[str, Any] = {"result": await operation(**command)}
        except Exception as exc:  # reported to the test, which then fails with the reason
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        await self.send_json(reply)

    async def on_close(self) -> None:
        closed_result(self.token).set({"loop": loop_id(), "opened_on": self.loop_on_open})

    # Operations.

    async def op_sleep(self, delay: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started, loop_started = time.monotonic(), loop.time()
        value = await asyncio.sleep(delay, result="slept")
        return {"value": value, "elapsed": time.monotonic() - started, "loop_elapsed": loop.time() - loop_started}

    async def op_wait_for(self) -> dict[str, Any]:
        async def answer(delay: float, value: str) -> str:
            await asyncio.sleep(delay)
            return value

        fast = await asyncio.wait_for(answer(0.01, "fast"), timeout=2)
        inner_saw: list[str] = []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                inner_saw.append("cancelled")
                raise

        started = time.monotonic()
        try:
            await asyncio.wait_for(slow(), timeout=0.1)
            timed_out = False
        except TimeoutError:
            timed_out = True
        return {"fast": fast, "timed_out": timed_out, "elapsed": time.monotonic() - started, "inner": inner_saw}

    async def op_gather(self) -> dict[str, Any]:
        finished: list[str] = []

        async def after(delay: float, value: str) -> str:
            await asyncio.sleep(delay)
            finished.append(value)
            return value

        async def fail() -> None:
            await asyncio.sleep(0.01)
            raise ValueError("boom")

        started = time.monotonic()
        values = await asyncio.gather(after(0.3, "a"), after(0.2, "b"), after(0.1, "c"))
        elapsed = time.monotonic() - started
        mixed = await asyncio.gather(after(0.01, "d"), fail(), return_exceptions=True)
        return {
            "values": values,
            "finished": finished,
            "elapsed": elapsed,
            "mixed": [repr(item) if isinstance(item, BaseException) else item for item in mixed],
        }

    async def op_queue(self) -> dict[str, Any]:
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=2)
        producer_waited = 0

        async def produce() -> None:
            nonlocal producer_waited
            for item in range(10):
                if queue.full():
                    producer_waited += 1
                await queue.put(item)
            await queue.put(None)

        async def consume() -> list[int]:
            items = []
            while (item := await queue.get()) is not None:
                items.append(item)
                queue.task_done()
                await asyncio.sleep(0.001)
            queue.task_done()
            return items

        producer = asyncio.get_running_loop().create_task(produce())
        items = await consume()
        await producer
        await asyncio.wait_for(queue.join(), 2)
        return {"items": items, "producer_waited": producer_waited, "empty": queue.empty()}

    async def op_event(self) -> dict[str, Any]:
        event = asyncio.Event()
        woke: list[int] = []

        async def waiter(number: int) -> None:
            await event.wait()
            woke.append(number)

        tasks = [asyncio.create_task(waiter(number)) for number in range(3)]
        await asyncio.sleep(0.05)
        before = list(woke)
        event.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        return {"before": before, "after": sorted(woke), "is_set": event.is_set()}

    async def op_lock(self) -> dict[str, Any]:
        lock = asyncio.Lock()
        trace: list[str] = []
        seen_locked: list[bool] = []

        async def worker(name: str) -> None:
            for _ in range(5):
                async with lock:
                    trace.append(f"{name}+")
                    await asyncio.sleep(0.001)
                    seen_locked.append(lock.locked())
                    trace.append(f"{name}-")
                await asyncio.sleep(0)

        await asyncio.wait_for(asyncio.gather(worker("x"), worker("y")), 5)
        return {"trace": trace, "always_locked_inside": all(seen_locked), "locked_after": lock.locked()}

    async def op_semaphore(self) -> dict[str, Any]:
        semaphore = asyncio.Semaphore(2)
        inside = 0
        most = 0
        done = 0

        async def worker() -> None:
            nonlocal inside, most, done
            async with semaphore:
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.02)
                inside -= 1
                done += 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(6))), 5)
        return {"most": most, "done": done}

    async def op_cancel(self) -> dict[str, Any]:
        seen: list[str] = []
        started = asyncio.Event()

        async def worker() -> None:
            started.set()
            try:
                await asyncio.sleep(10)
                seen.append("not cancelled")
            except asyncio.CancelledError:
                seen.append("CancelledError")
                raise
            finally:
                seen.append("finally")

        task = asyncio.get_running_loop().create_task(worker())
        await asyncio.wait_for(started.wait(), 2)
        requested = task.cancel()
        try:
            await task
            awaited = "returned"
        except asyncio.CancelledError:
            awaited = "CancelledError"
        return {"requested": requested, "seen": seen, "awaited": awaited, "cancelled": task.cancelled()}

    async def op_timeout(self) -> dict[str, Any]:
        started = time.monotonic()
        inner: list[str] = []
        try:
            async with asyncio.timeout(0.1) as context:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    inner.append("cancelled")
                    raise
            raised = "nothing"
        except TimeoutError:
            raised = "TimeoutError"
        elapsed = time.monotonic() - started
        async with asyncio.timeout(2) as relaxed:
            await asyncio.sleep(0.01)
        return {
            "raised": raised,
            "elapsed": elapsed,
            "inner": inner,
            "expired": context.expired(),
            "relaxed_expired": relaxed.expired(),
        }

    async def op_taskgroup(self) -> dict[str, Any]:
        async def after(delay: float, value: int) -> int:
            await asyncio.sleep(delay)
            return value

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(after(0.01 * number, number)) for number in range(4)]
        values = [task.result() for task in tasks]

        sibling: list[str] = []

        async def fail() -> None:
            await asyncio.sleep(0.05)
            raise ValueError("boom")

        async def long() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                sibling.append("cancelled")
                raise

        started = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(fail())
                group.create_task(long())
            errors: list[str] = []
        except Exception as group_error:  # an ExceptionGroup (no except* here: the package supports 3.10)
            errors = [repr(error) for error in getattr(group_error, "exceptions", [group_error])]
        return {"values": values, "errors": errors, "sibling": sibling, "elapsed": time.monotonic() - started}

    async def op_call_later(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        order: list[str] = []
        started = time.monotonic()
        loop.call_later(0.1, fired.set_result, "fired")
        cancelled = loop.call_later(0.05, order.append, "cancelled handle ran")
        cancelled.cancel()
        loop.call_at(loop.time() + 0.02, order.append, "call_at")
        loop.call_soon(order.append, "call_soon")
        value = await asyncio.wait_for(fired, 2)
        return {"value": value, "elapsed": time.monotonic() - started, "order": order}

    async def op_executor(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def blocking(seconds: float) -> int:
            real_sleep(seconds)  # not cooperative: only a real thread may do this without stalling the worker
            return native_id()

        def broken() -> None:
            raise KeyError("from the thread")

        started = time.monotonic()
        thread_id = await loop.run_in_executor(None, blocking, 0.2)
        elapsed = time.monotonic() - started
        try:
            await loop.run_in_executor(None, broken)
            error = "none"
        except KeyError as exc:
            error = repr(exc)
        to_thread_id = await asyncio.to_thread(native_id)
        return {
            "hook_thread": native_id(),
            "executor_thread": thread_id,
            "to_thread": to_thread_id,
            "elapsed": elapsed,
            "error": error,
            "same_loop_after": loop_id() == id(loop),
        }

    async def op_threadsafe(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def from_a_real_thread() -> None:
            real_sleep(0.05)
            loop.call_soon_threadsafe(future.set_result, native_id())

        start_real_thread(from_a_real_thread, ())
        thread_id = await asyncio.wait_for(future, 5)
        return {"hook_thread": native_id(), "caller_thread": thread_id}

    async def op_context(self) -> dict[str, Any]:
        seen_in_child: list[str | None] = []

        async def child() -> None:
            seen_in_child.append(TOKEN.get())
            TOKEN.set("changed by child")
            seen_in_child.append(TOKEN.get())

        await asyncio.create_task(child())
        return {"before_set": self.token_before_set, "in_receive": TOKEN.get(), "child": seen_in_child}

    async def op_context_switch(self, seconds: float) -> dict[str, Any]:
        """Set the variable, let every other greenlet run for a while, read it back."""
        TOKEN.set(f"{self.token}-switch")
        before = TOKEN.get()
        time.sleep(seconds)  # cooperative: other connections run meanwhile
        after_blocking = TOKEN.get()
        await asyncio.sleep(seconds)
        return {"before": before, "after_blocking": after_blocking, "after_await": TOKEN.get()}

    async def op_loops(self) -> dict[str, Any]:
        in_task = await asyncio.create_task(self._task_loop())
        return {
            "on_open": self.loop_on_open,
            "on_receive": loop_id(),
            "task": in_task,
            "get_event_loop": id(asyncio.get_event_loop()),
        }

    async def _task_loop(self) -> int:
        await asyncio.sleep(0)
        return loop_id()

    async def op_block(self, seconds: float) -> dict[str, Any]:
        """Block this greenlet with (patched, cooperative) time.sleep."""
        before = loop_id()
        await self.send_json({"blocking": True})
        started = time.monotonic()
        time.sleep(seconds)
        ended = time.monotonic()
        return {"started": started, "ended": ended, "same_loop": before == loop_id() == self.loop_on_open}

    async def op_busy(self, seconds: float) -> dict[str, Any]:
        """Keep the loop busy with ``await asyncio.sleep(0)`` for a while."""
        await self.send_json({"busy": True})
        started = time.monotonic()
        iterations = 0
        while time.monotonic() - started < seconds:
            await asyncio.sleep(0)
            iterations += 1
        return {"started": started, "ended": time.monotonic(), "iterations": iterations}

    async def op_closed(self, token: str) -> Any:
        """What another connection's on_close saw (waits for it, cooperatively)."""
        return closed_result(token).get(timeout=5)

    async def op_asyncgen(self) -> dict[str, Any]:
        """Leave an async generator early: asyncio finalizes it (aclose) on the loop that iterated it."""
        loop = asyncio.get_running_loop()
        finalized = asyncio.Event()
        finalized_on: list[int] = []

        async def numbers():
            try:
                for number in range(10):
                    yield number
                    await asyncio.sleep(0)
            finally:
                finalized_on.append(loop_id())
                finalized.set()

        async for number in numbers():
            if number == 2:
                break
        try:
            await asyncio.wait_for(finalized.wait(), 2)
            was_finalized = True
        except TimeoutError:
            was_finalized = False
        return {"finalized": was_finalized, "finalized_on_own_loop": finalized_on == [id(loop)]}

    async def op_hold(self) -> str:
        """Answer at once: a connection that stays open for another test."""
        return "held"


app = WebSocketMiddleware(None, [path("/echo", Echo), path("/shim/<token>", Shim)])
