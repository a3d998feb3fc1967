"""Duck's "Live Notifications": the server pushes "🔔 Notification #n" every 5 seconds.

The view is Duck's guide code as it stands; only the imports differ. The
task started in ``on_open`` belongs to the connection: it is cancelled when
the connection ends. Serve it with either of:

gunicorn -k gevent -b 127.0.0.1:8000 examples.guide_notifications:app
python3 -m examples.guide_notifications   # gevent.pywsgi on 127.0.0.1:8000

and connect to ws://127.0.0.1:8000/ws/notifications.
"""

import asyncio

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from duck_ws_sync.utils.asyncio import create_task  # Better than default asyncio.create_task
from examples.logs import log_connections


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


urlpatterns = [path("/ws/notifications", NotificationSocket, name="notifications")]

log_connections()
app = WebSocketMiddleware(None, urlpatterns)


if __name__ == "__main__":
    from gevent.pywsgi import WSGIServer

    WSGIServer(("127.0.0.1", 8000), app).serve_forever()
