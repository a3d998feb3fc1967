"""The application the tests of ``duck_ws_sync.testing`` serve.

- ``/echo``: each message back as it came (text or binary).
- ``/json``: a JSON message back with ``"seen": true`` added.
- ``/close``: closes with 4000 "bye" on any message; ``/say-then-close``
  sends ``last words`` first.
- ``/request``: sends the request's X-Token header, the chosen subprotocol
  and the Origin, as JSON.
- ``GET /closed``: the close codes the views' ``on_close`` saw, as JSON;
  ``GET /env/NAME``: the server's environment variable NAME.
"""

import json
import os

from duck_ws_sync import OpCode, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

closed: list = []


class Echo(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data, opcode):
        await (self.send_text(data.decode("utf-8")) if opcode == OpCode.TEXT else self.send_binary(data))

    async def on_close(self):
        closed.append(self.close_code)


class Json(WebSocketView):
    async def on_receive(self, data, opcode):
        await self.send_json({**json.loads(data), "seen": True})


class Close(WebSocketView):
    async def on_receive(self, data, opcode):
        await self.send_close(4000, "bye")


class SayThenClose(WebSocketView):
    async def on_receive(self, data, opcode):
        await self.send_text("last words")
        await self.send_close(4000, "bye")


class Request(WebSocketView):
    SUBPROTOCOLS = ("chat.v2",)
    ALLOWED_ORIGINS = ("http://tests.example",)

    async def on_open(self):
        await self.send_json(
            {
                "token": self.request.headers.get("X-Token"),
                "subprotocol": self.subprotocol,
                "origin": self.request.headers.get("Origin"),
            }
        )


def plain(environ, start_response):
    name = environ["PATH_INFO"].removeprefix("/env/")
    value = closed if name == "/closed" else os.environ.get(name)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(value).encode()]


app = WebSocketMiddleware(
    plain,
    [
        path("/echo", Echo),
        path("/json", Json),
        path("/close", Close),
        path("/say-then-close", SayThenClose),
        path("/request", Request),
    ],
)
