"""The upgrade request a view gets in plain WSGI mode: Duck's request API where views touch it."""

from __future__ import annotations

import pytest

from duck_ws_sync.request import QueryDict, WebSocketRequest


def request(query: str = "", **environ: str) -> WebSocketRequest:
    return WebSocketRequest({"REQUEST_METHOD": "GET", "PATH_INFO": "/ws", "QUERY_STRING": query, **environ})


def test_get_gives_the_first_value_and_getlist_all():
    get = request("token=good&a=1&a=2&empty=").GET
    assert isinstance(get, QueryDict)
    assert get.get("token") == "good"
    assert get.get("a") == get["a"] == "1"
    assert get.getlist("a") == ["1", "2"]
    assert get.get("empty") == ""
    assert get.get("missing") is None and get.get("missing", "x") == "x"
    assert get.getlist("missing") == [] and get.getlist("missing", ["d"]) == ["d"]
    with pytest.raises(KeyError):
        get["missing"]
    assert dict(get) == {"token": ["good"], "a": ["1", "2"], "empty": [""]}


def test_getlist_returns_a_copy():
    get = request("a=1").GET
    get.getlist("a").append("2")
    assert get.getlist("a") == ["1"]


@pytest.mark.parametrize(
    ("host", "hostname", "port"),
    [
        ("example.com", "example.com", None),
        ("example.com:8080", "example.com", 8080),
        ("[::1]:8000", "[::1]", 8000),
        ("[::1]", "[::1]", None),
        ("", "", None),
    ],
)
def test_host_hostname_and_port(host, hostname, port):
    upgrade = request(HTTP_HOST=host) if host else request()
    assert (upgrade.host, upgrade.hostname, upgrade.port) == (host, hostname, port)


def test_duck_names_for_meta_cookies_fullpath_origin_and_scheme():
    upgrade = request("a=1", HTTP_COOKIE="sid=x", HTTP_ORIGIN="https://example.com", **{"wsgi.url_scheme": "https"})
    assert upgrade.META["QUERY_STRING"] == "a=1"
    assert upgrade.COOKIES == {"sid": "x"}
    assert upgrade.fullpath == "/ws?a=1"
    assert request().fullpath == "/ws"
    assert upgrade.origin == "https://example.com"
    assert upgrade.uses_https is True and request().uses_https is False
