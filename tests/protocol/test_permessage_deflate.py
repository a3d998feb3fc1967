"""permessage-deflate (RFC 7692): negotiation, the codec on a connection, and its limits.

Client payloads are compressed here with zlib directly, the way RFC 7692 §7.2.1
describes it (sync flush, then the 4-byte tail removed), and framed with the
raw builders of ``tests.helpers``. Interoperability is checked in memory
against the sans-I/O client of the ``websockets`` package.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.extensions.permessage_deflate import PerMessageDeflate as TheirPerMessageDeflate
from websockets.frames import Frame as TheirFrame
from websockets.frames import Opcode as TheirOpcode
from websockets.uri import parse_uri

from duck_ws_sync.exceptions import ExtensionError, PayloadTooBig, ProtocolError
from duck_ws_sync.protocol import (
    Close,
    Extension,
    Frame,
    Headers,
    Message,
    OpCode,
    PerMessageDeflate,
    Request,
    ServerConnection,
    ServerHandshake,
    State,
)
from duck_ws_sync.protocol.extensions import negotiate_extensions
from duck_ws_sync.protocol.headers import parse_extensions
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
    parse_frame,
    parse_server_frames,
    sent,
)

# Both parsers: the native one of whole messages and the Python one.
pytestmark = pytest.mark.usefixtures("frame_parser")

MiB = 1024 * 1024
TAIL = b"\x00\x00\xff\xff"
WORDS = [b"deflate", b"window", b"message", b"frame", b"caf\xc3\xa9", b"\xe2\x82\xac", b"duck", b"\xf0\x9f\xa6\x86"]


# Helpers.


def deflate(data: bytes, compressor: Any = None) -> bytes:
    """Compress one message as a client does (RFC 7692 §7.2.1): sync flush, tail removed."""
    if compressor is None:
        compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert compressed.endswith(TAIL)
    return compressed[:-4]


def inflate(payload: bytes, decompressor: Any = None, wbits: int = 15) -> bytes:
    """Decompress one server message (RFC 7692 §7.2.2): the tail appended back."""
    if decompressor is None:
        decompressor = zlib.decompressobj(-wbits)
    return decompressor.decompress(payload + TAIL)


def text(size: int, seed: int = 0) -> bytes:
    """Compressible UTF-8 text with multi-byte characters: ``size`` bytes, less a cut character."""
    return b" ".join(random.Random(seed).choices(WORDS, k=size // 3))[:size].decode("utf-8", "ignore").encode()


def noise(size: int, seed: int = 0) -> bytes:
    """Incompressible bytes."""
    return random.Random(seed).randbytes(size)


def agree(offer: str = "permessage-deflate", **settings: Any) -> PerMessageDeflate | None:
    """Answer one offer, written as in ``Sec-WebSocket-Extensions``, with a server configured by ``settings``."""
    [(name, params)] = parse_extensions([offer])
    assert name == "permessage-deflate"
    return PerMessageDeflate(**settings).negotiate(params)


def response_to(offer: str = "permessage-deflate", **settings: Any) -> str | None:
    """The response parameters for one offer, or None if it is declined."""
    agreed = agree(offer, **settings)
    return None if agreed is None else agreed.response_params()


def agreed_extension(offer: str = "permessage-deflate", **settings: Any) -> PerMessageDeflate:
    """The extension agreed for one offer, which must be accepted."""
    agreed = agree(offer, **settings)
    assert agreed is not None
    return agreed


def connection(
    offer: str = "permessage-deflate", *, max_message_size: int | None = 16 * MiB, **settings: Any
) -> ServerConnection:
    """A connection on which permessage-deflate was agreed."""
    return ServerConnection(extensions=[agreed_extension(offer, **settings)], max_message_size=max_message_size)


def fragments(opcode: int, payload: bytes, cuts: Sequence[int], *, rsv1: bool = True) -> bytes:
    """One message as client frames split at ``cuts``, RSV1 on the first frame only (RFC 7692 §6.1)."""
    bounds = [0, *cuts, len(payload)]
    pieces = [payload[start:stop] for start, stop in pairwise(bounds)]
    last = len(pieces) - 1
    return b"".join(
        frame(opcode if index == 0 else CONTINUATION, piece, fin=index == last, rsv1=rsv1 and index == 0)
        for index, piece in enumerate(pieces)
    )


def open_with_websockets(
    offer: dict[str, Any] | None = None, settings: dict[str, Any] | None = None, header: str | None = None
) -> tuple[ClientProtocol, ServerConnection]:
    """Run the opening handshake between websockets' client and our server, in memory.

    Args:
        offer: Arguments of websockets' ``ClientPerMessageDeflateFactory``.
        settings: Arguments of our ``PerMessageDeflate``.
        header: A ``Sec-WebSocket-Extensions`` value to send instead of the client's.
    """
    factory = ClientPerMessageDeflateFactory(**(offer or {}))
    client = ClientProtocol(parse_uri("ws://example.com/chat"), extensions=[factory], max_size=None)
    request = client.connect()
    if header is not None:
        del request.headers["Sec-WebSocket-Extensions"]
        request.headers["Sec-WebSocket-Extensions"] = header
    client.send_request(request)
    client.data_to_send()  # the request, handed to our handshake as an object instead
    handshake = ServerHandshake(extensions=[PerMessageDeflate(**(settings or {}))])
    result = handshake.accept(Request("GET", request.path, Headers(request.headers.raw_items())))
    assert result.accepted
    client.receive_data(result.response.serialize())
    assert client.handshake_exc is None
    client.events_received()  # the 101 response
    return client, ServerConnection(extensions=result.extensions, max_message_size=None)


def to_client(server: ServerConnection, client: ClientProtocol) -> list[tuple[int, bytes]]:
    """Deliver the server's output to websockets' client; return its messages, reassembled."""
    wire = sent(server)
    # Every data message went out compressed: RSV1 on its first frame only (RFC 7692 §6.1).
    assert all(rsv1 == (opcode != CONTINUATION) for _, rsv1, opcode, _ in parse_server_frames(wire) if opcode < CLOSE)
    client.receive_data(wire)
    return reassemble(client.events_received())


def to_server(client: ClientProtocol, server: ServerConnection) -> list:
    """Deliver websockets' client output to our server; return its events."""
    return feed(server, *client.data_to_send())


def reassemble(frames: Iterable[Any]) -> list[tuple[int, bytes]]:
    """Join websockets' frames into ``(opcode, data)`` messages."""
    messages, parts, opcode = [], [], TheirOpcode.CONT
    for their_frame in frames:
        if their_frame.opcode != TheirOpcode.CONT:
            opcode = their_frame.opcode
        parts.append(bytes(their_frame.data))
        if their_frame.fin:
            messages.append((int(opcode), b"".join(parts)))
            parts = []
    return messages


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """One client frame of under 64 KiB that inflates to 64 MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    payload = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]
    assert len(payload) <= 64 * 1024
    return frame(BINARY, payload, rsv1=True)


# RFC 6455 §9: the extension interface.


def test_base_extension_changes_nothing_and_declines_every_offer():
    extension = Extension("x-test")
    data_frame = Frame(OpCode.TEXT, True, b"data")
    assert extension.encode(data_frame) is data_frame
    assert extension.decode(data_frame, max_size=1) is data_frame
    assert not extension.rsv1_allowed(OpCode.TEXT)
    assert extension.negotiate([]) is None
    assert extension.response_params() == "x-test"


def test_rsv1_is_allowed_on_data_frames_that_start_a_message_only():
    extension = PerMessageDeflate()
    assert extension.rsv1_allowed(OpCode.TEXT)
    assert extension.rsv1_allowed(OpCode.BINARY)
    for opcode in (OpCode.CONTINUATION, OpCode.CLOSE, OpCode.PING, OpCode.PONG):
        assert not extension.rsv1_allowed(opcode)


def test_repr_shows_the_agreed_parameters():
    agreed = agreed_extension("permessage-deflate; server_max_window_bits=10; client_no_context_takeover")
    assert repr(agreed) == (
        "PerMessageDeflate(client_no_context_takeover=True, server_no_context_takeover=False, "
        "client_max_window_bits=15, server_max_window_bits=10)"
    )


# RFC 7692 §5 and RFC 6455 §9.1: several offers, in the client's order of preference.


def test_first_acceptable_offer_wins_in_client_order():
    offers = parse_extensions(["permessage-deflate; server_max_window_bits=10, permessage-deflate"])
    agreed = negotiate_extensions(offers, [PerMessageDeflate()])
    assert [extension.response_params() for extension in agreed] == ["permessage-deflate; server_max_window_bits=10"]


def test_declined_offer_falls_through_to_the_next_offer():
    offers = parse_extensions(["permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=9"])
    agreed = negotiate_extensions(offers, [PerMessageDeflate()])
    assert [extension.response_params() for extension in agreed] == ["permessage-deflate; server_max_window_bits=9"]


def test_unsupported_extensions_are_ignored():
    offers = parse_extensions(["x-webkit-deflate-frame, permessage-deflate"])
    agreed = negotiate_extensions(offers, [Extension("x-other"), PerMessageDeflate()])
    assert [extension.name for extension in agreed] == ["permessage-deflate"]


def test_declining_supported_extension_lets_the_next_one_answer():
    offers = parse_extensions(["permessage-deflate"])
    agreed = negotiate_extensions(offers, [Extension("permessage-deflate"), PerMessageDeflate()])
    assert len(agreed) == 1
    assert isinstance(agreed[0], PerMessageDeflate)


def test_no_acceptable_offer_means_no_extension():
    offers = parse_extensions(["permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1"])
    assert negotiate_extensions(offers, [PerMessageDeflate()]) == []


# RFC 7692 §7.1.1: context takeover parameters.


def test_server_no_context_takeover_offer_is_accepted():
    agreed = agreed_extension("permessage-deflate; server_no_context_takeover")
    assert agreed.server_no_context_takeover
    assert agreed.response_params() == "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"


def test_client_no_context_takeover_offer_is_accepted():
    agreed = agreed_extension("permessage-deflate; client_no_context_takeover")
    assert agreed.client_no_context_takeover
    assert agreed.response_params() == "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"


@pytest.mark.parametrize("param", ["server_no_context_takeover", "client_no_context_takeover"])
@pytest.mark.parametrize("value", ["1", '""', "true"])
def test_no_context_takeover_with_a_value_declines_the_offer(param, value):
    assert agree(f"permessage-deflate; {param}={value}") is None


# RFC 7692 §7.1.2.1: server_max_window_bits.


def test_server_max_window_bits_without_value_declines_the_offer():
    assert agree("permessage-deflate; server_max_window_bits") is None


def test_server_max_window_bits_8_is_declined_because_zlib_cannot_compress_with_it():
    assert agree("permessage-deflate; server_max_window_bits=8") is None


@pytest.mark.parametrize("configured", [9, 12, 15])
@pytest.mark.parametrize("offered", range(9, 16))
def test_server_max_window_bits_9_to_15_accepted_and_response_never_exceeds_offer(offered, configured):
    agreed = agreed_extension(
        f"permessage-deflate; server_max_window_bits={offered}", server_max_window_bits=configured
    )
    expected = min(offered, configured)
    assert agreed.server_max_window_bits == expected
    assert agreed.response_params() == f"permessage-deflate; server_max_window_bits={expected}"


def test_server_max_window_bits_not_offered_is_answered_with_the_server_setting():
    # §7.1.2.1: the response MAY carry server_max_window_bits without an offer.
    assert (
        response_to("permessage-deflate", server_max_window_bits=11) == "permessage-deflate; server_max_window_bits=11"
    )
    assert response_to("permessage-deflate", server_max_window_bits=15) == "permessage-deflate"


# RFC 7692 §7.1.2.2: client_max_window_bits.


@pytest.mark.parametrize("configured", range(9, 16))
def test_client_max_window_bits_without_value_lets_the_server_choose(configured):
    agreed = agreed_extension(
        "permessage-deflate; client_max_window_bits", server_max_window_bits=15, client_max_window_bits=configured
    )
    assert agreed.client_max_window_bits == configured
    expected = "permessage-deflate" if configured == 15 else f"permessage-deflate; client_max_window_bits={configured}"
    assert agreed.response_params() == expected


@pytest.mark.parametrize("configured", [9, 12, 15])
@pytest.mark.parametrize("offered", range(9, 16))
def test_client_max_window_bits_response_never_exceeds_offer(offered, configured):
    agreed = agreed_extension(
        f"permessage-deflate; client_max_window_bits={offered}",
        server_max_window_bits=15,
        client_max_window_bits=configured,
    )
    expected = min(offered, configured)
    assert agreed.client_max_window_bits == expected
    params = dict(parse_extensions([agreed.response_params()])[0][1])
    assert int(params.get("client_max_window_bits") or 15) == expected <= offered


def test_client_max_window_bits_8_offer_is_accepted():
    # §7.1.2.2 allows 8 to 15 in an offer; the server may answer with 8 or
    # leave the parameter out, and can inflate a window of 8 with 9 bits.
    agreed = agree("permessage-deflate; client_max_window_bits=8")
    assert agreed is not None
    params = dict(parse_extensions([agreed.response_params()])[0][1])
    assert int(params.get("client_max_window_bits") or 8) <= 8
    message = Frame(OpCode.TEXT, True, deflate(b"hello"), rsv1=True)
    assert agreed.decode(message).payload == b"hello"


def test_client_max_window_bits_not_offered_is_absent_from_response():
    # §7.1.2.2: without the offer the client may use any window, so we inflate with 15.
    agreed = agreed_extension("permessage-deflate", client_max_window_bits=9)
    assert "client_max_window_bits" not in agreed.response_params()
    assert agreed.client_max_window_bits == 15


# RFC 7692 §7.1: parameter values and names.


def test_quoted_values_are_accepted():
    offer = 'permessage-deflate; server_max_window_bits="10"; client_max_window_bits="11"'
    assert response_to(offer) == "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"


@pytest.mark.parametrize("param", ["server_max_window_bits", "client_max_window_bits"])
@pytest.mark.parametrize("value", ["16", "7", "010", "08", "abc", '""', '" 9"'])
def test_invalid_window_bits_value_declines_the_offer(param, value):
    assert agree(f"permessage-deflate; {param}={value}") is None


@pytest.mark.parametrize("offer", ["permessage-deflate; x-unknown", "permessage-deflate; mux=1"])
def test_unknown_parameter_declines_the_offer(offer):
    assert agree(offer) is None


@pytest.mark.parametrize(
    "param",
    [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits=10",
        "client_max_window_bits",
        "client_max_window_bits=10",
    ],
)
def test_repeated_parameter_declines_the_offer(param):
    # §7: "a parameter MUST NOT appear more than once"
    assert agree(f"permessage-deflate; {param}; {param}") is None


# Server settings shape the response.


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "permessage-deflate; server_max_window_bits=12"),
        ({"server_max_window_bits": 9}, "permessage-deflate; server_max_window_bits=9"),
        ({"server_max_window_bits": 15}, "permessage-deflate"),
        ({"client_max_window_bits": 11}, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=11"),
        (
            {"server_no_context_takeover": True},
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        (
            {"client_no_context_takeover": True},
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        ),
    ],
)
def test_server_settings_shape_the_response(settings, expected):
    assert response_to("permessage-deflate; client_max_window_bits", **settings) == expected


def test_compress_level_and_mem_level_are_used_on_the_connection():
    agreed = agreed_extension(compress_level=0, mem_level=9)
    assert (agreed.compress_level, agreed.mem_level) == (0, 9)
    data = b"abcabcabcabcabcabc"
    encoded = agreed.encode(Frame(OpCode.BINARY, True, data))
    assert data in encoded.payload  # level 0 stores the data uncompressed
    assert inflate(encoded.payload) == data


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("server_max_window_bits", 8),
        ("server_max_window_bits", 16),
        ("client_max_window_bits", 8),
        ("client_max_window_bits", 16),
        ("compress_level", -1),
        ("compress_level", 10),
        ("mem_level", 0),
        ("mem_level", 10),
    ],
)
def test_out_of_range_setting_raises_value_error(setting, value):
    with pytest.raises(ValueError, match=setting):
        PerMessageDeflate(**{setting: value})


@pytest.mark.parametrize(
    ("offer", "settings", "expected"),
    [
        ("permessage-deflate", {}, "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate", {"server_max_window_bits": 15}, "permessage-deflate"),
        (
            "permessage-deflate; server_max_window_bits=15",
            {"server_max_window_bits": 15},
            "permessage-deflate; server_max_window_bits=15",
        ),
        (
            "permessage-deflate; client_max_window_bits=10; server_max_window_bits=9; "
            "client_no_context_takeover; server_no_context_takeover",
            {},
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=9; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            {"server_no_context_takeover": True, "client_no_context_takeover": True, "client_max_window_bits": 9},
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=9",
        ),
    ],
)
def test_response_params_strings(offer, settings, expected):
    assert response_to(offer, **settings) == expected


# RFC 7692 §6 and §7.2.2: receiving compressed messages.


def test_compressed_text_message_is_inflated():
    data = text(2000)
    events = feed(connection(), frame(TEXT, deflate(data), rsv1=True))
    assert events == [Message(OpCode.TEXT, data)]


def test_compressed_binary_message_is_inflated():
    data = noise(500) * 4
    events = feed(connection(), frame(BINARY, deflate(data), rsv1=True))
    assert events == [Message(OpCode.BINARY, data)]


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x02\x00"], ids=["empty", "stored-block", "fixed-block"])
def test_compressed_empty_message_is_inflated(payload):
    assert feed(connection(), frame(TEXT, payload, rsv1=True)) == [Message(OpCode.TEXT, b"")]


@pytest.mark.parametrize("cuts", [[1], [100], [-1], [0], [10, 20, 30], [0, 0, -1]])
def test_fragmented_compressed_message_is_inflated(cuts):
    data = text(3000)
    payload = deflate(data)
    cuts = [cut % len(payload) if cut < 0 else cut for cut in cuts]
    assert feed(connection(), fragments(TEXT, payload, cuts)) == [Message(OpCode.TEXT, data)]


def test_compressed_message_in_one_byte_frames_is_inflated():
    # Every frame boundary can fall inside a deflate code or a UTF-8 character.
    data = text(400)
    payload = deflate(data)
    assert feed(connection(), fragments(TEXT, payload, range(1, len(payload)))) == [Message(OpCode.TEXT, data)]


def test_compressed_message_may_end_with_an_empty_continuation_frame():
    data = text(300)
    events = feed(connection(), fragments(BINARY, deflate(data), [len(deflate(data))]))
    assert events == [Message(OpCode.BINARY, data)]


def test_rsv1_on_continuation_frame_fails_1002():
    # §6.1: only the first frame of a message carries RSV1.
    server = connection()
    payload = deflate(text(300))
    feed(server, frame(TEXT, payload[:10], fin=False, rsv1=True), frame(CONTINUATION, payload[10:], rsv1=True))
    assert close_code_sent(server) == 1002
    assert server.state is State.CLOSED


def test_decode_refuses_rsv1_on_continuation_frame():
    extension = agreed_extension()
    with pytest.raises(ProtocolError, match="continuation"):
        extension.decode(Frame(OpCode.CONTINUATION, True, b"", rsv1=True))


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_rsv1_on_control_frame_fails_1002(opcode):
    server = connection()
    feed(server, frame(opcode, b"", rsv1=True))
    assert close_code_sent(server) == 1002


def test_rsv1_without_negotiation_fails_1002():
    server = ServerConnection()
    assert feed(server, frame(TEXT, deflate(b"hello"), rsv1=True)) == []
    assert close_code_sent(server) == 1002


def test_uncompressed_message_on_compressed_connection_passes_through():
    # §6: compression is chosen per message, by RSV1 on its first frame.
    data = b"\xff\xfe not deflate data"
    assert feed(connection(), frame(BINARY, data)) == [Message(OpCode.BINARY, data)]


def test_uncompressed_fragmented_message_on_compressed_connection_passes_through():
    data = b"\xff\xfe not deflate data"
    events = feed(connection(), fragments(BINARY, data, [3, 9], rsv1=False))
    assert events == [Message(OpCode.BINARY, data)]


def test_context_takeover_across_messages():
    # §7.2.3.3: the second message refers back to the first one's window.
    compressor = zlib.compressobj(wbits=-15)
    data = text(1000)
    first, second = deflate(data, compressor), deflate(data, compressor)
    assert len(second) < len(first) // 4
    events = feed(connection(), frame(TEXT, first, rsv1=True), frame(TEXT, second, rsv1=True))
    assert events == [Message(OpCode.TEXT, data), Message(OpCode.TEXT, data)]


def test_client_no_context_takeover_messages_compressed_alone_are_inflated():
    server = connection("permessage-deflate; client_no_context_takeover")
    data = text(1000)
    events = feed(server, frame(TEXT, deflate(data), rsv1=True), frame(TEXT, deflate(data), rsv1=True))
    assert events == [Message(OpCode.TEXT, data), Message(OpCode.TEXT, data)]


def test_client_no_context_takeover_resets_the_decompressor_per_message():
    # A back reference into the previous message cannot be resolved any more.
    server = connection("permessage-deflate; client_no_context_takeover")
    compressor = zlib.compressobj(wbits=-15)
    data = text(1000)
    events = feed(
        server, frame(TEXT, deflate(data, compressor), rsv1=True), frame(TEXT, deflate(data, compressor), rsv1=True)
    )
    assert events == [Message(OpCode.TEXT, data)]
    assert isinstance(server.protocol_error, ExtensionError)
    assert close_code_sent(server) == 1002


def test_corrupt_compressed_data_fails_1002():
    server = connection()
    assert feed(server, frame(BINARY, b"\xff\xff\xff", rsv1=True)) == []
    assert isinstance(server.protocol_error, ExtensionError)
    assert close_code_sent(server) == 1002


def test_data_after_the_final_block_fails_1002():
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(b"hello") + compressor.flush(zlib.Z_FINISH) + b"more"
    server = connection()
    assert feed(server, frame(BINARY, payload, rsv1=True)) == []
    assert isinstance(server.protocol_error, ExtensionError)
    assert close_code_sent(server) == 1002


def test_data_after_the_final_block_in_a_later_fragment_fails_1002():
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(b"hello") + compressor.flush(zlib.Z_FINISH)
    server = connection()
    feed(server, frame(BINARY, payload, fin=False, rsv1=True), frame(CONTINUATION, b"more"))
    assert isinstance(server.protocol_error, ExtensionError)
    assert close_code_sent(server) == 1002


def test_messages_ended_with_a_final_block_are_inflated():
    # §7.2.3.2: a sender may end a message with BFINAL instead of an empty
    # stored block; the next message then starts a new deflate stream.
    def finished(data: bytes) -> bytes:
        compressor = zlib.compressobj(wbits=-15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)

    events = feed(connection(), frame(TEXT, finished(b"one"), rsv1=True), frame(TEXT, finished(b"two"), rsv1=True))
    assert events == [Message(OpCode.TEXT, b"one"), Message(OpCode.TEXT, b"two")]


def test_compressed_text_with_invalid_utf8_fails_1007():
    server = connection()
    feed(server, frame(TEXT, deflate(b"caf\xc3"), rsv1=True))
    assert close_code_sent(server) == 1007


def test_compressed_message_at_the_limit_is_delivered():
    data = text(1000)
    server = connection(max_message_size=len(data))
    assert feed(server, frame(TEXT, deflate(data), rsv1=True)) == [Message(OpCode.TEXT, data)]


def test_compressed_message_one_byte_over_the_limit_fails_1009():
    data = text(1000)
    server = connection(max_message_size=len(data) - 1)
    assert feed(server, frame(TEXT, deflate(data), rsv1=True)) == []
    assert isinstance(server.protocol_error, PayloadTooBig)
    assert close_code_sent(server) == 1009


def test_message_limit_counts_every_inflated_fragment():
    server = connection(max_message_size=1500)
    payload = deflate(bytes(1000) + bytes(1000))
    assert feed(server, fragments(BINARY, payload, [len(payload) // 2])) == []
    assert close_code_sent(server) == 1009


def test_compressed_message_without_limit_is_inflated_whole():
    data = bytes(3 * MiB)
    events = feed(connection(max_message_size=None), frame(BINARY, deflate(data), rsv1=True))
    assert events == [Message(OpCode.BINARY, data)]


# RFC 7692 §6 and §7.2.1: sending compressed messages.


def test_send_text_compresses_with_rsv1():
    server = connection()
    data = text(2000)
    server.send_text(data.decode())
    [(fin, rsv1, opcode, payload)] = parse_server_frames(sent(server))
    assert (fin, rsv1, opcode) == (True, True, TEXT)
    assert len(payload) < len(data)
    assert inflate(payload) == data


def test_send_binary_compresses_with_rsv1():
    server = connection()
    data = noise(300) * 5
    server.send_binary(data)
    [(fin, rsv1, opcode, payload)] = parse_server_frames(sent(server))
    assert (fin, rsv1, opcode) == (True, True, BINARY)
    assert inflate(payload) == data


def test_fragment_size_splits_one_compressed_message():
    server = connection()
    data = text(20000) + noise(5000)
    server.send_binary(data, fragment_size=1000)
    frames = parse_server_frames(sent(server))
    assert len(frames) > 3
    assert [opcode for _, _, opcode, _ in frames] == [BINARY] + [CONTINUATION] * (len(frames) - 1)
    assert [rsv1 for _, rsv1, _, _ in frames] == [True] + [False] * (len(frames) - 1)
    assert [fin for fin, _, _, _ in frames] == [False] * (len(frames) - 1) + [True]
    assert all(len(payload) <= 1000 for _, _, _, payload in frames)
    assert inflate(b"".join(payload for _, _, _, payload in frames)) == data


def test_deflate_tail_is_stripped_once_from_the_whole_message():
    # One deflate stream, flushed once: exactly what zlib gives for the whole message.
    server = connection()
    data = text(20000) + noise(5000)
    server.send_binary(data, fragment_size=1000)
    payload = b"".join(payload for _, _, _, payload in parse_server_frames(sent(server)))
    reference = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
    assert payload + TAIL == reference.compress(data) + reference.flush(zlib.Z_SYNC_FLUSH)


def test_server_context_takeover_across_messages():
    server = connection()
    data = text(1000)
    server.send_text(data)
    server.send_text(data)
    [(_, _, _, first), (_, rsv1, _, second)] = parse_server_frames(sent(server))
    assert rsv1
    assert len(second) < len(first) // 4
    decompressor = zlib.decompressobj(-12)
    assert [inflate(first, decompressor), inflate(second, decompressor)] == [data, data]


def test_server_no_context_takeover_makes_each_message_independent():
    server = connection("permessage-deflate; server_no_context_takeover")
    data = text(1000)
    server.send_text(data)
    server.send_text(data)
    [(_, _, _, first), (_, _, _, second)] = parse_server_frames(sent(server))
    assert first == second
    assert inflate(second) == data


def test_control_frames_are_not_compressed():
    server = connection()
    server.send_ping(b"ping")
    server.send_close(1000, "bye")
    assert parse_server_frames(sent(server)) == [
        (True, False, PING, b"ping"),
        (True, False, CLOSE, b"\x03\xe8bye"),
    ]


def test_encode_compresses_a_message_given_frame_by_frame():
    extension = agreed_extension()
    first = extension.encode(Frame(OpCode.TEXT, False, b"hello "))
    last = extension.encode(Frame(OpCode.CONTINUATION, True, b"world"))
    assert (first.rsv1, last.rsv1) == (True, False)
    assert inflate(first.payload + last.payload) == b"hello world"


def test_encode_passes_a_continuation_frame_outside_a_compressed_message_through():
    extension = agreed_extension()
    continuation = Frame(OpCode.CONTINUATION, True, b"plain")
    assert extension.encode(continuation) is continuation


# Frame.serialize and Frame.parse with extensions.


def test_frame_serialize_and_parse_round_trip_with_extensions():
    data = text(3000)
    wire = Frame(OpCode.TEXT, True, data).serialize(mask=True, extensions=[agreed_extension()])
    assert wire[0] & 0x40  # RSV1
    parsed = parse_frame(wire, extensions=[agreed_extension()])
    assert parsed == Frame(OpCode.TEXT, True, data)


@pytest.mark.parametrize("opcode", [OpCode.PING, OpCode.PONG, OpCode.CLOSE])
def test_control_frames_pass_through_serialize_and_parse_uncompressed(opcode):
    control = Frame(opcode, True, b"\x03\xe8bye")
    wire = control.serialize(mask=True, extensions=[agreed_extension()])
    assert not wire[0] & 0x40  # no RSV1
    assert parse_frame(wire, extensions=[agreed_extension()]) == control


def test_serializing_a_frame_twice_does_not_compress_it_twice():
    data = text(3000)
    original = Frame(OpCode.TEXT, True, data)
    extension = agreed_extension("permessage-deflate; server_no_context_takeover")
    first, second = original.serialize(extensions=[extension]), original.serialize(extensions=[extension])
    assert original == Frame(OpCode.TEXT, True, data)
    assert first == second
    [(_, _, _, payload)] = parse_server_frames(first)
    assert inflate(payload) == data


def test_frame_parse_limits_the_inflated_size():
    wire = frame(BINARY, deflate(bytes(10000)), rsv1=True)
    with pytest.raises(PayloadTooBig):
        parse_frame(wire, max_size=1000, extensions=[agreed_extension()])


# Decompression bombs: the limit is enforced while inflating, not after.


def test_decompression_bomb_fails_1009_within_bounded_memory(bomb):
    server = connection(max_message_size=MiB)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        events = feed(server, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert isinstance(server.protocol_error, PayloadTooBig)
    assert close_code_sent(server) == 1009
    assert peak - start < 4 * MiB


def test_decompression_bomb_arriving_in_pieces_fails_1009(bomb):
    # The frame is collected as it arrives; the limit applies when it inflates.
    server = connection(max_message_size=MiB)
    for start in range(0, len(bomb), 4096):
        assert feed(server, bomb[start : start + 4096]) == []
    assert isinstance(server.protocol_error, PayloadTooBig)
    assert close_code_sent(server) == 1009
    assert server.state is State.CLOSING


def test_compressed_text_in_pieces_is_checked_once_inflated():
    server = connection()
    data = frame(TEXT, deflate(b"\xff" * 500), rsv1=True)
    assert feed(server, data[:10]) == []
    assert server.state is State.OPEN  # compressed bytes are not text yet
    assert feed(server, data[10:]) == []
    assert close_code_sent(server) == 1007


# Interoperability with the websockets package's client.

WEBSOCKETS_OFFERS = [
    pytest.param({}, id="default"),
    pytest.param({"client_max_window_bits": None}, id="no-client_max_window_bits"),
    *(pytest.param({"client_max_window_bits": bits}, id=f"client_max_window_bits={bits}") for bits in range(9, 16)),
    *(pytest.param({"server_max_window_bits": bits}, id=f"server_max_window_bits={bits}") for bits in range(9, 16)),
    pytest.param({"client_no_context_takeover": True}, id="client_no_context_takeover"),
    pytest.param({"server_no_context_takeover": True}, id="server_no_context_takeover"),
]
SERVER_SETTINGS = [
    pytest.param({}, id="server-defaults"),
    pytest.param(
        {
            "server_max_window_bits": 9,
            "client_max_window_bits": 10,
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
        },
        id="server-strict",
    ),
]


@pytest.mark.parametrize("settings", SERVER_SETTINGS)
@pytest.mark.parametrize("offer", WEBSOCKETS_OFFERS)
def test_websockets_client_accepts_our_response(offer, settings):
    client, server = open_with_websockets(offer, settings)
    [theirs] = client.extensions
    [ours] = server.extensions
    assert isinstance(ours, PerMessageDeflate)
    assert isinstance(theirs, TheirPerMessageDeflate)
    assert theirs.remote_max_window_bits == ours.server_max_window_bits
    assert theirs.local_max_window_bits == ours.client_max_window_bits
    assert theirs.remote_no_context_takeover == ours.server_no_context_takeover
    assert theirs.local_no_context_takeover == ours.client_no_context_takeover


def test_websockets_client_insisting_on_server_window_8_gets_no_compression():
    client, server = open_with_websockets({"server_max_window_bits": 8})
    assert client.extensions == []
    assert server.extensions == []


@pytest.mark.parametrize("settings", SERVER_SETTINGS)
@pytest.mark.parametrize("offer", WEBSOCKETS_OFFERS)
def test_our_compressed_messages_decode_in_websockets(offer, settings):
    client, server = open_with_websockets(offer, settings)
    data = text(5000)
    server.send_text(data)
    server.send_text(data)
    server.send_binary(data + noise(2000), fragment_size=700)
    assert to_client(server, client) == [(TEXT, data), (TEXT, data), (BINARY, data + noise(2000))]


@pytest.mark.parametrize("settings", SERVER_SETTINGS)
@pytest.mark.parametrize("offer", WEBSOCKETS_OFFERS)
def test_websockets_compressed_messages_decode_in_ours(offer, settings):
    client, server = open_with_websockets(offer, settings)
    data = text(5000)
    client.send_text(data)
    client.send_text(data)
    client.send_binary(data[:2000], fin=False)
    client.send_continuation(data[2000:], fin=True)
    assert to_server(client, server) == [
        Message(OpCode.TEXT, data),
        Message(OpCode.TEXT, data),
        Message(OpCode.BINARY, data),
    ]


def test_message_over_1_mib_in_1_mib_fragments_decodes_with_websockets_extension():
    server = connection()
    data = noise(2 * MiB) + text(MiB)
    server.send_binary(data, fragment_size=MiB)
    frames = parse_server_frames(sent(server))
    assert len(frames) == 3
    theirs = TheirPerMessageDeflate(False, False, 12, 15)
    decoded = [
        theirs.decode(TheirFrame(TheirOpcode(opcode), payload, fin, rsv1), max_size=None)
        for fin, rsv1, opcode, payload in frames
    ]
    assert b"".join(bytes(part.data) for part in decoded) == data


# Regression tests for the defects of Duck 2.3.2 (see the reference list).


def test_duck_defect_20_negotiation_honours_offer_params_and_websockets_accepts():
    header = (
        "permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9, "
        "permessage-deflate; client_max_window_bits"
    )
    client, server = open_with_websockets({"server_max_window_bits": 10, "client_max_window_bits": 9}, header=header)
    [theirs] = client.extensions
    assert (theirs.remote_max_window_bits, theirs.local_max_window_bits) == (10, 9)
    server.send_text("hello")
    client.send_text(b"world")
    assert to_client(server, client) == [(TEXT, b"hello")]
    assert to_server(client, server) == [Message(OpCode.TEXT, b"world")]


def test_duck_defect_21_uncompressed_message_on_compressed_connection_is_delivered_as_is():
    # An uncompressed message between two compressed ones leaves the context alone.
    compressor = zlib.compressobj(wbits=-15)
    data = text(1000)
    plain = b"\x78\x9c not compressed \xff"
    events = feed(
        connection(),
        frame(BINARY, deflate(data, compressor), rsv1=True),
        frame(BINARY, plain),
        frame(BINARY, deflate(data, compressor), rsv1=True),
    )
    assert events == [Message(OpCode.BINARY, data), Message(OpCode.BINARY, plain), Message(OpCode.BINARY, data)]


def test_duck_defect_22_fragmented_compressed_client_messages_decode():
    # websockets flushes every fragment and strips the tail from the last only.
    client, server = open_with_websockets()
    data = text(9000)
    for _ in range(2):
        client.send_text(data[:10], fin=False)
        client.send_continuation(data[10:5000], fin=False)
        client.send_continuation(data[5000:], fin=True)
    assert to_server(client, server) == [Message(OpCode.TEXT, data), Message(OpCode.TEXT, data)]


def test_duck_defect_23_decompression_bomb_fails_1009_with_default_limits(bomb):
    server = ServerConnection(extensions=[agreed_extension()])
    assert feed(server, bomb) == []
    assert close_code_sent(server) == 1009
    assert feed(server, close_frame(1009)) == [Close(1009, "")]
    assert server.state is State.CLOSED


def test_duck_defect_24_server_messages_over_1_mib_compressed_and_fragmented_decode():
    client, server = open_with_websockets()
    data = noise(2 * MiB) + text(MiB)
    server.send_binary(data, fragment_size=MiB)
    server.send_binary(data, fragment_size=MiB)
    wire = sent(server)
    assert [fin for fin, _, _, _ in parse_server_frames(wire)] == [False, False, True] * 2
    client.receive_data(wire)
    assert reassemble(client.events_received()) == [(BINARY, data), (BINARY, data)]
