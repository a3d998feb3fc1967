"""A differential fuzz of the protocol core: the C parser against the Python one, and whole connections.

Each case is drawn from ``random.Random(seed)`` (``cases.py``): a client's
stream of valid and invalid frames (``streams.py``, ``wire.py``), the
connection's limits and options, where TCP splits the stream, and what a
host does in the middle. ``check_case`` (``checks.py``) then checks:

1. The native parser by itself. ``_speedups.parse_messages`` is run on the
   stream at a few starts (given bytes, a bytearray, or a view that does not
   start at its buffer's start). Whatever it returns, the Python parser must
   agree with: fed the bytes up to the returned position, a pure-Python
   connection hands out exactly the same events, counts one frame per
   event, holds nothing back and finds no error. And the frame where it
   stopped must not be one it promises to read (``simple_frame_at``).

2. Each whole connection by itself (``run.py``). The native run uses the
   compiled helpers, its own splits, ``receive_message`` or ``receive_data``
   read by read, the buffer of ``receive_buffer()`` and ``received_into()``
   whenever one is lent and the read says so, and, in half the cases, views
   of one read buffer that is overwritten after every read (as the gevent
   transport's is). The Python run uses only the Python equivalents
   (``pure_python``), with other splits. In both, after every call: no
   exception leaves the core (a protocol error is the core's to handle: it
   queues a Close); the connection holds within its limits (``_buffer`` at
   most a header and a control frame's payload; ``_message_buffer``, the
   cost of the message, and a partial frame's length within
   ``max_message_size``, and an uncompressed message with its partial frame
   within it together; a partial frame within ``max_frame_size``); no call
   keeps a view of the caller's read buffer. At the end: every event is one
   a client may cause (messages within ``max_message_size``, text valid
   UTF-8, nothing after a Close), the bytes sent are Pongs answering the
   Pings in order and at most one Close, last, matching ``close_sent``.
   Then what the case expects: a stream whose framing is honest and that
   ends with a valid Close ends CLOSED (once the host has answered as a
   host does: ``fail`` for a pending failure, the echo of the client's
   Close); and when a host's ``send_close`` came between ``receive_buffer()``
   and ``received_into()``, the client's Close behind the dropped frame is
   seen and the connection ends CLOSED.

3. The two runs against each other. Splits, helpers and reading paths must
   not change what a connection does, so the runs must agree on: every
   event, in order (``receive_message``'s returns included); every byte to
   send; the state, ``input_ended`` and ``failure_pending`` before the
   host's answer, and where the parser stands (bytes buffered, bytes to
   skip, the partial frame's progress); the state after it and at the end;
   ``close_sent``, ``close_received``, ``close_initiator``; the protocol
   error's class, close code and text; whether each host action applied;
   and the counters ``bytes_received``, ``messages_received``,
   ``frames_sent``, ``bytes_sent``, ``messages_sent`` and
   ``frames_received``.

   Two things legitimately differ, and are not compared:
   ``frames_received`` after a failure for invalid text (1007) depends on
   the splits, as a text frame that arrived whole counts as received before
   its text is refused, while one that arrived in pieces is refused as its
   bytes come, before it ends; and with neither limit set, a frame whose
   announced length no buffer can have is refused at once by the native
   run (its payload buffer is made at the frame's full length, and making
   it fails: 1009), while the Python run's buffer grows as bytes come: such
   a case is checked run by run but not compared.

A finding (``Finding``) is reduced (``reduce.py``) and written as JSON under
``tests/fuzz/findings/``; defects found before and pinned by xfail tests are
recognised (``known.py``) and only counted. ``README.md`` has the commands.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from duck_ws_sync.protocol import Message

from .cases import Case, from_json, generate_case, to_json
from .checks import Finding, Report, check_case
from .reduce import reduce_case

__all__ = [
    "FINDINGS",
    "Case",
    "Finding",
    "Report",
    "Summary",
    "check_case",
    "from_json",
    "fuzz",
    "generate_case",
    "reduce_case",
    "to_json",
    "write_finding",
]

#: Where findings are written (git-ignored).
FINDINGS = Path(__file__).parent / "findings"


@dataclass
class Summary:
    """What a fuzz run did.

    Attributes:
        cases: How many cases ran.
        seconds: How long they took.
        first_seed, last_seed: The seeds of the first and the last case.
        findings: The new findings, one per key (the first case that showed it).
        known: How many cases each known defect explained, by its name.
        counts: What the cases exercised, by name (for the summary).
    """

    cases: int = 0
    seconds: float = 0.0
    first_seed: int | None = None
    last_seed: int | None = None
    findings: list[Finding] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """The summary, to print."""
        rate = self.cases / self.seconds if self.seconds else 0.0
        counts = self.counts
        lines = [
            f"{self.cases} cases in {self.seconds:.1f} s ({rate:.0f} cases/s),"
            f" seeds {self.first_seed}-{self.last_seed}",
            f"  {counts['compared']} pairs of runs compared, {counts['parsed']} events from the native parser alone,"
            f" {counts['messages']} messages, {counts['returned']} of them returned by receive_message",
            f"  {counts['lends']} reads into a lent buffer ({counts['actions during reads']} with a host action"
            f" meanwhile), {counts['permessage-deflate']} cases with permessage-deflate",
        ]
        closes = sorted((key, value) for key, value in counts.items() if key.startswith("close "))
        if closes:
            lines.append("  Close codes sent: " + ", ".join(f"{key[6:]} x{value}" for key, value in closes))
        for name, count in self.known.most_common():
            lines.append(f"  known defect, not reported again: {name} (x{count})")
        lines.append(f"  {len(self.findings)} new finding(s)")
        return lines


def count(summary: Summary, case: Case, report: Report) -> None:
    """Add what one case exercised to the summary's counts."""
    counts = summary.counts
    native = report.native
    counts["compared"] += report.compared
    counts["parsed"] += report.parsed
    counts["permessage-deflate"] += case.options.agreed() is not None
    if native is None:
        return
    counts["messages"] += sum(type(event) is Message for event in native.events)
    counts["returned"] += native.returned
    counts["lends"] += native.lends
    counts["actions during reads"] += native.actions_during_reads
    close_sent = native.facts.get("close_sent")
    if close_sent is not None:
        counts[f"close {close_sent.code}"] += 1


def fuzz(
    seeds: Iterable[int],
    *,
    deadline: float | None = None,
    on_finding: Callable[[Finding, Case], None] | None = None,
    max_findings: int = 10,
) -> Summary:
    """Check the case of each seed in turn until the seeds run out or ``deadline`` (``time.monotonic()``) passes.

    Args:
        seeds: The seeds of the cases, in order.
        deadline: When to stop, at the latest after the case running then.
        on_finding: Called with each new finding (a key not seen before in
            this run) and its case.
        max_findings: Stop after this many new findings.

    Returns:
        What was run and found.
    """
    summary = Summary()
    keys: set[str] = set()
    started = time.monotonic()
    for seed in seeds:
        if deadline is not None and time.monotonic() >= deadline:
            break
        case = generate_case(seed)
        report = check_case(case)
        summary.cases += 1
        summary.first_seed = seed if summary.first_seed is None else summary.first_seed
        summary.last_seed = seed
        count(summary, case, report)
        finding = report.finding
        if report.known is not None:
            summary.known[report.known.name] += 1
        elif finding is not None and finding.key not in keys:
            keys.add(finding.key)
            summary.findings.append(finding)
            if on_finding is not None:
                on_finding(finding, case)
            if len(summary.findings) >= max_findings:
                break
    summary.seconds = time.monotonic() - started
    return summary


def write_finding(finding: Finding, case: Case, reduced: Case, directory: Path = FINDINGS) -> Path:
    """Write a finding, its case and its reduced case as JSON; return the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", finding.key.lower()).strip("-")[:60]
    path = directory / f"{slug}-{finding.seed}.json"
    record = {
        "seed": finding.seed,
        "key": finding.key,
        "description": finding.description,
        "case": to_json(case),
        "reduced": to_json(reduced),
        "reduced stream": repr(reduced.stream) if len(reduced.stream) <= 1024 else None,
    }
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path
