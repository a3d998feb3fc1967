"""The upgrade request as a view sees it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from .protocol import Headers, Request

__all__ = ["QueryDict", "WebSocketRequest", "wsgi_to_text"]


class QueryDict(dict[str, list[str]]):
    """Query parameters as Duck's ``QueryDict`` has them: each name with the list of its values.

    ``get`` and indexing give a name's first value (Duck's and Django's
    ``request.GET.get("token")``); ``getlist`` gives them all. As a dict it
    maps each name to its list (``dict(request.GET)``, ``items()``).
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> str:  # type: ignore[override]
        return super().__getitem__(key)[0]

    def get(self, key: str, default: Any = None) -> Any:
        """The first value of ``key``, or ``default``."""
        values = super().get(key)
        return values[0] if values else default

    def getlist(self, key: str, default: list[str] | None = None) -> list[str]:
        """Every value of ``key``, in order (``default``, else an empty list, when there is none)."""
        values = super().get(key)
        return list(values) if values is not None else ([] if default is None else default)

    def __repr__(self) -> str:
        return f"<QueryDict {dict.__repr__(self)}>"


class WebSocketRequest:
    """The HTTP request that opened a WebSocket, built from the WSGI environ.

    Attributes:
        environ: The WSGI environ, as the server gave it.
        method: The request method (``"GET"``).
        path: The path, without the query string.
        query_string: The raw query string.
    """

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.path: str = wsgi_to_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        self.query_string: str = environ.get("QUERY_STRING", "")

    @cached_property
    def headers(self) -> Headers:
        """The request headers, looked up without regard to case (read from the environ when first used)."""
        return Headers(_headers_from_environ(self.environ))

    @cached_property
    def GET(self) -> QueryDict:  # noqa: N802 (Duck's name)
        """The query parameters (``QueryDict``: ``get`` gives the first value, ``getlist`` all)."""
        return QueryDict(parse_qs(self.query_string, keep_blank_values=True))

    @property
    def query_params(self) -> dict[str, str]:
        """The query parameters, each name with its last value."""
        return {name: values[-1] for name, values in self.GET.items()}

    @property
    def fullpath(self) -> str:
        """The path with its query string, if any (Duck's name)."""
        return self.path + (f"?{self.query_string}" if self.query_string else "")

    @property
    def META(self) -> Mapping[str, Any]:  # noqa: N802 (Duck's name)
        """The WSGI environ (Duck's and Django's ``META``: ``REMOTE_ADDR``, ``HTTP_*``, ...)."""
        return self.environ

    @property
    def COOKIES(self) -> dict[str, str]:  # noqa: N802 (Duck's name)
        """The request's cookies by name, as ``cookies``."""
        return self.cookies

    @property
    def host(self) -> str:
        """The ``Host`` header (empty if the client sent none)."""
        return self.headers.get("Host", "") or ""

    @property
    def hostname(self) -> str:
        """The ``Host`` header without its port."""
        host = self.host
        if host.startswith("["):
            return host[: host.find("]") + 1]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    @property
    def port(self) -> int | None:
        """The port of the ``Host`` header, if it has one."""
        host = self.host
        _, colon, port = host.rpartition(":")
        return int(port) if colon and port.isdigit() and not host.endswith("]") else None

    @property
    def origin(self) -> str | None:
        """The ``Origin`` header, if any."""
        return self.headers.get("Origin")

    @property
    def uses_https(self) -> bool:
        """True if the client used TLS (``scheme == "https"``)."""
        return self.scheme == "https"

    @cached_property
    def cookies(self) -> dict[str, str]:
        """The request's cookies by name (a malformed header gives none)."""
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", "") or "")
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in cookie.items()}

    @property
    def scheme(self) -> str:
        """``"http"`` or ``"https"``: the scheme the client used (told by a trusted proxy, else the server's)."""
        return str(self.environ.get("wsgi.url_scheme", "http"))

    @property
    def client_address(self) -> tuple[str, int]:
        """The client's address and port: behind a trusted proxy, the client's it forwarded (port 0 if not given)."""
        return self.environ.get("REMOTE_ADDR", ""), int(self.environ.get("REMOTE_PORT") or 0)

    @property
    def remote_addr(self) -> str:
        """The client's address."""
        return self.client_address[0]

    def get_header(self, name: str, default: str | None = None) -> str | None:
        """Return a header's value (case-insensitive), or ``default`` (Duck's API)."""
        return self.headers.get(name, default)

    def to_handshake_request(self) -> Request:
        """The request as the protocol core's handshake validates it."""
        path = self.environ.get("SCRIPT_NAME", "") + self.environ.get("PATH_INFO", "")
        target = path + (f"?{self.query_string}" if self.query_string else "")
        # Headers read for the check only: a view that never reads them keeps none.
        headers = self.__dict__.get("headers") or Headers(_headers_from_environ(self.environ))
        # The scheme is compared by the same-origin check only when a trusted proxy told it.
        proxy = self.environ.get("duck_ws_sync.proxy")
        scheme = proxy["scheme"] if proxy is not None else None
        return Request(self.method, target, headers, self.environ.get("SERVER_PROTOCOL", "HTTP/1.1"), scheme)

    def __repr__(self) -> str:
        return f"<WebSocketRequest {self.method} {self.path!r}>"


def wsgi_to_text(value: str) -> str:
    """Decode a WSGI "bytes as latin-1" string (PEP 3333) as the UTF-8 the client sent."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _headers_from_environ(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").title(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").title(), value))
    return headers
