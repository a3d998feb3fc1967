"""The servers under test, in the table's column order, and the two HTTP servers of the overhead workload.

Each peer is a script or app module in ``bench/peers/``; duck_ws_sync's are
imported from ``--root`` (or a ``--compare`` checkout) through PYTHONPATH,
and ``DUCK_BENCH_ROOT`` makes the peer refuse to run with any other copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from procs import Spec

PEERS = Path(__file__).resolve().parent / "peers"
RAW = "raw"  # the key of the reference server: every ratio is to it


# gunicorn -k gthread's threads, for requests and handshakes (each WebSocket
# runs in a thread of its own): as many as W2's and W5's 1,000 connections and
# more, as when every WebSocket held one, so that runs stay comparable.
GTHREAD_THREADS = 1400


def _gunicorn(app: str, worker: tuple[str, ...] = ("-k", "gevent"), workers: int = 1) -> tuple[str, ...]:
    options = ["--no-control-socket"] if _gunicorn_has("control_socket_disable") else []
    return (
        sys.executable, "-m", "gunicorn", *worker, "-w", str(workers), "-b", "127.0.0.1:0",
        "--backlog", "4096", "--worker-connections", "20000", "--graceful-timeout", "2",
        "--log-level", "info", *options, app,
    )  # fmt: skip


def _gunicorn_has(setting: str) -> bool:
    try:
        from gunicorn.config import Config
    except ImportError:
        return False
    return setting in Config().settings


def _uwsgi(cores: int) -> tuple[str, ...]:
    """uWSGI's own HTTP parser in its one worker, gevent mode with ``cores`` greenlets (monkey-patched first).

    No master process (nothing else to run); the port is the kernel's pick, which
    the app prints. ``--home`` is this interpreter's virtualenv, where gevent is.
    """
    binary = Path(sysconfig.get_path("scripts")) / "uwsgi"
    home = ("--home", sys.prefix) if sys.prefix != sys.base_prefix else ()
    return (
        str(binary) if binary.exists() else shutil.which("uwsgi") or "uwsgi", "--strict", *home,
        "--http-socket", "127.0.0.1:0", "--gevent", str(cores), "--gevent-early-monkey-patch",
        "--wsgi-file", str(PEERS / "uwsgi_echo.py"), "--listen", "4096", "--websocket-max-size", "2048",  # KiB: 2 MiB
        "--disable-logging", "--need-app",
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The redis-server that run.py starts when a selected server needs it (W5 across workers).
REDIS_PORT = _free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"


def _script(name: str) -> tuple[str, ...]:
    return (sys.executable, str(PEERS / name))


def _peer(key: str, label: str, command: tuple[str, ...], root: Path | None = None, **flags: Any) -> Spec:
    """A server whose modules are found in PEERS, and duck_ws_sync (if any) in ``root``."""
    if root is None:
        env: tuple[tuple[str, str], ...] = (("PYTHONPATH", str(PEERS)),)
    else:
        env = (("PYTHONPATH", f"{root}{os.pathsep}{PEERS}"), ("DUCK_BENCH_ROOT", str(root)))
    if flags.get("redis"):
        env += (("DUCK_WS_SYNC_BROKER", REDIS_URL),)
    return Spec(key, label, command, env, cwd=PEERS, root=root, **flags)


def _floor(root: Path) -> Spec:
    """The minimal WebSocket echo (W1-W3, W5): it borrows only the C unmasking of the checkout at ``root``."""
    env = (("PYTHONPATH", f"{root}{os.pathsep}{PEERS}"),)
    return Spec("floor", "WebSocket floor (gevent)", _script("ws_floor.py"), env, cwd=PEERS, floor=True)


def servers(root: Path, compare: Sequence[Path] = (), most: int = 10000) -> list[Spec]:
    """Every WebSocket server, raw TCP first; ``compare`` adds other checkouts' duck_ws_sync on pywsgi.

    ``most`` is the most connections a workload holds at once: uWSGI serves as many
    requests at a time as it has greenlets (``--gevent``), and it gets 100 more.
    """
    specs = [
        _peer(RAW, "raw gevent TCP", _script("raw_tcp.py"), raw=True),
        _floor(root),
        _peer("aiohttp", "aiohttp", _script("aiohttp_echo.py")),
        _peer("websockets", "websockets", _script("websockets_echo.py")),
        _peer("picows", "picows", _script("picows_echo.py")),
        _peer("gws", "gevent-websocket", _script("gws_echo.py")),
        _peer("uwsgi", "uWSGI (gevent)", _uwsgi(most + 100)),
        _peer("flask-sock", "Flask-Sock (gunicorn gevent)", _gunicorn("flask_sock_app:app"), gunicorn=True),
        _peer("duck-gunicorn", "duck_ws_sync (gunicorn gevent)", _gunicorn("duck_app:app"), root, gunicorn=True),
        _peer("duck-pywsgi", "duck_ws_sync (pywsgi)", _script("duck_pywsgi.py"), root),
        _peer(
            "duck-gthread", "duck_ws_sync (gunicorn gthread)",
            _gunicorn("duck_app:app", ("-k", "gthread", "--threads", str(GTHREAD_THREADS))), root,
            gunicorn=True, threaded=True,
        ),
    ]  # fmt: skip
    # W5 through groups and duck_ws_sync.broadcast, and to one user's 1,000 connections with
    # send_to_user: in one worker, and across two through Redis.
    specs += [
        _peer(
            "duck-groups", "duck_ws_sync broadcast() (gunicorn gevent)", _gunicorn("duck_groups_app:app"), root,
            gunicorn=True, bcast_only=True,
        ),
        _peer(
            "duck-redis", "duck_ws_sync broadcast() via Redis (gunicorn gevent -w 2)",
            _gunicorn("duck_groups_app:app", workers=2), root, gunicorn=True, bcast_only=True, workers=2, redis=True,
        ),
        _peer(
            "duck-user", "duck_ws_sync send_to_user() (gunicorn gevent)", _gunicorn("duck_groups_app:users_app"), root,
            gunicorn=True, bcast_only=True,
        ),
        _peer(
            "duck-user-redis", "duck_ws_sync send_to_user() via Redis (gunicorn gevent -w 2)",
            _gunicorn("duck_groups_app:users_app", workers=2), root, gunicorn=True, bcast_only=True, workers=2,
            redis=True,
        ),
    ]  # fmt: skip
    for number, other in enumerate(compare, 1):
        label = f"duck_ws_sync #{number} (pywsgi)"
        specs.append(_peer(f"duck-pywsgi-{number}", label, _script("duck_pywsgi.py"), other))
    return specs


def http_servers(root: Path) -> list[Spec]:
    """gunicorn -k gevent serving a bare WSGI app, and the same app behind WebSocketMiddleware."""
    return [
        _peer("http-bare", "bare WSGI app", _gunicorn("http_app:bare"), gunicorn=True, http=True),
        _peer("http-wrapped", "+ WebSocketMiddleware", _gunicorn("http_app:wrapped()"), root, gunicorn=True, http=True),
    ]


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the peers run on."""
    found = {"python": sys.version.split()[0]}
    names = (
        "gevent", "greenlet", "gunicorn", "aiohttp", "websockets", "picows", "aiofastnet", "gevent-websocket",
        "uwsgi", "flask", "flask-sock",
    )  # fmt: skip
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def source_state(root: Path) -> str:
    """The commit of a checkout, and a digest of uncommitted changes to its duck_ws_sync, if any."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        diff = git("diff", "HEAD", "--", "duck_ws_sync")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", "duck_ws_sync")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    if not diff and not untracked:
        return commit
    return f"{commit} + uncommitted changes (digest {hashlib.sha1((diff + untracked).encode()).hexdigest()[:10]})"
