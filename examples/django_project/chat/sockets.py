"""The chat's WebSocket view, with plain ``def`` hooks: the ORM is used as in any Django view.

Every connection joins one room. On open it gets the last ``HISTORY``
messages from the database, oldest first; each message received is stored,
then broadcast to the whole room, its sender included, so that everyone
sees the same lines in the same order.

Messages from the server are JSON: ``{"type": "chat", "id", "name",
"text", "sent"}`` for a line (``Message.as_json``), ``{"type": "system",
"text"}`` for welcome, join and leave notices.
"""

import json

from duck_ws_sync import BrokerUnavailable, OpCode, Reject, State, WebSocketView, broadcast

from .models import Message

ROOM = "chat"
HISTORY = 20


class ChatSocket(WebSocketView):
    MAX_MESSAGE_SIZE = 16 * 1024  # a chat line, not a file upload

    def authorize(self):
        # Reading request.user loads the session and the user from the database.
        if not self.request.user.is_authenticated:
            raise Reject(401, "Log in first")
        self.user = self.request.user
        self.name = self.user.get_username()

    def on_open(self):
        # Join, then read: a line stored after the read reaches this
        # connection by broadcast. One stored just before may come both ways
        # (on threads); the page skips an id it has shown.
        self.join(ROOM)
        history = list(Message.objects.select_related("author").order_by("-id")[:HISTORY])
        for message in reversed(history):
            self.send_json(message.as_json())
        self.send_json({"type": "system", "text": f"Welcome, {self.name}!"})
        self.tell_room({"type": "system", "text": f"{self.name} joined"}, exclude=self)

    def on_receive(self, data, opcode):
        if opcode != OpCode.TEXT:
            return
        text = data.decode("utf-8").strip()
        if text:
            message = Message.objects.create(author=self.user, text=text)
            self.tell_room(message.as_json())

    def on_close(self):
        self.tell_room({"type": "system", "text": f"{self.name} left"}, exclude=self)

    def tell_room(self, message, exclude=None):
        """Send ``message`` to the room's members, in every worker."""
        try:
            broadcast(ROOM, json.dumps(message), exclude=exclude)
        except BrokerUnavailable:  # Redis is down: say so rather than lose the line silently
            if self.state is State.OPEN:
                self.send_json({"type": "system", "text": "Not delivered live: the chat is unavailable."})
