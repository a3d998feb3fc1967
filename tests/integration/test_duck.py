"""A real Duck project (``examples/duck_project``) under gunicorn's gevent worker.

Duck's HTTP views answer through Duck; its WebSocket routes, declared in
Duck's ``urls.py`` with ``duck.urls.path``, through our views, which get
Duck's own request. These are the steps of docs/duck.md: the ``duck``
extra installed (tests/setup.sh), the entry point ``wsgi.py`` calling
``wsgi_application``, the guide's views with their import changed, and
``gunicorn -k gevent`` serving ``examples.duck_project.wsgi:app``.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing

import pytest
import websocket

from .conftest import Server, serve

APP = "examples.duck_project.wsgi:app"


@pytest.fixture(scope="module")
def project() -> Iterator[Server]:
    with serve("gunicorn", APP) as server:
        yield server


def get(server: Server, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(server.url(path, "http"), timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def connect(server: Server, path: str, **options: object) -> websocket.WebSocket:
    return websocket.create_connection(server.url(path), timeout=10, **options)


def test_http_views_answer_through_duck(project: Server) -> None:
    status, headers, body = get(project, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<title>Duck chat</title>" in body
    status, headers, body = get(project, "/api/ping")
    assert (status, json.loads(body)) == (200, {"pong": True})
    assert headers["Content-Type"].startswith("application/json")
    status, _, _ = get(project, "/no/such/page")
    assert status == 404


def test_two_chat_clients_see_each_others_messages(project: Server) -> None:
    with closing(connect(project, "/ws/chat")) as first, closing(connect(project, "/ws/chat")) as second:
        assert first.recv() == "👋 Welcome to the chat!"
        assert second.recv() == "👋 Welcome to the chat!"
        first.send("hello from the first")
        assert second.recv() == "User: hello from the first"
        second.send("hello from the second")
        assert first.recv() == "User: hello from the second"


def test_the_view_gets_ducks_request_with_the_upgrades_headers_and_query(project: Server) -> None:
    with closing(
        connect(project, "/ws/request/lobby?token=abc&page=2", header=["User-Agent: duck-test/1.0"])
    ) as client:
        info = json.loads(client.recv())
    assert info["request_class"] == "duck.http.request.Request"  # Duck's HttpRequest
    assert info["path"] == "/ws/request/lobby"
    assert info["query"] == {"token": "abc", "page": "2"}
    assert info["user_agent"] == "duck-test/1.0"
    # Duck's META keeps the header's dashes: HTTP_USER-AGENT.
    meta = {"QUERY_STRING": "token=abc&page=2", "REMOTE_ADDR": "127.0.0.1", "HTTP_USER-AGENT": "duck-test/1.0"}
    assert info["meta"] == meta
    assert info["cookies"] == {}
    assert info["kwargs"] == {"room": "lobby"}
    assert info["session_name"] is None  # no session cookie was sent


def test_the_view_gets_the_session_of_the_cookie_duck_set(project: Server) -> None:
    with urllib.request.urlopen(project.url("/api/hello?name=Ada", "http"), timeout=5) as response:
        assert json.loads(response.read()) == {"hello": "Ada"}
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    with closing(connect(project, "/ws/request/lobby", cookie=cookie)) as client:
        info = json.loads(client.recv())
    assert info["session_name"] == "Ada"
    name, value = cookie.split("=", 1)
    assert info["cookies"] == {name: value}


def test_a_cross_site_origin_is_refused_and_the_sites_own_accepted(project: Server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(project, "/ws/chat", origin="http://evil.example")
    assert refused.value.status_code == 403
    with closing(connect(project, "/ws/chat", origin=f"http://127.0.0.1:{project.port}")) as client:
        assert client.recv() == "👋 Welcome to the chat!"


def test_an_origin_that_ducks_settings_trust_is_accepted(project: Server) -> None:
    # In the project's CSRF_TRUSTED_ORIGINS.
    with closing(connect(project, "/ws/chat", origin="https://chat.example.com")) as client:
        assert client.recv() == "👋 Welcome to the chat!"


def test_a_view_written_for_duck_keeps_its_signature_and_class_attributes(project: Server) -> None:
    with closing(connect(project, "/ws/echo")) as client:
        client.send_binary(b"\x00\x01" * 100)
        assert client.recv() == b"\x00\x01" * 100
        client.send("x" * (64 * 1024 + 1))  # over its MAX_FRAME_SIZE
        opcode, payload = client.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1009


def test_a_host_that_ducks_settings_do_not_allow_is_refused_by_duck(project: Server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(project, "/ws/chat", host="evil.example", origin="http://evil.example")
    # Duck's host middleware answers, with its own page (ours are plain text).
    assert refused.value.status_code == 403
    assert refused.value.resp_headers["content-type"].startswith("text/html")


def test_the_guides_quick_example(project: Server) -> None:
    with closing(connect(project, "/ws/myws")) as client:
        client.send("ducks")
        assert client.recv() == "You sent ducks"


def test_the_guides_notifications_come_every_five_seconds(project: Server) -> None:
    with closing(connect(project, "/ws/notifications")) as client:
        started = time.monotonic()
        assert client.recv() == "🔔 Notification #1"
        assert 4.5 <= time.monotonic() - started < 8


def test_fifty_open_websockets_do_not_hold_up_http(project: Server) -> None:
    # Duck's own threaded server hangs at the ninth open WebSocket.
    clients = [connect(project, "/ws/chat") for _ in range(50)]
    try:
        for client in clients:
            assert client.recv() == "👋 Welcome to the chat!"

        def timed_get(_: int) -> tuple[int, float]:
            started = time.monotonic()
            status, _, _ = get(project, "/", timeout=5)
            return status, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(timed_get, range(20)))
        assert [status for status, _ in results] == [200] * 20
        assert max(seconds for _, seconds in results) < 1.0
    finally:
        for client in clients:
            client.close()
