"""Reading the rest of a large frame straight into its payload (``receive_buffer``, ``received_into``).

A transport reads into the view the connection offers, as ``recv_into``
would, and reports the count; the payload is unmasked in place and handed
over as bytes with no copy. Without the native extension there is no such
buffer, and the frame is collected from ordinary reads.
"""

from __future__ import annotations

import pytest

from duck_ws_sync.exceptions import LocalProtocolError
from duck_ws_sync.protocol import Close, Message, OpCode, ServerConnection, State, partial
from duck_ws_sync.protocol.connection import DIRECT_READ
from duck_ws_sync.protocol.extensions import PerMessageDeflate
from duck_ws_sync.protocol.native import speedups
from tests.helpers import BINARY, TEXT, close_code_sent, close_frame, feed, frame

needs_native = pytest.mark.skipif(getattr(speedups, "Payload", None) is None, reason="needs the native extension")


def lend(connection: ServerConnection, data: bytes) -> int:
    """What a transport does first: read (here: copy) into the offered buffer and release it; the count."""
    buffer = connection.receive_buffer()
    assert buffer is not None
    with buffer:
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
    return size


def read_into(connection: ServerConnection, data: bytes) -> int:
    """What a transport does: ``lend``, then report the count."""
    size = lend(connection, data)
    connection.received_into(size)
    return size


def deliver(connection: ServerConnection, data: bytes, read_size: int) -> list[object]:
    """Deliver ``data`` in reads of ``read_size``, into the offered buffer whenever there is one."""
    position = 0
    while position < len(data):
        if connection.receive_buffer() is not None:
            position += read_into(connection, data[position : position + read_size])
        else:
            connection.receive_data(data[position : position + read_size])
            position += read_size
    return connection.events_received()


@needs_native
@pytest.mark.parametrize("read_size", [1000, 65536, 100_000, 300_000, 1 << 21])
@pytest.mark.parametrize("opcode", [BINARY, TEXT])
def test_a_large_frame_read_into_its_payload_is_one_message_of_bytes(opcode: int, read_size: int) -> None:
    payload = ("déjà vu " * 40_000).encode()[: 3 * DIRECT_READ + 5]
    payload = payload.decode("utf-8", "ignore").encode()  # a cut character would be invalid text
    connection = ServerConnection(max_frame_size=None)
    data = frame(opcode, payload) + frame(TEXT, b"next")
    events = deliver(connection, data, read_size)
    assert events == [Message(OpCode(opcode), payload), Message(OpCode.TEXT, b"next")]
    assert type(events[0].data) is bytes  # type: ignore[attr-defined]
    assert connection.frames_received == 2


@needs_native
def test_the_buffer_is_offered_only_while_much_of_a_frame_is_to_come() -> None:
    connection = ServerConnection(max_frame_size=None)
    assert connection.receive_buffer() is None  # no frame begun
    payload = b"x" * (DIRECT_READ + 1000)
    data = frame(BINARY, payload)
    header = len(data) - len(payload)
    connection.receive_data(data[:200])
    buffer = connection.receive_buffer()
    assert buffer is not None and len(buffer) == len(payload) - (200 - header)
    buffer.release()
    read_into(connection, data[200:1200])
    assert connection.receive_buffer() is None  # the rest is small: one ordinary read holds it and what follows
    assert feed(connection, data[1200:]) == [Message(OpCode.BINARY, payload)]


@needs_native
@pytest.mark.parametrize("at_once", [True, False])
def test_invalid_text_read_into_the_payload_fails_where_it_arrives(at_once: bool) -> None:
    payload = b"a" * DIRECT_READ + b"\xff" + b"b" * DIRECT_READ
    data = frame(TEXT, payload)
    connection = ServerConnection(max_frame_size=None, answer_close_at_once=at_once)
    connection.receive_data(data[:100])
    read_into(connection, data[100:DIRECT_READ])
    assert connection.protocol_error is None
    read_into(connection, data[DIRECT_READ : DIRECT_READ + 100])
    assert connection.protocol_error is not None and connection.protocol_error.close_code == 1007
    assert connection.receive_buffer() is None
    if at_once:
        assert connection.state is State.CLOSED and close_code_sent(connection) == 1007
    else:
        assert connection.failure_pending


@needs_native
def test_no_buffer_once_our_close_was_sent_and_the_rest_of_the_frame_is_dropped() -> None:
    data = frame(BINARY, b"z" * (2 * DIRECT_READ))
    connection = ServerConnection(max_frame_size=None)
    connection.receive_data(data[:1000])
    connection.send_close(1001)
    assert connection.receive_buffer() is None
    assert feed(connection, data[1000:] + close_frame(1001))[-1].code == 1001  # type: ignore[union-attr]
    assert connection.state is State.CLOSED


@needs_native
def test_received_into_refuses_what_was_not_offered() -> None:
    connection = ServerConnection(max_frame_size=None)
    with pytest.raises(LocalProtocolError):
        connection.received_into(10)
    connection.receive_data(frame(BINARY, b"y" * (2 * DIRECT_READ))[:100])
    connection.receive_buffer().release()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="cannot have been read"):
        connection.received_into(2 * DIRECT_READ)
    with pytest.raises(LocalProtocolError):
        connection.received_into(10)  # one count per buffer


# Another thread between receive_buffer() and received_into(): the thread
# host reads into the buffer without the lock that guards the connection.


@needs_native
@pytest.mark.parametrize("read_size", [1000, DIRECT_READ + 1])
def test_our_close_while_a_read_fills_the_buffer_skips_the_rest_of_that_frame_exactly(read_size: int) -> None:
    data = frame(BINARY, b"z" * (3 * DIRECT_READ)) + frame(TEXT, b"dropped")
    connection = ServerConnection(max_frame_size=None, answer_close_at_once=False)
    connection.receive_data(data[:1000])
    size = lend(connection, data[1000 : 1000 + read_size])
    connection.send_close(1001, "going away")  # another thread, meanwhile
    connection.received_into(size)  # counted, and no error
    assert connection.bytes_received == 1000 + size
    assert connection.state is State.CLOSING
    rest = data[1000 + size :]
    # The client's Close right behind the frame is seen at once, and answered.
    assert feed(connection, rest + close_frame(1001)) == [Close(1001, "")]
    assert connection.state is State.CLOSED
    assert connection.bytes_received == len(data) + len(close_frame(1001))


@needs_native
def test_a_failure_while_a_read_fills_the_buffer_only_counts_the_bytes() -> None:
    data = frame(BINARY, b"z" * (3 * DIRECT_READ))
    connection = ServerConnection(max_frame_size=None, answer_close_at_once=False)
    connection.receive_data(data[:1000])
    size = lend(connection, data[1000:5000])
    connection.fail(1011)  # another thread, meanwhile
    connection.received_into(size)
    assert connection.bytes_received == 5000
    assert connection.state is State.CLOSED
    assert feed(connection, data[5000:]) == []


@needs_native
def test_a_count_larger_than_the_dropped_frame_is_refused() -> None:
    connection = ServerConnection(max_frame_size=None)
    connection.receive_data(frame(BINARY, b"z" * (2 * DIRECT_READ))[:1000])
    lend(connection, b"")
    connection.send_close()
    with pytest.raises(ValueError, match="cannot have been read"):
        connection.received_into(2 * DIRECT_READ)


# A length announced without any limit to hold it to.


@needs_native
@pytest.mark.parametrize("length", [1 << 62, (1 << 63) - 1])
@pytest.mark.parametrize("compressed", [False, True])
def test_no_limit_and_a_length_no_buffer_can_have_is_a_1009(length: int, compressed: bool) -> None:
    extensions = [PerMessageDeflate().negotiate([])] if compressed else []
    connection = ServerConnection(max_frame_size=None, max_message_size=None, extensions=extensions)  # type: ignore[list-item]
    events = feed(connection, frame(BINARY, b"", rsv1=compressed, length=length)[:14] + b"abc")
    assert events == []
    assert close_code_sent(connection) == 1009
    assert connection.state is State.CLOSING
    assert "cannot be held in memory" in str(connection.protocol_error)


@pytest.mark.parametrize("compressed", [False, True])
def test_without_a_frame_limit_the_message_limit_bounds_the_buffer(compressed: bool) -> None:
    extensions = [PerMessageDeflate().negotiate([])] if compressed else []
    connection = ServerConnection(max_frame_size=None, max_message_size=1000, extensions=extensions)  # type: ignore[list-item]
    feed(connection, frame(BINARY, b"", rsv1=compressed, length=1 << 62)[:14])
    assert close_code_sent(connection) == 1009
    assert connection._partial is None
    connection = ServerConnection(max_frame_size=None, max_message_size=1000, extensions=extensions)  # type: ignore[list-item]
    feed(connection, frame(BINARY, b"", rsv1=compressed, length=1000)[:14])
    assert connection._partial is not None  # at the limit: collected


@needs_native
def test_the_payload_cannot_be_handed_over_while_a_view_of_it_is_held() -> None:
    payload = speedups.Payload(8)
    view = memoryview(payload)
    view[:] = b"\x01\x02\x03\x04\x01\x02\x03\x04"
    with pytest.raises(BufferError):
        payload.take()
    view.release()
    payload.unmask(0, 8, b"\x01\x02\x03\x04")
    assert payload.take() == bytes(8)
    with pytest.raises(BufferError):
        memoryview(payload)
    with pytest.raises(BufferError):
        payload.take()


@needs_native
def test_payload_ranges_and_masks_are_checked() -> None:
    payload = speedups.Payload(4)
    with pytest.raises(ValueError, match="range"):
        payload.unmask(2, 5, b"mask")
    with pytest.raises(ValueError, match="range"):
        speedups.unmask_into(payload, 3, b"ab", b"mask")
    with pytest.raises(ValueError, match="4 bytes"):
        payload.unmask(0, 4, b"abc")
    with pytest.raises(ValueError, match="4 bytes"):
        speedups.unmask_into(payload, 0, b"ab", b"abc")
    with pytest.raises(ValueError, match="negative"):
        speedups.Payload(-1)
    with pytest.raises(TypeError):
        payload.unmask(0, 4)
    speedups.unmask_into(payload, 1, b"\x01\x02\x03", b"\x00\x01\x02\x03")  # phase of offset 1: mask bytes 1, 2, 3
    assert payload.take()[1:] == b"\x00\x00\x00"


def test_without_the_native_extension_the_frame_is_collected_from_ordinary_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(partial, "_NativePayload", None)
    payload = bytes(range(256)) * 1000
    connection = ServerConnection(max_frame_size=None)
    data = frame(BINARY, payload)
    connection.receive_data(data[:1000])
    assert connection.receive_buffer() is None
    assert feed(connection, data[1000:]) == [Message(OpCode.BINARY, payload)]
