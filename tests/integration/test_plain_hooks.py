"""Plain ``def`` hooks on every server: no loop running in them, blocking holds up only their connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import websocket

from tests.integration.conftest import Server, serve
from tests.integration.test_views import events, named, new_id, served

APP = "tests.integration.apps.plain_hooks_app:app"


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, APP) as running:
        yield running


def connect(server: Server, path: str) -> websocket.WebSocket:
    return websocket.create_connection(server.url(path), timeout=10)


def test_plain_hooks_serve_an_echo_with_no_loop_running_in_them(server):
    key = new_id()
    ws = connect(server, f"/ws/plain?id={key}")
    try:
        assert ws.recv() == "welcome"
        ws.send("hello")
        assert ws.recv() == "hello"
        ws.send_binary(b"\x00\xff")
        assert ws.recv() == b"\x00\xff"
        ws.send("sleep 0.01")
        assert ws.recv() == "slept"
    finally:
        ws.close()
    recorded = served(server, key)
    hooks = [event["event"] for event in recorded if "loop" in event]
    assert hooks == ["authorize", "on_open", "on_receive", "on_receive", "slept", "on_close"]
    assert all(event["loop"] is False for event in recorded if "loop" in event), recorded
    # A send from a plain hook needs no await: it returns a SendResult, true when written.
    assert named(recorded, "sent") == [{"event": "sent", "result": True, "type": "SendResult"}]
    assert named(recorded, "on_close")[0]["code"] == 1000


def test_async_hooks_still_run_on_the_loop(server):
    key = new_id()
    ws = connect(server, f"/ws/async?id={key}")
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
    finally:
        ws.close()
    assert named(events(server, key, wait="on_receive"), "on_receive") == [{"event": "on_receive", "loop": True}]


def test_a_plain_authorize_refuses_with_its_status(server):
    key = new_id()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, f"/ws/plain?id={key}&token=bad")
    assert refused.value.status_code == 401
    assert b"bad token" in refused.value.resp_body
    assert named(events(server, key, wait="authorize"), "authorize") == [{"event": "authorize", "loop": False}]


def test_a_plain_hook_blocking_one_second_does_not_delay_another_connection(server):
    """``time.sleep(1)`` in one connection's ``def on_receive``: another's echoes keep coming within 100 ms."""
    sleeper = connect(server, f"/ws/plain?id={new_id()}")
    other = connect(server, f"/ws/plain?id={new_id()}")
    try:
        assert sleeper.recv() == "welcome"
        assert other.recv() == "welcome"
        sleeper.send("sleep 1")
        started = time.monotonic()
        delays = []
        while time.monotonic() - started < 1.0:
            sent = time.monotonic()
            other.send("ping")
            assert other.recv() == "ping"
            delays.append(time.monotonic() - sent)
            time.sleep(0.02)
        assert sleeper.recv() == "slept"
        slept = time.monotonic() - started
    finally:
        sleeper.close()
        other.close()
    assert slept >= 0.95, "the sleep did not block its own connection"
    assert len(delays) >= 10
    assert max(delays) < 0.1, f"the other connection waited {max(delays) * 1000:.0f} ms"


def test_plain_hooks_of_many_connections_block_side_by_side(server):
    """Ten connections each sleeping 0.5 s in a ``def`` hook at once take about 0.5 s, not 5."""
    clients = [connect(server, f"/ws/plain?id={new_id()}") for _ in range(10)]
    try:
        for ws in clients:
            assert ws.recv() == "welcome"
        started = time.monotonic()
        for ws in clients:
            ws.send("sleep 0.5")
        replies = []

        def read(ws: websocket.WebSocket) -> None:
            replies.append(ws.recv())

        readers = [threading.Thread(target=read, args=(ws,)) for ws in clients]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(10)
        elapsed = time.monotonic() - started
    finally:
        for ws in clients:
            ws.close()
    assert replies == ["slept"] * 10
    assert elapsed < 2.0, f"ten sleeps of 0.5 s took {elapsed:.2f} s"


def test_a_plain_hook_that_raises_closes_its_connection_with_1011_and_no_other(server):
    other = connect(server, f"/ws/plain?id={new_id()}")
    key = new_id()
    failing = connect(server, f"/ws/plain?id={key}")
    try:
        assert other.recv() == failing.recv() == "welcome"
        failing.send("raise")
        opcode, payload = failing.recv_data(control_frame=True)
        assert (opcode, payload[:2]) == (websocket.ABNF.OPCODE_CLOSE, (1011).to_bytes(2, "big"))
        other.send("still here")
        assert other.recv() == "still here"
    finally:
        failing.close()
        other.close()
    assert named(served(server, key), "on_close")[0]["code"] == 1011
    assert "ValueError: a plain hook failed" in server.log()
