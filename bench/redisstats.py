"""Redis load that frontauth causes: commands per operation and bytes per stored refresh token.

Commands come from ``INFO commandstats``, reset with ``CONFIG RESETSTAT`` at the
start of the window. The probe's own CONFIG and INFO calls are left out. Every
call of a command counts, including calls made from inside a Lua script, so on
a driver that runs scripts the count can exceed the number of round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing

import redis.asyncio as redis_asyncio

from bench.loopback import LOOPBACK_HOST
from bench.procstat import TreeProbe

PROBE_COMMANDS = frozenset({"config", "info"})
MEMORY_SAMPLE_KEYS = 200


class RedisProbe:
    """Redis commands, Redis CPU and memory over one window."""

    name = "redis"

    def __init__(self, port: int, pid: int) -> None:
        self.client = redis_asyncio.Redis(host=LOOPBACK_HOST, port=port)
        self._cpu = TreeProbe(pid)
        self._used_before = 0

    async def start(self) -> None:
        self._used_before = int((await self.client.info("memory"))["used_memory"])
        await self.client.config_resetstat()
        self._cpu.start()

    async def stop(self) -> dict[str, typing.Any]:
        stats = await self.client.info("commandstats")
        usage = await self._cpu.stop()
        used_after = int((await self.client.info("memory"))["used_memory"])
        calls: dict[str, int] = {}
        for name, values in stats.items():
            command = name.removeprefix("cmdstat_")
            if command.split("|", 1)[0] not in PROBE_COMMANDS:
                calls[command] = int(values["calls"])
        return {
            "calls": calls,
            "cpu_seconds": usage.cpu_seconds,
            "used_memory_growth": used_after - self._used_before,
        }

    async def close(self) -> None:
        await self.client.aclose()

    async def refresh_token_bytes(self, prefix: str) -> tuple[float, int]:
        """Return the mean MEMORY USAGE of stored refresh-token records and how many were sampled."""
        sizes: list[int] = []
        async for key in self.client.scan_iter(match=f"{prefix}refresh:*", count=1000):
            size = await self.client.memory_usage(key, samples=0)
            if size is not None:
                sizes.append(int(size))
            if len(sizes) >= MEMORY_SAMPLE_KEYS:
                break
        if not sizes:
            return float("nan"), 0
        return sum(sizes) / len(sizes), len(sizes)

    async def count_keys(self, prefix: str) -> dict[str, int]:
        """Return the number of keys per kind (the part after the prefix, up to the next colon)."""
        counts: dict[str, int] = {}
        async for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            kind = key.decode().removeprefix(prefix).split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts



class MonitorProbe:
    """Round trips to Redis over one window, from ``MONITOR``.

    MONITOR marks the commands that a Lua script runs with the client "lua", so
    the other commands are the ones clients sent: one round trip each, since
    frontauth sends no pipelines or transactions. MONITOR slows Redis down, so
    this probe runs in an extra, unmeasured window.
    """

    name = "monitor"

    def __init__(self, port: int) -> None:
        self.client = redis_asyncio.Redis(host=LOOPBACK_HOST, port=port)
        self.sent: dict[str, int] = {}
        self.from_scripts = 0
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def _listen(self) -> None:
        async with self.client.monitor() as monitor:
            self._listening.set()
            while True:
                entry = await monitor.next_command()
                if entry["client_type"] == "lua":
                    self.from_scripts += 1
                    continue
                command = entry["command"].split(" ", 1)[0].lower()
                self.sent[command] = self.sent.get(command, 0) + 1

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait_for(self._listening.wait(), 5.0)

    async def stop(self) -> dict[str, typing.Any]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.client.aclose()
        return {"sent": dict(self.sent), "from_scripts": self.from_scripts}
