"""duck_ws_sync's echo (``duck_app.py``) on gevent.pywsgi, monkey-patched as gunicorn's gevent worker is.

``python bench/peers/duck_pywsgi.py`` prints ``LISTENING <port>`` and serves
until SIGTERM. For ``bench/run.py --profile``: ``--profile FILE`` runs the
server under cProfile and writes its stats to FILE on SIGTERM;
``--count-switches`` counts greenlet switches and prints
``GREENLET SWITCHES <n>`` on SIGTERM.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import argparse
import cProfile
import time
from typing import Any

import greenlet
from gevent.pywsgi import WSGIServer
from gevent_main import BACKLOG, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", metavar="FILE", help="run under cProfile; write the stats to FILE on SIGTERM")
    parser.add_argument("--profile-clock", choices=["cpu", "wall"], default="wall", help="cProfile's timer")
    parser.add_argument("--count-switches", action="store_true", help="count greenlet switches; print on SIGTERM")
    arguments = parser.parse_args()

    switches = 0
    if arguments.count_switches:

        def count(event: str, args: Any) -> None:
            nonlocal switches
            if event in ("switch", "throw"):
                switches += 1

        greenlet.settrace(count)  # before duck_ws_sync's own tracer, which chains to it

    from duck_app import app

    profiler = None
    if arguments.profile:
        profiler = cProfile.Profile(time.process_time) if arguments.profile_clock == "cpu" else cProfile.Profile()

    def on_exit() -> None:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        if arguments.count_switches:
            print(f"GREENLET SWITCHES {switches}", flush=True)

    server = WSGIServer(("127.0.0.1", 0), app, log=None, backlog=BACKLOG)
    if profiler is not None:
        profiler.enable()
    serve(server, on_exit)


if __name__ == "__main__":
    main()
