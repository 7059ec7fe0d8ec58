"""Benchmark SQLite statistics: the on-disk estimate per row and the read of a database file."""

from __future__ import annotations

import math
import pathlib
import sqlite3
import time

import pytest

from bench.sqlitestats import PageUse, count_log_markers, database_stats, record_bytes_on_disk
from frontauth.drivers.sqlite_schema import MIGRATIONS

PREFIX = "frontauth:"


def test_record_bytes_scales_payload_by_page_use() -> None:
    table = PageUse(pages_bytes=8192, payload_bytes=4096, cells=10)
    index = PageUse(pages_bytes=4096, payload_bytes=1000, cells=100)

    assert record_bytes_on_disk(300.0, table, None) == pytest.approx(600.0)
    assert record_bytes_on_disk(300.0, table, index) == pytest.approx(600.0 + 40.96)


def test_record_bytes_without_payload_is_nan() -> None:
    empty = PageUse(pages_bytes=4096, payload_bytes=0, cells=0)

    assert math.isnan(record_bytes_on_disk(300.0, empty, None))


def test_record_bytes_ignores_empty_index() -> None:
    table = PageUse(pages_bytes=4096, payload_bytes=4096, cells=10)
    index = PageUse(pages_bytes=4096, payload_bytes=0, cells=0)

    assert record_bytes_on_disk(100.0, table, index) == pytest.approx(100.0)


def _database(path: pathlib.Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        connection.execute(statement)
    now = time.time()
    rows = [(f"{PREFIX}refresh:{i:04d}", b"r" * 200, now + 3600) for i in range(50)]
    rows += [(f"{PREFIX}code:{i:04d}", b"c" * 100, now - 10) for i in range(5)]
    rows += [(f"{PREFIX}client:c{i}", b"x" * 50, None) for i in range(3)]
    connection.executemany("INSERT INTO entries (key, value, expires_at) VALUES (?, ?, ?)", rows)
    connection.execute("INSERT INTO window_hits (key, at, expires_at) VALUES (?, ?, ?)", ("k", now, now - 1))
    connection.close()


def test_database_stats_counts_rows_and_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "auth.db"
    _database(path)

    stats = database_stats(str(path), PREFIX)

    assert stats.rows_by_kind == {"refresh": 50, "code": 5, "client": 3}
    assert stats.window_hits == 1
    assert stats.expired_left == 6
    assert stats.refresh_records == 50
    # key "frontauth:refresh:0000" is 22 bytes, the value 200, the expiry 8.
    assert stats.refresh_payload == pytest.approx(230.0)
    if stats.dbstat:
        assert stats.refresh_on_disk > stats.refresh_payload


def test_log_markers_counted_from_offset(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "server.log"
    first = "storage unavailable on POST /oauth/token: sqlite storage swap failed: database is locked (SQLITE_BUSY)\n"
    log.write_text(first + "sqlite cleanup of expired entries failed (x), retrying in 2 s\n"
                   + "storage unavailable on GET /oauth/authorize: sqlite storage get failed: disk I/O error\n"
                   + "unrelated line\n")

    assert count_log_markers(str(log)) == {"storage errors": 2, "locked": 1, "cleanup failed": 1}
    assert count_log_markers(str(log), offset=len(first)) == {"storage errors": 1, "locked": 0, "cleanup failed": 1}
    assert count_log_markers(str(tmp_path / "missing.log")) == {"storage errors": 0, "locked": 0, "cleanup failed": 0}
