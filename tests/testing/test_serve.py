"""``duck_ws_sync.testing.serve`` and its ``WebSocketClient``: in this process and under gunicorn."""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import greenlet
import pytest
import websocket

from duck_ws_sync.testing import LiveServer, serve
from tests.testing.apps import app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.testing.apps:app"


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with serve(app) as server:
        yield server


def os_threads(expected: set[str] | None = None) -> set[str]:
    """This process's OS threads; given ``expected``, waits a little for it (a joined thread takes a moment to go)."""
    deadline = time.monotonic() + 1
    found = set(os.listdir("/proc/self/task"))
    while expected is not None and found != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        found = set(os.listdir("/proc/self/task"))
    return found


def live_greenlets() -> int:
    gc.collect()
    return sum(1 for item in gc.get_objects() if isinstance(item, greenlet.greenlet) and not item.dead)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def children() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            found.update(int(pid) for pid in listing.read().split())
    return found


# The server in this process.


def test_connect_send_and_receive(live: LiveServer) -> None:
    assert live.url == f"http://127.0.0.1:{live.port}"
    assert live.ws_url("/echo") == f"ws://127.0.0.1:{live.port}/echo"
    ws = live.connect("/echo")
    ws.send("hi")
    assert ws.receive() == "hi"
    ws.send_binary(b"\x00\xff")
    assert ws.receive() == b"\x00\xff"
    ws.close()


def test_json_both_ways(live: LiveServer) -> None:
    ws = live.connect("/json")
    ws.send_json({"n": 1})
    assert ws.receive_json() == {"n": 1, "seen": True}
    ws.close()


def test_a_ping_waits_for_its_pong_and_keeps_messages_that_come_meanwhile(live: LiveServer) -> None:
    ws = live.connect("/echo")
    ws.send("before")
    round_trip = ws.ping_pong(b"probe")
    assert 0 < round_trip < 5
    assert ws.receive() == "before"  # it came while the ping waited
    ws.close()


def test_expect_close_checks_code_and_reason(live: LiveServer) -> None:
    ws = live.connect("/close")
    ws.send("go")
    assert ws.expect_close(4000, "bye") == (4000, "bye")
    assert (ws.close_code, ws.close_reason) == (4000, "bye")
    ws = live.connect("/close")
    ws.send("go")
    with pytest.raises(AssertionError, match=r"the server closed with 4000 'bye', not 1000"):
        ws.expect_close(1000)


def test_a_message_before_the_expected_close_fails_with_the_message(live: LiveServer) -> None:
    ws = live.connect("/say-then-close")
    ws.send("go")
    with pytest.raises(AssertionError, match=r"expected the server's Close, got a message: 'last words'"):
        ws.expect_close(4000)
    assert ws.expect_close(4000) == (4000, "bye")


def test_receive_fails_clearly_when_nothing_comes_or_the_server_closes(live: LiveServer) -> None:
    ws = live.connect("/echo")
    started = time.monotonic()
    with pytest.raises(AssertionError, match=rf"no message from ws://127.0.0.1:{live.port}/echo within 0.3 s"):
        ws.receive(timeout=0.3)
    assert time.monotonic() - started < 2
    ws.send("still open")  # a timeout does not harm the connection
    assert ws.receive() == "still open"
    ws.close()
    closing = live.connect("/close")
    closing.send("go")
    with pytest.raises(
        AssertionError, match=r"the server closed the connection \(4000 'bye'\) instead of sending a message"
    ):
        closing.receive()


def test_headers_subprotocols_and_origin_pass_through(live: LiveServer) -> None:
    ws = live.connect(
        "/request", headers={"X-Token": "abc"}, subprotocols=["chat.v2"], origin="http://tests.example", timeout=3
    )
    assert ws.receive_json() == {"token": "abc", "subprotocol": "chat.v2", "origin": "http://tests.example"}
    assert ws.gettimeout() == 3
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused_origin:
        live.connect("/request", origin="http://evil.example")
    assert refused_origin.value.status_code == 403


def test_connections_have_a_default_timeout(live: LiveServer) -> None:
    ws = live.connect("/echo")
    assert ws.gettimeout() == 10
    ws.close()


def test_stopping_closes_every_websocket_with_1001_and_leaves_nothing_behind() -> None:
    threads_before, os_threads_before, greenlets_before = set(threading.enumerate()), os_threads(), live_greenlets()
    with serve(app) as server:
        ours = [server.connect("/echo") for _ in range(3)]
        for ws in ours:
            ws.send("hello")
            assert ws.receive() == "hello"
        # A connection that connect() did not make gets the Close too.
        other = websocket.create_connection(server.ws_url("/echo"), timeout=5)
        other_frames: list[tuple[int, bytes]] = []

        def read_to_close() -> None:
            other_frames.append(other.recv_data(control_frame=True))  # websocket-client answers the Close
            other.shutdown()  # and the server, which waits for the client to end TCP, need not wait

        reader = threading.Thread(target=read_to_close)
        reader.start()
        port = server.port
        assert len(set(threading.enumerate()) - threads_before) == 2  # the server's and the reader
    reader.join(5)
    assert [ws.close_code for ws in ours] == [1001] * 3
    assert [ws.close_reason for ws in ours] == ["Server shutting down"] * 3
    assert other_frames == [(websocket.ABNF.OPCODE_CLOSE, (1001).to_bytes(2, "big") + b"Server shutting down")]
    assert refused(port)
    assert set(threading.enumerate()) == threads_before
    assert os_threads(os_threads_before) == os_threads_before
    assert live_greenlets() <= greenlets_before
    with pytest.raises(RuntimeError, match="stopped"):
        server.connect("/echo")


def test_on_close_runs_for_every_connection_at_stop() -> None:
    with serve(app) as server:
        for _ in range(2):
            server.connect("/echo")
        before = json.loads(urllib.request.urlopen(server.url + "/closed", timeout=5).read())
    with serve(app) as server:  # the views' list lives in this process: read it from a second server
        after = json.loads(urllib.request.urlopen(server.url + "/closed", timeout=5).read())
    assert after == [*before, 1001, 1001]


def test_an_import_string_is_served_in_process_too() -> None:
    with serve(APP) as server:
        ws = server.connect("/echo")
        ws.send("by name")
        assert ws.receive() == "by name"


def test_a_port_in_use_is_an_error_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for server in ("thread", "gunicorn"):
            started = time.monotonic()
            refused_port = pytest.raises(
                RuntimeError, match=rf"cannot listen on 127.0.0.1:{port}: .*Address already in use"
            )
            with refused_port, serve(APP, server, port=port):
                pass
            assert time.monotonic() - started < 2


def test_wrong_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match=r"give it as 'package\.module:app'"), serve(app, "gunicorn"):
        pass
    with pytest.raises(ValueError, match="server must be one of"), serve(app, "uwsgi"):
        pass
    with pytest.raises(ValueError, match="worker must be one of"), serve(APP, "gunicorn", worker="sync"):
        pass


def test_serving_works_in_a_monkey_patched_process_too() -> None:
    script = """
from gevent import monkey; monkey.patch_all()
import socket, sys, threading
from duck_ws_sync.testing import serve
from tests.testing.apps import app
socket.getaddrinfo("127.0.0.1", 80)  # gevent's resolver starts its own thread first
before = set(sys._current_frames())
with serve(app) as server:
    ws = server.connect("/echo")
    ws.send("patched")
    assert ws.receive() == "patched"
assert ws.close_code == 1001
assert set(sys._current_frames()) == before, "a thread was left behind"
print("OK")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stdout + result.stderr


# gunicorn.


@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_gunicorn_serves_and_leaves_no_process(worker: str) -> None:
    with serve(APP, "gunicorn", worker=worker) as server:
        assert server.pid in children()
        ws = server.connect("/echo")
        ws.send(f"on {worker}")
        assert ws.receive() == f"on {worker}"
        port, pid = server.port, server.pid
    assert ws.close_code == 1001
    assert f"Using worker: {worker}" in server.output
    assert refused(port)
    assert pid not in children()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_gunicorn_arguments_and_environment_pass_through() -> None:
    arguments = ["--threads", "3", "--log-level", "debug"]
    with serve(APP, "gunicorn", worker="gthread", args=arguments, env={"DUCK_TEST_MARK": "x"}) as server:
        ws = server.connect("/echo")
        ws.send("on a worker of three threads")
        assert ws.receive() == "on a worker of three threads"
        assert json.loads(urllib.request.urlopen(server.url + "/env/DUCK_TEST_MARK", timeout=5).read()) == "x"
        # gunicorn logs its configuration at debug level: the arguments came after the defaults.
        assert re.search(r"^\s*threads: 3$", server.output, re.MULTILINE), server.output


def test_an_application_that_fails_to_import_fails_start_up_with_its_output() -> None:
    before = children()
    started = time.monotonic()
    failed = pytest.raises(RuntimeError, match=r"(?s)exited with status \d+:.*ModuleNotFoundError.*no_such_module")
    with failed, serve("tests.testing.no_such_module:app", "gunicorn"):
        pass
    assert time.monotonic() - started < 10
    assert children() == before
