"""The README says what the code does: the table of settings, and install commands that work today."""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path
from typing import Any

import pytest

import duck_ws_sync
from duck_ws_sync import WebSocketView

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MiB = 1024 * 1024
# Files that give install commands.
INSTALL_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def settings_table() -> dict[str, str]:
    """The README's table of settings: attribute name to the text of its Default cell."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Limits and defaults\n(.*?)^## ", text, re.DOTALL | re.MULTILINE)
    assert section, "README.md has no section 'Limits and defaults'"
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| .* \|$", section.group(1), re.MULTILINE)
    assert rows, "the section 'Limits and defaults' has no table of attributes"
    table = dict(rows)
    assert len(table) == len(rows), "an attribute is listed twice"
    return table


def class_settings() -> set[str]:
    """The attributes a subclass may set: the UPPER_CASE class attributes of WebSocketView."""
    return {name for name in dir(WebSocketView) if name.isupper() and not name.startswith("_")}


def parse_default(cell: str) -> Any:
    """The value a Default cell shows: a literal in backticks (with " s" for seconds), a call, or "N MiB"."""
    size = re.fullmatch(r"(\d+) MiB", cell)
    if size:
        return int(size.group(1)) * MiB
    code = re.fullmatch(r"`([^`]+)`(?: s)?", cell)
    assert code, f"a Default cell should be a literal in backticks or 'N MiB', not {cell!r}"
    call = re.fullmatch(r"(\w+)\(\)", code.group(1))
    if call:
        return getattr(duck_ws_sync, call.group(1))()
    return ast.literal_eval(code.group(1))


def same(shown: Any, actual: Any) -> bool:
    if type(shown) is not type(actual):
        return False
    if hasattr(actual, "__dict__"):  # settings objects such as PerMessageDeflate(): compare what they hold
        return vars(shown) == vars(actual)
    return bool(shown == actual)


def test_the_settings_table_lists_every_class_attribute() -> None:
    table = settings_table()
    listed, settings = {name for name in table if name.isupper()}, class_settings()
    assert listed == settings, f"not in README.md: {sorted(settings - listed)}; unknown: {sorted(listed - settings)}"
    for name in table:  # Duck's lower-case attributes, listed for reference, exist too
        assert hasattr(WebSocketView, name), name


@pytest.mark.parametrize("name", sorted(class_settings()))
def test_the_settings_table_shows_the_default(name: str) -> None:
    table = settings_table()
    assert name in table, f"{name} is not in README.md's table"
    shown, actual = parse_default(table[name]), getattr(WebSocketView, name)
    assert same(shown, actual), f"README.md shows {name} = {shown!r}; the class has {actual!r}"


def test_install_commands_work_before_the_first_release() -> None:
    """The package is not on PyPI yet: each command that installs it by name says it is for after the release."""
    for document in INSTALL_DOCS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"duck-ws-sync\[|pip install\s+['\"]?duck-ws-sync\b", line):
                assert "after the first release" in line, f"{document.name}:{number}: {line}"


def test_install_commands_name_extras_that_exist() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extras = set(setup["options.extras_require"])
    for document in INSTALL_DOCS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            for found in re.finditer(r"pip install (?:-e )?'[^'\[]*\[([\w,]+)\]'", line):
                unknown = set(found.group(1).split(",")) - extras
                assert not unknown, f"{document.name}:{number}: no extra {sorted(unknown)}: {line}"
