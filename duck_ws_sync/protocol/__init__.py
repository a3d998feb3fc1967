"""The WebSocket protocol without I/O: RFC 6455 and RFC 7692.

Bytes go in, events and bytes to send come out; nothing here touches a
socket, a thread, gevent or asyncio, so every rule can be tested with bytes.
"""

from .connection import ServerConnection, Side, State
from .events import Close, Event, Message, Ping, Pong
from .extensions import Extension, PerMessageDeflate
from .frames import Frame
from .handshake import (
    MAGIC_STRING,
    HandshakeResult,
    InvalidHandshake,
    Request,
    Response,
    ServerHandshake,
    accept_key,
)
from .headers import Headers
from .opcodes import CONTROL_OPCODES, DATA_OPCODES, CloseCode, OpCode

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "MAGIC_STRING",
    "Close",
    "CloseCode",
    "Event",
    "Extension",
    "Frame",
    "HandshakeResult",
    "Headers",
    "InvalidHandshake",
    "Message",
    "OpCode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "ServerConnection",
    "ServerHandshake",
    "Side",
    "State",
    "accept_key",
]
