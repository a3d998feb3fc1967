"""The site's views: a count over HTTP, and the same chat written with def and with async def hooks."""

from django.http import JsonResponse

from chat.models import Message
from duck_ws_sync import Reject, WebSocketView


def count(request, kind):
    return JsonResponse({"count": Message.objects.filter(kind=kind).count(), "user": request.user.username})


class SyncChat(WebSocketView):
    """Plain def hooks: the ORM as in any Django view."""

    PING_INTERVAL = None

    def authorize(self):
        if not self.request.user.is_authenticated:
            raise Reject(401, "Log in first")

    def on_open(self):
        self.send_text(f"hello {self.request.user.username}")

    def on_receive(self, data, opcode):
        Message.objects.create(kind="sync", user=self.request.user.username, text=data.decode())
        self.send_text("stored")


class AsyncChat(WebSocketView):
    """async def hooks: Django's async ORM; request.user read as in a def hook."""

    PING_INTERVAL = None

    async def authorize(self):
        if not self.request.user.is_authenticated:
            raise Reject(401, "Log in first")

    async def on_open(self):
        await self.send_text(f"hello {self.request.user.username}")

    async def on_receive(self, data, opcode):
        await Message.objects.acreate(kind="async", user=self.request.user.username, text=data.decode())
        await self.send_text("stored")


class Idle(WebSocketView):
    """Reads the database on open, then stays open without a query."""

    PING_INTERVAL = None

    def on_open(self):
        self.send_text(str(Message.objects.count()))

    def on_receive(self, data, opcode):
        self.send_text(str(Message.objects.count()))
