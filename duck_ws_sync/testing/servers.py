"""The two ways ``serve`` runs an application: in this process on a thread of its own, or under gunicorn.

Both listen on a socket bound here first, so a port that cannot be had is
an error at once, and the port is known before the server starts.

``InProcessServer``: gevent.pywsgi on an OS thread with its own gevent hub.
The test's own thread needs no monkey patching, and the server keeps
working if the test process is patched (the thread is then started with
the original ``_thread``). WebSocket sessions run in that hub, as under
``gunicorn -k gevent``.

``GunicornServer``: a real gunicorn master and one worker, in a
subprocess given the listening socket (``--bind fd://N``). It is ready when
its worker answers (a malformed request gets gunicorn's own 400, which
only a worker that loaded the application sends).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
from gevent import monkey, pywsgi

from ..hosts.gevent.sessions import end_sessions

__all__ = ["GunicornServer", "InProcessServer", "load", "no_control_socket", "original"]

# A request line no server takes: the answer (400) shows a worker is up.
_PROBE = b"DUCK-WS-SYNC-READINESS-PROBE\r\n\r\n"
# How long in-flight plain HTTP requests get when a server stops.
_HTTP_GRACE = 2.0


def original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent's monkey patching (as it is, when nothing was patched)."""
    return monkey.get_original(module, name)


def load(target: str) -> Any:
    """The object an import string such as ``"package.module:app"`` names."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"an application is given as 'package.module:attribute', not {target!r}")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (an OS-level socket, whatever was patched)."""
    sock: socket.socket = original("socket", "socket")(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


class InProcessServer:
    """A WSGI application served by gevent.pywsgi on a thread of this process, with that thread's own hub."""

    def __init__(self, app: Callable[..., Any], listener: socket.socket) -> None:
        self._app = app
        self._listener = listener
        lock = original("_thread", "allocate_lock")
        self._ready, self._done = lock(), lock()
        self._ready.acquire()
        self._done.acquire()
        self._error: BaseException | None = None
        self._hub: Any = None
        self._stopping: Any = None  # a gevent Event of the server's hub
        self._join: Callable[[float], None] = lambda timeout: None

    @property
    def output(self) -> str:
        return ""  # errors go to this process's stderr and logging

    def start(self, timeout: float) -> None:
        """Start serving; raise the server's error when it cannot."""
        self._join = _start_thread(self._run, "duck_ws_sync-live-server")
        if not self._ready.acquire(timeout=timeout):
            raise RuntimeError(f"the server did not start within {timeout:g} s")
        if self._error is not None:
            self._join(timeout)
            raise RuntimeError(f"the server did not start: {self._error!r}") from self._error

    def begin_stop(self) -> None:
        """Stop accepting and close every WebSocket of the server with 1001 (in its own thread)."""
        if self._hub is not None and not self._stopping.is_set():
            self._hub.loop.run_callback_threadsafe(self._stopping.set)

    def wait_stopped(self, timeout: float) -> bool:
        """Wait until the server's thread has ended; False if it has not within ``timeout``."""
        if self._hub is None:
            return True
        if not self._done.acquire(timeout=timeout):
            return False
        self._done.release()
        self._join(timeout)
        return True

    def _run(self) -> None:
        hub = gevent.get_hub()
        try:
            try:
                listener = gevent.socket.socket(fileno=self._listener.detach())
                # SERVER_NAME given: pywsgi would look the address up on a thread of the hub's pool.
                environ = {"SERVER_NAME": "127.0.0.1"}
                server = pywsgi.WSGIServer(listener, self._app, log=None, environ=environ)
                server.start()
                self._stopping = gevent.event.Event()
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._hub = hub if self._error is None else None
                self._ready.release()
            self._stopping.wait()
            server.close()  # no new connections
            end_sessions(hub)
            server.stop(timeout=_HTTP_GRACE)
            _end_threadpool(hub)
        finally:
            hub.destroy(destroy_loop=True)
            self._done.release()


class GunicornServer:
    """An application named by its import string, served by a gunicorn subprocess (one worker)."""

    def __init__(
        self, app: str, listener: socket.socket, worker: str, args: list[str], env: dict[str, str] | None
    ) -> None:
        self._listener = listener
        self._log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed in wait_stopped)
        defaults = ["--threads", "32"] if worker == "gthread" else []  # requests and handshakes at once
        command = [
            sys.executable, "-m", "gunicorn", "-k", worker, "-w", "1", "-b", f"fd://{listener.fileno()}",
            "--graceful-timeout", "5", "--log-level", "info", *no_control_socket(), *defaults, *args, app,
        ]  # fmt: skip
        self._command = command
        self._env = {**os.environ, "PYTHONPATH": _pythonpath(), "PYTHONUNBUFFERED": "1", **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None
        self._final_output = ""

    @property
    def output(self) -> str:
        """What gunicorn printed so far (its log and the application's output)."""
        if self._log.closed:
            return self._final_output
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float) -> None:
        """Start gunicorn; return once its worker answers; raise with its output when it does not."""
        self._process = subprocess.Popen(
            self._command,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=(self._listener.fileno(),),
        )
        port = self._listener.getsockname()[1]
        self._listener.close()  # gunicorn has its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.sendall(_PROBE)
                probe.settimeout(0.1)
                while time.monotonic() < deadline and self._running():
                    try:
                        if probe.recv(1):
                            return  # gunicorn's 400, from a worker that loaded the application
                        break  # the end of the stream: ask again
                    except TimeoutError:
                        continue
            self._running()
            time.sleep(0.05)
        self.begin_stop()
        self.wait_stopped(5)
        raise RuntimeError(f"gunicorn did not answer within {timeout:g} s:\n{self.output}")

    def _running(self) -> bool:
        """True while gunicorn runs; RuntimeError with its output once it has exited."""
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {self._process.returncode}:\n{self.output}")
        return True

    def begin_stop(self) -> None:
        """Ask gunicorn to stop (SIGTERM): its worker closes every WebSocket with 1001 and exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> bool:
        """Wait for gunicorn's exit, killing it after ``timeout``; False if it had to be killed."""
        if self._process is None:
            return True
        try:
            self._process.wait(timeout)
            clean = True
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
            clean = False
        self._final_output = self.output
        self._log.close()
        return clean


def _end_threadpool(hub: Any) -> None:
    """Stop the threads of the hub's pool, if the application used it (a DNS lookup, ``gevent.threadpool``)."""
    pool = hub._threadpool  # (hub.threadpool would make one)
    if pool is None:
        return
    pool.kill()
    deadline = time.monotonic() + _HTTP_GRACE
    while pool.size and time.monotonic() < deadline:
        gevent.sleep(0.01)


def _start_thread(target: Callable[[], None], name: str) -> Callable[[float], None]:
    """Run ``target`` on a new OS thread, even where threading is monkey-patched; return its join."""
    if not monkey.is_module_patched("threading"):
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread.join
    original("_thread", "start_new_thread")(target, ())
    return lambda timeout: None  # the caller waits on a lock the thread releases last


def _pythonpath() -> str:
    """This process's import path for gunicorn, so that what a test imports, gunicorn imports too."""
    inherited = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    installed = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    own = [
        entry
        for entry in (os.getcwd(), *sys.path)
        if entry and os.path.isdir(entry) and not any(entry.startswith(prefix) for prefix in installed)
    ]
    return os.pathsep.join(dict.fromkeys([*own, *inherited]))


def no_control_socket() -> list[str]:
    """gunicorn 24+ opens a control socket by default; a test server needs none."""
    from gunicorn.config import Config  # noqa: PLC0415 (gunicorn only where it serves)

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []
