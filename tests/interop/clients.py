"""The clients of the interoperability suite, behind one small interface.

Each client opens connections (``Client.connect``) that send random messages
and describe what they receive by length and SHA-256 (``Connection``), so one
set of tests runs against every client. The Python clients run in this
process; Node's ws and Chromium run in Node, driven over JSON lines
(``tests/interop/js``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import select
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import websocket
import websockets
from websocket._abnf import frame_buffer
from websockets.asyncio.client import connect as websockets_connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from tests.interop.payloads import describe, make

JS = Path(__file__).with_name("js")
TIMEOUT = 90.0  # one operation, a 16 MiB compressed round trip included
SMALL = 64 * 1024  # received text up to this size is kept whole
T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    """A message (described) or the close, as a client saw it."""

    type: str  # "text", "binary" or "close"
    length: int = 0
    sha256: str = ""
    text: str | None = None  # a small text message, whole
    code: int | None = None
    reason: str = ""

    @classmethod
    def message(cls, data: str | bytes) -> Received:
        if isinstance(data, str):
            encoded = data.encode()
            return cls("text", text=data if len(encoded) <= SMALL else None, **describe(encoded))  # type: ignore[arg-type]
        return cls("binary", **describe(data))  # type: ignore[arg-type]


class Connection:
    """One open WebSocket connection of a client."""

    extensions: str  # the server's Sec-WebSocket-Extensions answer, "" for none

    def send(self, kind: str, size: int, fragments: int = 1) -> dict[str, Any]:
        """Send a random ``kind`` message of ``size`` bytes in ``fragments`` frames; describe it."""
        raise NotImplementedError

    def receive(self) -> Received:
        """The next message, or the close."""
        raise NotImplementedError

    def close(self, code: int, reason: str) -> Received:
        """Close with ``code`` and ``reason``; return the close the client saw in answer."""
        raise NotImplementedError


@dataclass
class Client:
    """A client and its settings: one row of the interoperability table."""

    name: str  # the package, as users know it
    settings: str  # what is set, in the client's own terms
    compression: bool  # whether it offers permessage-deflate
    can_fragment: bool
    connect: Callable[[str], Connection] = field(repr=False)
    version: Callable[[], str] = field(repr=False)
    stop: Callable[[], None] = field(default=lambda: None, repr=False)
    # What the server's extension answer must honour: a flag present, or a
    # window of at most the bits the client asked for.
    expected_params: tuple[tuple[str, int | None], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}[{self.settings}]"


S = TypeVar("S", str, bytes)


def split(data: S, parts: int) -> list[S]:
    """``data`` in ``parts`` pieces (fewer if it is shorter); characters, for text given as str."""
    step = max(1, -(-len(data) // parts))
    return [data[start : start + step] for start in range(0, len(data), step)] or [data]


# websocket-client (sync).


class _DeflateFrameBuffer(frame_buffer):
    """websocket-client's frame reader, letting RSV1 through (it refuses every RSV bit).

    ``compressed`` tells whether the message being read has RSV1 on its first frame.
    """

    compressed = False

    def recv_header(self) -> None:
        super().recv_header()
        fin, rsv1, rsv2, rsv3, opcode, *rest = self.header
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self.compressed = bool(rsv1)
        self.header = (fin, 0, rsv2, rsv3, opcode, *rest)


class WebSocketClientConnection(Connection):
    """websocket-client, with permessage-deflate done here when asked for.

    websocket-client does not implement permessage-deflate (its FAQ says so,
    and it refuses frames with RSV1). With ``deflate``, this class offers the
    extension and compresses and inflates around the library's frame API, as
    users of websocket-client who need compression do. UTF-8 is checked here
    (Python's decoder) rather than by the library's validator, which is pure
    Python without wsaccel and takes seconds over 16 MiB.
    """

    def __init__(self, url: str, deflate: bool) -> None:
        self.ws = websocket.WebSocket(skip_utf8_validation=True)
        headers = ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"] if deflate else []
        self.ws.connect(url, header=headers, timeout=TIMEOUT)
        self.extensions = self.ws.getheaders().get("sec-websocket-extensions", "")
        self.deflate = deflate and self.extensions.startswith("permessage-deflate")
        if self.deflate:
            self.ws.frame_buffer = self.frames = _DeflateFrameBuffer(self.ws._recv, skip_utf8_validation=True)
            params = dict(param.strip().partition("=")[::2] for param in self.extensions.split(";")[1:])
            # The server's window is at most 15 bits, which any inflater takes;
            # ours is what the server allowed.
            self._inflate = zlib.decompressobj(-15)
            self._deflate = zlib.compressobj(6, zlib.DEFLATED, -int(params.get("client_max_window_bits") or 15))

    def send(self, kind: str, size: int, fragments: int = 1) -> dict[str, Any]:
        data = make(kind, size)
        opcode = websocket.ABNF.OPCODE_TEXT if kind == "text" else websocket.ABNF.OPCODE_BINARY
        if fragments == 1 and not self.deflate:
            self.ws.send(data, opcode)
            return describe(data)
        payload, rsv1 = data, 0
        if self.deflate:
            payload = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            payload, rsv1 = payload[:-4], 1  # RFC 7692 §7.2.1: without the empty block's tail
        parts = split(payload, fragments)
        for number, part in enumerate(parts):
            first, last = number == 0, number == len(parts) - 1
            frame = websocket.ABNF(
                fin=int(last),
                rsv1=rsv1 if first else 0,
                opcode=opcode if first else websocket.ABNF.OPCODE_CONT,
                data=part,
            )
            self.ws.send_frame(frame)
        return describe(data)

    def receive(self) -> Received:
        # The library reassembles fragments and answers pings on its own.
        opcode, frame = self.ws.recv_data_frame()
        if opcode == websocket.ABNF.OPCODE_CLOSE:  # the library has answered it
            self.ws.shutdown()
            code, reason = _parse_close(frame.data)
            return Received("close", code=code, reason=reason)
        data = frame.data
        if self.deflate and self.frames.compressed:
            data = self._inflate.decompress(data + b"\x00\x00\xff\xff")
        return Received.message(data.decode("utf-8") if opcode == websocket.ABNF.OPCODE_TEXT else data)

    def close(self, code: int, reason: str) -> Received:
        self.ws.send_close(code, reason.encode())
        while (frame := self.ws.recv_frame()).opcode != websocket.ABNF.OPCODE_CLOSE:
            pass  # what the server sent before it read our Close
        self.ws.shutdown()
        code, reason = _parse_close(frame.data)
        return Received("close", code=code, reason=reason)


def _parse_close(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 1005, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def websocket_client(deflate: bool) -> Client:
    return Client(
        "websocket-client",
        "permessage-deflate offered" if deflate else "no extension",
        compression=deflate,
        can_fragment=True,
        connect=lambda url: WebSocketClientConnection(url, deflate),
        version=lambda: websocket.__version__,
    )


# Clients on an asyncio loop of their own, run from these synchronous calls.


class AsyncioConnection(Connection):
    """A client on an asyncio loop of its own; the loop is closed with the connection."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, TIMEOUT))

    def close(self, code: int, reason: str) -> Received:
        try:
            return self.run(self._close(code, reason))
        finally:
            self._closed()

    def _closed(self) -> None:
        """Release the client and its loop: the connection is over."""
        if not self.loop.is_closed():
            try:
                self.run(self._release())
            finally:
                self.loop.close()

    async def _close(self, code: int, reason: str) -> Received:
        raise NotImplementedError

    async def _release(self) -> None:
        pass


class WebsocketsConnection(AsyncioConnection):
    """The ``websockets`` asyncio client."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        super().__init__()
        self.ws = self.run(websockets_connect(url, max_size=None, **options))
        self.extensions = self.ws.response.headers.get("Sec-WebSocket-Extensions", "")

    def send(self, kind: str, size: int, fragments: int = 1) -> dict[str, Any]:
        data = make(kind, size)
        message: Any = data.decode() if kind == "text" else data
        if fragments > 1:
            message = split(message, fragments)  # str pieces for text: websockets splits no character
        self.run(self.ws.send(message))
        return describe(data)

    def receive(self) -> Received:
        try:
            return Received.message(self.run(self.ws.recv()))
        except websockets.ConnectionClosed as closed:
            self._closed()
            return _close_received(closed.rcvd)

    async def _close(self, code: int, reason: str) -> Received:
        await self.ws.close(code, reason)
        return _close_received(self.ws.protocol.close_rcvd)


def _close_received(frame: Any) -> Received:
    if frame is None:
        return Received("close", code=1006)
    return Received("close", code=frame.code, reason=frame.reason)


def websockets_client(
    settings: str, expected_params: tuple[tuple[str, int | None], ...] = (), **options: Any
) -> Client:
    return Client(
        "websockets",
        settings,
        expected_params=expected_params,
        compression=bool(options.get("extensions")) or options.get("compression", "deflate") is not None,
        can_fragment=True,
        connect=lambda url: WebsocketsConnection(url, options),
        version=lambda: websockets.version.version,
    )


def websockets_deflate(**params: Any) -> dict[str, Any]:
    return {"extensions": [ClientPerMessageDeflateFactory(**params)], "compression": None}


class AiohttpConnection(AsyncioConnection):
    """aiohttp's client, ``ClientSession.ws_connect``."""

    def __init__(self, url: str, compress: int) -> None:
        super().__init__()
        self.ws = self.run(self._open(url, compress))
        self.extensions = self.ws._response.headers.get("Sec-WebSocket-Extensions", "")

    async def _open(self, url: str, compress: int) -> aiohttp.ClientWebSocketResponse:
        self.session = aiohttp.ClientSession()
        return await self.session.ws_connect(url, compress=compress, max_msg_size=0)

    def send(self, kind: str, size: int, fragments: int = 1) -> dict[str, Any]:
        assert fragments == 1, "aiohttp sends whole messages only"
        data = make(kind, size)
        self.run(self.ws.send_str(data.decode()) if kind == "text" else self.ws.send_bytes(data))
        return describe(data)

    def receive(self) -> Received:
        message = self.run(self.ws.receive())
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return Received.message(message.data)
        self._closed()
        if message.type == aiohttp.WSMsgType.CLOSE:
            return Received("close", code=message.data, reason=message.extra or "")
        return Received("close", code=self.ws.close_code)  # CLOSED after an earlier CLOSE, or ERROR

    async def _close(self, code: int, reason: str) -> Received:
        await self.ws.close(code=code, message=reason.encode())
        return Received("close", code=self.ws.close_code)

    async def _release(self) -> None:
        await self.session.close()


def aiohttp_client(compress: int) -> Client:
    return Client(
        "aiohttp",
        f"compress={compress}" if compress else "no compression",
        compression=bool(compress),
        can_fragment=False,
        connect=lambda url: AiohttpConnection(url, compress),
        version=lambda: aiohttp.__version__,
    )


# Node's ws and Chromium, driven over JSON lines.


class NodeDriver:
    """A Node program of ``tests/interop/js`` that takes one JSON operation a line."""

    def __init__(self, script: str, *args: str) -> None:
        node = shutil.which("node")
        if node is None or not (JS / "node_modules").is_dir():
            raise RuntimeError("Node.js and the npm packages are needed: run `sh tests/setup.sh`")
        # A file, not a pipe: a chatty driver never blocks on a full pipe nobody reads.
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            [node, str(JS / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )

    def call(self, op: str, /, answer_within: float = TIMEOUT, **args: Any) -> Any:
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], answer_within)
        if not ready:
            raise TimeoutError(f"{op} did not answer within {answer_within} s")
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Node client ended (exit {process.wait(5)}): {self._stderr()}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(answer["error"])
        return answer["result"]

    def _stderr(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        process = self.process
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()  # the driver ends at the end of its input
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        self.stderr.close()


class NodeConnection(Connection):
    """A connection of client_ops.js, in Node or in a page."""

    def __init__(self, call: Callable[..., Any], url: str) -> None:
        self.call = call
        opened = call("open", url=url)
        self.id, self.extensions = opened["id"], opened["extensions"]

    def send(self, kind: str, size: int, fragments: int = 1) -> dict[str, Any]:
        return self.call("send", id=self.id, kind=kind, size=size, fragments=fragments)

    def receive(self) -> Received:
        return Received(**self.call("receive", id=self.id))

    def close(self, code: int, reason: str) -> Received:
        return Received(**self.call("close", id=self.id, code=code, reason=reason))


def node_ws(deflate: bool) -> Client:
    driver: NodeDriver | None = None

    def connect(url: str) -> Connection:
        nonlocal driver
        if driver is None:
            driver = NodeDriver("ws_client.mjs", "deflate" if deflate else "plain")
        return NodeConnection(driver.call, url)

    def stop() -> None:
        if driver is not None:
            driver.stop()

    return Client(
        "ws (Node.js)",
        "perMessageDeflate: true" if deflate else "perMessageDeflate: false",
        compression=deflate,
        can_fragment=True,
        connect=connect,
        version=lambda: _npm_version("ws"),
        stop=stop,
    )


def _npm_version(package: str) -> str:
    return json.loads((JS / "node_modules" / package / "package.json").read_text())["version"]


class Browser:
    """Headless Chromium, one process for the whole run; pages on the chat example's origin."""

    def __init__(self) -> None:
        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        if executable is None:
            raise RuntimeError("Chromium is needed: run `sh tests/setup.sh` (Debian's chromium package)")
        self.driver = NodeDriver("browser.mjs", executable)
        self._pages: dict[str, int] = {}

    def call(self, op: str, /, **args: Any) -> Any:
        return self.driver.call(op, **args)

    def page(self, origin: str) -> int:
        """A page of the chat example at ``origin`` (one per server), for client operations."""
        if origin not in self._pages:
            self._pages[origin] = self.call("openPage", url=f"{origin}/")
        return self._pages[origin]

    def version(self) -> str:
        return self.call("version")["version"]

    def stop(self) -> None:
        self.driver.stop()


@functools.cache
def browser() -> Browser:
    """The one Chromium of the run, started on first use."""
    return Browser()


def stop_browser() -> None:
    if browser.cache_info().currsize:
        browser().stop()
        browser.cache_clear()


def chromium(compression: bool) -> Client:
    """Chromium's WebSocket in a page of the chat example.

    Chromium always offers permessage-deflate; without compression, the page
    uses the server's routes that decline it.
    """

    def connect(url: str) -> Connection:
        page = browser().page(url.replace("ws://", "http://", 1).split("/ws/", 1)[0])
        if not compression:
            url = url.replace("/ws/interop/", "/ws/interop/plain/", 1)
        return NodeConnection(lambda name, **args: browser().call("call", page=page, name=name, args=args), url)

    return Client(
        "Chromium",
        "WebSocket in a page" if compression else "WebSocket in a page, server declines compression",
        compression=compression,
        can_fragment=False,
        connect=connect,
        version=lambda: browser().version(),
    )
