"""Serve the chat on gevent.pywsgi: ``python3 -m examples.chat [host] [port]``."""

import sys

from gevent.pywsgi import WSGIServer

from examples.chat import app

host, port = (sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else ("127.0.0.1", 8000)
print(f"Chat on http://{host}:{port}/", flush=True)
WSGIServer((host, port), app).serve_forever()
