"""The chat example, tested as a user of duck_ws_sync tests an endpoint: with the pytest plugin's fixtures.

``ws_app`` says what to serve; ``ws_connect`` opens WebSockets to it, on a
server in this process, and closes them when the test ends. Run it alone
with ``python3 -m pytest examples/chat``.
"""

import re
import urllib.request

import pytest

from examples.chat import app

COOKIE = re.compile(r"chat_user=([0-9a-f]{16}); Path=/; HttpOnly; SameSite=Lax")


@pytest.fixture(scope="module")
def ws_app():
    return app


def join(ws_connect, path="/ws/chat", **options):
    """Connect a user; their name, from the welcome."""
    ws = ws_connect(path, **options)
    # A member before its welcome: what the room says of earlier users may come first, never a chat line.
    while (message := ws.receive_json())["type"] != "chat":
        if name := re.fullmatch(r"👋 Welcome to the chat, (User \d+)!", message.get("text", "")):
            return ws, name.group(1)
    raise AssertionError(f"a chat line before the welcome: {message}")


def receive(ws):
    """The next message that is not an online list (those come whenever someone joins or leaves)."""
    while (message := ws.receive_json())["type"] == "online":
        pass
    return message


def online(*names):
    return {"type": "online", "count": len(names), "names": sorted(names)}


def test_two_users_a_broadcast_and_a_close(ws_connect):
    alice, alice_name = join(ws_connect)
    bob, bob_name = join(ws_connect)
    assert receive(alice) == {"type": "system", "text": f"{bob_name} joined"}

    alice.send("hello <b>bob</b>")
    assert receive(bob) == {"type": "chat", "name": alice_name, "text": "hello <b>bob</b>"}
    bob.send("hi alice")
    assert receive(alice) == {"type": "chat", "name": bob_name, "text": "hi alice"}

    bob.close()
    assert receive(alice) == {"type": "system", "text": f"{bob_name} left"}
    alice.send("anyone?")  # no one else: the message goes nowhere, and alice is still connected
    alice.ping_pong()


def test_blank_and_binary_messages_are_not_broadcast(ws_connect):
    alice, _ = join(ws_connect)
    bob, bob_name = join(ws_connect)
    assert receive(alice) == {"type": "system", "text": f"{bob_name} joined"}
    bob.send("   ")
    bob.send_binary(b"\x00\x01")
    bob.send("the only line")
    assert receive(alice) == {"type": "chat", "name": bob_name, "text": "the only line"}


def test_two_tabs_of_one_user_are_one_user_online(ws_connect):
    # A room of this test's own: what it receives is all its own.
    cookie = "chat_user=0123456789abcdef"
    first, name = join(ws_connect, "/ws/chat/tabs", cookie=cookie)
    assert name == f"User {0x01234567 % 9000 + 1000}"  # derived from the cookie
    assert first.receive_json() == online(name)

    second, second_name = join(ws_connect, "/ws/chat/tabs", cookie=cookie)
    assert second_name == name
    assert second.receive_json() == online(name)
    assert first.receive_json() == {"type": "system", "text": f"{name} joined"}
    assert first.receive_json() == {"type": "system", "text": "You joined #tabs in another tab"}
    assert first.receive_json() == online(name)  # one user, two tabs

    other, other_name = join(ws_connect, "/ws/chat/tabs")  # no cookie: a user of its own
    assert other.receive_json() == online(name, other_name)
    for tab in (first, second):
        assert tab.receive_json() == {"type": "system", "text": f"{other_name} joined"}
        assert tab.receive_json() == online(name, other_name)

    other.close()
    for tab in (first, second):
        assert tab.receive_json() == {"type": "system", "text": f"{other_name} left"}
        assert tab.receive_json() == online(name)


def test_the_page_sets_the_cookie_once_and_keeps_a_well_formed_one(ws_live_server):
    def get(cookie=None):
        request = urllib.request.Request(ws_live_server.url + "/", headers={"Cookie": cookie} if cookie else {})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            return response.headers.get_all("Set-Cookie") or []

    (set_cookie,) = get()
    given = COOKIE.fullmatch(set_cookie)
    assert given, set_cookie
    assert get(f"chat_user={given.group(1)}") == []  # kept
    assert get(f"theme=dark; chat_user={given.group(1)}") == []
    (replaced,) = get("chat_user=not-a-user-id")  # malformed: a new one
    assert COOKIE.fullmatch(replaced) and replaced != set_cookie
