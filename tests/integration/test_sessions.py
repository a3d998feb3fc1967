"""A session outlives its WSGI call: the call ends right after the 101, and the process closes what is left at exit.

The server lets go of the request at once (its greenlet or thread, its
parser, its slot among gunicorn's ``--worker-connections``), the WebSocket
goes on in greenlets (gevent) or in a thread of its own (gthread), and a
worker that exits (SIGTERM, ``--max-requests``) first closes every open
WebSocket with 1001 and runs its ``on_close``. Under werkzeug the session
runs inside the call (``test_threads.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.helpers import CLOSE, TEXT
from tests.integration.conftest import Server, serve
from tests.integration.test_views import (
    APP,
    answer_close,
    close_code,
    events,
    http_request,
    named,
    new_id,
    raw_client,
    served,
    the_on_close,
    wait_for_log,
)


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    if server_kind == "werkzeug":
        pytest.skip("werkzeug writes to the socket when the call ends: its sessions run inside the call")
    with serve(server_kind, APP) as running:
        yield running


def test_the_wsgi_call_ends_after_the_handshake_and_the_websocket_goes_on(server: Server) -> None:
    key = new_id()
    with raw_client(server, f"/ws/lifecycle?id={key}") as client:
        recorded = events(server, key, wait="returned")
        assert named(recorded, "returned"), recorded
        assert not named(recorded, "on_close") and not named(recorded, "served")
        for index in range(3):
            client.send_frame(TEXT, f"after the call {index}".encode())
            assert client.read_frame() == (True, False, TEXT, f"after the call {index}".encode())
        client.send_close(1000)
        assert client.read_frame()[2] == CLOSE
        assert client.read_to_eof() == b""
    assert the_on_close(served(server, key))["code"] == 1000


@pytest.mark.parametrize("worker", ["gunicorn", "gthread"])
def test_websockets_do_not_hold_gunicorns_worker_connections(worker: str) -> None:
    """Five WebSockets on a worker of two connections (and of one thread, on gthread): all echo, HTTP still answers."""
    threads = ["--threads", "1"] if worker == "gthread" else []
    with serve(worker, APP, "--worker-connections", "2", *threads) as own:
        clients = [raw_client(own, f"/ws/lifecycle?id={new_id()}") for _ in range(5)]
        try:
            started = time.monotonic()
            assert events(own, new_id()) == []  # a plain HTTP request
            assert time.monotonic() - started < 1.0
            for index, client in enumerate(clients):
                client.send_frame(TEXT, f"echo {index}".encode())
                assert client.read_frame() == (True, False, TEXT, f"echo {index}".encode())
        finally:
            for client in clients:
                client.sock.close()


def test_a_worker_recycled_by_max_requests_closes_its_websockets_with_1001() -> None:
    with serve("gunicorn", APP, "--max-requests", "3") as own:
        key = new_id()
        with raw_client(own, f"/ws/lifecycle?id={key}&print=1") as client:  # request 1
            client.send_frame(TEXT, b"hi")
            assert client.read_frame() == (True, False, TEXT, b"hi")
            for _ in range(2):  # requests 2 and 3: the worker then exits
                assert http_request(own, f"/events?id={new_id()}")[0] == 200
            _fin, _rsv1, opcode, payload = client.read_frame()
            assert (opcode, close_code(payload), payload[2:]) == (CLOSE, 1001, b"Server shutting down")
            answer_close(client, 1001)
        wait_for_log(own, f"ON_CLOSE id={key} code=1001")


def test_sigterm_closes_websockets_with_1001_and_on_close_runs() -> None:
    with serve("gunicorn", APP) as own:
        keys = [new_id() for _ in range(3)]
        clients = [raw_client(own, f"/ws/lifecycle?id={key}&print=1") for key in keys]
        try:
            own.process.terminate()
            for client in clients:
                _fin, _rsv1, opcode, payload = client.read_frame()
                assert (opcode, close_code(payload), payload[2:]) == (CLOSE, 1001, b"Server shutting down")
                answer_close(client, 1001)
            own.process.wait(10)
        finally:
            for client in clients:
                client.sock.close()
        for key in keys:
            wait_for_log(own, f"ON_CLOSE id={key} code=1001")
