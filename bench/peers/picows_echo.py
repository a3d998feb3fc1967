"""picows's listener API (``ws_create_server`` and a ``WSListener``) on asyncio's default event loop.

picows hands the listener frames, not messages, and leaves answering a close
to it; it answers pings itself (``enable_auto_pong``, on by default) and
sends none of its own (``enable_auto_ping`` is off by default). A frame
that is a whole message goes back straight from picows's buffer; the
frames of a fragmented one are joined first. Text comes back as text and
binary as binary, frames and messages above 2 MiB close the connection
(1009), and a text message that begins with ``BCAST:`` goes to every
connection (``send`` on each: it only queues the frame). picows runs on
aiofastnet's transports, its default when aiofastnet is installed (a
dependency of picows). Prints ``LISTENING <port>`` and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

MAX_SIZE = 2 << 20  # 1 MiB messages plus room
BACKLOG = 4096

CLIENTS: set[WSTransport] = set()


class Echo(WSListener):
    """One connection: echoes each message, fans ``BCAST:`` out, answers a close."""

    def __init__(self) -> None:
        self.fragments: list[bytes] = []  # a fragmented message so far
        self.fragments_type = WSMsgType.TEXT
        self.fragments_size = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY) and frame.fin and not self.fragments:
            self._answer(transport, kind, frame.get_payload_as_memoryview())
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            self._gather(transport, frame)

    def _gather(self, transport: WSTransport, frame: WSFrame) -> None:
        """A frame of a fragmented message; the message is answered with its last frame."""
        if frame.msg_type != WSMsgType.CONTINUATION:
            self.fragments_type = frame.msg_type
        self.fragments.append(frame.get_payload_as_bytes())
        self.fragments_size += frame.payload_size
        if self.fragments_size > MAX_SIZE:
            transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
            transport.disconnect()
        elif frame.fin:
            message = b"".join(self.fragments)
            self.fragments, self.fragments_size = [], 0
            self._answer(transport, self.fragments_type, message)

    @staticmethod
    def _answer(transport: WSTransport, kind: WSMsgType, message: bytes | memoryview) -> None:
        if kind == WSMsgType.TEXT and message[:6] == b"BCAST:":
            for client in list(CLIENTS):
                client.send(WSMsgType.TEXT, message)
        else:
            transport.send(kind, message)


def listener(request: WSUpgradeRequest) -> Echo | None:
    """A listener for ``/ws``; None (404) elsewhere."""
    return Echo() if request.path == b"/ws" else None


async def main() -> None:
    server = await ws_create_server(listener, "127.0.0.1", 0, max_frame_size=MAX_SIZE, backlog=BACKLOG)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
