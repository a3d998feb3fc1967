"""A real Duck project (``examples/duck_project``) under gunicorn's gevent worker.

Duck's HTTP views answer through Duck; its WebSocket routes, declared in
Duck's ``urls.py`` with ``duck.urls.path``, through our views, which get
Duck's own request. These are the steps of docs/duck.md: the ``duck``
extra installed (tests/setup.sh), the entry point ``wsgi.py`` calling
``wsgi_application``, the guide's views with their import changed, and
``gunicorn -k gevent`` serving ``examples.duck_project.wsgi:app``.

The suite runs on our own pytest plugin (``duck_ws_sync.testing``): the
marker ``ws_server`` picks gunicorn, ``ws_app`` names the project's entry
point, ``ws_live_server`` is the running gunicorn, ``ws_connect`` opens
WebSockets to it and closes them after each test.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from duck_ws_sync.testing import LiveServer

pytestmark = pytest.mark.ws_server("gunicorn", worker="gevent")

Connect = Callable[..., Any]


@pytest.fixture(scope="module")
def ws_app() -> str:
    return "examples.duck_project.wsgi:app"


def get(server: LiveServer, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_http_views_answer_through_duck(ws_live_server: LiveServer) -> None:
    status, headers, body = get(ws_live_server, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<title>Duck chat</title>" in body
    status, headers, body = get(ws_live_server, "/api/ping")
    assert (status, json.loads(body)) == (200, {"pong": True})
    assert headers["Content-Type"].startswith("application/json")
    status, _, _ = get(ws_live_server, "/no/such/page")
    assert status == 404


def test_two_chat_clients_see_each_others_messages(ws_connect: Connect) -> None:
    with ws_connect("/ws/chat") as first, ws_connect("/ws/chat") as second:
        assert first.recv() == "👋 Welcome to the chat!"
        assert second.recv() == "👋 Welcome to the chat!"
        first.send("hello from the first")
        assert second.recv() == "User: hello from the first"
        second.send("hello from the second")
        assert first.recv() == "User: hello from the second"


def test_the_view_gets_ducks_request_with_the_upgrades_headers_and_query(
    ws_live_server: LiveServer, ws_connect: Connect
) -> None:
    with ws_connect("/ws/request/lobby?token=abc&page=2", header=["User-Agent: duck-test/1.0"]) as client:
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


def test_the_view_gets_the_session_of_the_cookie_duck_set(ws_live_server: LiveServer, ws_connect: Connect) -> None:
    with urllib.request.urlopen(ws_live_server.url + "/api/hello?name=Ada", timeout=5) as response:
        assert json.loads(response.read()) == {"hello": "Ada"}
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    with ws_connect("/ws/request/lobby", cookie=cookie) as client:
        info = json.loads(client.recv())
    assert info["session_name"] == "Ada"
    name, value = cookie.split("=", 1)
    assert info["cookies"] == {name: value}


def test_authorize_reads_ducks_session_before_the_101(ws_live_server: LiveServer, ws_connect: Connect) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        ws_connect("/ws/members")
    assert caught.value.status_code == 401
    assert caught.value.resp_body == b"Say hello first: /api/hello?name=...\n"
    with urllib.request.urlopen(ws_live_server.url + "/api/hello?name=Grace", timeout=5) as response:
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    with ws_connect("/ws/members", cookie=cookie) as client:
        assert client.recv() == "hello again, Grace"


def test_a_cross_site_origin_is_refused_and_the_sites_own_accepted(
    ws_live_server: LiveServer, ws_connect: Connect
) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws_connect("/ws/chat", origin="http://evil.example")
    assert refused.value.status_code == 403
    with ws_connect("/ws/chat", origin=ws_live_server.url) as client:
        assert client.recv() == "👋 Welcome to the chat!"


def test_an_origin_that_ducks_settings_trust_is_accepted(ws_connect: Connect) -> None:
    # In the project's CSRF_TRUSTED_ORIGINS.
    with ws_connect("/ws/chat", origin="https://chat.example.com") as client:
        assert client.recv() == "👋 Welcome to the chat!"


def test_a_view_written_for_duck_keeps_its_signature_and_class_attributes(
    ws_live_server: LiveServer, ws_connect: Connect
) -> None:
    with ws_connect("/ws/echo") as client:
        client.send_binary(b"\x00\x01" * 100)
        assert client.recv() == b"\x00\x01" * 100
        client.send("x" * (64 * 1024 + 1))  # over its MAX_FRAME_SIZE
        opcode, payload = client.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1009


def test_a_host_that_ducks_settings_do_not_allow_is_refused_by_duck(
    ws_live_server: LiveServer, ws_connect: Connect
) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws_connect("/ws/chat", host="evil.example", origin="http://evil.example")
    # Duck's host middleware answers, with its own page (ours are plain text).
    assert refused.value.status_code == 403
    assert refused.value.resp_headers["content-type"].startswith("text/html")


def test_the_guides_quick_example(ws_connect: Connect) -> None:
    with ws_connect("/ws/myws") as client:
        client.send("ducks")
        assert client.recv() == "You sent ducks"


def test_the_guides_notifications_come_every_five_seconds(ws_connect: Connect) -> None:
    with ws_connect("/ws/notifications") as client:
        started = time.monotonic()
        assert client.recv() == "🔔 Notification #1"
        assert 4.5 <= time.monotonic() - started < 8


def test_fifty_open_websockets_do_not_hold_up_http(ws_live_server: LiveServer, ws_connect: Connect) -> None:
    # Duck's own threaded server hangs at the ninth open WebSocket.
    clients = [ws_connect("/ws/chat") for _ in range(50)]
    try:
        for client in clients:
            assert client.recv() == "👋 Welcome to the chat!"

        def timed_get(_: int) -> tuple[int, float]:
            started = time.monotonic()
            status, _, _ = get(ws_live_server, "/", timeout=5)
            return status, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(timed_get, range(20)))
        assert [status for status, _ in results] == [200] * 20
        assert max(seconds for _, seconds in results) < 1.0
    finally:
        for client in clients:
            client.close()
