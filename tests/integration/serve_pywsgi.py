"""Serve a WSGI app with gevent.pywsgi on 127.0.0.1 and an ephemeral port; print the port.

python -m tests.integration.serve_pywsgi module:app
"""

from gevent import monkey

monkey.patch_all()

import importlib  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402


def main() -> None:
    module_name, _, attribute = sys.argv[1].partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    server = WSGIServer(("127.0.0.1", 0), app)
    server.start()
    print(f"LISTENING {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
