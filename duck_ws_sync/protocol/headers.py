"""HTTP header values used by the opening handshake.

``Headers`` is a case-insensitive multi-map. The parsers follow the grammar of
RFC 7230 §3.2.6 and §7 (tokens, quoted strings, comma-separated lists) and
RFC 6455 §9.1 (the ``Sec-WebSocket-Extensions`` header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["ExtensionOffer", "ExtensionParams", "HeaderFormatError", "Headers", "parse_extensions", "split_list"]

ExtensionParams = list[tuple[str, str | None]]
ExtensionOffer = tuple[str, ExtensionParams]

# RFC 7230 §3.2.6: token = 1*tchar; quoted-string with backslash escapes.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_token_re = re.compile(_TOKEN)
_param_re = re.compile(rf"\s*;\s*({_TOKEN})(?:\s*=\s*({_TOKEN}|{_QUOTED}))?")
_unescape_re = re.compile(r"\\(.)")
_separator_re = re.compile(r"\s*,\s*")


class HeaderFormatError(ValueError):
    """A header value does not follow its grammar."""


class Headers:
    """Case-insensitive HTTP headers that keep every value of repeated names.

    Args:
        items: ``(name, value)`` pairs in the order they were received.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(name, value) for name, value in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the values of ``name`` joined with ", ", or ``default`` if absent."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name``, in order."""
        wanted = name.lower()
        return [value for key, value in self._items if key.lower() == wanted]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def split_list(values: Iterable[str]) -> list[str]:
    """Split comma-separated header values into their non-empty elements (RFC 7230 §7)."""
    return [item for value in values for item in _separator_re.split(value.strip()) if item]


def parse_extensions(values: Iterable[str]) -> list[ExtensionOffer]:
    """Parse ``Sec-WebSocket-Extensions`` values into offers (RFC 6455 §9.1).

    Args:
        values: Every value of the header; each may hold several offers.

    Returns:
        ``(name, [(param, value or None), ...])`` for each offer, in order.
        Quoted parameter values are unquoted.

    Raises:
        HeaderFormatError: If a value does not follow the grammar.
    """
    offers: list[ExtensionOffer] = []
    for value in values:
        position, end = 0, len(value)
        while True:
            while position < end and value[position] in " \t,":
                position += 1  # RFC 7230 §7: empty list elements are ignored
            if position == end:
                break
            name = _token_re.match(value, position)
            if name is None:
                raise HeaderFormatError(f"expected an extension name at {value[position:]!r}")
            position = name.end()
            params: ExtensionParams = []
            while (param := _param_re.match(value, position)) is not None:
                raw = param.group(2)
                if raw is not None and raw.startswith('"'):
                    raw = _unescape_re.sub(r"\1", raw[1:-1])
                params.append((param.group(1), raw))
                position = param.end()
            while position < end and value[position] in " \t":
                position += 1
            if position < end and value[position] != ",":
                raise HeaderFormatError(f"unexpected {value[position:]!r} in extension offer")
            offers.append((name.group(), params))
    return offers
