"""The chat example, tested as a user of duck_ws_sync tests an endpoint: with the pytest plugin's fixtures.

``ws_app`` says what to serve; ``ws_connect`` opens WebSockets to it, on a
server in this process, and closes them when the test ends. Run it alone
with ``python3 -m pytest examples/chat``.
"""

import re

import pytest

from examples.chat import app


@pytest.fixture(scope="module")
def ws_app():
    return app


def join(ws_connect):
    """Connect a user; their name, from the welcome."""
    ws = ws_connect("/ws/chat")
    welcome = ws.receive_json()
    name = re.fullmatch(r"👋 Welcome to the chat, (User \d+)!", welcome["text"])
    assert welcome["type"] == "system" and name, welcome
    return ws, name.group(1)


def test_two_users_a_broadcast_and_a_close(ws_connect):
    alice, alice_name = join(ws_connect)
    bob, bob_name = join(ws_connect)
    assert alice.receive_json() == {"type": "system", "text": f"{bob_name} joined"}

    alice.send("hello <b>bob</b>")
    assert bob.receive_json() == {"type": "chat", "name": alice_name, "text": "hello <b>bob</b>"}
    bob.send("hi alice")
    assert alice.receive_json() == {"type": "chat", "name": bob_name, "text": "hi alice"}

    bob.close()
    assert alice.receive_json() == {"type": "system", "text": f"{bob_name} left"}
    alice.send("anyone?")  # no one else: the message goes nowhere, and alice is still connected
    alice.ping_pong()


def test_blank_and_binary_messages_are_not_broadcast(ws_connect):
    alice, _ = join(ws_connect)
    bob, bob_name = join(ws_connect)
    assert alice.receive_json() == {"type": "system", "text": f"{bob_name} joined"}
    bob.send("   ")
    bob.send_binary(b"\x00\x01")
    bob.send("the only line")
    assert alice.receive_json() == {"type": "chat", "name": bob_name, "text": "the only line"}
