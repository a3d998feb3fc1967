"""Trusted proxies (``proxies.py``): which forwarding headers are believed, and what they give.

Real servers and clients: tests/integration/test_security.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from duck_ws_sync.proxies import TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])


def environ(peer: str = "10.0.0.5", **headers: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "REMOTE_ADDR": peer,
        "REMOTE_PORT": "40000",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "backend:8000",
    }
    base.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return base


def applied(env: dict[str, Any], proxies: TrustedProxies = PROXIES) -> dict[str, Any]:
    proxies.apply(env)
    return env


def test_x_forwarded_headers_from_a_trusted_peer() -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto="https", x_forwarded_host="chat.example"))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "")
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "chat.example"
    assert env["duck_ws_sync.proxy"] == {
        "REMOTE_ADDR": "10.0.0.5",
        "REMOTE_PORT": "40000",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "backend:8000",
        "scheme": "https",
    }


@pytest.mark.parametrize("peer", ["203.0.113.50", "10.0.0.5x", "", "11.0.0.1"])
def test_headers_from_an_untrusted_peer_change_nothing(peer: str) -> None:
    original = environ(peer, x_forwarded_for="1.2.3.4", x_forwarded_proto="https", forwarded="for=1.2.3.4")
    assert applied(dict(original)) == original


def test_the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy() -> None:
    env = applied(environ(x_forwarded_for="6.6.6.6, 203.0.113.7, 10.9.9.9, 192.0.2.1"))
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_only_trusted_hops_give_the_left_most() -> None:
    assert applied(environ(x_forwarded_for="10.1.1.1, 10.2.2.2"))["REMOTE_ADDR"] == "10.1.1.1"


def test_the_right_most_proto_and_host_are_the_nearest_proxys() -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto="http, https", x_forwarded_host="a, b"))
    assert (env["wsgi.url_scheme"], env["HTTP_HOST"]) == ("https", "b")


@pytest.mark.parametrize(
    ("header", "client", "scheme", "host"),
    [
        ("for=203.0.113.7;proto=https;host=chat.example", ("203.0.113.7", ""), "https", "chat.example"),
        ('For="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", "4711"), None, None),
        ("for=203.0.113.7:8443", ("203.0.113.7", "8443"), None, None),
        # The right-most element not from a trusted proxy: its proto and host too.
        (
            "for=6.6.6.6;proto=http, for=203.0.113.7;proto=wss, for=10.0.0.9;proto=http",
            ("203.0.113.7", ""),
            "https",
            None,
        ),
        ('for="203.0.113.7";host="a.example, with a comma"', ("203.0.113.7", ""), None, None),
        ('for=203.0.113.7;host="chat.example"', ("203.0.113.7", ""), None, "chat.example"),
    ],
)
def test_the_rfc_7239_forwarded_header(
    header: str, client: tuple[str, str], scheme: str | None, host: str | None
) -> None:
    env = applied(environ(forwarded=header, x_forwarded_for="9.9.9.9"))  # Forwarded wins
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client
    assert env["wsgi.url_scheme"] == (scheme or "http")
    assert env["HTTP_HOST"] == (host or "backend:8000")


@pytest.mark.parametrize("node", ["unknown", "_hidden", "not an address", "[2001:db8::1"])
def test_a_client_that_is_no_address_keeps_the_peers(node: str) -> None:
    env = applied(environ(forwarded=f'for="{node}";proto=https'))
    assert env["REMOTE_ADDR"] == "10.0.0.5"
    assert env["wsgi.url_scheme"] == "https"


def test_a_malformed_forwarded_element_is_skipped() -> None:
    env = applied(environ(forwarded="garbage without equals, for=203.0.113.7"))
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert "duck_ws_sync.proxy" not in applied(environ(forwarded="nonsense;;=="))


@pytest.mark.parametrize("value", ["gopher", ""])
def test_an_unknown_scheme_is_ignored(value: str) -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto=value))
    assert env["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize("value", ["evil.example/path", "a b", "user@host", ""])
def test_a_host_that_is_no_host_is_ignored(value: str) -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_host=value))
    assert env["HTTP_HOST"] == "backend:8000"


def test_no_forwarding_headers_change_nothing() -> None:
    original = environ()
    assert applied(dict(original)) == original


def test_a_unix_socket_peer_is_trusted_only_when_listed() -> None:
    assert applied(environ("", x_forwarded_for="203.0.113.7"), TrustedProxies(["unix"]))["REMOTE_ADDR"] == "203.0.113.7"
    assert applied(environ("", x_forwarded_for="203.0.113.7"))["REMOTE_ADDR"] == ""


def test_ipv6_peers_and_networks() -> None:
    assert PROXIES.trusts("2001:db8::1")
    assert not PROXIES.trusts("2001:db9::1")
    assert not TrustedProxies([])


def test_a_bad_entry_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        TrustedProxies(["localhost"])
