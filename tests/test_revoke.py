"""Token revocation (RFC 7009)."""

from __future__ import annotations

import urllib.parse

import pytest

from tests.oauth_checks import (  # noqa: F401 (settings, unlimited_settings and unlimited are fixtures)
    FORM,
    basic,
    introspect,
    settings,
    unlimited,
    unlimited_settings,
)
from tests.oauth_flow import exchange, get_code, refresh, register
from tests.odd_requests import FORM_KINDS, form_requests, server_errors


async def tokens_for(http, client) -> dict[str, str]:
    code, verifier, _ = await get_code(http, client)
    response = await exchange(http, client, code, verifier)
    assert response.status == 200, await response.text()
    return await response.json()


async def revoke(http, client, token: str, **extra: str):
    form = {"token": token, "client_id": client.client_id}
    form.update(extra)
    return await http.post("/oauth/revoke", data=form)


async def error_of(response) -> tuple[int, str, str]:
    body = await response.json()
    return response.status, body["error"], body["error_description"]


async def test_revoked_refresh_token_rejected(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    response = await revoke(http, client, tokens["refresh_token"])
    assert response.status == 200
    assert await response.read() == b""
    assert response.headers["Cache-Control"] == "no-store"
    status, error, _ = await error_of(await refresh(http, client, tokens["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"


async def test_revoked_refresh_token_deactivates_family(http):
    client = await register(http)
    first = await tokens_for(http, client)
    second = await (await refresh(http, client, first["refresh_token"])).json()
    await revoke(http, client, second["refresh_token"])
    assert await introspect(http, client, second["access_token"]) == {"active": False}
    assert await introspect(http, client, first["access_token"]) == {"active": False}
    assert await introspect(http, client, second["refresh_token"]) == {"active": False}


async def test_revoked_rotated_refresh_token_revokes_family(http):
    client = await register(http)
    first = await tokens_for(http, client)
    second = await (await refresh(http, client, first["refresh_token"])).json()
    await revoke(http, client, first["refresh_token"])
    status, error, _ = await error_of(await refresh(http, client, second["refresh_token"]))
    assert status == 400
    assert error == "invalid_grant"


async def test_revoked_access_token_inactive(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    response = await revoke(http, client, tokens["access_token"], token_type_hint="access_token")
    assert response.status == 200
    assert await introspect(http, client, tokens["access_token"]) == {"active": False}


async def test_wrong_hint_still_revokes(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    await revoke(http, client, tokens["access_token"], token_type_hint="refresh_token")
    assert await introspect(http, client, tokens["access_token"]) == {"active": False}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-a-token", id="opaque"),
        pytest.param("a.b.c", id="jwt-shape"),
        pytest.param("x" * 4096, id="long"),
    ],
)
async def test_unknown_token_accepted(http, token):
    client = await register(http)
    response = await revoke(http, client, token)
    assert response.status == 200


async def test_other_clients_refresh_token_not_revoked(http):
    client = await register(http)
    other = await register(http)
    tokens = await tokens_for(http, client)
    response = await revoke(http, other, tokens["refresh_token"])
    assert response.status == 200
    refreshed = await refresh(http, client, tokens["refresh_token"])
    assert refreshed.status == 200, await refreshed.text()


async def test_other_clients_access_token_not_revoked(http):
    client = await register(http)
    other = await register(http)
    tokens = await tokens_for(http, client)
    response = await revoke(http, other, tokens["access_token"])
    assert response.status == 200
    assert (await introspect(http, client, tokens["access_token"]))["active"] is True


async def test_revoked_twice_accepted(http):
    client = await register(http)
    tokens = await tokens_for(http, client)
    await revoke(http, client, tokens["refresh_token"])
    response = await revoke(http, client, tokens["refresh_token"])
    assert response.status == 200


@pytest.mark.parametrize("token", [pytest.param(None, id="missing"), pytest.param("", id="empty")])
async def test_missing_token_rejected(http, token):
    client = await register(http)
    form = {"client_id": client.client_id}
    if token is not None:
        form["token"] = token
    response = await http.post("/oauth/revoke", data=form)
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "token is required"
    assert response.headers["Cache-Control"] == "no-store"


async def test_unauthenticated_request_rejected(http):
    response = await http.post("/oauth/revoke", data={"token": "x"})
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "client authentication is required"
    assert "WWW-Authenticate" in response.headers


async def test_confidential_client_wrong_secret_rejected(http):
    client = await register(http, token_endpoint_auth_method="client_secret_basic")
    response = await http.post("/oauth/revoke", data={"token": "x"}, headers={"Authorization": basic(client.client_id, "wrong")})
    status, error, description = await error_of(response)
    assert status == 401
    assert error == "invalid_client"
    assert description == "client authentication failed"


async def test_confidential_client_revokes_own_token(http):
    client = await register(http, token_endpoint_auth_method="client_secret_basic")
    code, verifier, _ = await get_code(http, client)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri,
            "code_verifier": verifier}
    auth = {"Authorization": basic(client.client_id, client.client_secret)}
    tokens = await (await http.post("/oauth/token", data=form, headers=auth)).json()
    response = await http.post("/oauth/revoke", data={"token": tokens["refresh_token"]}, headers=auth)
    assert response.status == 200
    refreshed = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                                headers=auth)
    assert refreshed.status == 400


async def test_json_body_rejected(http):
    client = await register(http)
    response = await http.post("/oauth/revoke", json={"token": "x", "client_id": client.client_id})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "the body must be application/x-www-form-urlencoded"


async def test_duplicated_token_rejected(http):
    client = await register(http)
    body = urllib.parse.urlencode([("token", "a"), ("token", "b"), ("client_id", client.client_id)])
    response = await http.post("/oauth/revoke", data=body, headers={"Content-Type": FORM})
    status, error, description = await error_of(response)
    assert status == 400
    assert error == "invalid_request"
    assert description == "parameter token is included more than once"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_method_rejected(http, method):
    response = await http.request(method, "/oauth/revoke")
    assert response.status == 405


# --- no input makes the endpoint fail --------------------------------------------


@pytest.mark.parametrize("kind", FORM_KINDS)
async def test_odd_input_no_server_error(unlimited, kind):
    client = await register(unlimited)
    basic_client = await register(unlimited, token_endpoint_auth_method="client_secret_basic")
    tokens = await tokens_for(unlimited, client)
    access = {"token": tokens["access_token"], "token_type_hint": "refresh_token", "client_id": client.client_id}
    refresh_token = {"token": tokens["refresh_token"], "client_id": client.client_id}
    requests = form_requests(b"/oauth/revoke", [access, refresh_token], basic_client.client_id, valid_fields={"token": "x"})
    assert await server_errors(unlimited, requests[kind]) == []
