"""Trusted proxies: the real client behind nginx or a load balancer, and nobody else's word for it.

``WebSocketMiddleware(app, urlpatterns, trusted_proxies=[...])`` lists the
proxies in front of the server, by address or network (``"10.0.0.0/8"``,
``"::1"``; ``"unix"`` for a proxy on a Unix socket, whose peer has no
address). For a WebSocket upgrade whose direct peer is one of them, the
forwarding headers are honoured:

- the client: RFC 7239's ``Forwarded`` (its ``for``), else
  ``X-Forwarded-For``, read from the right, each trusted proxy skipped: the
  first address that is not a trusted proxy is the client's (a client that
  sends its own ``X-Forwarded-For`` only adds entries on the left, which
  are never reached);
- the scheme and host the client used: the ``proto`` and ``host`` of that
  ``Forwarded`` element, else the right-most ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` (those the nearest proxy set).

The environ is then rewritten as the client's, as the server would have
seen it without the proxy (``REMOTE_ADDR``, ``REMOTE_PORT``,
``wsgi.url_scheme``, ``HTTP_HOST``), so the view's request, Duck's
request and the same-origin check all see the client; what the server saw
is kept under ``environ["duck_ws_sync.proxy"]``. From any other peer these
headers are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# One ``name=value`` pair of a Forwarded element (RFC 7239 §4): a token or a quoted string.
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class TrustedProxies:
    """The proxies whose forwarding headers are believed.

    Args:
        proxies: Addresses and networks (``ipaddress`` notation), and
            ``"unix"`` for a peer on a Unix socket.

    Raises:
        ValueError: For an entry that is neither.
    """

    def __init__(self, proxies: Iterable[str]) -> None:
        self.networks: list[Network] = []
        self.unix = False
        for entry in proxies:
            if entry == "unix":
                self.unix = True
            else:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def trusts(self, address: str) -> bool:
        """Whether the peer at ``address`` (a ``REMOTE_ADDR``) is a trusted proxy."""
        if not address:
            return self.unix
        parsed = _address(address)
        return parsed is not None and any(parsed in network for network in self.networks)

    def apply(self, environ: MutableMapping[str, Any]) -> None:
        """Rewrite ``environ`` as the client's when its peer is a trusted proxy that forwarded it."""
        peer = environ.get("REMOTE_ADDR") or ""
        if not self.trusts(peer):
            return
        forwarded = environ.get("HTTP_FORWARDED")
        if forwarded:
            client, scheme, host = self._from_forwarded(forwarded)
        else:
            client, scheme, host = self._from_x_forwarded(environ)
        if client is None and scheme is None and host is None:
            return
        environ["duck_ws_sync.proxy"] = {
            "REMOTE_ADDR": peer,
            "REMOTE_PORT": environ.get("REMOTE_PORT", ""),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme", "http"),
            "HTTP_HOST": environ.get("HTTP_HOST", ""),
            "scheme": scheme,
        }
        if client is not None:
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client
        if scheme is not None:
            environ["wsgi.url_scheme"] = scheme
        if host is not None:
            environ["HTTP_HOST"] = host

    def _client(self, hops: list[str]) -> int:
        """The index of the client among ``hops`` (left to right): the right-most one not a trusted proxy."""
        for index in range(len(hops) - 1, 0, -1):
            address = _address(_node(hops[index])[0])
            if address is None or not any(address in network for network in self.networks):
                return index
        return 0

    def _from_forwarded(self, header: str) -> tuple[tuple[str, str] | None, str | None, str | None]:
        parsed = [_parse_element(element) for element in _split_quoted(header, ",")]
        elements = [element for element in parsed if element is not None]
        if not elements:
            return None, None, None
        hops = [element.get("for", "") for element in elements]
        chosen = elements[self._client(hops)]
        client = _client_address(chosen.get("for", ""))
        return client, _scheme(chosen.get("proto")), _host(chosen.get("host"))

    def _from_x_forwarded(
        self, environ: MutableMapping[str, Any]
    ) -> tuple[tuple[str, str] | None, str | None, str | None]:
        hops = _split(environ.get("HTTP_X_FORWARDED_FOR", ""))
        client = _client_address(hops[self._client(hops)]) if hops else None
        protos = _split(environ.get("HTTP_X_FORWARDED_PROTO", ""))
        hosts = _split(environ.get("HTTP_X_FORWARDED_HOST", ""))
        return client, _scheme(protos[-1] if protos else None), _host(hosts[-1] if hosts else None)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _split_quoted(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator``, except inside quoted strings (RFC 7230 §3.2.6)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for character in text:
        if escaped:
            escaped = False
        elif character == "\\" and quoted:
            escaped = True
        elif character == '"':
            quoted = not quoted
        elif character == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(character)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _parse_element(element: str) -> dict[str, str] | None:
    """A Forwarded element (``for=...;proto=...``) as a dict, names lowercased, quotes removed; None if malformed."""
    pairs: dict[str, str] = {}
    for part in _split_quoted(element, ";"):
        match = _PAIR.fullmatch(part)
        if match is None:
            return None
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs[name] = value
    return pairs


def _node(node: str) -> tuple[str, str]:
    """A node's address and port (``""`` when none): ``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80``."""
    node = node.strip()
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return node, ""
        host, rest = node[1:end], node[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, port = node.split(":")
    else:
        host, port = node, ""
    return host, port if port.isdigit() else ""


def _client_address(node: str) -> tuple[str, str] | None:
    """The client's address and port, or None when the node is no IP address ("unknown", an obfuscated name)."""
    host, port = _node(node)
    address = _address(host)
    return None if address is None else (str(address), port)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _scheme(value: str | None) -> str | None:
    return _SCHEMES.get(value.strip().lower()) if value else None


def _host(value: str | None) -> str | None:
    """A forwarded host, if it looks like one (no spaces, no path)."""
    if not value:
        return None
    value = value.strip()
    return value if value and not any(character in value for character in ' /\\@"') else None
