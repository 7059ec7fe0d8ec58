"""Token introspection (RFC 7662)."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.oauth_checks import (  # noqa: F401 (settings, unlimited_settings and unlimited are fixtures)
    FORM,
    ISSUER,
    basic,
    introspect,
    settings,
    start_app,
    unlimited,
    unlimited_settings,
)
from tests.oauth_flow import exchange, get_code, refresh, register
from tests.odd_requests import FORM_KINDS, form_requests, server_errors

INACTIVE = {"active": False}


async def tokens_for(http, client) -> dict[str, str]:
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    return await response.json()


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


async def test_active_access_token_fields(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    before = int(time.time())
    body = await introspect(http, client, tokens["access_token"])
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp"
    assert body["client_id"] == client.client_id
    assert body["sub"] == "alice@example.com"
    assert body["aud"] == ISSUER + "/mcp"
    assert body["iss"] == ISSUER
    assert before + 3590 <= body["exp"] <= before + 3600
    assert body["iat"] <= before + 1
    assert isinstance(body["jti"], str)


async def test_active_refresh_token_fields(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    body = await introspect(http, client, tokens["refresh_token"])
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["scope"] == "mcp"
    assert body["client_id"] == client.client_id
    assert body["sub"] == "alice@example.com"
    assert body["aud"] == ISSUER + "/mcp"
    assert body["iss"] == ISSUER
    assert body["exp"] > time.time() + 6 * 86400


async def test_response_not_cached(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    response = await http.post("/oauth/introspect", data={"token": tokens["access_token"], "client_id": client.client_id})
    assert response.headers["Cache-Control"] == "no-store"


async def test_rotated_refresh_token_inactive(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    await refresh(http, client, tokens["refresh_token"])
    assert await introspect(http, client, tokens["refresh_token"]) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
async def test_public_client_sees_other_clients_token_inactive(http, kind):
    client = await register(http)
    other = await register(http)
    tokens = await tokens_for(http, client)
    assert await introspect(http, other, tokens[kind]) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
async def test_registered_confidential_client_sees_only_own(http, kind):
    client = await register(http)
    scanner = await register(http, token_endpoint_auth_method="client_secret_post")
    tokens = await tokens_for(http, client)
    assert await introspect(http, scanner, tokens[kind]) == INACTIVE


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
async def test_configured_resource_server_sees_any_token(aiohttp_client, make_settings, kind):
    from frontauth.users import hash_password
    from tests.oauth_flow import Client

    secret = "resource-server-secret-0123456789"
    settings = make_settings(
        '[[clients]]\nclient_id = "rs"\nredirect_uris = ["https://rs.example/cb"]\n'
        f'client_secret_hash = "{hash_password(secret)}"\ntoken_endpoint_auth_method = "client_secret_post"\n'
    )
    http = await start_app(aiohttp_client, settings)
    client = await register(http)
    tokens = await tokens_for(http, client)
    body = await introspect(http, Client("rs", secret), tokens[kind])
    assert body["active"] is True
    assert body["client_id"] == client.client_id


def _foreign_token() -> str:
    """An access token with this server's claims, signed by a key it does not know."""
    key = ECKey.generate_key("P-256", parameters={"kid": "foreign"})
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice@example.com", "aud": ISSUER + "/mcp", "exp": now + 600, "iat": now,
              "jti": "j", "client_id": "c", "scope": "mcp"}
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "foreign"}, claims, key)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="opaque"),
        pytest.param("a.b.c", id="jwt-shape"),
        pytest.param("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.", id="unsigned-jwt"),
        pytest.param("x" * 4096, id="long"),
        pytest.param(_foreign_token(), id="foreign-key"),
        pytest.param("é", id="not-ascii"),
    ],
)
async def test_garbage_token_inactive(http, token):
    client = await register(http)
    assert await introspect(http, client, token) == INACTIVE


async def test_tampered_access_token_inactive(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    header, payload, signature = tokens["access_token"].split(".")
    tampered = ".".join([header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    assert await introspect(http, client, tampered) == INACTIVE


async def test_expired_access_token_inactive(aiohttp_client, make_settings):
    http = await start_app(aiohttp_client, make_settings("[tokens]\naccess_ttl = 1\nleeway = 0\n"))
    client = await register(http)
    tokens = await tokens_for(http, client)
    await asyncio.sleep(1.1)
    assert await introspect(http, client, tokens["access_token"]) == INACTIVE


@pytest.mark.parametrize("token", [pytest.param(None, id="missing"), pytest.param("", id="empty")])
async def test_missing_token_rejected(http, token):
    client = await register(http)
    form = {"client_id": client.client_id}
    if token is not None:
        form["token"] = token
    status, error, description = await error_of(await http.post("/oauth/introspect", data=form))
    assert status == 400
    assert error == "invalid_request"
    assert description == "token is required"


async def test_unauthenticated_request_rejected(http):
    response = await http.post("/oauth/introspect", data={"token": "x"})
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "client authentication is required"
    assert "WWW-Authenticate" in response.headers


async def test_confidential_client_wrong_secret_rejected(http):
    client = await register(http, token_endpoint_auth_method="client_secret_basic")
    response = await http.post("/oauth/introspect", data={"token": "x"}, headers={"Authorization": basic(client.client_id, "no")})
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "client authentication failed"


async def test_duplicated_token_rejected(http):
    client = await register(http)
    body = urllib.parse.urlencode([("token", "a"), ("token", "b"), ("client_id", client.client_id)])
    response = await http.post("/oauth/introspect", data=body, headers={"Content-Type": FORM})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "parameter token is included more than once"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_method_rejected(http, method):
    response = await http.request(method, "/oauth/introspect")
    assert response.status == 405


# --- no input makes the endpoint fail --------------------------------------------


@pytest.mark.parametrize("kind", FORM_KINDS)
async def test_odd_input_no_server_error(unlimited, kind):
    client = await register(unlimited)
    basic_client = await register(unlimited, token_endpoint_auth_method="client_secret_basic")
    tokens = await tokens_for(unlimited, client)
    access = {"token": tokens["access_token"], "token_type_hint": "access_token", "client_id": client.client_id}
    refresh_token = {"token": tokens["refresh_token"], "client_id": client.client_id}
    requests = form_requests(b"/oauth/introspect", [access, refresh_token], basic_client.client_id, valid_fields={"token": "x"})
    assert await server_errors(unlimited, requests[kind]) == []
