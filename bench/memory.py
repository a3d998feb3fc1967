"""Where an idle connection's memory goes: tracemalloc and RSS per connection, by the file that allocated it.

``python3 bench/memory.py [--conns N]`` serves the benchmark's echo
(``peers/duck_app.py``) on gevent.pywsgi in this process, monkey-patched
as gunicorn's gevent worker is, and opens N idle WebSockets to it with the
load generator (``-mode idle``, 1,000 by default, heartbeat on as
shipped). Once they are all open it compares two tracemalloc snapshots
(before and during the hold) and the process's RSS, and prints the bytes
per connection by the file that allocated them: what the Python objects
of a connection cost, and how much RSS adds (the allocator's rounding,
pages that tracemalloc does not see; ``--rss`` measures RSS alone, since
tracemalloc's own records cost RSS too). With ``--raw`` it measures the raw
gevent TCP echo (``peers/raw_tcp.py``'s handler) the same way.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import gevent
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE))

from clients import ensure_built


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--raw", action="store_true", help="the raw gevent TCP echo instead")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--lines", action="store_true", help="by the line that allocated, not the file")
    parser.add_argument("--rss", action="store_true", help="RSS only, without tracemalloc (which costs RSS of its own)")
    arguments = parser.parse_args()

    if arguments.raw:
        from raw_tcp import handle  # type: ignore[import-not-found]

        server: StreamServer = StreamServer(("127.0.0.1", 0), handle, backlog=4096)
        target = ["-raw", "127.0.0.1:{port}"]
    else:
        from duck_app import app  # type: ignore[import-not-found]

        server = WSGIServer(("127.0.0.1", 0), app, log=None, backlog=4096)
        target = ["-url", "ws://127.0.0.1:{port}/ws"]
    server.start()
    port = server.server_port
    loadgen = ensure_built()
    # One connection opened and closed first, as a running server has seen.
    address = [part.format(port=port) for part in target]
    warm = [str(loadgen), *address, "-mode", "idle", "-conns", "1", "-settle", "0", "-hold", "0.2", "-deadline", "30s"]
    subprocess.run(warm, check=True, capture_output=True, timeout=60)
    gevent.sleep(0.5)

    if not arguments.rss:
        tracemalloc.start(1)
    before, rss_before = (None if arguments.rss else tracemalloc.take_snapshot()), rss()
    hold = 8
    command = [str(loadgen), *address, "-mode", "idle", "-conns", str(arguments.conns), "-hold", str(hold)]
    command += ["-deadline", "120s"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("MARK hold_start") or time.monotonic() > deadline:
            break
    gevent.sleep(2)
    after, rss_after = (None if arguments.rss else tracemalloc.take_snapshot()), rss()
    process.wait(timeout=hold + 30)
    server.stop()

    count = arguments.conns
    if before is None or after is None:
        print(f"{count} idle connections: RSS {(rss_after - rss_before) / count / 1024:.2f} KiB each")
        return
    stats = after.compare_to(before, "lineno" if arguments.lines else "filename")
    traced = sum(stat.size_diff for stat in stats)
    per_rss, per_traced = (rss_after - rss_before) / count / 1024, traced / count / 1024
    print(f"{count} idle connections: RSS {per_rss:.2f} KiB each, traced by tracemalloc {per_traced:.2f} KiB each")
    print(f"{'bytes/conn':>10}  {'blocks/conn':>11}  file")
    for stat in stats[: arguments.top]:
        frame = stat.traceback[0]
        name = f"{frame.filename}:{frame.lineno}" if arguments.lines else frame.filename
        for marker in ("site-packages/", "lib/python3"):
            if marker in name:
                name = name.split(marker, 1)[1]
        name = name.split("duck_ws_sync/", 1)[-1] if "duck_ws_sync/" in name else name
        print(f"{stat.size_diff / count:10.0f}  {stat.count_diff / count:11.2f}  {name}")


if __name__ == "__main__":
    main()
