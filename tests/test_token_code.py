"""The authorization_code grant: the code flow end to end and every rule around the code."""

from __future__ import annotations

import asyncio

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oauth_flow import exchange, get_code, register


async def test_code_flow_issues_signed_tokens(http):
    client = await register(http)
    code, verifier, query = await get_code(http, client)
    assert query["iss"] == "http://127.0.0.1:8080"
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp"
    assert body["expires_in"] == 3600
    jwks = await (await http.get("/.well-known/jwks.json")).json()
    token = jwt.decode(body["access_token"], KeySet.import_key_set(jwks))
    assert token.header["typ"] == "at+jwt"
    assert token.claims["iss"] == "http://127.0.0.1:8080"
    assert token.claims["aud"] == "http://127.0.0.1:8080/mcp"
    assert token.claims["sub"] == "alice@example.com"
    assert token.claims["client_id"] == client.client_id
    assert token.claims["scope"] == "mcp"


async def test_code_redeemed_twice_revokes_tokens(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    first = await (await exchange(http, client, code, verifier)).json()
    second = await exchange(http, client, code, verifier)
    assert second.status == 400
    assert await second.json() == {"error": "invalid_grant", "error_description": "the code was already used"}
    refreshed = await http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": client.client_id},
    )
    assert refreshed.status == 400
    assert (await refreshed.json())["error"] == "invalid_grant"
    introspected = await http.post(
        "/oauth/introspect", data={"token": first["access_token"], "client_id": client.client_id}
    )
    assert await introspected.json() == {"active": False}


async def test_concurrent_redemptions_one_succeeds(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    responses = await asyncio.gather(*(exchange(http, client, code, verifier) for _ in range(50)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 1
    assert statuses.count(400) == 49
