"""Security on every server: ``authorize`` before the 101, trusted proxies, ``MAX_MESSAGE_RATE``.

The app is tests/integration/apps/security_app.py. A trusted proxy is
played by a client whose socket is bound to 127.0.0.2 (all of 127/8 is
loopback): the app trusts 127.0.0.2 and 10.0.0.0/8, and not 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import websocket

from tests.integration.conftest import Server, serve

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    # gunicorn sets wsgi.url_scheme from X-Forwarded-Proto itself for the
    # peers of --forwarded-allow-ips (127.0.0.1 by default): the same proxy as the app's.
    gunicorn = ["--forwarded-allow-ips", "127.0.0.2"] if server_kind in ("gunicorn", "gthread") else []
    with serve(server_kind, "tests.integration.apps.security_app:app", *gunicorn) as running:
        yield running


def refused(server: Server, path: str, **options: object) -> websocket.WebSocketBadStatusException:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(server.url(path), timeout=TIMEOUT, **options)
    return caught.value


def connect_from(
    server: Server, source: str, path: str, headers: list[str], origin: str | None = None
) -> websocket.WebSocket:
    """A WebSocket whose TCP connection comes from ``source`` (a loopback address); a browser's if ``origin``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    origin_options = {"origin": origin} if origin else {"suppress_origin": True}
    return websocket.create_connection(server.url(path), timeout=TIMEOUT, socket=sock, header=headers, **origin_options)


# authorize


def test_authorize_refuses_with_401_and_its_header_and_reason_and_no_websocket(server: Server) -> None:
    error = refused(server, "/ws/private")
    assert error.status_code == 401
    assert error.resp_headers["www-authenticate"] == 'Bearer realm="chat"'
    assert error.resp_headers["content-type"] == "text/plain; charset=utf-8"
    assert error.resp_body == b"Log in first\n"
    assert "sec-websocket-accept" not in error.resp_headers


def test_authorize_refuses_with_403(server: Server) -> None:
    error = refused(server, "/ws/private?token=banned")
    assert error.status_code == 403
    assert error.resp_body == b"You are banned\n"


def test_an_exception_in_authorize_is_a_500_with_a_generic_reason_and_a_logged_traceback(server: Server) -> None:
    error = refused(server, "/ws/private?token=crash")
    assert error.status_code == 500
    assert error.resp_body == b"Internal Server Error\n"  # nothing of the exception reaches the client
    deadline = time.monotonic() + TIMEOUT
    while "the session store is down" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    assert "authorize of WebSocket view Private failed" in log
    assert "Traceback" in log and "RuntimeError: the session store is down" in log


def test_authorize_accepts_and_its_attributes_reach_the_hooks(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/private?token=alice"), timeout=TIMEOUT)
    try:
        assert json.loads(ws.recv()) == {"user": "alice", "subprotocol": None}
        ws.send("still here")
        assert ws.recv() == "still here"
    finally:
        ws.close()


def test_authorize_may_await(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/private?token=slow"), timeout=TIMEOUT)
    try:
        assert json.loads(ws.recv())["user"] == "slow"
    finally:
        ws.close()


def test_a_bearer_token_in_sec_websocket_protocol(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/private"), timeout=TIMEOUT, subprotocols=["bearer", "bob"])
    try:
        assert ws.getsubprotocol() == "bearer"
        assert json.loads(ws.recv()) == {"user": "bob", "subprotocol": "bearer"}
    finally:
        ws.close()


def test_refusals_leave_the_worker_serving(server: Server) -> None:
    for token in ("banned", "crash") * 5:
        refused(server, f"/ws/private?token={token}")
    ws = websocket.create_connection(server.url("/ws/private?token=carol"), timeout=TIMEOUT)
    try:
        assert json.loads(ws.recv())["user"] == "carol"
    finally:
        ws.close()


# Trusted proxies


FORWARDED_HEADERS = [
    "X-Forwarded-For: 198.51.100.7, 10.1.2.3",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: chat.example.com",
]


def whoami(
    server: Server, source: str, headers: list[str], origin: str | None = None, path: str = "/ws/whoami"
) -> dict[str, object]:
    ws = connect_from(server, source, path, headers, origin)
    try:
        return json.loads(ws.recv())
    finally:
        ws.close()


def test_forwarded_headers_from_a_trusted_proxy_give_the_real_client(server: Server) -> None:
    # 10.1.2.3 is a trusted proxy too: the client is the first untrusted hop from the right.
    seen = whoami(server, "127.0.0.2", FORWARDED_HEADERS)
    assert seen == {"client": ["198.51.100.7", 0], "scheme": "https", "host": f"127.0.0.1:{server.port}"}
    # X-Forwarded-Host counts only where proxy_headers lists it.
    seen = whoami(server, "127.0.0.2", FORWARDED_HEADERS, path="/xhost/ws/whoami")
    assert seen == {"client": ["198.51.100.7", 0], "scheme": "https", "host": "chat.example.com"}


def test_a_clients_own_forwarded_and_x_forwarded_host_are_ignored_by_default(server: Server) -> None:
    # Behind the nginx of docs/deployment.md, which sets X-Forwarded-For and
    # passes the client's Forwarded and X-Forwarded-Host through untouched.
    headers = [
        "X-Forwarded-For: 203.0.113.7",
        "Forwarded: for=10.1.2.3;proto=https;host=admin.internal",
        "X-Forwarded-Host: admin.internal",
    ]
    seen = whoami(server, "127.0.0.1", headers, path="/local/ws/whoami")  # 127.0.0.1 trusted there
    assert seen == {"client": ["203.0.113.7", 0], "scheme": "http", "host": f"127.0.0.1:{server.port}"}


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("for=10.1.2.3, for=203.0.113.7", "203.0.113.7"),  # what a proxy that appends makes of a forged element
        ('for=10.1.2.3, for="x, for=203.0.113.7', "127.0.0.2"),  # a forged unclosed quote: the direct peer
    ],
)
def test_proxy_headers_forwarded(server: Server, forwarded: str, client: str) -> None:
    seen = whoami(
        server, "127.0.0.2", [f"Forwarded: {forwarded}", "X-Forwarded-For: 198.51.100.9"], path="/rfc7239/ws/whoami"
    )
    assert seen["client"][0] == client


def test_forwarded_headers_from_anyone_else_are_ignored(server: Server) -> None:
    seen = whoami(server, "127.0.0.1", FORWARDED_HEADERS)
    assert seen["client"][0] == "127.0.0.1"
    assert seen["scheme"] == "http"
    assert seen["host"] == f"127.0.0.1:{server.port}"


def test_a_spoofed_left_entry_is_not_taken_for_the_client(server: Server) -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4" itself; the proxy appended what it saw.
    seen = whoami(server, "127.0.0.2", ["X-Forwarded-For: 1.2.3.4, 203.0.113.9"])
    assert seen["client"] == ["203.0.113.9", 0]


def test_the_rfc_7239_forwarded_header(server: Server) -> None:
    headers = ['Forwarded: for="[2001:db8::17]:4711";proto=https;host=chat.example.com']
    seen = whoami(server, "127.0.0.2", headers, path="/rfc7239/ws/whoami")
    assert seen == {"client": ["2001:db8::17", 4711], "scheme": "https", "host": "chat.example.com"}


def test_the_same_origin_check_uses_the_forwarded_scheme_and_host(server: Server) -> None:
    page, where = "https://chat.example.com", "/xhost/ws/whoami"
    assert whoami(server, "127.0.0.2", FORWARDED_HEADERS, page, where)["host"] == "chat.example.com"
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        whoami(server, "127.0.0.2", FORWARDED_HEADERS, "http://chat.example.com", where)
    assert caught.value.status_code == 403  # an http page is another origin than an https request
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        whoami(server, "127.0.0.1", FORWARDED_HEADERS, page, where)
    assert caught.value.status_code == 403  # untrusted: Host is 127.0.0.1:port, not chat.example.com


# MAX_MESSAGE_RATE


def test_a_flooding_client_is_closed_with_1008_and_another_is_unaffected(server: Server) -> None:
    calm = websocket.create_connection(server.url("/ws/flood"), timeout=TIMEOUT)
    flooder = websocket.create_connection(server.url("/ws/flood"), timeout=TIMEOUT)
    try:
        for number in range(200):  # 20 a second are allowed, in bursts of 20
            try:
                flooder.send(f"flood {number}")
            except (BrokenPipeError, ConnectionResetError, websocket.WebSocketConnectionClosedException):
                break
        flooder.settimeout(TIMEOUT)
        while True:
            opcode, data = flooder.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert data.startswith(b"flood ")
        assert int.from_bytes(data[:2], "big") == 1008
        assert data[2:] == b"Message rate limit exceeded"
        # The calm client on the same worker, at its pace, goes on.
        for number in range(10):
            calm.send(f"calm {number}")
            assert calm.recv() == f"calm {number}"
            time.sleep(0.06)
        deadline = time.monotonic() + TIMEOUT
        while "over MAX_MESSAGE_RATE" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "closing WebSocket /ws/flood of 127.0.0.1:" in server.log()
        assert "with 1008: over MAX_MESSAGE_RATE (20 frames a second)" in server.log()
    finally:
        calm.close()
        flooder.close()


def test_a_client_at_the_limit_is_not_closed(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/flood"), timeout=TIMEOUT)
    try:
        for number in range(20):  # one burst
            ws.send(str(number))
        for number in range(20):
            assert ws.recv() == str(number)
        time.sleep(0.5)  # ten refilled
        for number in range(10):
            ws.send(str(number))
            assert ws.recv() == str(number)
    finally:
        ws.close()


def test_a_request_head_that_never_ends_is_dropped_by_gunicorns_gevent_worker(server: Server) -> None:
    if server.kind != "gunicorn":
        pytest.skip(
            "gunicorn -k gevent bounds the request head by --keep-alive; docs/security.md says what the others do"
        )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed, without a word
        assert time.monotonic() - started < 5  # --keep-alive, 2 s by default
