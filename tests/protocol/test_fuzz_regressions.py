"""Findings of the differential fuzz (``tests/fuzz``), as plain byte-level tests.

Each test is a reduced case rewritten with ``tests.helpers``: the bytes, the
reads they come in, the options. A test marked xfail would pin a defect the
core does not fix yet; ``tests/fuzz/known.py`` would name the same defect,
so the fuzz counts it instead of reporting it again. Once the core is fixed,
strict xfail fails the test: the marker goes, and the entry in ``known.py``
with it.
"""

from __future__ import annotations

import struct

import pytest

from duck_ws_sync.protocol import Close, Message, OpCode, Pong, ServerConnection, State
from tests.helpers import BINARY, MASK, PONG, TEXT, close_code_sent, close_frame, feed, frame, sent, xor

# Defects it found, fixed.


@pytest.mark.parametrize("closing_first", ["server", "client"])
def test_a_close_longer_than_max_frame_size_is_seen(closing_first: str) -> None:
    # Found as "not CLOSED after the client's Close (PayloadTooBig)": with
    # max_frame_size under 125, the client's Close (RFC 6455 §5.5.1: up to
    # 125 bytes) was over the limit, refused and skipped, so the closing
    # handshake waited for the close timeout. Control frames are bounded by
    # §5.5 already; the limits are for data frames.
    connection = ServerConnection(max_frame_size=10)
    if closing_first == "server":
        feed(connection, frame(BINARY, b"x" * 20))
        assert close_code_sent(connection) == 1009
    events = feed(connection, close_frame(1009, b"message too big"))  # 17 bytes of payload
    assert events == [Close(1009, "message too big")]
    assert connection.state is State.CLOSED


@pytest.mark.parametrize("answer_close_at_once", [True, False])
def test_a_protocol_error_while_closing_ends_the_connection(answer_close_at_once: bool) -> None:
    # Found as "not CLOSED after the client's Close (ProtocolError)": after
    # our Close, a frame with a reserved opcode stopped input. With
    # answer_close_at_once=False the connection stayed CLOSING with
    # failure_pending False, so the host learnt nothing and waited for its
    # close timeout. There is nothing left to send in CLOSING: it fails at once.
    connection = ServerConnection(answer_close_at_once=answer_close_at_once)
    connection.send_close(1001)
    sent(connection)
    assert feed(connection, frame(0x3, b"") + close_frame(1001)) == []
    assert connection.protocol_error is not None and connection.protocol_error.close_code == 1002
    assert connection.state is State.CLOSED
    assert sent(connection) == b""  # our Close went already


def test_our_close_after_a_pending_failure_ends_the_connection() -> None:
    # Found with the host's send_close in the middle of a stream: the frame
    # before it broke a rule, and with answer_close_at_once=False input
    # stopped with a failure pending. The host (an application's close(),
    # racing the failure) sent its Close instead of failing, and the state
    # stayed CLOSING, waiting for a Close that would never be read.
    connection = ServerConnection(answer_close_at_once=False)
    feed(connection, frame(0x3, b""))
    assert connection.failure_pending
    connection.send_close(1000)
    assert close_code_sent(connection) == 1000
    assert feed(connection, close_frame(1000)) == []  # input stopped: not read
    assert connection.state is State.CLOSED


# Behaviours the fuzz relies on, pinned.


def test_frames_received_after_invalid_text_depends_on_how_the_frame_arrived() -> None:
    # Why the fuzz compares frames_received only when no text failed (1007):
    # a frame that arrives whole is parsed, counted, then refused; one that
    # arrives in pieces is refused as the invalid byte comes, before it ends.
    data = frame(TEXT, b"ok \xff and more")
    whole = ServerConnection()
    feed(whole, data)
    pieces = ServerConnection()
    feed(pieces, data[:10], data[10:])
    for connection in (whole, pieces):
        assert close_code_sent(connection) == 1007
    assert (whole.frames_received, pieces.frames_received) == (1, 0)


def long_form(opcode: int, payload: bytes, length_bytes: int) -> bytes:
    """A masked frame whose length is written with more bytes than it needs (2 or 8), as RFC 6455 §5.2 forbids."""
    if length_bytes == 2:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, len(payload))
    return header + MASK + xor(payload, MASK)


@pytest.mark.usefixtures("frame_parser")
def test_lengths_written_longer_than_needed_are_read() -> None:
    # The native parser leaves a Pong with an extended length to the Python
    # parser (it takes a Pong's 7-bit length only), and reads the data
    # frames itself: both ways give the same events.
    data = long_form(PONG, b"beat", 2) + long_form(BINARY, b"bytes", 8) + long_form(TEXT, "é".encode(), 2)
    connection = ServerConnection()
    assert feed(connection, data) == [
        Pong(b"beat"),
        Message(OpCode.BINARY, b"bytes"),
        Message(OpCode.TEXT, "é".encode()),
    ]
    assert connection.protocol_error is None and connection.frames_received == 3


@pytest.mark.usefixtures("frame_parser")
def test_a_read_buffer_overwritten_after_each_read_changes_nothing() -> None:
    # The gevent transport reads into one buffer and hands the core a view
    # of it: what the core keeps of a read (half a header, half a control
    # frame, the start of a payload) must be copied, and no view kept.
    data = frame(TEXT, "déjà".encode()) + frame(PONG, b"p" * 100) + frame(BINARY, b"z" * 300) + close_frame(1000)
    buffer = bytearray(64)
    connection = ServerConnection()
    events = []
    for start in range(0, len(data), 7):
        piece = data[start : start + 7]
        buffer[: len(piece)] = piece
        with memoryview(buffer) as view, view[: len(piece)] as read:
            connection.receive_data(read)
        buffer.append(0)  # refused (BufferError) while any view of it is alive
        del buffer[-1]
        buffer[:] = b"\xaa" * len(buffer)
        events += connection.events_received()
    assert events == [
        Message(OpCode.TEXT, "déjà".encode()),
        Pong(b"p" * 100),
        Message(OpCode.BINARY, b"z" * 300),
        Close(1000, ""),
    ]
