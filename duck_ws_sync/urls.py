"""URL patterns for WebSocket views, as Duck's ``duck.urls``.

``path("/chat/<room>", ChatView)`` matches ``/chat/lobby`` and calls
``ChatView(request, room="lobby")``; ``re_path`` takes a regular expression
whose named groups become the keyword arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["URLPattern", "path", "re_path", "resolve"]

# Duck's placeholders: ``<name>`` or ``<converter:name>``.
_PLACEHOLDER = re.compile(r"<(?:(?P<converter>str|int|slug|path):)?(?P<name>[A-Za-z_]\w*)>")
_CONVERTERS = {"str": r"[^/]+", "int": r"[0-9]+", "slug": r"[-a-zA-Z0-9_]+", "path": r".+"}


@dataclass(frozen=True)
class URLPattern:
    """A route: a URL pattern and the view that serves it.

    Attributes:
        url: The pattern as written.
        handler: The view class.
        name: The route's name, if any.
        methods: The allowed methods, if restricted.
        regex: True for a ``re_path`` pattern.
    """

    url: str
    handler: Any
    name: str | None = None
    methods: Sequence[str] | None = None
    regex: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.url if self.regex else _translate(self.url)))

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the keyword arguments for ``path``, or None if it does not match."""
        found = self._compiled.fullmatch(path)  # type: ignore[attr-defined]
        if found is None:
            return None
        kwargs: dict[str, Any] = found.groupdict()
        if not self.regex:
            for converter, name in _PLACEHOLDER.findall(self.url):
                if converter == "int":
                    kwargs[name] = int(kwargs[name])
        return kwargs

    def __getitem__(self, key: str) -> Any:
        """Duck's URL patterns are dictionaries: ``pattern["name"]`` still works."""
        return getattr(self, key)


def _translate(url: str) -> str:
    parts, position = [], 0
    for placeholder in _PLACEHOLDER.finditer(url):
        parts.append(re.escape(url[position : placeholder.start()]))
        converter = placeholder["converter"] or "str"
        parts.append(f"(?P<{placeholder['name']}>{_CONVERTERS[converter]})")
        position = placeholder.end()
    parts.append(re.escape(url[position:]))
    return "".join(parts)


def path(url: str, view: Any, name: str | None = None, methods: Sequence[str] | None = None) -> URLPattern:
    """Route ``url`` to ``view``; ``<name>`` placeholders become keyword arguments of the view."""
    return URLPattern(url, view, name, methods)


def re_path(url: str, view: Any, name: str | None = None, methods: Sequence[str] | None = None) -> URLPattern:
    """Route the paths that fully match the regular expression ``url``; named groups become keyword arguments."""
    return URLPattern(url, view, name, methods, regex=True)


def resolve(urlpatterns: Iterable[URLPattern], path: str) -> tuple[URLPattern, dict[str, Any]] | None:
    """Return the first pattern matching ``path`` with its keyword arguments, or None."""
    for pattern in urlpatterns:
        kwargs = pattern.match(path)
        if kwargs is not None:
            return pattern, kwargs
    return None
