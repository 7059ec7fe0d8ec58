"""The Markdown report: results, ratios, Redis and SQLite figures, verification, profiles, versions."""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
import typing

from bench.loadgen import RATE_UNITS, RunResult, Spread, percentile
from bench.runner import CellResult, Outcome

MIB = 1024 * 1024


def _num(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:,.{digits}f}"


def _spread(spread: Spread, digits: int = 0) -> str:
    if math.isnan(spread.median):
        return "–"
    return f"{_num(spread.median, digits)} ({_num(spread.low, digits)}–{_num(spread.high, digits)})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _rates(cell: CellResult) -> Spread:
    return Spread.of(run.rate for run in cell.runs)


def _latency(cell: CellResult, attribute: str, fraction: float) -> Spread:
    return Spread.of(percentile(getattr(run, attribute), fraction) for run in cell.runs)


def _cpu_per_op(cell: CellResult) -> list[float]:
    """Server CPU milliseconds per op, one value per run."""
    return [run.probes["server"]["cpu_seconds"] * 1000 / run.ops for run in cell.runs if run.ops]


def _server(cell: CellResult, field: str) -> list[float]:
    return [float(run.probes["server"][field]) for run in cell.runs if "server" in run.probes]


def _other_cpu(run: RunResult) -> float:
    """CPU seconds the machine spent on anything but the server, its Redis and the load driver."""
    machine = run.probes.get("machine", {}).get("cpu_seconds", math.nan)
    ours = run.probes["server"]["cpu_seconds"] + run.driver_cpu_seconds + run.probes.get("redis", {}).get("cpu_seconds", 0.0)
    return max(machine - ours, 0.0)


def _results_table(outcome: Outcome) -> list[str]:
    header = ["target", "scenario", "conc.", "ops/s median (min–max)", "op p50 ms", "op p99 ms",
              "token p50 ms", "token p99 ms", "errors", "server CPU s", "server CPU ms/op", "peak RSS MiB",
              "driver CPU s", "other CPU s"]
    rows = []
    for cell in outcome.cells:
        if cell.failure:
            rows.append([cell.target.key, cell.scenario, str(cell.concurrency), f"failed: {cell.failure[:120]}"]
                        + [""] * (len(header) - 4))
            continue
        cpu = _server(cell, "cpu_seconds")
        per_op = _cpu_per_op(cell)
        rss = _server(cell, "peak_rss_bytes")
        errors = sum(sum(run.errors.values()) for run in cell.runs)
        ops = sum(run.ops for run in cell.runs)
        rows.append([
            cell.target.key, cell.scenario, str(cell.concurrency),
            f"{_spread(_rates(cell))} {RATE_UNITS[cell.scenario]}",
            _spread(_latency(cell, "op_ms", 0.50), 1), _spread(_latency(cell, "op_ms", 0.99), 1),
            _spread(_latency(cell, "token_ms", 0.50), 1), _spread(_latency(cell, "token_ms", 0.99), 1),
            f"{errors} of {errors + ops}",
            _num(statistics.median(cpu), 2) if cpu else "–",
            _num(statistics.median(per_op), 3) if per_op else "–",
            _num(max(rss) / MIB, 0) if rss else "–",
            _num(statistics.median(run.driver_cpu_seconds for run in cell.runs), 2),
            _num(statistics.median(_other_cpu(run) for run in cell.runs), 2),
        ])
    return _table(header, rows)


def _find(outcome: Outcome, key: str, scenario: str, concurrency: int) -> CellResult | None:
    for cell in outcome.cells:
        if (cell.target.key, cell.scenario, cell.concurrency) == (key, scenario, concurrency) and cell.runs:
            return cell
    return None


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def _ratios_table(outcome: Outcome) -> list[str]:
    """frontauth (memory driver) against each other target, per scenario and concurrency."""
    base_key = "frontauth-memory"
    header = ["frontauth-memory / …", "scenario", "conc.", "ops/s ratio", "op p99 ratio (lower is better)",
              "token p99 ratio (lower is better)", "server CPU per op ratio (lower is better)"]
    rows = []
    others = [t for t in outcome.plan.targets if t.key != base_key]
    for other in others:
        for scenario in ("flow", "refresh"):
            for concurrency in outcome.plan.concurrencies:
                mine = _find(outcome, base_key, scenario, concurrency)
                theirs = _find(outcome, other.key, scenario, concurrency)
                if mine is None or theirs is None:
                    continue
                rows.append([
                    other.key, scenario, str(concurrency),
                    _ratio(_rates(mine).median, _rates(theirs).median),
                    _ratio(_latency(mine, "op_ms", 0.99).median, _latency(theirs, "op_ms", 0.99).median),
                    _ratio(_latency(mine, "token_ms", 0.99).median, _latency(theirs, "token_ms", 0.99).median),
                    _ratio(Spread.of(_cpu_per_op(mine)).median, Spread.of(_cpu_per_op(theirs)).median),
                ])
    return _table(header, rows) if rows else ["No pair of targets to compare."]


def _drivers_table(outcome: Outcome) -> list[str]:
    """frontauth on each storage driver against frontauth on memory: the rate kept and the CPU added per op."""
    base_key = "frontauth-memory"
    header = ["… / frontauth-memory", "scenario", "conc.", "ops/s ratio", "server CPU ms/op added"]
    rows = []
    drivers = [t for t in outcome.plan.targets if t.key in DRIVER_TARGETS]
    for driver in drivers:
        for scenario in ("flow", "refresh"):
            for concurrency in outcome.plan.concurrencies:
                memory = _find(outcome, base_key, scenario, concurrency)
                other = _find(outcome, driver.key, scenario, concurrency)
                if memory is None or other is None:
                    continue
                added = Spread.of(_cpu_per_op(other)).median - Spread.of(_cpu_per_op(memory)).median
                rows.append([driver.key, scenario, str(concurrency),
                             _ratio(_rates(other).median, _rates(memory).median), _num(added, 3)])
    return _table(header, rows) if rows else ["No storage driver was measured beside the memory driver."]


DRIVER_TARGETS = ("frontauth-redis", "frontauth-sqlite")


def _redis_table(outcome: Outcome) -> list[str]:
    header = ["scenario", "conc.", "round trips per op (MONITOR)", "Redis commands per op (commandstats)",
              "commands per op, by command", "Redis CPU s",
              "bytes per stored refresh-token record", "used_memory growth per op (bytes)"]
    rows = []
    for cell in outcome.cells:
        if not cell.runs or "redis" not in cell.runs[0].probes:
            continue
        per_op = []
        by_command: dict[str, list[float]] = {}
        for run in cell.runs:
            calls = run.probes["redis"]["calls"]
            if run.ops:
                per_op.append(sum(calls.values()) / run.ops)
                for command, n in calls.items():
                    by_command.setdefault(command, []).append(n / run.ops)
        breakdown = ", ".join(f"{c} {statistics.median(v):.2f}" for c, v in
                              sorted(by_command.items(), key=lambda item: -statistics.median(item[1])))
        growth = [run.probes["redis"]["used_memory_growth"] / run.ops for run in cell.runs if run.ops]
        record = cell.refresh_record_bytes
        round_trips = _round_trips(cell.redis_monitor, statistics.median(per_op)) if per_op else "–"
        rows.append([
            cell.scenario, str(cell.concurrency), round_trips, _spread(Spread.of(per_op), 2), breakdown,
            _num(statistics.median(run.probes["redis"]["cpu_seconds"] for run in cell.runs), 2),
            f"{_num(record[0], 0)} (mean of {record[1]} keys)" if record else "–",
            _num(statistics.median(growth), 0) if growth else "–",
        ])
    return _table(header, rows) if rows else ["No Redis target was measured."]


def _sqlite_table(outcome: Outcome) -> list[str]:
    header = ["target", "scenario", "conc.", "errors", "database file after window MiB", "WAL file after window MiB",
              "database file growth per op (bytes)", "disk writes per op KiB", "write syscalls per op",
              "bytes per refresh-token row: payload / on disk", "rows after the last window",
              "expired rows left", "log: storage errors (locked) / failed sweeps"]
    rows = []
    for cell in outcome.cells:
        if not cell.runs or "sqlite" not in cell.runs[0].probes:
            continue
        files = [run.probes["sqlite"] for run in cell.runs]
        ops = [run.ops for run in cell.runs]
        errors = sum(sum(run.errors.values()) for run in cell.runs)
        stats = cell.sqlite_stats
        marks = cell.sqlite_log or {}
        rows.append([
            cell.target.key, cell.scenario, str(cell.concurrency), f"{errors} of {errors + sum(ops)}",
            _num(statistics.median(f["database_bytes"] for f in files) / MIB, 1),
            _num(statistics.median(f["wal_bytes"] for f in files) / MIB, 1),
            _per_op(files, ops, "database_growth", 1, 0),
            _per_op(files, ops, "disk_write_bytes", 1024, 1),
            _per_op(files, ops, "write_syscalls", 1, 1),
            _record_bytes(stats, cell.sqlite_stats_failure),
            _rows_by_kind(stats),
            str(stats.expired_left) if stats else "–",
            (f"{marks.get('storage errors', 0)} ({marks.get('locked', 0)} locked) / {marks.get('cleanup failed', 0)}"
             if cell.sqlite_log is not None else "–"),
        ])
    if not rows:
        return ["No SQLite target was measured."]
    return [f"SQLite {sqlite3.sqlite_version} (the library of the Python that runs the benchmark and frontauth).",
            "", *_table(header, rows)]


def _per_op(files: list[dict[str, typing.Any]], ops: list[int], field: str, unit: int, digits: int) -> str:
    values = [f[field] / unit / n for f, n in zip(files, ops) if n]
    return _num(statistics.median(values), digits) if values else "–"


def _record_bytes(stats: typing.Any, failure: str | None) -> str:
    if stats is None:
        return f"not read: {failure[:80]}" if failure else "–"
    if not stats.refresh_records:
        return "no refresh-token rows"
    on_disk = _num(stats.refresh_on_disk, 0) if stats.dbstat else "no dbstat in this SQLite"
    return f"{_num(stats.refresh_payload, 0)} / {on_disk} (mean of {stats.refresh_records:,} rows)"


def _rows_by_kind(stats: typing.Any) -> str:
    if stats is None:
        return "–"
    kinds = sorted(stats.rows_by_kind.items(), key=lambda item: -item[1])
    parts = [f"{kind} {count:,}" for kind, count in kinds] + [f"window_hits {stats.window_hits:,}"]
    return ", ".join(parts)


def _round_trips(monitor: dict[str, typing.Any] | None, commands_per_op: float) -> str:
    """Scale the commands per op from commandstats by the share that MONITOR saw clients send.

    The share, not MONITOR's own count per op, is used because ops that are in
    flight at the edges of MONITOR's short window would skew a count per op.
    """
    if not monitor:
        return "–"
    sent: dict[str, int] = monitor["sent"]
    total = sum(sent.values()) + monitor["from_scripts"]
    if total == 0:
        return "–"
    per_op = {command: calls * commands_per_op / total for command, calls in sent.items()}
    return f"{sum(per_op.values()):.2f}: " + ", ".join(
        f"{command} {n:.2f}" for command, n in sorted(per_op.items(), key=lambda item: -item[1]))


def _verification_table(outcome: Outcome) -> list[str]:
    if outcome.verification_failure:
        return [f"Not measured: {outcome.verification_failure}"]
    rows = [[result.mode, _spread(result.spread), ", ".join(str(n) for n in result.counts)]
            for result in outcome.verification]
    return _table(["mode", "tokens/s median (min–max)", "tokens verified per run"], rows)


def _profile_section(outcome: Outcome) -> list[str]:
    if not outcome.profiles:
        reason = outcome.profile_failure or "run with --profile (py-spy in .venv) to include one"
        return [f"No profile: {reason}."]
    lines: list[str] = []
    for scenario, summary in outcome.profiles.items():
        lines += ["", f"#### {scenario}: {summary.samples} samples of frontauth-memory at the lowest concurrency", ""]
        lines += ["Self time by area: " + ", ".join(f"{name} {share:.1f} %" for name, share in summary.areas), ""]
        lines += _table(["top functions by self time", "file", "share of samples"],
                        [[s.function, s.where, f"{s.percent:.1f} %"] for s in summary.top_self])
        lines += [""]
        lines += _table(["frontauth functions and crypto/JSON calls, inclusive of callees", "file", "share of samples"],
                        [[s.function, s.where, f"{s.percent:.1f} %"] for s in summary.top_inclusive])
    return lines


def render(outcome: Outcome, versions: dict[str, dict[str, str]], machine: dict[str, str], command: str) -> str:
    plan = outcome.plan
    lines = [
        f"# frontauth benchmark, {time.strftime('%Y-%m-%d %H:%M', time.localtime(outcome.started))}",
        "",
        f"Command: `{command}`. "
        f"Machine: {machine['CPU']}, {machine['cores']} cores, {machine['memory']}, Linux {machine['kernel']}; "
        "the load driver and the server share the cores.",
        "",
        f"Each cell: a fresh server, {plan.runs} run(s) of {plan.warmup:g} s warm-up then a {plan.window:g} s "
        f"measured window, at most {plan.max_requests:,} requests per run. The targets of one scenario and "
        "concurrency take turns run by run, so the runs that a ratio compares lie seconds apart. "
        "Figures are medians over the runs "
        "with (min–max). An op is a complete flow (authorize → redirect with code → token, ending with an "
        "access token) or one refresh grant; latency percentiles are per run, then the median is taken.",
        "",
        f"Before each measured run the benchmark waited for the other processes on the machine to use less "
        f"than a quarter of a core, {outcome.quiet_waited:.0f} s in all (budget {plan.quiet_budget:.0f} s); "
        f"{outcome.busy_starts} run(s) started while they still used more.",
        "",
        "## Results",
        "",
        *_results_table(outcome),
        "",
        "Columns: *op* is the whole flow or the refresh request, *token* the token-endpoint request alone. "
        "*errors* counts failed ops of all runs against all ops. *server CPU s* and *peak RSS* are those of the "
        "server's processes during one window; *driver CPU s* is the load driver's. *other CPU s* is busy CPU "
        "time of every other process on the machine (Redis excluded) during the window: above a few tenths of a "
        "second, something else was competing for the cores.",
        "",
        "## Ratios",
        "",
        *_ratios_table(outcome),
        "",
        "Storage drivers against the memory driver: the share of its ops/s that frontauth keeps on each driver "
        "(below 1× is slower), and the server CPU each op costs on top of the memory driver's (Redis's own CPU "
        "not included).",
        "",
        *_drivers_table(outcome),
        "",
        "## Redis driver",
        "",
        *_redis_table(outcome),
        "",
        "## SQLite driver",
        "",
        *_sqlite_table(outcome),
        "",
        "Files are sizes at the end of each window, medians over the runs. *database file growth* counts the "
        "main file only, since the WAL is a log that checkpoints copy back into it. *disk writes* are the "
        "server's `write_bytes` from `/proc/PID/io`, the bytes it caused to be sent to the storage device, and "
        "*write syscalls* its `syscw`. *payload* is the mean of key, value and expiry bytes of a refresh-token "
        "row. *on disk* estimates the row's share of the entries table's pages from `dbstat` (the page bytes "
        "per payload byte of the table times the row's payload) plus one mean entry of the expiry index. "
        "*rows* and *expired rows left* come from a read-only connection after the last window; *log* counts "
        "server log lines over the whole cell that report a request failed on storage (of which a locked "
        "database), and failed sweeps of expired rows.",
        "",
        "## In-process verification (frontauth.resource.BearerVerifier, one core)",
        "",
        *_verification_table(outcome),
        "",
        "## Profile",
        *_profile_section(outcome),
        "",
        "## Not measured",
        "",
    ]
    notes = [f"- {key}: {reason}" for key, reason in outcome.unavailable.items()]
    if not any(t.key.endswith("asyncio") for t in plan.targets):
        notes.append("- frontauth on the standard asyncio loop: the frontauth rows above run on frontauth's default "
                     "loop, uvloop when installed. `--targets frontauth-memory-asyncio` measures the memory driver "
                     "with server.event_loop = asyncio.")
    lines += notes or ["- nothing left out."]
    lines += ["", "## Versions", ""]
    for group, entries in versions.items():
        lines.append(f"- {group}: " + ", ".join(f"{name} {version}" for name, version in entries.items()))
    return "\n".join(lines) + "\n"


