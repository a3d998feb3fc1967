"""The exceptions of duck_ws_sync, all under one base class.

The hierarchy separates the peer's faults from the caller's (as h11 does):

- ``WebSocketError``: the base of everything raised here.

  - ``ProtocolError``: the peer broke RFC 6455 or RFC 7692. It carries the
    close code that the connection is failed with (1002 by default).

    - ``InvalidPayloadData``: a message that is not valid for its type, such as
      text that is not UTF-8 (close code 1007).
    - ``PayloadTooBig``: a frame or message over the configured limit (1009).
    - ``ExtensionError``: an extension could not process the peer's data, for
      example corrupt compressed data.

  - ``LocalProtocolError``: this side asked for something the protocol or the
    connection's state forbids, such as sending data after a Close frame.

  - ``BrokerUnavailable`` (also a ``ConnectionError``): ``broadcast`` could
    not hand a message to the broker (Redis is down); nobody got it.

Duck names its base class ``BaseException``, shadowing the builtin; importing
that name from this module still works and gives ``WebSocketError``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BrokerUnavailable",
    "ExtensionError",
    "InvalidPayloadData",
    "LocalProtocolError",
    "PayloadTooBig",
    "ProtocolError",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Base class of every exception raised by duck_ws_sync."""


class ProtocolError(WebSocketError):
    """The peer violated the WebSocket protocol.

    Attributes:
        close_code: The close code to fail the connection with.
    """

    close_code: int = 1002  # RFC 6455 §7.4.1: protocol error

    def __init__(self, message: str = "", close_code: int | None = None) -> None:
        super().__init__(message)
        if close_code is not None:
            self.close_code = close_code


class InvalidPayloadData(ProtocolError):
    """A message's data is not consistent with its type (RFC 6455 §7.4.1: 1007)."""

    close_code = 1007


class PayloadTooBig(ProtocolError):
    """A frame or message exceeds the configured size limit (RFC 6455 §7.4.1: 1009)."""

    close_code = 1009


class ExtensionError(ProtocolError):
    """An extension could not process the peer's data (for example, corrupt deflate data)."""


class LocalProtocolError(WebSocketError):
    """This side attempted something the protocol forbids in the current state."""


def __getattr__(name: str) -> Any:
    # Duck's base exception is called ``BaseException``. Offering it lazily keeps
    # ``from duck_ws_sync.exceptions import BaseException`` working without
    # shadowing the builtin inside this module.
    if name == "BaseException":
        return WebSocketError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BrokerUnavailable(WebSocketError, ConnectionError):
    """``broadcast`` could not hand the message to the broker (Redis is down): nobody got it.

    Raised at once while an outage is known, else within the broker's
    socket timeout. The worker goes on serving; the broker is reconnected
    in the background.
    """
