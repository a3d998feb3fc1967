#!/usr/bin/env python3
"""Run the Autobahn|Testsuite fuzzing client (RFC 6455 / RFC 7692) against our echo app.

    python compliance/run.py                      # all 517 cases (about 10 minutes)
    python compliance/run.py --cases "1.*" "2.*"  # some case groups
    python compliance/run.py --summarize-only     # print the table of the last report again

What it does, every step bounded in time:

1. finds a CPython 2.7 (the suite is Python 2 code): ``$PY27``, then
   ``python2.7`` / ``python2`` on PATH, then the 2.7 versions pyenv has
   installed. None: it says so and exits with 3;
2. builds the fuzzing client once, in ``--wstest-home`` (default
   ``$DUCK_WS_COMPLIANCE_HOME`` or ``~/.cache/duck_ws_sync/autobahn``): a
   Python 2.7 virtualenv with ``autobahntestsuite`` and its pinned Python 2
   dependency chain from the package index;
3. starts ``compliance/echo_app.py`` under ``gunicorn -k gevent`` on a
   listening socket of 127.0.0.1 with a port the kernel picks (handed to
   gunicorn as ``fd://N``, so no other process can take the port in between);
4. runs ``wstest -m fuzzingclient`` for the case patterns, stops gunicorn by
   its pid, and prints one row per case group plus every case that is not OK.

Reports go to ``--outdir`` (default ``compliance/reports/``): ``index.html``
and ``index.json`` (wstest's), one JSON and HTML file per case,
``server.log`` (gunicorn and the ``duck_ws_sync`` logger), ``wstest.log``
and ``summary.txt`` (the table printed here).

Exit status: 0 every case passed (OK, NON-STRICT or INFORMATIONAL, with a
close behaviour of OK or INFORMATIONAL); 1 some case is FAILED or
UNIMPLEMENTED or closed badly; 2 the harness failed (the client could not be
built, the server did not start, the run timed out, or the report is empty
or incomplete); 3 no CPython 2.7 was found (CI: "skipped: no CPython 2.7").
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

EXIT_OK, EXIT_FAILED, EXIT_HARNESS, EXIT_NO_PY27 = 0, 1, 2, 3

APP = "compliance.echo_app:app"
WS_PATH = "/ws/echo"
AGENT = "duck_ws_sync"

# The fuzzing client: Autobahn|Testsuite, Python 2.7 code. Its sdist does not
# carry its requirements, so its Python 2 dependency chain is pinned here and
# the suite itself is installed without dependencies.
TESTSUITE = "autobahntestsuite==25.10.1"
PY27_REQUIREMENTS = """\
setuptools==44.0.0
attrs==21.4.0
autobahn[accelerate,twisted]==0.10.9
Automat==22.10.0
cffi==1.15.1
constantly==15.1.0
cryptography==3.3.2
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
ipaddress==1.0.23
Jinja2==2.11.3
klein==17.10.0
linecache2==1.0.0
MarkupSafe==1.1.1
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
PyHamcrest==1.10.1
pyOpenSSL==19.1.0
service-identity==18.1.0
six==1.16.0
traceback2==1.4.0
Twisted==19.10.0
txaio==2.1.0
typing==3.10.0.0
ujson==2.0.3
unittest2==1.1.0
Werkzeug==1.0.1
wsaccel==0.6.6
zope.interface==4.6.0
"""
# The last virtualenv that creates Python 2.7 environments (20.22 dropped them).
VIRTUALENV = "virtualenv==20.21.1"

INSTALL_STEP_TIMEOUT = 900  # seconds, per pip / virtualenv step
SERVER_START_TIMEOUT = 60
SERVER_STOP_TIMEOUT = 20
DEFAULT_RUN_TIMEOUT = 1800  # a full run takes about 10 minutes on 2 cores

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
PASSING_BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL")
PASSING_CLOSE = ("OK", "INFORMATIONAL")


class HarnessError(Exception):
    """The run could not be carried out (exit 2)."""


def say(message: str) -> None:
    print(f"compliance: {message}", file=sys.stderr, flush=True)


# Finding CPython 2.7.

_PY27_CHECK = (
    "import platform, sys; assert sys.version_info[:2] == (2, 7); assert platform.python_implementation() == 'CPython'"
)


def _works(candidate: str | None) -> bool:
    if not candidate or not os.path.isfile(candidate) or not os.access(candidate, os.X_OK):
        return False
    try:
        result = subprocess.run([candidate, "-c", _PY27_CHECK], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _pyenv_roots() -> Iterator[str]:
    if os.environ.get("PYENV_ROOT"):
        yield os.environ["PYENV_ROOT"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
            if result.returncode == 0 and result.stdout.strip():
                yield result.stdout.strip()
    yield os.path.expanduser("~/.pyenv")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parents[1].name  # .../versions/2.7.18/bin/python2.7
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_python27() -> tuple[str | None, list[str]]:
    """Return a working CPython 2.7 interpreter (or None) and the candidates tried."""
    tried: list[str] = []
    explicit = os.environ.get("PY27")
    candidates: list[str] = [explicit] if explicit else []
    # A pyenv shim on PATH exists even when 2.7 is not selected; _works weeds it out.
    candidates += [found for found in (shutil.which("python2.7"), shutil.which("python2")) if found]
    for root in dict.fromkeys(_pyenv_roots()):
        found = glob.glob(os.path.join(root, "versions", "2.7*", "bin", "python2.7"))
        candidates += sorted(found, key=_version_key, reverse=True)
    for candidate in dict.fromkeys(candidates):
        tried.append(candidate)
        if _works(candidate):
            return candidate, tried
    return None, tried


# Building the fuzzing client.


def _default_home() -> Path:
    if os.environ.get("DUCK_WS_COMPLIANCE_HOME"):
        return Path(os.environ["DUCK_WS_COMPLIANCE_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "duck_ws_sync" / "autobahn"


def _step(command: Sequence[str | os.PathLike[str]], log: Path, env: dict[str, str]) -> None:
    """Run one installation step, appending its output to ``log``; raise HarnessError if it fails."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        try:
            result = subprocess.run(
                list(map(str, command)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=INSTALL_STEP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"installing the fuzzing client: timed out after {exc.timeout} s; see {log}") from exc
    if result.returncode != 0:
        raise HarnessError(f"installing the fuzzing client failed (exit {result.returncode}); see {log}")


def ensure_wstest(home: Path, py27: str, reinstall: bool = False) -> Path:
    """Build the fuzzing client in ``home`` unless it is there already; return the wstest executable."""
    home.mkdir(parents=True, exist_ok=True)
    wstest_venv = home / "wstest-py27"
    wstest = wstest_venv / "bin" / "wstest"
    stamp_file = home / "installed.json"
    stamp = {
        "python27": os.path.realpath(py27),
        "requirements": hashlib.sha256((PY27_REQUIREMENTS + TESTSUITE).encode()).hexdigest(),
    }
    if not reinstall and wstest.exists() and stamp_file.exists():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(stamp_file.read_text()) == stamp and _wstest_version(wstest):
                return wstest
    say(f"building the fuzzing client in {home} with {py27} (about a minute)")
    started = time.monotonic()
    log = home / "install.log"
    log.write_text("")
    env = dict(os.environ)
    env.update(
        PIP_CACHE_DIR=str(home / "pip-cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        VIRTUALENV_OVERRIDE_APP_DATA=str(home / "virtualenv-app-data"),
    )
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    stamp_file.unlink(missing_ok=True)
    tools = home / "tools-venv"
    if reinstall or not (tools / "bin" / "virtualenv").exists():
        shutil.rmtree(tools, ignore_errors=True)
        _step([sys.executable, "-m", "venv", tools], log, env)
        _step([tools / "bin" / "python", "-m", "pip", "install", "-q", VIRTUALENV], log, env)
    shutil.rmtree(wstest_venv, ignore_errors=True)
    _step([tools / "bin" / "virtualenv", "-q", "--no-periodic-update", "-p", py27, wstest_venv], log, env)
    requirements = home / "requirements-py27.txt"
    requirements.write_text(PY27_REQUIREMENTS)
    pip: list[str | os.PathLike[str]] = [wstest_venv / "bin" / "python", "-m", "pip", "install", "-q"]
    pip.append("--no-python-version-warning")
    _step([*pip, "-r", requirements], log, env)
    _step([*pip, "--no-deps", TESTSUITE], log, env)
    version = _wstest_version(wstest)
    if not version:
        raise HarnessError(f"the fuzzing client was installed but `wstest --autobahnversion` fails; see {log}")
    stamp_file.write_text(json.dumps(stamp, indent=2) + "\n")
    say(f"fuzzing client ready ({version}) in {time.monotonic() - started:.0f} s")
    return wstest


def _wstest_version(wstest: Path) -> str | None:
    if not wstest.exists():
        return None
    try:
        result = subprocess.run(
            [str(wstest), "--autobahnversion"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    output = (result.stdout + result.stderr).strip()
    return output.splitlines()[-1] if result.returncode == 0 and output else None


# The server.


class Server:
    """The echo app under ``gunicorn -k WORKER`` (gevent or gthread) on 127.0.0.1, on a port the kernel chose."""

    def __init__(self, log: Path, log_level: str, worker: str = "gevent") -> None:
        self.log = log
        self.log_level = log_level
        self.worker = worker
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            command = [
                sys.executable, "-m", "gunicorn",
                "-k", self.worker,
                *(["--threads", "16"] if self.worker == "gthread" else []),
                "-w", "1",
                "-b", f"fd://{fd}",
                "--chdir", str(REPO),
                "--graceful-timeout", "5",
                "--no-control-socket",  # gunicorn's default control socket is one fixed path for every instance
                "--log-level", self.log_level.lower(),
                APP,
            ]  # fmt: skip
            env = dict(os.environ, DUCK_WS_COMPLIANCE_LOG_LEVEL=self.log_level.upper(), PYTHONUNBUFFERED="1")
            with self.log.open("wb") as out:
                out.write(f"$ {' '.join(command)}   (port {self.port})\n".encode())
                out.flush()
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                    cwd=HERE,  # no stray ./gunicorn.conf.py is picked up; --chdir imports the app from the repo
                    env=env,
                    start_new_session=True,
                )
        finally:
            listener.close()  # gunicorn holds its own copy of the listening socket
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise HarnessError(f"gunicorn exited with {self.process.returncode} at start; see {self.log}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/")
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise HarnessError(
            f"gunicorn did not answer on port {self.port} within {SERVER_START_TIMEOUT} s; see {self.log}"
        )

    def stop(self) -> None:
        """SIGTERM to gunicorn's master (by pid); SIGKILL to its process group if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"gunicorn (pid {process.pid}) did not stop in {SERVER_STOP_TIMEOUT} s: killing it")
            _kill_group(process)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a child started with ``start_new_session`` and whatever it spawned (its group is its pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


# The fuzzing run.


def source_state() -> str:
    """Which code is under test: the commit, local changes, and a digest of the package's sources."""
    digest = hashlib.sha256()
    for source in sorted((REPO / "duck_ws_sync").rglob("*")):
        if source.is_file() and source.suffix in (".py", ".c"):
            digest.update(str(source.relative_to(REPO)).encode() + b"\0" + source.read_bytes())
    lines = [f"duck_ws_sync sources sha256: {digest.hexdigest()[:16]}"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30, check=False
        )
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "duck_ws_sync"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if head.returncode == 0:
            changed = len(status.stdout.splitlines())
            lines.append(
                f"git HEAD {head.stdout.strip()}" + (f", {changed} changed file(s) in duck_ws_sync/" if changed else "")
            )
    return "; ".join(lines)


REPORT_PATTERNS: tuple[str, ...] = ("index.json", "index.html", "*_case_*.json", "*_case_*.html")
REPORT_PATTERNS += ("spec.json", "wstest.log", "server.log", "summary.txt")


def clean_outdir(outdir: Path) -> None:
    """Remove the files of an earlier run, so that a failed run cannot show stale results."""
    outdir.mkdir(parents=True, exist_ok=True)
    for pattern in REPORT_PATTERNS:
        for stale in outdir.glob(pattern):
            stale.unlink()


def run_fuzzer(
    wstest: Path, url: str, cases: Sequence[str], exclude: Sequence[str], outdir: Path, timeout: float
) -> int:
    """Run the fuzzing client; return how many cases it announced. Raise HarnessError on a timeout."""
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": AGENT, "url": url}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=2) + "\n")
    log = outdir / "wstest.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec_file)],
            cwd=outdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            announced = 0
            next_progress = started + 30
            while process.poll() is None:
                now = time.monotonic()
                if now - started > timeout:
                    _kill_group(process)
                    raise HarnessError(f"the fuzzing client did not finish within {timeout:.0f} s; see {log}")
                if now >= next_progress:
                    text = log.read_text(errors="replace")
                    announced = _announced(text) or announced
                    done = text.count("Running test case ID")
                    say(f"{done}/{announced or '?'} cases started after {now - started:.0f} s")
                    next_progress = now + 30
                time.sleep(0.5)
        except BaseException:
            if process.poll() is None:
                _kill_group(process)
            raise
    text = log.read_text(errors="replace")
    if process.returncode != 0:
        raise HarnessError(f"the fuzzing client exited with {process.returncode}; see {log}")
    return _announced(text)


def _announced(wstest_log: str) -> int:
    match = re.search(r"will run (\d+) test cases", wstest_log)
    return int(match.group(1)) if match else 0


# The summary.


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def case_passes(result: dict[str, Any]) -> bool:
    return result["behavior"] in PASSING_BEHAVIORS and result["behaviorClose"] in PASSING_CLOSE


def summarize(outdir: Path, announced: int | None = None) -> tuple[int, str]:
    """Return the exit status and the summary text of the report in ``outdir``."""
    index_file = outdir / "index.json"
    if not index_file.exists():
        return EXIT_HARNESS, f"no report: {index_file} does not exist\n"
    index = json.loads(index_file.read_text())
    results: dict[str, dict[str, Any]] = {}
    for agent_results in index.values():
        results.update(agent_results)
    if not results:
        return EXIT_HARNESS, "EMPTY REPORT: no case was recorded (the client could not connect?)\n"

    lines = []
    groups: dict[int, list[str]] = collections.defaultdict(list)
    for case_id in sorted(results, key=_case_key):
        groups[_case_key(case_id)[0]].append(case_id)
    header = ["group", "cases", "OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "close behaviour"]
    rows = []
    totals: collections.Counter[str] = collections.Counter()
    total_close: collections.Counter[str] = collections.Counter()
    for group, ids in groups.items():
        behaviors = collections.Counter(results[i]["behavior"] for i in ids)
        closes = collections.Counter(results[i]["behaviorClose"] for i in ids)
        totals.update(behaviors)
        total_close.update(closes)
        rows.append(_row(str(group), len(ids), behaviors, closes))
    rows.append(_row("total", len(results), totals, total_close))
    widths = [max(len(header[c]), *(len(r[c]) for r in rows)) for c in range(len(header))]
    for row in [header, *rows]:
        if row is rows[-1]:
            lines.append("  ".join("-" * w for w in widths))
        cells = [
            cell.ljust(w) if c in (0, len(header) - 1) else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    others = set(totals) - set(BEHAVIORS)
    if others:
        lines.append(f"other behaviours: {dict((k, totals[k]) for k in sorted(others))}")
    durations = sum(r.get("duration", 0) for r in results.values())
    lines.append(f"{len(results)} cases, {durations / 1000:.1f} s of case time (wstest's durations)")

    failing = [i for i in sorted(results, key=_case_key) if not case_passes(results[i])]
    non_strict = [
        i for i in sorted(results, key=_case_key) if case_passes(results[i]) and results[i]["behavior"] == "NON-STRICT"
    ]
    if non_strict:
        lines.append("")
        lines.append("NON-STRICT (accepted; the fuzzer would have preferred another outcome):")
        lines += _case_lines(outdir, results, non_strict)
    if failing:
        lines.append("")
        lines.append(f"NOT PASSING ({len(failing)}):")
        unimplemented_only = [
            i for i in failing if results[i]["behavior"] == "UNIMPLEMENTED" and results[i]["behaviorClose"] == "OK"
        ]
        lines += _case_lines(outdir, results, [i for i in failing if i not in unimplemented_only])
        if unimplemented_only:
            lines.append(
                f"  + {len(unimplemented_only)} UNIMPLEMENTED with a clean close:"
                f" {unimplemented_only[0]} ... {unimplemented_only[-1]}"
            )
    status = EXIT_FAILED if failing else EXIT_OK
    if announced and len(results) != announced:
        lines.append("")
        lines.append(f"INCOMPLETE REPORT: the client announced {announced} cases but recorded {len(results)}")
        status = max(status, EXIT_HARNESS)
    lines.append("")
    lines.append(
        {EXIT_OK: "RESULT: pass", EXIT_FAILED: "RESULT: FAIL", EXIT_HARNESS: "RESULT: harness error"}[status]
        + f"  (report: {outdir / 'index.html'})"
    )
    return status, "\n".join(lines) + "\n"


def _row(name: str, count: int, behaviors: collections.Counter[str], closes: collections.Counter[str]) -> list[str]:
    close = ", ".join(f"{k}={v}" for k, v in sorted(closes.items(), key=lambda kv: (kv[0] != "OK", kv[0])))
    return [name, str(count), *(str(behaviors[b]) for b in BEHAVIORS), close]


def _case_lines(outdir: Path, results: dict[str, dict[str, Any]], ids: Sequence[str]) -> list[str]:
    lines = []
    for case_id in ids:
        result = results[case_id]
        lines.append(
            f"  {case_id:<9} {result['behavior']:<13} close={result['behaviorClose']:<13}"
            f" remote close code={result.get('remoteCloseCode')}"
        )
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            detail = json.loads((outdir / result["reportfile"]).read_text())
            lines.append(f"            {_first_sentence(detail.get('description', ''))}")
            lines.append(f"            result: {detail.get('result')} / close: {detail.get('resultClose')}")
    return lines


def _first_sentence(html: str) -> str:
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return text if len(text) <= 160 else text[:157] + "..."


# The command line.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Exit: 0 pass, 1 fail, 2 harness error, 3 no CPython 2.7."
    )
    parser.add_argument(
        "--cases", nargs="+", default=["*"], metavar="PATTERN", help='case patterns (default: all), e.g. "1.*" "9.1.6"'
    )
    parser.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN", help="case patterns to leave out")
    parser.add_argument(
        "--outdir", type=Path, default=HERE / "reports", help="where reports go (default: compliance/reports)"
    )
    parser.add_argument(
        "--wstest-home",
        type=Path,
        default=None,
        help="where the fuzzing client is built (default: $DUCK_WS_COMPLIANCE_HOME or ~/.cache/duck_ws_sync/autobahn)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_RUN_TIMEOUT,
        help=f"seconds the fuzzing run may take (default {DEFAULT_RUN_TIMEOUT})",
    )
    parser.add_argument(
        "--server-log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="gunicorn's and duck_ws_sync's log level in server.log",
    )
    parser.add_argument(
        "--worker", choices=("gevent", "gthread"), default="gevent", help="gunicorn's worker class (default gevent)"
    )
    parser.add_argument("--reinstall", action="store_true", help="rebuild the fuzzing client")
    parser.add_argument("--install-only", action="store_true", help="build the fuzzing client, run nothing")
    parser.add_argument(
        "--summarize-only", action="store_true", help="print the summary of the report in --outdir, run nothing"
    )
    args = parser.parse_args(argv)  # fmt: skip
    outdir = args.outdir.resolve()

    if args.summarize_only:
        status, text = summarize(outdir)
        print(text, end="")
        return status

    py27, tried = find_python27()
    if py27 is None:
        say("SKIPPED: no CPython 2.7 found, and the Autobahn|Testsuite fuzzing client needs one.")
        say(f"tried: {', '.join(tried) or 'nothing'} (set PY27=/path/to/python2.7, or `pyenv install 2.7.18`)")
        return EXIT_NO_PY27

    # A CI job that is cancelled sends SIGTERM: stop gunicorn and wstest on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    server: Server | None = None
    try:
        wstest = ensure_wstest(args.wstest_home or _default_home(), py27, args.reinstall)
        if args.install_only:
            say(f"fuzzing client: {wstest}")
            return EXIT_OK
        clean_outdir(outdir)
        code = source_state()
        server = Server(outdir / "server.log", args.server_log_level, args.worker)
        server.start()
        say(f"gunicorn -k {args.worker} (pid {server.process.pid if server.process else '?'}) serving {server.url}")
        say(f"running cases {' '.join(args.cases)}" + (f" minus {' '.join(args.exclude)}" if args.exclude else ""))
        fuzz_started = time.monotonic()
        announced = run_fuzzer(wstest, server.url, args.cases, args.exclude, outdir, args.timeout)
        fuzz_time = time.monotonic() - fuzz_started
        server.stop()
        exit_code = server.process.returncode if server.process else None
        server = None
    except HarnessError as exc:
        say(f"ERROR: {exc}")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if server is not None:
            server.stop()

    status, text = summarize(outdir, announced)
    text += f"code under test: {code}\n"
    total_time = time.monotonic() - started
    text += f"wall time: {fuzz_time:.0f} s fuzzing, {total_time:.0f} s in all; gunicorn exit status {exit_code}\n"
    (outdir / "summary.txt").write_text(text)
    print(text, end="")
    return status


if __name__ == "__main__":
    sys.exit(main())
