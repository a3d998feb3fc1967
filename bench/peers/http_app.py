"""The HTTP overhead workload: a bare WSGI app, and the same app behind ``WebSocketMiddleware``.

``gunicorn -k gevent -w 1 'http_app:bare'`` and ``'http_app:wrapped()'``;
wrk requests ``/``, which is not a WebSocket route, so the middleware only
looks at the request and hands it to the app.
"""

from __future__ import annotations

from typing import Any

BODY = b"Hello, World!\n"


def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def wrapped() -> Any:
    """``bare`` behind duck_ws_sync's middleware, with the benchmark's echo view at ``/ws``."""
    from duck_app import Echo

    from duck_ws_sync import WebSocketMiddleware
    from duck_ws_sync.urls import path

    return WebSocketMiddleware(bare, [path("/ws", Echo, name="echo")])
