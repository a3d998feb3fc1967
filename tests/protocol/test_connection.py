"""ServerConnection against RFC 6455: bytes in, events and bytes out, grouped by section."""

from __future__ import annotations

import pytest

from duck_ws_sync.exceptions import LocalProtocolError, ProtocolError
from duck_ws_sync.protocol import Close, Message, OpCode, Ping, Pong, ServerConnection, Side, State
from duck_ws_sync.protocol import connection as connection_module
from duck_ws_sync.protocol.connection import FRAME_COST
from duck_ws_sync.protocol.extensions import Extension, PerMessageDeflate
from duck_ws_sync.protocol.frames import Frame
from duck_ws_sync.protocol.mask import python_apply_mask
from tests.helpers import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    close_code_sent,
    close_frame,
    feed,
    frame,
    parse_server_frames,
    sent,
    server_close,
    server_frame,
)

# Both parsers: the native one of whole messages and the Python one.
pytestmark = pytest.mark.usefixtures("frame_parser")


def failed_with(connection: ServerConnection, code: int) -> bool:
    """The connection ended its output with a Close carrying ``code``, started by us, and is CLOSED."""
    return (
        connection.state is State.CLOSED
        and connection.close_initiator is Side.LOCAL
        and close_code_sent(connection) == code
    )


# RFC 6455 §5.1: masking requirements.


class TestMasking:
    def test_masked_frame_is_unmasked(self):
        connection = ServerConnection()
        assert feed(connection, frame(TEXT, b"Hello")) == [Message(OpCode.TEXT, b"Hello")]

    def test_unmasked_client_frame_fails_1002(self):
        connection = ServerConnection()
        assert feed(connection, frame(TEXT, b"Hello", mask=None)) == []
        assert failed_with(connection, 1002)
        assert isinstance(connection.protocol_error, ProtocolError)

    def test_server_frames_are_not_masked(self):
        connection = ServerConnection()
        connection.send_text("Hello")
        assert sent(connection) == b"\x81\x05Hello"  # RFC 6455 §5.7 example


# RFC 6455 §5.2: base framing.


class TestBaseFraming:
    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
    def test_payload_lengths_of_every_encoding(self, size):
        connection = ServerConnection()
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert feed(connection, frame(BINARY, payload)) == [Message(OpCode.BINARY, payload)]

    @pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
    def test_server_uses_the_shortest_length_encoding(self, size):
        connection = ServerConnection()
        connection.send_binary(b"x" * size)
        assert sent(connection) == server_frame(BINARY, b"x" * size)

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcode_fails_1002(self, opcode):
        connection = ServerConnection()
        feed(connection, frame(opcode, b"x"))
        assert failed_with(connection, 1002)

    @pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
    def test_reserved_bit_without_extension_fails_1002(self, bit):
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"x", **{bit: True}))
        assert failed_with(connection, 1002)

    def test_length_with_most_significant_bit_set_fails_1002(self):
        connection = ServerConnection(max_frame_size=None)
        header = bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"\x00" * 4
        feed(connection, header)
        assert failed_with(connection, 1002)

    def test_frame_split_at_every_byte_is_reassembled(self):
        data = frame(TEXT, b"split me") + frame(BINARY, b"\x00" * 300)
        connection = ServerConnection()
        events = feed(connection, *[data[index : index + 1] for index in range(len(data))])
        assert events == [Message(OpCode.TEXT, b"split me"), Message(OpCode.BINARY, b"\x00" * 300)]

    def test_many_frames_in_one_chunk(self):
        connection = ServerConnection()
        events = feed(connection, b"".join(frame(TEXT, str(index).encode()) for index in range(1000)))
        assert [event.data for event in events] == [str(index).encode() for index in range(1000)]

    def test_memoryview_input_is_accepted(self):
        connection = ServerConnection()
        data = frame(TEXT, b"view") + frame(TEXT, b"partial")[:3]
        assert feed(connection, memoryview(data)) == [Message(OpCode.TEXT, b"view")]
        assert feed(connection, frame(TEXT, b"partial")[3:]) == [Message(OpCode.TEXT, b"partial")]


# RFC 6455 §5.4: fragmentation.


class TestFragmentation:
    def test_fragmented_text_is_reassembled(self):
        connection = ServerConnection()
        events = feed(
            connection,
            frame(TEXT, b"Hel", fin=False),
            frame(CONTINUATION, b"lo, ", fin=False),
            frame(CONTINUATION, b"world"),
        )
        assert events == [Message(OpCode.TEXT, b"Hello, world")]

    def test_empty_fragments_are_allowed(self):
        connection = ServerConnection()
        events = feed(connection, frame(BINARY, b"", fin=False), frame(CONTINUATION, b""), frame(TEXT, b""))
        assert events == [Message(OpCode.BINARY, b""), Message(OpCode.TEXT, b"")]

    def test_control_frames_may_interleave_fragments(self):
        connection = ServerConnection()
        events = feed(
            connection,
            frame(TEXT, b"frag", fin=False),
            frame(PING, b"p"),
            frame(PONG, b"q"),
            frame(CONTINUATION, b"ment"),
        )
        assert events == [Ping(b"p"), Pong(b"q"), Message(OpCode.TEXT, b"fragment")]
        assert sent(connection) == server_frame(PONG, b"p")

    def test_continuation_without_a_message_fails_1002(self):
        connection = ServerConnection()
        feed(connection, frame(CONTINUATION, b"orphan"))
        assert failed_with(connection, 1002)

    def test_new_data_frame_inside_a_fragmented_message_fails_1002(self):
        connection = ServerConnection()
        events = feed(connection, frame(TEXT, b"one", fin=False), frame(TEXT, b"two"))
        assert events == []
        assert failed_with(connection, 1002)

    def test_unfinished_text_start_does_not_replace_the_message(self):
        connection = ServerConnection()
        feed(connection, frame(BINARY, b"one", fin=False), frame(TEXT, b"two", fin=False))
        assert failed_with(connection, 1002)

    def test_fragmented_control_frame_fails_1002(self):
        connection = ServerConnection()
        feed(connection, frame(PING, b"x", fin=False))
        assert failed_with(connection, 1002)


# RFC 6455 §5.5: control frames.


class TestControlFrames:
    def test_ping_is_answered_with_pong_of_same_payload(self):
        connection = ServerConnection()
        assert feed(connection, frame(PING, b"heartbeat")) == [Ping(b"heartbeat")]
        assert sent(connection) == server_frame(PONG, b"heartbeat")

    def test_ping_of_125_bytes_is_allowed(self):
        connection = ServerConnection()
        assert feed(connection, frame(PING, b"x" * 125)) == [Ping(b"x" * 125)]

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_control_frame_over_125_bytes_fails_1002(self, opcode):
        connection = ServerConnection()
        feed(connection, frame(opcode, b"\x03\xe8" + b"x" * 124))
        assert failed_with(connection, 1002)

    def test_unsolicited_pong_is_reported_and_not_answered(self):
        connection = ServerConnection()
        assert feed(connection, frame(PONG, b"beat")) == [Pong(b"beat")]
        assert sent(connection) == b""

    def test_send_ping_and_pong(self):
        connection = ServerConnection()
        connection.send_ping(b"abc")
        connection.send_pong()
        assert sent(connection) == server_frame(PING, b"abc") + server_frame(PONG)

    def test_sending_a_control_payload_over_125_bytes_is_refused(self):
        connection = ServerConnection()
        with pytest.raises(LocalProtocolError):
            connection.send_ping(b"x" * 126)


class TestReceivePong:
    """``receive_pong``: a read that is one whole Pong frame alone, taken without the parser."""

    @pytest.mark.parametrize("payload", [b"", b"beat", b"x" * 125])
    @pytest.mark.parametrize("unmask", ["native", "python"])
    def test_a_read_of_one_pong_gives_its_payload_counted_and_queues_nothing(self, payload, unmask, monkeypatch):
        if unmask == "python":
            monkeypatch.setattr(connection_module, "apply_mask", python_apply_mask)
        connection = ServerConnection()
        data = frame(PONG, payload)
        assert connection.receive_pong(memoryview(data)) == payload
        assert (connection.bytes_received, connection.frames_received) == (len(data), 1)
        assert connection.events_received() == [] and sent(connection) == b""
        # The parser goes on from there.
        assert feed(connection, frame(TEXT, b"next")) == [Message(OpCode.TEXT, b"next")]

    @pytest.mark.parametrize(
        "data",
        [
            frame(PONG, b"beat") + frame(TEXT, b"more"),  # another frame in the same read
            frame(PONG, b"beat")[:-1],  # incomplete
            frame(PING, b"beat"),
            frame(PONG, b"beat", rsv1=True),
            frame(PONG, b"beat", fin=False),
            frame(PONG, b"\x03\xe8" + b"x" * 124),  # over 125 bytes
            frame(PONG, b"", mask=None) + b"x" * 128,  # unmasked: its length byte read as masked would be 128
            frame(PONG, b"beat", mask=None),
            b"\x8a",
        ],
    )
    def test_any_other_read_is_left_to_the_parser(self, data):
        connection = ServerConnection()
        assert connection.receive_pong(data) is None
        assert (connection.bytes_received, connection.frames_received) == (0, 0)
        connection.receive_data(data)  # as it would have been
        assert connection.bytes_received == len(data)

    def test_not_while_a_frame_is_incomplete(self):
        connection = ServerConnection()
        first = frame(TEXT, b"hello")
        connection.receive_data(first[:3])
        assert connection.receive_pong(frame(PONG, b"beat")) is None
        assert feed(connection, first[3:]) == [Message(OpCode.TEXT, b"hello")]

    def test_not_while_a_large_frame_is_read_into_its_buffer(self):
        connection = ServerConnection()
        connection.receive_data(frame(BINARY, b"x" * 100_000)[:1000])
        assert connection.receive_buffer() is not None  # releases nothing: only looked at
        assert connection.receive_pong(frame(PONG, b"beat")) is None

    def test_not_while_an_unwanted_payload_is_dropped(self):
        connection = ServerConnection(max_frame_size=10)
        connection.receive_data(frame(BINARY, b"x" * 100_000)[:1000])  # too large: dropped, then 1009
        assert connection.receive_pong(frame(PONG, b"beat")) is None

    def test_not_after_input_ended(self):
        connection = ServerConnection()
        feed(connection, close_frame(1000))
        assert connection.receive_pong(frame(PONG, b"beat")) is None


# RFC 6455 §5.6 and §8.1: text must be UTF-8.


class TestUtf8:
    def test_valid_multibyte_text(self):
        connection = ServerConnection()
        text = "κόσμε 🦆".encode()
        assert feed(connection, frame(TEXT, text)) == [Message(OpCode.TEXT, text)]
        assert Message(OpCode.TEXT, text).text == "κόσμε 🦆"

    @pytest.mark.parametrize("payload", [b"\xff", b"\xed\xa0\x80", b"ok\xc0\xaf", b"\xf4\x90\x80\x80", b"\xce"])
    def test_invalid_text_fails_1007(self, payload):
        connection = ServerConnection()
        assert feed(connection, frame(TEXT, payload)) == []
        assert failed_with(connection, 1007)

    def test_binary_is_not_validated(self):
        connection = ServerConnection()
        assert feed(connection, frame(BINARY, b"\xff\xfe")) == [Message(OpCode.BINARY, b"\xff\xfe")]

    def test_character_split_across_fragments_is_valid(self):
        connection = ServerConnection()
        duck = "🦆".encode()
        events = feed(connection, frame(TEXT, duck[:1], fin=False), frame(CONTINUATION, duck[1:3], fin=False))
        assert events == []
        assert feed(connection, frame(CONTINUATION, duck[3:])) == [Message(OpCode.TEXT, duck)]

    def test_invalid_sequence_fails_at_the_frame_where_it_appears(self):
        # The first fragment is already impossible to complete: fail without
        # waiting for the rest of the message (RFC 6455 §8.1 "fail fast").
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"valid \xed\xa0", fin=False))
        assert failed_with(connection, 1007)

    def test_incomplete_character_at_the_end_of_the_message_fails_1007(self):
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"abc", fin=False), frame(CONTINUATION, "é".encode()[:1]))
        assert failed_with(connection, 1007)

    def test_send_text_accepts_str_and_valid_bytes(self):
        connection = ServerConnection()
        connection.send_text("é")
        connection.send_text("é".encode())
        connection.send_text(b"ascii")
        assert sent(connection) == server_frame(TEXT, "é".encode()) * 2 + server_frame(TEXT, b"ascii")

    def test_send_text_refuses_invalid_bytes(self):
        connection = ServerConnection()
        with pytest.raises(LocalProtocolError):
            connection.send_text(b"\xff")


# RFC 6455 §10.4: implementation limits.


class TestLimits:
    def test_frame_over_limit_is_refused_from_its_header(self):
        # Only the header arrives: the 1009 goes out before any payload is buffered.
        connection = ServerConnection(max_frame_size=1024)
        header = frame(BINARY, b"", length=10_000_000)[:14]
        feed(connection, header)
        assert parse_server_frames(sent(connection))[-1][3][:2] == (1009).to_bytes(2, "big")
        assert connection.state is State.CLOSING
        assert len(connection._buffer) == 0

    def test_oversized_frame_payload_is_skipped_and_the_close_handshake_completes(self):
        connection = ServerConnection(max_frame_size=1024)
        events = feed(connection, frame(BINARY, b"x" * 5000)[:3000])
        assert events == []
        assert sent(connection) == server_close(1009, b"frame of 5000 bytes exceeds the limit of 1024 bytes")
        assert connection.state is State.CLOSING
        events = feed(connection, frame(BINARY, b"x" * 5000)[3000:] + frame(TEXT, b"dropped") + close_frame(1000))
        assert events == [Close(1000, "")]
        assert connection.state is State.CLOSED
        assert connection.close_initiator is Side.LOCAL
        assert sent(connection) == b""

    def test_message_limit_applies_across_fragments(self):
        connection = ServerConnection(max_frame_size=100, max_message_size=250)
        events = feed(connection, *[frame(BINARY if i == 0 else CONTINUATION, b"y" * 100, fin=False) for i in range(3)])
        assert events == []
        frames = parse_server_frames(sent(connection))
        assert frames[0][2] == CLOSE
        assert frames[0][3][:2] == (1009).to_bytes(2, "big")
        assert connection._message_buffer is None

    def test_single_frame_message_over_message_limit_fails_1009(self):
        connection = ServerConnection(max_frame_size=None, max_message_size=10)
        feed(connection, frame(TEXT, b"x" * 11))
        assert parse_server_frames(sent(connection))[0][3][:2] == (1009).to_bytes(2, "big")

    def test_message_exactly_at_the_limits_is_accepted(self):
        # 20 bytes of payload, and one continuation frame at FRAME_COST.
        connection = ServerConnection(max_frame_size=10, max_message_size=20 + FRAME_COST)
        events = feed(connection, frame(TEXT, b"a" * 10, fin=False), frame(CONTINUATION, b"b" * 10))
        assert events == [Message(OpCode.TEXT, b"a" * 10 + b"b" * 10)]

    def test_a_continuation_frame_costs_frame_cost_beyond_its_payload(self):
        connection = ServerConnection(max_frame_size=10, max_message_size=20 + FRAME_COST - 1)
        events = feed(connection, frame(TEXT, b"a" * 10, fin=False), frame(CONTINUATION, b"b" * 10))
        assert events == []
        assert close_code_sent(connection) == 1009

    @pytest.mark.parametrize("split", [False, True])
    def test_empty_continuation_frames_reach_the_message_limit(self, split):
        # An empty frame adds nothing to hold, but it costs: no run of them goes on forever.
        limit = 100 * FRAME_COST
        connection = ServerConnection(max_message_size=limit)
        stream = frame(BINARY, b"", fin=False) + frame(CONTINUATION, b"", fin=False) * 101
        pieces = [stream[index : index + 7] for index in range(0, len(stream), 7)] if split else [stream]
        feed(connection, *pieces)
        assert connection.has_data_to_send
        assert parse_server_frames(sent(connection)) == [
            (True, False, CLOSE, (1009).to_bytes(2, "big") + f"message exceeds the limit of {limit} bytes".encode())
        ]
        # The 101st continuation frame went over: it was the one refused, and the message is gone.
        assert connection.frames_received == 101
        assert connection._message_buffer is None and connection._message_size == 0

    def test_empty_compressed_continuation_frames_reach_the_message_limit(self):
        extension = PerMessageDeflate().negotiate([])
        assert extension is not None
        connection = ServerConnection(max_message_size=10 * FRAME_COST, extensions=[extension])
        feed(connection, frame(TEXT, b"", fin=False, rsv1=True), *[frame(CONTINUATION, b"", fin=False)] * 11)
        assert close_code_sent(connection) == 1009

    def test_fragments_are_collected_in_one_buffer(self):
        connection = ServerConnection(max_message_size=None)
        events = feed(connection, frame(BINARY, b"ab", fin=False))
        assert events == [] and connection._message_buffer == b"ab"
        events = feed(connection, *[frame(CONTINUATION, b"cd", fin=False)] * 1000)
        assert events == []
        buffer = connection._message_buffer
        assert type(buffer) is bytearray and len(buffer) == 2002
        assert feed(connection, frame(CONTINUATION, b"!")) == [Message(OpCode.BINARY, b"ab" + b"cd" * 1000 + b"!")]
        assert connection._message_buffer is None

    def test_an_extension_that_inflates_past_the_limit_is_stopped_after_it(self):
        # permessage-deflate stops at the limit itself; an extension that ignores max_size is checked after.
        class Doubling(Extension):
            def rsv1_allowed(self, opcode: int) -> bool:
                return opcode in (OpCode.TEXT, OpCode.BINARY)

            def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
                return Frame(frame.opcode, frame.fin, frame.payload * 2)

        connection = ServerConnection(max_message_size=15, extensions=[Doubling("doubling")])
        assert feed(connection, frame(BINARY, b"1234567", rsv1=True)) == [Message(OpCode.BINARY, b"12345671234567")]
        assert feed(connection, frame(BINARY, b"12345678", rsv1=True)) == []
        assert close_code_sent(connection) == 1009

    def test_control_frames_are_not_held_to_a_tiny_frame_limit(self):
        # §5.5 bounds them at 125 bytes: the limit is for data frames.
        connection = ServerConnection(max_frame_size=4)
        assert feed(connection, frame(PING, b"12345")) == [Ping(b"12345")]
        assert sent(connection) == server_frame(PONG, b"12345")
        connection.send_close()
        sent(connection)
        assert feed(connection, frame(PING, b"12345"), close_frame(1000, b"a long reason")) == [
            Ping(b"12345"),
            Close(1000, "a long reason"),
        ]
        assert sent(connection) == b""  # no Pong after our Close, no second Close
        assert connection.state is State.CLOSED

    def test_no_limits(self):
        connection = ServerConnection(max_frame_size=None, max_message_size=None)
        events = feed(connection, frame(TEXT, b"a", fin=False), frame(CONTINUATION, b"b"))
        assert events == [Message(OpCode.TEXT, b"ab")]


# RFC 6455 §5.5.1 and §7: the closing handshake.


class TestClosingHandshake:
    def test_client_close_is_echoed_with_the_same_code(self):
        connection = ServerConnection()
        assert feed(connection, close_frame(1001, b"going")) == [Close(1001, "going")]
        assert sent(connection) == server_close(1001)
        assert connection.state is State.CLOSED
        assert connection.close_initiator is Side.REMOTE
        assert connection.close_received == Close(1001, "going")
        assert connection.close_sent == Close(1001, "")

    def test_deferred_answer_lets_replies_to_earlier_messages_go_first(self):
        # §5.5.1: an endpoint MAY finish sending its current messages before
        # answering a Close; Duck lost those replies (defect 11).
        connection = ServerConnection(answer_close_at_once=False)
        events = feed(connection, frame(TEXT, b"question"), close_frame(1001, b"bye"), frame(TEXT, b"ignored"))
        assert events == [Message(OpCode.TEXT, b"question"), Close(1001, "bye")]
        assert sent(connection) == b""
        assert connection.state is State.OPEN
        assert connection.close_initiator is Side.REMOTE
        connection.send_text("answer")
        connection.send_close(1001)
        assert sent(connection) == server_frame(TEXT, b"answer") + server_close(1001)
        assert connection.state is State.CLOSED
        assert connection.close_initiator is Side.REMOTE
        assert connection.close_sent == Close(1001, "")
        assert feed(connection, frame(TEXT, b"late")) == []

    def test_frames_received_counts_whole_frames_only(self):
        connection = ServerConnection()
        whole = frame(TEXT, b"abc", fin=False)
        feed(connection, whole[:4])
        assert connection.frames_received == 0
        feed(connection, whole[4:], frame(CONTINUATION, b"d"), frame(PING))
        assert connection.frames_received == 3

    def test_has_data_to_send_tells_whether_output_waits(self):
        connection = ServerConnection()
        assert not connection.has_data_to_send
        feed(connection, frame(PING, b"x"))
        assert connection.has_data_to_send
        sent(connection)
        assert not connection.has_data_to_send

    def test_deferred_answer_can_only_be_sent_once(self):
        connection = ServerConnection(answer_close_at_once=False)
        feed(connection, close_frame(1000))
        connection.send_close(1000)
        with pytest.raises(LocalProtocolError):
            connection.send_close(1000)

    def test_client_close_without_code_is_echoed_without_code(self):
        connection = ServerConnection()
        assert feed(connection, close_frame(None)) == [Close(1005, "")]
        assert sent(connection) == server_close(None)

    @pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999])
    def test_valid_close_codes_are_accepted(self, code):
        connection = ServerConnection()
        assert feed(connection, close_frame(code)) == [Close(code, "")]
        assert sent(connection) == server_close(code)

    @pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    def test_invalid_close_codes_fail_1002(self, code):
        connection = ServerConnection()
        assert feed(connection, close_frame(code)) == []
        assert failed_with(connection, 1002)

    def test_one_byte_close_payload_fails_1002(self):
        connection = ServerConnection()
        feed(connection, frame(CLOSE, b"\x03"))
        assert failed_with(connection, 1002)

    def test_close_reason_not_utf8_fails_1007(self):
        connection = ServerConnection()
        feed(connection, close_frame(1000, b"\xff"))
        assert failed_with(connection, 1007)

    def test_nothing_is_read_after_the_clients_close(self):
        connection = ServerConnection()
        events = feed(connection, close_frame(1000) + frame(TEXT, b"late"))
        assert events == [Close(1000, "")]
        assert feed(connection, frame(TEXT, b"later")) == []

    def test_server_close_then_client_close(self):
        connection = ServerConnection()
        connection.send_close(1000, "bye")
        assert sent(connection) == server_close(1000, b"bye")
        assert connection.state is State.CLOSING
        assert connection.close_initiator is Side.LOCAL
        events = feed(connection, frame(TEXT, b"discarded"), frame(PING, b"x"), close_frame(1000))
        assert events == [Ping(b"x"), Close(1000, "")]
        assert sent(connection) == b""  # no pong and no second Close once ours is sent
        assert connection.state is State.CLOSED

    def test_data_is_discarded_while_closing_even_when_fragmented(self):
        connection = ServerConnection(max_frame_size=10)
        connection.send_close()
        sent(connection)
        events = feed(connection, frame(TEXT, b"a" * 100, fin=False), frame(CONTINUATION, b"\xff"), close_frame(1000))
        assert events == [Close(1000, "")]

    def test_no_data_after_our_close(self):
        connection = ServerConnection()
        connection.send_close()
        for attempt in (connection.send_text, connection.send_binary):
            with pytest.raises(LocalProtocolError):
                attempt(b"x")
        with pytest.raises(LocalProtocolError):
            connection.send_ping()

    def test_no_second_close(self):
        connection = ServerConnection()
        connection.send_close()
        with pytest.raises(LocalProtocolError):
            connection.send_close()

    @pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 2000, 5000])
    def test_unsendable_close_codes_are_refused(self, code):
        connection = ServerConnection()
        with pytest.raises(LocalProtocolError):
            connection.send_close(code)
        assert connection.state is State.OPEN

    def test_close_without_code(self):
        connection = ServerConnection()
        connection.send_close(None)
        assert sent(connection) == server_close(None)
        assert connection.close_sent == Close(1005, "")

    def test_long_reason_is_cut_on_a_character_boundary(self):
        connection = ServerConnection()
        connection.send_close(1000, "é" * 100)  # 200 bytes of UTF-8
        payload = parse_server_frames(sent(connection))[0][3]
        assert len(payload) == 2 + 122
        assert payload[2:].decode() == "é" * 61

    def test_eof_closes_abnormally(self):
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"partial")[:4])
        connection.receive_eof()
        assert connection.state is State.CLOSED
        assert connection.close_received is None
        assert len(connection._buffer) == 0

    def test_eof_while_closing_and_after_close(self):
        connection = ServerConnection()
        connection.send_close()
        connection.receive_eof()
        assert connection.state is State.CLOSED
        connection.receive_eof()
        assert connection.state is State.CLOSED


# RFC 6455 §7.1.7: failing the connection.


class TestFailing:
    def test_fail_sends_the_code_then_closed(self):
        connection = ServerConnection()
        connection.fail(1011, "internal error")
        assert sent(connection) == server_close(1011, b"internal error")
        assert connection.state is State.CLOSED
        assert connection.close_initiator is Side.LOCAL

    def test_fail_while_closing_sends_nothing_more(self):
        connection = ServerConnection()
        connection.send_close()
        sent(connection)
        connection.fail(1011)
        assert sent(connection) == b""
        assert connection.state is State.CLOSED
        connection.fail(1011)
        assert connection.state is State.CLOSED

    def test_input_after_failure_is_ignored(self):
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"x", mask=None) + frame(TEXT, b"y"))
        assert failed_with(connection, 1002)
        assert feed(connection, frame(TEXT, b"z")) == []
        assert sent(connection) == b""

    def test_protocol_error_after_our_close_closes_without_a_second_close(self):
        connection = ServerConnection()
        connection.send_close()
        sent(connection)
        feed(connection, frame(0x3, b""))
        assert connection.state is State.CLOSED
        assert sent(connection) == b""

    def test_events_before_the_violation_are_kept(self):
        connection = ServerConnection()
        events = feed(connection, frame(TEXT, b"good") + frame(TEXT, b"bad", mask=None))
        assert events == [Message(OpCode.TEXT, b"good")]

    @pytest.mark.parametrize(
        "violation, code",
        [
            (frame(TEXT, b"bad", mask=None), 1002),
            (frame(TEXT, b"rsv", rsv1=True), 1002),
            (frame(CONTINUATION, b"nothing to continue"), 1002),
            (frame(TEXT, b"\xff"), 1007),
        ],
    )
    def test_deferred_failure_lets_replies_to_earlier_messages_go_first(self, violation, code):
        # Autobahn 3.2, 5.15: a message parsed in the same read as a later
        # violation is still answered, then the connection fails.
        connection = ServerConnection(answer_close_at_once=False)
        events = feed(connection, frame(TEXT, b"good") + violation + frame(PING, b"unread"))
        assert events == [Message(OpCode.TEXT, b"good")]
        assert sent(connection) == b""
        assert connection.state is State.OPEN
        assert connection.input_ended and connection.failure_pending
        assert connection.protocol_error is not None and connection.protocol_error.close_code == code
        connection.send_text("good")
        assert sent(connection) == server_frame(TEXT, b"good")
        connection.fail(connection.protocol_error.close_code, str(connection.protocol_error))
        assert failed_with(connection, code)
        assert not connection.failure_pending
        assert feed(connection, frame(TEXT, b"late")) == []

    def test_failure_is_not_pending_when_failing_at_once(self):
        connection = ServerConnection()
        feed(connection, frame(TEXT, b"bad", mask=None))
        assert connection.input_ended and not connection.failure_pending

    def test_input_ends_with_the_clients_close_and_with_eof(self):
        connection = ServerConnection(answer_close_at_once=False)
        assert not connection.input_ended
        feed(connection, close_frame(1000))
        assert connection.input_ended and not connection.failure_pending
        other = ServerConnection()
        other.receive_eof()
        assert other.input_ended


# RFC 6455 §5.2, §8.1: a frame whose payload arrives in several reads.


class TestPartialFrames:
    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    @pytest.mark.parametrize("cuts", [(3,), (14,), (15, 16), (20, 700, 701), tuple(range(1, 1200, 97))])
    def test_payload_in_pieces_makes_one_message(self, opcode, cuts):
        payload = ("déjà " * 200).encode()
        data = frame(opcode, payload)
        pieces = [data[start:stop] for start, stop in zip((0, *cuts), (*cuts, len(data)), strict=True)]
        connection = ServerConnection()
        events = []
        for piece in pieces:
            events += feed(connection, piece)
        assert events == [Message(OpCode(opcode), payload)]
        assert type(events[0].data) is bytes
        assert connection.frames_received == 1

    def test_payload_to_come_counts_down_as_a_frame_arrives(self):
        connection = ServerConnection()
        data = frame(BINARY, bytes(1000))  # a four-byte header and a four-byte mask
        assert connection.payload_to_come == 0
        feed(connection, data[:5])  # the header is not whole yet: no payload is arriving
        assert connection.payload_to_come == 0
        feed(connection, data[5:108])
        assert connection.payload_to_come == 900
        feed(connection, data[108:-1])
        assert connection.payload_to_come == 1
        assert feed(connection, data[-1:]) == [Message(OpCode.BINARY, bytes(1000))]
        assert connection.payload_to_come == 0

    def test_payload_to_come_of_a_frame_read_in_place(self):
        connection = ServerConnection()
        data = frame(BINARY, bytes(range(256)) * 1024)
        feed(connection, data[:1000])
        to_come = connection.payload_to_come
        assert to_come == len(data) - 1000
        buffer = connection.receive_buffer()
        if buffer is None:  # the pure-Python payload: no reading in place
            pytest.skip("the native extension reads in place")
        buffer[:10000] = data[1000:11000]
        buffer.release()
        connection.received_into(10000)
        assert connection.payload_to_come == to_come - 10000

    def test_frame_collected_then_frames_in_the_same_read(self):
        connection = ServerConnection()
        big = frame(BINARY, bytes(range(256)) * 4)
        assert feed(connection, big[:100]) == []
        events = feed(connection, big[100:] + frame(TEXT, b"after") + frame(PING, b"p"))
        assert events == [Message(OpCode.BINARY, bytes(range(256)) * 4), Message(OpCode.TEXT, b"after"), Ping(b"p")]

    def test_fragments_arriving_in_pieces(self):
        connection = ServerConnection()
        data = frame(TEXT, "€uro ".encode() * 50, fin=False) + frame(CONTINUATION, "€nd".encode() * 60)
        events = []
        for start in range(0, len(data), 33):
            events += feed(connection, data[start : start + 33])
        assert events == [Message(OpCode.TEXT, "€uro ".encode() * 50 + "€nd".encode() * 60)]

    def test_invalid_utf8_fails_when_it_arrives_not_when_the_frame_ends(self):
        # Autobahn 6.4.3, 6.4.4: fail fast on invalid text inside one large frame.
        payload = b"valid " * 100 + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80" + b"rest" * 100
        data = frame(TEXT, payload)
        connection = ServerConnection()
        assert feed(connection, data[:300]) == []
        assert connection.state is State.OPEN
        invalid_at = len(data) - len(payload) + payload.index(b"\xf4\x90") + 2
        assert feed(connection, data[300 : invalid_at - 1]) == []
        assert connection.state is State.OPEN  # \xf4 alone may still start a valid character
        assert feed(connection, data[invalid_at - 1 : invalid_at]) == []
        assert failed_with(connection, 1007)

    @pytest.mark.parametrize("at_once", [True, False])
    def test_invalid_utf8_in_a_frame_whose_header_was_split(self, at_once):
        # The header waits in the receive buffer; the payload's first bytes,
        # invalid, come with the rest of the header. Failing must not leave
        # the buffer pinned by a view (BufferError on the next resize).
        data = frame(TEXT, b"\x80" + b"x" * 400, fin=False)
        connection = ServerConnection(answer_close_at_once=at_once)
        assert feed(connection, data[:1]) == []
        assert feed(connection, data[1:12]) == []
        assert connection.protocol_error is not None and connection.protocol_error.close_code == 1007
        assert connection.protocol_error.__traceback__ is None
        if at_once:
            assert failed_with(connection, 1007)
        else:
            assert connection.failure_pending
        assert feed(connection, data[12:] + close_frame(1000)) == []

    def test_surrogate_prefix_fails_without_waiting_for_more(self):
        payload = b"ab\xed\xa0" + b"x" * 300
        data = frame(TEXT, payload)
        connection = ServerConnection()
        feed(connection, data[: len(data) - 300])
        assert failed_with(connection, 1007)

    def test_character_split_between_reads_is_valid(self):
        payload = "x€".encode() * 100
        data = frame(TEXT, payload)
        connection = ServerConnection()
        events = []
        for start in range(0, len(data), 7):
            events += feed(connection, data[start : start + 7])
        assert events == [Message(OpCode.TEXT, payload)]

    def test_incomplete_character_at_the_end_of_a_collected_frame_fails_1007(self):
        data = frame(TEXT, b"x" * 200 + b"\xe2\x82")
        connection = ServerConnection()
        feed(connection, data[:50], data[50:])
        assert failed_with(connection, 1007)

    def test_message_over_the_limit_is_refused_before_it_is_collected(self):
        connection = ServerConnection(max_frame_size=None, max_message_size=1000)
        data = frame(BINARY, b"x" * 600, fin=False) + frame(CONTINUATION, b"y" * 600)
        assert feed(connection, data[: len(data) - 500]) == []
        assert close_code_sent(connection) == 1009
        assert connection.state is State.CLOSING
        assert feed(connection, data[len(data) - 500 :] + close_frame(1009)) == [Close(1009, "")]
        assert connection.state is State.CLOSED

    def test_our_close_discards_the_rest_of_the_frame_being_collected(self):
        connection = ServerConnection()
        data = frame(BINARY, b"z" * 1000)
        assert feed(connection, data[:200]) == []
        connection.send_close(1000)
        assert feed(connection, data[200:] + close_frame(1000)) == [Close(1000, "")]
        assert connection.state is State.CLOSED

    def test_eof_drops_the_frame_being_collected(self):
        connection = ServerConnection()
        feed(connection, frame(BINARY, b"z" * 1000)[:200])
        connection.receive_eof()
        assert connection.state is State.CLOSED
        assert feed(connection, b"more") == []

    def test_deferred_failure_in_a_collected_frame(self):
        connection = ServerConnection(answer_close_at_once=False)
        data = frame(TEXT, b"x" * 300 + b"\xff" + b"y" * 300)
        assert feed(connection, data[:100], data[100:400]) == []
        assert connection.failure_pending and connection.protocol_error.close_code == 1007
        assert sent(connection) == b""


# Sending messages.


class TestSending:
    def test_fragment_size_splits_messages(self):
        connection = ServerConnection()
        connection.send_binary(b"abcdefghij", fragment_size=4)
        assert parse_server_frames(sent(connection)) == [
            (False, False, BINARY, b"abcd"),
            (False, False, CONTINUATION, b"efgh"),
            (True, False, CONTINUATION, b"ij"),
        ]
        connection.send_ping(b"p")
        assert connection.frames_sent == 4

    def test_fragment_size_at_least_the_message_sends_one_frame(self):
        connection = ServerConnection()
        connection.send_text("abc", fragment_size=3)
        assert sent(connection) == server_frame(TEXT, b"abc")

    def test_fragment_size_must_be_positive(self):
        with pytest.raises(ValueError):
            ServerConnection().send_text("x", fragment_size=0)

    def test_large_payloads_are_handed_over_without_copying(self):
        connection = ServerConnection()
        payload = b"z" * 100_000
        connection.send_binary(payload)
        header, body = connection.data_to_send()
        assert body is payload
        assert header == server_frame(BINARY, payload)[:10]

    def test_large_bytearray_payload(self):
        connection = ServerConnection()
        connection.send_binary(bytearray(b"q" * 5000))
        assert sent(connection) == server_frame(BINARY, b"q" * 5000)

    def test_data_to_send_is_emptied(self):
        connection = ServerConnection()
        connection.send_text("once")
        assert connection.data_to_send()
        assert connection.data_to_send() == []

    def test_send_text_now_returns_a_short_frame_instead_of_queueing_it(self):
        connection = ServerConnection()
        assert connection.send_text_now("hello") == server_frame(TEXT, b"hello")
        assert connection.send_text_now(b"bytes", fragment_size=5) == server_frame(TEXT, b"bytes")
        assert not connection.has_data_to_send
        assert (connection.frames_sent, connection.messages_sent, connection.bytes_sent) == (2, 2, 14)

    def test_send_text_now_queues_behind_what_waits_and_what_is_not_one_short_frame(self):
        connection = ServerConnection()
        connection.send_ping(b"p")
        assert connection.send_text_now("after the ping") is None
        long = "x" * 126
        assert connection.send_text_now(long) is None
        assert connection.send_text_now("abcd", fragment_size=2) is None
        assert parse_server_frames(sent(connection)) == [
            (True, False, PING, b"p"),
            (True, False, TEXT, b"after the ping"),
            (True, False, TEXT, long.encode()),
            (False, False, TEXT, b"ab"),
            (True, False, CONTINUATION, b"cd"),
        ]
        assert connection.messages_sent == 3

    def test_send_text_now_checks_as_send_text_does(self):
        connection = ServerConnection()
        with pytest.raises(LocalProtocolError):
            connection.send_text_now(b"\xff")
        connection.send_close(1000)
        with pytest.raises(LocalProtocolError):
            connection.send_text_now("late")

    def test_take_frame_counts_a_frame_the_caller_built_and_writes(self):
        connection = ServerConnection()
        frame_bytes = server_frame(TEXT, b"to everyone")
        assert connection.take_frame(len(frame_bytes))
        assert not connection.has_data_to_send
        assert (connection.frames_sent, connection.messages_sent, connection.bytes_sent) == (1, 1, len(frame_bytes))

    def test_take_frame_refuses_behind_queued_bytes_with_an_extension_and_after_a_close(self):
        queued = ServerConnection()
        queued.send_ping(b"p")
        compressed = ServerConnection(extensions=[PerMessageDeflate()])
        closed = ServerConnection()
        closed.send_close(1000)
        for connection in (queued, compressed, closed):
            counts = (connection.frames_sent, connection.messages_sent, connection.bytes_sent)
            assert not connection.take_frame(10)
            assert (connection.frames_sent, connection.messages_sent, connection.bytes_sent) == counts


# Reading a read of one message in one call.


class TestReceiveMessage:
    def test_a_read_of_one_whole_message_returns_it_and_queues_nothing(self):
        connection = ServerConnection()
        data = frame(TEXT, b"hi")
        assert connection.receive_message(data) == Message(OpCode.TEXT, b"hi")
        assert connection.events_received() == []
        assert not connection.has_data_to_send
        assert (connection.messages_received, connection.frames_received) == (1, 1)
        assert connection.bytes_received == len(data)

    def test_the_start_of_the_next_frame_may_follow(self):
        connection = ServerConnection()
        following = frame(BINARY, b"next")
        assert connection.receive_message(frame(TEXT, b"one") + following[:3]) == Message(OpCode.TEXT, b"one")
        assert connection.receive_message(following[3:]) == Message(OpCode.BINARY, b"next")
        assert connection.messages_received == 2

    @pytest.mark.parametrize(
        "data",
        [
            frame(TEXT, b"a") + frame(TEXT, b"b"),  # two messages
            frame(PING, b"p"),  # a control frame, answered
            frame(TEXT, b"a") + frame(PING, b"p"),
            frame(TEXT, b"a") + close_frame(1000),  # the message, then the end
            frame(TEXT, b"a") + frame(TEXT, b"b", mask=None),  # the message, then a protocol error
            frame(TEXT, b"abc", fin=False),  # a fragment
            frame(TEXT, b"abc")[:4],  # an incomplete frame
            frame(TEXT, b"a") + frame(BINARY, b"", length=2 * 1024 * 1024)[:14],  # then a frame too large: a 1009
            frame(TEXT, b"a") + frame(CONTINUATION, b"x"),  # then a frame out of place: a 1002
        ],
    )
    def test_any_other_read_is_receive_data(self, data):
        expected = ServerConnection(answer_close_at_once=False)
        connection = ServerConnection(answer_close_at_once=False)
        assert connection.receive_message(data) is None
        expected.receive_data(data)
        assert connection.events_received() == expected.events_received()
        assert sent(connection) == sent(expected)
        assert connection.state is expected.state
        assert connection.messages_received == expected.messages_received
        assert connection.input_ended is expected.input_ended

    def test_a_read_after_events_wait_is_receive_data(self):
        connection = ServerConnection()
        connection.receive_data(frame(TEXT, b"first"))
        assert connection.receive_message(frame(TEXT, b"second")) is None
        assert connection.events_received() == [Message(OpCode.TEXT, b"first"), Message(OpCode.TEXT, b"second")]
        assert connection.messages_received == 2

    def test_a_message_then_a_frame_too_large_leaves_the_close_to_send(self):
        # The message is not handed out alone: the caller's general path writes the 1009 at once.
        connection = ServerConnection(answer_close_at_once=False)
        data = frame(TEXT, b"last words") + frame(BINARY, b"", length=2 * 1024 * 1024)[:14]
        assert connection.receive_message(data) is None
        assert connection.events_received() == [Message(OpCode.TEXT, b"last words")]
        assert close_code_sent(connection) == 1009
        assert connection.state is State.CLOSING
