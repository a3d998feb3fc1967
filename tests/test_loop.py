"""The greenlet switch tracer: each greenlet sees its own running loop (native and Python tracers)."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import gevent
import pytest

from duck_ws_sync.hosts.gevent import loop as loop_module
from duck_ws_sync.hosts.gevent.loop import GreenletEventLoop


@pytest.fixture(params=["native", "python"])
def tracer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(loop_module, "_load_switches", lambda: None)
    elif getattr(loop_module._load_switches(), "SwitchTracer", None) is None:
        pytest.skip("the native extension is not built")
    return request.param


def run_in_new_hub(target: Any) -> Any:
    """Run ``target`` in a thread of its own: a new gevent hub, where the tracer is installed anew."""
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the hub's thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.timeout(20)
def test_loops_in_greenlets_blocked_in_gevent_keep_their_own_running_loop(tracer: str) -> None:
    def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def hook(name: str) -> None:
            mine = asyncio.get_running_loop()
            hooks = sys.get_asyncgen_hooks()
            for step in range(5):
                gevent.sleep(0.001 * (step + 1))  # blocks the greenlet: the others (and their loops) run
                seen.setdefault(name, []).append(
                    (asyncio.get_running_loop() is mine, sys.get_asyncgen_hooks() == hooks)
                )
                await asyncio.sleep(0)

        def connection(name: str) -> None:
            loop = GreenletEventLoop()
            try:
                loop.run_until_complete(hook(name))
            finally:
                loop.close()

        def plain_greenlet() -> None:
            for _ in range(5):
                gevent.sleep(0.002)
                seen.setdefault("plain", []).append(asyncio.events._get_running_loop())

        gevent.joinall([gevent.spawn(connection, "a"), gevent.spawn(connection, "b"), gevent.spawn(plain_greenlet)])
        seen["tracer"] = type(__import__("greenlet").gettrace()).__name__
        return seen

    seen = run_in_new_hub(scenario)
    assert seen["a"] == [(True, True)] * 5
    assert seen["b"] == [(True, True)] * 5
    assert seen["plain"] == [None] * 5  # a greenlet that runs no loop sees none
    assert seen["tracer"] == ("SwitchTracer" if tracer == "native" else "function")


def test_cancel_remaining_tasks_cancels_what_is_pending_and_scans_nothing_otherwise(monkeypatch) -> None:
    """Ending a session must not cost a scan of every task of the process (asyncio.all_tasks) when none is left."""
    scans: list[Any] = []
    all_tasks = asyncio.all_tasks
    monkeypatch.setattr(asyncio, "all_tasks", lambda loop=None: scans.append(loop) or all_tasks(loop))
    loop = GreenletEventLoop()
    try:
        cancelled: list[str] = []

        async def forever(name: str) -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        async def session() -> None:
            await asyncio.gather(*(asyncio.sleep(0) for _ in range(3)))  # tasks that finish
            asyncio.get_running_loop().create_task(forever("left behind"))

        loop.run_until_complete(session())
        loop.cancel_remaining_tasks(1.0)
        assert cancelled == ["left behind"]
        assert scans == [loop]
        scans.clear()
        loop.run_until_complete(asyncio.sleep(0))
        loop.cancel_remaining_tasks(1.0)  # nothing pending: no scan
        assert scans == []
    finally:
        loop.close()
