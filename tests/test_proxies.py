"""Trusted proxies (``proxies.py``): which forwarding headers are believed, and what they give.

Real servers and clients: tests/integration/test_security.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from duck_ws_sync.proxies import TrustedProxies

NETWORKS = ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
PROXIES = TrustedProxies(NETWORKS)  # proxy_headers="x-forwarded"
RFC_7239 = TrustedProxies(NETWORKS, "forwarded")


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


def seen(env: dict[str, Any]) -> tuple[str, str, str, str]:
    return env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"], env["HTTP_HOST"]


PEER = ("10.0.0.5", "40000", "http", "backend:8000")  # what the server saw


# proxy_headers="x-forwarded", the default: X-Forwarded-For and X-Forwarded-Proto.


def test_x_forwarded_for_and_proto_from_a_trusted_peer() -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto="https"))
    assert seen(env) == ("203.0.113.7", "", "https", "backend:8000")
    assert env["duck_ws_sync.proxy"] == {
        "REMOTE_ADDR": "10.0.0.5",
        "REMOTE_PORT": "40000",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "backend:8000",
        "scheme": "https",
    }


def test_by_default_a_clients_own_forwarded_and_x_forwarded_host_are_ignored() -> None:
    # What nginx passes through untouched: the client's own headers beside the proxy's.
    env = applied(
        environ(
            x_forwarded_for="203.0.113.7",
            forwarded="for=10.1.2.3;proto=https;host=admin.internal",
            x_forwarded_host="admin.internal",
        )
    )
    assert seen(env) == ("203.0.113.7", "", "http", "backend:8000")


def test_by_default_forwarded_alone_changes_nothing() -> None:
    original = environ(forwarded="for=203.0.113.7;proto=https")
    assert applied(dict(original)) == original


@pytest.mark.parametrize("peer", ["203.0.113.50", "10.0.0.5x", "", "11.0.0.1"])
@pytest.mark.parametrize("proxies", [PROXIES, RFC_7239], ids=["x-forwarded", "forwarded"])
def test_headers_from_an_untrusted_peer_change_nothing(peer: str, proxies: TrustedProxies) -> None:
    original = environ(peer, x_forwarded_for="1.2.3.4", x_forwarded_proto="https", forwarded="for=1.2.3.4")
    assert applied(dict(original), proxies) == original


def test_the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy() -> None:
    env = applied(environ(x_forwarded_for="6.6.6.6, 203.0.113.7, 10.9.9.9, 192.0.2.1"))
    assert env["REMOTE_ADDR"] == "203.0.113.7"


def test_only_trusted_hops_give_the_left_most() -> None:
    assert applied(environ(x_forwarded_for="10.1.1.1, 10.2.2.2"))["REMOTE_ADDR"] == "10.1.1.1"


@pytest.mark.parametrize("left", ["garbage", '"x', "[::1", "1.2.3.4:99999", "unknown"])
def test_what_a_client_put_left_of_its_own_hop_is_never_read(left: str) -> None:
    # nginx's $proxy_add_x_forwarded_for appends the client's address to what the client sent.
    env = applied(environ(x_forwarded_for=f"{left}, 203.0.113.9"))
    assert env["REMOTE_ADDR"] == "203.0.113.9"


@pytest.mark.parametrize("hop", ["garbage", "unknown", "203.0.113.9:99999", "[203.0.113.9]", "[2001:db8::1"])
def test_a_malformed_hop_where_the_client_should_be_makes_the_peer_the_client(hop: str) -> None:
    env = applied(environ(x_forwarded_for=f"198.51.100.1, {hop}, 10.0.0.9", x_forwarded_proto="https"))
    assert seen(env) == PEER  # as if the header were absent: the proto too
    assert "duck_ws_sync.proxy" not in env


@pytest.mark.parametrize(
    ("hop", "client"),
    [
        ("203.0.113.7:8443", ("203.0.113.7", "8443")),
        ("[2001:db9::7]:443", ("2001:db9::7", "443")),
        ("2001:db9::7", ("2001:db9::7", "")),
    ],
)
def test_hops_with_ports_and_ipv6(hop: str, client: tuple[str, str]) -> None:
    env = applied(environ(x_forwarded_for=hop))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client


def test_the_right_most_proto_is_the_nearest_proxys() -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto="http, https"))
    assert env["wsgi.url_scheme"] == "https"


@pytest.mark.parametrize("value", ["gopher", ""])
def test_an_unknown_scheme_is_ignored(value: str) -> None:
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_proto=value))
    assert env["wsgi.url_scheme"] == "http"


def test_no_forwarding_headers_change_nothing() -> None:
    original = environ()
    assert applied(dict(original)) == original


# proxy_headers="forwarded": RFC 7239 only.


@pytest.mark.parametrize(
    ("header", "client", "scheme", "host"),
    [
        ("for=203.0.113.7;proto=https;host=chat.example", ("203.0.113.7", ""), "https", "chat.example"),
        ('For="[2001:db9:cafe::17]:4711"', ("2001:db9:cafe::17", "4711"), None, None),
        ("for=203.0.113.7:8443", ("203.0.113.7", "8443"), None, None),
        (
            "for=6.6.6.6;proto=http, for=203.0.113.7;proto=wss, for=10.0.0.9;proto=http",
            ("203.0.113.7", ""),
            "https",
            None,
        ),
        ("for=10.1.2.3, for=203.0.113.7", ("203.0.113.7", ""), None, None),
        ("garbage without equals, for=203.0.113.7", ("203.0.113.7", ""), None, None),
        ('for="203.0.113.7";host="a.example, with a comma"', ("203.0.113.7", ""), None, None),
        ('for=203.0.113.7;host="chat.example"', ("203.0.113.7", ""), None, "chat.example"),
        ("for=10.1.1.1, for=10.2.2.2", ("10.1.1.1", ""), None, None),
    ],
)
def test_the_rfc_7239_forwarded_header(
    header: str, client: tuple[str, str], scheme: str | None, host: str | None
) -> None:
    env = applied(environ(forwarded=header, x_forwarded_for="9.9.9.9"), RFC_7239)  # X-Forwarded-For ignored
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == client
    assert env["wsgi.url_scheme"] == (scheme or "http")
    assert env["HTTP_HOST"] == (host or "backend:8000")


@pytest.mark.parametrize("node", ["unknown", "_hidden", '"_hidden:_port"'])
def test_a_client_not_disclosed_keeps_the_peers_address_but_its_proto_counts(node: str) -> None:
    env = applied(environ(forwarded=f"for={node};proto=https"), RFC_7239)
    assert seen(env) == ("10.0.0.5", "40000", "https", "backend:8000")


@pytest.mark.parametrize(
    "header",
    [
        'for=10.1.2.3, for="x, for=203.0.113.7',  # the client's unclosed quote swallows what the proxy appended
        'for="203.0.113.7;proto=https',
        "for=203.0.113.7, nonsense;;==",  # a malformed element on the right
        'for="not an address";proto=https',
        'for="[2001:db8::1";proto=https',
        "for=203.0.113.7:99999",
        "for=203.0.113.7;for=198.51.100.1",  # a parameter twice in one element
        "for=_hidden:99999",
    ],
)
def test_a_malformed_forwarded_header_makes_the_peer_the_client(header: str) -> None:
    env = applied(environ(forwarded=header), RFC_7239)
    assert seen(env) == PEER
    assert "duck_ws_sync.proxy" not in env


def test_a_quoted_string_may_hold_an_escaped_quote() -> None:
    env = applied(environ(forwarded='for=203.0.113.7;host="a\\"b", for=10.0.0.9'), RFC_7239)
    assert seen(env) == ("203.0.113.7", "", "http", "backend:8000")  # a host with a quote is no host


# Other setups: a tuple of header names.


def test_x_forwarded_host_is_believed_only_when_listed() -> None:
    headers = environ(x_forwarded_for="203.0.113.7", x_forwarded_proto="https", x_forwarded_host="a, chat.example")
    listed = TrustedProxies(NETWORKS, ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"))
    assert seen(applied(dict(headers), listed)) == ("203.0.113.7", "", "https", "chat.example")
    assert seen(applied(dict(headers))) == ("203.0.113.7", "", "https", "backend:8000")


@pytest.mark.parametrize("value", ["evil.example/path", "a b", "user@host", ""])
def test_a_host_that_is_no_host_is_ignored(value: str) -> None:
    listed = TrustedProxies(NETWORKS, ("x-forwarded-for", "x-forwarded-host"))
    env = applied(environ(x_forwarded_for="203.0.113.7", x_forwarded_host=value), listed)
    assert env["HTTP_HOST"] == "backend:8000"


@pytest.mark.parametrize(
    ("value", "client"), [("203.0.113.7", "203.0.113.7"), ("1.2.3.4, 5.6.7.8", "10.0.0.5"), ("", "10.0.0.5")]
)
def test_x_real_ip(value: str, client: str) -> None:
    env = applied(environ(x_real_ip=value, x_forwarded_for="9.9.9.9"), TrustedProxies(NETWORKS, ("X-Real-IP",)))
    assert env["REMOTE_ADDR"] == client


def test_only_the_scheme_from_a_proxy_that_sets_only_that() -> None:
    env = applied(
        environ(x_forwarded_for="9.9.9.9", x_forwarded_proto="https"), TrustedProxies(NETWORKS, ["X-Forwarded-Proto"])
    )
    assert seen(env) == ("10.0.0.5", "40000", "https", "backend:8000")


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ("x-forwarded-for", 'is "x-forwarded", "forwarded" or a tuple'),
        (("X-Forwarded-For", "X-Client-IP"), "'X-Client-IP' is not one of"),
        (("Forwarded", "X-Forwarded-For"), "forwarded and x-forwarded-for both give the address"),
        (("X-Real-IP", "X-Forwarded-For"), "x-real-ip and x-forwarded-for both give the address"),
        (("Forwarded", "X-Forwarded-Host"), "both give the host"),
    ],
)
def test_proxy_headers_that_cannot_be_understood_are_refused_at_once(headers: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TrustedProxies(NETWORKS, headers)


def test_the_named_sets_in_any_case() -> None:
    assert TrustedProxies([], "Forwarded").sources == {
        "address": "forwarded",
        "scheme": "forwarded",
        "host": "forwarded",
    }
    assert TrustedProxies([], "X-FORWARDED").sources == {"address": "x-forwarded-for", "scheme": "x-forwarded-proto"}


# Peers.


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
