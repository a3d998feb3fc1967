"""Properties of the protocol core, checked on random inputs (RFC 6455, RFC 7692).

Client bytes are built with ``tests.helpers`` and compressed with zlib
directly, so the package is never checked against itself. Each property states
what must hold for every input, not for a chosen example.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import websockets.frames
import websockets.streams
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate

from duck_ws_sync.exceptions import WebSocketError
from duck_ws_sync.protocol import (
    Close,
    Event,
    Frame,
    Message,
    OpCode,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerConnection,
    Side,
    State,
)
from duck_ws_sync.protocol.mask import apply_mask, native_apply_mask, python_apply_mask
from tests.helpers import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    EndOfData,
    bytes_reader,
    frame,
    parse_server_frames,
    run_without_waiting,
    sent,
    server_frame,
    xor,
)

# RFC 7692 §7.2.1: the empty stored block that ends every flushed message.
TAIL = b"\x00\x00\xff\xff"

# The limits of the robustness properties.
MAX_FRAME = 1024
MAX_MESSAGE = 4096
# RFC 6455 §5.2: 2 bytes, 8 of extended length, 4 of masking key.
MAX_HEADER = 14

# How many examples each property runs: together they stay well under a
# minute on a small machine.
FEW, SOME, MANY = 20, 80, 200


# Strategies: messages and their pieces.


def one_in(count: int) -> st.SearchStrategy[bool]:
    """True about once in ``count`` draws: for the rarer kinds of damage."""
    return st.integers(1, count).map(lambda drawn: drawn == 1)


def binary_up_to(max_size: int) -> st.SearchStrategy[bytes]:
    """Bytes of any length up to ``max_size``, long ones as likely as short ones."""
    return st.binary(max_size=max_size) | st.integers(0, max_size).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    )


def any_character() -> st.SearchStrategy[str]:
    """Any character UTF-8 can encode, with astral ones (4 bytes) drawn often."""
    return st.one_of(
        st.characters(codec="utf-8"),
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, codec="utf-8"),
    )


def text_messages(max_characters: int = 1024) -> st.SearchStrategy[Message]:
    """Text messages of up to ``max_characters`` (4 KiB of UTF-8 by default)."""
    return st.text(any_character(), max_size=max_characters).map(lambda text: Message(OpCode.TEXT, text.encode()))


def binary_messages(max_size: int = 4096) -> st.SearchStrategy[Message]:
    """Binary messages, random or repetitive (the kind deflate shrinks)."""
    repeated = st.builds(
        lambda chunk, count: (chunk * count)[:max_size],
        st.binary(min_size=1, max_size=16),
        st.integers(0, max_size),
    )
    return st.one_of(binary_up_to(max_size), repeated).map(lambda data: Message(OpCode.BINARY, data))


def messages(max_size: int = 4096) -> st.SearchStrategy[Message]:
    """Text or binary messages of up to ``max_size`` bytes."""
    return st.one_of(text_messages(max_size // 4), binary_messages(max_size))


@st.composite
def large_messages(draw: st.DrawFn) -> Message:
    """Messages of 64 KiB to 200 KiB, which need the 8-byte length encoding."""
    size = draw(st.integers(65536, 200_000))
    if draw(st.booleans()):
        text = draw(st.text(any_character(), min_size=1, max_size=64))
        return Message(OpCode.TEXT, (text * (size // len(text.encode()) + 1)).encode())
    seed = draw(st.integers(0, 2**32))
    return Message(OpCode.BINARY, random.Random(seed).randbytes(size))


masks = st.binary(min_size=4, max_size=4)


@st.composite
def message_lists(draw: st.DrawFn, message_strategy: st.SearchStrategy[Message], max_messages: int) -> list[Message]:
    """Messages, some repeating an earlier one: what context takeover feeds on."""
    drawn: list[Message] = []
    for _ in range(draw(st.integers(0, max_messages))):
        repeat = bool(drawn) and draw(one_in(3))
        drawn.append(draw(st.sampled_from(drawn) if repeat else message_strategy))
    return drawn


@st.composite
def pieces_of(draw: st.DrawFn, payload: bytes, max_pieces: int = 6) -> list[bytes]:
    """``payload`` cut at random places; equal cuts give empty pieces."""
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=max_pieces - 1)))
    return [payload[start:stop] for start, stop in pairwise([0, *cuts, len(payload)])]


def control_frames(max_payload: int = 125) -> st.SearchStrategy[list[tuple[int, bytes]]]:
    """Zero to two Pings or Pongs with payloads the RFC allows (§5.5)."""
    return st.lists(st.tuples(st.sampled_from([PING, PONG]), binary_up_to(max_payload)), max_size=2)


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (any order, repeats give empty chunks)."""
    return [data[start:stop] for start, stop in pairwise([0, *sorted(cuts), len(data)])]


def cut_points(data: bytes) -> st.SearchStrategy[list[int]]:
    """Places to cut ``data`` into the chunks that TCP delivers: random, or every few bytes."""
    return st.lists(st.integers(0, len(data)), max_size=24) | st.integers(1, 300).map(
        lambda step: list(range(step, len(data), step))
    )


# Strategies: permessage-deflate agreements.


@dataclass(frozen=True)
class Deflate:
    """A permessage-deflate agreement: server settings, client offer, response.

    Attributes:
        settings: The arguments the server's ``PerMessageDeflate`` is built with.
        offer: The client's offer.
        response: The agreed parameters, read from the response header as a
            client reads them.
    """

    settings: dict[str, Any]
    offer: list[tuple[str, str | None]]
    response: dict[str, str | None]

    def server_extension(self) -> PerMessageDeflate:
        """A fresh server-side extension for one connection."""
        agreed = PerMessageDeflate(**self.settings).negotiate(self.offer)
        assert agreed is not None
        return agreed

    def window_bits(self, side: str) -> int:
        """The window agreed for ``side`` ("client" or "server"): 15 unless limited."""
        return int(self.response.get(f"{side}_max_window_bits") or 15)

    def no_context_takeover(self, side: str) -> bool:
        """Whether ``side`` must compress each message on its own."""
        return f"{side}_no_context_takeover" in self.response


def read_response_params(header: str) -> dict[str, str | None]:
    """Parse a ``Sec-WebSocket-Extensions`` value holding one permessage-deflate."""
    name, *params = (part.strip() for part in header.split(";"))
    assert name == "permessage-deflate"
    response: dict[str, str | None] = {}
    for param in params:
        key, _, value = param.partition("=")
        assert key not in response
        response[key] = value or None
    return response


@st.composite
def server_configurations(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments for a server's ``PerMessageDeflate``, anywhere in their ranges."""
    return {
        "client_no_context_takeover": draw(st.booleans()),
        "server_no_context_takeover": draw(st.booleans()),
        "client_max_window_bits": draw(st.integers(9, 15)),
        "server_max_window_bits": draw(st.integers(9, 15)),
        "compress_level": draw(st.integers(0, 9)),
        "mem_level": draw(st.integers(1, 9)),
    }


@st.composite
def deflate_offers(draw: st.DrawFn, lowest_client_window: int = 8) -> list[tuple[str, str | None]]:
    """Valid permessage-deflate offers (RFC 7692 §7.1), parameters in any order.

    ``server_max_window_bits=8`` is left out: the server declines it, as zlib
    cannot compress with that window.
    """
    offer: list[tuple[str, str | None]] = []
    for flag in ("client_no_context_takeover", "server_no_context_takeover"):
        if draw(st.booleans()):
            offer.append((flag, None))
    client_bits = draw(st.none() | st.integers(lowest_client_window, 15).map(str))
    if draw(st.booleans()):
        offer.append(("client_max_window_bits", client_bits))
    if draw(st.booleans()):
        offer.append(("server_max_window_bits", str(draw(st.integers(9, 15)))))
    return draw(st.permutations(offer))


@st.composite
def deflate_agreements(draw: st.DrawFn) -> Deflate:
    """Any server configuration with any valid offer a zlib client can honour."""
    configuration = draw(server_configurations())
    # zlib cannot compress raw deflate with an 8-bit window, so a client
    # offering 8 could not keep to the agreement: offers of 8 are left to the
    # negotiation property.
    offer = draw(deflate_offers(lowest_client_window=9))
    agreed = PerMessageDeflate(**configuration).negotiate(offer)
    assert agreed is not None, f"valid offer {offer} declined"
    return Deflate(configuration, offer, read_response_params(agreed.response_params()))


class ClientDeflater:
    """Compresses messages as a client must under an agreement (RFC 7692 §7.2.1)."""

    def __init__(self, deflate: Deflate, level: int) -> None:
        self.level = level
        self.no_context_takeover = deflate.no_context_takeover("client")
        self.window_bits = deflate.window_bits("client")
        self._compressor: Any = None

    def compress(self, data: bytes) -> bytes:
        """One message's payload: deflated, flushed, with the 4-byte tail removed."""
        if self._compressor is None or self.no_context_takeover:
            self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -self.window_bits)
        payload = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert payload.endswith(TAIL)
        return payload[:-4]


class ClientInflater:
    """Inflates the server's compressed messages as a strict client would."""

    def __init__(self, deflate: Deflate) -> None:
        self.no_context_takeover = deflate.no_context_takeover("server")
        # The agreed window, not 15: data that needs a larger one fails here.
        self.window_bits = deflate.window_bits("server")
        self._decompressor: Any = None

    def inflate(self, payload: bytes) -> bytes:
        """One message's payload, with the tail appended back (RFC 7692 §7.2.2)."""
        if self._decompressor is None or self.no_context_takeover:
            self._decompressor = zlib.decompressobj(-self.window_bits)
        data = self._decompressor.decompress(payload + TAIL)
        assert not self._decompressor.eof and not self._decompressor.unused_data
        return data


# Strategies: whole client streams.


@dataclass
class ClientStream:
    """The bytes a client sends, and what the server must make of them.

    Attributes:
        deflate: The permessage-deflate agreement, if any.
        data: The frames, masked, back to back.
        events: The events the server must report, in order.
        pongs: The exact bytes the server must answer with.
    """

    deflate: Deflate | None
    data: bytes = b""
    events: list[Event] = field(default_factory=list)
    pongs: bytes = b""

    def connect(self, **limits: Any) -> ServerConnection:
        """A fresh server connection with the agreed extension."""
        extensions = [self.deflate.server_extension()] if self.deflate is not None else []
        return ServerConnection(extensions=extensions, **limits)


@st.composite
def client_streams(
    draw: st.DrawFn,
    compression: bool | None = False,
    message_strategy: st.SearchStrategy[Message] | None = None,
    max_messages: int = 6,
    max_pieces: int = 6,
    max_control_payload: int = 125,
) -> ClientStream:
    """Messages cut into frames at random, with Pings and Pongs between the frames.

    Args:
        compression: True to agree on permessage-deflate, None for either way.
        message_strategy: Where messages come from (``messages()`` by default).
        max_messages: How many messages at most.
        max_pieces: How many frames a message is cut into at most.
        max_control_payload: The largest Ping or Pong payload.
    """
    if compression is None:
        compression = draw(st.booleans())
    deflate = draw(deflate_agreements()) if compression else None
    deflater = ClientDeflater(deflate, draw(st.integers(0, 9))) if deflate is not None else None
    stream = ClientStream(deflate)
    frames, pongs = [], []

    def add_control_frames() -> None:
        for opcode, payload in draw(control_frames(max_control_payload)):
            frames.append(frame(opcode, payload, mask=draw(masks)))
            if opcode == PING:
                stream.events.append(Ping(payload))
                pongs.append(server_frame(PONG, payload))
            else:
                stream.events.append(Pong(payload))

    if message_strategy is None:
        message_strategy = messages()
    for message in draw(message_lists(message_strategy, max_messages)):
        # RFC 7692 §6: compression is chosen per message.
        compressed = deflater is not None and draw(st.booleans())
        payload = deflater.compress(message.data) if deflater is not None and compressed else message.data
        pieces = draw(pieces_of(payload, max_pieces))
        for index, piece in enumerate(pieces):
            add_control_frames()
            frames.append(
                frame(
                    message.opcode if index == 0 else CONTINUATION,
                    piece,
                    fin=index == len(pieces) - 1,
                    rsv1=compressed and index == 0,  # RFC 7692 §6.1: first frame only
                    mask=draw(masks),
                )
            )
        stream.events.append(message)
    add_control_frames()
    stream.data = b"".join(frames)
    stream.pongs = b"".join(pongs)
    return stream


def receive_chunks(connection: ServerConnection, chunks: list[bytes]) -> list[Event]:
    """Feed ``chunks`` one ``receive_data`` call each; return all the events."""
    events: list[Event] = []
    for chunk in chunks:
        connection.receive_data(chunk)
        events += connection.events_received()
    return events


def assert_received_exactly(connection: ServerConnection, events: list[Event], stream: ClientStream) -> None:
    """The events are the stream's, Pings were answered, nothing else happened."""
    assert events == stream.events
    assert all(type(event.data) is bytes for event in events if isinstance(event, Message))
    assert sent(connection) == stream.pongs
    assert connection.state is State.OPEN
    assert connection.protocol_error is None
    assert not connection._buffer


# 1-2. Client to server.


class TestClientToServer:
    @settings(max_examples=MANY, deadline=None)
    @given(stream=client_streams(), data=st.data())
    def test_messages_and_control_frames_round_trip(self, stream, data):
        """Any fragmentation, masks, interleaved Pings/Pongs and TCP cuts give back exactly the messages."""
        connection = stream.connect()
        events = receive_chunks(connection, chunks_of(stream.data, data.draw(cut_points(stream.data))))
        assert_received_exactly(connection, events, stream)

    @settings(max_examples=SOME, deadline=None)
    @given(
        stream=client_streams(
            compression=None,
            message_strategy=messages(max_size=12),
            max_messages=3,
            max_pieces=3,
            max_control_payload=6,
        )
    )
    def test_every_cut_point(self, stream):
        """Cutting the stream in two at any byte gives the same events as sending it whole."""
        for position in range(len(stream.data) + 1):
            connection = stream.connect()
            events = receive_chunks(connection, [stream.data[:position], stream.data[position:]])
            assert_received_exactly(connection, events, stream)

    @settings(max_examples=FEW, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stream=client_streams(compression=None, message_strategy=large_messages(), max_messages=2), data=st.data())
    def test_large_messages_round_trip(self, stream, data):
        """Messages past the 16-bit length encoding round-trip, compressed or not."""
        connection = stream.connect(max_message_size=None)
        events = receive_chunks(connection, chunks_of(stream.data, data.draw(cut_points(stream.data))))
        assert_received_exactly(connection, events, stream)


class TestCompressedClientToServer:
    @settings(max_examples=MANY, deadline=None)
    @given(configuration=server_configurations(), offer=deflate_offers())
    def test_every_valid_offer_is_accepted(self, configuration, offer):
        """RFC 7692 §7.1: a valid offer is accepted, and the response stays within it."""
        agreed = PerMessageDeflate(**configuration).negotiate(offer)
        assert agreed is not None
        response = read_response_params(agreed.response_params())
        offered = dict(offer)
        # §7.1.1.1: the server must honour server_no_context_takeover.
        assert "server_no_context_takeover" not in offered or "server_no_context_takeover" in response
        # §7.1.2.1: an offered server window is accepted with one no larger.
        if "server_max_window_bits" in offered:
            answered = response.get("server_max_window_bits")
            assert answered is not None and int(answered) <= int(offered["server_max_window_bits"] or 0)
        # §7.1.2.2: the client's window is limited only if the client allowed
        # it, and never above the value it offered.
        if "client_max_window_bits" not in offered:
            assert "client_max_window_bits" not in response
        elif response.get("client_max_window_bits") and offered["client_max_window_bits"]:
            assert int(response["client_max_window_bits"] or 0) <= int(offered["client_max_window_bits"] or 0)

    @settings(max_examples=MANY, deadline=None)
    @given(stream=client_streams(compression=True), data=st.data())
    def test_compressed_messages_round_trip(self, stream, data):
        """RFC 7692: any agreement, context takeover or not, mixed with uncompressed messages, round-trips."""
        connection = stream.connect()
        events = receive_chunks(connection, chunks_of(stream.data, data.draw(cut_points(stream.data))))
        assert_received_exactly(connection, events, stream)


# 3. Server to client.


def read_server_messages(output: bytes, inflater: ClientInflater | None) -> list[Message]:
    """Reassemble and inflate the server's frames as a strict client does."""
    received: list[Message] = []
    opcode, compressed, pieces = None, False, []
    for fin, rsv1, frame_opcode, payload in parse_server_frames(output):
        if opcode is None:
            assert frame_opcode in (TEXT, BINARY)
            opcode, compressed, pieces = frame_opcode, rsv1, []
            assert not compressed or inflater is not None
        else:
            # RFC 6455 §5.4 and RFC 7692 §6.1: continuations, never RSV1.
            assert frame_opcode == CONTINUATION and not rsv1
        pieces.append(payload)
        if fin:
            data = b"".join(pieces)
            if compressed:
                assert inflater is not None
                data = inflater.inflate(data)
            received.append(Message(OpCode(opcode), data))
            opcode = None
    assert opcode is None, "the last message is unfinished"
    return received


def read_with_websockets(output: bytes, deflate: Deflate | None) -> list[Message]:
    """Decode the server's output with the websockets library's frame parser."""
    extensions = []
    if deflate is not None:
        extensions.append(
            WebsocketsDeflate(
                remote_no_context_takeover=deflate.no_context_takeover("server"),
                local_no_context_takeover=deflate.no_context_takeover("client"),
                remote_max_window_bits=deflate.window_bits("server"),
                local_max_window_bits=deflate.window_bits("client"),
            )
        )
    reader = websockets.streams.StreamReader()
    reader.feed_data(output)
    reader.feed_eof()
    received: list[Message] = []
    pieces: list[bytes] = []
    opcode = None
    while reader.buffer:
        parser = websockets.frames.Frame.parse(reader.read_exact, mask=False, extensions=extensions)
        try:
            next(parser)
        except StopIteration as done:
            parsed = done.value
        else:
            raise AssertionError("websockets wants more bytes than the server wrote")
        if opcode is None:
            opcode = parsed.opcode
        pieces.append(bytes(parsed.data))
        if parsed.fin:
            received.append(Message(OpCode(opcode.value), b"".join(pieces)))
            opcode, pieces = None, []
    return received


fragment_sizes = st.none() | st.integers(1, 64) | st.integers(1, 6000)


@st.composite
def outgoing_messages(draw: st.DrawFn) -> list[tuple[Message, int | None, bool]]:
    """Messages to send, each with a fragment size and whether its text is passed as str."""
    return [(message, draw(fragment_sizes), draw(st.booleans())) for message in draw(message_lists(messages(), 6))]


class TestServerToClient:
    @settings(max_examples=MANY, deadline=None)
    @given(
        deflate=st.none() | deflate_agreements(),
        outgoing=outgoing_messages(),
    )
    def test_sent_messages_round_trip(self, deflate, outgoing):
        """Messages sent with any fragment size come back exactly, in frames of at most that size."""
        extensions = [deflate.server_extension()] if deflate is not None else []
        connection = ServerConnection(extensions=extensions)
        inflater = ClientInflater(deflate) if deflate is not None else None
        output = b""
        for message, fragment_size, text_as_str in outgoing:
            if message.opcode is OpCode.TEXT:
                connection.send_text(message.text if text_as_str else message.data, fragment_size)
            else:
                connection.send_binary(message.data, fragment_size)
            written = sent(connection)
            payload_sizes = [len(payload) for _, _, _, payload in parse_server_frames(written)]
            if fragment_size is None:
                assert len(payload_sizes) == 1
            else:
                assert all(size == fragment_size for size in payload_sizes[:-1])
                assert 0 < payload_sizes[-1] <= fragment_size or payload_sizes == [0]
            assert read_server_messages(written, inflater) == [message]
            output += written
        expected = [message for message, _, _ in outgoing]
        assert read_with_websockets(output, deflate) == expected

    @settings(max_examples=FEW, deadline=None)
    @given(
        deflate=st.none() | deflate_agreements(),
        message=large_messages(),
        fragment_size=st.none() | st.integers(1000, 100_000),
    )
    def test_large_sent_messages_round_trip(self, deflate, message, fragment_size):
        """Messages past the 16-bit length encoding come back exactly."""
        extensions = [deflate.server_extension()] if deflate is not None else []
        connection = ServerConnection(extensions=extensions)
        connection.send_message(message.opcode, message.data, fragment_size)
        output = sent(connection)
        inflater = ClientInflater(deflate) if deflate is not None else None
        assert read_server_messages(output, inflater) == [message]
        assert read_with_websockets(output, deflate) == [message]

    @settings(max_examples=SOME, deadline=None)
    @given(
        seed=st.integers(0, 2**32),
        size=st.integers(0, 20_000),
        # Frames both under and over 4 KiB, which are queued differently.
        fragment_size=st.none() | st.integers(1, 4096) | st.integers(4097, 10_000),
        as_view=st.booleans(),
    )
    def test_sent_buffer_can_be_reused(self, seed, size, fragment_size, as_view):
        """Once ``send_binary`` returns, changing or resizing the caller's bytearray changes nothing queued."""
        original = random.Random(seed).randbytes(size)
        buffer = bytearray(original)
        connection = ServerConnection()
        if as_view:
            view = memoryview(buffer)
            connection.send_binary(view, fragment_size)
            view.release()  # BufferError if the connection kept a view of it
        else:
            connection.send_binary(buffer, fragment_size)
        buffer[:] = bytes(size)
        buffer.clear()  # BufferError if the connection kept a view of it
        assert read_server_messages(sent(connection), None) == [Message(OpCode.BINARY, original)]


# 4. Masking.


class TestMasking:
    @settings(max_examples=MANY, deadline=None)
    @given(data=binary_up_to(4096), mask=masks, offset=st.integers(0, 7))
    def test_implementations_agree_with_the_reference(self, data, mask, offset):
        """RFC 6455 §5.3: every implementation XORs like the obvious loop, for any buffer type and alignment."""
        expected = xor(data[offset:], mask)
        functions = [apply_mask, python_apply_mask, *([native_apply_mask] if native_apply_mask else [])]
        for function in functions:
            for buffer in (data[offset:], bytearray(data)[offset:], memoryview(data)[offset:]):
                assert function(buffer, mask) == expected

    @settings(max_examples=SOME, deadline=None)
    @given(data=st.binary(max_size=4096), mask=masks)
    def test_masking_twice_gives_the_input(self, data, mask):
        """Masking is its own inverse."""
        assert apply_mask(apply_mask(data, mask), mask) == data
        assert python_apply_mask(python_apply_mask(data, mask), mask) == data

    @settings(max_examples=SOME, deadline=None)
    @given(data=st.binary(max_size=64), mask=st.binary(max_size=8).filter(lambda mask: len(mask) != 4))
    def test_masks_of_other_lengths_are_refused(self, data, mask):
        """Every implementation refuses a key that is not 4 bytes with ValueError."""
        functions = [apply_mask, python_apply_mask, *([native_apply_mask] if native_apply_mask else [])]
        for function in functions:
            try:
                function(data, mask)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{function.__name__} accepted a {len(mask)}-byte mask")


# 5. Robustness.


close_codes = st.sampled_from([1000, 1001, 1003, 1007, 1008, 1011, 1014, 3000, 4999]) | st.integers(0, 0xFFFF)


@st.composite
def close_payloads(draw: st.DrawFn) -> bytes:
    """Close payloads, mostly valid, sometimes any code, a bad reason, or a lone byte."""
    if draw(one_in(4)):
        return draw(st.binary(max_size=3))
    reason = draw(st.binary(max_size=20) if draw(one_in(4)) else st.text(any_character(), max_size=20).map(str.encode))
    return draw(close_codes).to_bytes(2, "big") + reason


def compressed_payloads() -> st.SearchStrategy[bytes]:
    """Raw deflate data, flushed or finished, including frames that inflate far past the limits."""

    def flushed(data: bytes, level: int) -> bytes:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    def finished(data: bytes, level: int) -> bytes:
        return zlib.compress(data, level, wbits=-15)

    data = st.binary(max_size=3 * MAX_MESSAGE) | st.builds(
        lambda chunk, count: chunk * count, st.binary(min_size=1, max_size=8), st.integers(0, 20_000)
    )
    return st.builds(
        lambda compress, data, level: compress(data, level),
        st.sampled_from([flushed, finished]),
        data,
        st.integers(0, 9),
    )


@st.composite
def arbitrary_frames(draw: st.DrawFn, compression: bool) -> bytes:
    """One frame: mostly a plausible one, sometimes with one kind of damage.

    Plausible frames are masked, have a known opcode and an honest length, and
    set RSV1 only where permessage-deflate allows it (``compression``); the
    sequence they make may still break the rules (a continuation without a
    message, say).
    """
    opcode = draw(st.sampled_from([TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG]))
    control = opcode >= CLOSE
    rsv1 = compression and not control and opcode != CONTINUATION and draw(one_in(3))
    if opcode == CLOSE:
        payload = draw(close_payloads())
    elif control:
        payload = draw(binary_up_to(125))
    elif rsv1:
        payload = draw(compressed_payloads())
    else:
        payload = draw(binary_up_to(2 * MAX_FRAME) | st.text(any_character(), max_size=MAX_FRAME // 4).map(str.encode))
    fields = {"fin": control or not draw(one_in(4)), "rsv1": rsv1, "mask": draw(masks)}
    if draw(one_in(4)):
        damage = draw(st.sampled_from(["opcode", "fin", "rsv1", "rsv2", "rsv3", "mask", "length", "long control"]))
        if damage == "opcode":
            opcode = draw(st.integers(0, 15))
        elif damage == "mask":
            fields["mask"] = None
        elif damage == "length":
            fields["length"] = draw(st.integers(0, 2**64 - 1) | st.integers(0, 2 * MAX_FRAME))
        elif damage == "long control":
            opcode, payload = draw(st.sampled_from([CLOSE, PING, PONG])), draw(st.binary(min_size=126, max_size=300))
        else:
            fields[damage] = not fields.get(damage, False)
    return frame(opcode, payload, **fields)


@st.composite
def hostile_streams(draw: st.DrawFn) -> ClientStream:
    """Valid frames, maybe cut short, then arbitrary frames and bytes, maybe with flipped bytes."""
    stream = draw(client_streams(compression=None, message_strategy=messages(2 * MAX_MESSAGE), max_messages=3))
    prefix = stream.data[: draw(st.integers(0, len(stream.data)))] if draw(one_in(4)) else stream.data
    tail = b"".join(draw(st.lists(arbitrary_frames(stream.deflate is not None), max_size=8))) + draw(
        st.binary(max_size=64) | st.just(b"")
    )
    data = bytearray(prefix + tail)
    if data and draw(one_in(3)):
        for position, flip in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=3)):
            data[position] ^= flip
    return ClientStream(stream.deflate, bytes(data))


def assert_sane_after_receive(connection: ServerConnection) -> None:
    """What must hold after every ``receive_data`` call, whatever the bytes were."""
    assert connection.state in (State.OPEN, State.CLOSING, State.CLOSED)
    # At most one incomplete frame is buffered, and never more than the limit.
    assert len(connection._buffer) <= MAX_FRAME + MAX_HEADER
    assert connection._message_size <= MAX_MESSAGE


def assert_sane_output(connection: ServerConnection, events: list[Event]) -> None:
    """The server only answered Pings and Closes, or failed with a fitting code."""
    for event in events:
        assert isinstance(event, Message | Ping | Pong | Close)
        if isinstance(event, Message):
            assert len(event.data) <= MAX_MESSAGE
            if event.opcode is OpCode.TEXT:
                event.data.decode("utf-8")
    frames = parse_server_frames(sent(connection))
    closes = [payload for _, _, opcode, payload in frames if opcode == CLOSE]
    assert all(fin and not rsv1 and opcode in (PONG, CLOSE) for fin, rsv1, opcode, _ in frames)
    assert len(closes) <= 1
    if not closes:
        assert connection.close_sent is None
        return
    assert frames[-1][2] == CLOSE, "nothing may follow a Close frame"
    assert connection.close_sent is not None
    code = int.from_bytes(closes[0][:2], "big") if closes[0] else 1005
    assert code == connection.close_sent.code
    if connection.close_initiator is Side.LOCAL:
        # RFC 6455 §7.4.1: protocol error, invalid data, message too big.
        assert code in (1002, 1007, 1009)
        assert connection.protocol_error is not None
    else:
        # §5.5.1: the answer to a client's Close echoes its code.
        assert connection.close_initiator is Side.REMOTE
        assert connection.close_received is not None
        assert code == connection.close_received.code


class TestRobustness:
    @settings(max_examples=MANY, deadline=None)
    @given(stream=hostile_streams(), data=st.data())
    def test_hostile_bytes_never_raise_and_stay_bounded(self, stream, data):
        """Any bytes, in any chunks: no exception, bounded memory, and a Close with 1002/1007/1009 if any."""
        connection = stream.connect(max_frame_size=MAX_FRAME, max_message_size=MAX_MESSAGE)
        events: list[Event] = []
        for chunk in chunks_of(stream.data, data.draw(cut_points(stream.data))):
            connection.receive_data(chunk)
            assert_sane_after_receive(connection)
            events += connection.events_received()
        assert_sane_output(connection, events)

    @settings(max_examples=MANY, deadline=None)
    @given(compression=st.booleans(), payload=st.binary(max_size=2048), data=st.data())
    def test_random_bytes_never_raise_and_stay_bounded(self, compression, payload, data):
        """Plain random bytes in random chunks: the same guarantees as for hostile frames."""
        extensions = [PerMessageDeflate().negotiate([])] if compression else []
        connection = ServerConnection(max_frame_size=MAX_FRAME, max_message_size=MAX_MESSAGE, extensions=extensions)
        events: list[Event] = []
        for chunk in chunks_of(payload, data.draw(cut_points(payload))):
            connection.receive_data(chunk)
            assert_sane_after_receive(connection)
            events += connection.events_received()
        assert_sane_output(connection, events)


class TestFrameParse:
    @settings(max_examples=MANY, deadline=None)
    @given(
        data=st.binary(max_size=256) | st.lists(arbitrary_frames(compression=True), max_size=3).map(b"".join),
        mask_required=st.booleans(),
        max_size=st.none() | st.integers(0, 2048),
        compression=st.booleans(),
    )
    def test_bad_bytes_raise_only_websocket_errors(self, data, mask_required, max_size, compression):
        """``Frame.parse`` on any bytes returns frames or raises a WebSocketError (or runs out of bytes)."""
        extensions = [PerMessageDeflate().negotiate([])] if compression else None
        read_exact = bytes_reader(data)
        try:
            while True:
                parsed = run_without_waiting(Frame.parse(read_exact, mask_required, max_size, extensions))
                assert isinstance(parsed, Frame)
                assert max_size is None or len(parsed.payload) <= max_size
        except (WebSocketError, EndOfData):
            pass

    @settings(max_examples=SOME, deadline=None)
    @given(
        opcode=st.sampled_from([CONTINUATION, TEXT, BINARY, PING, PONG]),
        fin=st.booleans(),
        payload=st.binary(max_size=125)
        | st.builds(
            lambda seed, size: random.Random(seed).randbytes(size), st.integers(0, 2**32), st.integers(126, 70_000)
        ),
        mask=masks,
    )
    def test_valid_frames_parse_back(self, opcode, fin, payload, mask):
        """``Frame.parse`` gives back the opcode, FIN and unmasked payload a client framed."""
        if opcode >= CLOSE:
            fin, payload = True, payload[:125]
        parsed = run_without_waiting(Frame.parse(bytes_reader(frame(opcode, payload, fin=fin, mask=mask))))
        assert (parsed.opcode, parsed.fin, parsed.payload, parsed.rsv1) == (opcode, fin, payload, False)
