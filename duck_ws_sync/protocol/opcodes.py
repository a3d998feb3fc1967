"""Opcodes and close codes (RFC 6455 §5.2, §7.4), with Duck's names and values."""

from __future__ import annotations

import enum

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "CloseCode",
    "OpCode",
    "is_sendable_close_code",
    "is_valid_close_code",
]


class OpCode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2). Values 3-7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


CONTROL_OPCODES = (OpCode.CLOSE, OpCode.PING, OpCode.PONG)
DATA_OPCODES = (OpCode.CONTINUATION, OpCode.TEXT, OpCode.BINARY)


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a Close frame on the wire.

    RFC 6455 §7.4.1-§7.4.2: 1000-1003 and 1007-1014 are defined for use in
    Close frames, 3000-4999 belong to libraries and applications. 1004 is
    reserved, 1005, 1006 and 1015 must never be sent, and everything else below
    3000 is reserved for future revisions of the protocol.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


# The same set applies to what we send as to what we accept.
is_sendable_close_code = is_valid_close_code
