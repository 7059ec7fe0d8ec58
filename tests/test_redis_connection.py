"""The single connection of the single-server Redis driver, against real redis-server processes.

The driver sends every command over one connection and matches replies to
callers in the order it sent the commands. These tests check that matching
under many concurrent callers, and what callers see when the connection
breaks: a server killed or stopped with commands in flight, a server that
stops replying, and a server that restarts between commands.

Servers are paused with SIGSTOP to hold commands in flight. A paused server
still accepts bytes into its socket buffer, so the driver's write succeeds
and its commands wait for replies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import typing
import uuid

import pytest

from frontauth.config import StorageSettings
from frontauth.drivers import open_driver
from frontauth.storage import Driver, StorageUnavailable, WindowState
from tests.redis_servers import HOST, PASSWORD, RedisServer

CONCURRENT_CALLERS = 200
IN_FLIGHT = 60
# A guard against a hang, far above how long any of these calls should take.
HANG_GUARD = 30.0
SECRET_MARKER = "secret-token-value"


def unique_key(name: str) -> str:
    return f"frontauth-test:{uuid.uuid4().hex}:{SECRET_MARKER}:{name}"


def settings_for(server: RedisServer, db: int = 0, **options: typing.Any) -> StorageSettings:
    return StorageSettings(url=f"redis://:{PASSWORD}@{HOST}:{server.port}/{db}", **options)


def pause(server: RedisServer) -> None:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGCONT)


async def let_writes_happen() -> None:
    """Run the event loop for a while, so that queued commands reach the socket."""
    await asyncio.sleep(0.2)


@pytest.fixture
async def driver(redis_plain: RedisServer) -> typing.AsyncIterator[Driver]:
    opened = await open_driver(settings_for(redis_plain))
    yield opened
    await opened.close()


async def test_replies_match_200_mixed_callers(driver: Driver) -> None:
    """200 concurrent callers of different commands each get their own reply or error."""
    keys = [unique_key(f"value-{i}") for i in range(CONCURRENT_CALLERS)]
    values = [f"value-{i}".encode() * (1 + i % 7) for i in range(CONCURRENT_CALLERS)]
    await asyncio.gather(*(driver.set(key, value, ttl=60) for key, value in zip(keys, values)))
    # A rate-limit window is a sorted set, so GET on it is a WRONGTYPE error.
    window = unique_key("window")
    await driver.hit(window, window=60, limit=10_000, now=1000.0)

    calls: list[typing.Awaitable[typing.Any]] = []
    for i, key in enumerate(keys):
        kind = i % 5
        if kind == 0:
            calls.append(driver.get(key))
        elif kind == 1:
            calls.append(driver.get(window))
        elif kind == 2:
            calls.append(driver.swap(key, b"swapped-%d" % i))
        elif kind == 3:
            calls.append(driver.hit_and_get(unique_key(f"window-{i}"), window=60, limit=5, now=1000.0, keys=[key]))
        else:
            calls.append(driver.ttl(key))
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG_GUARD)

    for i, result in enumerate(results):
        kind = i % 5
        if kind == 0:
            assert result == values[i], i
        elif kind == 1:
            assert isinstance(result, StorageUnavailable), i
            assert result.operation == "get"
            assert result.reason == "server rejected the command (ResponseError)"
        elif kind == 2:
            assert result == values[i], i
        elif kind == 3:
            assert result == (WindowState(allowed=True, count=1, limit=5, retry_after=0.0), [values[i]]), i
        else:
            assert isinstance(result, float), i
            assert 59 < result <= 60
    for i in range(2, CONCURRENT_CALLERS, 5):
        assert await driver.get(keys[i]) == b"swapped-%d" % i


@pytest.mark.parametrize("retry_attempts", [0, 2])
async def test_killed_server_fails_in_flight(redis_server_factory, retry_attempts: int) -> None:
    """Commands in flight when the server dies each get StorageUnavailable, and none hangs."""
    server: RedisServer = redis_server_factory()
    driver = await open_driver(settings_for(server, retry_attempts=retry_attempts, command_timeout=20.0))
    try:
        key = unique_key("value")
        await driver.set(key, b"stored", ttl=60)
        pause(server)
        calls = [
            asyncio.ensure_future(driver.get(key) if i % 2 else driver.hit(unique_key("w"), 60, 5, 1000.0))
            for i in range(IN_FLIGHT)
        ]
        await let_writes_happen()
        assert not any(call.done() for call in calls)
        await asyncio.to_thread(server.kill)

        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HANG_GUARD)
        for i, result in enumerate(results):
            assert isinstance(result, StorageUnavailable), repr(result)
            assert result.operation == ("get" if i % 2 else "hit")
            assert result.reason == "connection failed (ConnectionError)"
            assert SECRET_MARKER not in str(result)
    finally:
        await driver.close()


async def test_unreplied_commands_time_out(redis_server_factory) -> None:
    """A server that stops replying fails each command with a timeout that names the operation."""
    server: RedisServer = redis_server_factory()
    driver = await open_driver(settings_for(server, retry_attempts=0, command_timeout=0.5))
    key = unique_key("value")
    try:
        await driver.set(key, b"stored", ttl=60)
        pause(server)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(driver.get(key), driver.ttl(key), driver.ping(), return_exceptions=True), HANG_GUARD
            )
        finally:
            resume(server)
        assert [type(result) for result in results] == [StorageUnavailable] * 3
        assert [result.operation for result in results] == ["get", "ttl", "ping"]
        for result in results:
            assert result.reason == "timed out (TimeoutError)"
            assert SECRET_MARKER not in str(result)
        assert str(results[0]) == "redis storage get failed: timed out (TimeoutError)"

        # The late connection was closed, and the next command opens a new one.
        # The server ran the timed-out commands once resumed, so they must
        # change nothing here.
        assert await driver.get(key) == b"stored"
    finally:
        await driver.close()


async def test_reconnects_after_server_restart(redis_server_factory) -> None:
    """Commands fail while the server is down and succeed once it is back, on the same driver."""
    server: RedisServer = redis_server_factory()
    driver = await open_driver(settings_for(server, retry_attempts=0))
    key = unique_key("value")
    try:
        await driver.set(key, b"before", ttl=60)
        await asyncio.to_thread(server.stop)
        with pytest.raises(StorageUnavailable) as raised:
            await driver.get(key)
        assert raised.value.reason == "connection failed (ConnectionError)"

        await asyncio.to_thread(server.start)
        # The server keeps no data across a restart.
        assert await driver.get(key) is None
        await driver.set(key, b"after", ttl=60)
        assert await driver.get(key) == b"after"
    finally:
        await driver.close()


async def test_idle_connection_survives_restart(redis_server_factory) -> None:
    """A restart while no command is in flight costs the next command nothing but a reconnect."""
    server: RedisServer = redis_server_factory()
    driver = await open_driver(settings_for(server))
    key = unique_key("value")
    try:
        await driver.set(key, b"before", ttl=60)
        await asyncio.to_thread(server.restart)
        await driver.set(key, b"after", ttl=60)
        assert await driver.get(key) == b"after"
        state = await driver.hit(unique_key("window"), window=60, limit=5, now=1000.0)
        assert state.count == 1
    finally:
        await driver.close()


async def test_database_from_url(redis_plain: RedisServer) -> None:
    """The database number in the URL selects the database the driver writes to."""
    driver = await open_driver(settings_for(redis_plain, db=5))
    key = unique_key("value")
    try:
        await driver.set(key, b"in-db-5", ttl=60)
    finally:
        await driver.close()
    with redis_plain.client(db=5) as client:
        assert client.get(key) == b"in-db-5"
    with redis_plain.client(db=0) as client:
        assert client.get(key) is None


async def test_closed_driver_fails_fast(redis_plain: RedisServer) -> None:
    driver = await open_driver(settings_for(redis_plain))
    await driver.close()
    with pytest.raises(StorageUnavailable) as raised:
        await asyncio.wait_for(driver.get(unique_key("value")), HANG_GUARD)
    assert raised.value.reason == "connection failed (ConnectionError)"
