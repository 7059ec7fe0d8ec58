"""The refresh_token grant: rotation, reuse detection, client binding and scope narrowing.

These tests run without the grace window, so that presenting a rotated token
a second time is reuse at once; tests/test_refresh_grace.py covers the window.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.oauth_checks import ISSUER, introspect, load_settings, start_app
from tests.oauth_flow import exchange, get_code, refresh, register

NO_GRACE = "[tokens]\nrefresh_grace = 0\n"
TWO_SCOPES = NO_GRACE + '[scopes]\nmcp = "Use the tools"\nfiles = "Read your files"\n'


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """Settings without the refresh grace window, loaded once for the module."""
    return load_settings(tmp_path_factory.mktemp("settings"), NO_GRACE)


async def tokens_for(http, client, **extra: str) -> dict[str, object]:
    code, verifier, _ = await get_code(http, client, **extra)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    return await response.json()


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


@pytest.fixture
async def two_scopes(aiohttp_client, make_settings):
    return await start_app(aiohttp_client, make_settings(TWO_SCOPES))


async def test_refresh_rotates_token(http):
    client = await register(http)
    first = await tokens_for(http, client)
    response = await refresh(http, client, first["refresh_token"])
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    second = await response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer"
    assert second["scope"] == "mcp"


async def test_rotated_token_rejected(http):
    client = await register(http)
    first = await tokens_for(http, client)
    await refresh(http, client, first["refresh_token"])
    status, error, description = await error_of(await refresh(http, client, first["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the refresh token was already used"


async def test_reused_token_revokes_family(http):
    client = await register(http)
    first = await tokens_for(http, client)
    second = await (await refresh(http, client, first["refresh_token"])).json()
    await refresh(http, client, first["refresh_token"])
    status, error, description = await error_of(await refresh(http, client, second["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the refresh token was revoked"


async def test_reused_token_deactivates_access_tokens(http):
    client = await register(http)
    first = await tokens_for(http, client)
    second = await (await refresh(http, client, first["refresh_token"])).json()
    await refresh(http, client, first["refresh_token"])
    assert await introspect(http, client, second["access_token"]) == {"active": False}
    assert await introspect(http, client, first["access_token"]) == {"active": False}
    assert await introspect(http, client, second["refresh_token"]) == {"active": False}


async def test_token_of_other_client_rejected(http):
    client = await register(http)
    attacker = await register(http)
    tokens = await tokens_for(http, client)
    status, error, description = await error_of(await refresh(http, attacker, tokens["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the refresh token was issued to another client"


async def test_token_of_other_client_not_burned(http):
    client = await register(http)
    attacker = await register(http)
    tokens = await tokens_for(http, client)
    await refresh(http, attacker, tokens["refresh_token"])
    response = await refresh(http, client, tokens["refresh_token"])
    assert response.status == 200, await response.text()


async def test_scope_narrowed(two_scopes):
    http = two_scopes
    client = await register(http)
    tokens = await tokens_for(http, client, scope="mcp files")
    response = await refresh(http, client, tokens["refresh_token"], scope="files")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["scope"] == "files"
    assert (await introspect(http, client, body["access_token"]))["scope"] == "files"


async def test_narrowed_refresh_keeps_original_scope(two_scopes):
    # RFC 6749 §6: the new refresh token has the scope of the one presented.
    http = two_scopes
    client = await register(http)
    tokens = await tokens_for(http, client, scope="mcp files")
    narrowed = await (await refresh(http, client, tokens["refresh_token"], scope="files")).json()
    assert (await introspect(http, client, narrowed["refresh_token"]))["scope"] == "mcp files"
    response = await refresh(http, client, narrowed["refresh_token"], scope="mcp files")
    assert response.status == 200, await response.text()
    assert (await response.json())["scope"] == "mcp files"


@pytest.mark.parametrize(
    ("scope", "description"),
    [
        pytest.param("mcp files", "the requested scope exceeds the scope originally granted", id="wider"),
        pytest.param("files", "the requested scope exceeds the scope originally granted", id="other"),
        pytest.param("admin", "the requested scope exceeds the scope originally granted", id="unknown"),
        pytest.param("", "scope must not be empty", id="empty"),
    ],
)
async def test_scope_widening_rejected(two_scopes, scope, description):
    http = two_scopes
    client = await register(http)
    tokens = await tokens_for(http, client, scope="mcp")
    status, error, shown = await error_of(await refresh(http, client, tokens["refresh_token"], scope=scope))
    assert status == 400
    assert error == "invalid_scope"
    assert shown == description


async def test_rejected_scope_keeps_token(two_scopes):
    http = two_scopes
    client = await register(http)
    tokens = await tokens_for(http, client, scope="mcp")
    await refresh(http, client, tokens["refresh_token"], scope="mcp files")
    response = await refresh(http, client, tokens["refresh_token"])
    assert response.status == 200, await response.text()


async def test_concurrent_refreshes_one_succeeds(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    responses = await asyncio.gather(*(refresh(http, client, tokens["refresh_token"]) for _ in range(20)))
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 1
    assert statuses.count(400) == 19


async def test_concurrent_refreshes_revoke_family(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    responses = await asyncio.gather(*(refresh(http, client, tokens["refresh_token"]) for _ in range(20)))
    winner = next(r for r in responses if r.status == 200)
    issued = await winner.json()
    status, error, _ = await error_of(await refresh(http, client, issued["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"
    assert await introspect(http, client, issued["access_token"]) == {"active": False}


async def test_unknown_token_rejected(http):
    client = await register(http)
    status, error, description = await error_of(await refresh(http, client, "not-a-refresh-token"))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the refresh token is invalid or expired"


async def test_missing_token_rejected(http):
    client = await register(http)
    status, error, description = await error_of(await refresh(http, client, ""))
    assert status == 400
    assert error == "invalid_request"
    assert description == "refresh_token is required"


async def test_access_token_not_a_refresh_token(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    status, error, _ = await error_of(await refresh(http, client, tokens["access_token"]))
    assert status == 400
    assert error == "invalid_grant"


async def test_resource_mismatch_rejected(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    response = await refresh(http, client, tokens["refresh_token"], resource="https://other.example/mcp")
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_target"
    assert description == "resource does not match the original grant"


async def test_matching_resource_accepted(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    response = await refresh(http, client, tokens["refresh_token"], resource=ISSUER + "/mcp")
    assert response.status == 200, await response.text()


async def test_refreshed_access_token_keeps_subject(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    refreshed = await (await refresh(http, client, tokens["refresh_token"])).json()
    claims = await introspect(http, client, refreshed["access_token"])
    assert claims["sub"] == "alice@example.com"
    assert claims["client_id"] == client.client_id
