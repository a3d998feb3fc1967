"""``WebSocketClient``: websocket-client's ``WebSocket`` with what a test of an endpoint needs.

Receiving waits for a bounded time and fails with a plain assertion
message; JSON goes both ways; the server's Close frame (which
websocket-client answers and hides) is kept and can be asserted; a ping
waits for its pong. Everything else is websocket-client's own.

The helpers set ``__tracebackhide__``: pytest's traceback of a failure
ends at the test's own line.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from typing import Any

import websocket

__all__ = ["WebSocketClient"]

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY
OPCODE_CLOSE = websocket.ABNF.OPCODE_CLOSE
OPCODE_PONG = websocket.ABNF.OPCODE_PONG


class WebSocketClient(websocket.WebSocket):
    """A connected websocket-client ``WebSocket`` (made by ``LiveServer.connect``), plus helpers for tests.

    Attributes:
        url: The URL it connected to.
        close_code: The code of the server's Close frame once one was
            received (1005 when it had none), else None.
        close_reason: Its reason.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = ""
        self.close_code: int | None = None
        self.close_reason = ""
        self._answered = False  # the server's Close was answered
        self._early: deque[str | bytes] = deque()  # messages that came while ping_pong() waited for its pong

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self, url: str, **options: Any) -> None:
        """Connect to ``url`` (websocket-client's, keeping the URL for the messages of failed assertions)."""
        __tracebackhide__ = True
        self.url = url
        super().connect(url, **options)

    def recv_frame(self) -> Any:
        """The next frame (websocket-client's); the server's Close is kept, for ``close_code`` and the answer."""
        frame = super().recv_frame()
        if frame.opcode == OPCODE_CLOSE and self.close_code is None:
            payload = frame.data
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode("utf-8", "replace")
        return frame

    def send_close(self, status: int = websocket.STATUS_NORMAL, reason: str | bytes = b"") -> None:
        """Send a Close; websocket-client's answer to the server's Close echoes its code (RFC 6455 §5.5.1)."""
        if self.close_code is not None and not self._answered:
            self._answered = True
            if (status, reason) == (websocket.STATUS_NORMAL, b"") and self.close_code != 1005:
                status = self.close_code
        super().send_close(status, reason)

    def close(self, status: int = 1000, reason: str | bytes = b"", timeout: float | None = 3) -> None:
        """Close the connection (websocket-client's), or only the socket once the server's Close was answered."""
        if self.close_code is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.shutdown()
            return
        super().close(status, reason, timeout)

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: Seconds to wait; the connection's own timeout when None.

        Raises:
            AssertionError: No message came in time, or the server closed
                the connection instead (its code and reason are in the message).
        """
        __tracebackhide__ = True
        if self._early:
            return self._early.popleft()
        deadline = self._deadline(timeout)
        while True:
            opcode, payload = self._next(deadline, "message")
            if opcode == OPCODE_TEXT:
                return str(payload.decode("utf-8"))
            if opcode == OPCODE_BINARY:
                return bytes(payload)
            if opcode == OPCODE_CLOSE:
                closed = self._close_text()
                raise AssertionError(f"the server closed the connection ({closed}) instead of sending a message")

    def receive_json(self, timeout: float | None = None) -> Any:
        """The next message, decoded from JSON (AssertionError when it is not JSON)."""
        __tracebackhide__ = True
        message = self.receive(timeout)
        try:
            return json.loads(message)
        except ValueError:
            raise AssertionError(f"not a JSON message: {message!r:.200}") from None

    def send_json(self, value: Any) -> None:
        """Send ``value`` encoded as JSON in a text message."""
        __tracebackhide__ = True
        self.send(json.dumps(value))

    def expect_close(
        self, code: int | None = None, reason: str | None = None, timeout: float | None = None
    ) -> tuple[int, str]:
        """Wait for the server's Close frame and check its code and reason; return both.

        A message that comes first fails the assertion (it is shown), as
        does the end of the connection without a Close (1006).
        """
        __tracebackhide__ = True
        if self.close_code is None:
            if self._early:
                raise AssertionError(f"expected the server's Close, got a message: {self._early[0]!r:.200}")
            deadline = self._deadline(timeout)
            while True:
                opcode, payload = self._next(deadline, "Close frame")
                if opcode == OPCODE_CLOSE:
                    break
                if opcode in (OPCODE_TEXT, OPCODE_BINARY):
                    message = payload.decode("utf-8") if opcode == OPCODE_TEXT else bytes(payload)
                    raise AssertionError(f"expected the server's Close, got a message: {message!r:.200}")
        assert self.close_code is not None
        if code is not None and self.close_code != code:
            raise AssertionError(f"the server closed with {self._close_text()}, not {code}")
        if reason is not None and self.close_reason != reason:
            raise AssertionError(f"the server closed with {self._close_text()}, not the reason {reason!r}")
        return self.close_code, self.close_reason

    def ping_pong(self, payload: bytes | str = b"", timeout: float | None = None) -> float:
        """Send a Ping and wait for the Pong that echoes ``payload``; return the round trip in seconds.

        Messages that come meanwhile are kept for ``receive``. (websocket-client's
        ``ping`` only sends.)
        """
        __tracebackhide__ = True
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        deadline = self._deadline(timeout)
        started = time.monotonic()
        self.ping(data)
        while True:
            opcode, frame_payload = self._next(deadline, "Pong")
            if opcode == OPCODE_PONG and bytes(frame_payload) == data:
                return time.monotonic() - started
            if opcode == OPCODE_TEXT:
                self._early.append(frame_payload.decode("utf-8"))
            elif opcode == OPCODE_BINARY:
                self._early.append(bytes(frame_payload))
            elif opcode == OPCODE_CLOSE:
                raise AssertionError(f"the server closed the connection ({self._close_text()}) before its Pong")

    def finish(self, timeout: float = 2) -> None:
        """Read on to the server's Close (dropping messages not read), answer it, and close the socket.

        ``LiveServer.stop`` does this for every connection it made, after it
        asked the server to close them all.
        """
        with contextlib.suppress(AssertionError, OSError, websocket.WebSocketException):
            deadline = self._deadline(timeout)
            while self.connected and self.close_code is None:
                self._next(deadline, "Close frame")
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self.shutdown()

    def _deadline(self, timeout: float | None) -> tuple[float, float] | None:
        """When to give up, and after how many seconds (None: never)."""
        if timeout is None:
            timeout = self.gettimeout()
        return None if timeout is None else (time.monotonic() + timeout, timeout)

    def _next(self, deadline: tuple[float, float] | None, what: str) -> tuple[int, bytes]:
        """The next frame websocket-client hands out (control frames included), before ``deadline``."""
        __tracebackhide__ = True
        previous = self.gettimeout()
        if deadline is not None:
            self.settimeout(max(deadline[0] - time.monotonic(), 0.001))
        try:
            opcode, payload = self.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            seconds = "ever" if deadline is None else f"{deadline[1]:g} s"
            raise AssertionError(f"no {what} from {self.url} within {seconds}") from None
        except websocket.WebSocketConnectionClosedException:
            ended = f"the connection to {self.url} ended without a Close frame (1006)"
            raise AssertionError(f"{ended} while waiting for a {what}") from None
        finally:
            if self.connected:
                self.settimeout(previous)
        return opcode, payload

    def _close_text(self) -> str:
        return f"{self.close_code} {self.close_reason!r}" if self.close_reason else str(self.close_code)
