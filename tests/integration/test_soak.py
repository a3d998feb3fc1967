"""CI's soak: one minute of connection churn against gunicorn with two workers (bench/soak.py).

Healthy clients must see no error, no descriptor may be left behind, and
each worker's memory must stay within 25% of the highest of its samples
during the warm-up. A minute is too short for the allocator to settle:
in one CI run both workers grew 7-10% in the ten seconds after a 30 s
warm-up and stayed flat after it, so this minute looks for gross leaks
(with about 4,800 connections after the warm-up, 25% is some 2.4 KiB kept
per connection); the 30-minute run, ``python3 bench/soak.py --minutes 30``
(docs/operations.md), holds memory to 10%.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT


@pytest.mark.timeout(300)
def test_one_minute_of_churn_leaves_the_workers_flat() -> None:
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "1", "--sample-every", "10", "--growth-limit", "0.25"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "soak: passed" in report
    assert "FAIL" not in report
