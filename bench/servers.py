"""Echo servers for ``bench/echo.py``, each run as its own process on gevent.pywsgi.

    python bench/servers.py ours [--root DIR]       # examples/echo.py's app (duck_ws_sync) of a checkout
    python bench/servers.py gws [--nodelay]         # gevent-websocket's WebSocketHandler
    python bench/servers.py tcp                     # raw gevent TCP echo: the ceiling

Each binds 127.0.0.1 on an ephemeral port, prints ``LISTENING <port>`` and
serves until SIGTERM. All are monkey-patched, as gunicorn's gevent worker is.
gunicorn is started by ``bench/echo.py`` directly (``gunicorn -k gevent``).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ours(root: Path) -> Any:
    """The echo app of ``examples/echo.py`` in the checkout ``root``: a duck_ws_sync ``WebSocketView``."""
    sys.path.insert(0, str(root))
    import duck_ws_sync
    from examples.echo import app

    if not Path(duck_ws_sync.__file__).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"duck_ws_sync comes from {duck_ws_sync.__file__}, not from {root}")

    return app


def gws(nodelay: bool) -> Any:
    """gevent-websocket's echo: receive and send back, until the client leaves."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket only\n"]
        if nodelay:
            ws.handler.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            message = ws.receive()
            if message is None:
                break
            ws.send(message)  # str is sent as text, bytes/bytearray as binary
        return []

    return app


def tcp_echo(sock: socket.socket, address: Any) -> None:
    """Send back every byte: no WebSocket work at all."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = memoryview(bytearray(1 << 20))
    try:
        while size := sock.recv_into(buffer):
            sock.sendall(buffer[:size])
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["ours", "gws", "tcp"])
    parser.add_argument("--root", type=Path, default=ROOT, help="ours: the checkout to import duck_ws_sync from")
    parser.add_argument("--nodelay", action="store_true", help="gws: set TCP_NODELAY (it does not by itself)")
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile; write pstats to FILE on SIGTERM")
    parser.add_argument("--profile-clock", choices=["cpu", "wall"], default="wall", help="cProfile's timer")
    parser.add_argument("--count-switches", action="store_true", help="count greenlet switches; print on SIGTERM")
    arguments = parser.parse_args()

    if arguments.kind == "tcp":
        server: StreamServer = StreamServer(("127.0.0.1", 0), tcp_echo)
    elif arguments.kind == "gws":
        from geventwebsocket.handler import WebSocketHandler  # type: ignore[import-untyped]

        server = WSGIServer(("127.0.0.1", 0), gws(arguments.nodelay), handler_class=WebSocketHandler, log=None)
    else:
        server = WSGIServer(("127.0.0.1", 0), ours(arguments.root), log=None)

    switches = 0
    if arguments.count_switches:
        import greenlet

        def count(event: str, args: Any) -> None:
            nonlocal switches
            if event in ("switch", "throw"):
                switches += 1

        greenlet.settrace(count)  # installed first: duck_ws_sync's own tracer chains to it

    profiler = None
    if arguments.profile:
        import cProfile
        import time

        # CPU time: a greenlet waiting in the hub (for the next message) is not charged to the function that waits.
        profiler = cProfile.Profile(time.process_time) if arguments.profile_clock == "cpu" else cProfile.Profile()

    def stop() -> None:
        server.stop(timeout=1)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    server.start()
    print(f"LISTENING {server.server_port}", flush=True)
    if profiler is not None:
        profiler.enable()
    try:
        server.serve_forever()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        if arguments.count_switches:
            print(f"GREENLET SWITCHES {switches}", flush=True)


if __name__ == "__main__":
    main()
