"""Serve the chat on gevent.pywsgi: ``python3 -m examples.chat [host [port]]``.

The defaults are 127.0.0.1 and 8000; port 0 takes any free port, and the
line printed at start says which. Ctrl-C (or SIGTERM) stops the server:
every WebSocket gets a Close 1001, and once they have ended the process
exits with status 0, printing one line and no traceback.
"""

import signal
import sys

import gevent
from gevent.pywsgi import WSGIServer

from duck_ws_sync.views import close_all
from examples.chat import app

host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
port = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
server = WSGIServer((host, port), app)


def stop() -> None:
    if not server.closed:
        print("Chat stopped", flush=True)
    close_all(1001, "Server shutting down")
    server.close()


for signum in (signal.SIGINT, signal.SIGTERM):
    gevent.signal_handler(signum, stop)
server.start()
print(f"Chat on http://{host}:{server.server_port}/", flush=True)
server.serve_forever()
