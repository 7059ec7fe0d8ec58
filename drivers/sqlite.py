"""SQLite storage driver (``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``).

State lives in one database file, so sign-ins, refresh tokens and registered
clients survive a restart without a server process. Several frontauth
processes on one host may share the file. Processes on different hosts may
not, because WAL mode coordinates through memory that every process maps
from the ``-shm`` file, which network filesystems do not keep coherent
(SQLite documentation, "Write-Ahead Logging").

Threading: the connection lives on one worker thread, and every operation runs
there through ``run_in_executor``, so disk I/O never blocks the event loop.
That thread runs one operation at a time for this process.

Atomicity between processes: take, swap, delete, hit and hit_and_get read
and then write inside a ``BEGIN IMMEDIATE`` transaction, which takes the
database's write lock before its first read, so no other connection writes in
between. set and
set_if_absent are single statements, which SQLite runs atomically. A
connection that finds the lock taken waits up to
``storage.sqlite_busy_timeout`` seconds, then the operation raises
:class:`frontauth.storage.StorageUnavailable`.

Expiry: deadlines are Unix times (``time.time``), because they must keep their
meaning after a restart and in every process, so a step of the wall clock
moves every TTL with it. Reads skip expired entries, and a background task
deletes them every ``storage.cleanup_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import time
import typing

from frontauth.drivers import sqlite_schema
from frontauth.storage import StorageUnavailable, WindowState

if typing.TYPE_CHECKING:
    from frontauth.config import StorageSettings

logger = logging.getLogger("frontauth.storage")

T = typing.TypeVar("T")
Clock = typing.Callable[[], float]

# Rows deleted per statement by the cleanup, so that one sweep never holds the
# write lock for long while other operations wait.
CLEANUP_BATCH = 500

# An entry is live while it has no deadline or its deadline is still ahead.
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


class SqliteDriver:
    """Entries and sliding-window hits in one SQLite file, served by one worker thread."""

    name = "sqlite"

    def __init__(
        self,
        path: str,
        busy_timeout: float = 5.0,
        cleanup_interval: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._cleanup_interval = cleanup_interval
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="frontauth-sqlite")
        self._connection: sqlite3.Connection | None = None
        # (st_dev, st_ino) of the file at start-up, to notice it being replaced
        self._file_id: tuple[int, int] | None = None
        self._cleanup_task: asyncio.Task[None] | None = None

    # --- opening and closing

    async def open(self) -> None:
        """Open the file, check that it is frontauth's, create or migrate the schema, and start the cleanup.

        Raises:
            StorageUnavailable: the file cannot be written, stays locked, belongs
                to another application, or has a newer schema.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        if self._cleanup_interval > 0:
            self._cleanup_task = loop.create_task(self._cleanup_loop())

    def _connect(self) -> None:
        sqlite_schema.check_path(self.path)
        try:
            # isolation_level=None leaves transactions to the explicit BEGIN
            # statements below, and timeout sets SQLite's busy timeout.
            connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise sqlite_schema.open_error(exc, self.path, self._busy_timeout) from exc
        try:
            sqlite_schema.prepare(connection, self.path)
            # NOTE: any synchronous mode keeps a committed write through a
            # SIGKILL of this process in WAL mode, because the commit has
            # reached the operating system. FULL also syncs the WAL to disk on
            # every commit, so that a power loss cannot roll back a swap and
            # revive a rotated refresh token or a consumed code (SQLite
            # documentation, PRAGMA synchronous). NORMAL would not.
            connection.execute("PRAGMA synchronous = FULL")
            stat = os.stat(self.path)
        except sqlite3.Error as exc:
            connection.close()
            raise sqlite_schema.open_error(exc, self.path, self._busy_timeout) from exc
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._file_id = (stat.st_dev, stat.st_ino)

    async def close(self) -> None:
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
            self._cleanup_task = None
        if self._connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connection.close)
            self._connection = None
        self._executor.shutdown(wait=True)

    # --- running on the worker thread

    async def _run(self, operation: str, function: typing.Callable[..., T], *args: typing.Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        # NOTE: ProgrammingError and InterfaceError are left out on purpose:
        # they mean a bug in this module, such as a wrong parameter, and not
        # an unusable database.
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.Error as exc:
            raise StorageUnavailable(self.name, operation, sqlite_schema.describe_error(exc)) from exc

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError("the SQLite driver is not open")
        return self._connection

    def _in_transaction(self, body: typing.Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in a BEGIN IMMEDIATE transaction, committing on success and rolling back on any error."""
        connection = self._db()
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = body(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return result

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    # --- Driver operations

    async def get(self, key: str) -> bytes | None:
        return await self._run("get", self._get, key)

    def _get(self, key: str) -> bytes | None:
        row = self._db().execute(f"SELECT value FROM entries WHERE key = ? AND {_LIVE}", (key, self._clock())).fetchone()
        return None if row is None else row[0]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._run("set", self._set, key, value, ttl)

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._db().execute(
            "INSERT OR REPLACE INTO entries (key, value, expires_at) VALUES (?, ?, ?)",
            (key, value, self._deadline(ttl)),
        )

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        return await self._run("set_if_absent", self._set_if_absent, key, value, ttl)

    def _set_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        # One statement: insert a missing key, or overwrite an expired one.
        cursor = self._db().execute(
            "INSERT INTO entries (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE entries.expires_at IS NOT NULL AND entries.expires_at <= ?",
            (key, value, self._deadline(ttl), self._clock()),
        )
        return cursor.rowcount == 1

    async def take(self, key: str) -> bytes | None:
        return await self._run("take", self._in_transaction, lambda db: self._take(db, key))

    def _take(self, db: sqlite3.Connection, key: str) -> bytes | None:
        row = db.execute(f"SELECT value FROM entries WHERE key = ? AND {_LIVE}", (key, self._clock())).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        return row[0]

    async def swap(self, key: str, value: bytes) -> bytes | None:
        return await self._run("swap", self._in_transaction, lambda db: self._swap(db, key, value))

    def _swap(self, db: sqlite3.Connection, key: str, value: bytes) -> bytes | None:
        row = db.execute(f"SELECT value FROM entries WHERE key = ? AND {_LIVE}", (key, self._clock())).fetchone()
        if row is None:
            return None
        # expires_at is left as it is: the new value keeps the remaining TTL.
        db.execute("UPDATE entries SET value = ? WHERE key = ?", (value, key))
        return row[0]

    async def delete(self, key: str) -> bool:
        return await self._run("delete", self._in_transaction, lambda db: self._delete(db, key))

    def _delete(self, db: sqlite3.Connection, key: str) -> bool:
        row = db.execute(f"SELECT 1 FROM entries WHERE key = ? AND {_LIVE}", (key, self._clock())).fetchone()
        # An expired entry goes too, but does not count as existing.
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        return row is not None

    async def ttl(self, key: str) -> float | None:
        return await self._run("ttl", self._ttl, key)

    def _ttl(self, key: str) -> float | None:
        now = self._clock()
        row = self._db().execute(f"SELECT expires_at FROM entries WHERE key = ? AND {_LIVE}", (key, now)).fetchone()
        if row is None or row[0] is None:
            return None
        return float(row[0]) - now

    async def hit(
        self, key: str, window: float, limit: int, now: float, consume: bool = True
    ) -> WindowState:
        if window <= 0 or limit < 1:
            raise ValueError(f"expected window > 0 and limit >= 1, got window={window}, limit={limit}")
        return await self._run(
            "hit", self._in_transaction, lambda db: self._hit(db, key, float(window), int(limit), float(now), consume)
        )

    def _hit(
        self, db: sqlite3.Connection, key: str, window: float, limit: int, now: float, consume: bool
    ) -> WindowState:
        # Requests at or before now - window have left the window.
        db.execute("DELETE FROM window_hits WHERE key = ? AND at <= ?", (key, now - window))
        (count,) = db.execute("SELECT count(*) FROM window_hits WHERE key = ?", (key,)).fetchone()
        if count >= limit:
            # One more request fits once the request at position count - limit,
            # counted from the oldest, leaves the window.
            (oldest,) = db.execute(
                "SELECT at FROM window_hits WHERE key = ? ORDER BY at LIMIT 1 OFFSET ?", (key, count - limit)
            ).fetchone()
            return WindowState(allowed=False, count=count, limit=limit, retry_after=max(oldest + window - now, 0.0))
        if consume:
            # The row may go once one window has passed on the wall clock, as
            # the Redis driver expires its window key.
            db.execute(
                "INSERT INTO window_hits (key, at, expires_at) VALUES (?, ?, ?)", (key, now, self._clock() + window)
            )
            count += 1
        return WindowState(allowed=True, count=count, limit=limit, retry_after=0.0)

    async def hit_and_get(
        self, window_key: str, window: float, limit: int, now: float, keys: typing.Sequence[str]
    ) -> tuple[WindowState, list[bytes | None]]:
        if window <= 0 or limit < 1:
            raise ValueError(f"expected window > 0 and limit >= 1, got window={window}, limit={limit}")

        def body(db: sqlite3.Connection) -> tuple[WindowState, list[bytes | None]]:
            state = self._hit(db, window_key, float(window), int(limit), float(now), True)
            if not state.allowed:
                return state, [None] * len(keys)
            return state, [self._get(key) for key in keys]

        return await self._run("hit_and_get", self._in_transaction, body)

    async def ping(self) -> None:
        await self._run("ping", self._ping)

    def _ping(self) -> None:
        # Reading the header goes to the file, unlike SELECT 1.
        self._db().execute("PRAGMA user_version").fetchone()
        try:
            stat = os.stat(self.path)
        except OSError:
            stat = None
        if stat is None or (stat.st_dev, stat.st_ino) != self._file_id:
            # SQLite keeps writing to a deleted or replaced file through its
            # open descriptor, and everything written would be lost on restart.
            raise StorageUnavailable(self.name, "ping", "database file was removed or replaced after start-up")

    # --- cleanup

    async def remove_expired(self) -> int:
        """Delete expired entries and window hits, and return the number of rows deleted."""
        total = 0
        while True:
            entries, hits = await self._run("cleanup", self._remove_expired_batch, self._clock())
            total += entries + hits
            if entries < CLEANUP_BATCH and hits < CLEANUP_BATCH:
                return total

    def _remove_expired_batch(self, now: float) -> tuple[int, int]:
        db = self._db()
        entries = db.execute(
            "DELETE FROM entries WHERE key IN (SELECT key FROM entries WHERE expires_at <= ? LIMIT ?)",
            (now, CLEANUP_BATCH),
        ).rowcount
        hits = db.execute(
            "DELETE FROM window_hits WHERE rowid IN (SELECT rowid FROM window_hits WHERE expires_at <= ? LIMIT ?)",
            (now, CLEANUP_BATCH),
        ).rowcount
        return entries, hits

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self.remove_expired()
            except StorageUnavailable as exc:
                logger.warning(
                    "sqlite cleanup of expired entries failed (%s), retrying in %g s", exc.reason, self._cleanup_interval
                )
                continue
            if removed:
                logger.debug("sqlite driver removed %d expired rows", removed)


async def open_sqlite(settings: StorageSettings) -> SqliteDriver:
    """Open the database file that ``settings.url`` names and start its cleanup task.

    Raises:
        ConfigError: the URL is not a valid ``sqlite://`` URL.
        StorageUnavailable: the file cannot be used, for the cause named in its reason.
    """
    path = sqlite_schema.parse_url(settings.url)
    driver = SqliteDriver(
        path, busy_timeout=settings.sqlite_busy_timeout, cleanup_interval=settings.cleanup_interval
    )
    await driver.open()
    return driver
