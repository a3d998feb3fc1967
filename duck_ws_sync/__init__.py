"""Duck-style WebSocket views for WSGI servers on gevent.

The protocol names (opcodes, close codes, frames, extensions, exceptions) are
importable from here as from ``duck.contrib.websockets``.
"""

from .exceptions import (
    ExtensionError,
    InvalidPayloadData,
    LocalProtocolError,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
)
from .protocol import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    CloseCode,
    Extension,
    Frame,
    OpCode,
    PerMessageDeflate,
    State,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "CloseCode",
    "Extension",
    "ExtensionError",
    "Frame",
    "InvalidPayloadData",
    "LocalProtocolError",
    "OpCode",
    "PayloadTooBig",
    "PerMessageDeflate",
    "ProtocolError",
    "State",
    "WebSocketError",
]
