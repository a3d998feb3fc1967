"""A small chat: a page at ``/`` and a WebSocket route at ``/ws/chat`` (``/ws/chat/<room>`` for other rooms).

Every message goes to every other member of the room, with the sender's
name; members are told when someone joins or leaves, and who is online.
Run it and open http://127.0.0.1:8000/ in two browser tabs (one user), then
in a private window (another user):

gunicorn -k gevent -b 127.0.0.1:8000 examples.chat:app
python3 -m examples.chat   # the same app on gevent.pywsgi

A room is a group (``view.join``), and messages go out with
``duck_ws_sync.broadcast``: within the process by default, and across
workers and machines through Redis when ``DUCK_WS_SYNC_BROKER`` says so:

DUCK_WS_SYNC_BROKER=redis://127.0.0.1:6379/0 gunicorn -k gevent -w 4 -b 127.0.0.1:8000 examples.chat:app

Each WebSocket prints one access-log line when it ends (``examples/logs.py``).

Who is who: the page sets a cookie, ``chat_user``, to 16 random hex digits
(``Path=/; HttpOnly; SameSite=Lax``), once; the WebSocket's ``authorize``
makes it the connection's ``user_id``, and the name is derived from it
(``User 1000`` to ``User 9999``), so every tab of a browser is the same
user with the same name, whichever worker serves it. A client without a
well-formed cookie is a user of its own for as long as it is connected.
``duck_ws_sync.send_to_user`` reaches every tab of a user: when one joins a
room, the user's other tabs are told.

Who is online: the users of the connections in the room's presence
(``duck_ws_sync.presence``), in every worker; a user with two tabs counts
once. A connection is in it from its join until it closes (it has left
before its ``on_close`` runs), and through Redis the members of a worker
that died without cleaning up vanish within 12 s.

Messages from the server are JSON:

- ``{"type": "system", "text": ...}``: the welcome, join and leave notices,
  "You joined #<room> in another tab", and "⚠️ Not delivered: the chat is
  unavailable." when Redis is down;
- ``{"type": "chat", "name": ..., "text": ...}``: what others say;
- ``{"type": "online", "count": ..., "names": [...]}``: how many users are
  in the room and their names, sorted; sent to the whole room whenever
  someone joins or leaves.
"""

import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from duck_ws_sync import (
    BrokerUnavailable,
    OpCode,
    State,
    WebSocketMiddleware,
    WebSocketView,
    broadcast,
    presence,
    send_to_user,
)
from duck_ws_sync.request import WebSocketRequest
from duck_ws_sync.urls import path
from examples.logs import log_connections

PAGE = Path(__file__).with_name("index.html").read_bytes()
COOKIE = "chat_user"
USER_ID = re.compile(r"[0-9a-f]{16}")


def new_user_id() -> str:
    """A user id: 16 random hex digits."""
    return secrets.token_hex(8)


def known_user(cookies: Mapping[str, str]) -> str | None:
    """The user id of the ``chat_user`` cookie, if the request has a well-formed one."""
    user_id = cookies.get(COOKIE, "")
    return user_id if USER_ID.fullmatch(user_id) else None


def name_of(user_id: str) -> str:
    """The name of ``user_id``: the same in every tab and every worker, as workers share no counter."""
    return f"User {int(user_id[:8], 16) % 9000 + 1000}"


def system(text: str) -> dict[str, str]:
    return {"type": "system", "text": text}


class ChatSocket(WebSocketView):
    MAX_MESSAGE_SIZE = 64 * 1024  # a chat line, not a file upload

    def authorize(self):
        # The page's cookie says who this is; without one, a user of its own.
        self.user_id = known_user(self.request.COOKIES) or new_user_id()
        self.name = name_of(self.user_id)

    async def on_open(self):
        self.room = self.kwargs.get("room", "lobby")
        # A member first, so that whoever joins after this connection's welcome is heard: a client
        # that reads the welcome and then sees a friend connect gets the friend's notice.
        self.join(self.room, info={"name": self.name})
        await self.send_json(system(f"👋 Welcome to the chat, {self.name}!"))
        async with self.telling_if_undelivered():
            self.tell_room(system(f"{self.name} joined"), exclude=self)
            send_to_user(self.user_id, json.dumps(system(f"You joined #{self.room} in another tab")), exclude=self)
            self.tell_room(self.online())  # to everyone in the room, this connection included

    async def on_receive(self, data: bytes, opcode: int):
        if opcode != OpCode.TEXT:
            return
        text = data.decode("utf-8").strip()
        if text:
            async with self.telling_if_undelivered():
                self.tell_room({"type": "chat", "name": self.name, "text": text}, exclude=self)

    async def on_close(self):
        # The connection has left the room's presence already: the list is of those who stay.
        async with self.telling_if_undelivered():
            self.tell_room(system(f"{self.name} left"), exclude=self)
            self.tell_room(self.online())

    def tell_room(self, message, exclude=None):
        """Send ``message`` to the members of the room (but ``exclude``), in every worker."""
        broadcast(self.room, json.dumps(message), exclude=exclude)

    def online(self):
        """Who is in the room, in every worker: one name per user, however many tabs they have open."""
        names = {member.user_id: member.info["name"] for member in presence(self.room).members}
        return {"type": "online", "count": len(names), "names": sorted(names.values())}

    @contextlib.asynccontextmanager
    async def telling_if_undelivered(self) -> AsyncIterator[None]:
        """Run the block; if Redis is down, say so rather than lose the lines silently."""
        try:
            yield
        except BrokerUnavailable:
            if self.state is State.OPEN:
                await self.send_json(system("⚠️ Not delivered: the chat is unavailable."))


def page(environ, start_response):
    """The plain WSGI app behind the WebSocket route: the chat page, and 404 for anything else.

    The page gives a browser its ``chat_user`` cookie, unless it has a
    well-formed one already (read as the WebSocket's ``authorize`` reads it).
    """
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))]
    if known_user(WebSocketRequest(environ).COOKIES) is None:
        headers.append(("Set-Cookie", f"{COOKIE}={new_user_id()}; Path=/; HttpOnly; SameSite=Lax"))
    start_response("200 OK", headers)
    return [PAGE]


log_connections()
app = WebSocketMiddleware(page, [path("/ws/chat", ChatSocket, name="chat"), path("/ws/chat/<room>", ChatSocket)])
