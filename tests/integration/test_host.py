"""The WSGI host around a taken-over socket: exact bytes on the wire, the worker's health, TLS, unsupported servers."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from duck_ws_sync.protocol import accept_key
from tests.helpers import BINARY, CLOSE, PING, PONG, TEXT, frame, server_close, server_frame
from tests.integration.conftest import ROOT, Server, serve
from tests.integration.wire import RawClient

APP = "tests.integration.apps.host_app:app"
TIMEOUT = 10.0
SUPPORTED = (b"-k gevent", b"-k gthread", b"gevent.pywsgi.WSGIServer", b"werkzeug")


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, APP) as running:
        yield running


def http_get(port: int, path: str, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP GET on a new connection."""
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def worker_pid(port: int) -> int:
    status, _headers, body = http_get(port, "/pid")
    assert status == 200
    return int(body)


def wait_for_log(output: list[str], pattern: str, timeout: float = 5.0) -> str:
    """The first line of a server's output that matches ``pattern``, waiting for it to be printed."""
    compiled = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        for line in list(output):
            if compiled.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(output)}")
        time.sleep(0.02)


def open_session(port: int, path: str = "/ws/echo", then: bytes = b"") -> RawClient:
    client = RawClient(port)
    assert client.handshake(path, then=then) == 101
    return client


# Nothing after the session; TCP closed by the server.


def test_client_close_then_nothing_more(server: Server) -> None:
    """Everything after the 101 head is exactly our echo and one Close; then the server closes TCP."""
    with open_session(server.port) as client:
        client.send_frame(TEXT, b"hello")
        client.send_close(1000, b"done")
        started = time.monotonic()
        assert client.read_to_eof() == server_frame(TEXT, b"hello") + server_close(1000)
        assert time.monotonic() - started < 2.0  # closed promptly, not at a timeout


def test_server_close_then_nothing_more(server: Server) -> None:
    with open_session(server.port) as client:
        client.send_frame(TEXT, b"close me")
        assert client.read_close() == (1000, b"as asked")
        client.send_close(1000)
        assert client.read_to_eof() == b""


def test_view_exception_closes_1011_then_nothing_more(server: Server) -> None:
    """No HTTP 500 is written onto the WebSocket stream after a failing hook."""
    with open_session(server.port, "/ws/crash") as client:
        client.send_frame(TEXT, b"before")
        assert client.read_frame() == (True, False, TEXT, b"before")
        client.send_frame(TEXT, b"raise")
        assert client.read_close() == (1011, b"Internal error")
        client.send_close(1011)
        assert client.read_to_eof() == b""


def test_worker_keeps_serving_http_and_websockets(server: Server) -> None:
    pid = worker_pid(server.port)
    for number in range(25):
        with open_session(server.port) as client:
            client.send_frame(TEXT, f"message {number}".encode())
            client.send_close(1000)
            assert client.read_to_eof() == server_frame(TEXT, f"message {number}".encode()) + server_close(1000)
        status, _headers, body = http_get(server.port, f"/plain/{number}")
        assert (status, body) == (200, f"plain GET /plain/{number}".encode())
        ws = websocket.create_connection(server.url("/ws/echo"), timeout=TIMEOUT)
        try:
            ws.send_binary(bytes([number]) * 1000)
            assert ws.recv() == bytes([number]) * 1000
        finally:
            ws.close()
    assert worker_pid(server.port) == pid  # the same worker process, never restarted


# The 101 response.


def test_101_response_head(server: Server) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with RawClient(server.port) as client:
        assert client.handshake("/ws/echo", headers={"Sec-WebSocket-Key": key}) == 101
        assert client.headers["upgrade"].lower() == "websocket"
        assert client.headers["connection"].lower() == "upgrade"
        assert client.headers["sec-websocket-accept"] == accept_key(key)
        for forbidden in ("content-type", "content-length", "transfer-encoding"):
            assert forbidden not in client.headers, client.headers
        # The server adds nothing after the head: the first bytes are the first frame.
        assert client.buffer == b""
        client.send_frame(PING, b"are you there")
        assert client.read_frame() == (True, False, PONG, b"are you there")
        client.send_close(1000)
        assert client.read_to_eof() == server_close(1000)


def test_101_status_line_is_exact(server: Server) -> None:
    with RawClient(server.port) as client:
        client.send(RawClient.upgrade_request("/ws/echo"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.sock.recv(65536)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert head.endswith(b"\r\n\r\n")  # nothing after the head: no body, no second response


# Frames sent with the upgrade request (Duck defect 4).


def test_frame_in_the_upgrade_write_is_delivered(server: Server) -> None:
    with open_session(server.port, then=frame(TEXT, b"early bird")) as client:
        assert client.read_frame() == (True, False, TEXT, b"early bird")
        client.send_frame(TEXT, b"second")
        assert client.read_frame() == (True, False, TEXT, b"second")


def test_several_frames_in_the_upgrade_write_are_delivered(server: Server) -> None:
    pipelined = (
        frame(TEXT, b"one")
        + frame(BINARY, b"\x00two")
        + frame(PING, b"ping")
        + frame(TEXT, b"thr", fin=False)
        + frame(0x0, b"ee")
        + close_frame_bytes()
    )
    with open_session(server.port, then=pipelined) as client:
        received = []
        while True:
            _fin, _rsv1, opcode, payload = client.read_frame()
            received.append((opcode, payload))
            if opcode == CLOSE:
                break
        data_frames = [item for item in received if item[0] in (TEXT, BINARY)]
        assert data_frames == [(TEXT, b"one"), (BINARY, b"\x00two"), (TEXT, b"three")]
        assert (PONG, b"ping") in received
        assert received[-1] == (CLOSE, b"\x03\xe8")
        assert len(received) == 5
        assert client.read_to_eof() == b""


def close_frame_bytes() -> bytes:
    return frame(CLOSE, (1000).to_bytes(2, "big"))


def test_partial_frame_in_the_upgrade_write_is_completed_later(server: Server) -> None:
    whole = frame(TEXT, b"split across the upgrade write and the next one")
    with open_session(server.port, then=whole[:7]) as client:
        client.send(whole[7:])
        assert client.read_frame() == (True, False, TEXT, b"split across the upgrade write and the next one")


def test_large_frame_in_the_upgrade_write_is_delivered(server: Server) -> None:
    payload = os.urandom(300_000)
    with open_session(server.port, then=frame(BINARY, payload)) as client:
        assert client.read_frame() == (True, False, BINARY, payload)


# A view's failure does not reach other connections or the worker.


def test_exception_in_one_view_leaves_others_alone(server: Server) -> None:
    pid = worker_pid(server.port)
    with open_session(server.port) as bystander:
        bystander.send_frame(TEXT, b"before")
        assert bystander.read_frame() == (True, False, TEXT, b"before")
        for _ in range(3):
            with open_session(server.port, "/ws/crash") as crashing:
                crashing.send_frame(TEXT, b"raise")
                assert crashing.read_close() == (1011, b"Internal error")
                crashing.send_close(1011)
                assert crashing.read_to_eof() == b""
            with open_session(server.port, "/ws/crash-open") as crashing:
                assert crashing.read_close() == (1011, b"Internal error")
                crashing.send_close(1011)
                assert crashing.read_to_eof() == b""
        bystander.send_frame(TEXT, b"after")
        assert bystander.read_frame() == (True, False, TEXT, b"after")
        bystander.send_close(1000)
        assert bystander.read_to_eof() == server_close(1000)
    with open_session(server.port) as fresh:
        fresh.send_frame(TEXT, b"new")
        assert fresh.read_frame() == (True, False, TEXT, b"new")
    assert worker_pid(server.port) == pid


def test_cancelled_error_escaping_a_hook_is_a_view_failure(server: Server) -> None:
    """A hook that awaits a task it cancelled gets CancelledError: the view failed, the session was not cancelled.

    The connection must end like any other failing hook (1011, a proper closing
    handshake), and the worker and other connections must not notice.
    """
    pid = worker_pid(server.port)
    with open_session(server.port) as bystander:
        with open_session(server.port, "/ws/crash") as crashing:
            crashing.send_frame(TEXT, b"cancelled")
            assert crashing.read_close() == (1011, b"Internal error")
            crashing.send_close(1011)
            assert crashing.read_to_eof() == b""
        bystander.send_frame(TEXT, b"still here")
        assert bystander.read_frame() == (True, False, TEXT, b"still here")
    assert worker_pid(server.port) == pid


# TLS through gunicorn.


@pytest.mark.parametrize("kind", ["gunicorn", "gthread"])
def test_wss_through_gunicorn(certificates: tuple[Path, Path, Path], kind: str) -> None:
    ca_file, cert_file, key_file = certificates
    with serve(kind, APP, "--certfile", str(cert_file), "--keyfile", str(key_file)) as tls:
        url = tls.url("/ws/echo", scheme="wss")
        big = os.urandom(1024 * 1024)
        for _ in range(2):  # the worker serves a second TLS WebSocket after the first
            ws = websocket.create_connection(url, timeout=TIMEOUT, sslopt={"ca_certs": str(ca_file)})
            try:
                ws.send("hello over TLS")
                assert ws.recv() == "hello over TLS"
                ws.send_binary(big)
                assert ws.recv() == big
                ws.send_close(1000)
                opcode, close = ws.recv_data(control_frame=True)
                assert opcode == websocket.ABNF.OPCODE_CLOSE
                assert close[:2] == (1000).to_bytes(2, "big")
            finally:
                ws.close()
        context = ssl.create_default_context(cafile=str(ca_file))
        status, _headers, body = http_get(tls.port, "/plain", context)
        assert (status, body) == (200, b"plain GET /plain")
        # (conftest's readiness probe connects without TLS: gevent logs that handshake failure, nothing else.)
        assert "Error handling request" not in tls.log(), tls.log()
        assert "duck_ws_sync" not in tls.log(), tls.log()


# Servers that cannot hand over their socket.


def assert_clear_refusal(client: RawClient, supported: tuple[bytes, ...] = SUPPORTED) -> None:
    assert client.status == 500
    assert client.headers["content-type"].startswith("text/plain")
    for name in supported:
        assert name in client.body, client.body
    assert len(client.body) < 300  # a plain reason, not a debug page


def test_gunicorn_sync_worker_refuses_clearly() -> None:
    with serve("gunicorn", APP, "-k", "sync") as sync:
        wait_for_log(sync.output, r"Using worker: sync")  # the later -k overrode conftest's -k gevent
        pid = worker_pid(sync.port)
        with RawClient(sync.port) as client:
            client.handshake("/ws/echo")
            assert_clear_refusal(client, (b"sync worker", b"-k gevent", b"-k gthread"))
            assert client.read_to_eof() == b""  # answered and closed, not hung
        line = wait_for_log(sync.output, r"cannot serve a WebSocket")
        assert "sync worker" in line and "-k gevent or -k gthread" in line
        status, _headers, body = http_get(sync.port, "/plain")
        assert (status, body) == (200, b"plain GET /plain")
        assert worker_pid(sync.port) == pid


@contextlib.contextmanager
def wsgiref_server() -> Iterator[tuple[int, list[str]]]:
    """The app on wsgiref.simple_server, in a subprocess of ours: (port, output lines)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.apps.host_app"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    listening = threading.Event()
    port = 0

    def pump() -> None:
        nonlocal port
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"LISTENING (\d+)", line)
            if match:
                port = int(match.group(1))
                listening.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert listening.wait(20), "".join(output)
        yield port, output
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_wsgiref_refuses_clearly() -> None:
    with wsgiref_server() as (port, output):
        with RawClient(port) as client:
            client.handshake("/ws/echo")
            assert_clear_refusal(client)
            assert client.read_to_eof() == b""
        line = wait_for_log(output, r"cannot serve a WebSocket")
        assert "-k gevent" in line and "-k gthread" in line and "gevent.pywsgi" in line and "werkzeug" in line
        status, _headers, body = http_get(port, "/plain")
        assert (status, body) == (200, b"plain GET /plain")


def test_wsgiref_rejected_handshake_keeps_its_status() -> None:
    """Refusals go through start_response, so they must be valid PEP 3333 responses (no hop-by-hop headers)."""
    with wsgiref_server() as (port, output), RawClient(port) as client:
        assert client.handshake("/ws/echo", method="POST") == 405, (client.body, "".join(output))
        assert client.headers["allow"] == "GET"
