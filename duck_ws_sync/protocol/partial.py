"""What a connection keeps of a message while its pieces arrive: a frame's payload, a text's UTF-8 check.

A data frame whose payload has not all arrived is collected into a buffer of
its own as it comes, unmasked on the way in (one pass per byte), and the text
of an uncompressed message is checked for UTF-8 piece by piece: invalid text
fails the connection as soon as it arrives (RFC 6455 §8.1), not when its
frame is complete. Both objects exist only while a message is arriving: an
idle connection holds neither.
"""

from __future__ import annotations

import codecs
from typing import Any

from ..exceptions import InvalidPayloadData
from .frames import FrameHeader
from .mask import unmask_into
from .native import speedups

__all__ = ["PartialFrame", "TextCheck"]

_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# The payload received in place (None without the native extension: a
# bytearray collects it, and it is copied out).
_NativePayload = getattr(speedups, "Payload", None)


def _is_surrogate_prefix(pending: bytes) -> bool:
    """Tell whether the bytes a UTF-8 decoder holds back start a surrogate.

    CPython's incremental decoder rejects every impossible prefix at once
    except ED A0-ED BF, the start of an encoded surrogate, which it keeps
    until the character is complete. RFC 3629 forbids surrogates, so such a
    prefix can never become valid.
    """
    return len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0


class TextCheck:
    """The UTF-8 check of one text message, fed its pieces in order; a character may span two pieces."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _new_utf8_decoder()

    def feed(self, text: bytes | bytearray, final: bool = False) -> None:
        """Check the next piece (``final``: the message ends with it).

        Raises:
            InvalidPayloadData: If the text so far cannot be the start of valid UTF-8.
        """
        decoder = self._decoder
        if text.isascii() and not decoder.getstate()[0]:
            if final:
                decoder.reset()
            return
        try:
            decoder.decode(text, final)
        except UnicodeDecodeError:
            raise InvalidPayloadData("text message is not valid UTF-8") from None
        if not final and _is_surrogate_prefix(decoder.getstate()[0]):
            raise InvalidPayloadData("text message is not valid UTF-8")


class PartialFrame:
    """A masked data frame whose payload is arriving.

    Attributes:
        header: The frame's header.
        payload: The payload so far, unmasked: the native extension's
            ``Payload``, made at the frame's full length and filled in place,
            or a bytearray that grows.
        filled: How many payload bytes have come.
        text: The message's UTF-8 check, fed as the payload comes; None for
            binary or compressed frames (compressed text is checked once
            inflated).
    """

    __slots__ = ("filled", "header", "payload", "text")

    def __init__(self, header: FrameHeader, text: TextCheck | None) -> None:
        self.header = header
        self.payload: Any = bytearray() if _NativePayload is None else _NativePayload(header.length)
        self.filled = 0
        self.text = text

    @property
    def complete(self) -> bool:
        return self.filled == self.header.length

    def fill(self, data: bytes | bytearray | memoryview) -> int:
        """Add the next bytes of the payload; return how many belong to it (the rest is the next frame's).

        Raises:
            InvalidPayloadData: If the text is not valid UTF-8.
        """
        header, payload, filled = self.header, self.payload, self.filled
        assert header.mask is not None  # parse_header refuses unmasked frames
        used = min(len(data), header.length - filled)
        unmask_into(payload, filled, data if used == len(data) else memoryview(data)[:used], header.mask)
        self.filled = filled + used
        if self.text is not None:
            self._check(filled, filled + used)
        return used

    def receive_buffer(self) -> memoryview | None:
        """The rest of the payload, writable, to read straight into; None without the native extension."""
        if type(self.payload) is bytearray:
            return None
        return memoryview(self.payload)[self.filled : self.header.length]

    def received(self, size: int) -> None:
        """``size`` bytes were read into ``receive_buffer()`` (released since): unmask them in place.

        Raises:
            InvalidPayloadData: If the text is not valid UTF-8.
        """
        header, start = self.header, self.filled
        assert header.mask is not None
        stop = start + size
        if not 0 <= size <= header.length - start:
            raise ValueError(f"{size} bytes cannot have been read into a buffer of {header.length - start}")
        self.payload.unmask(start, stop, header.mask)
        self.filled = stop
        if self.text is not None:
            self._check(start, stop)

    def take(self) -> bytes:
        """The whole payload (``complete``), as bytes."""
        payload = self.payload
        return bytes(payload) if type(payload) is bytearray else payload.take()

    def _check(self, start: int, stop: int) -> None:
        assert self.text is not None
        with memoryview(self.payload) as view:
            piece = bytes(view[start:stop])
        self.text.feed(piece, final=self.complete and self.header.fin)
