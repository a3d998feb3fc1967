"""The server's side of the opening handshake (RFC 6455 §4.2).

``ServerHandshake`` holds a server's policy (origins, subprotocols,
extensions); its ``accept`` method turns a ``Request`` into either a 101
``Response`` with the negotiated subprotocol and extensions, or a rejection: a
short plain-text response with the status that names the problem.

===========================================  ======
Problem                                       Status
===========================================  ======
method other than GET                         405 (with ``Allow: GET``)
no ``Upgrade: websocket``                     426 (with ``Upgrade: websocket``)
``Sec-WebSocket-Version`` other than 13       426 (with ``Sec-WebSocket-Version: 13``)
malformed request (HTTP version, ``Host``,    400
``Connection``, key, header syntax)
origin not allowed                            403
===========================================  ======
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Union
from urllib.parse import urlsplit

from ..exceptions import WebSocketError
from .extensions import Extension, negotiate_extensions
from .headers import HeaderFormatError, Headers, parse_extensions, split_list

__all__ = [
    "MAGIC_STRING",
    "HandshakeResult",
    "InvalidHandshake",
    "Request",
    "Response",
    "ServerHandshake",
    "accept_key",
    "origin_allowed",
]

#: RFC 6455 §1.3: the GUID appended to the key to compute the accept value.
MAGIC_STRING = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: An allowed origin: an exact origin, a glob pattern such as
#: ``"https://*.example.com"``, or a compiled regular expression.
OriginPattern = Union[str, "re.Pattern[str]"]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# A WebSocket's scheme is its page's, secure or not.
_WEB_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
_HTTP_VERSION = re.compile(r"HTTP/1\.([1-9][0-9]*)")


def accept_key(key: str) -> str:
    """Compute ``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + MAGIC_STRING).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Request:
    """An HTTP request as the handshake sees it.

    Attributes:
        method: The request method, such as ``"GET"``.
        path: The request target (path and query string).
        headers: The request headers.
        http_version: The protocol, such as ``"HTTP/1.1"``.
        scheme: The scheme the client used (``"http"`` or ``"https"``) when
            known for sure, such as from a trusted proxy; the same-origin
            check then compares it too. None: unknown, and only the host
            and port are compared.
    """

    method: str
    path: str
    headers: Headers
    http_version: str = "HTTP/1.1"
    scheme: str | None = None


@dataclass(frozen=True)
class Response:
    """An HTTP response: the 101 that opens a WebSocket, or a rejection.

    Attributes:
        status: The status code.
        headers: ``(name, value)`` pairs.
        body: The body (a plain-text reason for a rejection; empty for 101).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def status_line(self) -> str:
        """The status as WSGI's ``start_response`` wants it, e.g. ``"101 Switching Protocols"``."""
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:  # a status without a name (an application's own)
            phrase = "Unknown"
        return f"{self.status} {phrase}"

    def serialize(self) -> bytes:
        """Return the response as bytes for the wire."""
        lines = [f"HTTP/1.1 {self.status_line}", *(f"{name}: {value}" for name, value in self.headers), "", ""]
        return "\r\n".join(lines).encode("latin-1") + self.body


class InvalidHandshake(WebSocketError):
    """The handshake request was refused.

    Attributes:
        status: The HTTP status to answer with.
        reason: A short plain-text explanation for the client.
        headers: Extra response headers the status calls for.
    """

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)

    def response(self) -> Response:
        """The rejection response: the status, a plain-text reason, and ``Connection: close``."""
        body = f"{self.reason}\n".encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *self.headers,
        ]
        return Response(self.status, headers, body)


@dataclass(frozen=True)
class HandshakeResult:
    """The outcome of ``ServerHandshake.accept``.

    Attributes:
        response: What to send: the 101 response, or the rejection.
        subprotocol: The negotiated subprotocol, if any.
        extensions: The agreed extensions, ready to use on the connection.
        error: Why the request was refused, or None if it was accepted.
    """

    response: Response
    subprotocol: str | None = None
    extensions: list[Extension] = field(default_factory=list)
    error: InvalidHandshake | None = None

    @property
    def accepted(self) -> bool:
        """True when the response is the 101 that opens the WebSocket."""
        return self.error is None


def origin_allowed(origin: str, host: str, allowed: Sequence[OriginPattern] | None, scheme: str | None = None) -> bool:
    """Tell whether a browser's ``Origin`` may open a WebSocket.

    Args:
        origin: The ``Origin`` header's value.
        host: The ``Host`` header's value.
        allowed: None for same-origin only (the origin's host and port equal
            the ``Host`` header's, the port defaulting by the origin's scheme);
            otherwise exact origins, glob patterns (``*`` and ``?``), compiled
            regular expressions (matched in full), or ``"*"`` for any origin.
        scheme: The request's scheme, when known for sure (``http`` or
            ``https``; ``ws`` and ``wss`` are taken as these): same-origin
            then needs the origin's scheme to be it too, and ``Host``'s
            port defaults by it.
    """
    if allowed is None:
        return _same_origin(origin, host, scheme)
    for pattern in allowed:
        compiled = pattern if isinstance(pattern, re.Pattern) else _glob(pattern)
        if compiled.fullmatch(origin):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """Compile an origin glob: ``*`` and ``?`` are the only wildcards.

    Brackets stay literal, unlike ``fnmatch``, so ``http://[::1]:8000`` is an
    exact IPv6 origin rather than a character class.
    """
    translated = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(translated, re.IGNORECASE)


def _same_origin(origin: str, host: str, scheme: str | None) -> bool:
    try:
        parts = urlsplit(origin)
        default_port = _DEFAULT_PORTS.get(parts.scheme.lower())
        origin_port = default_port if parts.port is None else parts.port
        host_parts = urlsplit("//" + host)
        if scheme is not None:
            request_scheme = _WEB_SCHEMES.get(scheme.lower())
            if request_scheme is None or _WEB_SCHEMES.get(parts.scheme.lower()) != request_scheme:
                return False
            default_port = _DEFAULT_PORTS[request_scheme]
        # Host names no port when it is the default one of the scheme.
        host_port = default_port if host_parts.port is None else host_parts.port
    except ValueError:  # an invalid port number
        return False
    return (
        bool(parts.hostname)
        and origin_port is not None  # an unknown scheme without a port is no web origin
        and parts.hostname == host_parts.hostname
        and origin_port == host_port
    )


class ServerHandshake:
    """A server's handshake policy.

    Args:
        allowed_origins: See ``origin_allowed``. Requests without ``Origin``
            (non-browser clients) are always allowed: the header exists to
            protect browsers from cross-site WebSocket hijacking.
        subprotocols: Supported subprotocols, most preferred first.
        extensions: Supported extensions, configured with the server's limits.
    """

    def __init__(
        self,
        allowed_origins: Sequence[OriginPattern] | None = None,
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.allowed_origins = allowed_origins
        self.subprotocols = list(subprotocols)
        self.extensions = list(extensions)

    def accept(self, request: Request) -> HandshakeResult:
        """Validate ``request`` and build the response to it.

        Returns:
            The result: ``accepted`` with the 101 response, the subprotocol
            and extensions, or a rejection whose ``error`` says why.
        """
        try:
            key = self.validate(request)
            subprotocol = self.select_subprotocol(request.headers)
            extensions: list[Extension] = []
            if self.extensions:  # without extensions of our own, the offers do not matter
                offers = parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
                extensions = negotiate_extensions(offers, self.extensions)
        except HeaderFormatError:
            return self.reject(InvalidHandshake(400, "Malformed Sec-WebSocket-Extensions header"))
        except InvalidHandshake as exc:
            return self.reject(exc)
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        if extensions:
            headers.append(
                ("Sec-WebSocket-Extensions", ", ".join(extension.response_params() for extension in extensions))
            )
        return HandshakeResult(Response(101, headers), subprotocol, extensions)

    @staticmethod
    def reject(error: InvalidHandshake) -> HandshakeResult:
        """Build the result that refuses a request with ``error``."""
        return HandshakeResult(error.response(), error=error)

    def validate(self, request: Request) -> str:
        """Check a request against RFC 6455 §4.2.1 and the origin policy.

        Returns:
            The ``Sec-WebSocket-Key``.

        Raises:
            InvalidHandshake: With the status and reason to answer with.
        """
        headers = request.headers
        if request.method != "GET":
            raise InvalidHandshake(405, f"WebSocket handshake must use GET, not {request.method}", [("Allow", "GET")])
        if not _HTTP_VERSION.fullmatch(request.http_version):
            raise InvalidHandshake(400, f"WebSocket handshake needs HTTP/1.1, not {request.http_version}")
        hosts = headers.get_all("Host")
        if len(hosts) != 1 or not hosts[0].strip():
            raise InvalidHandshake(400, "WebSocket handshake needs exactly one Host header")
        if "websocket" not in (token.lower() for token in split_list(headers.get_all("Upgrade"))):
            raise InvalidHandshake(
                426, "This is a WebSocket endpoint: the request needs Upgrade: websocket", [("Upgrade", "websocket")]
            )
        if "upgrade" not in (token.lower() for token in split_list(headers.get_all("Connection"))):
            raise InvalidHandshake(400, "WebSocket handshake needs Connection: Upgrade")
        versions = headers.get_all("Sec-WebSocket-Version")
        if versions != ["13"]:
            # §4.4: answer with the versions we speak.
            version = _shorten(", ".join(versions)) or "none"
            raise InvalidHandshake(
                426,
                f"Unsupported WebSocket version {version}; this server speaks 13",
                [("Sec-WebSocket-Version", "13")],
            )
        keys = headers.get_all("Sec-WebSocket-Key")
        if len(keys) != 1 or not _is_valid_key(keys[0]):
            raise InvalidHandshake(400, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes")
        origins = headers.get_all("Origin")
        if len(origins) > 1:
            raise InvalidHandshake(400, "More than one Origin header")
        if origins and not origin_allowed(origins[0], hosts[0].strip(), self.allowed_origins, request.scheme):
            raise InvalidHandshake(403, f"Origin {_shorten(origins[0])} is not allowed")
        return keys[0]

    def select_subprotocol(self, headers: Headers) -> str | None:
        """Pick the first of our subprotocols that the client offers (RFC 6455 §4.2.2)."""
        offered = split_list(headers.get_all("Sec-WebSocket-Protocol"))
        return next((protocol for protocol in self.subprotocols if protocol in offered), None)


def _shorten(value: str, limit: int = 80) -> str:
    """Cut a client's header value quoted in a rejection, to keep the reason short."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (binascii.Error, UnicodeEncodeError):
        return False
