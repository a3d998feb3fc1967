"""CI's soak: one minute of connection churn against gunicorn with two workers (bench/soak.py).

Healthy clients must see no error, and each worker's memory must stay
within 10% of its sample after the warm-up, with no descriptor left
behind. The 30-minute run is ``python3 bench/soak.py --minutes 30``
(docs/operations.md).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT


@pytest.mark.timeout(300)
def test_one_minute_of_churn_leaves_the_workers_flat() -> None:
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "1", "--sample-every", "10"],
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
