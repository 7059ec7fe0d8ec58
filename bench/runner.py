"""Run the benchmark plan: one cell per target, scenario and concurrency.

The cells of one scenario and concurrency form a group. Each cell starts a
fresh server (and, for frontauth on Redis, a fresh redis-server, or on
SQLite, a new database file) and signs every worker in. The group's targets
then take turns, one measured window each, until each has had its runs.
Servers are stopped by process id when the group ends, whatever happened
in it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import typing

import attrs

from bench import verification
from bench.browser import Browser, FlowError
from bench.install import CACHE_DIR, PeerUnavailable
from bench.loopback import worker_address
from bench.loadgen import RATE_UNITS, Probe, RunResult, Worker, run_window
from bench.procstat import MachineProbe, ServerProbe, wait_for_quiet
from bench.profiling import ProfileSummary, PySpyProbe
from bench.redisstats import MonitorProbe, RedisProbe
from bench.servers import StartFailed
from bench.sqlitestats import DatabaseStats, SqliteFilesProbe, count_log_markers, database_stats
from bench.targets import FRONTAUTH_PREFIX, Context, Running, Target

SETUP_CONCURRENCY = 16


@attrs.frozen
class Plan:
    """The targets, concurrencies and durations of one invocation."""

    targets: tuple[Target, ...]
    concurrencies: tuple[int, ...]
    runs: int
    warmup: float
    window: float
    max_requests: int
    verification_seconds: float
    verification_pool: int
    profile: bool
    quick: bool
    # Seconds the whole invocation may spend waiting for other processes to go
    # quiet before measured runs; 0 starts every run at once.
    quiet_budget: float = 0.0


@attrs.define
class CellResult:
    target: Target
    scenario: str
    concurrency: int
    runs: list[RunResult] = attrs.field(factory=list)
    failure: str | None = None
    refresh_record_bytes: tuple[float, int] | None = None
    redis_keys: dict[str, int] | None = None
    # From MONITOR: commands that clients sent (command -> calls), and how many
    # commands ran inside Lua scripts, over one unmeasured window.
    redis_monitor: dict[str, typing.Any] | None = None
    # frontauth on SQLite: rows and page use after the last window, or why they
    # could not be read, and lock or sweep failures in the server log.
    sqlite_stats: DatabaseStats | None = None
    sqlite_stats_failure: str | None = None
    sqlite_log: dict[str, int] | None = None


@attrs.define
class Outcome:
    """The results of one invocation, and what it could not measure."""

    plan: Plan
    cells: list[CellResult] = attrs.field(factory=list)
    verification: list[verification.VerificationResult] = attrs.field(factory=list)
    verification_failure: str | None = None
    profiles: dict[str, ProfileSummary] = attrs.field(factory=dict)
    profile_failure: str | None = None
    unavailable: dict[str, str] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.time)
    quiet_waited: float = 0.0
    busy_starts: int = 0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def _sign_in_all(running: Running, target: Target, count: int) -> list[Worker]:
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    browsers = [
        Browser(running.base_url, target.endpoints, running.base_url + "/mcp", f"bench-user-{i}@example.com",
                source_address=worker_address(i))
        for i in range(count)
    ]

    async def sign_in(browser: Browser) -> Worker:
        async with limit:
            tokens = await browser.sign_in()
            return Worker(browser, str(tokens["refresh_token"]))

    try:
        return list(await asyncio.gather(*(sign_in(b) for b in browsers)))
    except BaseException:
        await asyncio.gather(*(b.close() for b in browsers))
        raise


async def _close(workers: list[Worker]) -> None:
    await asyncio.gather(*(worker.browser.close() for worker in workers))


@attrs.define
class Entrant:
    """One target of a group, started, with its workers signed in and its probes ready."""

    cell: CellResult
    workdir: str
    running: Running
    workers: list[Worker] = attrs.field(factory=list)
    probes: list[Probe] = attrs.field(factory=list)
    redis_probe: RedisProbe | None = None

    async def close(self) -> None:
        try:
            if self.redis_probe is not None:
                await self.redis_probe.close()
            await _close(self.workers)
        finally:
            await self.running.stop()


async def _enter(target: Target, scenario: str, concurrency: int, workdir: str, context: Context) -> Entrant:
    """Start the target's server, sign every worker in and prepare the probes of its windows."""
    os.makedirs(workdir, exist_ok=True)
    running = await target.start(workdir, context)
    entrant = Entrant(CellResult(target, scenario, concurrency), workdir, running)
    try:
        entrant.workers = await _sign_in_all(running, target, concurrency)
        entrant.probes = [ServerProbe(running.server.pid), MachineProbe()]
        if running.redis is not None:
            entrant.redis_probe = RedisProbe(running.redis.port, running.redis.pid)
            entrant.probes.append(entrant.redis_probe)
        if running.sqlite_path is not None:
            entrant.probes.append(SqliteFilesProbe(running.sqlite_path, running.server.pid))
    except BaseException:
        await entrant.close()
        raise
    return entrant


async def run_group(plan: Plan, targets: typing.Sequence[Target], scenario: str, concurrency: int, root: str,
                    context: Context, outcome: Outcome) -> list[CellResult]:
    """Measure every target in one scenario at one concurrency, ``plan.runs`` times each, taking turns.

    All the group's servers start first and each signs its workers in. Then
    run 1 of every target, run 2 of every target, and so on. The runs that a
    ratio compares lie seconds apart, so a machine that slows down for a
    minute affects every target alike instead of one cell. A server waits
    idle while the others are measured, and its background work (expiry
    sweeps, timers) counts in the *other CPU s* column of their windows.
    """
    cells: list[CellResult] = []
    entrants: list[Entrant] = []
    try:
        for target in targets:
            if scenario not in target.scenarios or target.key in outcome.unavailable:
                continue
            log(f"{target.key}: starting for {scenario} at concurrency {concurrency}")
            workdir = os.path.join(root, f"{target.key}-{scenario}-c{concurrency}")
            try:
                entrant = await _enter(target, scenario, concurrency, workdir, context)
            except PeerUnavailable as exc:
                outcome.unavailable[target.key] = str(exc)
                log(f"  {target.key} is not available: {exc}")
                continue
            except (StartFailed, FlowError, OSError) as exc:
                cell = CellResult(target, scenario, concurrency, failure=_failure(exc))
                log(f"  failed: {cell.failure}")
                cells.append(cell)
                continue
            entrants.append(entrant)
            cells.append(entrant.cell)
        for index in range(plan.runs):
            for entrant in entrants:
                if entrant.cell.failure:
                    continue
                await _wait_for_quiet(plan, outcome)
                try:
                    result = await run_window(entrant.workers, scenario, warmup=plan.warmup, window=plan.window,
                                              max_requests=plan.max_requests, probes=entrant.probes)
                except (FlowError, OSError) as exc:
                    # As when a target fails to start: this cell fails, the group goes on.
                    entrant.cell.failure = _failure(exc)
                    log(f"  {entrant.cell.target.key} failed: {entrant.cell.failure}")
                    continue
                entrant.cell.runs.append(result)
                errors = sum(result.errors.values())
                log(f"  {entrant.cell.target.key} run {index + 1}/{plan.runs}: {result.rate:,.0f} "
                    f"{RATE_UNITS[scenario]}, {errors} errors"
                    + (f" {result.errors}, for example {result.error_examples}" if errors else ""))
        for entrant in entrants:
            if entrant.cell.failure:
                continue
            try:
                await _after_runs(plan, entrant, outcome)
            except (FlowError, OSError) as exc:
                entrant.cell.failure = _failure(exc)
                log(f"  {entrant.cell.target.key} failed after its runs: {entrant.cell.failure}")
    finally:
        results = await asyncio.gather(*(entrant.close() for entrant in entrants), return_exceptions=True)
        for entrant, result in zip(entrants, results):
            if isinstance(result, BaseException):
                log(f"  stopping {entrant.cell.target.key} failed: {_failure(result)}")
    return cells


def _failure(exc: BaseException) -> str:
    """Return the text a failed cell shows: the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


async def _after_runs(plan: Plan, entrant: Entrant, outcome: Outcome) -> None:
    """Read the storage statistics of one target and, for frontauth on memory, profile it."""
    cell, running = entrant.cell, entrant.running
    if running.redis is not None and entrant.redis_probe is not None:
        log(f"{cell.target.key}: Redis statistics")
        cell.refresh_record_bytes = await entrant.redis_probe.refresh_token_bytes(FRONTAUTH_PREFIX)
        cell.redis_keys = await entrant.redis_probe.count_keys(FRONTAUTH_PREFIX)
        cell.redis_monitor = await _monitor(plan, running.redis.port, entrant.workers, cell.scenario)
    if running.sqlite_path is not None:
        await _sqlite_stats(cell, running.sqlite_path, running.server.log_path)
    if plan.profile and cell.target.key == "frontauth-memory" and cell.concurrency == min(plan.concurrencies):
        log(f"{cell.target.key}: profile")
        await _profile(plan, running, entrant.workers, cell.scenario, entrant.workdir, outcome)


async def _sqlite_stats(cell: CellResult, path: str, log_path: str) -> None:
    try:
        cell.sqlite_stats = await asyncio.to_thread(database_stats, path, FRONTAUTH_PREFIX)
    except sqlite3.Error as exc:
        cell.sqlite_stats_failure = _failure(exc)
        log(f"  reading the SQLite file failed: {cell.sqlite_stats_failure}")
    cell.sqlite_log = count_log_markers(log_path)
    if any(cell.sqlite_log.values()):
        log(f"  the server log reports {cell.sqlite_log}")


async def _wait_for_quiet(plan: Plan, outcome: Outcome) -> None:
    remaining = plan.quiet_budget - outcome.quiet_waited
    if remaining <= 0:
        outcome.busy_starts += 1
        return
    waited, quiet = await wait_for_quiet(remaining)
    outcome.quiet_waited += waited
    if not quiet:
        outcome.busy_starts += 1
        log(f"  other processes still busy after waiting {waited:.0f} s; measuring anyway")


async def _monitor(plan: Plan, port: int, workers: list[Worker], scenario: str) -> dict[str, typing.Any]:
    window = min(plan.window, 2.0)
    log(f"  counting round trips with Redis MONITOR for {window:g} s (not measured)")
    result = await run_window(workers, scenario, warmup=0.5, window=window, max_requests=plan.max_requests,
                              probes=[MonitorProbe(port)])
    return result.probes["monitor"]


async def _profile(plan: Plan, running: Running, workers: list[Worker], scenario: str, workdir: str,
                   outcome: Outcome) -> None:
    raw_path = os.path.join(workdir, f"py-spy-{scenario}.txt")
    probe = PySpyProbe(running.server.pid, plan.window, raw_path)
    log(f"  profiling the server with py-spy for {plan.window:.0f} s (not measured)")
    try:
        result = await run_window(workers, scenario, warmup=1.0, window=plan.window,
                                  max_requests=plan.max_requests, probes=[probe])
    except RuntimeError as exc:
        outcome.profile_failure = str(exc)
        log(f"  profile failed: {exc}")
        return
    outcome.profiles[scenario] = result.probes["profile"]["summary"]


async def run_plan(plan: Plan, context: Context) -> Outcome:
    """Run every group of the plan (one per scenario and concurrency), then the verification scenario."""
    outcome = Outcome(plan)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = os.path.join(CACHE_DIR, "runs", stamp)
    for scenario in ("flow", "refresh"):
        for concurrency in plan.concurrencies:
            outcome.cells.extend(await run_group(plan, plan.targets, scenario, concurrency, root, context, outcome))
    await _verification(plan, context, root, outcome)
    return outcome


async def _verification(plan: Plan, context: Context, root: str, outcome: Outcome) -> None:
    from bench.targets import TARGETS

    log("in-process verification with frontauth.resource.BearerVerifier")
    workdir = os.path.join(root, "verification")
    os.makedirs(workdir, exist_ok=True)
    try:
        running = await TARGETS["frontauth-memory"].start(workdir, context)
    except StartFailed as exc:
        outcome.verification_failure = str(exc)
        return
    try:
        outcome.verification = await verification.measure_in_subprocess(
            context.frontauth, running.base_url, context.sign_key, runs=plan.runs,
            seconds=plan.verification_seconds, pool=plan.verification_pool, workdir=workdir,
        )
        for result in outcome.verification:
            log(f"  {result.mode}: {result.spread.median:,.0f} tokens/s")
    except verification.VerificationFailed as exc:
        outcome.verification_failure = str(exc)
        log(f"  failed: {exc}")
    finally:
        await running.stop()
