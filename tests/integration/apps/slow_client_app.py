"""A room where each message is forwarded to every other member: one member stops reading."""

import json

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

members: set = set()
closed: list = []


class Room(WebSocketView):
    PING_INTERVAL = None
    SEND_TIMEOUT = 1

    async def on_open(self):
        members.add(self)
        await self.send_text("joined")

    async def on_receive(self, data, opcode):
        delivered = 0
        for member in list(members):
            if member is not self and await member.send(data, opcode):
                delivered += 1
        await self.send_text(f"done {delivered}")

    async def on_close(self):
        members.discard(self)
        closed.append(self.close_code)


def closed_codes(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(closed).encode()]


app = WebSocketMiddleware(closed_codes, [path("/room", Room)])
