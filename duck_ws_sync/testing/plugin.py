"""The pytest plugin: the fixtures ``ws_live_server`` and ``ws_connect``.

pytest loads it by itself where this package is installed (the
``pytest11`` entry point). A test module, or a conftest, says which
application to serve with a ``ws_app`` fixture::

    @pytest.fixture(scope="module")
    def ws_app():
        return WebSocketMiddleware(None, [path("/ws", Echo)])

    def test_echo(ws_connect):
        ws = ws_connect("/ws")
        ws.send("hi")
        assert ws.receive() == "You sent hi"

``ws_live_server`` serves ``ws_app`` for as long as ``ws_app`` lives: one
server for the module when ``ws_app`` is module-scoped, one per test when
it is function-scoped. ``ws_connect(path, **options)`` opens a
``WebSocketClient`` to it and closes every connection it made when the test
ends. The marker ``ws_server`` chooses the server, with the arguments of
``duck_ws_sync.testing.serve``: ``@pytest.mark.ws_server("gunicorn",
worker="gthread")`` (``ws_app`` then returns an import string).

This module imports nothing heavy: gevent and websocket-client are loaded
when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["ws_connect", "ws_live_server"]

_SERVERS = pytest.StashKey[dict[Any, Any]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ws_server(server='thread', **options): how ws_live_server serves ws_app "
        "(the arguments of duck_ws_sync.testing.serve, such as server='gunicorn', worker='gthread')",
    )


@pytest.fixture
def ws_live_server(request: pytest.FixtureRequest, ws_app: Any) -> Any:
    """The ``LiveServer`` serving the application of the ``ws_app`` fixture, for as long as ``ws_app`` lives."""
    from .live import serve  # noqa: PLC0415 (pytest loads this module in every run: gevent only when used)

    marker = request.node.get_closest_marker("ws_server")
    args, kwargs = (marker.args, marker.kwargs) if marker is not None else ((), {})
    owner = _scope_node(request, "ws_app")
    servers = owner.stash.setdefault(_SERVERS, {})
    key = (id(ws_app), repr(args), repr(sorted(kwargs.items())))
    live = servers.get(key)
    if live is None or live.stopped:
        serving = serve(ws_app, *args, **kwargs)
        live = servers[key] = serving.__enter__()
        owner.addfinalizer(lambda: serving.__exit__(None, None, None))
    return live


@pytest.fixture
def ws_connect(ws_live_server: Any) -> Iterator[Callable[..., Any]]:
    """``ws_connect(path, **options)``: a ``WebSocketClient`` connected to ``ws_live_server``; closed after the test."""
    made: list[Any] = []

    def connect(path: str = "/", **options: Any) -> Any:
        __tracebackhide__ = True  # a failed handshake is the test's
        client = ws_live_server.connect(path, **options)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close(timeout=2)


def _scope_node(request: pytest.FixtureRequest, name: str) -> Any:
    """The collection node whose lifetime is that of the fixture ``name`` (the test's, when it cannot be told)."""
    try:
        # pytest has no public way to read another fixture's scope.
        scope = request._get_active_fixturedef(name).scope
    except Exception:  # a pytest without it: per test, which is always right
        scope = "function"
    node = request.node
    if scope == "class":
        return node.getparent(pytest.Class) or node.getparent(pytest.Module) or node
    if scope == "module":
        return node.getparent(pytest.Module) or node
    if scope == "package":
        return node.getparent(pytest.Package) or request.session
    if scope == "session":
        return request.session
    return node
