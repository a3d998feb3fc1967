"""Users and presence (view.user_id, view.join(group, info), duck_ws_sync.send_to_user and presence).

- ``/ws/room/<room>?user=<id>&name=<name>``: ``authorize`` sets ``user_id``
  from the query (none without ``user``; ``user=int:7`` sets the int 7);
  ``on_open`` joins ``room`` with the info ``{"name": name}`` and says
  ``joined``. Messages: ``pid`` (the worker's pid), ``leave`` (answers
  ``left``), ``join:<group>`` (answers ``joined <group>``), ``user:<id>``
  (sets ``user_id``, ``user:`` alone clears it; answers ``identified``),
  ``rename:<name>`` (joins the room again with that name; ``renamed``),
  ``to:<id>:<text>`` (``send_to_user`` from the hook, this tab excluded;
  ``sent``), ``late:<group>`` (``on_close`` will join that group; ``later``).
- ``/ws/plain/<room>?user=<id>``: the same identity and join, with plain
  ``def`` hooks.
- ``/ws/early/<room>?user=<id>``: joins the room (info ``"early"``) and
  sets ``user_id`` in ``authorize``, then refuses with 403 if the query
  has ``reject``; says ``open`` once open.
- ``GET /presence/<room>``: the room's presence as JSON: ``count``,
  ``users`` (sorted by their repr), ``members`` (``[id, user_id, info]``).
- ``POST /user/<id>``: the body to every connection of user ``<id>``
  (binary with the query ``binary``, the int id with ``int``).
- ``POST /broadcast/<room>``: the body to every member of the room.
- ``POST /flood-user/<id>?count=N&size=S&pause=P``: N binary messages of S
  bytes, numbered, to user ``<id>`` from the request, P seconds apart.
- ``GET /closed``: the close codes that ``Room.on_close`` saw, as JSON.

Every plain response says which worker made it (``X-Worker-Pid``); a
broker that cannot serve (``BrokerUnavailable``) is a 503. ``?hold``
holds the upgrade request a moment in its WSGI call, so that the next
connections go to the other workers (``held.py``).
"""

import json
import os
import re
import time
import urllib.parse

from duck_ws_sync import (
    BrokerUnavailable,
    OpCode,
    Reject,
    WebSocketMiddleware,
    WebSocketView,
    broadcast,
    presence,
    send_to_user,
)
from duck_ws_sync.urls import path
from tests.integration.apps.held import held

closed = []


def user_of(text):
    """``int:7`` is the int 7; any other text is itself."""
    return int(text[4:]) if text.startswith("int:") else text


class Room(WebSocketView):
    PING_INTERVAL = None
    SEND_TIMEOUT = 3
    CLOSE_TIMEOUT = 2

    async def authorize(self):
        user = self.request.GET.get("user")
        if user:
            self.user_id = user_of(user)

    async def on_open(self):
        self.join(self.kwargs["room"], {"name": self.request.GET.get("name", "")})
        await self.send_text("joined")

    async def on_receive(self, data, opcode):
        text = data.decode("utf-8") if opcode == OpCode.TEXT else ""
        await self.send_text(self.answer(text))

    async def on_close(self):
        closed.append(self.close_code)
        late = getattr(self, "late", None)
        if late:  # the connection has ended: this join must be a no-op
            self.join(late, "too late")
            self.user_id = "too-late"

    def answer(self, text):
        room = self.kwargs["room"]
        if text == "pid":
            return str(os.getpid())
        if text == "leave":
            self.leave(room)
            return "left"
        if text.startswith("join:"):
            self.join(text[5:])
            return "joined " + text[5:]
        if text.startswith("user:"):
            self.user_id = user_of(text[5:]) if text[5:] else None
            return "identified"
        if text.startswith("rename:"):
            self.join(room, {"name": text[7:]})
            return "renamed"
        if text.startswith("late:"):
            self.late = text[5:]
            return "later"
        if text.startswith("to:"):
            user, _, message = text[3:].partition(":")
            try:
                send_to_user(user_of(user), message, exclude=self)
            except BrokerUnavailable as exc:
                return f"unavailable: {exc}"
            return "sent"
        return "?"


class PlainRoom(WebSocketView):
    PING_INTERVAL = None

    def authorize(self):
        user = self.request.GET.get("user")
        if user:
            self.user_id = user_of(user)

    def on_open(self):
        self.join(self.kwargs["room"], {"name": "plain"})
        self.send_text("joined")

    def on_receive(self, data, opcode):
        self.send_text(Room.answer(self, data.decode("utf-8")))


class Early(WebSocketView):
    PING_INTERVAL = None

    def authorize(self):
        self.join(self.kwargs["room"], "early")
        self.user_id = self.request.GET.get("user")
        if "reject" in self.request.GET:
            raise Reject(403, "Refused after joining")

    def on_open(self):
        self.send_text("open")

    def on_receive(self, data, opcode):
        pass


def plain(environ, start_response):
    try:
        return answer(environ, start_response)
    except BrokerUnavailable as exc:
        start_response("503 Service Unavailable", headers())
        return [f"unavailable: {exc}".encode()]


def headers(kind="text/plain"):
    return [("Content-Type", kind), ("X-Worker-Pid", str(os.getpid()))]


def answer(environ, start_response):
    route = urllib.parse.unquote(environ["PATH_INFO"])
    query = environ.get("QUERY_STRING", "")
    if match := re.fullmatch(r"/presence/(.+)", route):
        found = presence(match.group(1))
        body = {
            "count": found.count,
            "users": sorted(found.users, key=repr),
            "members": [[member.connection_id, member.user_id, member.info] for member in found.members],
        }
        start_response("200 OK", headers("application/json"))
        return [json.dumps(body).encode()]
    if match := re.fullmatch(r"/user/(.+)", route):
        message = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        user = int(match.group(1)) if query == "int" else match.group(1)
        send_to_user(user, message if query == "binary" else message.decode("utf-8"))
        start_response("200 OK", headers())
        return [b"sent"]
    if route == "/closed":
        start_response("200 OK", headers("application/json"))
        return [json.dumps(closed).encode()]
    if match := re.fullmatch(r"/flood-user/(.+)", route):
        sizes = dict(part.split("=") for part in query.split("&"))
        for number in range(int(sizes["count"])):
            send_to_user(match.group(1), f"{number:08d}".encode() + b"x" * (int(sizes["size"]) - 8))
            time.sleep(float(sizes.get("pause", 0)))
        start_response("200 OK", headers())
        return [b"sent"]
    if match := re.fullmatch(r"/broadcast/(.+)", route):
        broadcast(match.group(1), environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode("utf-8"))
        start_response("200 OK", headers())
        return [b"sent"]
    start_response("404 Not Found", headers())
    return [b"not found"]


app = held(
    WebSocketMiddleware(
        plain, [path("/ws/room/<room>", Room), path("/ws/plain/<room>", PlainRoom), path("/ws/early/<room>", Early)]
    )
)
