"""Sphinx configuration of the API reference (docs/api).

Build it from the repository root with warnings as errors::

    python3 -m sphinx -W --keep-going -b html docs/api docs/api/_build/html
"""

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import duck_ws_sync  # noqa: E402 (after the repository root is on the path)

project = "duck_ws_sync"
author = "duck_ws_sync's authors"
release = duck_ws_sync.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

exclude_patterns = ["_build"]
suppress_warnings: list[str] = []


def importable(name: str) -> bool:
    """Whether the module ``name`` can be found, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


# The optional dependencies that this environment lacks are mocked, so the
# reference builds with the docs extra alone.
autodoc_mock_imports = [
    name for name in ("duck", "redis", "prometheus_client", "django", "gunicorn", "websocket") if not importable(name)
]

# docs/api/django.rst documents duck_ws_sync.django, built only where that
# module exists; elsewhere the page and its toctree entry are left out.
if not importable("duck_ws_sync.django"):
    exclude_patterns.append("django.rst")
    suppress_warnings.append("toc.excluded")

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False


def drop_type_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Leave out the docstring that a constant gets from its type (``tuple``, ``str``...).

    The page gives its description instead, as the directive's content.
    """
    if what == "data" and lines:
        own = inspect.getdoc(type(obj)) or ""
        if " ".join(lines).split() == own.split():
            lines.clear()


def setup(app: Any) -> None:
    # Before napoleon (priority 500), which would read the type's docstring as Google style.
    app.connect("autodoc-process-docstring", drop_type_docstring, priority=400)


html_theme = "alabaster"
html_title = f"duck_ws_sync {release} API reference"
html_show_copyright = False
html_static_path: list[str] = []
