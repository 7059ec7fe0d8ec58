"""The storage driver contract, run against every driver.

Cases: ``memory`` with a controllable clock, ``sqlite`` (a file in the test's
folder), ``redis`` (plain text, ACL user), ``rediss`` (TLS with a client
certificate) and ``rediss+cluster`` (TLS Redis Cluster of three primaries and
three replicas). The Redis cases run against real servers from
``tests/redis_servers.py``. Every case but memory waits in real time, so the
TTLs are short.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
import uuid

import pytest

from frontauth.config import StorageSettings
from frontauth.drivers import open_driver
from frontauth.drivers.memory import MemoryDriver
from frontauth.storage import Driver, StorageUnavailable, WindowState
from tests.redis_servers import ACL_PASSWORD, ACL_USER, HOST, PASSWORD

DRIVER_CASES = ["memory", "sqlite", "redis", "rediss", "rediss+cluster"]
# Fewer connections than the concurrency tests run calls at once, so that
# calls have to wait for a pooled connection.
POOL_SIZE = 8
CONCURRENT_CALLS = 100


class FakeClock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class DriverCase:
    """A driver under test, a unique key prefix, and a way to let time pass."""

    driver: Driver
    advance: typing.Callable[[float], typing.Awaitable[None]]
    prefix: str
    # The memory case reads a fake clock, so its remaining TTLs are exact.
    exact_clock: bool

    def key(self, name: str) -> str:
        return self.prefix + name

    def assert_ttl(self, remaining: float | None, expected: float) -> None:
        """Check a remaining TTL: exact on the fake clock, within 0.5 s below on Redis."""
        assert remaining is not None
        if self.exact_clock:
            assert remaining == expected
        else:
            assert expected - 0.5 < remaining <= expected


def redis_settings(case_id: str, request: pytest.FixtureRequest) -> StorageSettings:
    common = {"pool_size": POOL_SIZE, "connect_timeout": 2.0, "command_timeout": 2.0}
    if case_id == "redis":
        server = request.getfixturevalue("redis_plain")
        url = f"redis://{ACL_USER}:{ACL_PASSWORD}@{HOST}:{server.port}/0"
        return StorageSettings(url=url, **common)
    tls = request.getfixturevalue("redis_tls_files")
    files = {"tls_ca": tls.ca, "tls_cert": tls.client_cert, "tls_key": tls.client_key}
    if case_id == "rediss":
        server = request.getfixturevalue("redis_tls")
        return StorageSettings(url=f"rediss://:{PASSWORD}@{HOST}:{server.port}/0", **files, **common)
    cluster = request.getfixturevalue("redis_cluster_tls")
    return StorageSettings(url=f"rediss+cluster://:{PASSWORD}@{cluster.seeds}/", **files, **common)


@pytest.fixture(params=DRIVER_CASES)
async def case(request: pytest.FixtureRequest) -> typing.AsyncIterator[DriverCase]:
    prefix = f"frontauth-test:{uuid.uuid4().hex}:"
    if request.param == "memory":
        clock = FakeClock()
        driver = MemoryDriver(clock=clock, cleanup_interval=0)

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield DriverCase(driver, advance, prefix, exact_clock=True)
        await driver.close()
        return
    if request.param == "sqlite":
        settings = StorageSettings(url=f"sqlite:///{request.getfixturevalue('tmp_path')}/contract.db")
    else:
        settings = redis_settings(request.param, request)
    driver = await open_driver(settings)
    yield DriverCase(driver, asyncio.sleep, prefix, exact_clock=False)
    await driver.close()


# --- get, set, TTL


async def test_get_missing_returns_none(case: DriverCase) -> None:
    """get of a key that was never written returns None."""
    assert await case.driver.get(case.key("missing")) is None


async def test_set_then_get_returns_bytes(case: DriverCase) -> None:
    """get returns exactly the bytes that set stored, including NUL and high bytes."""
    value = b"record\x00\xff{json}"
    await case.driver.set(case.key("k"), value, ttl=None)
    assert await case.driver.get(case.key("k")) == value


async def test_set_replaces_value_and_ttl(case: DriverCase) -> None:
    """A second set replaces the value and drops the earlier TTL."""
    key = case.key("k")
    await case.driver.set(key, b"first", ttl=10)
    await case.driver.set(key, b"second", ttl=None)
    assert await case.driver.get(key) == b"second"
    assert await case.driver.ttl(key) is None


async def test_set_with_ttl_expires(case: DriverCase) -> None:
    """A key written with a TTL is missing once the TTL has passed."""
    key = case.key("k")
    await case.driver.set(key, b"short-lived", ttl=0.3)
    assert await case.driver.get(key) == b"short-lived"
    await case.advance(0.4)
    assert await case.driver.get(key) is None
    assert await case.driver.ttl(key) is None


async def test_ttl_missing_and_persistent_are_none(case: DriverCase) -> None:
    """ttl returns None for a missing key and for a key without expiry."""
    await case.driver.set(case.key("persistent"), b"v", ttl=None)
    assert await case.driver.ttl(case.key("missing")) is None
    assert await case.driver.ttl(case.key("persistent")) is None


async def test_ttl_counts_down(case: DriverCase) -> None:
    """ttl returns the seconds left, which shrink as time passes."""
    key = case.key("k")
    await case.driver.set(key, b"v", ttl=30)
    case.assert_ttl(await case.driver.ttl(key), 30.0)
    await case.advance(0.5)
    case.assert_ttl(await case.driver.ttl(key), 29.5)


# --- set_if_absent


async def test_set_if_absent_stores_missing_key(case: DriverCase) -> None:
    """set_if_absent stores a missing key with its TTL and returns True."""
    key = case.key("k")
    assert await case.driver.set_if_absent(key, b"first", ttl=30) is True
    assert await case.driver.get(key) == b"first"
    case.assert_ttl(await case.driver.ttl(key), 30.0)


async def test_set_if_absent_keeps_existing_key(case: DriverCase) -> None:
    """set_if_absent on an existing key returns False and changes neither value nor TTL."""
    key = case.key("k")
    await case.driver.set(key, b"first", ttl=None)
    assert await case.driver.set_if_absent(key, b"second", ttl=30) is False
    assert await case.driver.get(key) == b"first"
    assert await case.driver.ttl(key) is None


async def test_set_if_absent_after_expiry(case: DriverCase) -> None:
    """An expired key counts as missing for set_if_absent."""
    key = case.key("k")
    await case.driver.set(key, b"old", ttl=0.3)
    await case.advance(0.4)
    assert await case.driver.set_if_absent(key, b"new", ttl=None) is True
    assert await case.driver.get(key) == b"new"


# --- take


async def test_take_is_single_use(case: DriverCase) -> None:
    """take returns the value once; the key is gone afterwards."""
    key = case.key("code")
    await case.driver.set(key, b"code-record", ttl=60)
    assert await case.driver.take(key) == b"code-record"
    assert await case.driver.take(key) is None
    assert await case.driver.get(key) is None


async def test_take_missing_returns_none(case: DriverCase) -> None:
    """take of a missing key returns None and creates nothing."""
    key = case.key("missing")
    assert await case.driver.take(key) is None
    assert await case.driver.get(key) is None


async def test_take_expired_returns_none(case: DriverCase) -> None:
    """take of an expired key returns None."""
    key = case.key("code")
    await case.driver.set(key, b"code-record", ttl=0.3)
    await case.advance(0.4)
    assert await case.driver.take(key) is None


# --- swap


async def test_swap_returns_old_value(case: DriverCase) -> None:
    """swap stores the new value and returns the one it replaced."""
    key = case.key("refresh")
    await case.driver.set(key, b"active", ttl=60)
    assert await case.driver.swap(key, b"rotated") == b"active"
    assert await case.driver.get(key) == b"rotated"
    assert await case.driver.swap(key, b"rotated-again") == b"rotated"


async def test_swap_keeps_remaining_ttl(case: DriverCase) -> None:
    """swap keeps the TTL left on the key instead of resetting or dropping it."""
    key = case.key("code")
    await case.driver.set(key, b"unused", ttl=5)
    await case.advance(0.5)
    assert await case.driver.swap(key, b"consumed") == b"unused"
    case.assert_ttl(await case.driver.ttl(key), 4.5)


async def test_swap_value_expires_with_original_ttl(case: DriverCase) -> None:
    """The swapped-in value expires when the original would have."""
    key = case.key("code")
    await case.driver.set(key, b"unused", ttl=0.3)
    assert await case.driver.swap(key, b"consumed") == b"unused"
    await case.advance(0.4)
    assert await case.driver.get(key) is None


async def test_swap_without_ttl_stays_persistent(case: DriverCase) -> None:
    """swap on a key without expiry leaves it without expiry."""
    key = case.key("client")
    await case.driver.set(key, b"v1", ttl=None)
    assert await case.driver.swap(key, b"v2") == b"v1"
    assert await case.driver.ttl(key) is None


async def test_swap_missing_does_not_create(case: DriverCase) -> None:
    """swap of a missing or expired key returns None and leaves the key missing."""
    missing, expired = case.key("missing"), case.key("expired")
    await case.driver.set(expired, b"old", ttl=0.3)
    await case.advance(0.4)
    for key in (missing, expired):
        assert await case.driver.swap(key, b"consumed") is None
        assert await case.driver.get(key) is None
        assert await case.driver.ttl(key) is None


# --- delete


async def test_delete_reports_existence(case: DriverCase) -> None:
    """delete returns True for an existing key, then False once it is gone."""
    key = case.key("k")
    await case.driver.set(key, b"v", ttl=60)
    assert await case.driver.delete(key) is True
    assert await case.driver.get(key) is None
    assert await case.driver.delete(key) is False


async def test_delete_expired_returns_false(case: DriverCase) -> None:
    """delete of an expired key returns False."""
    key = case.key("k")
    await case.driver.set(key, b"v", ttl=0.3)
    await case.advance(0.4)
    assert await case.driver.delete(key) is False


# --- hit: sliding-window rate limiting, with explicit times


async def test_hit_allows_exactly_limit(case: DriverCase) -> None:
    """Of a burst at one instant, exactly ``limit`` requests are allowed."""
    key = case.key("rate")
    states = [await case.driver.hit(key, window=60, limit=5, now=1000.0) for _ in range(8)]
    assert states[:5] == [WindowState(allowed=True, count=n, limit=5, retry_after=0.0) for n in range(1, 6)]
    assert states[5:] == [WindowState(allowed=False, count=5, limit=5, retry_after=60.0)] * 3


async def test_hit_check_consumes_nothing(case: DriverCase) -> None:
    """consume=False reports the state without recording a request."""
    key = case.key("rate")
    for _ in range(3):
        state = await case.driver.hit(key, window=60, limit=2, now=1000.0, consume=False)
        assert state == WindowState(allowed=True, count=0, limit=2, retry_after=0.0)
    assert await case.driver.hit(key, window=60, limit=2, now=1000.0) == WindowState(True, 1, 2, 0.0)
    assert await case.driver.hit(key, window=60, limit=2, now=1000.0, consume=False) == WindowState(True, 1, 2, 0.0)
    assert await case.driver.hit(key, window=60, limit=2, now=1001.0) == WindowState(True, 2, 2, 0.0)
    assert await case.driver.hit(key, window=60, limit=2, now=1002.0, consume=False) == WindowState(
        False, 2, 2, 58.0
    )


async def test_hit_rejection_not_recorded(case: DriverCase) -> None:
    """Rejected requests do not count, so they do not extend the lockout."""
    key = case.key("rate")
    assert await case.driver.hit(key, window=10, limit=2, now=100.0) == WindowState(True, 1, 2, 0.0)
    assert await case.driver.hit(key, window=10, limit=2, now=101.0) == WindowState(True, 2, 2, 0.0)
    for now in (102.0, 104.0, 106.0, 108.0):
        assert await case.driver.hit(key, window=10, limit=2, now=now) == WindowState(False, 2, 2, 110.0 - now)
    # At 110 the request of 100 has left the window; the rejected ones never entered it.
    assert await case.driver.hit(key, window=10, limit=2, now=110.0) == WindowState(True, 2, 2, 0.0)


async def test_hit_window_slides(case: DriverCase) -> None:
    """Each request leaves the window ``window`` seconds after it was made."""
    key = case.key("rate")
    for now, count in ((100.0, 1), (104.0, 2), (108.0, 3)):
        assert await case.driver.hit(key, window=10, limit=3, now=now) == WindowState(True, count, 3, 0.0)
    assert await case.driver.hit(key, window=10, limit=3, now=109.0) == WindowState(False, 3, 3, 1.0)
    assert await case.driver.hit(key, window=10, limit=3, now=110.0) == WindowState(True, 3, 3, 0.0)
    assert await case.driver.hit(key, window=10, limit=3, now=111.0) == WindowState(False, 3, 3, 3.0)
    assert await case.driver.hit(key, window=10, limit=3, now=130.0) == WindowState(True, 1, 3, 0.0)


async def test_hit_keys_are_independent(case: DriverCase) -> None:
    """A full window on one key does not limit another key."""
    first, second = case.key("rate:a"), case.key("rate:b")
    await case.driver.hit(first, window=60, limit=1, now=1000.0)
    assert (await case.driver.hit(first, window=60, limit=1, now=1000.0)).allowed is False
    assert await case.driver.hit(second, window=60, limit=1, now=1000.0) == WindowState(True, 1, 1, 0.0)


# --- hit_and_get: one count and some reads


async def test_hit_and_get_returns_values_while_allowed(case: DriverCase) -> None:
    """Each allowed request is counted like hit and gets the values in key order. Over the limit it gets none."""
    window, client, session = case.key("rate"), case.key("client"), case.key("session")
    await case.driver.set(client, b"client-record", ttl=60)
    await case.driver.set(session, b"session-record", ttl=60)
    keys = [client, session]
    results = [await case.driver.hit_and_get(window, window=60, limit=2, now=1000.0, keys=keys) for _ in range(3)]
    assert results[0] == (WindowState(True, 1, 2, 0.0), [b"client-record", b"session-record"])
    assert results[1] == (WindowState(True, 2, 2, 0.0), [b"client-record", b"session-record"])
    assert results[2] == (WindowState(False, 2, 2, 60.0), [None, None])


async def test_hit_and_get_missing_key_returns_none(case: DriverCase) -> None:
    """A missing or expired key reads as None, the other keys still read, and the request is counted."""
    window, present, missing = case.key("rate"), case.key("present"), case.key("missing")
    await case.driver.set(present, b"stored", ttl=60)
    state, values = await case.driver.hit_and_get(window, window=60, limit=5, now=1000.0, keys=[missing, present])
    assert state == WindowState(True, 1, 5, 0.0)
    assert values == [None, b"stored"]
    await case.driver.set(missing, b"short-lived", ttl=0.2)
    await case.advance(0.3)
    state, values = await case.driver.hit_and_get(window, window=60, limit=5, now=1000.0, keys=[missing])
    assert values == [None]
    assert state.count == 2


async def test_hit_and_get_without_keys_counts_only(case: DriverCase) -> None:
    """With no key to read, hit_and_get is a hit that returns an empty list."""
    window = case.key("rate")
    assert await case.driver.hit_and_get(window, window=60, limit=1, now=1000.0, keys=[]) == (
        WindowState(True, 1, 1, 0.0),
        [],
    )
    assert await case.driver.hit_and_get(window, window=60, limit=1, now=1000.0, keys=[]) == (
        WindowState(False, 1, 1, 60.0),
        [],
    )


async def test_hit_and_get_shares_the_window_with_hit(case: DriverCase) -> None:
    """hit and hit_and_get count in one window, and a rejection is not recorded."""
    window, keys = case.key("rate"), [case.key("client")]
    assert (await case.driver.hit(window, window=10, limit=2, now=100.0)).allowed
    assert (await case.driver.hit_and_get(window, window=10, limit=2, now=101.0, keys=keys))[0] == WindowState(
        True, 2, 2, 0.0
    )
    assert await case.driver.hit(window, window=10, limit=2, now=102.0) == WindowState(False, 2, 2, 8.0)
    assert (await case.driver.hit_and_get(window, window=10, limit=2, now=103.0, keys=keys))[0] == WindowState(
        False, 2, 2, 7.0
    )
    # At 110 the request of 100 has left, and the rejected ones of 102 and 103 never entered.
    assert await case.driver.hit(window, window=10, limit=2, now=110.0) == WindowState(True, 2, 2, 0.0)


async def test_hit_and_get_rejects_invalid_rule(case: DriverCase) -> None:
    """A window of 0 s or a limit of 0 is a programming error, as for hit."""
    with pytest.raises(ValueError, match="expected window > 0 and limit >= 1"):
        await case.driver.hit_and_get(case.key("rate"), window=0, limit=1, now=1000.0, keys=[case.key("client")])


async def test_concurrent_hit_and_get_lets_exactly_limit_through(case: DriverCase) -> None:
    """Of 100 concurrent calls with a limit of 40, exactly 40 are allowed, and only those read the value."""
    window, key = case.key("rate"), case.key("client")
    await case.driver.set(key, b"client-record", ttl=60)
    results = await asyncio.gather(
        *(
            case.driver.hit_and_get(window, window=60, limit=40, now=1000.0, keys=[key])
            for _ in range(CONCURRENT_CALLS)
        )
    )
    assert sum(state.allowed for state, _ in results) == 40
    assert all(values == ([b"client-record"] if state.allowed else [None]) for state, values in results)


# --- ping and concurrency


async def test_ping_returns_none(case: DriverCase) -> None:
    """ping of a reachable backend returns None."""
    assert await case.driver.ping() is None


async def test_concurrent_take_has_one_winner(case: DriverCase) -> None:
    """Of 100 concurrent takes of one key, exactly one receives the value."""
    key = case.key("code")
    await case.driver.set(key, b"code-record", ttl=60)
    results = await asyncio.gather(*(case.driver.take(key) for _ in range(CONCURRENT_CALLS)))
    assert [result for result in results if result is not None] == [b"code-record"]
    assert results.count(None) == CONCURRENT_CALLS - 1
    assert await case.driver.get(key) is None


async def test_concurrent_swap_has_one_winner(case: DriverCase) -> None:
    """Of 100 concurrent swaps of one key, exactly one receives the original value.

    Every other caller receives the value one earlier caller wrote, so the
    returned values and the final value together are the original and each
    written value exactly once.
    """
    key = case.key("code")
    await case.driver.set(key, b"original", ttl=60)
    written = [f"consumed-{i}".encode() for i in range(CONCURRENT_CALLS)]
    results = await asyncio.gather(*(case.driver.swap(key, value) for value in written))
    assert results.count(b"original") == 1
    final = await case.driver.get(key)
    assert sorted([*results, final]) == sorted([b"original", *written])
    case.assert_ttl(await case.driver.ttl(key), 60.0)


# --- an unreachable backend


def plain_settings(port: int, **options: typing.Any) -> StorageSettings:
    return StorageSettings(
        url=f"redis://:{PASSWORD}@{HOST}:{port}/0", connect_timeout=1.0, command_timeout=1.0, **options
    )


async def test_stopped_server_raises_unavailable(redis_server_factory: typing.Callable[..., typing.Any]) -> None:
    """Every operation raises StorageUnavailable while the server is down, and works again after a restart."""
    server = redis_server_factory()
    driver = await open_driver(plain_settings(server.port, retry_attempts=1))
    key, value = "frontauth-test:secret-key", b"secret-value"
    try:
        await driver.set(key, value, ttl=60)
        server.stop()
        operations: dict[str, typing.Callable[[], typing.Awaitable[object]]] = {
            "get": lambda: driver.get(key),
            "set": lambda: driver.set(key, value, ttl=60),
            "set_if_absent": lambda: driver.set_if_absent(key, value, ttl=60),
            "take": lambda: driver.take(key),
            "swap": lambda: driver.swap(key, value),
            "delete": lambda: driver.delete(key),
            "ttl": lambda: driver.ttl(key),
            "hit": lambda: driver.hit(key + ":rate", window=60, limit=5, now=1000.0),
            "ping": driver.ping,
        }
        for operation, call in operations.items():
            with pytest.raises(StorageUnavailable) as raised:
                await call()
            assert raised.value.driver == "redis"
            assert raised.value.operation == operation
            assert raised.value.reason == "connection failed (ConnectionError)"
            for text in (key, value.decode(), PASSWORD):
                assert text not in str(raised.value)

        server.start()
        await driver.ping()
        assert await driver.get(key) is None  # the server keeps nothing on disk
        await driver.set(key, value, ttl=60)
        assert await driver.take(key) == value
    finally:
        await driver.close()


async def test_open_unreachable_server_raises(redis_server_factory: typing.Callable[..., typing.Any]) -> None:
    """Opening a driver whose server is down raises StorageUnavailable after startup_wait."""
    server = redis_server_factory()
    server.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StorageUnavailable) as raised:
        await open_driver(plain_settings(server.port, retry_attempts=0, startup_wait=0.5))
    assert raised.value.operation == "ping"
    assert loop.time() - started >= 0.5
