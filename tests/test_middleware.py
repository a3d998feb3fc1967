"""``WebSocketMiddleware`` in-process: which routes it serves, and its ``prepare`` hook refusing an upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.protocol import Response
from duck_ws_sync.urls import path

UPGRADE = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/ws/rooms/lobby",
    "QUERY_STRING": "",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "127.0.0.1",
    "HTTP_UPGRADE": "websocket",
    "HTTP_CONNECTION": "Upgrade",
    "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    "HTTP_SEC_WEBSOCKET_VERSION": "13",
}


class Room(WebSocketView):
    pass


def http_view(request: Any) -> None:
    pass


def ducks_pattern(url: str, handler: Any, regex: bool = False) -> dict[str, Any]:
    """A route as ``duck.urls.path`` makes it: a dict with these keys."""
    return {"url": url, "handler": handler, "name": None, "methods": None, "regex": regex}


def test_ducks_patterns_to_our_views_are_served_and_the_others_left_to_the_app() -> None:
    middleware = WebSocketMiddleware(
        None,
        [
            ducks_pattern("/", http_view),
            ducks_pattern("/ws/rooms/<room>", Room),
            ducks_pattern(r"/ws/raw/(?P<name>\w+)", Room, regex=True),
            path("/ws/ours", Room),
        ],
    )
    routes = [(route.url, route.regex) for route in middleware.urlpatterns]
    assert routes == [("/ws/rooms/<room>", False), (r"/ws/raw/(?P<name>\w+)", True), ("/ws/ours", False)]
    assert middleware.urlpatterns[0].match("/ws/rooms/lobby") == {"room": "lobby"}


def test_something_that_is_no_pattern_is_refused() -> None:
    with pytest.raises(TypeError, match="not a URL pattern"):
        WebSocketMiddleware(None, [("/ws", Room)])  # type: ignore[list-item]


def test_prepare_can_refuse_the_upgrade_with_its_own_response() -> None:
    class Strict(WebSocketMiddleware):
        def prepare(self, view_class: Any, request: Any) -> Any:
            return Response(451, [("Content-Type", "text/plain")], b"not here\n")

    answered: list[tuple[str, list[tuple[str, str]]]] = []
    body = Strict(None, [path("/ws/rooms/<room>", Room)])(
        dict(UPGRADE), lambda status, headers: answered.append((status, headers))
    )
    assert answered == [("451 Unavailable For Legal Reasons", [("Content-Type", "text/plain")])]
    assert list(body) == [b"not here\n"]
