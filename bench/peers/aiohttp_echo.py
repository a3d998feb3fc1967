"""aiohttp's ``web.WebSocketResponse`` on its own server (asyncio), heartbeat off as shipped.

Text comes back as text and binary as binary; a text message that begins
with ``BCAST:`` goes to every connection (``send_str`` on each, in turn).
Prints ``LISTENING <port>`` and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from aiohttp import WSMsgType, web

MAX_SIZE = 2 << 20  # 1 MiB messages plus room
BACKLOG = 4096

CLIENTS: set[web.WebSocketResponse] = set()


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_SIZE)
    await ws.prepare(request)
    CLIENTS.add(ws)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data.startswith("BCAST:"):
                    for client in list(CLIENTS):
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await client.send_str(message.data)
                else:
                    await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
    finally:
        CLIENTS.discard(ws)
    return ws


async def main() -> None:
    app = web.Application()
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=BACKLOG)
    await site.start()
    print(f"LISTENING {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
