"""Rate limiter: sliding windows on memory, Redis and a TLS Redis Cluster, and the 429 middleware."""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
import uuid

import aiohttp
import attrs
import pytest

from frontauth import config
from frontauth.app import create_app
from frontauth.appkeys import SERVICES
from frontauth.config import StorageSettings
from frontauth.drivers import open_driver
from frontauth.drivers.memory import MemoryDriver
from frontauth.encryption import RecordCipher
from frontauth.ratelimit import RateLimiter, Rule
from frontauth.storage import Driver
from frontauth.stores import ClientRecord, RequestReadAhead, Stores
from frontauth.tokens import digest
from tests.oauth_flow import Client, authorize_params, exchange, get_code, new_pkce, refresh
from tests.redis_servers import HOST, PASSWORD

DRIVER_CASES = ["memory", "redis", "rediss+cluster"]
BURST = 150
LIMIT = 100


class FakeClock:
    """Wall-clock seconds that move only when the test advances them."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def storage_settings(case_id: str, request: pytest.FixtureRequest) -> StorageSettings:
    if case_id == "redis":
        server = request.getfixturevalue("redis_plain")
        return StorageSettings(url=f"redis://:{PASSWORD}@{HOST}:{server.port}/0")
    tls = request.getfixturevalue("redis_tls_files")
    cluster = request.getfixturevalue("redis_cluster_tls")
    return StorageSettings(
        url=f"rediss+cluster://:{PASSWORD}@{cluster.seeds}/", tls_ca=tls.ca, tls_cert=tls.client_cert, tls_key=tls.client_key
    )


@pytest.fixture(params=DRIVER_CASES)
async def drivers(request: pytest.FixtureRequest) -> typing.AsyncIterator[tuple[Driver, Driver]]:
    """Two drivers on the same storage, as two frontauth instances would hold."""
    if request.param == "memory":
        driver = MemoryDriver(cleanup_interval=0)
        yield driver, driver
        await driver.close()
        return
    settings = storage_settings(request.param, request)
    first = await open_driver(settings)
    second = await open_driver(settings)
    yield first, second
    await first.close()
    await second.close()


def limiter_on(driver: Driver, clock: FakeClock, prefix: str, **rule: typing.Any) -> RateLimiter:
    return RateLimiter(driver, prefix, {"token": Rule(**rule)}, clock=clock, cleanup_interval=0)


async def test_burst_lets_exactly_limit_through(drivers: tuple[Driver, Driver]) -> None:
    """150 requests from one address at once: the first 100 pass, the other 50 are limited."""
    limiter = limiter_on(drivers[0], FakeClock(), f"test-{uuid.uuid4().hex}:")
    states = [await limiter.hit("127.0.0.1", "token") for _ in range(BURST)]
    assert sum(state.allowed for state in states) == LIMIT
    assert all(state.allowed for state in states[:LIMIT])
    assert not any(state.allowed for state in states[LIMIT:])
    assert limiter.stats() == {"token": {"allowed": LIMIT, "limited": BURST - LIMIT}}


async def test_concurrent_burst_lets_exactly_limit_through(drivers: tuple[Driver, Driver]) -> None:
    """150 concurrent requests: still exactly 100 pass, because each hit is atomic."""
    limiter = limiter_on(drivers[0], FakeClock(), f"test-{uuid.uuid4().hex}:")
    states = await asyncio.gather(*(limiter.hit("10.1.1.1", "token") for _ in range(BURST)))
    assert sum(state.allowed for state in states) == LIMIT


async def test_would_allow_consumes_nothing(drivers: tuple[Driver, Driver]) -> None:
    """would_allow checks without counting: a full budget stays available after many checks."""
    limiter = limiter_on(drivers[0], FakeClock(), f"test-{uuid.uuid4().hex}:", max_requests=3)
    for _ in range(10):
        assert await limiter.would_allow("10.0.0.1", "token") is True
    assert [(await limiter.hit("10.0.0.1", "token")).allowed for _ in range(4)] == [True, True, True, False]
    assert await limiter.would_allow("10.0.0.1", "token") is False
    assert limiter.stats()["token"] == {"allowed": 3, "limited": 1}


async def test_two_instances_share_the_budget(drivers: tuple[Driver, Driver]) -> None:
    """Two limiters on one shared storage let 100 requests through between them, not 200."""
    clock = FakeClock()
    prefix = f"test-{uuid.uuid4().hex}:"
    first = limiter_on(drivers[0], clock, prefix)
    second = limiter_on(drivers[1], clock, prefix)
    states = []
    for i in range(BURST):
        limiter = first if i % 2 == 0 else second
        states.append(await limiter.hit("192.0.2.7", "token"))
    assert sum(state.allowed for state in states) == LIMIT
    assert first.stats()["token"]["allowed"] + second.stats()["token"]["allowed"] == LIMIT


async def test_two_instances_share_the_budget_with_reads(drivers: tuple[Driver, Driver]) -> None:
    """Counts that read a key and counts that do not share one budget across instances."""
    clock = FakeClock()
    prefix = f"test-{uuid.uuid4().hex}:"
    first = limiter_on(drivers[0], clock, prefix)
    second = limiter_on(drivers[1], clock, prefix)
    read_key = f"{prefix}client:some-client"
    await drivers[0].set(read_key, b"client-record", None)
    allowed = 0
    for i in range(BURST):
        if i % 2 == 0:
            state, values = await first.hit_and_get("192.0.2.8", "token", [read_key])
            assert values == ([b"client-record"] if state.allowed else [None])
        else:
            state = await second.hit("192.0.2.8", "token")
        allowed += state.allowed
    assert allowed == LIMIT
    assert first.stats()["token"]["allowed"] + second.stats()["token"]["allowed"] == LIMIT


async def test_window_slides(drivers: tuple[Driver, Driver]) -> None:
    """Requests become allowed again one by one as the old ones age out of the window."""
    clock = FakeClock()
    limiter = limiter_on(drivers[0], clock, f"test-{uuid.uuid4().hex}:", window=60.0, max_requests=3)
    for _ in range(3):
        assert (await limiter.hit("a", "token")).allowed
        clock.now += 10
    # Requests at t=0, 10 and 20; now t=30.
    limited = await limiter.hit("a", "token")
    assert not limited.allowed
    assert limited.retry_after == pytest.approx(30.0)
    clock.now += 30.5  # t=60.5: the request at t=0 has left the window
    assert (await limiter.hit("a", "token")).allowed
    assert not (await limiter.hit("a", "token")).allowed
    clock.now += 10  # t=70.5: the request at t=10 has left
    assert await limiter.would_allow("a", "token")
    assert (await limiter.hit("a", "token")).allowed


async def test_keys_are_counted_separately(drivers: tuple[Driver, Driver]) -> None:
    """One address at its limit does not limit another address or another rule."""
    clock = FakeClock()
    rules = {"token": Rule(max_requests=1), "register": Rule(max_requests=1)}
    limiter = RateLimiter(drivers[0], f"test-{uuid.uuid4().hex}:", rules, clock=clock, cleanup_interval=0)
    assert (await limiter.hit("10.0.0.1", "token")).allowed
    assert not (await limiter.hit("10.0.0.1", "token")).allowed
    assert (await limiter.hit("10.0.0.2", "token")).allowed
    assert (await limiter.hit("10.0.0.1", "register")).allowed


async def test_unknown_rule_raises_key_error() -> None:
    """Naming a rule that was not configured is a programming error, reported by name."""
    limiter = RateLimiter(MemoryDriver(cleanup_interval=0), rules={"token": Rule()})
    with pytest.raises(KeyError, match="unknown rate-limit rule 'login'"):
        await limiter.hit("a", "login")


async def test_cleanup_purges_expired_memory_windows() -> None:
    """With a cleanup interval, the memory driver's windows go once their requests left the window."""
    clock = FakeClock()
    driver = MemoryDriver(cleanup_interval=0)
    limiter = RateLimiter(driver, rules={"token": Rule(window=60.0)}, clock=clock, cleanup_interval=0.01)
    limiter.start()
    try:
        await limiter.hit("a", "token")
        await asyncio.sleep(0.05)
        # The driver keeps no other view of its windows, so the test reads its private table.
        assert len(driver._windows) == 1
        clock.now += 61
        await asyncio.sleep(0.05)
        assert driver._windows == {}
    finally:
        await limiter.close()


async def test_cleanup_interval_zero_starts_no_task() -> None:
    """cleanup_interval = 0 turns the sweep off."""
    limiter = RateLimiter(MemoryDriver(cleanup_interval=0), cleanup_interval=0)
    limiter.start()
    assert limiter._cleanup_task is None


# --- the middleware


@pytest.fixture
async def app_client(aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings]) -> typing.Any:
    async def start(toml: str = "", **environ: str) -> typing.Any:
        settings = make_settings(toml, **environ)
        return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))

    return start


READ_AHEAD_KINDS = (":client:", ":session:", ":code:", ":refresh:")


class RecordingDriver:
    """A memory driver that records every async operation with its arguments.

    It stands for a driver with round trips, so the read-ahead path runs.
    """

    saves_round_trips = True

    def __init__(self) -> None:
        self.inner = MemoryDriver(cleanup_interval=0)
        self.calls: list[tuple[str, tuple[typing.Any, ...], dict[str, typing.Any]]] = []

    def __getattr__(self, name: str) -> typing.Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def recorded(*args: typing.Any, **kwargs: typing.Any) -> typing.Any:
            self.calls.append((name, args, kwargs))
            return await attribute(*args, **kwargs)

        return recorded

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def read_ahead_keys(self) -> list[str]:
        """Return the keys the first hit_and_get read."""
        name, args, kwargs = self.calls[0]
        assert name == "hit_and_get"
        return list(kwargs.get("keys", args[4] if len(args) > 4 else []))

    def separate_reads(self) -> list[str]:
        """Return the keys of client, session, code and refresh records read with a get of their own."""
        return [args[0] for name, args, _ in self.calls if name == "get" and any(k in args[0] for k in READ_AHEAD_KINDS)]


@pytest.fixture
async def recorded_app(aiohttp_client: typing.Any, make_settings: typing.Callable[..., config.Settings]) -> typing.Any:
    async def start(toml: str = "") -> tuple[typing.Any, RecordingDriver]:
        driver = RecordingDriver()
        http = await aiohttp_client(create_app(make_settings(toml), driver=typing.cast(Driver, driver)))
        return http, driver

    return start


async def registered_client(http: typing.Any) -> Client:
    response = await http.post(
        "/oauth/register",
        json={"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none"},
    )
    assert response.status == 201, await response.text()
    return Client(str((await response.json())["client_id"]), None, "http://127.0.0.1:33418/callback")


def stored_key(http: typing.Any, kind: str, ident: str) -> str:
    stores = http.app[SERVICES].stores
    return stores.key(kind, ident)


async def test_code_exchange_reads_ahead_with_count(recorded_app: typing.Any) -> None:
    """A code exchange counts the request and reads its client and code in one operation, and reads them no more."""
    http, driver = await recorded_app()
    client = await registered_client(http)
    code, verifier, _ = await get_code(http, client)
    driver.calls.clear()
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    assert driver.read_ahead_keys() == [
        stored_key(http, "client", client.client_id),
        stored_key(http, "code", digest(code)),
    ]
    assert driver.names().count("hit") == 0
    assert driver.separate_reads() == []


async def test_refresh_reads_ahead_with_count(recorded_app: typing.Any) -> None:
    """A refresh grant reads its client and refresh token with the count."""
    http, driver = await recorded_app()
    client = await registered_client(http)
    code, verifier, _ = await get_code(http, client)
    tokens = await (await exchange(http, client, code, verifier)).json()
    driver.calls.clear()
    response = await refresh(http, client, tokens["refresh_token"])
    assert response.status == 200, await response.text()
    assert driver.read_ahead_keys() == [
        stored_key(http, "client", client.client_id),
        stored_key(http, "refresh", digest(tokens["refresh_token"])),
    ]
    assert driver.separate_reads() == []


async def test_authorize_reads_ahead_client_and_session(recorded_app: typing.Any) -> None:
    """A signed-in authorization request reads its client and session with the count."""
    http, driver = await recorded_app()
    client = await registered_client(http)
    await get_code(http, client)
    session_id = next(cookie.value for cookie in http.session.cookie_jar if cookie.key == "frontauth_session")
    driver.calls.clear()
    _, challenge = new_pkce()
    response = await http.get("/oauth/authorize", params=authorize_params(client, challenge), allow_redirects=False)
    assert response.status == 302
    assert "code=" in response.headers["Location"]
    assert driver.read_ahead_keys() == [
        stored_key(http, "client", client.client_id),
        stored_key(http, "session", digest(session_id)),
    ]
    assert driver.separate_reads() == []


async def test_basic_credentials_name_the_client_read(recorded_app: typing.Any) -> None:
    """With HTTP Basic credentials the client_id comes from the header, and the body need not name it."""
    http, driver = await recorded_app()
    response = await http.post(
        "/oauth/register",
        json={"redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "client_secret_basic"},
    )
    body = await response.json()
    driver.calls.clear()
    headers = {"Authorization": aiohttp.encode_basic_auth(body["client_id"], body["client_secret"])}
    response = await http.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x"}, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_grant"
    assert driver.read_ahead_keys() == [stored_key(http, "client", body["client_id"]), stored_key(http, "code", digest("x"))]
    assert driver.separate_reads() == []


async def test_request_naming_nothing_stored_counts_with_hit(recorded_app: typing.Any) -> None:
    """A configured client is not read from storage, and a request that names no record is a plain hit."""
    http, driver = await recorded_app(
        '[[clients]]\nclient_id = "configured"\nredirect_uris = ["http://127.0.0.1:33418/callback"]\n'
    )
    response = await http.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": "configured"})
    assert response.status == 400
    assert driver.read_ahead_keys() == [stored_key(http, "code", digest("x"))]
    driver.calls.clear()
    response = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "configured"})
    assert response.status == 400
    assert driver.calls[0][0] == "hit"


async def test_unknown_client_still_invalid_client(recorded_app: typing.Any) -> None:
    """A client_id read ahead and not found gets invalid_client, as without reading ahead."""
    http, driver = await recorded_app()
    response = await http.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": "unknown"})
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_client"
    assert driver.read_ahead_keys()[0] == stored_key(http, "client", "unknown")


async def test_read_ahead_value_serves_one_read() -> None:
    """A kept value serves the first read only, and a write through Stores drops it."""
    driver = MemoryDriver(cleanup_interval=0)
    stores = Stores(driver, "test:", RecordCipher("test-secret", None))
    record = ClientRecord(client_id="kept", redirect_uris=["http://127.0.0.1:33418/callback"])
    key = stores.client_key("kept")
    with RequestReadAhead():
        stores.keep_read_ahead([key], [json.dumps(attrs.asdict(record)).encode()])
        assert await stores.get_client("kept") == record
        # The key is not in storage, so a second read finds nothing.
        assert await stores.get_client("kept") is None
        stores.keep_read_ahead([key], [json.dumps(attrs.asdict(record)).encode()])
        assert await stores.delete_client("kept") is False
        assert await stores.get_client("kept") is None
    stores.keep_read_ahead([key], [b"outside a request"])
    assert await stores.get_client("kept") is None


async def test_token_burst_with_client_lets_exactly_limit_through(recorded_app: typing.Any) -> None:
    """150 token requests naming a stored client and a code: 100 reach the endpoint, 50 get 429."""
    http, _ = await recorded_app()
    client = await registered_client(http)
    form = {"grant_type": "authorization_code", "code": "unknown", "client_id": client.client_id}
    statuses = [(await http.post("/oauth/token", data=form)).status for _ in range(BURST)]
    assert statuses[:LIMIT] == [400] * LIMIT
    assert statuses[LIMIT:] == [429] * (BURST - LIMIT)


async def test_token_burst_gets_429_after_limit(app_client: typing.Any) -> None:
    """150 token requests from one address: 100 reach the endpoint, 50 get 429 JSON with Retry-After."""
    http = await app_client()
    statuses = []
    limited = None
    for _ in range(BURST):
        response = await http.post("/oauth/token", data={"grant_type": "authorization_code"})
        statuses.append(response.status)
        if response.status == 429 and limited is None:
            limited = (dict(response.headers), await response.json())
    assert statuses.count(429) == BURST - LIMIT
    assert 429 not in statuses[:LIMIT]
    assert limited is not None
    headers, body = limited
    assert body["error"] == "temporarily_unavailable"
    assert body["error_description"].startswith("too many requests; retry after ")
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["Cache-Control"] == "no-store"


async def test_endpoint_override_sets_its_own_limit(app_client: typing.Any) -> None:
    """ratelimit.register_max_requests limits registration alone."""
    http = await app_client("[ratelimit]\nregister_max_requests = 2\n")
    statuses = [(await http.post("/oauth/register", json={})).status for _ in range(3)]
    assert statuses[:2] == [400, 400]
    assert statuses[2] == 429
    token = await http.post("/oauth/token", data={})
    assert token.status == 400


async def test_browser_endpoint_gets_error_page(app_client: typing.Any) -> None:
    """Over the limit, /oauth/authorize shows the error page with status 429 and Retry-After."""
    http = await app_client("[ratelimit]\nauthorize_max_requests = 1\n")
    await http.get("/oauth/authorize")
    response = await http.get("/oauth/authorize", params={"client_id": "x"})
    assert response.status == 429
    assert response.headers["Content-Type"].startswith("text/html")
    assert int(response.headers["Retry-After"]) >= 1
    assert "temporarily_unavailable" in await response.text()


async def test_login_post_is_limited(app_client: typing.Any) -> None:
    """Sign-in form submissions are counted per client address."""
    http = await app_client("[ratelimit]\nlogin_max_requests = 1\n")
    first = await http.post("/oauth/login", data={})
    second = await http.post("/oauth/login", data={})
    assert first.status != 429
    assert second.status == 429


async def test_forwarded_for_ignored_without_trust_proxy(app_client: typing.Any) -> None:
    """Without server.trust_proxy a client cannot escape its limit by sending X-Forwarded-For."""
    http = await app_client("[ratelimit]\ntoken_max_requests = 1\n")
    first = await http.post("/oauth/token", data={}, headers={"X-Forwarded-For": "203.0.113.1"})
    second = await http.post("/oauth/token", data={}, headers={"X-Forwarded-For": "203.0.113.2"})
    assert first.status == 400
    assert second.status == 429


async def test_trust_proxy_counts_last_forwarded_address(app_client: typing.Any) -> None:
    """With server.trust_proxy the address the proxy appended is the key; forged entries to its left are not."""
    http = await app_client("[server]\ntrust_proxy = true\n[ratelimit]\ntoken_max_requests = 1\n")
    first = await http.post("/oauth/token", data={}, headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.1"})
    forged = await http.post("/oauth/token", data={}, headers={"X-Forwarded-For": "198.51.100.10, 203.0.113.1"})
    other = await http.post("/oauth/token", data={}, headers={"X-Forwarded-For": "203.0.113.2"})
    assert first.status == 400
    assert forged.status == 429
    assert other.status == 400


async def test_disabled_limiter_lets_everything_through(app_client: typing.Any) -> None:
    """ratelimit.enabled = false turns the middleware off."""
    http = await app_client("[ratelimit]\nenabled = false\nmax_requests = 1\n")
    statuses = [(await http.post("/oauth/token", data={})).status for _ in range(3)]
    assert statuses == [400, 400, 400]


async def test_endpoints_setting_selects_limited_endpoints(app_client: typing.Any) -> None:
    """An endpoint left out of ratelimit.endpoints is not limited."""
    http = await app_client('[ratelimit]\nendpoints = ["register"]\nmax_requests = 1\n')
    statuses = [(await http.post("/oauth/token", data={})).status for _ in range(3)]
    assert statuses == [400, 400, 400]


@pytest.mark.parametrize(
    ("toml", "setting", "message"),
    [
        ("[ratelimit]\nwindow = 0\n", "ratelimit.window", "expected a positive number of seconds, got 0.0"),
        ("[ratelimit]\nmax_requests = 0\n", "ratelimit.max_requests", "expected at least 1 request, got 0"),
        ("[ratelimit]\ntoken_max_requests = -1\n", "ratelimit.token_max_requests", "expected at least 1 request, got -1"),
        ("[ratelimit]\ncleanup_interval = -1\n", "ratelimit.cleanup_interval", "expected 0 (off) or more seconds"),
        ('[ratelimit]\nendpoints = ["revoke"]\n', "ratelimit.endpoints[0]", "got 'revoke'"),
    ],
    ids=["zero-window", "zero-limit", "negative-override", "negative-cleanup", "unknown-endpoint"],
)
def test_invalid_settings_are_rejected(make_settings: typing.Callable[..., config.Settings], toml: str, setting: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as raised:
        make_settings(toml)
    assert raised.value.setting == setting
    assert message in str(raised.value)
