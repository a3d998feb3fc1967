"""The API reference (docs/api) has a place for every public name: a new one without it fails here.

A name counts as documented when a page has an autodoc directive for it
(``.. autoclass:: duck_ws_sync.WebSocketView``), or an ``.. automodule::``
of its module with ``:members:`` that takes it in. Sphinx itself builds
the reference in CI (.ci/run); this only reads the pages' sources.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"

# Each public module and its page.
PAGES = {
    "duck_ws_sync": "duck_ws_sync.rst",
    "duck_ws_sync.urls": "urls.rst",
    "duck_ws_sync.brokers": "brokers.rst",
    "duck_ws_sync.health": "health.rst",
    "duck_ws_sync.metrics": "metrics.rst",
    "duck_ws_sync.testing": "testing.rst",
    "duck_ws_sync.duck": "duck.rst",
    "duck_ws_sync.django": "django.rst",
    "duck_ws_sync.protocol": "protocol.rst",
}

_DIRECTIVE = re.compile(r"^\s*\.\. (?:py:)?(auto\w+|currentmodule|module)::\s*(\S*)\s*$")
_OPTION = re.compile(r"^\s+:([\w-]+):\s*(.*?)\s*$")


def exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def public_names(module: str) -> set[str]:
    """The module's ``__all__``, read from its source (so that no optional dependency is imported)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                try:
                    names.update(ast.literal_eval(node.value))
                except ValueError:  # built at run time: ask the module itself
                    return set(importlib.import_module(module).__all__)
    assert names, f"{module} has no __all__"
    return names


def directives(page: Path) -> list[tuple[str, str, dict[str, str]]]:
    """The autodoc and module directives of a page: (directive, argument, options), in order."""
    found: list[tuple[str, str, dict[str, str]]] = []
    for line in page.read_text(encoding="utf-8").splitlines():
        directive = _DIRECTIVE.match(line)
        if directive:
            found.append((directive.group(1), directive.group(2), {}))
            continue
        option = _OPTION.match(line)
        if option and found and line.strip():
            found[-1][2].setdefault(option.group(1), option.group(2))
    return found


def split_target(target: str, current: str | None) -> tuple[str, str] | None:
    """``duck_ws_sync.protocol.CloseCode`` -> (``duck_ws_sync.protocol``, ``CloseCode``), relative to ``current``."""
    for full in (target, f"{current}.{target}" if current else None):
        if full is None:
            continue
        parts = full.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            if module in PAGES:
                return module, parts[cut]
    return None


def documented() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """For each public module, the names that the pages of docs/api document.

    Returns:
        The names with a directive of their own (or under ``:undoc-members:``),
        and those that only an ``automodule`` with ``:members:`` takes in,
        which autodoc shows only if they have a docstring.
    """
    explicit: dict[str, set[str]] = {module: set() for module in PAGES}
    by_members: dict[str, set[str]] = {module: set() for module in PAGES}
    for page in sorted(API.glob("*.rst")):
        current: str | None = None
        for directive, argument, options in directives(page):
            if directive in {"automodule", "module", "currentmodule"}:
                current = argument or None
                if directive == "automodule" and argument in PAGES and "members" in options:
                    if "ignore-module-all" in options:
                        continue  # members by where they are defined, not by __all__: not counted
                    listed = {name.strip() for name in options["members"].split(",") if name.strip()}
                    excluded = {name.strip() for name in options.get("exclude-members", "").split(",")}
                    if not listed and exists(argument):
                        listed = public_names(argument)
                    into = explicit if "undoc-members" in options else by_members
                    into[argument] |= listed - excluded
            elif directive != "autosummary":
                split = split_target(argument, current)
                if split is not None:
                    explicit[split[0]].add(split[1])
    return explicit, by_members


def has_docstring(obj: object) -> bool:
    """Whether autodoc's ``:members:`` shows ``obj``: a class or function with a docstring of its own."""
    if inspect.isclass(obj):
        return bool(vars(obj).get("__doc__"))
    return inspect.isroutine(obj) and bool(obj.__doc__)


@pytest.mark.parametrize("module", PAGES)
def test_each_public_module_has_its_page(module: str) -> None:
    page = API / PAGES[module]
    assert page.is_file(), f"docs/api has no page {page.name} for {module}"
    assert ("automodule", module) in [(d, a) for d, a, _ in directives(page)], f"{page.name}: no automodule {module}"
    toctree = (API / "index.rst").read_text(encoding="utf-8")
    assert re.search(rf"^   {re.escape(page.stem)}$", toctree, re.MULTILINE), f"index.rst does not list {page.stem}"


@pytest.mark.parametrize("module", PAGES)
def test_every_public_name_is_in_the_reference(module: str) -> None:
    if not exists(module):
        pytest.skip(f"no module {module} yet (its page is built once it exists)")
    explicit, by_members = documented()
    missing = public_names(module) - explicit[module] - by_members[module]
    assert not missing, (
        f"{sorted(missing)} from {module}.__all__ not in docs/api/{PAGES[module]}: "
        "add an autodoc directive for each (or an automodule with :members:)"
    )


@pytest.mark.parametrize("module", PAGES)
def test_names_taken_in_by_members_have_a_docstring(module: str) -> None:
    """``:members:`` leaves out a name without a docstring (and a constant's doc comment may not be found)."""
    if not exists(module):
        pytest.skip(f"no module {module} yet (its page is built once it exists)")
    explicit, by_members = documented()
    names = by_members[module] - explicit[module]
    if not names:
        return
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} cannot be imported here: {exc}")
    silent = sorted(name for name in names if not has_docstring(getattr(loaded, name)))
    assert not silent, (
        f"{silent} from {module}.__all__ would not show in docs/api/{PAGES[module]}: give each a docstring, "
        "or an autodoc directive of its own (with a description as its content for a constant)"
    )
