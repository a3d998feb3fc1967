"""The app behind test_security.py and test_operations.py: authorize, trusted proxies, flood limits, logs, stats.

- ``/ws/private``: ``authorize`` reads a token from ``?token=`` or from
  ``Sec-WebSocket-Protocol: bearer, <token>``. None: 401 with
  ``WWW-Authenticate``; ``banned``: 403; ``crash``: an exception (500);
  ``slow``: accepted after an ``await asyncio.sleep``; anything else is
  the user, set as ``self.user``. On open it sends ``{"user", "subprotocol"}``.
- ``/ws/whoami``: sends the client's address, scheme and ``Host`` as the
  view's request sees them, then echoes. The proxies trusted are
  127.0.0.2 and 10.0.0.0/8 (127.0.0.1, where the tests usually connect
  from, is not one), with the default ``proxy_headers`` (X-Forwarded-For
  and X-Forwarded-Proto). The same view under other settings:
  ``/xhost/ws/whoami`` also believes X-Forwarded-Host;
  ``/rfc7239/ws/whoami`` believes ``Forwarded`` only; ``/local/ws/whoami``
  trusts 127.0.0.1 with the default headers.
- ``/ws/flood``: ``MAX_MESSAGE_RATE = 20``, echoes.
- ``/ws/echo``: echoes; closes with 4000 when told ``close``; answers
  ``pid`` with the worker's; ``?hold`` blocks the worker 50 ms as it opens
  (connections made meanwhile go to other workers).
  ``/ws/echo-plain``: the same without compression.
- ``/stats``: ``duck_ws_sync.stats_app``; ``/metrics``:
  ``duck_ws_sync.metrics.metrics_app``.

Every access log record is printed as ``ACCESS <json>``: the message and
the record's fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from gevent import monkey

from duck_ws_sync import Reject, WebSocketMiddleware, WebSocketView, stats_app
from duck_ws_sync.metrics import metrics_app
from duck_ws_sync.urls import path

ACCESS_FIELDS = (
    "client_host",
    "client_port",
    "path",
    "view",
    "close_code",
    "closed_by",
    "duration",
    "messages_received",
    "bytes_received",
    "messages_sent",
    "bytes_sent",
    "subprotocol",
    "compression",
)


class AccessLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        fields = {name: getattr(record, name) for name in ACCESS_FIELDS}
        fields["message"] = record.getMessage()
        fields["level"] = record.levelname
        sys.stdout.write("ACCESS " + json.dumps(fields) + "\n")
        sys.stdout.flush()


access = logging.getLogger("duck_ws_sync.access")
access.setLevel(logging.INFO)
access.addHandler(AccessLines())


class Private(WebSocketView):
    PING_INTERVAL = None
    SUBPROTOCOLS = ("bearer",)

    async def authorize(self) -> None:
        token = self.request.query_params.get("token")
        offered = [value.strip() for value in (self.request.get_header("Sec-WebSocket-Protocol") or "").split(",")]
        if token is None and self.subprotocol == "bearer":
            token = next((value for value in offered if value and value != "bearer"), None)
        if token is None:
            raise Reject(401, "Log in first", [("WWW-Authenticate", 'Bearer realm="chat"')])
        if token == "banned":
            raise Reject(403, "You are banned")
        if token == "crash":
            raise RuntimeError("the session store is down")
        if token == "slow":
            await asyncio.sleep(0.05)
        self.user = token

    async def on_open(self) -> None:
        await self.send_json({"user": self.user, "subprotocol": self.subprotocol})

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class WhoAmI(WebSocketView):
    PING_INTERVAL = None

    async def on_open(self) -> None:
        host, port = self.request.client_address
        await self.send_json(
            {"client": [host, port], "scheme": self.request.scheme, "host": self.request.get_header("Host")}
        )

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class Flood(WebSocketView):
    PING_INTERVAL = None
    MAX_MESSAGE_RATE = 20

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class Echo(WebSocketView):
    PING_INTERVAL = None
    CLOSE_TIMEOUT = 2

    async def on_open(self) -> None:
        if self.request.query_string == "hold":
            monkey.get_original("time", "sleep")(0.05)

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"close":
            await self.send_close(4000, "told to")
        elif data == b"pid":
            await self.send_text(str(os.getpid()))
        else:
            await self.send(data, opcode)


class EchoPlain(Echo):
    COMPRESSION = None


def http_app(environ, start_response):
    route = environ.get("PATH_INFO", "")
    if route == "/stats":
        return stats_app(environ, start_response)
    if route == "/metrics":
        return metrics_app(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


PROXIES = ["127.0.0.2", "10.0.0.0/8"]

main = WebSocketMiddleware(
    http_app,
    [
        path("/ws/private", Private),
        path("/ws/whoami", WhoAmI),
        path("/ws/flood", Flood),
        path("/ws/echo", Echo),
        path("/ws/echo-plain", EchoPlain),
    ],
    trusted_proxies=PROXIES,
)
# The same view behind proxies that set other headers, each under a prefix.
mounted = {
    "/xhost": WebSocketMiddleware(
        None,
        [path("/ws/whoami", WhoAmI)],
        trusted_proxies=PROXIES,
        proxy_headers=("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"),
    ),
    "/rfc7239": WebSocketMiddleware(
        None, [path("/ws/whoami", WhoAmI)], trusted_proxies=PROXIES, proxy_headers="forwarded"
    ),
    "/local": WebSocketMiddleware(None, [path("/ws/whoami", WhoAmI)], trusted_proxies=["127.0.0.1"]),
}


def app(environ, start_response):
    prefix, slash, rest = environ.get("PATH_INFO", "").partition("/ws/")
    if slash and prefix in mounted:
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = slash + rest
        return mounted[prefix](environ, start_response)
    return main(environ, start_response)
