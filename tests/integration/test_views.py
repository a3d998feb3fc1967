"""``WebSocketView`` on real servers: gunicorn's gevent and gthread workers, gevent.pywsgi and werkzeug.

Every test runs under every server (the module-scoped ``server`` fixture is
parametrized by ``server_kind``), against the views of
``tests/integration/apps/views_app.py``. What happens on the server side
(on_close calls, cancelled tasks, results of sends) is read back through the
app's ``/events`` route, which can wait for an event; ``served`` is recorded
when a connection's session has ended (its ``on_close`` included), after
which nothing more can happen for that connection.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket

from tests.helpers import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, close_frame, frame
from tests.integration.conftest import Server, serve
from tests.integration.wire import RawClient

APP = "tests.integration.apps.views_app:app"


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, APP) as running:
        yield running


# Helpers.


def new_id() -> str:
    """A client-chosen id under which a view records its events."""
    return uuid.uuid4().hex


def http_request(
    server: Server, path: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP request; return the status, the headers (lower-case names) and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def events(server: Server, key: str, wait: str | None = None, count: int = 1, timeout: float = 8) -> list[dict]:
    """The events recorded for ``key``; with ``wait``, once ``count`` events of that name exist (or at ``timeout``)."""
    path = f"/events?id={key}"
    if wait is not None:
        path += f"&wait={wait}&count={count}&timeout={timeout}"
    status, _headers, body = http_request(server, path)
    assert status == 200
    return json.loads(body)


def served(server: Server, key: str) -> list[dict]:
    """The events of a connection that is over (its session has ended, on_close included)."""
    recorded = events(server, key, wait="served")
    assert named(recorded, "served"), f"the connection {key} did not end: {recorded}"
    return recorded


def named(recorded: list[dict], name: str) -> list[dict]:
    return [event for event in recorded if event["event"] == name]


def the_on_close(recorded: list[dict]) -> dict:
    """The one on_close call among the events (fails if there were none or several)."""
    calls = named(recorded, "on_close")
    assert len(calls) == 1, f"on_close ran {len(calls)} times: {recorded}"
    return calls[0]


def connect(server: Server, path: str, **options: Any) -> websocket.WebSocket:
    """A websocket-client connection (it answers pings by itself)."""
    return websocket.create_connection(server.url(path), timeout=10, **options)


def raw_client(server: Server, path: str, timeout: float = 10, **kwargs: Any) -> RawClient:
    """A RawClient that completed the opening handshake."""
    client = RawClient(server.port, timeout=timeout)
    status = client.handshake(path, **kwargs)
    assert status == 101, (status, client.body)
    return client


def read_message(client: RawClient) -> tuple[int, bytes]:
    """Read one whole data message (frames of other opcodes fail the test)."""
    fin, _rsv1, opcode, payload = client.read_frame()
    assert opcode in (TEXT, BINARY), (opcode, payload)
    while not fin:
        fin, _rsv1, continuation, more = client.read_frame()
        assert continuation == CONTINUATION
        payload += more
    return opcode, payload


def answer_close(client: RawClient, code: int | None, reason: bytes = b"") -> None:
    """Answer the server's Close and check that it then closes TCP."""
    client.send_close(code, reason)
    assert client.read_to_eof() == b""


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame, masked quickly (one big-integer XOR) for large payloads."""
    mask = os.urandom(4)
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + mask + masked


def wait_for_log(server: Server, text: str, timeout: float = 10) -> str:
    """The server's output once it contains ``text`` (the output is read by another thread)."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not in the server's output:\n{server.log()}"
        time.sleep(0.05)
    return server.log()


def close_code(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]


# 1. Routing.


def test_path_placeholders_become_view_kwargs(server):
    ws = connect(server, "/ws/items/widget/42")
    try:
        assert json.loads(ws.recv()) == {
            "kwargs": {"name": "widget", "number": 42},
            "types": {"name": "str", "number": "int"},
        }
    finally:
        ws.close()


def test_path_slug_and_path_converters_become_view_kwargs(server):
    ws = connect(server, "/ws/files/my-kind_2/a/b/c.txt")
    try:
        assert json.loads(ws.recv())["kwargs"] == {"kind": "my-kind_2", "rest": "a/b/c.txt"}
    finally:
        ws.close()


def test_path_placeholder_with_non_ascii_characters_is_decoded(server):
    # WSGI gives PATH_INFO as UTF-8 bytes decoded as latin-1; the route must see "café".
    ws = connect(server, "/ws/items/caf%C3%A9/1")
    try:
        assert json.loads(ws.recv())["kwargs"] == {"name": "café", "number": 1}
    finally:
        ws.close()


def test_re_path_named_groups_become_view_kwargs(server):
    ws = connect(server, "/ws/re/2024/abc")
    try:
        assert json.loads(ws.recv()) == {
            "kwargs": {"year": "2024", "code": "abc"},
            "types": {"year": "str", "code": "str"},
        }
    finally:
        ws.close()


@pytest.mark.parametrize(
    "path",
    ["/ws/items/widget/forty-two", "/ws/items/widget", "/ws/re/24/abc", "/ws/re/2024/ABC", "/ws/echo/more", "/ws/ech"],
)
def test_upgrade_request_that_matches_no_route_goes_to_the_wrapped_app(server, path):
    with RawClient(server.port) as client:
        assert client.handshake(path) == 404
        assert client.headers["x-fallback"] == "yes"
        assert json.loads(client.body) == {"fallback": path}


def test_plain_request_reaches_the_wrapped_app_untouched(server):
    status, headers, body = http_request(
        server, "/plain/some/where?a=1&b=two", method="POST", body=b"hello body", headers={"X-Test": "yes"}
    )
    assert status == 200
    assert headers["x-fallback"] == "yes"
    assert headers["set-cookie"] == "fallback=1; Path=/"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "method": "POST",
        "path": "/plain/some/where",
        "query": "a=1&b=two",
        "body": "hello body",
        "x_test": "yes",
        "upgrade": None,
    }


def test_upgrade_request_on_a_plain_path_reaches_the_wrapped_app(server):
    with RawClient(server.port) as client:
        assert client.handshake("/plain/upgrade?x=1") == 200
        assert client.headers["x-fallback"] == "yes"
        assert json.loads(client.body)["upgrade"] == "websocket"


def test_middleware_without_app_answers_404_elsewhere(server):
    status, headers, body = http_request(server, "/bare/nothing")
    assert status == 404
    assert headers["content-type"].startswith("text/plain")
    assert body == b"Not Found\n"
    assert "x-fallback" not in headers
    with RawClient(server.port) as client:
        assert client.handshake("/bare/nothing") == 404
        assert client.body == b"Not Found\n"
    ws = connect(server, "/bare/ws")  # its own route works
    try:
        ws.send("through the bare middleware")
        assert ws.recv() == "through the bare middleware"
    finally:
        ws.close()


NO_UPGRADE = {"Upgrade": None, "Connection": None, "Sec-WebSocket-Key": None, "Sec-WebSocket-Version": None}


@pytest.mark.parametrize(
    ("method", "headers", "status", "reason", "extra_header"),
    [
        pytest.param("GET", NO_UPGRADE, 426, "needs Upgrade: websocket", ("upgrade", "websocket"), id="plain-get"),
        pytest.param("POST", {}, 405, "must use GET, not POST", ("allow", "GET"), id="post"),
        pytest.param(
            "GET", {"Sec-WebSocket-Version": "99"}, 426, "version 99", ("sec-websocket-version", "13"), id="version"
        ),
        pytest.param("GET", {"Connection": "keep-alive"}, 400, "needs Connection: Upgrade", None, id="no-connection"),
        pytest.param("GET", {"Sec-WebSocket-Key": "dG9vIHNob3J0"}, 400, "Sec-WebSocket-Key", None, id="bad-key"),
        pytest.param("GET", {"Origin": "http://evil.example"}, 403, "Origin http://evil.example", None, id="origin"),
    ],
)
def test_websocket_route_without_valid_upgrade_gets_plain_text_4xx(
    server, method, headers, status, reason, extra_header
):
    with RawClient(server.port) as client:
        assert client.handshake("/ws/echo", headers, method=method) == status
        assert client.headers["content-type"].startswith("text/plain")
        text = client.body.decode()
        assert reason in text
        assert len(text) < 200
        assert "Traceback" not in text
        if extra_header is not None:
            assert client.headers[extra_header[0]] == extra_header[1]
    assert "Traceback" not in server.log()


def test_same_origin_upgrade_is_accepted(server):
    with raw_client(server, "/ws/echo", headers={"Origin": "http://127.0.0.1"}) as client:
        client.send_frame(TEXT, b"same origin")
        assert read_message(client) == (TEXT, b"same origin")


def test_methods_restriction_refuses_other_methods_with_405(server):
    with RawClient(server.port) as client:
        assert client.handshake("/ws/only-post") == 405
        assert client.headers["allow"] == "POST"
        assert b"Method GET not allowed" in client.body
    with RawClient(server.port) as client:
        assert client.handshake("/ws/only-get", method="POST") == 405
        assert client.headers["allow"] == "GET"
    with raw_client(server, "/ws/only-get") as client:
        client.send_frame(TEXT, b"allowed")
        assert read_message(client) == (TEXT, b"allowed")


def test_duck_defect_4_frame_sent_with_the_upgrade_request_is_delivered(server):
    with raw_client(server, "/ws/echo", then=frame(TEXT, b"pipelined")) as client:
        assert read_message(client) == (TEXT, b"pipelined")


# 2. The view's request, kwargs and state.


def test_view_request_exposes_the_upgrade_request(server, server_kind):
    key = new_id()
    ws = connect(
        server,
        f"/ws/request/7?id={key}&a=1&a=2&empty=",
        header=["X-Custom-Thing: Value 1"],
        cookie="sid=abc123; theme=dark",
    )
    try:
        seen = json.loads(ws.recv())
        client_address = list(ws.sock.getsockname())
    finally:
        ws.close()
    assert seen["path"] == "/ws/request/7"
    assert seen["method"] == "GET"
    assert seen["GET"] == {"id": [key], "a": ["1", "2"], "empty": [""]}
    assert seen["query_params"] == {"id": key, "a": "2", "empty": ""}
    # Duck's QueryDict: get and indexing give the first value, getlist all.
    assert seen["GET_get"] == ["1", "1", ["1", "2"], None]
    assert seen["fullpath"] == f"/ws/request/7?id={key}&a=1&a=2&empty="
    assert seen["header_lower"] == seen["header_upper"] == seen["header_mapping"] == "Value 1"
    assert seen["header_missing"] is None
    assert seen["header_default"] == "fallback"
    assert seen["host"] == f"127.0.0.1:{server.port}"
    assert seen["cookies"] == {"sid": "abc123", "theme": "dark"}
    assert seen["client_address"] == client_address
    assert seen["environ"]["REQUEST_METHOD"] == "GET"
    assert seen["environ"]["PATH_INFO"] == "/ws/request/7"
    assert seen["environ"]["QUERY_STRING"] == f"id={key}&a=1&a=2&empty="
    assert seen["environ"]["HTTP_X_CUSTOM_THING"] == "Value 1"
    assert seen["environ"]["has_wsgi_input"]
    assert ("gunicorn" in seen["environ"]["SERVER_SOFTWARE"]) == (server_kind in ("gunicorn", "gthread"))
    assert seen["kwargs"] == {"number": 7}
    assert seen["state_is_open"] is True
    assert seen["state"] == 1


def test_view_state_is_open_in_on_receive_and_data_is_bytes(server):
    ws = connect(server, "/ws/request/1")
    try:
        ws.recv()  # what on_open sent
        ws.send("hello")
        assert json.loads(ws.recv()) == {
            "state_is_open": True,
            "state": 1,
            "data_type": "bytes",
            "data": "hello",
            "opcode": TEXT,
        }
        ws.send_binary(b"\x01\x02")
        seen = json.loads(ws.recv())
        assert (seen["opcode"], seen["data_type"], seen["state"]) == (BINARY, "bytes", 1)
    finally:
        ws.close()


# 3. on_close runs exactly once, however the connection ends.

LIFECYCLE_PATHS = ["/ws/lifecycle", "/ws/lifecycle-no-frame"]


@pytest.mark.parametrize("view_path", LIFECYCLE_PATHS)
def test_on_close_runs_once_after_client_close(server, view_path):
    key = new_id()
    with raw_client(server, f"{view_path}?id={key}") as client:
        client.send_frame(TEXT, b"hi")
        assert read_message(client) == (TEXT, b"hi")
        client.send_close(4000, b"client bye")
        assert client.read_close() == (4000, b"")  # the code is echoed
        assert client.read_to_eof() == b""
    recorded = served(server, key)
    assert named(recorded, "on_open") == [{"event": "on_open", "state": 1}]
    on_close = the_on_close(recorded)
    assert (on_close["code"], on_close["reason"]) == (4000, "client bye")
    if view_path == "/ws/lifecycle-no-frame":
        assert on_close["signature"] == "no-frame"


@pytest.mark.parametrize(
    ("command", "client_close", "code", "reason"),
    [
        pytest.param(None, close_frame(4000, b"client bye"), 4000, "client bye", id="client-close"),
        pytest.param(None, close_frame(None), 1005, "", id="client-close-without-code"),
        pytest.param(b"close:4001:server bye", close_frame(4001, b"ack"), 4001, "ack", id="answer-to-server-close"),
    ],
)
def test_on_close_frame_argument_is_the_clients_close_frame(server, command, client_close, code, reason):
    key = new_id()
    with raw_client(server, f"/ws/lifecycle?id={key}") as client:
        if command is not None:
            client.send_frame(TEXT, command)
            assert client.read_close()[0] == code
        client.send(client_close)
        if command is None:
            client.read_close()
        assert client.read_to_eof() == b""
    on_close = the_on_close(served(server, key))
    if command is None:
        assert (on_close["code"], on_close["reason"]) == (code, reason)
    else:  # close_code tells why it ended: our Close came first
        assert (on_close["code"], on_close["reason"]) == (4001, "server bye")
    payload = b"" if code == 1005 else struct.pack("!H", code) + reason.encode()
    assert on_close["frame"] == {"opcode": CLOSE, "payload": payload.hex()}


def test_duck_defect_13_on_close_without_frame_argument(server):
    key = new_id()
    ws = connect(server, f"/ws/lifecycle-no-frame?id={key}")
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close(status=1000, reason=b"done")
    on_close = the_on_close(served(server, key))
    assert on_close == {"event": "on_close", "code": 1000, "reason": "done", "signature": "no-frame"}
    assert "TypeError" not in server.log()


@pytest.mark.parametrize("view_path", LIFECYCLE_PATHS)
def test_on_close_runs_once_after_server_close_from_on_receive(server, view_path):
    key = new_id()
    with raw_client(server, f"{view_path}?id={key}") as client:
        client.send_frame(TEXT, b"close:4001:server bye")
        assert client.read_close() == (4001, b"server bye")
        answer_close(client, 1000, b"ack")
    on_close = the_on_close(served(server, key))
    # Why it ended is the first Close, ours (as in the access log and stats());
    # the frame on_close gets is the client's answer.
    assert (on_close["code"], on_close["reason"]) == (4001, "server bye")
    if "frame" in on_close:
        assert on_close["frame"]["payload"] == (struct.pack("!H", 1000) + b"ack").hex()


def test_on_close_runs_once_after_unanswered_server_close(server):
    key = new_id()
    with raw_client(server, f"/ws/lifecycle?id={key}") as client:
        client.send_frame(TEXT, b"close:4002:no answer")
        assert client.read_close() == (4002, b"no answer")
        assert client.read_to_eof() == b""  # CLOSE_TIMEOUT (1 s), then TCP is dropped
    on_close = the_on_close(served(server, key))
    assert (on_close["code"], on_close["reason"], on_close["frame"]) == (4002, "no answer", None)


@pytest.mark.parametrize("view_path", LIFECYCLE_PATHS)
@pytest.mark.parametrize(
    ("bad_bytes", "code"),
    [
        pytest.param(frame(TEXT, b"unmasked", mask=None), 1002, id="unmasked-frame"),
        pytest.param(frame(TEXT, b"\xff\xfe not utf-8"), 1007, id="invalid-utf-8"),
        pytest.param(frame(CONTINUATION, b"nothing to continue"), 1002, id="stray-continuation"),
        pytest.param(frame(0x3, b"reserved opcode"), 1002, id="reserved-opcode"),
    ],
)
def test_on_close_runs_once_after_protocol_error(server, view_path, bad_bytes, code):
    key = new_id()
    with raw_client(server, f"{view_path}?id={key}") as client:
        client.send(bad_bytes)
        received_code, _reason = client.read_close()
        assert received_code == code
        assert client.read_to_eof() == b""
    on_close = the_on_close(served(server, key))
    assert on_close["code"] == code
    if view_path == "/ws/lifecycle":
        assert on_close["frame"] is None


def test_on_close_runs_once_after_receive_timeout(server):
    key = new_id()
    with raw_client(server, f"/ws/receive-timeout?id={key}") as client:
        assert client.read_close() == (1001, b"receive timeout")
        answer_close(client, 1001)
    on_close = the_on_close(served(server, key))
    assert on_close["code"] == 1001


@pytest.mark.parametrize("view_path", LIFECYCLE_PATHS)
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_on_close_runs_once_after_dropped_tcp(server, view_path, how):
    key = new_id()
    client = raw_client(server, f"{view_path}?id={key}")
    client.send_frame(TEXT, b"hi")
    assert read_message(client) == (TEXT, b"hi")
    if how == "rst":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()
    on_close = the_on_close(served(server, key))
    assert on_close["code"] == 1006
    if view_path == "/ws/lifecycle":
        assert on_close["frame"] is None


@pytest.mark.parametrize("kind", ["gunicorn", "gthread"])
def test_on_close_runs_when_the_gunicorn_worker_shuts_down(kind):
    """SIGTERM to gunicorn with a WebSocket open: the view's on_close still runs (it prints a line)."""
    with serve(kind, APP) as own:
        # The observation channel works: a connection that ends prints its line.
        control = new_id()
        connect(own, f"/ws/lifecycle?id={control}&print=1").close()
        wait_for_log(own, f"ON_CLOSE id={control} code=1000")
        key = new_id()
        ws = connect(own, f"/ws/lifecycle?id={key}&print=1")
        try:
            ws.send("hi")
            assert ws.recv() == "hi"
            own.process.send_signal(signal.SIGTERM)
            own.process.wait(20)
            deadline = time.monotonic() + 5
            while f"ON_CLOSE id={key}" not in own.log() and time.monotonic() < deadline:
                time.sleep(0.05)  # the output pipe is read by another thread
        finally:
            ws.close(timeout=1)
        assert own.log().count(f"ON_CLOSE id={key}") == 1, own.log()


# 4. Messages one at a time, in order; reading goes on; backpressure.


def test_messages_reach_on_receive_one_at_a_time_in_arrival_order(server):
    with raw_client(server, "/ws/order") as client:
        client.send(b"".join(frame(TEXT, f"m{index}".encode()) for index in range(200)))
        client.send_frame(TEXT, b"report")
        _opcode, payload = read_message(client)
    report = json.loads(payload)
    assert report["max_active"] == 1
    assert report["seen"] == [f"m{index}" for index in range(200)]


def test_reading_goes_on_while_on_receive_awaits(server):
    key = new_id()
    with raw_client(server, f"/ws/lifecycle?id={key}") as client:
        client.send_frame(TEXT, b"sleep:2.5")
        events(server, key, wait="on_receive")
        client.send_frame(PING, b"still there?")
        assert client.read_frame() == (True, False, PONG, b"still there?")
        client.send_close(1000)
        # The Close is answered at CLOSE_TIMEOUT (1 s) while on_receive still sleeps:
        # no "slept" reply comes before it.
        assert client.read_frame() == (True, False, CLOSE, struct.pack("!H", 1000))
        assert client.read_to_eof() == b""
    on_close = the_on_close(served(server, key))  # once the hook has returned
    assert on_close["code"] == 1000


def test_backpressure_slow_on_receive_pushes_back_then_everything_arrives_in_order(server):
    key = new_id()
    count, size = 256, 256 * 1024  # 64 MiB
    with raw_client(server, f"/ws/backpressure?id={key}") as client:
        client.send_frame(TEXT, b"block")
        events(server, key, wait="blocked")
        stream = memoryview(
            b"".join(masked_frame(BINARY, index.to_bytes(4, "big") * (size // 4)) for index in range(count))
        )
        client.sock.settimeout(1.0)
        sent = 0
        with pytest.raises(TimeoutError):  # TCP pushes back: the server stopped reading
            while sent < len(stream):
                sent += client.sock.send(stream[sent : sent + 1024 * 1024])
        assert sent < len(stream) * 3 // 4, f"{sent} bytes accepted while on_receive was blocked"
        assert http_request(server, f"/release?id={key}")[0] == 200
        client.sock.settimeout(30)
        client.sock.sendall(stream[sent:])
        client.send_frame(TEXT, b"report")
        _opcode, payload = read_message(client)
    report = json.loads(payload)
    assert report["indices"] == list(range(count))
    assert report["sizes"] == [size]
    assert report["total"] == count * size
    assert named(events(server, key), "released")


# 5. Sending from any greenlet.


def test_view_broadcasts_to_other_connections_views(server):
    room = new_id()
    clients = {}
    try:
        for number, name in enumerate("abc", start=1):
            clients[name] = connect(server, f"/ws/chat/{room}?name={name}")
            assert clients[name].recv() == f"joined:{number}"
        clients["a"].send("hello")
        assert clients["b"].recv() == "a:hello"
        assert clients["c"].recv() == "a:hello"
        assert clients["a"].recv() == "sent:2"
        clients.pop("c").close()
        clients["b"].send("still here")
        assert clients["a"].recv() == "b:still here"
        assert clients["b"].recv() == "sent:1"
    finally:
        for ws in clients.values():
            ws.close()


def test_background_create_task_loop_sends_and_is_cancelled_at_close(server):
    key = new_id()
    ws = connect(server, f"/ws/ticker?id={key}")
    try:
        assert [ws.recv() for _ in range(20)] == [f"tick {number}" for number in range(20)]
    finally:
        ws.close()
    cancelled = named(served(server, key), "tick_cancelled")
    assert len(cancelled) == 1
    assert cancelled[0]["ticks"] >= 20


def test_plain_greenlet_sends_without_awaiting(server):
    ws = connect(server, "/ws/greenlet-send")
    try:
        ws.send("one")
        assert ws.recv() == "from greenlet: one"
        assert json.loads(ws.recv()) == {"type": "SendResult", "truthy": True, "sent": True}
        ws.send("two")
        assert ws.recv() == "from greenlet: two"
        assert json.loads(ws.recv())["sent"] is True
    finally:
        ws.close()


def test_send_results_can_be_gathered_and_run_as_tasks(server):
    ws = connect(server, "/ws/greenlet-send")
    try:
        ws.send("gather")
        assert [ws.recv() for _ in range(3)] == ["gathered 1", "gathered 2", "from a task"]
        assert json.loads(ws.recv()) == {"gathered": [True, True], "task": True}
    finally:
        ws.close()


def test_duck_defect_15_concurrent_large_sends_never_interleave_frames(server):
    greenlets, tasks, count, size = 3, 2, 6, 300_000
    with raw_client(server, "/ws/flood", timeout=30) as client:
        client.send_frame(TEXT, f"go:{greenlets}:{tasks}:{count}:{size}".encode())
        next_number = {sender: 0 for sender in range(greenlets + tasks)}
        while True:
            fin, rsv1, opcode, payload = client.read_frame()
            assert fin and not rsv1
            if opcode == TEXT:
                assert payload == b"done"
                break
            assert opcode == BINARY
            sender, number, fill = payload.split(b":", 2)
            sender, number = int(sender), int(number)
            assert number == next_number[sender]
            assert fill == bytes([65 + sender]) * size
            next_number[sender] += 1
    assert next_number == {sender: count for sender in range(greenlets + tasks)}


def test_sending_on_a_closed_connection_returns_false_without_raising(server):
    key = new_id()
    with raw_client(server, f"/ws/send-after-close?id={key}") as client:
        client.send_frame(TEXT, b"close")
        # Nothing is sent after the Close.
        assert client.read_frame() == (True, False, CLOSE, struct.pack("!H", 1000) + b"bye")
        answer_close(client, 1000)
    recorded = served(server, key)
    (after,) = named(recorded, "after_send_close")
    assert after == {"event": "after_send_close", "closed": True, "text": False, "ping": False, "state": 3}
    (in_on_close,) = named(recorded, "in_on_close")
    assert in_on_close == {"event": "in_on_close", "text": False, "binary": False, "greenlet": False}
    assert the_on_close(recorded)["code"] == 1000
    assert "Traceback" not in server.log()


# 6. Heartbeat and receive timeout.


def test_pings_carry_a_payload(server):
    with raw_client(server, "/ws/heartbeat") as client:
        for _ in range(3):
            fin, _rsv1, opcode, payload = client.read_frame()
            assert (fin, opcode) == (True, PING)
            assert 0 < len(payload) <= 125
            client.send_frame(PONG, payload)


def test_duck_defect_17_client_answering_every_ping_is_never_dropped(server):
    ws = connect(server, "/ws/heartbeat")  # websocket-client answers each ping at once
    try:
        for _ in range(15):  # at least 1.5 s: many PONG_TIMEOUTs and three-miss windows
            opcode, _frame = ws.recv_data_frame(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_PING
        ws.send("still open")
        while (received := ws.recv_data_frame(control_frame=True))[0] == websocket.ABNF.OPCODE_PING:
            pass
        assert received[1].data == b"still open"
    finally:
        ws.close()


def pings_until_closed(client: RawClient, on_ping: Callable[[bytes], None]) -> int:
    """Read pings (handing each to ``on_ping``) until the server closes with 1001 "ping timeout"; count them."""
    pings = 0
    while True:
        _fin, _rsv1, opcode, payload = client.read_frame()
        if opcode == CLOSE:
            break
        assert opcode == PING
        pings += 1
        on_ping(payload)
    assert (close_code(payload), payload[2:]) == (1001, b"ping timeout")
    answer_close(client, 1001)
    return pings


def test_client_that_never_answers_pings_is_closed_with_1001_after_three_misses(server):
    with raw_client(server, "/ws/heartbeat") as client:
        assert pings_until_closed(client, lambda payload: None) == 3


def test_unsolicited_pong_or_pong_with_wrong_payload_does_not_count(server):
    def wrong_pongs(payload: bytes) -> None:
        client.send_frame(PONG, b"unsolicited")
        client.send_frame(PONG, payload[::-1] + b"!")

    with raw_client(server, "/ws/heartbeat") as client:
        client.send_frame(PONG, b"unsolicited")
        assert pings_until_closed(client, wrong_pongs) == 3


def test_view_ping_waits_for_the_pong_with_its_own_payload(server):
    with raw_client(server, "/ws/pinger") as client:
        client.send_frame(TEXT, b"1 hello")
        assert client.read_frame() == (True, False, PING, b"hello")
        client.send_frame(PONG, b"unsolicited")
        client.send_frame(PONG, b"hellO")
        client.send_frame(PING, b"between")
        # The ping is still waiting: the server answers our Ping and reports nothing.
        assert client.read_frame() == (True, False, PONG, b"between")
        client.send_frame(PONG, b"hello")
        assert client.read_frame() == (True, False, TEXT, b"[true]")


def test_view_ping_is_answered_by_the_pong_of_a_later_ping(server):
    # RFC 6455 §5.5.3: a client may answer only the latest of several pings.
    with raw_client(server, "/ws/pinger") as client:
        client.send_frame(TEXT, b"3 one two three")
        assert [client.read_frame()[3] for _ in range(3)] == [b"one", b"two", b"three"]
        client.send_frame(PONG, b"three")
        assert client.read_frame() == (True, False, TEXT, b"[true, true, true]")


def test_view_ping_with_a_payload_already_waiting_is_refused(server):
    with raw_client(server, "/ws/pinger") as client:
        client.send_frame(TEXT, b"2 same same")
        assert client.read_frame() == (True, False, PING, b"same")
        refused = b"failed: ValueError: a ping with this payload is already waiting for its Pong"
        assert client.read_frame() == (True, False, TEXT, refused)
        client.send_frame(PONG, b"same")
        client.send_close(1000)
        assert client.read_close() == (1000, b"")


def test_view_ping_fails_with_connection_error_when_the_connection_closes_first(server):
    key = new_id()
    with raw_client(server, f"/ws/ping-until-closed?id={key}") as client:
        assert client.read_frame() == (True, False, PING, b"never answered")
        client.send_close(1000)
        assert client.read_close() == (1000, b"")
    recorded = served(server, key)
    (failed,) = named(recorded, "ping_failed")
    assert failed["error"] == "the connection closed before the Pong arrived"


def test_receive_timeout_closes_a_silent_client_with_1001(server):
    with raw_client(server, "/ws/receive-timeout") as client:
        started = time.monotonic()
        assert client.read_close() == (1001, b"receive timeout")
        assert time.monotonic() - started >= 0.4  # RECEIVE_TIMEOUT is 0.5 s
        answer_close(client, 1001)


def test_receive_timeout_is_reset_by_each_whole_frame(server):
    with raw_client(server, "/ws/receive-timeout") as client:
        for number in range(8):  # 1.2 s in all, more than twice RECEIVE_TIMEOUT
            client.send_frame(PING, str(number).encode())
            assert client.read_frame() == (True, False, PONG, str(number).encode())
            time.sleep(0.15)
        client.send_frame(TEXT, b"alive")
        assert read_message(client) == (TEXT, b"alive")


def test_duck_defect_18_trickling_one_frame_does_not_defeat_receive_timeout(server):
    key = new_id()
    with raw_client(server, f"/ws/receive-timeout?id={key}") as client:
        unfinished = frame(TEXT, b"x" * 1000)
        started = time.monotonic()
        for trickled in range(len(unfinished) - 1):
            client.send(unfinished[trickled : trickled + 1])
            readable, _, _ = select.select([client.sock], [], [], 0.05)
            if readable:
                break
        else:
            pytest.fail("the frame was almost complete and no Close came")
        assert time.monotonic() - started < 5
        assert trickled >= 5  # bytes kept coming in after RECEIVE_TIMEOUT
        assert client.read_close() == (1001, b"receive timeout")
    assert the_on_close(served(server, key))["code"] == 1001


# 7. Exceptions in hooks.


@pytest.mark.parametrize("where", ["open", "receive"])
def test_exception_in_hook_is_logged_and_closes_with_1011(server, where):
    key = new_id()
    bystander = connect(server, "/ws/echo")
    try:
        with raw_client(server, f"/ws/failing?id={key}&where={where}") as client:
            if where == "receive":
                client.send_frame(TEXT, key.encode())
            assert client.read_close() == (1011, b"Internal error")
            answer_close(client, 1011)
        text = f"RuntimeError: boom in on_open {key}" if where == "open" else f"ValueError: boom in on_receive {key}"
        log = wait_for_log(server, text)
        assert "Traceback (most recent call last)" in log[: log.index(text)]
        assert "WebSocket view Failing failed" in log
        # The server goes on: another connection, and plain HTTP.
        bystander.send("still working")
        assert bystander.recv() == "still working"
        assert http_request(server, "/plain/after-failure")[0] == 200
    finally:
        bystander.close()
    assert the_on_close(served(server, key))["code"] == 1011


def test_exception_reason_with_debug_names_the_exception(server):
    with raw_client(server, "/ws/failing-debug") as client:
        client.send_frame(TEXT, b"debugging")
        assert client.read_close() == (1011, b"ValueError: boom in on_receive debugging")
        answer_close(client, 1011)


# 8. Tasks started by hooks end with the connection.


@pytest.mark.parametrize("ending", ["client-close", "dropped-tcp"])
def test_tasks_started_by_hooks_are_cancelled_when_the_connection_ends(server, ending):
    key = new_id()
    with raw_client(server, f"/ws/tasks?id={key}") as client:
        assert read_message(client) == (TEXT, b"started:duck")  # utils.asyncio.create_task, from on_open
        client.send_frame(TEXT, b"go")
        assert read_message(client) == (TEXT, b"started:asyncio")  # asyncio.create_task, from on_receive
        if ending == "client-close":
            client.send_close(1000)
            assert client.read_close() == (1000, b"")
    recorded = served(server, key)
    assert sorted(event["name"] for event in named(recorded, "task_cancelled")) == ["asyncio", "duck"]
    assert sorted(event["name"] for event in named(recorded, "task_finally")) == ["asyncio", "duck"]
    assert the_on_close(recorded)["code"] == (1000 if ending == "client-close" else 1006)


# 9. Duck defect 11: the reply to a message that came with the Close.


def test_duck_defect_11_reply_to_message_sent_with_close_comes_before_the_close(server):
    key = new_id()
    with raw_client(server, f"/ws/lifecycle?id={key}") as client:
        client.send(frame(TEXT, b"slow:last words") + close_frame(1000, b"leaving"))
        assert read_message(client) == (TEXT, b"reply:last words")
        assert client.read_frame() == (True, False, CLOSE, struct.pack("!H", 1000))
        assert client.read_to_eof() == b""
    recorded = served(server, key)
    assert [event["data"] for event in named(recorded, "on_receive")] == ["slow:last words"]
    on_close = the_on_close(recorded)
    assert (on_close["code"], on_close["reason"]) == (1000, "leaving")


# 10. Frame and message size limits.


def test_messages_larger_than_max_frame_size_are_sent_in_fragments(server):
    with raw_client(server, "/ws/small-frames") as client:
        client.send_frame(TEXT, b"send:2500:binary")
        frames = [client.read_frame() for _ in range(3)]
        assert [(fin, opcode, len(payload)) for fin, _rsv1, opcode, payload in frames] == [
            (False, BINARY, 1000),
            (False, CONTINUATION, 1000),
            (True, CONTINUATION, 500),
        ]
        assert b"".join(payload for *_, payload in frames) == bytes(index % 251 for index in range(2500))
        client.send_frame(TEXT, b"send:2500:text")
        frames = [client.read_frame() for _ in range(3)]
        assert [(fin, opcode, len(payload)) for fin, _rsv1, opcode, payload in frames] == [
            (False, TEXT, 1000),
            (False, CONTINUATION, 1000),
            (True, CONTINUATION, 500),
        ]
        assert b"".join(payload for *_, payload in frames).decode() == "é" * 1250
        client.send_frame(TEXT, b"send:1000:binary")
        fin, _rsv1, opcode, payload = client.read_frame()
        assert (fin, opcode, len(payload)) == (True, BINARY, 1000)


def test_client_frame_larger_than_max_frame_size_gets_1009(server):
    key = new_id()
    with raw_client(server, f"/ws/small-frames?id={key}") as client:
        client.send_frame(BINARY, b"x" * 1000)
        assert read_message(client) == (TEXT, b"size:1000")
        client.send_frame(BINARY, b"x" * 1001)
        code, _reason = client.read_close()
        assert code == 1009
        answer_close(client, 1009)
    assert the_on_close(served(server, key))["code"] == 1009


def test_message_larger_than_max_message_size_from_small_fragments_gets_1009(server):
    key = new_id()
    with raw_client(server, f"/ws/small-frames?id={key}") as client:
        client.send(frame(BINARY, b"a" * 900, fin=False) + frame(CONTINUATION, b"b" * 900, fin=False))
        client.send(frame(CONTINUATION, b"c" * 900))
        assert read_message(client) == (TEXT, b"size:2700")
        client.send(frame(BINARY, b"a" * 900, fin=False) + frame(CONTINUATION, b"b" * 900, fin=False))
        client.send(frame(CONTINUATION, b"c" * 900, fin=False) + frame(CONTINUATION, b"d" * 900))
        code, _reason = client.read_close()
        assert code == 1009
        answer_close(client, 1009)
    assert the_on_close(served(server, key))["code"] == 1009
