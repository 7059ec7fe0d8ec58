"""The load driver: workers that repeat one operation, a warm-up, then a measured window.

A run starts every worker and lets them go for the warm-up, then measures for a
fixed window. Operations that complete inside the window count, with their
latencies. The probes (server CPU and memory, Redis statistics, the driver's
own CPU) read their values at the window's edges. The run then stops every
worker. Each run is bounded twice: by time (warm-up plus window, plus at
most one request timeout to drain) and by ``max_requests``, which ends the
window early if it is reached.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import statistics
import time
import typing

import aiohttp
import attrs

from bench.browser import REQUEST_TIMEOUT, Browser, FlowError
from bench.procstat import self_cpu_seconds


class Probe(typing.Protocol):
    """Something measured over the window: started at its start, read at its end."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> dict[str, typing.Any]: ...


@attrs.define
class Worker:
    """One simulated user: a browser, and the refresh token it rotates."""

    browser: Browser
    refresh_token: str = ""


@attrs.define
class Recorder:
    """Counts and latencies of the operations that complete inside the window."""

    max_requests: int
    measuring: bool = False
    requests: int = 0
    ops: int = 0
    errors: collections.Counter[str] = attrs.field(factory=collections.Counter)
    # The first message of each kind of error, so that the log shows what failed.
    error_examples: dict[str, str] = attrs.field(factory=dict)
    op_ms: list[float] = attrs.field(factory=list)
    token_ms: list[float] = attrs.field(factory=list)
    full: asyncio.Event = attrs.field(factory=asyncio.Event)

    def count_requests(self, n: int) -> None:
        self.requests += n
        if self.requests >= self.max_requests:
            self.full.set()

    def done(self, op_seconds: float, token_seconds: float) -> None:
        if self.measuring:
            self.ops += 1
            self.op_ms.append(op_seconds * 1000.0)
            self.token_ms.append(token_seconds * 1000.0)

    def failed(self, kind: str, message: str) -> None:
        self.error_examples.setdefault(kind, message[:300])
        if self.measuring:
            self.errors[kind] += 1


Operation = typing.Callable[[Worker, Recorder], typing.Awaitable[None]]


async def flow_operation(worker: Worker, recorder: Recorder) -> None:
    """Run one steady-state flow: authorize (redirect with code), then redeem the code."""
    started = time.perf_counter()
    recorder.count_requests(2)
    code, verifier = await worker.browser.authorize_code()
    token_started = time.perf_counter()
    await worker.browser.exchange(code, verifier)
    finished = time.perf_counter()
    recorder.done(finished - started, finished - token_started)


async def refresh_operation(worker: Worker, recorder: Recorder) -> None:
    """Run one refresh grant and keep the rotated refresh token for the next one."""
    started = time.perf_counter()
    recorder.count_requests(1)
    tokens = await worker.browser.refresh(worker.refresh_token)
    finished = time.perf_counter()
    worker.refresh_token = str(tokens["refresh_token"])
    recorder.done(finished - started, finished - started)


OPERATIONS: dict[str, Operation] = {"flow": flow_operation, "refresh": refresh_operation}
RATE_UNITS = {"flow": "flows/s", "refresh": "refreshes/s"}


async def _recover(worker: Worker, scenario: str) -> None:
    """After a failed refresh the token may have been revoked, so get a new one through a flow."""
    if scenario == "refresh":
        with contextlib.suppress(FlowError, aiohttp.ClientError, asyncio.TimeoutError):
            worker.refresh_token = await worker.browser.new_refresh_token()


async def _work(worker: Worker, scenario: str, recorder: Recorder, stop: asyncio.Event) -> None:
    operation = OPERATIONS[scenario]
    while not stop.is_set():
        try:
            await operation(worker, recorder)
        except FlowError as exc:
            recorder.failed(exc.kind, str(exc))
            await _recover(worker, scenario)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            recorder.failed(type(exc).__name__, str(exc) or type(exc).__name__)
            await asyncio.sleep(0.05)
            await _recover(worker, scenario)
        except Exception as exc:  # noqa: BLE001 - a response the driver cannot parse must not end the worker
            recorder.failed(f"unexpected {type(exc).__name__}", repr(exc))
            await asyncio.sleep(0.05)
            await _recover(worker, scenario)


@attrs.define
class RunResult:
    """One measured window."""

    seconds: float
    ops: int
    errors: dict[str, int]
    error_examples: dict[str, str]
    op_ms: list[float] = attrs.field(repr=False)
    token_ms: list[float] = attrs.field(repr=False)
    probes: dict[str, dict[str, typing.Any]]
    driver_cpu_seconds: float
    requests: int

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0


async def run_window(workers: list[Worker], scenario: str, *, warmup: float, window: float,
                     max_requests: int, probes: typing.Sequence[Probe] = ()) -> RunResult:
    """Run every worker for the warm-up and one measured window; return what was measured."""
    recorder = Recorder(max_requests=max_requests)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_work(worker, scenario, recorder, stop)) for worker in workers]
    try:
        await _wait_or_full(recorder, warmup)
        for probe in probes:
            await probe.start()
        driver_cpu = self_cpu_seconds()
        recorder.measuring = True
        started = time.perf_counter()
        await _wait_or_full(recorder, window)
        recorder.measuring = False
        seconds = time.perf_counter() - started
        driver_cpu = self_cpu_seconds() - driver_cpu
        measured = {probe.name: await probe.stop() for probe in probes}
    finally:
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return RunResult(
        seconds=seconds,
        ops=recorder.ops,
        errors=dict(recorder.errors),
        error_examples=dict(recorder.error_examples),
        op_ms=recorder.op_ms,
        token_ms=recorder.token_ms,
        probes=measured,
        driver_cpu_seconds=driver_cpu,
        requests=recorder.requests,
    )


async def _wait_or_full(recorder: Recorder, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(recorder.full.wait(), seconds)


def percentile(values: typing.Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of the values, NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@attrs.frozen
class Spread:
    """Median, minimum and maximum of one figure over the runs."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: typing.Iterable[float]) -> Spread:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, math.nan)
        return cls(statistics.median(finite), min(finite), max(finite))
