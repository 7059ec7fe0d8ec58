"""The SQLite driver's database file: URL, start-up checks, schema and migrations.

A frontauth database carries two header fields that SQLite keeps for
applications: ``application_id`` marks the file as frontauth's, so the driver
never writes into another program's database, and ``user_version`` is the
schema version, which the driver migrates forward inside one transaction.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from frontauth.config import ConfigError
from frontauth.storage import StorageUnavailable

DRIVER_NAME = "sqlite"

# The ASCII bytes "frnt" as a big-endian 32-bit integer, stored in the
# database header (PRAGMA application_id).
APPLICATION_ID = 0x66726E74

# MIGRATIONS[n] takes the schema from version n to version n + 1. Expiry times
# are Unix times in seconds, so that they keep their meaning across restarts
# and between processes.
#
# NOTE: frontauth processes that are already running on the file keep using
# the statements of their own version, so a migration must leave the tables
# usable by the previous version, or every instance must stop first.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE entries (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            expires_at REAL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL",
        # One row per request that a sliding window counted. ``at`` is the
        # request time the caller passed to hit(), and ``expires_at`` is the
        # Unix time after which the request has left its window.
        """
        CREATE TABLE window_hits (
            key TEXT NOT NULL,
            at REAL NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
        "CREATE INDEX window_hits_key ON window_hits (key, at)",
        "CREATE INDEX window_hits_expiry ON window_hits (expires_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

URL_FORMS = "sqlite:///relative/path.db or sqlite:////absolute/path.db"

# Primary SQLite result code -> the phrase a StorageUnavailable reason starts with.
_REASONS: dict[int, str] = {
    sqlite3.SQLITE_BUSY: "database is locked",
    sqlite3.SQLITE_LOCKED: "database table is locked",
    sqlite3.SQLITE_READONLY: "database is read-only",
    sqlite3.SQLITE_PERM: "access denied",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_FULL: "disk is full",
    sqlite3.SQLITE_CANTOPEN: "cannot open the database file",
    sqlite3.SQLITE_CORRUPT: "database file is corrupt",
    sqlite3.SQLITE_NOTADB: "file is not a SQLite database",
    sqlite3.SQLITE_PROTOCOL: "file locking failed",
}


def parse_url(url: str) -> str:
    """Return the absolute database path that a ``sqlite://`` URL names.

    Three slashes start a path relative to the working directory
    (``sqlite:///data/auth.db``), and four start an absolute path
    (``sqlite:////var/lib/frontauth/auth.db``). Percent-escapes are decoded.

    Raises:
        ConfigError: the URL names a host, carries a query, or names no file.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.netloc:
        raise ConfigError("storage.url", None, f"must not name a host (expected {URL_FORMS})")
    if parts.query or parts.fragment:
        raise ConfigError("storage.url", None, "must not carry a query or fragment. Set SQLite options in [storage]")
    # The first slash of the path closes "sqlite://", and the rest is the file path.
    path = urllib.parse.unquote(parts.path[1:])
    if not path:
        raise ConfigError("storage.url", None, f"names no database file (expected {URL_FORMS})")
    if path == ":memory:":
        raise ConfigError("storage.url", None, "an in-memory SQLite database is lost on restart. Use memory:// instead")
    return os.path.abspath(path)


def describe_error(exc: sqlite3.Error) -> str:
    """Return a StorageUnavailable reason for a sqlite3 error: a fixed phrase and the SQLite error name."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    if code is None or name is None:
        return f"SQLite error ({type(exc).__name__})"
    # Extended result codes keep the primary code in their low byte.
    return f"{_REASONS.get(code & 0xFF, 'SQLite error')} ({name})"


def unavailable(reason: str) -> StorageUnavailable:
    """Build the error that stops start-up. The CLI prints its reason on one line."""
    return StorageUnavailable(DRIVER_NAME, "open", reason)


def check_path(path: str) -> None:
    """Check that the database file and its folder can be written.

    The folder must be writable even when the file exists, because SQLite
    creates the ``-wal`` and ``-shm`` files of WAL mode beside it.

    Raises:
        StorageUnavailable: the folder is missing or not writable, the path
            is a folder, or the file is not writable.
    """
    folder = os.path.dirname(path)
    if not os.path.exists(folder):
        raise unavailable(f"cannot create {path}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise unavailable(f"cannot create {path}: {folder} is not a folder")
    if os.path.isdir(path):
        raise unavailable(f"cannot open {path}: it is a folder, not a database file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise unavailable(f"cannot write {path}: folder {folder} is not writable")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise unavailable(f"cannot write {path}: the file is not readable and writable")


def open_error(exc: sqlite3.Error, path: str, busy_timeout: float) -> StorageUnavailable:
    """Turn a sqlite3 error raised while opening the file into a start-up error."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_BUSY:
        # NOTE: SQLite cannot tell who holds a lock. frontauth holds the write
        # lock only while one operation runs, so a lock that outlasts the busy
        # timeout most likely belongs to another program.
        return unavailable(
            f"{path} stayed locked by another connection for {busy_timeout:g} s (storage.sqlite_busy_timeout). "
            "frontauth instances lock it only for single operations, so another program likely holds the lock"
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return unavailable(f"{path} is not a usable SQLite database ({exc.sqlite_errorname}). Use another file")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return unavailable(f"cannot write {path} ({exc.sqlite_errorname})")
    return unavailable(f"cannot open {path}: {describe_error(exc)}")


def check_owner(connection: sqlite3.Connection, path: str) -> int:
    """Return the schema version of a frontauth file, 0 for an empty file.

    Raises:
        StorageUnavailable: the file belongs to another application, or its
            schema is newer than this frontauth supports.
    """
    application_id = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if application_id == 0:
        (tables,) = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if tables or version:
            raise unavailable(f"{path} contains tables of another application and no frontauth application_id. Use another file")
        return 0
    if application_id != APPLICATION_ID:
        raise unavailable(f"{path} belongs to another application (application_id {application_id:#010x}). Use another file")
    if version > SCHEMA_VERSION:
        raise unavailable(
            f"{path} has schema version {version}, newer than version {SCHEMA_VERSION} that this frontauth "
            "supports. Upgrade frontauth or use another file"
        )
    return int(version)


def prepare(connection: sqlite3.Connection, path: str) -> None:
    """Switch the file to WAL mode, then create or migrate its schema in one transaction.

    The owner check runs once before anything is written, so another
    program's file is never switched to WAL mode, and again inside the
    transaction, where no other connection can change the result.

    Raises:
        StorageUnavailable: see :func:`check_owner`, or WAL mode is unavailable.
        sqlite3.Error: SQLite failed, as :func:`open_error` describes.
    """
    check_owner(connection, path)
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode.lower() != "wal":
        raise unavailable(f"cannot switch {path} to WAL mode (journal_mode stays {mode})")
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = check_owner(connection, path)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
