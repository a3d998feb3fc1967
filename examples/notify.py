"""A legacy WSGI app gains realtime: a plain HTTP view notifies the WebSocket clients.

``POST /orders`` is the app's existing form handler; it now also tells
every open dashboard, in whichever worker it is, with
``duck_ws_sync.broadcast``. The dashboards connect to ``/ws/dashboard``,
saying whose they are with ``?user=<name>``: an order placed ``for`` a user
is also sent to that user's dashboards alone (all of them, in every
worker) with ``duck_ws_sync.send_to_user``.

gunicorn -k gevent -b 127.0.0.1:8000 examples.notify:app
DUCK_WS_SYNC_BROKER=redis://127.0.0.1:6379/0 gunicorn -k gevent -w 4 -b 127.0.0.1:8000 examples.notify:app

curl -d "item=duck" http://127.0.0.1:8000/orders
curl -d "item=pond" -d "for=ann" http://127.0.0.1:8000/orders   # ann's dashboards also get it as "your_order"
"""

import contextlib
import json
from urllib.parse import parse_qs

from duck_ws_sync import BrokerUnavailable, OpCode, WebSocketMiddleware, WebSocketView, broadcast, send_to_user
from duck_ws_sync.urls import path
from examples.logs import log_connections

orders = []


def legacy_app(environ, start_response):
    """The app as it was, plus the lines in the handler that records an order."""
    if environ["PATH_INFO"] == "/orders" and environ["REQUEST_METHOD"] == "POST":
        form = parse_qs(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode("utf-8"))
        order = {"number": len(orders) + 1, "item": form.get("item", ["?"])[0]}
        orders.append(order)
        # The new lines. If Redis is down the order is taken all the same:
        # dashboards catch up when they next load the page.
        with contextlib.suppress(BrokerUnavailable):
            broadcast("dashboards", json.dumps({"new_order": order}))
        customer = form.get("for", [""])[0]
        if customer:  # and the dashboards of the user it is for, wherever they are served
            with contextlib.suppress(BrokerUnavailable):
                send_to_user(customer, json.dumps({"your_order": order}))
        start_response("201 Created", [("Content-Type", "application/json")])
        return [json.dumps(order).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not Found\n"]


class Dashboard(WebSocketView):
    """A dashboard: it receives every new order as ``{"new_order": {...}}``.

    A dashboard opened with ``?user=<name>`` is that user's: it also
    receives the orders placed for them as ``{"your_order": {...}}``. The
    dashboard only listens. A text ``ping`` from it is answered with
    ``pong`` (a liveness check a page can make); any other message is
    ignored, and the connection stays open.
    """

    def authorize(self):
        # Only an example: anyone may say they are anyone. A real app takes
        # the user from its session (its login cookie), as examples/flask_auth.py does.
        self.user_id = self.request.GET.get("user") or None

    async def on_open(self):
        self.join("dashboards")

    async def on_receive(self, data: bytes, opcode: int):
        if opcode == OpCode.TEXT and data == b"ping":
            await self.send_text("pong")


log_connections()
app = WebSocketMiddleware(legacy_app, [path("/ws/dashboard", Dashboard)])
