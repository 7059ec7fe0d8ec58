"""Storage figures of frontauth's SQLite driver: file sizes, disk writes, rows, bytes per stored refresh token.

Two sources, neither of which touches the server's connection:

- over each measured window, the sizes of the database and ``-wal`` files and
  the server's block-device writes from ``/proc/PID/io``;
- after the last window, a read-only connection that counts rows and reads
  page use from the ``dbstat`` virtual table, when this SQLite has it.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
import typing

import attrs

from bench.procstat import process_tree

DATABASE_NAME = "auth.db"
# Text of frontauth's log lines for a request that failed on storage (the
# error middleware), for a lock in particular (the driver's reason), and for a
# failed sweep of expired rows.
LOG_MARKERS = {
    "storage errors": "storage unavailable on",
    "locked": "database is locked",
    "cleanup failed": "cleanup of expired entries failed",
}


def database_path(folder: str) -> str:
    return os.path.join(folder, DATABASE_NAME)


def file_size(path: str) -> int:
    """Return the size of a file in bytes, 0 when it does not exist."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _io_counters(pids: list[int]) -> dict[str, int]:
    """Sum write_bytes and syscw of ``/proc/PID/io`` over the processes that exist now."""
    totals = {"write_bytes": 0, "syscw": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/io", encoding="ascii") as fh:
                for line in fh:
                    name, _, value = line.partition(":")
                    if name in totals:
                        totals[name] += int(value)
        except (OSError, ValueError):
            continue
    return totals


class SqliteFilesProbe:
    """Database and WAL file sizes, and the server's disk writes, over one window."""

    name = "sqlite"

    def __init__(self, path: str, pid: int) -> None:
        self.path = path
        self.pid = pid
        self._pids: list[int] = []
        self._database_before = 0
        self._io_before: dict[str, int] = {}

    async def start(self) -> None:
        self._pids = process_tree(self.pid)
        self._database_before = file_size(self.path)
        self._io_before = _io_counters(self._pids)

    async def stop(self) -> dict[str, typing.Any]:
        io_after = _io_counters(self._pids)
        database = file_size(self.path)
        return {
            "database_bytes": database,
            "wal_bytes": file_size(self.path + "-wal"),
            "database_growth": database - self._database_before,
            "disk_write_bytes": io_after["write_bytes"] - self._io_before["write_bytes"],
            "write_syscalls": io_after["syscw"] - self._io_before["syscw"],
        }


@attrs.frozen
class PageUse:
    """Page space of one b-tree (table or index) from dbstat, in bytes."""

    pages_bytes: int
    payload_bytes: int
    cells: int


def record_bytes_on_disk(record_payload: float, table: PageUse, index: PageUse | None) -> float:
    """Estimate the disk space one row takes: its share of the table's pages plus one mean index entry.

    The row's payload is scaled by the table's page bytes per payload byte, which
    spreads page headers, cell pointers and free space over the rows by size.
    Returns NaN when the table has no payload to scale by.
    """
    if table.payload_bytes <= 0:
        return math.nan
    share = record_payload * table.pages_bytes / table.payload_bytes
    if index is not None and index.cells > 0:
        share += index.pages_bytes / index.cells
    return share


@attrs.frozen
class DatabaseStats:
    """Rows and page use of the database after the last window."""

    rows_by_kind: dict[str, int]
    window_hits: int
    expired_left: int
    refresh_records: int
    # Mean bytes of key, value and expiry of a refresh-token row: its column
    # data, without the record header of about 5 bytes and the page overhead.
    refresh_payload: float
    # The estimate of record_bytes_on_disk, or NaN without dbstat.
    refresh_on_disk: float
    dbstat: bool


# One row's expires_at, a REAL with a fractional part, which SQLite stores in 8 bytes.
_REAL_BYTES = 8


def database_stats(path: str, prefix: str) -> DatabaseStats:
    """Read row counts and page use through a read-only connection (never the server's)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        rows_by_kind: dict[str, int] = {}
        for (key,) in connection.execute("SELECT key FROM entries"):
            kind = str(key).removeprefix(prefix).split(":", 1)[0]
            rows_by_kind[kind] = rows_by_kind.get(kind, 0) + 1
        (window_hits,) = connection.execute("SELECT count(*) FROM window_hits").fetchone()
        (expired,) = connection.execute(
            "SELECT (SELECT count(*) FROM entries WHERE expires_at <= ?1)"
            " + (SELECT count(*) FROM window_hits WHERE expires_at <= ?1)",
            (time.time(),),
        ).fetchone()
        count, payload = connection.execute(
            "SELECT count(*), avg(length(CAST(key AS BLOB)) + length(value)) FROM entries"
            " WHERE substr(key, 1, ?) = ?",
            (len(f"{prefix}refresh:"), f"{prefix}refresh:"),
        ).fetchone()
        refresh_payload = math.nan if payload is None else float(payload) + _REAL_BYTES
        pages = _page_use(connection)
    finally:
        connection.close()
    on_disk = math.nan
    if pages is not None and "entries" in pages and count:
        on_disk = record_bytes_on_disk(refresh_payload, pages["entries"], pages.get("entries_expiry"))
    return DatabaseStats(rows_by_kind, int(window_hits), int(expired), int(count), refresh_payload, on_disk,
                         pages is not None)


def _page_use(connection: sqlite3.Connection) -> dict[str, PageUse] | None:
    """Return page use per b-tree from dbstat, or None when SQLite was built without it.

    Pages of every type count towards the space. Payload and cells count on
    leaf and overflow pages only, because the interior pages of an index or a
    WITHOUT ROWID table hold copies of keys that the leaves already hold.
    """
    try:
        rows = connection.execute(
            "SELECT name, sum(pgsize),"
            " sum(CASE WHEN pagetype = 'internal' THEN 0 ELSE payload END),"
            " sum(CASE WHEN pagetype = 'leaf' THEN ncell ELSE 0 END)"
            " FROM dbstat GROUP BY name"
        ).fetchall()
    except sqlite3.OperationalError:
        return None
    return {name: PageUse(int(pages), int(payload), int(cells)) for name, pages, payload, cells in rows}


def count_log_markers(log_path: str, offset: int = 0) -> dict[str, int]:
    """Count the lines of the server log, from byte ``offset`` on, that contain each of LOG_MARKERS."""
    counts = dict.fromkeys(LOG_MARKERS, 0)
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            fh.seek(offset)
            for line in fh:
                for name, marker in LOG_MARKERS.items():
                    if marker in line:
                        counts[name] += 1
    except OSError:
        pass
    return counts
