"""The connection's shortcuts in C (``_speedups.receive_message``, ``_speedups.text_frame``).

Each either does exactly what the Python method does (``receive_message``,
``send_text_now``), counters included, or returns None having changed
nothing, and the Python method takes over. Every case is checked against
a twin connection that runs the Python method alone.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest

from duck_ws_sync.exceptions import LocalProtocolError
from duck_ws_sync.protocol import Message, OpCode, Pong, ServerConnection, connection, writer
from duck_ws_sync.protocol.extensions import PerMessageDeflate
from duck_ws_sync.protocol.native import speedups
from tests.helpers import BINARY, CONTINUATION, PING, PONG, TEXT, frame
from tests.protocol.test_native import STOPPERS

pytestmark = pytest.mark.skipif(getattr(speedups, "receive_message", None) is None, reason="needs the native extension")

COUNTERS = ("bytes_received", "frames_received", "messages_received", "bytes_sent", "frames_sent", "messages_sent")


def state(conn: ServerConnection) -> dict[str, object]:
    """What a shortcut may change, and what it must leave alone."""
    return {
        **{name: getattr(conn, name) for name in COUNTERS},
        "state": conn.state,
        "events": conn.events_received(),
        "output": conn.data_to_send(),
    }


def python_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_native_parse_messages", None)
    monkeypatch.setattr(connection, "_native_receive_message", None)
    monkeypatch.setattr(writer, "_native_text_frame", None)


def test_the_shortcuts_are_the_ones_used():
    assert connection._native_receive_message is speedups.receive_message
    assert writer._native_text_frame is speedups.text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_a_read_of_one_whole_message_is_taken_and_counted(opcode, size):
    payload = ("é" + "a" * (size - 2)).encode() if opcode == TEXT and size >= 2 else bytes(size)
    data = frame(opcode, payload)
    conn = ServerConnection(max_frame_size=None, max_message_size=None)
    message = speedups.receive_message(conn, data)
    assert message == Message(OpCode(opcode), payload)
    assert type(message) is Message and type(message.opcode) is OpCode
    assert (conn.bytes_received, conn.frames_received, conn.messages_received) == (len(data), 1, 1)
    assert conn.events_received() == []


def test_the_message_is_one_the_python_way_makes(monkeypatch):
    data = frame(TEXT, "chat é".encode())
    fast = ServerConnection()
    message = fast.receive_message(memoryview(bytearray(data)))
    python_twin(monkeypatch)
    slow = ServerConnection()
    assert slow.receive_message(data) == message
    assert dataclasses.asdict(message) == dataclasses.asdict(Message(OpCode.TEXT, "chat é".encode()))
    assert repr(message) == repr(Message(OpCode.TEXT, "chat é".encode()))
    assert hash(message) == hash(Message(OpCode.TEXT, "chat é".encode()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.data = b"changed"  # type: ignore[misc]
    assert state(fast) == state(slow)


READS = {
    **STOPPERS,
    "two messages": frame(TEXT, b"one") + frame(TEXT, b"two"),
    "a message and the start of another": frame(TEXT, b"one") + frame(TEXT, b"two")[:3],
    "a message cut short": frame(BINARY, b"123456")[:-1],
    "a pong": frame(PONG, b"beat"),
    "a ping": frame(PING, b"p"),
    "a first fragment": frame(TEXT, b"start", fin=False),
    "over the limit": frame(BINARY, b"x" * 11),
    "nothing": b"",
}


@pytest.mark.parametrize("name", READS)
def test_any_other_read_is_left_to_python_and_ends_as_python_ends_it(name, monkeypatch):
    data = READS[name]
    fast = ServerConnection(max_frame_size=10)
    assert speedups.receive_message(fast, data) is None
    assert state(fast) == state(ServerConnection(max_frame_size=10))  # nothing consumed
    fast_message = fast.receive_message(data)
    python_twin(monkeypatch)
    slow = ServerConnection(max_frame_size=10)
    assert slow.receive_message(data) == fast_message
    assert state(fast) == state(slow)


@pytest.mark.parametrize("name", READS)
def test_take_message_takes_only_what_the_shortcut_takes_and_consumes_nothing_else(name):
    data = READS[name]
    conn = ServerConnection(max_frame_size=10)
    assert conn.take_message(data) is None
    assert state(conn) == state(ServerConnection(max_frame_size=10))
    message = conn.take_message(frame(TEXT, b"chat"))
    assert message == Message(OpCode.TEXT, b"chat")
    assert (conn.frames_received, conn.messages_received, conn.events_received()) == (1, 1, [])


def test_take_message_takes_nothing_without_the_native_extension(monkeypatch):
    monkeypatch.setattr(connection, "_native_receive_message", None)
    conn = ServerConnection()
    assert conn.take_message(frame(TEXT, b"chat")) is None
    assert state(conn) == state(ServerConnection())


def between_messages_but(name: str) -> ServerConnection:
    """A connection that is not between messages, in one way."""
    conn = ServerConnection()
    if name == "events waiting":
        conn.receive_data(frame(TEXT, b"unread"))
    elif name == "output waiting":
        conn.send_ping(b"p")
    elif name == "a fragmented message":
        conn.receive_data(frame(TEXT, b"start", fin=False))
    elif name == "a frame partly read":
        conn.receive_data(frame(BINARY, b"x" * 200)[:50])
    elif name == "a header partly read":
        conn.receive_data(frame(BINARY, b"x" * 200)[:1])
    elif name == "closing":
        conn.send_close(1000)
    elif name == "input ended":
        conn.receive_eof()
    return conn


@pytest.mark.parametrize(
    "name",
    [
        "events waiting",
        "output waiting",
        "a fragmented message",
        "a frame partly read",
        "a header partly read",
        "closing",
        "input ended",
    ],
)
def test_a_connection_not_between_messages_is_left_to_python(name, monkeypatch):
    data = frame(TEXT, b"next") if name != "a fragmented message" else frame(CONTINUATION, b"end")
    fast = between_messages_but(name)
    before = state(between_messages_but(name))
    assert speedups.receive_message(fast, data) is None
    after = state(fast)
    assert after == before
    python_twin(monkeypatch)
    slow = between_messages_but(name)
    assert state(slow) == before


def test_a_subclass_is_left_to_python():
    class Custom(ServerConnection):
        __slots__ = ()

    conn = Custom()
    assert speedups.receive_message(conn, frame(TEXT, b"x")) is None
    assert speedups.text_frame(conn, "x", None) is None
    assert conn.receive_message(frame(TEXT, b"x")) == Message(OpCode.TEXT, b"x")
    assert conn.send_text_now("x") == b"\x81\x01x"


@pytest.mark.parametrize("data", ["", "hello", "é" * 62, "x" * 125, b"bytes", "caf\u00e9".encode(), b"x" * 125])
@pytest.mark.parametrize("fragment_size", [None, 125, 1 << 20])
def test_a_short_text_frame_is_what_python_builds(data, fragment_size, monkeypatch):
    fast = ServerConnection()
    frame_bytes = speedups.text_frame(fast, data, fragment_size)
    payload = data.encode() if isinstance(data, str) else data
    assert frame_bytes == bytes((0x81, len(payload))) + payload
    python_twin(monkeypatch)
    slow = ServerConnection()
    assert slow.send_text_now(data, fragment_size) == frame_bytes
    assert state(fast) == state(slow)


def test_a_long_text_is_left_to_python_without_encoding_it():
    text = "é" * 200  # a str keeps its UTF-8 once it is asked for
    size = sys.getsizeof(text)
    assert speedups.text_frame(ServerConnection(), text, None) is None
    assert sys.getsizeof(text) == size


def closed() -> ServerConnection:
    conn = ServerConnection()
    conn.send_close(1000)
    conn.data_to_send()
    return conn


def queued() -> ServerConnection:
    conn = ServerConnection()
    conn.send_ping(b"p")
    return conn


TEXT_CASES = {
    "126 bytes": (ServerConnection, "x" * 126, None),
    "126 bytes of UTF-8": (ServerConnection, "é" * 63, None),
    "over the fragment size": (ServerConnection, "abcd", 2),
    "a fragment size of 0": (ServerConnection, "", 0),
    "a fragment size that is not an int": (ServerConnection, "abc", 3.0),
    "a huge fragment size": (ServerConnection, "abc", 1 << 70),
    "invalid UTF-8": (ServerConnection, b"\xff", None),
    "a lone surrogate": (ServerConnection, "\ud800", None),
    "a bytearray": (ServerConnection, bytearray(b"abc"), None),
    "a str subclass": (ServerConnection, type("Text", (str,), {})("abc"), None),
    "closed": (closed, "late", None),
    "behind a queued frame": (queued, "after the ping", None),
    "with an extension": (lambda: ServerConnection(extensions=[PerMessageDeflate()]), "squeeze me", None),
}


@pytest.mark.parametrize("name", TEXT_CASES)
def test_any_other_text_is_left_to_python_and_ends_as_python_ends_it(name, monkeypatch):
    make, data, fragment_size = TEXT_CASES[name]
    fast = make()
    before = state(make())
    assert speedups.text_frame(fast, data, fragment_size) is None
    after = state(fast)
    assert after == before

    def outcome(conn: ServerConnection) -> object:
        try:
            return (conn.send_text_now(data, fragment_size), state(conn))
        except (LocalProtocolError, UnicodeError, TypeError, ValueError) as exc:
            return type(exc)

    fast = make()
    expected = outcome(fast)
    python_twin(monkeypatch)
    assert outcome(make()) == expected


def test_pongs_and_messages_of_the_native_parser_are_the_bound_types():
    events: list[object] = []
    data = frame(TEXT, b"one") + frame(PONG, b"beat")
    speedups.parse_messages(data, 0, -1, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    assert events == [Message(OpCode.TEXT, b"one"), Pong(b"beat")]
    assert [type(event) for event in events] == [Message, Pong]


def test_other_event_types_are_called():
    made: list[tuple[object, ...]] = []

    def message(opcode, payload):
        made.append((opcode, payload))
        return ("message", opcode, payload)

    def pong(payload):
        made.append((payload,))
        return ("pong", payload)

    events: list[object] = []
    data = frame(BINARY, b"\x00") + frame(PONG, b"p")
    speedups.parse_messages(data, 0, -1, message, OpCode.TEXT, OpCode.BINARY, pong, events)
    assert events == [("message", OpCode.BINARY, b"\x00"), ("pong", b"p")]
    assert made == [(OpCode.BINARY, b"\x00"), (b"p",)]


def test_binding_checks_the_types():
    @dataclasses.dataclass
    class NoSlots:
        opcode: int = 1
        data: bytes = b""

    with pytest.raises(TypeError):
        speedups.bind_types(ServerConnection, Message, Pong, OpCode.TEXT, OpCode.BINARY)
    with pytest.raises(TypeError):
        speedups.bind_types(ServerConnection, "Message", Pong, OpCode.TEXT, OpCode.BINARY, connection.OPEN)
    with pytest.raises(TypeError, match="slot"):
        speedups.bind_types(ServerConnection, NoSlots, Pong, OpCode.TEXT, OpCode.BINARY, connection.OPEN)
    with pytest.raises(AttributeError):
        speedups.bind_types(object, Message, Pong, OpCode.TEXT, OpCode.BINARY, connection.OPEN)
    # A connection type whose slots lie elsewhere, refused for its events: nothing of it is kept.
    names = [name for cls in ServerConnection.__mro__ for name in getattr(cls, "__slots__", ())]
    elsewhere = type("Elsewhere", (), {"__slots__": ("padding", *reversed(names))})
    with pytest.raises(TypeError, match="slot"):
        speedups.bind_types(elsewhere, NoSlots, Pong, OpCode.TEXT, OpCode.BINARY, connection.OPEN)
    # The binding of the import still holds.
    conn = ServerConnection()
    assert speedups.receive_message(conn, frame(TEXT, b"x")) == Message(OpCode.TEXT, b"x")
    assert (conn.bytes_received, conn.frames_received, conn.messages_received) == (7, 1, 1)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError):
        speedups.receive_message(ServerConnection())
    with pytest.raises(TypeError):
        speedups.receive_message(ServerConnection(), "text")
    with pytest.raises(TypeError):
        speedups.text_frame(ServerConnection(), "x")
