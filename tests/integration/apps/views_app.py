"""The WSGI app behind ``tests/integration/test_views.py``: test views and an observer.

Served as ``tests.integration.apps.views_app:app`` by every server of
``conftest.SERVER_KINDS``: the threads it starts are greenlets where gevent
has patched ``threading`` (gunicorn -k gevent, pywsgi) and OS threads on
gthread and werkzeug. Views report what happens on the server side through
the wire: each records events in ``EVENTS`` under the ``id`` of its query
string, and the plain HTTP routes of the wrapped WSGI app read them back:

- ``GET /events?id=X`` returns the events of ``X`` as JSON; with
  ``&wait=NAME&count=N&timeout=S`` it first waits (up to ``S`` seconds) until
  ``N`` events called ``NAME`` were recorded.
- ``GET /release?id=X`` releases a view that blocks on ``RELEASE[X]``.
- ``/plain/...`` echoes the request (method, path, query, body, a header).
- ``/bare/...`` is a ``WebSocketMiddleware(None, ...)`` mounted inside the
  wrapped app: 404 for everything but its own WebSocket route.

Every WSGI call on a ``/ws/`` path records ``served`` when it returns, so a
test can wait until a connection is completely over before counting events.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs

from duck_ws_sync import OpCode, State, WebSocketMiddleware, WebSocketView
from duck_ws_sync.engine import lifecycle
from duck_ws_sync.urls import path, re_path
from duck_ws_sync.utils.asyncio import create_task

# Observer: events by client-chosen id.

EVENTS: dict[str, list[dict[str, Any]]] = {}
_WAITERS: list[threading.Event] = []
RELEASE: dict[str, threading.Event] = {}


def record(key: str | None, event: str, /, **data: Any) -> None:
    """Record an event for ``key`` and wake the requests waiting for events."""
    if not key:
        return
    EVENTS.setdefault(key, []).append({"event": event, **data})
    for waiter in list(_WAITERS):
        waiter.set()


def _count(key: str, name: str) -> int:
    return sum(1 for event in EVENTS.get(key, []) if event["event"] == name)


def wait_for_events(key: str, name: str, count: int, timeout: float) -> None:
    """Wait until ``count`` events ``name`` were recorded for ``key``, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while _count(key, name) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        waiter = threading.Event()
        _WAITERS.append(waiter)
        try:
            waiter.wait(remaining)
        finally:
            _WAITERS.remove(waiter)


def release_event(key: str) -> threading.Event:
    return RELEASE.setdefault(key, threading.Event())


def in_thread(function: Callable[..., Any], *args: Any) -> threading.Thread:
    """Start ``function(*args)`` in a thread of its own; its exception is kept on the thread as ``error``."""

    def run() -> None:
        try:
            function(*args)
        except BaseException as exc:
            thread.error = exc  # type: ignore[attr-defined]
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.error = None  # type: ignore[attr-defined]
    thread.start()
    return thread


# Views.


class Observed(WebSocketView):
    """Records on_open and on_close (with what it saw) under the ``id`` query parameter."""

    PING_INTERVAL = None
    CLOSE_TIMEOUT = 1

    @property
    def key(self) -> str | None:
        return self.request.query_params.get("id")

    async def on_open(self) -> None:
        record(self.key, "on_open", state=int(self.state))

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)

    async def on_close(self, frame=None) -> None:
        record(
            self.key,
            "on_close",
            code=self.close_code,
            reason=self.close_reason,
            frame=None if frame is None else {"opcode": int(frame.opcode), "payload": frame.payload.hex()},
            state=int(self.state),
        )
        if self.request.query_params.get("print"):
            print(f"ON_CLOSE id={self.key} code={self.close_code}", flush=True)


class Echo(Observed):
    pass


class KwargsView(WebSocketView):
    """Sends its URL keyword arguments and their types."""

    PING_INTERVAL = None

    async def on_open(self) -> None:
        await self.send_json({"kwargs": self.kwargs, "types": {k: type(v).__name__ for k, v in self.kwargs.items()}})

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class RequestView(WebSocketView):
    """Sends what it sees of the upgrade request, and its state, from on_open and on_receive."""

    PING_INTERVAL = None

    async def on_open(self) -> None:
        request = self.request
        environ = request.environ
        await self.send_json(
            {
                "path": request.path,
                "method": request.method,
                "GET": request.GET,
                "query_params": request.query_params,
                "GET_get": [
                    request.GET.get("a"),
                    request.GET["a"] if "a" in request.GET else None,  # noqa: SIM401 (indexing is what is checked)
                    request.GET.getlist("a"),
                    request.GET.get("no"),
                ],
                "fullpath": request.fullpath,
                "header_lower": request.get_header("x-custom-thing"),
                "header_upper": request.get_header("X-CUSTOM-THING"),
                "header_mapping": request.headers.get("X-Custom-Thing"),
                "header_missing": request.get_header("X-Missing"),
                "header_default": request.get_header("X-Missing", "fallback"),
                "host": request.get_header("HOST"),
                "cookies": request.cookies,
                "client_address": list(request.client_address),
                "environ": {
                    "REQUEST_METHOD": environ.get("REQUEST_METHOD"),
                    "PATH_INFO": environ.get("PATH_INFO"),
                    "QUERY_STRING": environ.get("QUERY_STRING"),
                    "SERVER_SOFTWARE": environ.get("SERVER_SOFTWARE"),
                    "HTTP_X_CUSTOM_THING": environ.get("HTTP_X_CUSTOM_THING"),
                    "has_wsgi_input": "wsgi.input" in environ,
                },
                "kwargs": self.kwargs,
                "state_is_open": self.state is State.OPEN,
                "state": int(self.state),
            }
        )

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send_json(
            {
                "state_is_open": self.state is State.OPEN,
                "state": int(self.state),
                "data_type": type(data).__name__,
                "data": data.decode("utf-8", "replace"),
                "opcode": int(opcode),
            }
        )


class Lifecycle(Observed):
    """Commands: ``close:CODE:REASON`` (server close), ``slow:TEXT`` (a reply after a short await)."""

    async def on_receive(self, data: bytes, opcode: int) -> None:
        text = data.decode()
        record(self.key, "on_receive", data=text)
        if text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await self.send_close(int(code), reason)
        elif text.startswith("slow:"):
            await asyncio.sleep(0.05)
            await self.send_text("reply:" + text[5:])
        elif text.startswith("sleep:"):
            await asyncio.sleep(float(text[6:]))
            await self.send_text("slept")
        else:
            await self.send(data, opcode)


class LifecycleNoFrame(Lifecycle):
    """Duck's documented ``on_close(self)`` signature (Duck defect 13)."""

    async def on_close(self) -> None:  # type: ignore[override]
        record(self.key, "on_close", code=self.close_code, reason=self.close_reason, signature="no-frame")
        if self.request.query_params.get("print"):
            print(f"ON_CLOSE id={self.key} code={self.close_code}", flush=True)


class ReceiveTimeout(Observed):
    RECEIVE_TIMEOUT = 0.5


class Order(WebSocketView):
    """Records messages and the most on_receive calls ever running at once; ``report`` sends them."""

    PING_INTERVAL = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active = 0
        self.max_active = 0
        self.seen: list[str] = []

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"report":
            await self.send_json({"max_active": self.max_active, "seen": self.seen})
            return
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            self.seen.append(data.decode())
        finally:
            self.active -= 1


class Backpressure(WebSocketView):
    """``block`` waits (blocking the hook's thread or greenlet) until ``/release``; binary messages are counted."""

    PING_INTERVAL = None
    RECEIVE_QUEUE_SIZE = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indices: list[int] = []
        self.sizes: set[int] = set()
        self.total = 0

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if opcode == OpCode.BINARY:
            self.indices.append(int.from_bytes(data[:4], "big"))
            self.sizes.add(len(data))
            self.total += len(data)
        elif data == b"block":
            key = self.request.query_params["id"]
            record(key, "blocked")
            release_event(key).wait(30)
            record(key, "released")
        elif data == b"report":
            await self.send_json({"indices": self.indices, "sizes": sorted(self.sizes), "total": self.total})


class Chat(WebSocketView):
    """Broadcasts each message to the other members of the room, from the sender's greenlet or thread."""

    PING_INTERVAL = None
    ROOMS: ClassVar[dict[str, list[Chat]]] = {}

    async def on_open(self) -> None:
        members = self.ROOMS.setdefault(self.kwargs["room"], [])
        members.append(self)
        await self.send_text(f"joined:{len(members)}")

    async def on_receive(self, data: bytes, opcode: int) -> None:
        name = self.request.query_params["name"]
        others = [member for member in self.ROOMS[self.kwargs["room"]] if member is not self]
        results = [await member.send_text(f"{name}:{data.decode()}") for member in others]
        await self.send_text(f"sent:{sum(results)}")

    async def on_close(self, frame=None) -> None:
        self.ROOMS[self.kwargs["room"]].remove(self)


class Ticker(WebSocketView):
    """A background task started in on_open sends ticks."""

    PING_INTERVAL = None

    async def on_open(self) -> None:
        self.task = create_task(self.tick())

    async def tick(self) -> None:
        key = self.request.query_params.get("id")
        number = 0
        try:
            while True:
                await self.send_text(f"tick {number}")
                number += 1
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            record(key, "tick_cancelled", ticks=number)
            raise

    async def on_receive(self, data: bytes, opcode: int) -> None:
        pass


class GreenletSend(WebSocketView):
    """Each message is answered from a plain thread (a greenlet on gevent), with a send that is not awaited."""

    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"gather":  # a SendResult is also a coroutine: gather it, or make it a task
            gathered = await asyncio.gather(self.send_text("gathered 1"), self.send_text("gathered 2"))
            task = await asyncio.create_task(self.send_text("from a task"))
            await self.send_json({"gathered": gathered, "task": task})
            return
        in_thread(self.answer, data.decode())

    def answer(self, text: str) -> None:
        result = self.send_text("from greenlet: " + text)
        self.send_json({"type": type(result).__name__, "truthy": bool(result), "sent": result.sent})


class Flood(WebSocketView):
    """``go:G:T:K:SIZE``: G threads (greenlets on gevent) and T asyncio tasks each send K messages, then ``done``."""

    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        _, greenlets, tasks, count, size = data.decode().split(":")
        count, size = int(count), int(size)

        def payload(sender: int, number: int) -> bytes:
            return f"{sender}:{number}:".encode() + bytes([65 + sender]) * size

        def from_greenlet(sender: int) -> None:
            for number in range(count):
                assert self.send_binary(payload(sender, number))
                time.sleep(0)

        async def from_task(sender: int) -> None:
            for number in range(count):
                assert await self.send_binary(payload(sender, number))
                await asyncio.sleep(0)

        spawned = [in_thread(from_greenlet, sender) for sender in range(int(greenlets))]
        await asyncio.gather(*(from_task(sender) for sender in range(int(greenlets), int(greenlets) + int(tasks))))
        for thread in spawned:  # blocking in a hook holds up only this connection
            thread.join(30)
            assert not thread.is_alive() and thread.error is None, thread.error
        await self.send_text("done")


class SendAfterClose(Observed):
    """``close``: send_close, then try to send more; on_close tries too. Results are recorded."""

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"close":
            closed = await self.send_close(1000, "bye")
            after = await self.send_text("after close")
            ping = await self.send_ping(b"p")
            record(self.key, "after_send_close", closed=closed, text=after, ping=ping, state=int(self.state))

    async def on_close(self, frame=None) -> None:
        text = await self.send_text("in on_close")
        binary = await self.send_binary(b"in on_close")
        results: list[Any] = []
        in_thread(lambda: results.append(self.send_text("from greenlet"))).join(5)
        record(self.key, "in_on_close", text=text, binary=binary, greenlet=bool(results[0]))
        await super().on_close(frame)


class Heartbeat(WebSocketView):
    PING_INTERVAL = 0.1
    PONG_TIMEOUT = 0.2
    MAX_BACKOFF = 0.4
    RECEIVE_TIMEOUT = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class Pinger(WebSocketView):
    """``ping()`` on request: a text ``N payload...`` sends N pings, then reports their round trips."""

    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        count, *payloads = data.split()
        waiters = [asyncio.ensure_future(self.ping(payload)) for payload in payloads[: int(count)]]
        try:
            rtts = await asyncio.gather(*waiters)
        except Exception as exc:  # reported to the test
            await self.send_text(f"failed: {type(exc).__name__}: {exc}")
        else:
            await self.send_json([rtt >= 0 for rtt in rtts])


class PingUntilClosed(Observed):
    """Pings once the connection opened and records how ``ping()`` ended."""

    async def on_open(self) -> None:
        await super().on_open()
        create_task(self._ping_once())

    async def _ping_once(self) -> None:
        try:
            await self.ping(b"never answered")
        except ConnectionError as exc:
            record(self.key, "ping_failed", error=str(exc))


class Failing(Observed):
    """``?where=open`` raises in on_open; otherwise each message raises in on_receive."""

    async def on_open(self) -> None:
        await super().on_open()
        if self.request.query_params.get("where") == "open":
            raise RuntimeError(f"boom in on_open {self.key}")

    async def on_receive(self, data: bytes, opcode: int) -> None:
        raise ValueError(f"boom in on_receive {data.decode()}")


class FailingDebug(Failing):
    DEBUG = True


class Tasks(Observed):
    """Starts a Duck create_task from on_open and an asyncio.create_task from on_receive; both wait forever."""

    async def on_open(self) -> None:
        await super().on_open()
        self.duck_task = create_task(self.wait_forever("duck"))

    async def on_receive(self, data: bytes, opcode: int) -> None:
        self.asyncio_task = asyncio.create_task(self.wait_forever("asyncio"))

    async def wait_forever(self, name: str) -> None:
        try:
            record(self.key, "task_started", name=name)
            await self.send_text(f"started:{name}")
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            record(self.key, "task_cancelled", name=name)
            raise
        finally:
            record(self.key, "task_finally", name=name)


class SmallFrames(Observed):
    """MAX_FRAME_SIZE 1000, MAX_MESSAGE_SIZE 3000. ``send:N:text|binary`` sends N bytes; else replies with the size."""

    MAX_FRAME_SIZE = 1000
    MAX_MESSAGE_SIZE = 3000

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data.startswith(b"send:"):
            _, size, kind = data.decode().split(":")
            if kind == "text":
                await self.send_text(("é" * int(size))[: int(size) // 2])  # 2 bytes of UTF-8 each
            else:
                await self.send_binary(bytes(index % 251 for index in range(int(size))))
        else:
            await self.send_text(f"size:{len(data)}")


# The wrapped WSGI app.


def _json(start_response: Any, status: str, data: Any, headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]


def fallback(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Everything that is not a WebSocket route of ``app``."""
    path_info = environ.get("PATH_INFO", "")
    query = {name: values[-1] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path_info == "/events":
        if "wait" in query:
            wait_for_events(query["id"], query["wait"], int(query.get("count", "1")), float(query.get("timeout", "5")))
        return _json(start_response, "200 OK", EVENTS.get(query["id"], []))
    if path_info == "/release":
        release_event(query["id"]).set()
        return _json(start_response, "200 OK", {"released": query["id"]})
    if path_info.startswith("/bare/"):
        return bare(environ, start_response)
    headers = [("X-Fallback", "yes"), ("Set-Cookie", "fallback=1; Path=/")]
    if path_info.startswith("/plain/"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        data = {
            "method": environ["REQUEST_METHOD"],
            "path": path_info,
            "query": environ.get("QUERY_STRING", ""),
            "body": body.decode("latin-1"),
            "x_test": environ.get("HTTP_X_TEST"),
            "upgrade": environ.get("HTTP_UPGRADE"),
        }
        return _json(start_response, "200 OK", data, headers)
    return _json(start_response, "404 Not Found", {"fallback": path_info}, headers)


bare = WebSocketMiddleware(None, [path("/bare/ws", Echo)])

urlpatterns = [
    path("/ws/echo", Echo, name="echo"),
    path("/ws/items/<name>/<int:number>", KwargsView),
    path("/ws/files/<slug:kind>/<path:rest>", KwargsView),
    re_path(r"/ws/re/(?P<year>[0-9]{4})/(?P<code>[a-z]+)", KwargsView),
    path("/ws/only-get", Echo, methods=["GET"]),
    path("/ws/only-post", Echo, methods=["POST"]),
    path("/ws/request/<int:number>", RequestView),
    path("/ws/lifecycle", Lifecycle),
    path("/ws/lifecycle-no-frame", LifecycleNoFrame),
    path("/ws/receive-timeout", ReceiveTimeout),
    path("/ws/order", Order),
    path("/ws/backpressure", Backpressure),
    path("/ws/chat/<room>", Chat),
    path("/ws/ticker", Ticker),
    path("/ws/greenlet-send", GreenletSend),
    path("/ws/flood", Flood),
    path("/ws/send-after-close", SendAfterClose),
    path("/ws/heartbeat", Heartbeat),
    path("/ws/pinger", Pinger),
    path("/ws/ping-until-closed", PingUntilClosed),
    path("/ws/failing", Failing),
    path("/ws/failing-debug", FailingDebug),
    path("/ws/tasks", Tasks),
    path("/ws/small-frames", SmallFrames),
]

_websockets = WebSocketMiddleware(fallback, urlpatterns)


def _key(environ: dict[str, Any]) -> str | None:
    return parse_qs(environ.get("QUERY_STRING", "")).get("id", [None])[-1]


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """The middleware, recording ``returned`` when the WSGI call of a WebSocket path has ended."""
    try:
        return _websockets(environ, start_response)
    finally:
        if environ.get("PATH_INFO", "").startswith("/ws/"):
            record(_key(environ), "returned")


_finish = lifecycle.finish


def _finish_and_record(session: Any, *args: Any) -> None:
    """``lifecycle.finish`` (every host's last step), then ``served``: the session is over, its on_close included."""
    try:
        _finish(session, *args)
    finally:
        record(_key(session.endpoint.request.environ), "served")


lifecycle.finish = _finish_and_record
