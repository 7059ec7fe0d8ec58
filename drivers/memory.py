"""In-process storage driver (``memory://``).

State lives in one dict in this process: it is lost on restart and not shared
between instances. Expiry is checked on every read, and a background task
removes expired keys every ``storage.cleanup_interval`` seconds so that keys
nobody reads again do not pile up.

Atomicity: every operation runs to completion without an ``await`` in the
middle, and asyncio runs one coroutine at a time per event loop, so take and
swap cannot interleave with each other.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import typing

from frontauth.storage import WindowState

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings

logger = logging.getLogger("frontauth.storage")

Clock = typing.Callable[[], float]


class MemoryDriver:
    """A dict with per-key deadlines and sliding-window lists."""

    name = "memory"
    # Reading records ahead with the rate-limit count saves nothing in process.
    saves_round_trips = False

    def __init__(self, clock: Clock = time.monotonic, cleanup_interval: float = 60.0) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        # key -> sorted request times, for the sliding-window rate limiter
        self._windows: dict[str, list[float]] = {}
        self._cleanup_interval = cleanup_interval
        self._cleanup_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the periodic cleanup task; a 0 interval turns it off."""
        if self._cleanup_interval > 0 and self._cleanup_task is None:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup_loop())

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        deadline = entry[1]
        if deadline is not None and deadline <= self._clock():
            del self._values[key]
            return None
        return entry

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._values[key] = (value, self._deadline(ttl))

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        if self._live(key) is not None:
            return False
        self._values[key] = (value, self._deadline(ttl))
        return True

    async def take(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        del self._values[key]
        return entry[0]

    async def swap(self, key: str, value: bytes) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        self._values[key] = (value, entry[1])
        return entry[0]

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._values.pop(key, None) is not None

    async def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        if entry is None or entry[1] is None:
            return None
        return entry[1] - self._clock()

    async def hit(
        self, key: str, window: float, limit: int, now: float, consume: bool = True
    ) -> WindowState:
        if window <= 0 or limit < 1:
            raise ValueError(f"expected window > 0 and limit >= 1, got window={window}, limit={limit}")
        times = self._windows.setdefault(key, [])
        del times[: bisect.bisect_right(times, now - window)]
        if len(times) >= limit:
            retry_after = max(times[len(times) - limit] + window - now, 0.0)
            return WindowState(allowed=False, count=len(times), limit=limit, retry_after=retry_after)
        if consume:
            bisect.insort(times, now)
        elif not times:
            del self._windows[key]
        return WindowState(allowed=True, count=len(times), limit=limit, retry_after=0.0)

    async def hit_and_get(
        self, window_key: str, window: float, limit: int, now: float, keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        state = await self.hit(window_key, window, limit, now)
        if not state.allowed:
            return state, [None] * len(keys)
        return state, [await self.get(key) for key in keys]

    def purge_expired(self, now_wall: float | None = None, max_window: float = 3600.0) -> int:
        """Delete expired keys and empty rate-limit windows; return how many went."""
        now = self._clock()
        expired = [k for k, (_, deadline) in self._values.items() if deadline is not None and deadline <= now]
        for key in expired:
            del self._values[key]
        wall = time.time() if now_wall is None else now_wall
        stale = [k for k, times in self._windows.items() if not times or times[-1] <= wall - max_window]
        for key in stale:
            del self._windows[key]
        return len(expired) + len(stale)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            removed = self.purge_expired()
            if removed:
                logger.debug("memory driver removed %d expired keys", removed)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
            self._cleanup_task = None


async def open_memory(settings: StorageSettings) -> MemoryDriver:
    """Create a memory driver and start its cleanup task."""
    driver = MemoryDriver(cleanup_interval=settings.cleanup_interval)
    driver.start()
    return driver
