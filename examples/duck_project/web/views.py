"""The example project's views: two HTTP views of Duck's, the WebSocket guide's three views, and one more.

The WebSocket views are the guide's (``duck-websockets-guide``) as written
for Duck, with one line changed: ``WebSocketView`` and ``OpCode`` are
imported from ``duck_ws_sync`` instead of ``duck.contrib.websockets``.
``RequestInfo`` shows a client what its upgrade request looks like to a
view: Duck's ``HttpRequest``.
"""

import asyncio

from duck.http.response import HttpResponse, JsonResponse
from duck.utils.asyncio import create_task  # Better than default asyncio.create_task

from duck_ws_sync import OpCode, Reject, WebSocketView

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Duck chat</title>
<h1>Duck chat</h1>
<ul id="messages"></ul>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<script>
const socket = new WebSocket(`ws://${location.host}/ws/chat`);
const list = document.getElementById("messages");
socket.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;
  list.append(item);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const text = document.getElementById("text");
  socket.send(text.value);
  text.value = "";
};
</script>
</html>
"""


def home(request):
    return HttpResponse(PAGE, content_type="text/html; charset=utf-8")


def ping(request):
    return JsonResponse({"pong": True})


def hello(request):
    # Kept in the visitor's session (Duck's session middleware sets the cookie).
    request.SESSION["name"] = request.GET.get("name", "guest")
    return JsonResponse({"hello": request.SESSION["name"]})


class RequestInfo(WebSocketView):
    """Tells the client what its upgrade request looked like from here (Duck's request), then closes."""

    async def on_open(self):
        request = self.request
        await self.send_json(
            {
                "request_class": f"{type(request).__module__}.{type(request).__qualname__}",
                "path": request.path,
                "query": {name: request.GET.get(name) for name in request.GET},
                "user_agent": request.get_header("user-agent"),
                "meta": {name: request.META.get(name) for name in ("QUERY_STRING", "REMOTE_ADDR", "HTTP_USER-AGENT")},
                "cookies": dict(request.COOKIES),
                "kwargs": self.kwargs,
                # The session Duck's session middleware found from the cookie.
                "session_name": request.SESSION.get("name"),
            }
        )
        await self.send_close()


class MembersOnly(WebSocketView):
    """Only for visitors whose Duck session has a name (``/api/hello?name=...`` sets it): checked before the 101."""

    async def authorize(self):
        name = self.request.SESSION.get("name")
        if not name:
            raise Reject(401, "Say hello first: /api/hello?name=...")
        self.name = name

    async def on_open(self):
        await self.send_text(f"hello again, {self.name}")


class EchoSocket(WebSocketView):
    """A view as written for Duck, with Duck's ``on_receive`` signature and class attributes."""

    RECEIVE_TIMEOUT = 60
    MAX_FRAME_SIZE = 64 * 1024

    async def on_receive(self, message: bytes, opcode: int, **kwargs):
        await self.send(message, opcode)


# 1. The guide's quick example.


class MyWebSocket(WebSocketView):
    async def on_open(self):
        print("WebSocket connection established")

    async def on_receive(self, data: bytes, opcode: int):
        if opcode == OpCode.TEXT:
            message = "You sent " + data.decode("utf-8")
            await self.send_text(message)
        else:
            # Handle binary frames here
            pass


# 2. The guide's chat.

connected_clients = set()


class ChatSocket(WebSocketView):
    async def on_open(self):
        connected_clients.add(self)
        await self.send_text("👋 Welcome to the chat!")

    async def on_receive(self, data: bytes, opcode: int):
        if opcode == OpCode.TEXT:
            message = data.decode("utf-8")
            # Broadcast to all connected clients
            for client in connected_clients:
                if client != self:
                    await client.send_text(f"User: {message}")

    async def on_close(self):
        connected_clients.remove(self)


# 3. The guide's live notifications.


class NotificationSocket(WebSocketView):
    async def on_open(self):
        # Push notifications every 5 seconds
        create_task(self.push_notifications())

    async def push_notifications(self):
        count = 0
        while True:
            await asyncio.sleep(5)
            count += 1
            await self.send_text(f"🔔 Notification #{count}")
