"""CPU time and resident memory of a process tree, read from /proc (Linux only).

CPU time is utime + stime of every process in the tree. Peak RSS during a
window comes from VmHWM after the peak was reset by writing "5" to
/proc/PID/clear_refs (Linux 4.0 and later). Where that reset is refused, a
sampler reads VmRSS every 50 ms instead, which can miss short spikes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import typing

import attrs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.05


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.extend(int(child) for child in fh.read().split())
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """Return pid and all of its descendants that exist now."""
    tree = [pid]
    index = 0
    while index < len(tree):
        tree.extend(_children(tree[index]))
        index += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds of one process, 0.0 once it has exited."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
    except OSError:
        return 0.0
    # The command name in brackets may contain spaces, so split after its ")".
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@attrs.define
class WindowUsage:
    cpu_seconds: float
    peak_rss_bytes: int
    peak_method: str  # "VmHWM" or "sampled"


class TreeProbe:
    """Measure the CPU seconds and peak RSS of a process tree over one window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._pids: list[int] = []
        self._cpu_start: dict[int, float] = {}
        self._exact_peak = False
        self._sampled_peak = 0
        self._sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pids = process_tree(self.pid)
        self._cpu_start = {pid: cpu_seconds(pid) for pid in self._pids}
        self._exact_peak = all(_reset_peak(pid) for pid in self._pids)
        self._sampled_peak = self._rss_now()
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    def _rss_now(self) -> int:
        return sum(_status_kib(pid, "VmRSS") for pid in self._pids) * 1024

    async def _sample(self) -> None:
        while True:
            self._sampled_peak = max(self._sampled_peak, self._rss_now())
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def stop(self) -> WindowUsage:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        cpu = sum(cpu_seconds(pid) - start for pid, start in self._cpu_start.items())
        if self._exact_peak:
            peak = sum(_status_kib(pid, "VmHWM") for pid in self._pids) * 1024
            return WindowUsage(cpu, max(peak, self._sampled_peak), "VmHWM")
        self._sampled_peak = max(self._sampled_peak, self._rss_now())
        return WindowUsage(cpu, self._sampled_peak, "sampled")


def self_cpu_seconds() -> float:
    """Return the CPU seconds this process has used (user + system)."""
    times = os.times()
    return times.user + times.system



class ServerProbe:
    """CPU seconds and peak RSS of the server's process tree over one window."""

    name = "server"

    def __init__(self, pid: int) -> None:
        self._probe = TreeProbe(pid)

    async def start(self) -> None:
        self._probe.start()

    async def stop(self) -> dict[str, typing.Any]:
        usage = await self._probe.stop()
        return {"cpu_seconds": usage.cpu_seconds, "peak_rss_bytes": usage.peak_rss_bytes, "peak_method": usage.peak_method}


def machine_busy_seconds() -> float:
    """Return the CPU seconds all cores have spent busy since boot (/proc/stat, idle and iowait excluded)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] if len(fields) > 7 else 0)
    return busy / CLOCK_TICKS


class MachineProbe:
    """Busy CPU seconds of the whole machine over one window, to show load from other processes."""

    name = "machine"

    def __init__(self) -> None:
        self._start = 0.0

    async def start(self) -> None:
        self._start = machine_busy_seconds()

    async def stop(self) -> dict[str, typing.Any]:
        return {"cpu_seconds": machine_busy_seconds() - self._start, "load_average": os.getloadavg()[0]}


async def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> tuple[float, bool]:
    """Wait until the rest of the machine uses less than ``threshold`` cores, for at most ``max_wait`` seconds.

    Call it while the servers under test are idle, since it measures every
    process. Each check samples busy CPU time over one second.

    Returns:
        The seconds waited, and whether the machine was quiet at the end.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(1.0)
        if machine_busy_seconds() - before < threshold:
            return loop.time() - started, True
        if loop.time() - started >= max_wait:
            return loop.time() - started, False
