"""asyncio inside a view's hooks, on a real server: each hook runs on its connection's own loop.

The view (tests/integration/apps/shim_app.py) runs a named scenario in
``on_receive`` and replies with what it observed; these tests check that
against what asyncio does.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from tests.integration.conftest import Server, serve

TIMEOUT = 10.0
needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and TaskGroup are Python 3.11+")


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "tests.integration.apps.shim_app:app") as running:
        yield running


def connect(server: Server, token: str | None = None) -> contextlib.closing[websocket.WebSocket]:
    """A connection to the shim view, closed at the end of a ``with`` block."""
    return contextlib.closing(
        websocket.create_connection(server.url(f"/shim/{token or uuid.uuid4().hex}"), timeout=TIMEOUT)
    )


def connect_echo(server: Server) -> contextlib.closing[websocket.WebSocket]:
    return contextlib.closing(websocket.create_connection(server.url("/echo"), timeout=TIMEOUT))


def receive_json(ws: websocket.WebSocket) -> dict[str, Any]:
    return json.loads(ws.recv())


def call(ws: websocket.WebSocket, op: str, **arguments: Any) -> Any:
    ws.send(json.dumps({"op": op, **arguments}))
    reply = receive_json(ws)
    assert "error" not in reply, reply["error"]
    return reply["result"]


@pytest.fixture
def shim(server: Server) -> Iterator[websocket.WebSocket]:
    with connect(server) as ws:
        yield ws


def echo_round_trips(ws: websocket.WebSocket, until: Any) -> list[float]:
    """Echo small messages until ``until()`` is true; return each round trip's duration."""
    durations = []
    number = 0
    while not until():
        message = f"ping {number}"
        started = time.monotonic()
        ws.send(message)
        assert ws.recv() == message
        durations.append(time.monotonic() - started)
        number += 1
    return durations


# Each asyncio feature, used inside on_receive.


def test_sleep(shim: websocket.WebSocket) -> None:
    result = call(shim, "sleep", delay=0.2)
    assert result["value"] == "slept"
    assert 0.2 <= result["elapsed"] < 1.0
    assert 0.2 <= result["loop_elapsed"] < 1.0


def test_wait_for_returns_and_times_out(shim: websocket.WebSocket) -> None:
    result = call(shim, "wait_for")
    assert result["fast"] == "fast"
    assert result["timed_out"] is True
    assert 0.1 <= result["elapsed"] < 1.0
    assert result["inner"] == ["cancelled"]  # the awaited coroutine was cancelled, as asyncio does


def test_gather_runs_concurrently_and_keeps_order(shim: websocket.WebSocket) -> None:
    result = call(shim, "gather")
    assert result["values"] == ["a", "b", "c"]
    assert result["finished"][:3] == ["c", "b", "a"]
    assert 0.3 <= result["elapsed"] < 0.55  # concurrent: not 0.6 s
    assert result["mixed"] == ["d", "ValueError('boom')"]


def test_queue(shim: websocket.WebSocket) -> None:
    result = call(shim, "queue")
    assert result["items"] == list(range(10))
    assert result["producer_waited"] > 0  # maxsize=2 made the producer wait
    assert result["empty"] is True


def test_event(shim: websocket.WebSocket) -> None:
    result = call(shim, "event")
    assert result == {"before": [], "after": [0, 1, 2], "is_set": True}


def test_lock_excludes(shim: websocket.WebSocket) -> None:
    result = call(shim, "lock")
    trace = result["trace"]
    assert len(trace) == 20
    for enter, leave in zip(trace[::2], trace[1::2], strict=True):
        assert enter.endswith("+") and leave == enter[0] + "-", trace  # never two holders at once
    assert {entry[0] for entry in trace} == {"x", "y"}
    assert result["always_locked_inside"] is True
    assert result["locked_after"] is False


def test_semaphore_bounds_concurrency(shim: websocket.WebSocket) -> None:
    assert call(shim, "semaphore") == {"most": 2, "done": 6}


def test_create_task_and_cancel(shim: websocket.WebSocket) -> None:
    result = call(shim, "cancel")
    assert result == {
        "requested": True,
        "seen": ["CancelledError", "finally"],
        "awaited": "CancelledError",
        "cancelled": True,
    }


@needs_311
def test_asyncio_timeout(shim: websocket.WebSocket) -> None:
    result = call(shim, "timeout")
    assert result["raised"] == "TimeoutError"
    assert 0.1 <= result["elapsed"] < 1.0
    assert result["inner"] == ["cancelled"]
    assert result["expired"] is True
    assert result["relaxed_expired"] is False


@needs_311
def test_taskgroup(shim: websocket.WebSocket) -> None:
    result = call(shim, "taskgroup")
    assert result["values"] == [0, 1, 2, 3]
    assert result["errors"] == ["ValueError('boom')"]
    assert result["sibling"] == ["cancelled"]  # the failure cancelled the other task
    assert result["elapsed"] < 1.0


def test_call_later(shim: websocket.WebSocket) -> None:
    result = call(shim, "call_later")
    assert result["value"] == "fired"
    assert 0.1 <= result["elapsed"] < 1.0
    assert result["order"] == ["call_soon", "call_at"]  # the cancelled handle never ran


def test_run_in_executor_uses_a_real_thread(shim: websocket.WebSocket) -> None:
    result = call(shim, "executor")
    assert result["executor_thread"] != result["hook_thread"]
    assert result["to_thread"] != result["hook_thread"]
    assert 0.2 <= result["elapsed"] < 2.0
    assert result["error"] == "KeyError('from the thread')"
    assert result["same_loop_after"] is True


def test_run_in_executor_does_not_stall_other_connections(server: Server) -> None:
    """The executor's function blocks its OS thread for real; the worker's hub keeps serving."""
    with connect(server) as busy, connect_echo(server) as echo:
        busy.send(json.dumps({"op": "executor"}))
        started = time.monotonic()
        durations = echo_round_trips(echo, lambda: time.monotonic() - started > 0.15)
        reply = receive_json(busy)
        assert "error" not in reply
        assert reply["result"]["elapsed"] >= 0.2
        assert max(durations) < 0.1


def test_call_soon_threadsafe_from_a_real_thread(shim: websocket.WebSocket) -> None:
    result = call(shim, "threadsafe")
    assert result["caller_thread"] != result["hook_thread"]


def test_contextvars_follow_the_session_task(server: Server) -> None:
    first_token, second_token = uuid.uuid4().hex, uuid.uuid4().hex
    with connect(server, first_token) as first, connect(server, second_token) as second:
        first_context = call(first, "context")
        second_context = call(second, "context")
        # Set in on_open, seen in on_receive (both awaited in one task); a new connection starts clean.
        assert first_context == {
            "before_set": None,
            "in_receive": first_token,
            "child": [first_token, "changed by child"],
        }
        assert second_context == {
            "before_set": None,
            "in_receive": second_token,
            "child": [second_token, "changed by child"],
        }
        # A child task's change stayed in the child (it ran in a copy of the context).
        assert call(first, "context")["in_receive"] == first_token


def test_contextvars_survive_greenlet_switches(server: Server) -> None:
    """Two connections set the same variable and block at the same time: neither sees the other's value."""
    first_token, second_token = uuid.uuid4().hex, uuid.uuid4().hex
    with connect(server, first_token) as first, connect(server, second_token) as second:
        first.send(json.dumps({"op": "context_switch", "seconds": 0.3}))
        second.send(json.dumps({"op": "context_switch", "seconds": 0.3}))
        for ws, token in ((first, first_token), (second, second_token)):
            reply = receive_json(ws)
            assert "error" not in reply, reply
            expected = f"{token}-switch"
            assert reply["result"] == {"before": expected, "after_blocking": expected, "after_await": expected}


def test_running_loop_is_per_connection(server: Server) -> None:
    first_token, second_token = uuid.uuid4().hex, uuid.uuid4().hex
    with connect(server, first_token) as first, connect(server, second_token) as second:
        first_loops = call(first, "loops")
        second_loops = call(second, "loops")
        assert len(set(first_loops.values())) == 1, first_loops  # on_open, on_receive, a task, get_event_loop
        assert len(set(second_loops.values())) == 1, second_loops
        assert first_loops["on_receive"] != second_loops["on_receive"]
        assert call(first, "loops") == first_loops  # still the same loop, message after message
        first.close()
        # on_close ran on the connection's loop too.
        closed = call(second, "closed", token=first_token)
        assert closed == {"loop": first_loops["on_open"], "opened_on": first_loops["on_open"]}


def test_blocking_hook_blocks_only_its_connection(server: Server) -> None:
    with connect(server) as blocked, connect_echo(server) as echo:
        blocked.send(json.dumps({"op": "block", "seconds": 1.0}))
        assert receive_json(blocked) == {"blocking": True}
        started = time.monotonic()
        durations = echo_round_trips(echo, lambda: time.monotonic() - started > 0.8)
        reply = receive_json(blocked)
        assert "error" not in reply, reply
        result = reply["result"]
        assert result["ended"] - result["started"] >= 1.0
        assert result["same_loop"] is True  # the loop is still this connection's after the switch
        # The echoes ran while the other hook was blocked, and were not slowed down by it.
        assert result["ended"] > started + 0.8
        assert len(durations) > 10
        assert max(durations) < 0.1, max(durations)


def test_busy_hook_does_not_starve_others(server: Server) -> None:
    with connect(server) as busy, connect_echo(server) as echo:
        busy.send(json.dumps({"op": "busy", "seconds": 1.0}))
        assert receive_json(busy) == {"busy": True}
        started = time.monotonic()
        durations = echo_round_trips(echo, lambda: time.monotonic() - started > 0.8)
        reply = receive_json(busy)
        assert "error" not in reply, reply
        result = reply["result"]
        assert result["ended"] > started + 0.8  # the busy loop was still spinning during the echoes
        assert result["iterations"] > 1000
        assert len(durations) > 10
        assert max(durations) < 0.1, (max(durations), statistics.median(durations))


def test_abandoned_async_generator_is_finalized_on_its_loop(shim: websocket.WebSocket) -> None:
    assert call(shim, "asyncgen") == {"finalized": True, "finalized_on_own_loop": True}


def test_abandoned_async_generator_is_finalized_on_its_loop_with_another_connection_open(server: Server) -> None:
    """asyncio finalizes an async generator on the loop that first iterated it, whatever else runs."""
    with connect(server) as first:
        assert call(first, "hold") == "held"
        with connect(server) as second:  # opened after the first: its loop started running later
            assert call(second, "hold") == "held"
            assert call(first, "asyncgen") == {"finalized": True, "finalized_on_own_loop": True}


def test_abandoned_async_generator_is_finalized_after_other_connections_come_and_go(server: Server) -> None:
    """Connections that open and close in an overlapping order must not stop a later one's cleanup.

    First opens, second opens, first closes, third opens, second closes: then the
    third connection leaves an async generator early, and its ``finally`` must run.
    """
    first_token, second_token = uuid.uuid4().hex, uuid.uuid4().hex
    with connect(server, first_token) as first, connect(server, second_token) as second:
        assert call(first, "hold") == "held"
        assert call(second, "hold") == "held"
        first.close()
        assert call(second, "closed", token=first_token)["loop"]  # the first one's on_close has run
        with connect(server) as third:
            assert call(third, "hold") == "held"
            second.close()
            assert call(third, "closed", token=second_token)["loop"]
            assert call(third, "asyncgen") == {"finalized": True, "finalized_on_own_loop": True}
