"""Trusted proxies: the real client behind nginx or a load balancer, and nobody else's word for it.

``WebSocketMiddleware(app, urlpatterns, trusted_proxies=[...], proxy_headers=...)``
lists the proxies in front of the server, by address or network
(``"10.0.0.0/8"``, ``"::1"``; ``"unix"`` for a proxy on a Unix socket,
whose peer has no address), and names the headers they set. For a
WebSocket upgrade whose direct peer is one of them, those headers, and only
those, are believed:

- ``"x-forwarded"`` (the default): ``X-Forwarded-For`` and
  ``X-Forwarded-Proto``, what nginx, HAProxy and most load balancers set;
- ``"forwarded"``: RFC 7239's ``Forwarded`` (its ``for``, ``proto`` and
  ``host``);
- a tuple of header names for other setups, among ``Forwarded``,
  ``X-Forwarded-For``, ``X-Real-IP``, ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host``, one source each for the address, the scheme and
  the host (``X-Forwarded-Host`` is believed only when listed).

A proxy passes the headers it does not set itself through from the client,
so a header that is not named is ignored even from a trusted peer: a client
cannot claim another address, scheme or host by sending it.

The client is read from the right: in ``X-Forwarded-For`` (or the elements
of ``Forwarded``), the right-most hop that is not a trusted proxy; a client
that sends its own header only adds hops on the left, which are never
reached. The scheme and host are the right-most ones (those the nearest
proxy set), or the chosen ``Forwarded`` element's. A malformed header in
use (an unclosed quote, an element or a hop that does not parse) is taken
as absent: the direct peer is the client; so is a ``for`` of ``unknown``
or an obfuscated name (RFC 7239 §6), whose ``proto`` and ``host`` still
count.

The environ is then rewritten as the client's, as the server would have
seen it without the proxy (``REMOTE_ADDR``, ``REMOTE_PORT``,
``wsgi.url_scheme``, ``HTTP_HOST``), so the view's request, Duck's
request and the same-origin check all see the client; what the server saw
is kept under ``environ["duck_ws_sync.proxy"]``. From any other peer
nothing is read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

__all__ = ["PROXY_HEADERS", "TrustedProxies"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A client's address and port ("" when none was forwarded).
Client = tuple[str, str]

#: The named sets of ``proxy_headers``.
PROXY_HEADERS = {
    "x-forwarded": ("X-Forwarded-For", "X-Forwarded-Proto"),
    "forwarded": ("Forwarded",),
}
# What each header gives: the client's address, the scheme, the host.
_GIVES = {
    "forwarded": ("address", "scheme", "host"),
    "x-forwarded-for": ("address",),
    "x-real-ip": ("address",),
    "x-forwarded-proto": ("scheme",),
    "x-forwarded-host": ("host",),
}

# One ``name=value`` pair of a Forwarded element (RFC 7239 §4): a token or a quoted string.
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')
# RFC 7239 §6.3: an obfuscated node name or port.
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class Malformed(ValueError):
    """A forwarding header in use does not parse: it is taken as absent."""


class TrustedProxies:
    """The proxies whose forwarding headers are believed, and which headers.

    Args:
        proxies: Addresses and networks (``ipaddress`` notation), and
            ``"unix"`` for a peer on a Unix socket.
        headers: ``"x-forwarded"``, ``"forwarded"``, or a tuple of header
            names (see the module's docstring).

    Raises:
        ValueError: For an entry that is neither an address, a network nor
            ``"unix"``; an unknown header or set; two headers giving the
            same thing (name the one your proxy sets).
    """

    def __init__(self, proxies: Iterable[str], headers: str | Iterable[str] = "x-forwarded") -> None:
        self.networks: list[Network] = []
        self.unix = False
        for entry in proxies:
            if entry == "unix":
                self.unix = True
            else:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        # What gives what: "address", "scheme" and "host" to a lowercased header name.
        self.sources = _sources(headers)

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def trusts(self, address: str) -> bool:
        """Whether the peer at ``address`` (a ``REMOTE_ADDR``) is a trusted proxy."""
        if not address:
            return self.unix
        parsed = _address(address)
        return parsed is not None and self._is_proxy(parsed)

    def apply(self, environ: MutableMapping[str, Any]) -> None:
        """Rewrite ``environ`` as the client's when its peer is a trusted proxy that forwarded it."""
        peer = environ.get("REMOTE_ADDR") or ""
        if not self.trusts(peer):
            return
        try:
            client, scheme, host = self._forwarded(environ)
        except Malformed:
            return  # as if the header were absent: the peer is the client
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

    def _forwarded(self, environ: MutableMapping[str, Any]) -> tuple[Client | None, str | None, str | None]:
        """The client's address, the scheme and the host the configured headers give (None: not given).

        Raises:
            Malformed: If a header in use does not parse.
        """
        sources = self.sources
        if "forwarded" in sources.values():  # then it is the only one (``_sources``)
            return self._from_forwarded(environ.get("HTTP_FORWARDED", ""))
        client = scheme = host = None
        address = sources.get("address")
        if address == "x-forwarded-for":
            client = self._client(_split(environ.get("HTTP_X_FORWARDED_FOR", "")))
        elif address == "x-real-ip":
            value = environ.get("HTTP_X_REAL_IP", "").strip()
            if value:
                client = _known(_node(value))
        if "scheme" in sources:
            protos = _split(environ.get("HTTP_X_FORWARDED_PROTO", ""))
            scheme = _scheme(protos[-1]) if protos else None
        if "host" in sources:
            hosts = _split(environ.get("HTTP_X_FORWARDED_HOST", ""))
            host = _host(hosts[-1]) if hosts else None
        return client, scheme, host

    def _from_forwarded(self, header: str) -> tuple[Client | None, str | None, str | None]:
        # Split whole first: an unclosed quote anywhere leaves no element to trust.
        elements = _split_quoted(header, ",")
        chosen: dict[str, str] = {}
        node: tuple[Address | None, str] = (None, "")
        for element in reversed(elements):  # parsed from the right, up to the client's
            chosen = _parse_element(element)
            node = _forwarded_node(chosen.get("for", "unknown"))
            if node[0] is None or not self._is_proxy(node[0]):
                break
        return _known(node), _scheme(chosen.get("proto")), _host(chosen.get("host"))

    def _client(self, hops: list[str]) -> Client | None:
        """The client among ``hops`` (left to right): the right-most that is not a trusted proxy, else the left-most.

        Only the hops up to the client's are read: those on its left are
        the client's own words, whatever they are.
        """
        node: tuple[Address | None, str] = (None, "")
        for hop in reversed(hops):
            node = _node(hop)
            if not self._is_proxy(node[0]):
                break
        return _known(node)

    def _is_proxy(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


def _sources(headers: str | Iterable[str]) -> dict[str, str]:
    """What each configured header gives; ValueError for an unknown name or two sources of one thing."""
    if isinstance(headers, str):
        named = PROXY_HEADERS.get(headers.lower())
        if named is None:
            raise ValueError(f'proxy_headers is "x-forwarded", "forwarded" or a tuple of header names, not {headers!r}')
        headers = named
    sources: dict[str, str] = {}
    for header in headers:
        name = header.strip().lower()
        gives = _GIVES.get(name)
        if gives is None:
            raise ValueError(
                f"proxy_headers: {header!r} is not one of Forwarded, X-Forwarded-For, X-Real-IP,"
                " X-Forwarded-Proto, X-Forwarded-Host"
            )
        for thing in gives:
            other = sources.setdefault(thing, name)
            if other != name:
                raise ValueError(
                    f"proxy_headers: {other} and {name} both give the {thing}; name the one your proxy sets"
                )
    return sources


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _split_quoted(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator``, except inside quoted strings (RFC 7230 §3.2.6).

    Raises:
        Malformed: If a quoted string is not closed.
    """
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
    if quoted:
        # What a client sends unclosed would swallow what the proxy appends.
        raise Malformed("unclosed quoted string")
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _parse_element(element: str) -> dict[str, str]:
    """A Forwarded element (``for=...;proto=...``) as a dict, names lowercased, quotes removed.

    Raises:
        Malformed: If it is not ``name=value`` pairs, or names one twice (RFC 7239 §4).
    """
    pairs: dict[str, str] = {}
    for part in _split_quoted(element, ";"):
        match = _PAIR.fullmatch(part)
        if match is None:
            raise Malformed(f"not a forwarded-pair: {part!r}")
        name, value = match.group(1).lower(), match.group(2)
        if name in pairs:
            raise Malformed(f"{name} given twice in one element")
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs[name] = value
    return pairs


def _forwarded_node(node: str) -> tuple[Address | None, str]:
    """A ``for`` node of RFC 7239 §6: its address (None for ``unknown`` or an obfuscated name) and port.

    Raises:
        Malformed: If it is no node.
    """
    node = node.strip()
    name, _, port = node.partition(":")
    if name.lower() == "unknown" or _OBFUSCATED.fullmatch(name):
        if not _is_port(port):
            raise Malformed(f"not a node: {node!r}")
        return None, ""
    return _node(node)


def _node(node: str) -> tuple[Address, str]:
    """A node's address and port (``""`` when none).

    ``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80``, or an IPv6
    address without brackets (and so without a port), as nginx's
    ``$remote_addr`` gives it.

    Raises:
        Malformed: If it is no IP address with an optional port.
    """
    node = node.strip()
    bare = _address(node)  # an IPv4 address, or an IPv6 one without brackets (and so without a port)
    if bare is not None:
        return bare, ""
    if node.startswith("["):
        host, bracket, rest = node[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise Malformed(f"not a node: {node!r}")
        port = rest[1:]
    else:
        host, _, port = node.partition(":")
    address = _address(host)
    if address is None or (node.startswith("[") != (address.version == 6)) or not _is_port(port):
        raise Malformed(f"not a node: {node!r}")
    return address, port if port.isdigit() else ""


def _is_port(port: str) -> bool:
    """An RFC 7239 §6 port: none, 1-5 digits up to 65535, or an obfuscated one."""
    if not port:
        return True
    if port.isdigit():
        return len(port) <= 5 and int(port) <= 65535
    return _OBFUSCATED.fullmatch(port) is not None


def _known(node: tuple[Address | None, str]) -> Client | None:
    """The client's address and port, or None when it was not disclosed."""
    address, port = node
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
