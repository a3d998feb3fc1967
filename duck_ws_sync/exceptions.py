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

  - ``Reject``: raised by a view's ``authorize`` to refuse the upgrade with
    an HTTP status.

Duck names its base class ``BaseException``, shadowing the builtin; importing
that name from this module still works and gives ``WebSocketError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

__all__ = [
    "BrokerUnavailable",
    "ExtensionError",
    "InvalidPayloadData",
    "LocalProtocolError",
    "PayloadTooBig",
    "ProtocolError",
    "Reject",
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


class Reject(WebSocketError):
    """Refuse a WebSocket before the 101: raise it from ``authorize``.

    The client gets ``status`` with ``reason`` as a plain-text body and
    ``headers`` (``WWW-Authenticate`` with a 401, ``Retry-After`` with a
    429 or 503), and no WebSocket is opened.

    Args:
        status: An HTTP status from 400 to 599.
        reason: A short explanation for the client; default the status's phrase.
        headers: ``(name, value)`` pairs to add to the response.

    Raises:
        ValueError: For a status outside 400-599, or a header name or value
            that holds a line break.
    """

    def __init__(self, status: int, reason: str = "", headers: Sequence[tuple[str, str]] = ()) -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"Reject needs an error status (400-599), not {status!r}")
        headers = [(str(name), str(value)) for name, value in headers]
        if any(character in field for pair in headers for field in pair for character in "\r\n\0"):
            raise ValueError("a header of Reject holds a line break")
        if not reason:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:  # a status without a name, such as 499
                reason = "Refused"
        super().__init__(reason)
        self.status = status
        self.reason = " ".join(reason.split())  # one line of plain text
        self.headers = headers
