"""The examples, served by gunicorn's gevent worker and by gevent.pywsgi, with websocket-client as the browser.

The guide examples are Duck's documentation code: these tests check that
they behave as Duck's guide says. Each server is started once per module and
per server kind, so the chat servers keep their clients from one test to the
next; the tests only rely on what their own clients receive.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import websocket

from tests.integration.conftest import ROOT, Server, serve

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0
# What the server logs when a hook raises (the view layer logs it, then closes with 1011).
HOOK_FAILED = re.compile(r"WebSocket view \w+ failed|Traceback")


@pytest.fixture(scope="module")
def quick(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "examples.guide_quick:app") as server:
        yield server


@pytest.fixture(scope="module")
def guide_chat(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "examples.guide_chat:app") as server:
        yield server


@pytest.fixture(scope="module")
def notifications(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "examples.guide_notifications:app") as server:
        yield server


@pytest.fixture(scope="module")
def chat(server_kind: str) -> Iterator[Server]:
    """The chat example, started as the README's quickstart starts it (under gunicorn: ``-k gevent``)."""
    with serve(server_kind, "examples.chat:app") as server:
        yield server


@contextlib.contextmanager
def connect(server: Server, path: str) -> Iterator[websocket.WebSocket]:
    ws = websocket.create_connection(server.url(path), timeout=TIMEOUT)
    try:
        yield ws
    finally:
        ws.close(timeout=1)


def close_code(ws: websocket.WebSocket) -> int:
    """Send a Close 1000, return the code of the server's answer, and close TCP."""
    ws.send_close(1000)
    frame = ws.recv_frame()
    ws.shutdown()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return struct.unpack("!H", frame.data[:2])[0]


def no_hook_failed(server: Server) -> None:
    log = server.log()
    assert not HOOK_FAILED.search(log), log


# Duck's "Quick Example".


def test_quick_example_answers_text(quick: Server) -> None:
    with connect(quick, "/ws/myws") as ws:
        ws.send("hello")
        assert ws.recv() == "You sent hello"
        ws.send("héllo 🦆")
        assert ws.recv() == "You sent héllo 🦆"


def test_quick_example_ignores_binary(quick: Server) -> None:
    with connect(quick, "/ws/myws") as ws:
        ws.send_binary(b"\x00\x01 not text")
        ws.send("after")
        # Replies come in order: had the binary message been answered, that answer would come first.
        assert ws.recv() == "You sent after"
        assert close_code(ws) == 1000
    no_hook_failed(quick)


# Duck's "Simple Chat App".

WELCOME = "👋 Welcome to the chat!"


def test_guide_chat_broadcasts_to_the_others(guide_chat: Server) -> None:
    with connect(guide_chat, "/ws/chat") as a, connect(guide_chat, "/ws/chat") as b:
        assert a.recv() == WELCOME
        assert b.recv() == WELCOME
        a.send("hello from A")
        assert b.recv() == "User: hello from A"
        b.send("hello from B")
        # A's next message is B's: A was not sent its own.
        assert a.recv() == "User: hello from B"


def test_guide_chat_forgets_closed_clients(guide_chat: Server) -> None:
    with connect(guide_chat, "/ws/chat") as a, connect(guide_chat, "/ws/chat") as b:
        leaving = websocket.create_connection(guide_chat.url("/ws/chat"), timeout=TIMEOUT)
        dropped = websocket.create_connection(guide_chat.url("/ws/chat"), timeout=TIMEOUT)
        for ws in (a, b, leaving, dropped):
            assert ws.recv() == WELCOME
        assert close_code(leaving) == 1000  # a closing handshake
        dropped.shutdown()  # TCP gone without a Close (1006)
        time.sleep(0.3)  # let the server see both ends and run on_close
        for n in range(3):
            a.send(f"still here {n}")
            assert b.recv() == f"User: still here {n}"
        b.send("me too")
        assert a.recv() == "User: me too"
    # on_close (connected_clients.remove) ran once per connection, and no broadcast failed.
    no_hook_failed(guide_chat)


# Duck's "Live Notifications".


def test_notifications_arrive_every_five_seconds(notifications: Server) -> None:
    with connect(notifications, "/ws/notifications") as ws:
        started = time.monotonic()
        ws.settimeout(8)
        assert ws.recv() == "🔔 Notification #1"
        assert time.monotonic() - started >= 4.5  # not before the first 5 s sleep
    no_hook_failed(notifications)


# The chat example (examples/chat), the README's quickstart.


def chat_message(ws: websocket.WebSocket) -> dict[str, str]:
    """The next message from someone, skipping notices and online lists (clients of other tests join and leave)."""
    while True:
        message = json.loads(ws.recv())
        if message["type"] == "chat":
            return message


def system_notice(ws: websocket.WebSocket, pattern: str) -> str:
    """The next system notice that matches ``pattern`` (online lists are skipped)."""
    while True:
        message = json.loads(ws.recv())
        if message["type"] == "online":
            continue
        assert message["type"] == "system", message
        if re.fullmatch(pattern, message["text"]):
            return message["text"]


def online(ws: websocket.WebSocket) -> dict[str, object]:
    """The next online list, skipping system notices and chat messages."""
    while True:
        message = json.loads(ws.recv())
        if message["type"] == "online":
            return message


def welcome(ws: websocket.WebSocket) -> str:
    """Read up to the welcome notice; return the name it gives.

    A connection is a member before its welcome, so what the room says about earlier users (their
    online lists, their join notices) may come first; a chat line may not.
    """
    while True:
        message = json.loads(ws.recv())
        assert message["type"] in ("online", "system"), message
        if found := re.fullmatch(r"👋 Welcome to the chat, (User \d+)!", message.get("text", "")):
            return found.group(1)


def test_chat_serves_the_page(chat: Server) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{chat.port}/", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "text/html"
        page = response.read().decode("utf-8")
    assert "new WebSocket(" in page
    assert '"/ws/chat"' in page
    assert "textContent" in page


def test_chat_other_paths_are_not_found(chat: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{chat.port}/nowhere", timeout=TIMEOUT)
    assert caught.value.code == 404


def test_chat_two_clients_talk(chat: Server) -> None:
    with connect(chat, "/ws/chat") as a:
        name_a = welcome(a)
        with connect(chat, "/ws/chat") as b:
            name_b = welcome(b)
            assert name_a != name_b
            system_notice(a, re.escape(f"{name_b} joined"))
            # Then the room's online list, sent by B once it joined: both are in it.
            assert {name_a, name_b} <= set(online(a)["names"])
            a.send("hi <b>there</b>")
            assert chat_message(b) == {"type": "chat", "name": name_a, "text": "hi <b>there</b>"}
            b.send("hello")
            # A's next chat message is B's: A was not sent its own.
            assert chat_message(a) == {"type": "chat", "name": name_b, "text": "hello"}
            assert close_code(b) == 1000
        # on_close took B out before telling the others.
        system_notice(a, re.escape(f"{name_b} left"))
        with connect(chat, "/ws/chat") as c:
            welcome(c)
            a.send("still here")
            assert chat_message(c) == {"type": "chat", "name": name_a, "text": "still here"}
    no_hook_failed(chat)


def test_readme_quickstart_serves_this_example() -> None:
    """The README's first quickstart command runs the app that the fixtures above serve, as they serve it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quickstart\n.*?```(?:bash|sh|console)\n(.*?)```", readme, re.DOTALL)
    assert block, "README.md has no Quickstart block"
    run, test = block.group(1).strip().splitlines()
    assert run.endswith("python3 -m gunicorn -k gevent -b 127.0.0.1:8000 examples.chat:app")
    assert test.split("#")[0].strip() == "sh tests/run.sh"
    assert test in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines(), "CI runs the README's test command"


# The legacy app that notifies dashboards (examples/notify.py), served in this process.


def test_a_plain_http_view_notifies_every_dashboard() -> None:
    from duck_ws_sync.testing import serve
    from examples.notify import app

    with serve(app) as server:
        dashboards = [server.connect("/ws/dashboard") for _ in range(3)]
        for dashboard in dashboards:
            dashboard.ping_pong()  # connected, and a member
        request = urllib.request.Request(server.url + "/orders", data=b"item=duck", method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert response.status == 201
            order = json.loads(response.read())
        assert order["item"] == "duck"
        assert [dashboard.receive_json() for dashboard in dashboards] == [{"new_order": order}] * 3


def test_an_order_for_a_user_reaches_that_users_dashboards_only() -> None:
    from duck_ws_sync.testing import serve
    from examples.notify import app

    with serve(app) as server:
        ann = [server.connect("/ws/dashboard?user=ann") for _ in range(2)]
        bob = server.connect("/ws/dashboard?user=bob")
        for dashboard in (*ann, bob):
            dashboard.ping_pong()  # connected, and a member
        request = urllib.request.Request(server.url + "/orders", data=b"item=pond&for=ann", method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert response.status == 201
            order = json.loads(response.read())
        for dashboard in ann:  # every dashboard gets the news, then each of ann's hears it is hers
            assert dashboard.receive_json() == {"new_order": order}
            assert dashboard.receive_json() == {"your_order": order}
        assert bob.receive_json() == {"new_order": order}
        bob.send("ping")
        assert bob.receive() == "pong"  # and nothing else came before the answer


# examples/flask_auth.py: authorize with Flask's session cookie or a bearer token.


@pytest.fixture(scope="module")
def flask_auth(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "examples.flask_auth:app") as server:
        yield server


def log_in(server: Server, user: str) -> str:
    """Log ``user`` in; the session cookie (``name=value``)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/login", data=f"user={user}".encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.headers["Set-Cookie"].split(";")[0]


def bearer_token(server: Server, cookie: str) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/token", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())["token"]


def test_flask_auth_the_session_cookie_opens_the_chat(flask_auth: Server) -> None:
    cookie = log_in(flask_auth, "ann")
    ws = websocket.create_connection(flask_auth.url("/ws/chat"), timeout=TIMEOUT, cookie=cookie)
    try:
        assert ws.recv() == "welcome, ann"
        ws.send("hello")
        assert ws.recv() == "ann: hello"
    finally:
        ws.close()


def test_flask_auth_without_a_session_is_401(flask_auth: Server) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(flask_auth.url("/ws/chat"), timeout=TIMEOUT, cookie="session=forged")
    assert caught.value.status_code == 401
    assert caught.value.resp_headers["www-authenticate"] == 'Bearer realm="chat"'


def test_flask_auth_a_bearer_token_in_the_query_or_the_subprotocols(flask_auth: Server) -> None:
    token = bearer_token(flask_auth, log_in(flask_auth, "bo"))
    by_query = websocket.create_connection(flask_auth.url(f"/ws/chat?token={token}"), timeout=TIMEOUT)
    by_protocol = websocket.create_connection(
        flask_auth.url("/ws/chat"), timeout=TIMEOUT, subprotocols=["bearer", token]
    )
    try:
        assert by_query.recv() == "welcome, bo"
        assert by_protocol.recv() == "welcome, bo"
        assert by_protocol.getsubprotocol() == "bearer"
    finally:
        by_query.close()
        by_protocol.close()


def test_flask_auth_a_forged_token_is_403(flask_auth: Server) -> None:
    token = bearer_token(flask_auth, log_in(flask_auth, "cy"))
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(flask_auth.url(f"/ws/chat?token={token[:-2]}xx"), timeout=TIMEOUT)
    assert caught.value.status_code == 403
    assert caught.value.resp_body == b"Invalid token\n"
