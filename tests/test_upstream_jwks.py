"""The JWKS cache against a fault-injecting upstream provider on loopback.

Time comes from a FakeClock, so backoff and cool-down schedules are asserted
without sleeping. The only real waits are the stub's short response delay and
the 0.2 s client timeout of the timeout case.
"""

from __future__ import annotations

import asyncio
import logging
import typing

import pytest

from frontauth.resource import BearerVerifier, InvalidToken, KeySetCache, KeySetUnavailable
from frontauth.resource.jwks import half_jitter
from frontauth.resource.verifier import UPSTREAM_REQUIRED_CLAIMS
from tests.upstream_stub import RESOURCE, FakeClock, UpstreamStub, serve_stub

FAULTS = ["500", "429", "timeout", "garbage"]


@pytest.fixture
async def stub(aiohttp_server: typing.Any) -> UpstreamStub:
    return await serve_stub(aiohttp_server)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Events:
    """Counts of the cache's metric hooks."""

    def __init__(self) -> None:
        self.errors = 0
        self.retries = 0

    def error(self) -> None:
        self.errors += 1

    def retry(self) -> None:
        self.retries += 1


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def cache(stub: UpstreamStub, clock: FakeClock, events: Events) -> typing.AsyncIterator[KeySetCache]:
    keys = KeySetCache(
        stub.issuer,
        jwks_uri=f"{stub.issuer}/jwks",
        ttl=300,
        refetch_cooldown=30,
        max_backoff=8,
        timeout=0.2,
        clock=clock,
        jitter=lambda backoff: backoff,
        on_fetch_error=events.error,
        on_retry=events.retry,
    )
    yield keys
    await keys.close()


def verifier_for(stub: UpstreamStub, cache: KeySetCache) -> BearerVerifier:
    return BearerVerifier(
        stub.issuer, RESOURCE, keys=cache, required_claims=UPSTREAM_REQUIRED_CLAIMS, accept_generic_jwt=True
    )


async def wait_for_fetch(cache: KeySetCache) -> None:
    """Let a background fetch finish."""
    for _ in range(200):
        if cache._fetch_task is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background fetch did not finish")


# --- backoff ------------------------------------------------------------------


async def test_backoff_doubles_up_to_cap(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    stub.jwks_fault = "500"
    start = clock.now
    assert await cache.load() is False
    delays = [cache.next_fetch_at - start]

    for _ in range(4):
        clock.now = cache.next_fetch_at - 0.01
        with pytest.raises(KeySetUnavailable):
            await cache.get_key("key-1")
        requests_before = stub.jwks_requests
        clock.now = cache.next_fetch_at
        attempt_started = clock.now
        with pytest.raises(KeySetUnavailable):
            await cache.get_key("key-1")
        assert stub.jwks_requests == requests_before + 1
        delays.append(cache.next_fetch_at - attempt_started)

    assert delays == [1, 2, 4, 8, 8]
    assert stub.jwks_requests == 5


async def test_no_fetch_before_backoff_ends(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    stub.jwks_fault = "500"
    await cache.load()
    clock.advance(0.99)

    with pytest.raises(KeySetUnavailable):
        await cache.get_key("key-1")

    assert stub.jwks_requests == 1


def test_default_jitter_stays_within_half_and_whole() -> None:
    delays = [half_jitter(4.0) for _ in range(200)]

    assert min(delays) >= 2.0
    assert max(delays) <= 4.0
    assert len(set(delays)) > 1


async def test_retry_after_of_429_is_honoured(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    stub.jwks_fault = "429"
    stub.retry_after = "6"

    await cache.load()

    assert cache.next_fetch_at == clock.now + 6


async def test_retry_after_is_capped_by_max_backoff(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    stub.jwks_fault = "429"
    stub.retry_after = "3600"

    await cache.load()

    assert cache.next_fetch_at == clock.now + 8


# --- outages --------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
async def test_stale_keys_verify_during_outage(
    stub: UpstreamStub, cache: KeySetCache, clock: FakeClock, events: Events, fault: str
) -> None:
    verifier = verifier_for(stub, cache)
    token = stub.sign()
    await verifier.verify(token)
    stub.jwks_fault = fault

    clock.advance(301)  # past the TTL: the next verification fetches, and the fetch fails
    first = await verifier.verify(token)
    clock.advance(1)  # past the first backoff: a retry starts in the background
    second = await verifier.verify(token)
    await wait_for_fetch(cache)

    assert first.subject == "alice"
    assert second.subject == "alice"
    assert stub.jwks_requests == 3
    assert cache.fetch_errors == 2
    assert events.errors == 2
    assert events.retries == 1


@pytest.mark.parametrize("fault", FAULTS)
async def test_first_fetch_failure_is_unavailable(stub: UpstreamStub, cache: KeySetCache, fault: str) -> None:
    stub.jwks_fault = fault
    verifier = verifier_for(stub, cache)

    with pytest.raises(KeySetUnavailable):
        await verifier.verify(stub.sign())

    assert cache.fetch_errors == 1


async def test_recovery_after_outage_resets_backoff(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    stub.jwks_fault = "500"
    await cache.load()
    stub.jwks_fault = "ok"
    clock.advance(1)

    key = await cache.get_key("key-1")

    assert key is not None
    assert cache.next_fetch_at == clock.now + 30  # the cool-down, not a backoff


async def test_fetch_error_log_omits_query(stub: UpstreamStub, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    stub.jwks_fault = "500"
    keys = KeySetCache(stub.issuer, jwks_uri=f"{stub.issuer}/jwks?api_key=s3cr3t-value", clock=clock)
    caplog.set_level(logging.DEBUG)

    await keys.load()
    await keys.close()

    # The stub's own access log shows the query, so only frontauth's records count.
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("frontauth"))
    assert "HTTP 500" in ours
    assert "s3cr3t-value" not in ours


# --- rotation and unknown kids ------------------------------------------------------


async def test_new_kid_picked_up_after_rotation(stub: UpstreamStub, cache: KeySetCache, clock: FakeClock) -> None:
    verifier = verifier_for(stub, cache)
    await verifier.verify(stub.sign())
    new_key = stub.rotate("key-2")
    clock.advance(30)

    verified = await verifier.verify(stub.sign(new_key))

    assert verified.subject == "alice"
    assert stub.jwks_requests == 2


async def test_unknown_kid_within_cooldown_fetches_nothing(
    stub: UpstreamStub, cache: KeySetCache, clock: FakeClock
) -> None:
    verifier = verifier_for(stub, cache)
    await verifier.verify(stub.sign())
    new_key = stub.rotate("key-2")
    clock.advance(29)

    with pytest.raises(InvalidToken) as raised:
        await verifier.verify(stub.sign(new_key))

    assert raised.value.description == "No trusted key matches the access token kid"
    assert stub.jwks_requests == 1


async def test_hundred_concurrent_unknown_kids_fetch_once(
    stub: UpstreamStub, cache: KeySetCache, clock: FakeClock
) -> None:
    verifier = verifier_for(stub, cache)
    await verifier.verify(stub.sign())
    new_key = stub.rotate("key-2")
    clock.advance(30)
    stub.jwks_delay = 0.05
    token = stub.sign(new_key)

    results = await asyncio.gather(*(verifier.verify(token) for _ in range(100)))

    assert {result.subject for result in results} == {"alice"}
    assert stub.jwks_requests == 2


async def test_hundred_concurrent_forged_kids_fetch_once(
    stub: UpstreamStub, cache: KeySetCache, clock: FakeClock
) -> None:
    verifier = verifier_for(stub, cache)
    await verifier.verify(stub.sign())
    clock.advance(30)
    stub.jwks_delay = 0.05
    forged = stub.sign(stub.rotate("made-up"))
    stub.keys = [stub.keys[0].__class__.import_key(cache._find("key-1").as_dict(private=False))]

    results = await asyncio.gather(*(verifier.verify(forged) for _ in range(100)), return_exceptions=True)

    assert all(isinstance(result, InvalidToken) for result in results)
    assert stub.jwks_requests == 2


async def test_cold_cache_concurrent_verifications_fetch_once(stub: UpstreamStub, cache: KeySetCache) -> None:
    verifier = verifier_for(stub, cache)
    stub.jwks_delay = 0.05
    token = stub.sign()

    results = await asyncio.gather(*(verifier.verify(token) for _ in range(100)))

    assert len(results) == 100
    assert stub.jwks_requests == 1


async def test_generic_jwt_type_accepted_only_when_allowed(stub: UpstreamStub, cache: KeySetCache) -> None:
    token = stub.sign(typ="JWT")
    strict = BearerVerifier(stub.issuer, RESOURCE, keys=cache)

    with pytest.raises(InvalidToken):
        await strict.verify(token)
    verified = await verifier_for(stub, cache).verify(token)

    assert verified.subject == "alice"
