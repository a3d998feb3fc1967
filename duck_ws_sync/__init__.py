"""Duck-style WebSocket views for WSGI servers on gevent.

The protocol names (opcodes, close codes, frames, extensions, exceptions) are
importable from here as from ``duck.contrib.websockets``.
"""

from typing import TYPE_CHECKING, Any

from .exceptions import (
    BrokerUnavailable,
    ExtensionError,
    InvalidPayloadData,
    LocalProtocolError,
    PayloadTooBig,
    ProtocolError,
    Reject,
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

if TYPE_CHECKING:
    from .brokers import Member, Presence, broadcast, configure_broker, presence, send_to_user
    from .health import stats, stats_app
    from .middleware import WebSocketMiddleware
    from .request import WebSocketRequest
    from .views import SendResult, WebSocketView, close_all

__version__ = "0.1.0.dev0"

# The rest is imported on first use, so that the protocol names stay
# importable without any I/O library.
_LAZY = {
    "broadcast": "brokers",
    "close_all": "views",
    "configure_broker": "brokers",
    "Member": "brokers",
    "Presence": "brokers",
    "presence": "brokers",
    "send_to_user": "brokers",
    "stats": "health",
    "stats_app": "health",
    "SendResult": "views",
    "WebSocketMiddleware": "middleware",
    "WebSocketRequest": "request",
    "WebSocketView": "views",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415 (kept off the protocol-only import path)

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "BrokerUnavailable",
    "CloseCode",
    "Extension",
    "ExtensionError",
    "Frame",
    "InvalidPayloadData",
    "LocalProtocolError",
    "Member",
    "OpCode",
    "PayloadTooBig",
    "PerMessageDeflate",
    "Presence",
    "ProtocolError",
    "Reject",
    "SendResult",
    "State",
    "WebSocketError",
    "WebSocketMiddleware",
    "WebSocketRequest",
    "WebSocketView",
    "broadcast",
    "close_all",
    "configure_broker",
    "presence",
    "send_to_user",
    "stats",
    "stats_app",
]
