"""The server of the interoperability suite: the chat example, with test routes beside it.

Served as ``tests.interop.app:app`` by gunicorn (``-k gevent`` and
``-k gthread``), gevent.pywsgi and werkzeug. Everything the routes below do not take goes to the chat
example (its page at ``/`` and ``/ws/chat``), so a browser test opens the
real chat page and reaches the test routes from the same origin.

- ``/ws/interop/echo``: the echo example with limits that let a 16 MiB
  message through in one frame.
- ``/ws/interop/ping``: sends a Ping on open; once the client's Pong is back,
  sends the text ``pong received``.
- ``/ws/interop/close?code=C&reason=R``: closes with that code and reason.
- ``/ws/interop/send?size=N``: sends a text and a binary message of N bytes
  in 64 KiB frames (compressed first where negotiated), then a JSON text
  describing both, the extensions and how many frames each took.
- ``GET /interop/broken``: the chat page with a mistake in its script, to
  show that the browser test fails on a broken page.
- ``GET /interop/closed?id=X``: waits (up to 10 s) until the echo connection
  with ``?id=X`` has run ``on_close``, and answers what it saw as JSON.

Under ``/ws/interop/plain/`` are the same routes without compression, for a
client that cannot stop offering it (a browser).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from examples import chat, echo
from tests.interop.payloads import KiB, MiB, describe, make

CLOSED: dict[str, dict[str, Any]] = {}
_CLOSED_EVENTS: dict[str, threading.Event] = {}  # gevent's where gevent patched threading


def _closed_event(key: str) -> threading.Event:
    return _CLOSED_EVENTS.setdefault(key, threading.Event())


def negotiated(view: WebSocketView) -> str:
    """The ``Sec-WebSocket-Extensions`` value the server answered with ("" for none)."""
    return ", ".join(extension.response_params() for extension in view.extensions or ())


class Echo(echo.Echo):
    MAX_FRAME_SIZE = 17 * MiB  # a 16 MiB message, deflated or not, in one frame
    MAX_MESSAGE_SIZE = 17 * MiB
    PING_INTERVAL = None  # the ping test pings on purpose

    async def on_close(self) -> None:
        key = self.request.query_params.get("id")
        if key:
            CLOSED[key] = {"code": self.close_code, "reason": self.close_reason, "extensions": negotiated(self)}
            _closed_event(key).set()


class Ping(WebSocketView):
    PING_INTERVAL = None

    async def on_open(self) -> None:
        await self.ping(b"interop")
        await self.send_text("pong received")


class Close(WebSocketView):
    async def on_open(self) -> None:
        query = self.request.query_params
        await self.send_close(int(query["code"]), query["reason"])


class Send(WebSocketView):
    MAX_FRAME_SIZE = 64 * KiB

    async def on_open(self) -> None:
        size = int(self.request.query_params["size"])
        text, binary = make("text", size), make("binary", size)
        assert self.session is not None
        connection = self.session.connection  # the protocol core, to count frames
        report: dict[str, Any] = {"extensions": negotiated(self)}
        for kind, data in (("text", text), ("binary", binary)):
            before = connection.frames_sent
            await (self.send_text(data.decode()) if kind == "text" else self.send_binary(data))
            report[kind] = {"frames": connection.frames_sent - before, **describe(data)}
        await self.send_json(report)


def closed(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """``GET /interop/closed?id=X``: what the echo connection ``X`` saw in ``on_close``."""
    key = parse_qs(environ.get("QUERY_STRING", "")).get("id", [""])[0]
    if not key:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"id is required\n"]
    if not _closed_event(key).wait(10):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"that connection has not closed\n"]
    body = json.dumps(CLOSED[key]).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


BROKEN_PAGE = chat.PAGE.replace(b"new WebSocket(", b"new WebSockt(")


def site(environ: dict[str, Any], start_response: Any) -> Any:
    if environ["PATH_INFO"] == "/interop/closed":
        return closed(environ, start_response)
    if environ["PATH_INFO"] == "/interop/broken":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [BROKEN_PAGE]
    return chat.app(environ, start_response)


ROUTES = {"echo": Echo, "ping": Ping, "close": Close, "send": Send}
app = WebSocketMiddleware(
    site,
    [path(f"/ws/interop/{name}", view) for name, view in ROUTES.items()]
    + [
        path(f"/ws/interop/plain/{name}", type(view.__name__, (view,), {"COMPRESSION": None}))
        for name, view in ROUTES.items()
    ],
)
