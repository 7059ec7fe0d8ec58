"""Command batching of the single-server Redis driver, against a real redis-server.

Commands issued in one turn of the event loop go to Redis as one pipeline.
These tests check that they do, and that batching changes no result: each
caller gets its own reply or its own error, and a flushed script cache is
loaded again.
"""

from __future__ import annotations

import asyncio
import typing
import uuid

import pytest

from frontauth.config import StorageSettings
from frontauth.drivers import open_driver
from frontauth.storage import Driver, StorageUnavailable, WindowState
from tests.redis_servers import HOST, PASSWORD, RedisServer

CONCURRENT_CALLS = 50


@pytest.fixture
async def driver(redis_plain: RedisServer) -> typing.AsyncIterator[Driver]:
    opened = await open_driver(StorageSettings(url=f"redis://:{PASSWORD}@{HOST}:{redis_plain.port}/0", pool_size=4))
    yield opened
    await opened.close()


def unique_key(name: str) -> str:
    return f"frontauth-test:{uuid.uuid4().hex}:{name}"


def reads_processed(client: typing.Any) -> int:
    """Return how many socket reads the server has processed since it started (INFO stats)."""
    return int(client.info("stats")["total_reads_processed"])


async def test_concurrent_commands_share_one_pipeline(driver: Driver, redis_plain: RedisServer) -> None:
    """50 concurrent reads reach the server in a few socket reads, not 50."""
    key = unique_key("value")
    await driver.set(key, b"stored", ttl=60)
    with redis_plain.client() as client:
        before = reads_processed(client)
        values = await asyncio.gather(*(driver.get(key) for _ in range(CONCURRENT_CALLS)))
        after = reads_processed(client)
    assert values == [b"stored"] * CONCURRENT_CALLS
    # The second INFO costs one read itself; a pipeline larger than the
    # server's read buffer may take a few more.
    assert after - before <= 5


async def test_reply_error_reaches_only_its_caller(driver: Driver, redis_plain: RedisServer) -> None:
    """A command that Redis rejects fails alone, and the others of its pipeline succeed."""
    window, value_key = unique_key("window"), unique_key("value")
    await driver.hit(window, window=60, limit=5, now=1000.0)
    await driver.set(value_key, b"stored", ttl=60)
    # GET on the sorted set of a window is a WRONGTYPE error.
    results = await asyncio.gather(
        driver.get(value_key), driver.get(window), driver.get(value_key), return_exceptions=True
    )
    assert results[0] == b"stored"
    assert isinstance(results[1], StorageUnavailable)
    assert results[1].reason == "server rejected the command (ResponseError)"
    assert results[2] == b"stored"


async def test_wrong_argument_type_fails_alone(driver: Driver) -> None:
    """An argument redis-py cannot encode raises DataError to its caller only."""
    good, bad = unique_key("good"), unique_key("bad")
    results = await asyncio.gather(
        driver.set(good, b"stored", ttl=60),
        driver.set(bad, typing.cast(bytes, {"not": "bytes"}), ttl=60),
        return_exceptions=True,
    )
    assert results[0] is None
    assert type(results[1]).__name__ == "DataError"
    assert await driver.get(good) == b"stored"
    assert await driver.get(bad) is None


async def test_flushed_scripts_are_loaded_again(driver: Driver, redis_plain: RedisServer) -> None:
    """After SCRIPT FLUSH (as after a restart), batched script calls still count exactly."""
    window, value_key = unique_key("window"), unique_key("value")
    await driver.set(value_key, b"stored", ttl=60)
    assert (await driver.hit(window, window=60, limit=4, now=1000.0)).allowed
    with redis_plain.client() as client:
        client.script_flush()
    results = await asyncio.gather(
        driver.hit(window, window=60, limit=4, now=1000.0),
        driver.hit_and_get(window, window=60, limit=4, now=1000.0, keys=[value_key]),
        driver.hit(window, window=60, limit=4, now=1000.0),
        driver.hit_and_get(window, window=60, limit=4, now=1000.0, keys=[value_key]),
    )
    states = [result if isinstance(result, WindowState) else result[0] for result in results]
    assert sum(state.allowed for state in states) == 3
    assert max(state.count for state in states) == 4
    for result in results[1::2]:
        assert isinstance(result, tuple)
        assert result[1] == ([b"stored"] if result[0].allowed else [None])


async def test_cancelled_caller_leaves_others_served(driver: Driver) -> None:
    """A caller cancelled while its command waits does not disturb the commands batched with it."""
    key = unique_key("value")
    await driver.set(key, b"stored", ttl=60)
    cancelled = asyncio.ensure_future(driver.get(key))
    others = [asyncio.ensure_future(driver.get(key)) for _ in range(5)]
    cancelled.cancel()
    assert await asyncio.gather(*others) == [b"stored"] * 5
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await driver.get(key) == b"stored"
