"""``WebSocketView``: Duck's WebSocket view API, a face over the connection's ``Session``.

A view instance serves one connection, in that connection's greenlet (or
thread), on an event loop of its own: its ``async def`` hooks use asyncio as
usual, its plain ``def`` hooks run outside the loop (``call_outside``), and
blocking code in either holds up only this connection. Everything
below the hooks and the ``send_*`` methods is the session's
(``engine/session.py``): the view reads its settings from the class
attributes and hands it each call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any, ClassVar, cast

from .engine.groups import group_topic, identify
from .engine.groups import join as join_topic
from .engine.groups import leave as leave_topic
from .engine.inbox import END
from .engine.presence import UserId, check_info, check_user_id
from .engine.registry import close_all, first_close
from .engine.session import Session
from .hooks import HookGuard, accepts_frame, call_guarded, plain_hooks, run_hook
from .protocol import (
    MAGIC_STRING,
    Close,
    Extension,
    Frame,
    OpCode,
    PerMessageDeflate,
    ServerHandshake,
    State,
    accept_key,
)
from .protocol.frames import parse_close, serialize_close
from .request import WebSocketRequest

__all__ = [
    "VIEW_HOOKS",
    "SendResult",
    "ViewHooks",
    "WebSocketView",
    "accept",
    "authorize",
    "close_all",
]

logger = logging.getLogger("duck_ws_sync")

MiB = 1024 * 1024


class SendResult(Coroutine[Any, Any, bool]):
    """What a ``send_*`` method returns: the frame is already written (or refused).

    Await it in async code as with Duck (``await self.send_text(...)``), or
    hand it to ``asyncio.create_task`` or ``gather``: it is a coroutine that
    finishes at once with the result. It is also a plain truth value
    (``if view.send_text(...):``), so code that is not async can send too.
    True means written, False means the connection was closed.
    """

    __slots__ = ("sent",)

    def __init__(self, sent: bool) -> None:
        self.sent = sent

    def __await__(self) -> Generator[Any, None, bool]:
        # A generator that returns at once: ``await`` takes its value
        # without the StopIteration that a ``__next__`` would have to raise.
        yield from ()
        return self.sent

    def __next__(self) -> Any:
        raise StopIteration(self.sent)

    def send(self, value: Any) -> Any:
        raise StopIteration(self.sent)

    def throw(self, typ: Any, value: Any = None, traceback: Any = None) -> Any:
        raise typ if value is None else value

    def close(self) -> None:
        pass

    def __bool__(self) -> bool:
        return self.sent

    def __repr__(self) -> str:
        return f"<SendResult sent={self.sent}>"


# A SendResult holds no state but its answer, so two serve every send.
_SENT, _NOT_SENT = SendResult(True), SendResult(False)


class WebSocketView:
    """A WebSocket endpoint: subclass it and override the ``on_*`` hooks.

    The class attributes tune each connection; override them in a subclass.

    Attributes:
        PING_INTERVAL: Seconds between heartbeat pings (None: no pings). A
            ping is put off to the next point of a grid of a sixteenth of
            this (0.1 s at most), so that those of many connections go out,
            and their Pongs come back, together.
        PONG_TIMEOUT: Seconds to wait for the Pong that answers a ping. A
            miss doubles the interval up to ``MAX_BACKOFF``; three misses in
            a row close the connection with 1001.
        MAX_BACKOFF: The longest interval between pings after misses.
        RECEIVE_TIMEOUT: Close with 1001 after this many seconds without a
            single frame from the client (None: never).
        MAX_FRAME_SIZE: The largest data frame payload accepted (1009 beyond);
            also the size of the fragments our own larger messages are sent
            in. None: frames are bounded by ``MAX_MESSAGE_SIZE`` alone.
        MAX_MESSAGE_SIZE: The largest message accepted, after reassembly and
            decompression (1009 beyond); each continuation frame costs 16
            bytes more (``protocol.connection.FRAME_COST``).
        CLOSE_TIMEOUT: Seconds to wait for the client's side of a closing
            handshake before dropping TCP.
        SEND_TIMEOUT: Seconds a send may wait for a client that does not
            read; then TCP is dropped (a half-written frame cannot be
            followed by anything) and the send returns False (None: wait forever).
        ALLOWED_ORIGINS: Browser origins that may connect: None for the
            same origin as the ``Host`` header only, or a list of origins,
            globs (``https://*.example.com``) or compiled regexes; ``["*"]``
            for any. Clients that send no ``Origin`` (non-browsers) are not
            restricted.
        SUBPROTOCOLS: Subprotocols we speak, most preferred first.
        COMPRESSION: The permessage-deflate settings to offer, or None to
            turn compression off.
        RECEIVE_QUEUE_SIZE: Messages read ahead of ``on_receive``; when the
            queue is full we stop reading and TCP slows the client down.
        MAX_MESSAGE_RATE: Frames a second a client may send, in bursts of
            as many; every frame counts (a message, each fragment of one, a
            Ping, a Pong). A client over it is closed with 1008 and logged
            (None: no limit).
        BROADCAST_BUFFER: Bytes of broadcasts (``duck_ws_sync.broadcast``)
            that may wait for this connection; beyond them it is closed with
            1013, so that a slow client never holds up the others.
        DEBUG: Put an exception's text in the 1011 close reason.
    """

    MAGIC_STRING: ClassVar[str] = MAGIC_STRING
    PING_INTERVAL: ClassVar[float | None] = 20
    PONG_TIMEOUT: ClassVar[float] = 10
    MAX_BACKOFF: ClassVar[float] = 45
    RECEIVE_TIMEOUT: ClassVar[float | None] = 120
    MAX_FRAME_SIZE: ClassVar[int | None] = 1 * MiB
    MAX_MESSAGE_SIZE: ClassVar[int | None] = 16 * MiB
    CLOSE_TIMEOUT: ClassVar[float] = 10
    SEND_TIMEOUT: ClassVar[float | None] = 10
    ALLOWED_ORIGINS: ClassVar[Sequence[Any] | None] = None
    SUBPROTOCOLS: ClassVar[Sequence[str]] = ()
    COMPRESSION: ClassVar[PerMessageDeflate | None] = PerMessageDeflate()
    RECEIVE_QUEUE_SIZE: ClassVar[int] = 16
    MAX_MESSAGE_RATE: ClassVar[float | None] = None
    BROADCAST_BUFFER: ClassVar[int] = 1 * MiB
    DEBUG: ClassVar[bool] = False

    # Duck's attribute: the oldest protocol version accepted. RFC 6455 is 13.
    min_websocket_version: ClassVar[int] = 13

    # The hooks of the class written with a plain ``def`` (``HOOK_NAMES``).
    _plain_hooks: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_hooks = plain_hooks(cls)

    def __init__(self, upgrade_request: WebSocketRequest, **kwargs: Any) -> None:
        self.request = upgrade_request
        self.kwargs = kwargs
        self.extensions: list[Extension] = []
        self.subprotocol: str | None = None
        self.initiated_upgrade = False
        self.close_code: int | None = None
        self.close_reason: str = ""
        # The connection's session, once the handshake is accepted (``accept``).
        self.session: Session | None = None
        self._user_id: UserId | None = None
        self._closed_handled = False

    # Hooks. Each may be overridden with an ``async def`` or a plain ``def``:
    # a ``def`` hook runs in the connection's greenlet or thread with no
    # event loop running, may block (cooperatively under gevent), and sends
    # with ``self.send_text(...)`` without ``await``.

    async def authorize(self) -> None:
        """Decide, before the 101, whether this client may open the WebSocket.

        ``self.request`` is the upgrade request (cookies, headers, query,
        environ; Duck's request, with its session, in a Duck project), and
        ``subprotocol`` is the one negotiated. Return to accept; attributes
        set here (``self.user = ...``) stay for the other hooks. Raise
        ``duck_ws_sync.Reject(status, reason, headers)`` to refuse: the
        client gets that status and a plain-text reason, never a 101.
        Anything else raised is a 500 with a generic reason, its traceback
        logged.

        An ``async def`` runs on a short-lived event loop of its own, in the
        request's greenlet or thread: tasks it starts end with it. A plain
        ``def`` runs there with no loop.
        """

    async def on_open(self) -> None:
        """Called once the connection is open, before any message is delivered."""

    async def on_receive(self, data: bytes, opcode: int) -> None:
        """Called with each message, one at a time, in arrival order.

        Args:
            data: The whole message (reassembled, decompressed; text is valid UTF-8).
            opcode: ``OpCode.TEXT`` or ``OpCode.BINARY``.
        """
        raise NotImplementedError("WebSocketView subclasses must implement on_receive")

    async def on_close(self, frame: Frame | None = None) -> None:
        """Called exactly once when the connection has ended, however it ended.

        Overrides may take no argument (``async def on_close(self)``) or the
        client's Close frame (None if the client sent none). ``close_code``
        and ``close_reason`` tell why it ended: those of the first Close,
        whoever sent it (a client that answers our 1001 with 1000 leaves
        1001), or 1006 when TCP ended without one; the access log and
        ``stats()`` count the same code.
        """

    # Properties of the connection.

    @property
    def state(self) -> State:
        """``INITIATING`` until the connection is served, then ``OPEN``, ``CLOSING``, ``CLOSED``."""
        session = self.session
        if session is None or session.loop is None:
            return State.INITIATING
        return session.state

    @property
    def sock(self) -> socket.socket | None:
        """The client's socket, once taken over from the server."""
        session = self.session
        return session.socket if session is not None and session.loop is not None else None

    @property
    def client_websocket_version(self) -> int | None:
        """The client's ``Sec-WebSocket-Version``."""
        version = self.request.get_header("Sec-WebSocket-Version")
        return int(version) if version and version.isdigit() else None

    @staticmethod
    def strictly_async() -> bool:
        """Duck's flag: the hooks are coroutines."""
        return True

    @staticmethod
    def get_sec_accept_key(sec_websocket_key: str) -> str:
        """The ``Sec-WebSocket-Accept`` value for a client's key (RFC 6455 §4.2.2)."""
        return accept_key(sec_websocket_key)

    # Sending: safe from any greenlet; each frame is written whole.

    def _send(self, method: str, *args: Any) -> SendResult:
        """Call the core's sending ``method`` through the session (which has the frames written)."""
        session = self.session
        if session is None or session.loop is None:
            logger.debug("not sending: the connection is not open")
            return _NOT_SENT
        return _SENT if session.send(getattr(session.connection, method), *args) else _NOT_SENT

    def send(self, data: str | bytes, opcode: int = OpCode.TEXT) -> SendResult:
        """Send a text (``str``, or UTF-8 bytes) or binary message.

        Messages larger than ``MAX_FRAME_SIZE`` are sent in fragments of that size.
        """
        session = self.session
        if session is None or session.loop is None:
            logger.debug("not sending: the connection is not open")
            return _NOT_SENT
        if opcode == OpCode.TEXT:
            # The path of every echo and chat message.
            return _SENT if session.send_text(data, self.MAX_FRAME_SIZE) else _NOT_SENT
        return _SENT if session.send_message(data, opcode) else _NOT_SENT

    def send_text(self, data: str) -> SendResult:
        """Send a text message."""
        return self.send(data, OpCode.TEXT)

    def send_binary(self, data: bytes | bytearray | memoryview) -> SendResult:
        """Send a binary message."""
        return self._send("send_message", OpCode.BINARY, data, self.MAX_FRAME_SIZE)

    def send_json(self, data: Any) -> SendResult:
        """Send ``data`` encoded as JSON in a text message."""
        return self.send(json.dumps(data), OpCode.TEXT)

    def send_ping(self, data: bytes = b"") -> SendResult:
        """Send a Ping (at most 125 bytes)."""
        return self._send("send_ping", data)

    async def ping(self, data: bytes | None = None) -> float:
        """Send a Ping and wait for the client's Pong; return the round trip in seconds.

        ``data`` (at most 125 bytes) defaults to 4 random bytes. The heartbeat
        (``PING_INTERVAL``) runs apart from this and needs no call.

        Raises:
            ConnectionError: If the connection is not open, or closes before the Pong.
            ValueError: If a ping with the same ``data`` is still unanswered.
        """
        session = self.session
        if session is None or session.loop is None:
            raise ConnectionError("the connection is not open")
        return await session.ping(os.urandom(4) if data is None else bytes(data), session.loop)

    def send_pong(self, data: bytes = b"") -> SendResult:
        """Send an unsolicited Pong (at most 125 bytes)."""
        return self._send("send_pong", data)

    def send_close(self, code: int = 1000, reason: str = "") -> SendResult:
        """Start the closing handshake; the session ends when the client answers or at ``CLOSE_TIMEOUT``.

        Messages still queued for ``on_receive`` are dropped: after our Close
        the client's data is discarded (RFC 6455 §7.1.1).
        """
        return self._send("send_close", code, reason)

    def send_frame(self, frame: Frame) -> SendResult:
        """Send a Duck ``Frame``: a whole data message or a control frame.

        Raises:
            ValueError: For a data frame with ``fin=False``; send whole
                messages, which are fragmented for you.
        """
        if frame.opcode == OpCode.PING:
            return self.send_ping(frame.payload)
        if frame.opcode == OpCode.PONG:
            return self.send_pong(frame.payload)
        if frame.opcode == OpCode.CLOSE:
            code, reason = parse_close(frame.payload)
            return self.send_close(1000 if code == 1005 else code, reason)
        if not frame.fin:
            raise ValueError("send whole messages; they are fragmented for you")
        return self.send(frame.payload, frame.opcode)

    @property
    def user_id(self) -> UserId | None:
        """Whose connection this is: a str or an int, None (the default) for nobody's.

        Set it in ``authorize`` or later (``self.user_id = user.pk``):
        ``duck_ws_sync.send_to_user(user_id, ...)`` then reaches this
        connection, wherever it is served, and the presence of its groups
        names the user. 42 and "42" are the same user to ``send_to_user``.

        Raises:
            TypeError: Set to anything but a str, an int or None.
        """
        session = self.session
        return self._user_id if session is None else session.user_id

    @user_id.setter
    def user_id(self, user_id: UserId | None) -> None:
        check_user_id(user_id)
        session = self.session
        if session is None:
            self._user_id = user_id  # given to the session by ``accept``
        else:
            identify(session, user_id)

    def join(self, group: str, info: Any = None) -> None:
        """Become a member of ``group``: ``duck_ws_sync.broadcast(group, ...)`` reaches this connection.

        The connection is also in the group's presence
        (``duck_ws_sync.presence(group)``), with ``user_id`` and ``info``:
        something small that ``json.dumps`` takes (a name, a status; at
        most 4 KiB of JSON), replaced by joining again. Membership ends by
        itself when the connection closes.

        Raises:
            TypeError: ``info`` is not JSON-serializable (whatever the
                broker: Redis stores it as JSON).
            ValueError: ``info`` is over 4 KiB as JSON.
        """
        check_info(info)
        if self.session is not None:
            join_topic(self.session, group_topic(group), info)

    def leave(self, group: str) -> None:
        """Stop being a member of ``group`` (and leave its presence)."""
        if self.session is not None:
            leave_topic(self.session, group_topic(group))

    async def safe_close(self, disable_logging: bool = False, call_on_close_handler: bool = True) -> None:
        """Close with 1000 if the connection is open (Duck's API; ``on_close`` still runs exactly once)."""
        if self.state is State.OPEN:
            self.send_close(1000)

    # The session.

    @classmethod
    def handshake(cls) -> ServerHandshake:
        """The handshake policy built from the class attributes."""
        extensions = [cls.COMPRESSION] if cls.COMPRESSION is not None else []
        return ServerHandshake(cls.ALLOWED_ORIGINS, cls.SUBPROTOCOLS, extensions)

    def serve(self, sock: socket.socket, initial_data: bytes = b"") -> None:
        """Run the whole connection in the calling greenlet (gevent); return when it has ended.

        The 101 response has been written already, with ``extensions`` and
        ``subprotocol`` set from the handshake. ``initial_data`` is what the
        server read past the upgrade request (a first frame, maybe).
        """
        from .hosts.gevent.sessions import serve_here  # noqa: PLC0415 (gevent only where it serves)

        if self.session is None:
            request = self.request if isinstance(self.request, WebSocketRequest) else _Unknown()
            self.session = Session(self, request, VIEW_HOOKS)
        serve_here(self.session, sock, initial_data)

    async def _serve_messages(self) -> None:
        """The session's coroutine: ``on_open``, then ``on_receive`` for each message, one at a time."""
        session = self.session
        assert session is not None
        connection, inbox = session.connection, session.inbox
        try:
            await self._run_hook("on_open", self.on_open)
            opened = True
        except (Exception, asyncio.CancelledError) as exc:
            self._hook_failed(exc)
            opened = False
        on_receive = self.on_receive
        # The path of every message: an ``async def`` awaited, nothing around it.
        direct = "on_receive" not in self._plain_hooks and self._guard() is None
        while (message := await inbox.get()) is not END:
            if not opened or connection.close_sent is not None:
                inbox.clear()  # §7.1.1: after our Close, the client's data is discarded
                continue
            try:
                if direct:
                    await on_receive(message.data, message.opcode)
                else:
                    await self._run_hook("on_receive", on_receive, message.data, message.opcode)
            except (Exception, asyncio.CancelledError) as exc:
                self._hook_failed(exc)
                inbox.clear()
        # Every message that came before the client's Close (or its protocol
        # error) has been handled, so no reply was lost: answer it now.
        session.answer()

    def _guard(self) -> HookGuard | None:
        """What the session's hooks object runs around each hook, if anything."""
        hooks = self.session.hooks if self.session is not None else None
        return hooks.guard if isinstance(hooks, ViewHooks) else None

    async def _run_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> None:
        """Run the hook ``name`` (``hook``, bound) on the running loop, within the session's guard if any."""
        await run_hook(name in self._plain_hooks, self._guard(), hook, *args)

    def _hook_failed(self, exc: BaseException) -> None:
        """Log a hook's exception with its traceback and close the connection with 1011.

        A ``CancelledError`` is a failure too when it escapes a hook without
        the session having been cancelled (a hook awaited a cancelled task).
        """
        task = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
            raise exc
        logger.error("WebSocket view %s failed", type(self).__name__, exc_info=exc)
        reason = f"{type(exc).__name__}: {exc}" if self.DEBUG else "Internal error"
        self._send("send_close", 1011, reason)

    async def _closed(self) -> None:
        if self._closed_handled:
            return
        self._closed_handled = True
        connection = self.session.connection if self.session is not None else None
        first = first_close(connection) if connection is not None else None
        self.close_code, self.close_reason = (first.code, first.reason) if first is not None else (1006, "")
        frame = None
        if connection is not None and connection.close_received is not None:
            received: Close = connection.close_received
            code = None if received.code == 1005 else received.code
            frame = Frame(OpCode.CLOSE, payload=serialize_close(code, received.reason if code else ""))
        arguments = (frame,) if accepts_frame(type(self).on_close) else ()
        try:
            await self._run_hook("on_close", self.on_close, *arguments)
        except Exception:
            logger.exception("on_close of WebSocket view %s failed", type(self).__name__)


class ViewHooks:
    """How a session runs its view's hooks (``engine.session.Hooks``): one object serves every session.

    Args:
        guard: Run around each hook (``HookGuard``), or None.
    """

    __slots__ = ("guard",)

    def __init__(self, guard: HookGuard | None = None) -> None:
        self.guard = guard

    def serve(self, session: Session) -> Coroutine[Any, Any, None]:
        return cast(WebSocketView, session.endpoint)._serve_messages()

    def closed(self, session: Session) -> Coroutine[Any, Any, None]:
        return cast(WebSocketView, session.endpoint)._closed()


VIEW_HOOKS = ViewHooks()


class _Unknown:
    """The address and path of a view served with a request of its own (no middleware): unknown."""

    client_address = ("", 0)
    path = ""


def accept(
    view: WebSocketView,
    request: WebSocketRequest,
    extensions: list[Extension],
    subprotocol: str | None,
    hooks: ViewHooks = VIEW_HOOKS,
) -> None:
    """The handshake is accepted: give ``view`` its extensions, subprotocol and session (before ``authorize``).

    ``request`` is the upgrade request as the middleware read it: the
    client's address (the real client's behind a trusted proxy) and the
    path, for the logs, even when the view was given a framework's request.
    ``hooks`` runs the view's hooks (a framework's guard around them).
    """
    view.extensions = extensions
    view.subprotocol = subprotocol
    view.session = Session(view, request, hooks)
    view.session.user_id = view._user_id


def authorize(view: WebSocketView, event_loop: Callable[[], Any]) -> None:
    """Run ``view``'s ``authorize`` hook, accepted (``accept``) but not yet served; raise what it raises.

    A plain ``def`` is called here, in the request's greenlet or thread; an
    ``async def`` runs on a loop from ``event_loop`` (a ``TaskCounting``
    loop of the host's kind), whose remaining tasks are cancelled after.
    """
    guard = view._guard()
    result = None
    if "authorize" in view._plain_hooks:
        result = call_guarded(guard, view.authorize, ())
        if not inspect.isawaitable(result):
            return
    loop = event_loop()
    try:
        loop.run_until_complete(result if result is not None else view._run_hook("authorize", view.authorize))
    finally:
        try:
            loop.cancel_remaining_tasks(1.0)
        finally:
            loop.close()
