"""The native parser of whole messages and Pongs (``_speedups.parse_messages``).

It reads the common frames only and stops at anything else, where the
Python parser takes over: so for every frame it either produces exactly the
message the Python parser would, or stops at the frame's first byte.
"""

from __future__ import annotations

import pytest

from duck_ws_sync.protocol import Message, OpCode, Pong, connection
from duck_ws_sync.protocol.native import speedups
from tests.helpers import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

parse_messages = connection._native_parse_messages


def parse(data: bytes, position: int = 0, max_size: int = -1) -> tuple[int, list[Message]]:
    events: list[Message] = []
    stop = parse_messages(data, position, max_size, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    return stop, events


def test_the_extension_is_built_and_used():
    # The project is installed with its C extension; CI must exercise it.
    assert speedups is not None
    assert parse_messages is speedups.parse_messages


@pytest.mark.parametrize("size", [0, 1, 7, 125, 126, 127, 65535, 65536, 70001])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_whole_messages_of_every_length_encoding(opcode, size):
    accent = "é".encode() if size >= 2 else b""  # two bytes of UTF-8
    payload = accent + b"a" * (size - len(accent)) if opcode == TEXT else bytes(size)
    data = frame(opcode, payload)
    assert parse(data) == (len(data), [Message(OpCode(opcode), payload)])


def test_many_frames_then_the_position_after_them():
    data = frame(TEXT, b"one") + frame(BINARY, b"\x00two") + frame(PONG, b"beat") + frame(TEXT, "trois é".encode())
    stop, events = parse(b"junk" + data, position=4)
    assert stop == 4 + len(data)
    assert events == [
        Message(OpCode.TEXT, b"one"),
        Message(OpCode.BINARY, b"\x00two"),
        Pong(b"beat"),
        Message(OpCode.TEXT, "trois é".encode()),
    ]


@pytest.mark.parametrize("size", [0, 4, 125])
def test_pongs(size):
    data = frame(PONG, bytes(range(size)))
    assert parse(data) == (len(data), [Pong(bytes(range(size)))])


STOPPERS = {
    "a ping": frame(PING, b"p"),
    "a close": frame(CLOSE, b"\x03\xe8"),
    "a pong over 125 bytes": frame(PONG, b"p" * 126),
    "a fragmented pong": frame(PONG, b"p", fin=False),
    "a first fragment": frame(TEXT, b"start", fin=False),
    "a continuation": frame(CONTINUATION, b"more"),
    "rsv1": frame(TEXT, b"deflated?", rsv1=True),
    "rsv2": frame(BINARY, b"x", rsv2=True),
    "rsv3": frame(BINARY, b"x", rsv3=True),
    "a reserved opcode": frame(0x3, b"x"),
    "an unmasked frame": frame(TEXT, b"x", mask=None),
    "invalid UTF-8": frame(TEXT, b"ok \xff"),
    "an encoded surrogate": frame(TEXT, b"\xed\xa0\x80"),
    "a length with its top bit set": frame(BINARY, b"", length=1 << 63)[:14] + b"x" * 20,
    "a length beyond the data": frame(BINARY, b"", length=1 << 40)[:14] + b"x" * 20,
}


@pytest.mark.parametrize("name", STOPPERS)
def test_stops_at_any_other_frame(name):
    before = frame(TEXT, b"before")
    stop, events = parse(before + STOPPERS[name] + frame(TEXT, b"after"))
    assert stop == len(before)
    assert events == [Message(OpCode.TEXT, b"before")]


@pytest.mark.parametrize("size", [10, 200, 70000])
def test_stops_at_an_incomplete_frame_at_every_cut(size):
    data = frame(BINARY, b"z" * size)
    for cut in [*range(0, 16), len(data) - 1]:
        assert parse(data[:cut]) == (0, [])


def test_stops_at_a_frame_over_the_limit():
    data = frame(BINARY, b"12345")
    assert parse(data, max_size=4) == (0, [])
    assert parse(data, max_size=5) == (len(data), [Message(OpCode.BINARY, b"12345")])
    assert parse(frame(PONG, b"12345"), max_size=4) == (0, [])


def test_stops_at_an_incomplete_pong():
    data = frame(PONG, b"12345")
    assert parse(data[:-1]) == (0, [])


def test_refuses_bad_arguments():
    events: list[Message] = []
    with pytest.raises(TypeError):
        parse_messages(b"", 0, -1, Message, OpCode.TEXT, OpCode.BINARY, Pong)
    with pytest.raises(TypeError):
        parse_messages(b"", 0, -1, Message, OpCode.TEXT, OpCode.BINARY, Pong, ())
    with pytest.raises(TypeError):
        parse_messages(b"", "0", -1, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    with pytest.raises(TypeError):
        parse_messages(b"", 0, None, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    with pytest.raises(TypeError):
        parse_messages("text", 0, -1, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    with pytest.raises(ValueError):
        parse_messages(b"", 1, -1, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    assert events == []


def test_an_error_making_the_event_propagates():
    def broken(opcode, payload):
        raise RuntimeError("no events today")

    with pytest.raises(RuntimeError, match="no events today"):
        parse_messages(frame(TEXT, b"x"), 0, -1, broken, OpCode.TEXT, OpCode.BINARY, Pong, [])
