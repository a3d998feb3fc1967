"""Authorizing WebSockets in a Flask app: its session cookie, or a bearer token, checked before the 101.

- ``POST /login`` with a form field ``user`` logs in: Flask's session cookie.
- ``GET /token`` gives the logged-in user a signed token, valid one hour,
  for clients that cannot send the cookie (another origin, a mobile app).
- ``/ws/chat``: a browser on this site sends the session cookie; other
  clients send the token as ``?token=...`` or as a subprotocol,
  ``new WebSocket(url, ["bearer", token])``. Without either: 401; with a
  token that is forged or expired: 403. The view then knows ``self.user``.

Serve it with:

gunicorn -k gevent -b 127.0.0.1:8000 examples.flask_auth:app

Set ``FLASK_SECRET_KEY`` in production: the default key here is for trying it out.
"""

from __future__ import annotations

import os

import flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from duck_ws_sync import Reject, WebSocketMiddleware, WebSocketView, broadcast
from duck_ws_sync.urls import path
from examples.logs import log_connections

flask_app = flask.Flask(__name__)
flask_app.secret_key = os.environ.get("FLASK_SECRET_KEY", "not a secret: set FLASK_SECRET_KEY")
tokens = URLSafeTimedSerializer(flask_app.secret_key, salt="websocket")
TOKEN_LIFETIME = 3600


@flask_app.post("/login")
def login() -> flask.Response:
    flask.session["user"] = flask.request.form["user"]
    return flask.jsonify(user=flask.session["user"])


@flask_app.get("/token")
def token() -> tuple[flask.Response, int] | flask.Response:
    if "user" not in flask.session:
        return flask.jsonify(error="log in first"), 401
    return flask.jsonify(token=tokens.dumps(flask.session["user"]))


class Chat(WebSocketView):
    SUBPROTOCOLS = ("bearer",)

    async def authorize(self) -> None:
        token = self.request.query_params.get("token") or self.bearer_token()
        if token is not None:
            try:
                self.user = tokens.loads(token, max_age=TOKEN_LIFETIME)
            except SignatureExpired:
                raise Reject(403, "Token expired: get a new one from /token") from None
            except BadSignature:
                raise Reject(403, "Invalid token") from None
            return
        # Flask's own session, read from the cookie as any Flask view would.
        with flask_app.request_context(self.request.environ):
            user = flask.session.get("user")
        if user is None:
            raise Reject(401, "Log in first", [("WWW-Authenticate", 'Bearer realm="chat"')])
        self.user = user

    def bearer_token(self) -> str | None:
        """The token offered next to the ``bearer`` subprotocol (``Sec-WebSocket-Protocol: bearer, <token>``)."""
        if self.subprotocol != "bearer":
            return None
        offered = (self.request.get_header("Sec-WebSocket-Protocol") or "").split(",")
        return next((value.strip() for value in offered if value.strip() not in ("", "bearer")), None)

    async def on_open(self) -> None:
        self.join("chat")
        await self.send_text(f"welcome, {self.user}")

    async def on_receive(self, data: bytes, opcode: int) -> None:
        broadcast("chat", f"{self.user}: {data.decode('utf-8', 'replace')}")


log_connections()
app = WebSocketMiddleware(flask_app.wsgi_app, [path("/ws/chat", Chat)])
