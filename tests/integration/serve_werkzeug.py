"""Serve a WSGI app with werkzeug's threaded development server on 127.0.0.1 and an ephemeral port; print the port.

python -m tests.integration.serve_werkzeug module:app [--single]

What ``flask run`` and ``app.run()`` use: ``werkzeug.serving``, a thread
per request (``--single``: one request at a time, ``threaded=False``).
SIGTERM stops it as Ctrl-C would.
"""

import importlib
import signal
import sys

from werkzeug.serving import make_server


def main() -> None:
    module_name, _, attribute = sys.argv[1].partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    server = make_server("127.0.0.1", 0, app, threaded="--single" not in sys.argv[2:])
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as Ctrl-C does
    print(f"LISTENING {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
