"""Defects the fuzz found that the core does not fix yet, each pinned by an xfail test.

A finding that one of these explains is counted and named in the summary,
not reported as new: a run stays useful (and CI green) while a known defect
waits for its fix. Each entry names the regression test in
``tests/protocol/test_fuzz_regressions.py`` that pins it with
``xfail(strict=True)``: once the core is fixed, that test passes, strict
xfail fails it, and the marker goes together with the entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cases import Case
from .run import Outcome

__all__ = ["KNOWN_DEFECTS", "KnownDefect", "known_defect"]


@dataclass(frozen=True)
class KnownDefect:
    """A defect found and pinned, and how to recognise what it causes.

    Attributes:
        name: A short name, for the summary.
        test: The regression tests that pin it.
        explains: Tells whether it explains a finding: given the case, the
            finding's key and the run that showed it.
    """

    name: str
    test: str
    explains: Callable[[Case, str, Outcome], bool]


# None today: the three the fuzz found first (a Close longer than
# max_frame_size never seen; a protocol error, or our Close, leaving the
# connection CLOSING when input had stopped) are fixed, and their tests in
# test_fuzz_regressions.py pass.
KNOWN_DEFECTS: tuple[KnownDefect, ...] = ()


def known_defect(case: Case, key: str, outcome: Outcome | None) -> KnownDefect | None:
    """The known defect that explains a finding, if one does."""
    if outcome is None or not outcome.facts:
        return None
    return next((defect for defect in KNOWN_DEFECTS if defect.explains(case, key, outcome)), None)
