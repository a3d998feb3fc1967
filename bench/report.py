"""From the per-round cells to medians and ratios, and the markdown that ``bench/run.py`` prints.

A ratio is always server / raw gevent TCP echo, measured in the same round;
the table shows the median of the per-round ratios. For throughput (W1-W3)
higher is better; for W4 (KiB per connection) and W5 (ms) lower is better.
HTTP's ratio is wrapped / bare, per round too.
"""

from __future__ import annotations

import statistics
from typing import Any

import presence
from catalog import RAW

Cells = dict[str, Any]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _value(cell: Cells | None) -> float | None:
    return None if cell is None or "error" in cell else cell["value"]


def summarize(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each workload and server: per-round values, their median, per-round ratios and theirs, failures."""
    rounds = results["rounds"]
    summary: dict[str, dict[str, Any]] = {}
    rows = [row["key"] for row in results["workloads"]] + (["HTTP"] if results["http_servers"] else [])
    for key in rows:
        reference = "http-bare" if key == "HTTP" else RAW
        servers = results["http_servers"] if key == "HTTP" else results["servers"]
        summary[key] = {}
        for server in servers:
            cells = [round_["cells"].get(key, {}).get(server) for round_ in rounds]
            if all(cell is None for cell in cells):
                continue
            values = [_value(cell) for cell in cells]
            references = [_value(round_["cells"].get(key, {}).get(reference)) for round_ in rounds]
            ratios = [v / r for v, r in zip(values, references, strict=True) if v is not None and r]
            present = [value for value in values if value is not None]
            summary[key][server] = {
                "values": values,
                "median": _median(present),
                "ratios": ratios,
                "ratio": _median(ratios) if server != reference else None,
                "errors": [
                    {"round": number, "error": cell["error"], "log": cell.get("log", "")}
                    for number, cell in enumerate(cells, 1)
                    if cell is not None and "error" in cell
                ],
            }
    return summary


def number(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    return f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}"


def _cell(entry: dict[str, Any] | None, rounds: int) -> str:
    if entry is None:
        return "—"
    if entry["median"] is None:
        reason: str = entry["errors"][0]["error"]
        return "FAILED: " + reason.splitlines()[0][:80].replace("|", "/")
    text = number(entry["median"])
    if entry["ratio"] is not None:
        text += f" ({entry['ratio']:.2f}x)"
    if entry["errors"]:
        text += f" ({len(entry['errors'])}/{rounds} FAILED)"
    return text


def _detail(results: dict[str, Any], key: str, server: str, field: str) -> float | None:
    values = [
        cell[field]
        for round_ in results["rounds"]
        if (cell := round_["cells"].get(key, {}).get(server)) is not None and cell.get(field) is not None
    ]
    return _median(values)


def _table(header: list[str], lines: list[list[str]], text_columns: int = 1) -> str:
    """A markdown table: the first ``text_columns`` left-aligned, numbers right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * text_columns + " ---: |" * (len(header) - text_columns)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def main_table(results: dict[str, Any]) -> str:
    summary, servers, rounds = results["summary"], results["servers"], len(results["rounds"])
    lines = []
    for row in results["workloads"]:
        line = [row["title"]]
        for server in servers:
            text = _cell(summary[row["key"]].get(server), rounds)
            alive = _detail(results, row["key"], server, "alive")
            connected = _detail(results, row["key"], server, "connected")
            if alive is not None and connected and alive < connected:
                text += f" ({alive:,.0f}/{connected:,.0f} echoed after)"
            line.append(text)
        lines.append(line)
        if row["key"].startswith("W4@") and row["key"] == _largest_w4(results):
            lines.append(_long_hold_row(results, row["key"]))
        if row["key"] == "W2":
            lines.append(_cpu_row(results, row["key"]))
    return _table(["workload", *servers.values()], lines)


def _largest_w4(results: dict[str, Any]) -> str | None:
    keys = [row["key"] for row in results["workloads"] if row["key"].startswith("W4@")]
    return max(keys, key=lambda key: int(key[3:]), default=None)


def _cpu_row(results: dict[str, Any], key: str) -> list[str]:
    """The serving process's CPU per round trip during ``key``'s window: user (Python, C) + system (kernel)."""
    line = [f"{key}: server CPU per message, µs: user + kernel"]
    for server in results["servers"]:
        user = _detail(results, key, server, "server_user_us")
        system = _detail(results, key, server, "server_system_us")
        line.append("—" if user is None or system is None else f"{user:.1f} + {system:.1f}")
    return line


def _long_hold_row(results: dict[str, Any], key: str) -> list[str]:
    hold = results["meta"]["settings"]["idle_hold"]
    size = int(key[3:])
    line = [f"W4: duck_ws_sync, {hold:g} s hold at {size:,}: worker CPU, still echoing after, KiB/conn at its end"]
    for server in results["servers"]:
        cpu = _detail(results, key, server, "server_cpu_pct")
        if not server.startswith("duck") or cpu is None:
            line.append("—")
            continue
        alive = [
            cell["alive"]
            for round_ in results["rounds"]
            if "alive" in (cell := round_["cells"].get(key, {}).get(server) or {})
        ]
        end = _detail(results, key, server, "kib_per_conn_end")
        line.append(f"{cpu:.2f} %, {min(alive):,}/{size:,}, {number(end)}")
    return line


def http_table(results: dict[str, Any]) -> str:
    entries = results["summary"].get("HTTP", {})
    bare, wrapped = entries.get("http-bare"), entries.get("http-wrapped")
    rounds = len(results["rounds"])
    ratio = wrapped["ratio"] if wrapped else None
    line = ["requests/s", _cell(bare, rounds), _cell(wrapped and {**wrapped, "ratio": None}, rounds)]
    line.append("-" if ratio is None else f"{ratio:.3f}x")
    settings = results["meta"]["settings"]
    title = (
        f"HTTP: wrk -t{settings['http_threads']} -c{settings['http_conns']} -d{settings['http_seconds']:g}s, "
        "GET / on gunicorn -k gevent -w 1"
    )
    return _table([title, "bare WSGI app", "+ WebSocketMiddleware", "wrapped / bare"], [line])


def details_table(results: dict[str, Any]) -> str:
    fields = [
        ("W1", "p50_us", "W1 p50 latency, µs"),
        ("W1", "p99_us", "W1 p99 latency, µs"),
        ("W2", "p50_us", "W2 p50 latency, µs"),
        ("W2", "p99_us", "W2 p99 latency, µs"),
        ("W1", "client_cpu_pct", "W1 load generator CPU, % of its core"),
        ("W2", "client_cpu_pct", "W2 load generator CPU, % of its core"),
        ("W3", "client_cpu_pct", "W3 load generator CPU, % of its core"),
        ("W5", "bcast_first_median_ms", "W5 ms until the first client has it"),
        ("W5", "bcast_max_ms", "W5 slowest round, ms"),
    ]
    present = {row["key"] for row in results["workloads"]}
    lines = [
        [title, *(number(_detail(results, key, server, field)) for server in results["servers"])]
        for key, field, title in fields
        if key in present
    ]
    return _table(["medians of the rounds", *results["servers"].values()], lines) if lines else ""


def per_round_table(results: dict[str, Any]) -> str:
    lines = []
    rows = [(row["key"], results["servers"]) for row in results["workloads"]]
    if results["http_servers"]:
        rows.append(("HTTP", results["http_servers"]))
    for key, servers in rows:
        for server, label in servers.items():
            entry = results["summary"][key].get(server)
            if entry is None:
                continue
            values = " / ".join("FAILED" if value is None else number(value) for value in entry["values"])
            ratios = " / ".join(f"{ratio:.2f}" for ratio in entry["ratios"]) if entry["ratio"] is not None else ""
            lines.append([key, label, values, ratios])
    return _table(["workload", "server", "value per round", "ratio per round"], lines, text_columns=2)


def load_lines(results: dict[str, Any]) -> str:
    load = results["machine_load"]
    per_round = ", ".join(f"{round_['load']['other_cores']:.2f}" for round_ in results["rounds"])
    before = " ".join(f"{value:.2f}" for value in load["loadavg_before"])
    after = " ".join(f"{value:.2f}" for value in load["loadavg_after"])
    return (
        f"Machine's other load: load average {before} before, {after} after; processes other than the "
        f"benchmark's used {load['other_cpu_s']:,.1f} CPU-s in {load['elapsed_s']:,.0f} s "
        f"({load['other_cores']:.2f} cores on average; per round: {per_round or '-'}). "
        f"The benchmark itself used {load['our_cpu_s']:,.1f} CPU-s."
    )


def failures(results: dict[str, Any]) -> str:
    lines = []
    for key, entries in results["summary"].items():
        for server, entry in entries.items():
            for error in entry["errors"]:
                lines.append(f"- {key}, {server}, round {error['round']}: {error['error']}")
                lines += [f"      {line}" for line in error["log"].splitlines()]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    rounds = len(results["rounds"])
    parts = [
        f"## WebSocket benchmark: medians of {rounds} interleaved round{'s' * (rounds != 1)}",
        f"{meta['date']}; duck_ws_sync at {meta['root_state']}; {meta['machine']}; {meta['pinning']}",
        "versions: " + ", ".join(f"{name} {version}" for name, version in meta["versions"].items()),
    ]
    if meta["settings"].get("cold"):
        parts.append("--cold: no server was warmed up; each had only its startup check (one WebSocket connection).")
    if results["workloads"]:
        parts += [
            main_table(results),
            "Ratios in brackets: server / raw gevent TCP echo in the same round, median over rounds.\n"
            "W1-W3 (throughput): higher is better, 1.00x is as fast as raw TCP.\n"
            "W4 (KiB per connection) and W5 (ms): lower is better, 2.00x is twice raw TCP's memory or time.",
        ]
    if results["http_servers"]:
        parts.append(http_table(results))
    if results.get("presence"):
        parts.append(presence.render(results["presence"]))
    parts.append(load_lines(results))
    if details := details_table(results):
        parts.append(details)
    parts += ["Per round (rounds in the order run; ratios as above):", per_round_table(results)]
    if failed := failures(results):
        parts += ["Failures:", failed]
    return "\n\n".join(parts)
