"""SQLite driver: URLs, the database file, start-up errors, and state across restarts and SIGKILL.

The operations themselves are covered for every driver by
``test_driver_contract.py``. Tests here that run ``frontauth serve`` keep the
signing key and the server secret fixed, so that a restarted server accepts
what the first one issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import typing

import aiohttp
import pytest

from frontauth import keys
from frontauth.config import ConfigError, StorageSettings
from frontauth.drivers import open_driver
from frontauth.drivers.sqlite import SqliteDriver
from frontauth.drivers.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION, parse_url
from frontauth.storage import StorageUnavailable
from frontauth.tokens import digest
from tests.oauth_flow import Client, exchange, get_code, refresh, register
from tests.processes import ServerProcess, free_port, run_frontauth, start_frontauth

SIGNING_KEY = json.dumps(keys.generate("ES256", "sqlite-test"))
SERVER_SECRET = secrets.token_urlsafe(32)
PREFIX = "frontauth:"
STORAGE_UNUSABLE = "frontauth: storage at storage.url cannot be used: "


def sqlite_url(path: pathlib.Path) -> str:
    """Return the URL of an absolute path: ``sqlite:///`` followed by ``/…``, four slashes in all."""
    return f"sqlite:///{path}"


def server_env(path: pathlib.Path, **extra: str) -> dict[str, str]:
    env = {
        "FRONTAUTH_STORAGE_URL": sqlite_url(path),
        "JWT_SIGNING_KEY": SIGNING_KEY,
        "FRONTAUTH_SERVER_SECRET": SERVER_SECRET,
        # Flows below send more requests per minute than the default limit.
        "FRONTAUTH_RATELIMIT_MAX_REQUESTS": "100000",
    }
    env.update(extra)
    return env


def raw_rows(path: pathlib.Path, sql: str, *params: typing.Any) -> list[tuple[typing.Any, ...]]:
    """Run a query on the file through a connection of its own, as another program would."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def count_keys(path: pathlib.Path, kind: str) -> int:
    """Count the rows of one record kind, expired or not."""
    return raw_rows(path, "SELECT count(*) FROM entries WHERE key LIKE ?", f"{PREFIX}{kind}:%")[0][0]


@pytest.fixture
def servers() -> typing.Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(workdir: pathlib.Path, servers: list[ServerProcess], env: dict[str, str], port: int | None = None) -> ServerProcess:
    server = start_frontauth(str(workdir), env=env, port=port)
    servers.append(server)
    return server


def browser(url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def issue_tokens(http: aiohttp.ClientSession, client: Client) -> tuple[str, dict[str, typing.Any]]:
    """Run authorize, sign-in, consent and the code exchange, and return the code and the token response."""
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    return code, await response.json()


async def refresh_status(url: str, client: Client, refresh_token: str) -> tuple[int, dict[str, typing.Any]]:
    async with aiohttp.ClientSession(base_url=url) as http:
        response = await refresh(http, client, refresh_token)
        return response.status, await response.json()


# --- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///auth.db", "{cwd}/auth.db", id="relative-three-slashes"),
        pytest.param("sqlite:///data/auth.db", "{cwd}/data/auth.db", id="relative-subfolder"),
        pytest.param("sqlite:////var/lib/frontauth/auth.db", "/var/lib/frontauth/auth.db", id="absolute-four-slashes"),
        pytest.param("sqlite:////srv/my%20data/auth.db", "/srv/my data/auth.db", id="percent-escape"),
    ],
)
def test_url_names_path(url: str, expected: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url(url) == expected.format(cwd=tmp_path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "sqlite://host/auth.db",
            "invalid setting storage.url: must not name a host "
            "(expected sqlite:///relative/path.db or sqlite:////absolute/path.db)",
            id="host",
        ),
        pytest.param(
            "sqlite:///auth.db?mode=ro",
            "invalid setting storage.url: must not carry a query or fragment. Set SQLite options in [storage]",
            id="query",
        ),
        pytest.param(
            "sqlite://",
            "invalid setting storage.url: names no database file "
            "(expected sqlite:///relative/path.db or sqlite:////absolute/path.db)",
            id="no-path",
        ),
        pytest.param(
            "sqlite:///:memory:",
            "invalid setting storage.url: an in-memory SQLite database is lost on restart. Use memory:// instead",
            id="in-memory",
        ),
    ],
)
async def test_invalid_url_raises(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        await open_driver(StorageSettings(url=url))
    assert str(raised.value) == message


# --- the database file


async def test_new_file_gets_schema_and_wal(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "auth.db"
    driver = await open_driver(StorageSettings(url=sqlite_url(path)))
    try:
        synchronous = await driver._run("check", lambda: driver._db().execute("PRAGMA synchronous").fetchone()[0])
    finally:
        await driver.close()
    assert synchronous == 2  # FULL
    assert raw_rows(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw_rows(path, "PRAGMA journal_mode") == [("wal",)]
    tables = raw_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    assert tables == [("entries",), ("window_hits",)]


async def test_reopen_keeps_entries_and_ttl(tmp_path: pathlib.Path) -> None:
    settings = StorageSettings(url=sqlite_url(tmp_path / "auth.db"))
    driver = await open_driver(settings)
    await driver.set("client", b"registered", ttl=None)
    await driver.set("refresh", b"record", ttl=60)
    await driver.hit("rate", window=60, limit=1, now=time.time())
    await driver.close()

    reopened = await open_driver(settings)
    try:
        assert await reopened.get("client") == b"registered"
        assert await reopened.get("refresh") == b"record"
        remaining = await reopened.ttl("refresh")
        assert remaining is not None and 55 < remaining <= 60
        assert (await reopened.hit("rate", window=60, limit=1, now=time.time())).allowed is False
    finally:
        await reopened.close()


async def test_cleanup_deletes_expired_rows(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "auth.db"
    # The rows are written with the sweep off, so that it cannot run before the
    # first check on a slow machine, then a second driver sweeps the file.
    writer = await open_driver(StorageSettings(url=sqlite_url(path), cleanup_interval=0))
    try:
        await writer.set("short", b"v", ttl=0.1)
        await writer.set("kept", b"v", ttl=None)
        await writer.hit("rate", window=0.1, limit=5, now=time.time())
        assert raw_rows(path, "SELECT count(*) FROM window_hits") == [(1,)]
    finally:
        await writer.close()
    driver = await open_driver(StorageSettings(url=sqlite_url(path), cleanup_interval=0.2))
    try:
        deadline = time.monotonic() + 5

        def swept() -> bool:
            # The sweep deletes entries and window hits in two statements, and
            # this connection can read between them, so wait for both.
            entries = raw_rows(path, "SELECT key FROM entries")
            return entries == [("kept",)] and raw_rows(path, "SELECT count(*) FROM window_hits") == [(0,)]

        while not swept() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert raw_rows(path, "SELECT key FROM entries") == [("kept",)]
        assert raw_rows(path, "SELECT count(*) FROM window_hits") == [(0,)]
    finally:
        await driver.close()


async def test_write_lock_elsewhere_raises_unavailable(tmp_path: pathlib.Path) -> None:
    """While another connection holds the write lock, reads go on and writes fail after the busy timeout."""
    path = tmp_path / "auth.db"
    driver = await open_driver(StorageSettings(url=sqlite_url(path), sqlite_busy_timeout=0.2))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await driver.set("key", b"value", ttl=60)
        other.execute("BEGIN IMMEDIATE")
        assert await driver.get("key") == b"value"
        operations: dict[str, typing.Callable[[], typing.Awaitable[object]]] = {
            "set": lambda: driver.set("key", b"other", ttl=60),
            "set_if_absent": lambda: driver.set_if_absent("new", b"v", ttl=60),
            "take": lambda: driver.take("key"),
            "swap": lambda: driver.swap("key", b"other"),
            "delete": lambda: driver.delete("key"),
            "hit": lambda: driver.hit("rate", window=60, limit=5, now=1000.0),
        }
        for operation, call in operations.items():
            with pytest.raises(StorageUnavailable) as raised:
                await call()
            assert raised.value.driver == "sqlite"
            assert raised.value.operation == operation
            assert raised.value.reason == "database is locked (SQLITE_BUSY)"
        other.execute("ROLLBACK")
        assert await driver.swap("key", b"other") == b"value"
    finally:
        other.close()
        await driver.close()


async def test_removed_file_fails_ping(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "auth.db"
    driver = await open_driver(StorageSettings(url=sqlite_url(path)))
    try:
        await driver.ping()
        path.unlink()
        with pytest.raises(StorageUnavailable) as raised:
            await driver.ping()
        assert raised.value.reason == "database file was removed or replaced after start-up"
    finally:
        await driver.close()


# Opens the driver, reports "ready", waits for a line on stdin, then runs
# CALLS concurrent takes or swaps of one key and prints the results as JSON.
RACE_SCRIPT = """
import asyncio, json, sys
from frontauth.drivers.sqlite import SqliteDriver

async def main(path, operation, calls, name):
    driver = SqliteDriver(path, busy_timeout=30, cleanup_interval=0)
    await driver.open()
    print("ready", flush=True)
    sys.stdin.readline()
    if operation == "take":
        results = await asyncio.gather(*(driver.take("race") for _ in range(calls)))
    else:
        results = await asyncio.gather(*(driver.swap("race", f"{name}-{i}".encode()) for i in range(calls)))
    await driver.close()
    print(json.dumps([None if value is None else value.decode() for value in results]), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


@pytest.mark.parametrize("operation", ["take", "swap"])
async def test_processes_race_has_one_winner(operation: str, tmp_path: pathlib.Path) -> None:
    """Four processes run 25 concurrent calls each on one key: exactly one receives the original value."""
    path = tmp_path / "auth.db"
    driver = SqliteDriver(str(path), cleanup_interval=0)
    await driver.open()
    await driver.set("race", b"original", ttl=60)
    names = [f"process{n}" for n in range(4)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(path), operation, "25", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for name in names
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0
            results.extend(json.loads(output))
        final = await driver.get("race")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        await driver.close()

    assert len(results) == 100
    assert results.count("original") == 1
    if operation == "take":
        assert results.count(None) == 99
        assert final is None
    else:
        written = [f"{name}-{i}" for name in names for i in range(25)]
        assert final is not None
        assert sorted([*results, final.decode()]) == sorted(["original", *written])


# --- frontauth serve on a SQLite file


async def test_refresh_after_restart(tmp_path: pathlib.Path, servers: list[ServerProcess]) -> None:
    env = server_env(tmp_path / "auth.db", FRONTAUTH_TOKENS_REFRESH_GRACE="0")
    first = start(tmp_path, servers, env)
    async with browser(first.url) as http:
        client = await register(http)
        _, issued = await issue_tokens(http, client)
    first.stop()

    second = start(tmp_path, servers, env, port=first.port)
    status, body = await refresh_status(second.url, client, issued["refresh_token"])
    assert status == 200, body
    assert body["refresh_token"] != issued["refresh_token"]
    # The rotation marker written before the restart is there too: a second
    # presentation is reuse.
    status, body = await refresh_status(second.url, client, issued["refresh_token"])
    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "the refresh token was already used"}


async def test_two_servers_share_one_file(tmp_path: pathlib.Path, servers: list[ServerProcess]) -> None:
    # Without the grace window, so that the second presentation is reuse at once.
    env = server_env(tmp_path / "auth.db", FRONTAUTH_TOKENS_REFRESH_GRACE="0")
    first = start(tmp_path, servers, env)
    second = start(tmp_path, servers, env)
    async with browser(first.url) as http:
        client = await register(http)
        _, issued = await issue_tokens(http, client)
    status, body = await refresh_status(second.url, client, issued["refresh_token"])
    assert status == 200, body
    status, body = await refresh_status(first.url, client, issued["refresh_token"])
    assert status == 400
    assert body["error"] == "invalid_grant"


async def test_expired_records_gone_after_cleanup(tmp_path: pathlib.Path, servers: list[ServerProcess]) -> None:
    path = tmp_path / "auth.db"
    env = server_env(path, FRONTAUTH_STORAGE_CLEANUP_INTERVAL="0.5", FRONTAUTH_TOKENS_CODE_TTL="2")
    server = start(tmp_path, servers, env)
    async with browser(server.url) as http:
        client = await register(http)
        await issue_tokens(http, client)
    # The redeemed code stays as a "consumed" marker until its TTL ends.
    assert count_keys(path, "code") == 1
    deadline = time.monotonic() + 10
    while count_keys(path, "code") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert count_keys(path, "code") == 0
    assert count_keys(path, "refresh") == 1
    assert count_keys(path, "client") == 1


async def test_credentials_stored_as_digests_and_sessions_encrypted(
    tmp_path: pathlib.Path, servers: list[ServerProcess]
) -> None:
    path = tmp_path / "auth.db"
    server = start(tmp_path, servers, server_env(path))
    subject = "alice@example.com"
    async with browser(server.url) as http:
        client = await register(http)
        code, issued = await issue_tokens(http, client)
        status, rotated = await refresh_status(server.url, client, issued["refresh_token"])
        assert status == 200, rotated
        session_id = next(cookie.value for cookie in http.cookie_jar if cookie.key == "frontauth_session")

    keys_in_file = {key for (key,) in raw_rows(path, "SELECT key FROM entries")}
    assert f"{PREFIX}refresh:{digest(issued['refresh_token'])}" in keys_in_file
    assert f"{PREFIX}refresh:{digest(rotated['refresh_token'])}" in keys_in_file
    assert f"{PREFIX}code:{digest(code)}" in keys_in_file
    session_key = f"{PREFIX}session:{digest(session_id)}"
    assert session_key in keys_in_file
    (session_value,) = raw_rows(path, "SELECT value FROM entries WHERE key = ?", session_key)[0]
    assert subject.encode() not in session_value

    # Neither the rows nor the bytes on disk hold a credential in the clear.
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("auth.db*"))
    for credential in (code, issued["refresh_token"], rotated["refresh_token"], issued["access_token"], session_id):
        assert credential.encode() not in on_disk
        assert not any(credential in key for key in keys_in_file)


async def run_flows(url: str, client: Client, current_tokens: set[str]) -> None:
    """Issue refresh tokens until the server goes away, rotating every other one once.

    A token joins ``current_tokens`` only after its response has arrived, and
    a token presented for rotation never joins, so a request cut off by the
    kill leaves no token in the set whose state on the server is unknown.
    """
    rotate = False
    async with browser(url) as http:
        while True:
            try:
                _, issued = await issue_tokens(http, client)
                token = issued["refresh_token"]
                if rotate:
                    response = await refresh(http, client, token)
                    assert response.status == 200, await response.text()
                    token = (await response.json())["refresh_token"]
            except aiohttp.ClientError:
                return
            current_tokens.add(token)
            rotate = not rotate


async def test_sigkill_keeps_returned_refresh_tokens(tmp_path: pathlib.Path, servers: list[ServerProcess]) -> None:
    env = server_env(tmp_path / "auth.db")
    server = start(tmp_path, servers, env)
    async with browser(server.url) as http:
        client = await register(http)
    current_tokens: set[str] = set()
    flows = [asyncio.create_task(run_flows(server.url, client, current_tokens)) for _ in range(4)]
    deadline = time.monotonic() + 30
    while len(current_tokens) < 40 and time.monotonic() < deadline and not any(flow.done() for flow in flows):
        await asyncio.sleep(0.01)
    os.kill(server.process.pid, signal.SIGKILL)
    await asyncio.gather(*flows)
    server.process.wait()
    returned = set(current_tokens)
    assert len(returned) >= 40

    restarted = start(tmp_path, servers, env, port=server.port)
    statuses = [(await refresh_status(restarted.url, client, token))[0] for token in returned]
    assert statuses == [200] * len(returned)


# --- start-up errors

# Each setup creates an unusable database file or folder under the test's
# folder and returns its path and the reason the error line must give.
Setup = typing.Callable[[pathlib.Path, contextlib.ExitStack], tuple[pathlib.Path, str]]


@contextlib.contextmanager
def read_only(folder: pathlib.Path) -> typing.Iterator[None]:
    """Make a folder unwritable. Root ignores permission bits, so for root set the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr +i is not available to make a folder read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def missing_folder(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    path = tmp_path / "missing" / "auth.db"
    return path, f"cannot create {path}: folder {path.parent} does not exist"


def read_only_folder(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    folder = tmp_path / "read-only"
    folder.mkdir()
    stack.enter_context(read_only(folder))
    path = folder / "auth.db"
    return path, f"cannot write {path}: folder {folder} is not writable"


def locked_reason(path: pathlib.Path) -> str:
    return (
        f"{path} stayed locked by another connection for 0.5 s (storage.sqlite_busy_timeout). "
        "frontauth instances lock it only for single operations, so another program likely holds the lock"
    )


def locked_by_other_program(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    """Another program's database in rollback-journal mode, with an exclusive lock that blocks even reads."""
    path = tmp_path / "auth.db"
    other = sqlite3.connect(path, isolation_level=None)
    stack.callback(other.close)
    other.execute("CREATE TABLE notes (body TEXT)")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("INSERT INTO notes VALUES ('draft')")
    stack.callback(other.execute, "ROLLBACK")
    return path, locked_reason(path)


def frontauth_file_locked(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    """A frontauth database in WAL mode whose write lock another program keeps: reads work, writes wait."""
    path = tmp_path / "auth.db"
    asyncio.run(create_database(path))
    other = sqlite3.connect(path, isolation_level=None)
    stack.callback(other.close)
    other.execute("BEGIN IMMEDIATE")
    stack.callback(other.execute, "ROLLBACK")
    return path, locked_reason(path)


def newer_schema(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    path = tmp_path / "auth.db"
    asyncio.run(create_database(path))
    raw_rows(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    return path, (
        f"{path} has schema version {SCHEMA_VERSION + 1}, newer than version {SCHEMA_VERSION} that this "
        "frontauth supports. Upgrade frontauth or use another file"
    )


def other_application(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    path = tmp_path / "auth.db"
    raw_rows(path, "PRAGMA application_id = 305419896")
    return path, f"{path} belongs to another application (application_id 0x12345678). Use another file"


def unmarked_tables(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    path = tmp_path / "auth.db"
    raw_rows(path, "CREATE TABLE notes (body TEXT)")
    return path, f"{path} contains tables of another application and no frontauth application_id. Use another file"


def not_a_database(tmp_path: pathlib.Path, stack: contextlib.ExitStack) -> tuple[pathlib.Path, str]:
    path = tmp_path / "auth.db"
    path.write_bytes(b"these are notes, not a database\n" * 200)
    return path, f"{path} is not a usable SQLite database (SQLITE_NOTADB). Use another file"


async def create_database(path: pathlib.Path) -> None:
    driver = await open_driver(StorageSettings(url=sqlite_url(path)))
    await driver.close()


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(missing_folder, id="missing-folder"),
        pytest.param(read_only_folder, id="read-only-folder"),
        pytest.param(locked_by_other_program, id="locked-by-other-program"),
        pytest.param(frontauth_file_locked, id="frontauth-file-locked"),
        pytest.param(newer_schema, id="newer-schema"),
        pytest.param(other_application, id="other-application"),
        pytest.param(unmarked_tables, id="unmarked-tables"),
        pytest.param(not_a_database, id="not-a-database"),
    ],
)
def test_unusable_file_stops_startup(setup: Setup, tmp_path: pathlib.Path) -> None:
    with contextlib.ExitStack() as stack:
        path, reason = setup(tmp_path, stack)
        env = server_env(path, FRONTAUTH_STORAGE_SQLITE_BUSY_TIMEOUT="0.5")
        result = run_frontauth(str(tmp_path), "serve", "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [STORAGE_UNUSABLE + reason]
