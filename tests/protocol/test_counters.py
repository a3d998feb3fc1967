"""The core's counters: messages and bytes received and sent, for the access log and ``stats()``.

Messages are text and binary messages, counted when handed over (received)
or framed (sent); bytes are what went through the core in either direction,
frame headers and compression included.
"""

from __future__ import annotations

import pytest

from duck_ws_sync.protocol import OpCode, PerMessageDeflate, ServerConnection
from tests.helpers import BINARY, CONTINUATION, PING, PONG, TEXT, close_frame, feed, frame, sent


@pytest.mark.usefixtures("frame_parser")
def test_messages_and_bytes_received_count_only_whole_messages() -> None:
    connection = ServerConnection()
    wire = [
        frame(TEXT, b"hello"),
        frame(PING, b"p"),
        frame(PONG, b"q"),
        frame(BINARY, b"\x00" * 300),
        frame(TEXT, b"frag", fin=False),
        frame(CONTINUATION, b"ment"),
    ]
    feed(connection, b"".join(wire[:3]))
    assert connection.messages_received == 1
    feed(connection, *wire[3:5])
    assert connection.messages_received == 2  # the fragmented message is not whole yet
    feed(connection, wire[5])
    assert connection.messages_received == 3
    assert connection.bytes_received == sum(map(len, wire))


@pytest.mark.usefixtures("frame_parser")
def test_bytes_received_counts_a_read_split_anywhere() -> None:
    connection = ServerConnection()
    data = frame(BINARY, bytes(range(256)) * 1000)
    for start in range(0, len(data), 1000):
        connection.receive_data(data[start : start + 1000])
    assert [event.data for event in connection.events_received()] == [bytes(range(256)) * 1000]
    assert connection.bytes_received == len(data)
    assert connection.messages_received == 1


def test_messages_and_bytes_sent_count_frames_as_written() -> None:
    connection = ServerConnection()
    connection.send_text("hi")
    connection.send_binary(b"x" * 200)
    connection.send_message(OpCode.TEXT, b"y" * 10, fragment_size=4)  # three frames, one message
    connection.send_ping(b"p")
    connection.send_close(1000)
    assert connection.messages_sent == 3
    assert connection.frames_sent == 7
    assert connection.bytes_sent == len(sent(connection))


def test_bytes_sent_are_the_compressed_bytes() -> None:
    extension = PerMessageDeflate()
    connection = ServerConnection(extensions=[extension])
    connection.send_text("a" * 10_000)
    wire = sent(connection)
    assert connection.messages_sent == 1
    assert connection.bytes_sent == len(wire) < 200


def test_a_close_frame_counts_bytes_not_messages() -> None:
    connection = ServerConnection()
    feed(connection, close_frame(1000, b"bye"))
    assert connection.messages_received == 0
    assert connection.bytes_received == len(close_frame(1000, b"bye"))
    assert sent(connection) == b"\x88\x02\x03\xe8"  # the answer, at once
    assert connection.messages_sent == 0
    assert connection.bytes_sent == 4
