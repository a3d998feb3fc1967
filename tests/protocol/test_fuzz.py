"""The differential fuzz (``tests/fuzz``) on a fixed set of seeds, so the target itself keeps working.

A longer run is ``python3 -m tests.fuzz --minutes 30`` (``tests/fuzz/README.md``);
here a few hundred cases check the core, and planted defects check that the
fuzz finds, shrinks and writes what it should.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from duck_ws_sync.protocol import Pong, ServerConnection, connection, mask, partial
from tests.fuzz import check_case, from_json, fuzz, generate_case, to_json
from tests.fuzz import checks as fuzz_checks
from tests.fuzz.__main__ import main
from tests.fuzz.run import pure_python
from tests.helpers import BINARY, frame

# About a second and a half of cases on a small machine.
SEEDS = range(300)


@pytest.fixture(scope="module")
def summary():
    return fuzz(SEEDS)


def test_the_fixed_seeds_find_nothing_new(summary) -> None:
    assert [finding.description for finding in summary.findings] == []
    assert summary.cases == len(SEEDS)


def test_the_fixed_seeds_reach_what_the_fuzz_is_for(summary) -> None:
    counts = summary.counts
    assert counts["compared"] > 0.9 * len(SEEDS)
    assert counts["parsed"] > 0 and counts["returned"] > 0
    assert counts["lends"] > 0 and counts["actions during reads"] > 0
    assert counts["permessage-deflate"] > 0
    # The three failures a client can cause, and Closes answered.
    assert {f"close {code}" for code in (1000, 1002, 1007, 1009)} <= set(counts)


def test_a_seed_is_the_whole_case() -> None:
    assert generate_case(7) == generate_case(7)
    assert generate_case(7) != generate_case(8)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_case_comes_back_from_json(seed: int) -> None:
    case = generate_case(seed)
    assert from_json(json.loads(json.dumps(to_json(case)))) == case


def test_pure_python_swaps_the_compiled_helpers_and_puts_them_back() -> None:
    helpers = (connection._native_parse_messages, connection.apply_mask, partial._NativePayload)
    with pure_python():
        assert connection._native_parse_messages is None
        assert connection.apply_mask is mask.python_apply_mask
        pure = ServerConnection(max_frame_size=None)
        pure.receive_data(frame(BINARY, bytes(200_000))[:1000])
        assert pure.receive_buffer() is None  # a bytearray collects the frame: nothing to lend
    assert (connection._native_parse_messages, connection.apply_mask, partial._NativePayload) == helpers


def corrupt_pongs(parse):
    """A parser with a planted defect: every Pong it reads loses its last byte."""

    def planted(data, position, limit, message, text, binary, pong, events):
        before = len(events)
        stop = parse(data, position, limit, message, text, binary, pong, events)
        events[before:] = [Pong(event.payload[:-1]) if type(event) is Pong else event for event in events[before:]]
        return stop

    return planted


@pytest.mark.parametrize(
    ("where", "key"),
    [("parser", "parse_messages disagrees on events"), ("connection", "the events differ")],
)
def test_a_planted_defect_is_found_shrunk_and_written(
    where: str, key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = fuzz_checks.native_parse_messages
    assert real is not None
    module = fuzz_checks if where == "parser" else connection
    name = "native_parse_messages" if where == "parser" else "_native_parse_messages"
    monkeypatch.setattr(module, name, corrupt_pongs(real))
    arguments = ["--start", "0", "--findings", str(tmp_path), "--reduce-seconds", "5"]
    assert main(["--cases", "50", *arguments]) == 1
    output = capsys.readouterr().out
    assert "FINDING, seed" in output and key in output
    [written] = tmp_path.glob("*.json")
    record = json.loads(written.read_text())
    assert record["key"] == key
    reduced = from_json(record["reduced"])
    assert len(reduced.stream) <= 20  # one Pong, give or take
    assert check_case(reduced).finding is not None
    assert main(["--replay", str(written), *arguments]) == 1
    monkeypatch.undo()
    assert main(["--replay", str(written), *arguments]) == 0


def test_one_seed_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "3"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("seed 3: ") and "native run:" in output and "python run:" in output


def test_a_timed_run_stops_by_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.3", "--start", "1000"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert " cases in 0." in first_line and "seeds 1000-" in first_line
