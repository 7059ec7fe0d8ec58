"""Tests of the verified-token cache, revocation and introspection of frontauth.resource.

Time comes from a clock the tests move, so no test sleeps. The key set is
served by the aiohttp stub of tests/test_resource.py. Introspection is tested
against a real ``python -m frontauth serve`` on loopback, and its failures
against the stub.
"""

from __future__ import annotations

import asyncio
import base64
import time
import typing

import aiohttp
import pytest
from aiohttp import web

from frontauth.resource import (
    BearerVerifier,
    InsufficientScope,
    Introspection,
    IntrospectionUnavailable,
    InvalidToken,
    bearer_auth_middleware,
)
from frontauth.users import hash_password
from tests.live_client import LiveClient
from tests.oauth_flow import exchange, get_code, register
from tests.processes import free_port, start_frontauth
from frontauth.resource.token_cache import token_digest
from tests.test_resource import (  # noqa: F401 (auth_server is a fixture)
    DEEP_JSON,
    RESOURCE,
    AuthServerStub,
    auth_server,
    b64url,
    ec_key,
    whoami,
)

CLIENT_SECRET = "resource-server-secret-0123456789"
REVOKED = "The access token was revoked"
# The order n of the P-256 group.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class FakeClock:
    """Wall-clock time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def claims_at(clock: FakeClock, **overrides: typing.Any) -> dict[str, typing.Any]:
    """Times relative to the fake clock, so that a test decides when a token expires."""
    times = {"iat": int(clock.now), "nbf": int(clock.now), "exp": int(clock.now) + 300}
    times.update(overrides)
    return times


@pytest.fixture
async def verifier(auth_server: AuthServerStub, clock: FakeClock) -> typing.AsyncIterator[BearerVerifier]:
    async with BearerVerifier(auth_server.issuer, RESOURCE, required_scopes=["mcp"], clock=clock) as verifier:
        yield verifier


def malleate(token: str) -> str:
    """Return an ES256 token with its signature (r, s) rewritten as (r, n - s), which verifies as well."""
    head, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    s = int.from_bytes(raw[32:], "big")
    return f"{head}.{b64url(raw[:32] + (P256_ORDER - s).to_bytes(32, 'big'))}"


def long_lived(clock: FakeClock) -> dict[str, int]:
    """Times that stay valid when the wall clock steps an hour back or forward."""
    return claims_at(clock, iat=int(clock.now) - 7200, nbf=int(clock.now) - 7200, exp=int(clock.now) + 7200)


async def rejection(verifier: BearerVerifier, token: str, **kwargs: typing.Any) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token, **kwargs)
    return caught.value.description


# --- hits ---------------------------------------------------------------------


async def test_second_use_is_cache_hit(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign()

    first = await verifier.verify(token)
    second = await verifier.verify(token)

    assert second == first
    assert verifier.token_cache.misses == 1
    assert verifier.token_cache.hits == 1
    assert len(verifier.token_cache) == 1


async def test_hit_past_exp_is_rejected(auth_server: AuthServerStub, verifier: BearerVerifier, clock: FakeClock) -> None:
    token = auth_server.sign(**claims_at(clock, exp=int(clock.now) + 60))
    await verifier.verify(token)

    # joserfc's rule with the 30 s leeway: accepted while exp > now - leeway.
    clock.advance(60 + 29)
    await verifier.verify(token)
    clock.advance(1)
    description = await rejection(verifier, token)

    assert description == "The access token expired"
    assert verifier.token_cache.hits == 2
    assert len(verifier.token_cache) == 0


@pytest.mark.parametrize("offset", [-1, 0, 1], ids=["before", "at", "after"])
async def test_hit_expiry_matches_full_check(auth_server: AuthServerStub, clock: FakeClock, offset: int) -> None:
    token = auth_server.sign(**claims_at(clock, exp=int(clock.now) + 60))
    cached = BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, leeway=5)
    uncached = BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, leeway=5, token_cache_size=0)
    async with cached, uncached:
        await cached.verify(token)
        clock.advance(60 + 5 + offset)

        outcomes = []
        for checker in (cached, uncached):
            try:
                await checker.verify(token)
                outcomes.append("accepted")
            except InvalidToken as exc:
                outcomes.append(exc.description)

    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ("accepted" if offset < 0 else "The access token expired")
    assert cached.token_cache.hits == 1


async def test_hit_checks_scopes_of_call(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(scope="mcp read")
    await verifier.verify(token)

    with pytest.raises(InsufficientScope) as caught:
        await verifier.verify(token, required_scopes=("mcp", "admin"))
    read = await verifier.verify(token, required_scopes=["read"])

    assert caught.value.scope == "mcp admin"
    assert caught.value.status == 403
    assert read.scopes == ("mcp", "read")
    assert verifier.token_cache.hits == 2


async def test_insufficient_scope_on_every_hit(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(scope="read")

    for _ in range(3):
        with pytest.raises(InsufficientScope):
            await verifier.verify(token)

    assert verifier.token_cache.hits == 2


async def test_middleware_hit_without_scope(
    aiohttp_client: typing.Any, auth_server: AuthServerStub, verifier: BearerVerifier
) -> None:
    app = web.Application(middlewares=[bearer_auth_middleware(verifier, resource_metadata_url=None)])
    app.router.add_get("/mcp", whoami)
    client = await aiohttp_client(app)
    token = auth_server.sign(scope="read")
    await verifier.verify(token, required_scopes=["read"])

    response = await client.get("/mcp", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", scope="mcp"'
    )
    assert verifier.token_cache.hits == 1


# --- what is not cached, and the size bound ----------------------------------


async def test_failures_are_not_cached(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    forged = auth_server.sign(key=ec_key("key-1"))
    for _ in range(2):
        assert await rejection(verifier, forged) == "The access token signature is invalid"

    assert await rejection(verifier, "not-a-token") == "The access token is malformed"
    assert len(verifier.token_cache) == 0
    assert verifier.token_cache.hits == 0


async def test_cache_size_bound(auth_server: AuthServerStub, clock: FakeClock) -> None:
    tokens = [auth_server.sign(jti=f"token-{i}") for i in range(5)]
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, token_cache_size=3) as verifier:
        for token in tokens:
            await verifier.verify(token)
        size = len(verifier.token_cache)
        await verifier.verify(tokens[4])
        await verifier.verify(tokens[0])

    assert size == 3
    assert len(verifier.token_cache) == 3
    # The most recent token was a hit; the oldest had been evicted.
    assert verifier.token_cache.hits == 1
    assert verifier.token_cache.misses == 6


async def test_cache_size_zero_stores_nothing(auth_server: AuthServerStub, clock: FakeClock) -> None:
    token = auth_server.sign()
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, token_cache_size=0) as verifier:
        await verifier.verify(token)
        await verifier.verify(token)

    assert len(verifier.token_cache) == 0
    assert verifier.token_cache.hits == 0


def test_negative_cache_size_is_invalid() -> None:
    with pytest.raises(ValueError):
        BearerVerifier("https://as.example", RESOURCE, token_cache_size=-1)


# --- key removal ---------------------------------------------------------------


async def test_hit_with_removed_kid_is_rejected(auth_server: AuthServerStub, clock: FakeClock) -> None:
    old_key = ec_key("key-old")
    auth_server.keys = [ec_key("key-new"), old_key]
    token = auth_server.sign(key=old_key)
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, jwks_cache_ttl=0, refetch_cooldown=0) as verifier:
        await verifier.verify(token)
        await verifier.verify(token)
        auth_server.keys = auth_server.keys[:1]

        description = await rejection(verifier, token)

    assert description == "No trusted key matches the access token kid"
    assert verifier.token_cache.hits == 2
    assert len(verifier.token_cache) == 0


async def test_hit_with_replaced_key_is_rejected(auth_server: AuthServerStub, clock: FakeClock) -> None:
    token = auth_server.sign()
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, jwks_cache_ttl=0, refetch_cooldown=0) as verifier:
        await verifier.verify(token)
        auth_server.keys = [ec_key("key-1")]  # same kid, another key

        description = await rejection(verifier, token)

    assert description == "The access token signature is invalid"


async def test_refetch_of_same_keys_keeps_hits(auth_server: AuthServerStub, clock: FakeClock) -> None:
    token = auth_server.sign()
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, jwks_cache_ttl=0, refetch_cooldown=0) as verifier:
        await verifier.verify(token)
        entry = verifier.token_cache.peek(token_digest(token))
        for _ in range(3):
            await verifier.verify(token)

    # Each use fetched the key set again, and each found the same key, so the entry stayed.
    assert auth_server.jwks_requests == 4
    assert entry is not None
    assert verifier.token_cache.peek(token_digest(token)) is entry
    assert verifier.token_cache.hits == 3


# --- revocation through the API ------------------------------------------------


async def test_revoked_token_id_rejected_on_hit(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(jti="token-7")
    other = auth_server.sign(jti="token-8")
    await verifier.verify(token)

    verifier.revoke(token_id="token-7")

    assert await rejection(verifier, token) == "The access token was revoked"
    assert (await verifier.verify(other)).token_id == "token-8"
    assert verifier.token_cache.hits == 1


async def test_revoked_family_rejected_cached_and_not(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    cached = auth_server.sign(jti="token-1", fid="family-9")
    fresh = auth_server.sign(jti="token-2", fid="family-9")
    unrelated = auth_server.sign(jti="token-3", fid="family-10")
    await verifier.verify(cached)

    verifier.revoke(family_id="family-9")

    assert await rejection(verifier, cached) == "The access token was revoked"
    assert await rejection(verifier, fresh) == "The access token was revoked"
    assert (await verifier.verify(unrelated)).token_id == "token-3"
    assert len(verifier.token_cache) == 1


async def test_revoked_token_rejected_exactly(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(jti="token-1")
    sibling = auth_server.sign(jti="token-2")
    await verifier.verify(token)

    verifier.revoke(token=token)

    assert await rejection(verifier, token) == "The access token was revoked"
    assert (await verifier.verify(sibling)).token_id == "token-2"


async def test_revoked_subject_rejects_earlier_tokens(
    auth_server: AuthServerStub, verifier: BearerVerifier, clock: FakeClock
) -> None:
    earlier = auth_server.sign(**claims_at(clock), jti="token-1")
    await verifier.verify(earlier)

    verifier.revoke(subject="alice")
    clock.advance(1)
    later = auth_server.sign(**claims_at(clock), jti="token-2")

    assert await rejection(verifier, earlier) == "The access token was revoked"
    assert (await verifier.verify(later)).token_id == "token-2"


async def test_revocation_of_token_forgotten_after_exp(
    auth_server: AuthServerStub, verifier: BearerVerifier, clock: FakeClock
) -> None:
    token = auth_server.sign(**claims_at(clock, exp=int(clock.now) + 60))
    verifier.revoke(token=token)
    # The token's signing input and its jti.
    assert len(verifier.revocations) == 2

    # Past exp plus the leeway, the record is dropped at the next verification.
    clock.advance(60 + 30)
    await verifier.verify(auth_server.sign(**claims_at(clock), jti="token-2"))

    assert len(verifier.revocations) == 0
    assert await rejection(verifier, token) == "The access token expired"


@pytest.mark.parametrize("cache_size", [10, 0], ids=["cached", "uncached"])
async def test_revoked_token_rejects_malleated_copy(auth_server: AuthServerStub, clock: FakeClock, cache_size: int) -> None:
    token = auth_server.sign(jti="token-1")
    copy = malleate(token)
    async with BearerVerifier(auth_server.issuer, RESOURCE, clock=clock, token_cache_size=cache_size) as verifier:
        # The copy differs in its bytes and is a valid token in its own right.
        assert copy != token
        assert (await verifier.verify(copy)).token_id == "token-1"
        await verifier.verify(token)

        verifier.revoke(token=token)

        assert await rejection(verifier, token) == REVOKED
        assert await rejection(verifier, copy) == REVOKED
        assert len(verifier.token_cache) == 0


async def test_revoked_token_id_read_from_token(auth_server: AuthServerStub, verifier: BearerVerifier) -> None:
    token = auth_server.sign(jti="token-1")
    # Another signing input with the same jti, so the signing-input record does not cover it.
    same_id = auth_server.sign(jti="token-1", scope="mcp")

    verifier.revoke(token=token)

    assert await rejection(verifier, same_id) == REVOKED
    assert (await verifier.verify(auth_server.sign(jti="token-2"))).token_id == "token-2"


async def test_cached_token_copy_with_other_signature_is_checked(
    auth_server: AuthServerStub, verifier: BearerVerifier
) -> None:
    # The cache key covers the signature: a copy with a forged signature is a
    # miss and fails the signature check, even while the original is cached.
    token = auth_server.sign()
    await verifier.verify(token)

    forged = f"{token.rpartition('.')[0]}.{b64url(bytes(64))}"

    assert await rejection(verifier, forged) == "The access token signature is invalid"
    assert verifier.token_cache.hits == 0


def test_revoke_unparsable_token() -> None:
    verifier = BearerVerifier("https://as.example", RESOURCE)
    deep = b64url(DEEP_JSON.encode())

    for token in ("not-a-token", f"e30.{deep}.c2ln", "e30.bm90IGpzb24.c2ln"):
        verifier.revoke(token=token)

    # One signing-input record each, and no jti.
    assert len(verifier.revocations) == 3


def test_revoke_needs_something() -> None:
    verifier = BearerVerifier("https://as.example", RESOURCE)

    with pytest.raises(ValueError):
        verifier.revoke()


# --- introspection failures, against the stub ---------------------------------


class IntrospectingStub(AuthServerStub):
    """The stub authorization server with an introspection endpoint whose response a test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.introspect_status = 200
        self.active: typing.Any = True
        self.introspect_body: str | None = None
        """A raw body to return instead of ``{"active": ...}``."""
        self.introspection_forms: list[dict[str, str]] = []
        self.authorizations: list[str | None] = []

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/oauth/introspect", self.introspect)
        return app

    async def introspect(self, request: web.Request) -> web.Response:
        self.introspection_forms.append(dict(await request.post()))  # type: ignore[arg-type]
        self.authorizations.append(request.headers.get("Authorization"))
        if self.introspect_status != 200:
            return web.json_response({"error": "server_error"}, status=self.introspect_status)
        if self.introspect_body is not None:
            return web.Response(text=self.introspect_body, content_type="application/json")
        return web.json_response({"active": self.active})


@pytest.fixture
async def introspecting(aiohttp_server: typing.Any) -> IntrospectingStub:
    stub = IntrospectingStub()
    server = await aiohttp_server(stub.app())
    stub.issuer = f"http://{server.host}:{server.port}"
    return stub


def introspecting_verifier(
    stub: AuthServerStub,
    clock: FakeClock,
    endpoint: str | None = None,
    monotonic_clock: FakeClock | None = None,
    **settings: typing.Any,
) -> BearerVerifier:
    """A verifier that introspects at the stub; its intervals follow ``monotonic_clock``, by default ``clock``."""
    introspection = Introspection(
        endpoint=endpoint or f"{stub.issuer}/oauth/introspect",
        client_id="resource-server",
        client_secret=CLIENT_SECRET,
        interval=30.0,
        **settings,
    )
    return BearerVerifier(
        stub.issuer, RESOURCE, clock=clock, monotonic_clock=monotonic_clock or clock, introspection=introspection
    )


async def test_introspection_sends_basic_credentials(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock) as verifier:
        await verifier.verify(token)

    assert introspecting.introspection_forms == [{"token": token, "token_type_hint": "access_token"}]
    # base64 of "resource-server:resource-server-secret-0123456789"
    assert introspecting.authorizations == ["Basic cmVzb3VyY2Utc2VydmVyOnJlc291cmNlLXNlcnZlci1zZWNyZXQtMDEyMzQ1Njc4OQ=="]


async def test_introspection_post_credentials(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock, auth_method="client_secret_post") as verifier:
        await verifier.verify(token)

    assert introspecting.introspection_forms == [{
        "token": token,
        "token_type_hint": "access_token",
        "client_id": "resource-server",
        "client_secret": CLIENT_SECRET,
    }]
    assert introspecting.authorizations == [None]


async def test_concurrent_uses_share_introspection(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock) as verifier:
        results = await asyncio.gather(*(verifier.verify(token) for _ in range(10)))

    assert {result.subject for result in results} == {"alice"}
    assert len(introspecting.introspection_forms) == 1


async def test_invalid_token_is_not_introspected(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    async with introspecting_verifier(introspecting, clock) as verifier:
        await rejection(verifier, introspecting.sign(aud="https://other.example"))

    assert introspecting.introspection_forms == []


@pytest.mark.parametrize(
    ("status", "active"),
    [pytest.param(500, True, id="http-500"), pytest.param(200, "yes", id="active-not-boolean")],
)
async def test_introspection_failure_rejects_by_default(
    introspecting: IntrospectingStub, clock: FakeClock, status: int, active: typing.Any
) -> None:
    introspecting.introspect_status = status
    introspecting.active = active
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock) as verifier:
        with pytest.raises(IntrospectionUnavailable):
            await verifier.verify(token)
        # Within the backoff no request is sent, and the token is still rejected.
        with pytest.raises(IntrospectionUnavailable):
            await verifier.verify(token)

        assert verifier.introspector is not None
        assert verifier.introspector.requests == 1
        assert len(verifier.token_cache) == 0

        introspecting.introspect_status = 200
        introspecting.active = True
        clock.advance(1)
        verified = await verifier.verify(token)

    assert verified.subject == "alice"
    assert len(introspecting.introspection_forms) == 2


async def test_deeply_nested_introspection_response_backs_off(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    # json.loads raises RecursionError, not ValueError, on such a body.
    introspecting.introspect_body = DEEP_JSON
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock) as verifier:
        for _ in range(3):
            with pytest.raises(IntrospectionUnavailable):
                await verifier.verify(token)

        # A bad response like any other: within the backoff no request is sent.
        assert verifier.introspector is not None
        assert verifier.introspector.requests == 1
        assert verifier.introspector.failures == 1


async def test_inactive_response_rejects_malleated_copy_fail_open(
    introspecting: IntrospectingStub, clock: FakeClock
) -> None:
    introspecting.active = False
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock, fail_open=True) as verifier:
        assert await rejection(verifier, token) == REVOKED
        introspecting.introspect_status = 503

        # The copy verifies, and a failed introspection would let it through.
        assert await rejection(verifier, malleate(token)) == REVOKED
        assert await rejection(verifier, token) == REVOKED

    assert len(introspecting.introspection_forms) == 1


async def test_active_interval_follows_monotonic_clock(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    monotonic = FakeClock()
    token = introspecting.sign(**long_lived(clock))
    async with introspecting_verifier(introspecting, clock, monotonic_clock=monotonic) as verifier:
        await verifier.verify(token)
        introspecting.active = False

        # The wall clock steps back an hour (an NTP correction) while 30 s pass.
        clock.advance(-3600)
        monotonic.advance(29)
        await verifier.verify(token)
        assert len(introspecting.introspection_forms) == 1
        monotonic.advance(1)
        description = await rejection(verifier, token)

    assert description == REVOKED
    assert len(introspecting.introspection_forms) == 2


async def test_active_interval_ignores_wall_clock_jump(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    monotonic = FakeClock()
    token = introspecting.sign(**long_lived(clock))
    async with introspecting_verifier(introspecting, clock, monotonic_clock=monotonic) as verifier:
        await verifier.verify(token)
        clock.advance(3600)
        await verifier.verify(token)

    assert len(introspecting.introspection_forms) == 1


async def test_introspection_backoff_follows_monotonic_clock(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    monotonic = FakeClock()
    introspecting.introspect_status = 500
    token = introspecting.sign(**long_lived(clock))
    async with introspecting_verifier(introspecting, clock, monotonic_clock=monotonic) as verifier:
        with pytest.raises(IntrospectionUnavailable):
            await verifier.verify(token)
        introspecting.introspect_status = 200

        # The wall clock steps back an hour; the 1 s backoff still ends after 1 s.
        clock.advance(-3600)
        with pytest.raises(IntrospectionUnavailable):
            await verifier.verify(token)
        monotonic.advance(1)
        verified = await verifier.verify(token)

    assert verified.subject == "alice"
    assert len(introspecting.introspection_forms) == 2


async def test_unreachable_introspection_fail_open(introspecting: IntrospectingStub, clock: FakeClock) -> None:
    closed_port = free_port()
    endpoint = f"http://127.0.0.1:{closed_port}/oauth/introspect"
    token = introspecting.sign()
    async with introspecting_verifier(introspecting, clock, endpoint=endpoint, fail_open=True) as verifier:
        verified = await verifier.verify(token)

        assert verifier.introspector is not None
        assert verifier.introspector.failures == 1
    assert verified.subject == "alice"


@pytest.mark.parametrize(("status", "body"), [(503, None), (200, DEEP_JSON)], ids=["http-503", "deep-json"])
async def test_middleware_introspection_failure_is_503(
    aiohttp_client: typing.Any, introspecting: IntrospectingStub, clock: FakeClock, status: int, body: str | None
) -> None:
    introspecting.introspect_status = status
    introspecting.introspect_body = body
    async with introspecting_verifier(introspecting, clock) as verifier:
        app = web.Application(middlewares=[bearer_auth_middleware(verifier, resource_metadata_url=None)])
        app.router.add_get("/mcp", whoami)
        client = await aiohttp_client(app)

        response = await client.get("/mcp", headers={"Authorization": f"Bearer {introspecting.sign()}"})

        assert response.status == 503
        assert await response.json() == {
            "error": "temporarily_unavailable",
            "error_description": "The access token status could not be checked",
        }


def test_introspection_settings_hide_secret() -> None:
    settings = Introspection(endpoint="https://as.example/oauth/introspect", client_id="rs", client_secret=CLIENT_SECRET)

    assert CLIENT_SECRET not in repr(settings)
    with pytest.raises(ValueError):
        Introspection(endpoint="as.example/introspect", client_id="rs", client_secret=CLIENT_SECRET)
    with pytest.raises(ValueError):
        Introspection(endpoint="https://as.example/i", client_id="rs", client_secret=CLIENT_SECRET, interval=0)


# --- introspection against a real frontauth -------------------------------------


class RequestCounter:
    """Counts the requests an aiohttp session sends to one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_start.append(self._started)

    async def _started(self, session: typing.Any, context: typing.Any, params: aiohttp.TraceRequestStartParams) -> None:
        if str(params.url) == self.url:
            self.count += 1


@pytest.fixture
def frontauth_server(tmp_path: typing.Any) -> typing.Iterator[typing.Any]:
    config = tmp_path / "frontauth.toml"
    config.write_text(
        '[[clients]]\nclient_id = "resource-server"\n'
        'redirect_uris = ["https://rs.example/unused"]\n'
        f'client_secret_hash = "{hash_password(CLIENT_SECRET)}"\n'
        'token_endpoint_auth_method = "client_secret_basic"\n'
    )
    server = start_frontauth(str(tmp_path), str(config))
    try:
        yield server
    finally:
        server.stop()


async def test_introspection_learns_revocation_at_frontauth(frontauth_server: typing.Any, clock: FakeClock) -> None:
    issuer = frontauth_server.url
    http = LiveClient(issuer)
    endpoint = f"{issuer}/oauth/introspect"
    counter = RequestCounter(endpoint)
    try:
        client = await register(http)
        code, code_verifier, _ = await get_code(http, client)
        response = await exchange(http, client, code, code_verifier)
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]

        introspection = Introspection(endpoint, "resource-server", CLIENT_SECRET, interval=30.0)
        async with aiohttp.ClientSession(trace_configs=[counter.trace]) as session:
            async with BearerVerifier(
                issuer,
                issuer + "/mcp",
                required_scopes=["mcp"],
                session=session,
                clock=clock,
                monotonic_clock=clock,
                introspection=introspection,
            ) as verifier:
                await verifier.verify(token)
                await verifier.verify(token)
                assert counter.count == 1

                revoked = await http.post("/oauth/revoke", data={"token": token, "client_id": client.client_id})
                assert revoked.status == 200

                # Within the interval the kept active response is used, and no request is sent.
                clock.advance(29)
                await verifier.verify(token)
                assert counter.count == 1

                clock.advance(1)
                description = await rejection(verifier, token)
                assert counter.count == 2

                # The inactive response is kept until the token expires.
                clock.advance(60)
                assert await rejection(verifier, token) == "The access token was revoked"
                assert counter.count == 2
    finally:
        await http.close()

    assert description == "The access token was revoked"
    assert verifier.token_cache.hits == 3


async def test_revoke_forged_token_is_forgotten_after_retention(verifier: BearerVerifier, clock: FakeClock) -> None:
    # exp comes from an unverified payload, so it cannot keep a record for ever.
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(b'{"jti":"forged","exp":1e308}').rstrip(b"=").decode()
    verifier.revoke(token=f"{header}.{payload}.")
    assert len(verifier.revocations) == 2
    verifier.revocations.purge(clock() + verifier.revocation_retention + 1)
    assert len(verifier.revocations) == 0
