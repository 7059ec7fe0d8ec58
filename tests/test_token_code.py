"""The authorization_code grant: the code flow end to end and every rule around the code."""

from __future__ import annotations

import asyncio

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from frontauth.appkeys import SERVICES
from tests.oauth_checks import ISSUER, introspect, settings, start_app, start_authorization  # noqa: F401 (settings is a fixture)
from tests.oauth_flow import (
    REDIRECT_URI,
    approve,
    authorize_params,
    exchange,
    get_code,
    new_pkce,
    query_of,
    refresh,
    register,
    sign_in,
)


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


async def test_race_loser_deletes_its_refresh_record(http, monkeypatch):
    # A loser of a concurrent redemption read the code before the winner's
    # swap. Replaying the code with that stale read takes the loser's path.
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    stores = http.app[SERVICES].stores
    stale = await stores.get_code(code)
    assert (await exchange(http, client, code, verifier)).status == 200
    monkeypatch.setattr(stores, "get_code", lambda _code: asyncio.sleep(0, result=stale))
    status, error, _ = await error_of(await exchange(http, client, code, verifier))
    assert status == 400
    assert error == "invalid_grant"
    refresh_keys = [key for key in stores.driver._values if key.startswith("frontauth:refresh:")]
    assert len(refresh_keys) == 1


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


async def test_replayed_code_revokes_rotated_tokens(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    first = await (await exchange(http, client, code, verifier)).json()
    rotated = await (await refresh(http, client, first["refresh_token"])).json()
    await exchange(http, client, code, verifier)
    status, error, description = await error_of(await refresh(http, client, rotated["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the refresh token was revoked"
    assert await introspect(http, client, rotated["access_token"]) == {"active": False}


async def test_wrong_verifier_rejected(http):
    client = await register(http)
    code, _, _ = await get_code(http, client)
    other_verifier, _ = new_pkce()
    status, error, description = await error_of(await exchange(http, client, code, other_verifier))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "code_verifier does not match the code_challenge"


async def test_wrong_verifier_keeps_code(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    other_verifier, _ = new_pkce()
    await exchange(http, client, code, other_verifier)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param("a" * 42, id="too-short"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("a" * 42 + "+", id="not-unreserved"),
        pytest.param("a" * 42 + "é", id="not-ascii"),
    ],
)
async def test_malformed_verifier_rejected(http, verifier):
    client = await register(http)
    code, _, _ = await get_code(http, client)
    status, error, description = await error_of(await exchange(http, client, code, verifier))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "code_verifier must be 43 to 128 unreserved characters"


@pytest.mark.parametrize("verifier", [pytest.param(None, id="missing"), pytest.param("", id="empty")])
async def test_missing_verifier_rejected(http, verifier):
    client = await register(http)
    code, _, _ = await get_code(http, client)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
            "client_id": client.client_id}
    if verifier is not None:
        form["code_verifier"] = verifier
    status, error, description = await error_of(await http.post("/oauth/token", data=form))
    assert status == 400
    assert error == "invalid_request"
    assert description == "code_verifier is required (PKCE, RFC 7636)"


async def test_expired_code_rejected(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[tokens]\ncode_ttl = 1\n"))
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    await asyncio.sleep(1.1)
    status, error, description = await error_of(await exchange(http, client, code, verifier))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the code is invalid or expired"


async def test_unknown_code_rejected(http):
    client = await register(http)
    verifier, _ = new_pkce()
    status, error, description = await error_of(await exchange(http, client, "not-a-code", verifier))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the code is invalid or expired"


async def test_missing_code_rejected(http):
    client = await register(http)
    verifier, _ = new_pkce()
    status, error, description = await error_of(await exchange(http, client, "", verifier))
    assert status == 400
    assert error == "invalid_request"
    assert description == "code is required"


async def test_code_of_other_client_rejected(http):
    client = await register(http)
    attacker = await register(http)
    code, verifier, _ = await get_code(http, client)
    status, error, description = await error_of(await exchange(http, attacker, code, verifier))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "the code was issued to another client"


async def test_code_of_other_client_still_redeemable(http):
    client = await register(http)
    attacker = await register(http)
    code, verifier, _ = await get_code(http, client)
    await exchange(http, attacker, code, verifier)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("http://127.0.0.1:33418/other", id="other-path"),
        pytest.param("http://127.0.0.1:50123/callback", id="other-port"),
        pytest.param("https://127.0.0.1:33418/callback", id="https-for-http"),
        pytest.param(REDIRECT_URI + "?x=1", id="extra-query"),
    ],
)
async def test_redirect_uri_mismatch_rejected(http, redirect_uri):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    status, error, description = await error_of(await exchange(http, client, code, verifier, redirect_uri=redirect_uri))
    assert status == 400
    assert error == "invalid_grant"
    assert description == "redirect_uri does not match the authorization request"


async def test_missing_redirect_uri_rejected(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": client.client_id}
    status, error, description = await error_of(await http.post("/oauth/token", data=form))
    assert status == 400
    assert error == "invalid_request"
    assert description == "redirect_uri is required: the authorization request included it"


async def test_redirect_uri_optional_when_authorization_omitted_it(http):
    client = await register(http)
    verifier, challenge = new_pkce()
    params = authorize_params(client, challenge)
    del params["redirect_uri"]
    location = await start_authorization(http, params)
    location = await approve(http, await sign_in(http, location))
    code = query_of(location)["code"]
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "client_id": client.client_id}
    response = await http.post("/oauth/token", data=form)
    assert response.status == 200, await response.text()


async def test_resource_mismatch_rejected(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier, resource="https://other.example/mcp")
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_target"
    assert description == "resource does not match the authorization request"


async def test_matching_resource_accepted(http):
    client = await register(http)
    code, verifier, _ = await get_code(http, client, resource=ISSUER + "/mcp")
    response = await exchange(http, client, code, verifier, resource=ISSUER + "/mcp")
    assert response.status == 200, await response.text()
    assert (await introspect(http, client, (await response.json())["access_token"]))["aud"] == ISSUER + "/mcp"
