"""Extensions, and permessage-deflate (RFC 7692).

An ``Extension`` works on frames: ``encode`` before a frame is written,
``decode`` after one is read. ``PerMessageDeflate`` is used twice over: the
instance a server is configured with holds its preferences and limits, and its
``negotiate`` method answers one client offer with a new instance that holds
the agreed parameters and the compression state of one connection.

Memory per connection is bounded: the zlib objects are created on first use
(an idle connection holds none), and decompression never produces more than
the caller's ``max_size`` (a "zip bomb" costs at most that much).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

from ..exceptions import ExtensionError, PayloadTooBig, ProtocolError
from .frames import Frame
from .headers import ExtensionParams
from .opcodes import OpCode

__all__ = ["Extension", "PerMessageDeflate", "negotiate_extensions"]

# RFC 7692 §7.2.1: a message is compressed, flushed with an empty stored
# block, and the final 4 bytes of that block are removed; the receiver
# appends them back before inflating.
_TAIL = b"\x00\x00\xff\xff"
# RFC 7692 §7.1.2: window bits are 8 to 15, written without leading zeros.
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")


class Extension:
    """Base class of WebSocket extensions (RFC 6455 §9).

    Subclasses that change payloads override ``encode`` and ``decode``, and
    ``rsv1_allowed`` if they use the RSV1 bit.

    Args:
        name: The extension's registered name.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def rsv1_allowed(self, opcode: int) -> bool:
        """Tell whether the RSV1 bit may be set on a frame with ``opcode``."""
        return False

    def encode(self, frame: Frame) -> Frame:
        """Transform a frame before it is written."""
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Transform a frame after it is read.

        Args:
            frame: The frame, unmasked.
            max_size: The most bytes of payload the result may hold.

        Raises:
            PayloadTooBig: If the decoded payload would exceed ``max_size``.
            ProtocolError: If the frame cannot be decoded.
        """
        return frame

    def negotiate(self, params: ExtensionParams) -> Extension | None:
        """Answer a client's offer: an agreed extension, or None to decline it."""
        return None

    def response_params(self) -> str:
        """The extension as it appears in the server's ``Sec-WebSocket-Extensions``."""
        return self.name


class PerMessageDeflate(Extension):
    """The permessage-deflate extension (RFC 7692).

    Configured on a server, the arguments are its preferences and limits;
    ``negotiate`` builds the per-connection instance from a client's offer.

    Args:
        name: The extension name (Duck's first argument).
        client_no_context_takeover: Require the client to compress each message
            on its own (lets us drop the decompressor between messages).
        server_no_context_takeover: Compress each outgoing message on its own.
        client_max_window_bits: The largest window (9-15) we ask the client to
            use, when the client offers to be asked.
        server_max_window_bits: The largest window (9-15) we compress with.
            zlib cannot compress raw deflate with 8, so an offer that insists
            on 8 is declined.
        compress_level: zlib compression level, 0-9.
        mem_level: zlib memory level, 1-9 (memory against speed).

    Raises:
        ValueError: If a setting is out of range.
    """

    def __init__(
        self,
        name: str = "permessage-deflate",
        client_no_context_takeover: bool = False,
        server_no_context_takeover: bool = False,
        client_max_window_bits: int = 15,
        server_max_window_bits: int = 12,
        compress_level: int = 6,
        mem_level: int = 5,
    ) -> None:
        super().__init__(name)
        _check_range("client_max_window_bits", client_max_window_bits, 9, 15)
        _check_range("server_max_window_bits", server_max_window_bits, 9, 15)
        _check_range("compress_level", compress_level, 0, 9)
        _check_range("mem_level", mem_level, 1, 9)
        self.client_no_context_takeover = client_no_context_takeover
        self.server_no_context_takeover = server_no_context_takeover
        self.client_max_window_bits = client_max_window_bits
        self.server_max_window_bits = server_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        # Set by negotiate() on the agreed instance: what the response says.
        self._response_params: list[str] = []
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._decoding = False  # the incoming message in progress is compressed
        self._encoding = False  # the outgoing message in progress is compressed

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_max_window_bits={self.client_max_window_bits}, "
            f"server_max_window_bits={self.server_max_window_bits})"
        )

    # Negotiation (RFC 7692 §5, §7.1).

    def negotiate(self, params: ExtensionParams) -> PerMessageDeflate | None:
        """Accept or decline one permessage-deflate offer.

        An offer is declined, never answered blindly, when a parameter is
        unknown, repeated, or has an invalid value (§7.1), or when it asks for
        ``server_max_window_bits=8``, which zlib cannot produce.

        Returns:
            A new instance holding the agreed parameters, or None.
        """
        offered: dict[str, str | None] = {}
        for key, value in params:
            if key in offered:
                return None  # §7: "a parameter MUST NOT appear more than once"
            offered[key] = value
        for key, value in offered.items():
            if key in ("server_no_context_takeover", "client_no_context_takeover"):
                if value is not None:
                    return None
            elif key == "server_max_window_bits":
                if value is None or not _WINDOW_BITS.fullmatch(value) or value == "8":
                    return None
            elif key == "client_max_window_bits":
                if value is not None and not _WINDOW_BITS.fullmatch(value):
                    return None
            else:
                return None

        server_bits = self.server_max_window_bits
        if offered.get("server_max_window_bits") is not None:
            server_bits = min(server_bits, int(offered["server_max_window_bits"] or 15))
        # §7.1.2.2: without client_max_window_bits in the offer, the response
        # must not limit the client's window, so we inflate with 15 bits.
        client_bits = 15
        if "client_max_window_bits" in offered:
            client_bits = min(self.client_max_window_bits, int(offered["client_max_window_bits"] or 15))

        agreed = PerMessageDeflate(
            self.name,
            client_no_context_takeover=self.client_no_context_takeover or "client_no_context_takeover" in offered,
            server_no_context_takeover=self.server_no_context_takeover or "server_no_context_takeover" in offered,
            # A client may be asked for 8 bits, but zlib inflates raw deflate
            # from 9 up; a larger window reads a smaller one.
            client_max_window_bits=max(client_bits, 9),
            server_max_window_bits=server_bits,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
        )
        response = agreed._response_params
        if agreed.server_no_context_takeover:
            response.append("server_no_context_takeover")
        if agreed.client_no_context_takeover:
            response.append("client_no_context_takeover")
        if server_bits < 15 or "server_max_window_bits" in offered:
            response.append(f"server_max_window_bits={server_bits}")
        if client_bits < 15:
            response.append(f"client_max_window_bits={client_bits}")
        return agreed

    def response_params(self) -> str:
        """The agreed parameters as they appear in the 101 response."""
        return "; ".join([self.name, *self._response_params])

    # Frames (RFC 7692 §6).

    def rsv1_allowed(self, opcode: int) -> bool:
        """RSV1 marks the first frame of a compressed message (§6), never a control frame."""
        return opcode in (OpCode.TEXT, OpCode.BINARY)

    def encode(self, frame: Frame) -> Frame:
        """Compress a data frame; a message's frames share one deflate stream.

        The first frame of a message gets RSV1; the stream is flushed once,
        on the final frame, and its 4-byte tail stripped once (§7.2.1). To
        send one message in several frames, compress it whole and split the
        payload; the connection does that.
        """
        if frame.opcode >= OpCode.CLOSE:
            return frame
        if frame.opcode != OpCode.CONTINUATION:
            self._encoding = True
            if self._compressor is None or self.server_no_context_takeover:
                self._compressor = zlib.compressobj(
                    self.compress_level, zlib.DEFLATED, -self.server_max_window_bits, self.mem_level
                )
        elif not self._encoding:
            return frame
        assert self._compressor is not None
        data = self._compressor.compress(frame.payload)
        if frame.fin:
            # A sync flush always ends with the 4-byte tail (§7.2.1).
            data = (data + self._compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            self._encoding = False
        return Frame(frame.opcode, frame.fin, data, rsv1=frame.opcode != OpCode.CONTINUATION)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Inflate a frame of a compressed message, never beyond ``max_size`` bytes.

        A message whose first frame has no RSV1 passes through untouched
        (§6: compression is per message). Context is carried from message to
        message unless ``client_no_context_takeover`` was agreed.

        Raises:
            PayloadTooBig: If the inflated payload would exceed ``max_size``.
            ProtocolError: If RSV1 is set on a continuation frame.
            ExtensionError: If the compressed data is corrupt.
        """
        if frame.opcode >= OpCode.CLOSE:
            return frame
        if frame.opcode == OpCode.CONTINUATION:
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
        else:
            self._decoding = frame.rsv1
        if not self._decoding:
            return frame
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.client_max_window_bits)
        data = self._inflate(frame.payload, max_size)
        if frame.fin:
            if not self._decompressor.eof:
                data += self._inflate(_TAIL, None if max_size is None else max_size - len(data))
            self._decoding = False
            if self.client_no_context_takeover or self._decompressor.eof:
                self._decompressor = None
        return Frame(frame.opcode, frame.fin, data)

    def _inflate(self, data: bytes, max_size: int | None) -> bytes:
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            # With a limit, ask for one byte more than allowed: getting it
            # proves the limit is exceeded without inflating the rest.
            output = decompressor.decompress(data, 0 if max_size is None else max_size + 1)
        except zlib.error as exc:
            raise ExtensionError(f"invalid compressed data: {exc}") from None
        if max_size is not None and len(output) > max_size:
            raise PayloadTooBig(f"message inflates beyond the limit of {max_size} bytes")
        if decompressor.unused_data:
            # The peer ended the deflate stream (BFINAL) and sent more data.
            raise ExtensionError("data after the end of the compressed stream")
        return output


def _check_range(setting: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{setting}={value} is out of range {low}-{high}")


def negotiate_extensions(
    offers: Sequence[tuple[str, ExtensionParams]], supported: Sequence[Extension]
) -> list[Extension]:
    """Choose, for each supported extension, the first offer it accepts.

    Offers are tried in the client's order of preference (RFC 6455 §9.1); each
    extension is agreed at most once.
    """
    agreed: list[Extension] = []
    names: set[str] = set()
    for name, params in offers:
        if name in names:
            continue
        for extension in supported:
            if extension.name == name:
                result = extension.negotiate(params)
                if result is not None:
                    agreed.append(result)
                    names.add(name)
                    break
    return agreed
