"""The package's shape (docs/architecture.md): no import circle, small modules, the view's internals its own.

The layers themselves are import-linter's contract (setup.cfg, ``lint-imports``
in CI); here the rules it does not state. Imports are read with grimp, the
graph import-linter builds, so type-only imports (under ``TYPE_CHECKING``)
count as much as the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import duck_ws_sync
from duck_ws_sync.views import WebSocketView

PACKAGE = Path(duck_ws_sync.__file__).parent
MAX_LINES = 600


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import circle among the modules of ``graph``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph.modules):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = grimp.build_graph("duck_ws_sync")
    assert graph.direct_import_exists(importer="duck_ws_sync.engine.session", imported="duck_ws_sync.hosts.base")
    assert _cycle(graph) is None


def test_a_circle_would_be_found():
    graph = grimp.build_graph("duck_ws_sync")
    graph.add_import(importer="duck_ws_sync.protocol.frames", imported="duck_ws_sync.engine.session")
    assert _cycle(graph) is not None


def test_no_module_is_over_600_lines():
    sizes = {path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert sizes and {name: size for name, size in sizes.items() if size > MAX_LINES} == {}


def _private_names_of_the_view() -> set[str]:
    """The underscore names a view has: its class's and those its methods set on ``self``."""
    names = {name for name in vars(WebSocketView) if name.startswith("_") and not name.startswith("__")}
    tree = ast.parse((PACKAGE / "views.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            names.add(node.attr)
    return names


def test_no_module_but_views_touches_an_underscore_attribute_of_a_view():
    private = _private_names_of_the_view()
    assert {"_send", "_serve_messages", "_closed_handled"} <= private
    touched = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "views.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # ``self._x`` in another class is that class's own attribute.
            owner = node.value.id if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) else None
            if isinstance(node, ast.Attribute) and node.attr in private and owner not in ("self", "cls"):
                touched.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    assert touched == []
