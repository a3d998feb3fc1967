"""Frames (RFC 6455 §5.2), Close payloads (§5.5.1), and the Duck-compatible Frame API."""

from __future__ import annotations

import pytest

from duck_ws_sync.exceptions import InvalidPayloadData, PayloadTooBig, ProtocolError
from duck_ws_sync.protocol import Frame, OpCode, PerMessageDeflate
from duck_ws_sync.protocol.events import Message, Ping, Pong
from duck_ws_sync.protocol.frames import (
    header_size,
    parse_close,
    parse_header,
    serialize_close,
    serialize_header,
    truncate_reason,
)
from tests.helpers import MASK, PING, TEXT, EndOfData, frame, parse_frame, server_frame

# RFC 6455 §5.2: headers.


class TestHeaders:
    @pytest.mark.parametrize(("second", "size"), [(5, 2), (126, 4), (127, 10), (0x85, 6), (0xFE, 8), (0xFF, 14)])
    def test_header_size_from_the_second_byte(self, second, size):
        assert header_size(second) == size

    def test_incomplete_header_gives_none(self):
        data = frame(TEXT, b"x" * 300)
        for cut in range(8):
            assert parse_header(data[:cut]) is None
        assert parse_header(data[:8]) is not None

    def test_header_fields(self):
        header = parse_header(frame(TEXT, b"abc", fin=False))
        assert (header.fin, header.opcode, header.rsv1, header.length, header.mask, header.size) == (
            False,
            TEXT,
            False,
            3,
            MASK,
            6,
        )

    def test_position_inside_a_buffer(self):
        data = b"junk" + frame(PING, b"")
        assert parse_header(data, 4).opcode == PING

    def test_unmasked_frame_allowed_when_mask_not_required(self):
        header = parse_header(server_frame(TEXT, b"x"), mask_required=False)
        assert header.mask is None

    def test_serialize_header_sets_every_bit(self):
        header = serialize_header(OpCode.BINARY, 5, fin=False, rsv1=True, mask=b"abcd", rsv2=True, rsv3=True)
        assert header == bytes([0x72, 0x85]) + b"abcd"


# RFC 6455 §5.5.1: Close payloads.


class TestClosePayload:
    def test_empty_payload_is_no_status(self):
        assert parse_close(b"") == (1005, "")

    def test_code_and_reason(self):
        assert parse_close(b"\x03\xe8done") == (1000, "done")

    def test_one_byte_payload_is_a_protocol_error(self):
        with pytest.raises(ProtocolError):
            parse_close(b"\x03")

    def test_invalid_code_is_a_protocol_error(self):
        with pytest.raises(ProtocolError) as info:
            parse_close(b"\x03\xed")  # 1005
        assert info.value.close_code == 1002

    def test_reason_must_be_utf8(self):
        with pytest.raises(InvalidPayloadData) as info:
            parse_close(b"\x03\xe8\xff")
        assert info.value.close_code == 1007

    def test_serialize(self):
        assert serialize_close(None) == b""
        assert serialize_close(4000, "é") == b"\x0f\xa0" + "é".encode()

    def test_truncate_reason(self):
        assert truncate_reason("abc") == b"abc"
        assert truncate_reason("a" * 200) == b"a" * 123
        assert truncate_reason("a" + "€" * 50, limit=5) == "a€".encode()


# Duck's Frame API.


class TestFrame:
    def test_defaults_match_duck(self):
        assert Frame(OpCode.TEXT) == Frame(OpCode.TEXT, True, b"", False, False, False)

    def test_serialize_unmasked(self):
        assert Frame(OpCode.TEXT, payload=b"Hello").serialize() == b"\x81\x05Hello"

    def test_serialize_masked_round_trips_through_parse(self):
        data = Frame(OpCode.BINARY, payload=b"\x00" * 70000).serialize(mask=True)
        assert data[1] & 0x80
        assert parse_frame(data) == Frame(OpCode.BINARY, payload=b"\x00" * 70000)

    def test_parse_refuses_unmasked_frames_by_default(self):
        with pytest.raises(ProtocolError):
            parse_frame(server_frame(TEXT, b"x"))
        assert parse_frame(server_frame(TEXT, b"x"), mask_required=False).payload == b"x"

    def test_parse_checks_size_from_the_header(self):
        # Only the header is available: the size is refused before reading on.
        with pytest.raises(PayloadTooBig):
            parse_frame(frame(TEXT, b"", length=1000)[:8], max_size=999)
        with pytest.raises(EndOfData):
            parse_frame(frame(TEXT, b"", length=1000)[:8], max_size=1000)

    def test_parse_with_extension_decodes(self):
        agreed = PerMessageDeflate().negotiate([])
        sender = PerMessageDeflate().negotiate([])
        data = Frame(OpCode.TEXT, payload=b"squeeze " * 20).serialize(mask=True, extensions=[sender])
        assert parse_frame(data, extensions=[agreed]) == Frame(OpCode.TEXT, payload=b"squeeze " * 20)

    @pytest.mark.parametrize(
        "bad",
        [
            Frame(3),
            Frame(OpCode.PING, fin=False),
            Frame(OpCode.PING, payload=b"x" * 126),
            Frame(OpCode.TEXT, rsv1=True),
            Frame(OpCode.TEXT, rsv2=True),
            Frame(OpCode.TEXT, rsv3=True),
        ],
    )
    def test_check_refuses_invalid_frames(self, bad):
        with pytest.raises(ProtocolError):
            bad.check()

    def test_check_allows_rsv1_with_deflate_on_data_frames_only(self):
        deflate = PerMessageDeflate()
        Frame(OpCode.TEXT, rsv1=True).check([deflate])
        with pytest.raises(ProtocolError):
            Frame(OpCode.PING, rsv1=True).check([deflate])
        Frame(OpCode.PING, payload=b"x" * 125).check()


class TestRepr:
    """Reprs name the payload's first bytes and its length, never the whole payload."""

    def test_a_large_frame_is_summarized(self):
        text = repr(Frame(OpCode.TEXT, payload=b"a" * (1 << 20)))
        assert text == "Frame(TEXT, fin=True, payload=b'" + "a" * 32 + "'... (1048576 bytes))"

    def test_a_short_frame_shows_its_whole_payload_and_flags(self):
        assert repr(Frame(0x3, fin=False, payload=b"xy", rsv1=True)) == (
            "Frame(0x3, fin=False, payload=b'xy' (2 bytes), rsv1=True)"
        )

    def test_events_are_summarized(self):
        assert repr(Message(OpCode.BINARY, bytes(1000))) == ("Message(BINARY, b'" + "\\x00" * 32 + "'... (1000 bytes))")
        assert repr(Ping(b"p")) == "Ping(b'p' (1 bytes))"
        assert repr(Pong(b"")) == "Pong(b'' (0 bytes))"
