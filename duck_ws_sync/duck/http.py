"""Duck's HTTP views behind a PEP 3333 call, through Duck's own request and response machinery.

``duck_request`` makes Duck's ``HttpRequest`` from a WSGI environ the way
Duck's own server does from the bytes it reads (a request line, headers and
a body, parsed by ``Request.parse``); ``serve_http`` hands it to Duck's
``WSGI.get_response``, which runs Duck's normalizers, middlewares, the view
and the response finalizer, and turns the response into a WSGI one. Duck
does no socket I/O on that path for plain views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from ..request import wsgi_to_text

__all__ = ["duck_request", "serve_http"]

# PEP 3333 leaves these to the server; Duck's finalizer always sets Connection.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def duck_request(environ: Mapping[str, Any], read_body: bool = True) -> Any:
    """Duck's ``HttpRequest`` for the request of ``environ``, parsed by Duck.

    Args:
        environ: The WSGI environ.
        read_body: Read the body from ``wsgi.input`` (an upgrade has none).
    """
    from duck.http.request_data import RequestData  # noqa: PLC0415 (Duck only when a Duck project runs)
    from duck.settings.loaded import SettingsLoaded  # noqa: PLC0415

    # Duck decodes the target itself: it gets it quoted again, as it came.
    path = wsgi_to_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    target = quote(path, safe="/:@!$&'()*+,;=-._~")
    if environ.get("QUERY_STRING"):
        target += "?" + environ["QUERY_STRING"]
    method = environ.get("REQUEST_METHOD", "GET")
    headers = {"topheader": f"{method} {target} {environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}"}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    length = int(environ.get("CONTENT_LENGTH") or 0) if read_body else 0
    if length:
        headers["content-length"] = str(length)
    body = environ["wsgi.input"].read(length) if length else b""
    client = (environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0))
    request = SettingsLoaded.REQUEST_CLASS(client_socket=None, client_address=client)
    # META's REMOTE_ADDR comes from this private field, which Duck's own
    # server fills from its socket's getsockname() (its own address); the
    # client's is the one the WSGI server saw.
    request._Request__remote_addr = client
    request.parse(RequestData(headers, body))
    return request


def serve_http(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI application of a Duck project's HTTP views."""
    from duck.settings.loaded import SettingsLoaded  # noqa: PLC0415

    response = SettingsLoaded.WSGI.get_response(duck_request(environ))
    start_response(*wsgi_status_and_headers(response))
    return _body(response)


def wsgi_status_and_headers(response: Any) -> tuple[str, list[tuple[str, str]]]:
    """A Duck response's status line and headers as ``start_response`` takes them."""
    status = f"{response.status_code} {response.status_message or ''}".strip()
    headers = [(name, str(value)) for name, value in response.title_headers.items() if name.lower() not in HOP_BY_HOP]
    headers += [("Set-Cookie", morsel.OutputString()) for morsel in response.cookies.values()]
    return status, headers


def _body(response: Any) -> Iterable[bytes]:
    from duck.http.response import StreamingHttpResponse  # noqa: PLC0415

    if not isinstance(response, StreamingHttpResponse):
        return [response.content or b""]
    return _stream(response)


def _stream(response: Any) -> Iterator[bytes]:
    from duck.http.core.handler import ResponseHandler  # noqa: PLC0415

    try:
        for chunk in response.iter_content():
            yield chunk.encode() if isinstance(chunk, str) else chunk
    finally:
        ResponseHandler.close_streaming_response(response)
