"""Regression tests for Duck's protocol defects (items 5-10 and 12 of the measured list).

Each test does what broke in Duck and checks that the right thing happens
instead. Handshake defects (1-3) live in test_handshake.py, compression
defects (20-24) in test_permessage_deflate.py.
"""

from __future__ import annotations

import pytest

from duck_ws_sync.exceptions import LocalProtocolError
from duck_ws_sync.protocol import Close, Message, OpCode, ServerConnection, State
from tests.helpers import (
    BINARY,
    CLOSE,
    CONTINUATION,
    TEXT,
    close_code_sent,
    close_frame,
    feed,
    frame,
    parse_server_frames,
    sent,
    server_close,
)

# Both parsers: the native one of whole messages and the Python one.
pytestmark = pytest.mark.usefixtures("frame_parser")


def test_duck_defect_5_invalid_utf8_text_is_not_delivered():
    connection = ServerConnection()
    assert feed(connection, frame(TEXT, b"caf\xe9")) == []
    assert close_code_sent(connection) == 1007


def test_duck_defect_6_protocol_error_sends_close_1002():
    connection = ServerConnection()
    feed(connection, frame(0x3, b"reserved opcode"))
    assert close_code_sent(connection) == 1002
    assert connection.state is State.CLOSED


def test_duck_defect_7_new_data_frame_mid_fragment_is_not_delivered():
    connection = ServerConnection()
    events = feed(connection, frame(TEXT, b"first", fin=False), frame(BINARY, b"intruder"))
    assert events == []
    assert close_code_sent(connection) == 1002


def test_duck_defect_7_unfinished_text_does_not_replace_the_buffer():
    connection = ServerConnection()
    events = feed(connection, frame(TEXT, b"first", fin=False), frame(TEXT, b"second", fin=False))
    assert events == []
    assert close_code_sent(connection) == 1002


def test_duck_defect_8_size_limit_applies_to_whole_messages():
    connection = ServerConnection(max_frame_size=1024, max_message_size=4096)
    chunks = [frame(BINARY if index == 0 else CONTINUATION, b"x" * 1024, fin=False) for index in range(5)]
    assert feed(connection, *chunks) == []
    assert close_code_sent(connection) == 1009
    assert connection._message_size == 0


def test_duck_defect_9_oversized_frame_closes_1009_and_waits_for_the_clients_close():
    connection = ServerConnection(max_frame_size=1024)
    feed(connection, frame(BINARY, b"x" * 2048))
    assert close_code_sent(connection) == 1009
    assert connection.state is State.CLOSING  # not dropped: the handshake goes on
    assert feed(connection, close_frame(1009)) == [Close(1009, "")]
    assert connection.state is State.CLOSED


@pytest.mark.parametrize("code", [1001, 1003, 3000, 4999])
def test_duck_defect_10_close_reply_echoes_the_code(code):
    connection = ServerConnection()
    feed(connection, close_frame(code))
    assert sent(connection) == server_close(code)


@pytest.mark.parametrize("payload", [b"\x03\xe7", b"\x03\xed", b"\x03", b"\x03\xe8\xff\xfe"])
def test_duck_defect_10_invalid_close_frames_are_refused(payload):
    connection = ServerConnection()
    assert feed(connection, frame(CLOSE, payload)) == []
    assert close_code_sent(connection) in (1002, 1007)


def test_duck_defect_12_no_data_after_server_close():
    connection = ServerConnection()
    connection.send_close(1000)
    with pytest.raises(LocalProtocolError):
        connection.send_text("after close")


def test_duck_defect_12_no_data_after_failing_with_1011():
    connection = ServerConnection()
    connection.fail(1011, "internal error")
    with pytest.raises(LocalProtocolError):
        connection.send_binary(b"after fail")
    assert feed(connection, frame(TEXT, b"ignored")) == []


def test_duck_defect_12_long_reason_still_sends_a_close():
    connection = ServerConnection()
    connection.send_close(1000, "r" * 500)
    frames = parse_server_frames(sent(connection))
    assert len(frames) == 1
    assert frames[0][2] == CLOSE
    assert len(frames[0][3]) == 125


@pytest.mark.parametrize("code", [1005, 1006, 1015])
def test_duck_defect_12_reporting_codes_cannot_be_sent(code):
    connection = ServerConnection()
    with pytest.raises(LocalProtocolError):
        connection.send_close(code)


def test_messages_come_out_in_arrival_order():
    connection = ServerConnection()
    events = feed(connection, b"".join(frame(TEXT, f"{index}".encode()) for index in range(50)))
    assert events == [Message(OpCode.TEXT, f"{index}".encode()) for index in range(50)]
