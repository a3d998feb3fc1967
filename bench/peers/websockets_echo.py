"""websockets' current asyncio server (``websockets.asyncio.server.serve``), heartbeat on as shipped.

Text comes back as text and binary as binary; a text message that begins
with ``BCAST:`` goes to every connection through ``broadcast()``, the
library's own way to fan a message out. Prints ``LISTENING <port>``.
"""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve

MAX_SIZE = 2 << 20  # 1 MiB messages plus room
BACKLOG = 4096

CLIENTS: set[ServerConnection] = set()


async def echo(websocket: ServerConnection) -> None:
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            if isinstance(message, str) and message.startswith("BCAST:"):
                broadcast(CLIENTS, message)
            else:
                await websocket.send(message)
    finally:
        CLIENTS.discard(websocket)


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0, max_size=MAX_SIZE, backlog=BACKLOG) as server:
        print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
