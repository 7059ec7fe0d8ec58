"""The refresh grace window: retries of a refresh get the same successor tokens.

Each test runs on the memory and SQLite drivers, one Redis server and the
Redis TLS cluster, because the window rests on the driver's atomic
set-if-absent. Rate limiting is off: every request comes from one address.
"""

from __future__ import annotations

import asyncio
import json
import typing

import pytest

from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver
from frontauth.grants.refresh_token import request_fingerprint
from frontauth.stores import ClientRecord
from frontauth.tokens import digest
from tests.oauth_checks import introspect
from tests.oauth_flow import Client, exchange, get_code, refresh, register
from tests.redis_app import start_app, target_for, unique_prefix

CONCURRENT_RETRIES = 20
# Long enough for 20 concurrent requests on the TLS cluster, short enough to wait out.
SHORT_GRACE = 1.0
DRIVER_CASES = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rediss+cluster", marks=pytest.mark.redis),
]


def app_toml(grace: float) -> str:
    return f"[ratelimit]\nenabled = false\n[tokens]\nrefresh_grace = {grace}\n"


@pytest.fixture(params=DRIVER_CASES)
def start(request, aiohttp_client, make_settings, tmp_path) -> typing.Callable[[float], typing.Awaitable[typing.Any]]:
    """Return a function that starts an app on this case's driver with a grace window."""

    async def start_with(grace: float) -> typing.Any:
        if request.param == "memory":
            app = create_app(make_settings(app_toml(grace)), driver=MemoryDriver(cleanup_interval=0))
            return await aiohttp_client(app)
        if request.param == "sqlite":
            storage = f'[storage]\nurl = "sqlite:///{tmp_path}/grace.db"\n'
            return await aiohttp_client(create_app(make_settings(app_toml(grace) + storage)))
        target = target_for(request.param, request)
        return await start_app(aiohttp_client, make_settings, target, unique_prefix(), app_toml(grace))

    return start_with


async def first_tokens(http: typing.Any) -> tuple[Client, dict[str, typing.Any]]:
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    return client, await response.json()


async def refreshed(http: typing.Any, client: Client, token: str, **extra: str) -> dict[str, typing.Any]:
    response = await refresh(http, client, token, **extra)
    assert response.status == 200, await response.text()
    return await response.json()


async def error_of(response: typing.Any) -> dict[str, str]:
    assert response.status == 400, await response.text()
    return await response.json()


async def test_retry_inside_window_returns_same_tokens(start) -> None:
    http = await start(5.0)
    client, tokens = await first_tokens(http)

    first = await refreshed(http, client, tokens["refresh_token"])
    retry = await refreshed(http, client, tokens["refresh_token"])

    assert retry["access_token"] == first["access_token"]
    assert retry["refresh_token"] == first["refresh_token"]
    assert retry["scope"] == first["scope"]
    assert 0 <= first["expires_in"] - retry["expires_in"] <= 1
    # The family stays valid: the successor refreshes normally.
    assert (await introspect(http, client, first["access_token"]))["active"] is True
    await refreshed(http, client, first["refresh_token"])


async def test_reuse_after_window_revokes_family(start) -> None:
    http = await start(SHORT_GRACE)
    client, tokens = await first_tokens(http)
    first = await refreshed(http, client, tokens["refresh_token"])

    await asyncio.sleep(SHORT_GRACE + 0.3)
    reused = await error_of(await refresh(http, client, tokens["refresh_token"]))

    assert reused == {"error": "invalid_grant", "error_description": "the refresh token was already used"}
    successor = await error_of(await refresh(http, client, first["refresh_token"]))
    assert successor == {"error": "invalid_grant", "error_description": "the refresh token was revoked"}
    assert await introspect(http, client, first["access_token"]) == {"active": False}


async def test_concurrent_retries_get_one_successor(start) -> None:
    http = await start(5.0)
    client, tokens = await first_tokens(http)

    responses = await asyncio.gather(
        *(refresh(http, client, tokens["refresh_token"]) for _ in range(CONCURRENT_RETRIES))
    )

    statuses = [response.status for response in responses]
    assert statuses == [200] * CONCURRENT_RETRIES
    bodies = [await response.json() for response in responses]
    assert len({body["access_token"] for body in bodies}) == 1
    assert len({body["refresh_token"] for body in bodies}) == 1
    # The shared successor is live: its access token is active and its refresh token works.
    assert (await introspect(http, client, bodies[0]["access_token"]))["active"] is True
    await refreshed(http, client, bodies[0]["refresh_token"])


async def test_retry_with_other_scope_is_reuse(start) -> None:
    http = await start(5.0)
    client, tokens = await first_tokens(http)
    first = await refreshed(http, client, tokens["refresh_token"])

    reused = await error_of(await refresh(http, client, tokens["refresh_token"], scope="mcp"))

    assert reused == {"error": "invalid_grant", "error_description": "the refresh token was already used"}
    assert await introspect(http, client, first["access_token"]) == {"active": False}


async def test_retry_by_other_client_rejected(start) -> None:
    http = await start(5.0)
    client, tokens = await first_tokens(http)
    other = await register(http)
    first = await refreshed(http, client, tokens["refresh_token"])

    rejected = await error_of(await refresh(http, other, tokens["refresh_token"]))

    assert rejected == {"error": "invalid_grant", "error_description": "the refresh token was issued to another client"}
    assert (await introspect(http, client, first["access_token"]))["active"] is True


async def test_zero_grace_revokes_on_first_retry(start) -> None:
    http = await start(0)
    client, tokens = await first_tokens(http)
    first = await refreshed(http, client, tokens["refresh_token"])

    reused = await error_of(await refresh(http, client, tokens["refresh_token"]))

    assert reused["error_description"] == "the refresh token was already used"
    assert await introspect(http, client, first["access_token"]) == {"active": False}


async def test_retry_after_successor_used_revokes_family(start) -> None:
    http = await start(5.0)
    client, tokens = await first_tokens(http)
    second = await refreshed(http, client, tokens["refresh_token"])
    third = await refreshed(http, client, second["refresh_token"])

    # A stolen first token must not walk forward to the live third one.
    replayed = await error_of(await refresh(http, client, tokens["refresh_token"]))

    assert replayed == {"error": "invalid_grant", "error_description": "the refresh token was already used"}
    live = await error_of(await refresh(http, client, third["refresh_token"]))
    assert live == {"error": "invalid_grant", "error_description": "the refresh token was revoked"}


@pytest.mark.parametrize("scope", [None, "", "mcp read", 'caf\u00e9 "q" \\ \u2603'])
@pytest.mark.parametrize("resource", [None, "http://127.0.0.1:9/mcp?a=b&c=d"])
@pytest.mark.parametrize("client_id", ["client-1", "\u00e9\n\x00"])
def test_fingerprint_matches_json_dumps(client_id, scope, resource) -> None:
    """The fingerprint hashes json.dumps([client_id, scope, resource]), which earlier versions stored."""
    client = ClientRecord(client_id=client_id, redirect_uris=["http://127.0.0.1:9/cb"])
    form = {name: value for name, value in (("scope", scope), ("resource", resource)) if value is not None}
    assert request_fingerprint(client, form) == digest(json.dumps([client_id, scope, resource]))
