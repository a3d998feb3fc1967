"""Prometheus metrics of the WebSockets, through ``prometheus_client`` (the ``metrics`` extra).

``metrics_app`` is a WSGI endpoint for a ``/metrics`` route,
``prometheus_client.make_wsgi_app``'s (so ``Accept`` for OpenMetrics,
``?name[]=`` filters and gzip work as there). The metrics are ``stats()``
as Prometheus sees them:

- ``duck_ws_sync_connections_open`` (gauge),
- ``duck_ws_sync_connections_opened_total``,
  ``duck_ws_sync_connections_closed_total{code="1000"}`` (close codes
  1000-1015 each by name; application codes as ``3xxx`` and ``4xxx``, so a
  client cannot make new series at will),
- ``duck_ws_sync_messages_received_total``, ``..._messages_sent_total``,
  ``..._bytes_received_total``, ``..._bytes_sent_total``.

One process (no ``PROMETHEUS_MULTIPROC_DIR``): a collector in
``prometheus_client``'s default registry reads ``stats()`` at each scrape;
``metrics_app`` serves that registry, the application's own metrics with ours.

Several processes (gunicorn ``-w N``): a scrape reaches one worker, so each
worker must leave its figures where the others can read them. That is
``prometheus_client``'s multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory before gunicorn starts, and ``metrics_app`` answers
with the sum over every worker's files (``MultiProcessCollector``). Each
worker writes its ``stats()`` there every ``DUCK_WS_SYNC_METRICS_INTERVAL``
seconds (default 5) from a background thread (a greenlet on gevent), and
at once before it answers a scrape itself: a figure of another worker is
at most that old. Counting stays off the message path either way: each
connection counts in its own protocol core. The open-connections gauge
sums live workers only: a worker removes its file when it exits; for one
that is killed, call ``prometheus_client.multiprocess.mark_process_dead``
from gunicorn's ``child_exit`` hook (docs/operations.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .engine.registry import stats, when_opened

__all__ = ["metrics_app"]

logger = logging.getLogger("duck_ws_sync")

PREFIX = "duck_ws_sync"
_COUNTS = {
    "messages_received": "Text and binary messages received",
    "messages_sent": "Text and binary messages sent",
    "bytes_received": "Bytes of WebSocket frames received",
    "bytes_sent": "Bytes of WebSocket frames sent",
}
_DEFAULT_INTERVAL = 5.0


def code_label(code: int) -> str:
    """The ``code`` label of a close code: RFC 6455's each by number, the application's by range."""
    if 1000 <= code <= 1015:
        return str(code)
    if 3000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"


def _by_label(close_codes: dict[int, int]) -> dict[str, int]:
    labelled: dict[str, int] = {}
    for code, count in close_codes.items():
        label = code_label(code)
        labelled[label] = labelled.get(label, 0) + count
    return labelled


def multiprocess() -> bool:
    """Whether ``prometheus_client`` runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class StatsCollector(Collector):
    """``stats()`` as metrics, read at each scrape (one process)."""

    def collect(self) -> Iterator[Any]:
        snapshot = stats()
        yield GaugeMetricFamily(f"{PREFIX}_connections_open", "WebSockets open", value=snapshot["open"])
        yield CounterMetricFamily(f"{PREFIX}_connections_opened", "WebSockets opened", value=snapshot["opened"])
        closed = CounterMetricFamily(
            f"{PREFIX}_connections_closed", "WebSockets closed, by close code", labels=["code"]
        )
        for label, count in sorted(_by_label(snapshot["close_codes"]).items()):
            closed.add_metric([label], count)
        yield closed
        for name, documentation in _COUNTS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=snapshot[name])


class _Publisher:
    """Writes this process's ``stats()`` into its multiprocess files: the increments since it last did."""

    def __init__(self) -> None:
        self.open = Gauge(f"{PREFIX}_connections_open", "WebSockets open", multiprocess_mode="livesum", registry=None)
        self.opened = Counter(f"{PREFIX}_connections_opened", "WebSockets opened", registry=None)
        self.closed = Counter(
            f"{PREFIX}_connections_closed", "WebSockets closed, by close code", ["code"], registry=None
        )
        self.counts = {name: Counter(f"{PREFIX}_{name}", doc, registry=None) for name, doc in _COUNTS.items()}
        self._lock = threading.Lock()
        self._published: dict[str, Any] = {}
        self._pid = 0  # the process whose counts _published holds
        self._running_in = 0  # the process whose thread publishes

    def publish(self) -> None:
        """Add what changed since the last call (from any thread)."""
        with self._lock:
            if self._pid != os.getpid():  # a fork: the child's counts start afresh
                self._pid, self._published = os.getpid(), {}
            snapshot = stats()
            last = self._published
            self.open.set(snapshot["open"])
            self.opened.inc(snapshot["opened"] - last.get("opened", 0))
            for name, metric in self.counts.items():
                metric.inc(snapshot[name] - last.get(name, 0))
            codes = _by_label(snapshot["close_codes"])
            last_codes = last.get("close_codes", {})
            for label, count in codes.items():
                if count != last_codes.get(label, 0):
                    self.closed.labels(label).inc(count - last_codes.get(label, 0))
            self._published = {**snapshot, "close_codes": codes}

    def ensure_running(self) -> None:
        """Start this process's publishing thread, once per process (after a fork too)."""
        if self._running_in == os.getpid():
            return
        self._running_in = os.getpid()
        threading.Thread(target=self._run, name="duck_ws_sync-metrics", daemon=True).start()
        atexit.register(self._exit, os.getpid())

    def _run(self) -> None:
        interval = float(os.environ.get("DUCK_WS_SYNC_METRICS_INTERVAL") or _DEFAULT_INTERVAL)
        pid = os.getpid()
        while pid == os.getpid():
            time.sleep(interval)
            try:
                self.publish()
            except Exception:
                logger.exception("could not publish the WebSocket metrics")

    def _exit(self, pid: int) -> None:
        if pid == os.getpid():
            self.publish()
            prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


_publisher: _Publisher | None = None

if multiprocess():
    _publisher = _Publisher()
    when_opened(_publisher.ensure_running)
else:
    REGISTRY.register(StatsCollector())


def _registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or the multiprocess files once ours are written."""
    if _publisher is None:
        return REGISTRY
    _publisher.ensure_running()
    _publisher.publish()
    registry = CollectorRegistry(support_collectors_without_names=True)  # so that name[] filters reach it
    prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI endpoint for a ``/metrics`` route: ``prometheus_client.make_wsgi_app`` over our registry.

    In multiprocess mode, the sum over every process of the directory
    (the application's own multiprocess metrics too); otherwise
    ``prometheus_client``'s default registry. The format follows
    ``Accept`` (Prometheus's text format, or OpenMetrics), ``?name[]=``
    keeps the metrics named, ``Accept-Encoding: gzip`` compresses.
    ``HEAD`` gets the headers of a ``GET``; other methods but ``OPTIONS``
    get 405.
    """
    method = environ.get("REQUEST_METHOD", "GET")
    answer: list[Any] = []  # prometheus_client's status and headers

    def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer[:] = [status, headers]

    app = make_wsgi_app(_registry())
    body = b"".join(app({"PATH_INFO": "/", **environ, "REQUEST_METHOD": "GET" if method == "HEAD" else method}, keep))
    start_response(answer[0], [*answer[1], ("Content-Length", str(len(body)))])
    return [b""] if method == "HEAD" else [body]
