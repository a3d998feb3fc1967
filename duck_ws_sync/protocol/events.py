"""Events that a connection hands out as it reads the peer's bytes."""

from __future__ import annotations

from dataclasses import dataclass

from .frames import summarize
from .opcodes import OpCode

__all__ = ["Close", "Event", "Message", "Ping", "Pong"]


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """A complete data message, reassembled and decompressed.

    Attributes:
        opcode: ``OpCode.TEXT`` or ``OpCode.BINARY``.
        data: The payload. For a text message it is valid UTF-8.
    """

    opcode: OpCode
    data: bytes

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (decoded on each access)."""
        return self.data.decode("utf-8")

    def __repr__(self) -> str:
        return f"Message({self.opcode.name}, {summarize(self.data)})"


@dataclass(frozen=True, slots=True, repr=False)
class Ping:
    """A Ping frame; the connection has already queued the matching Pong."""

    payload: bytes

    def __repr__(self) -> str:
        return f"Ping({summarize(self.payload)})"


@dataclass(frozen=True, slots=True, repr=False)
class Pong:
    """A Pong frame."""

    payload: bytes

    def __repr__(self) -> str:
        return f"Pong({summarize(self.payload)})"


@dataclass(frozen=True, slots=True)
class Close:
    """A Close frame (RFC 6455 §5.5.1): as an event, the one the peer sent.

    Attributes:
        code: The close code; 1005 (no status) when the frame carried none.
        reason: The close reason.
    """

    code: int
    reason: str


Event = Message | Ping | Pong | Close
