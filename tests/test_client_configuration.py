"""RFC 7592 client configuration, the per-address registration limit and expiry of unused registrations."""

from __future__ import annotations

import asyncio
import json

import pytest

from frontauth.appkeys import SERVICES
from frontauth.tokens import digest
from tests.oauth_checks import ISSUER, load_settings, start_app
from tests.oauth_flow import REDIRECT_URI, Client, exchange, get_code, refresh

METADATA = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "client_name": "Test client"}


async def registered(http, **metadata) -> dict[str, object]:
    response = await http.post("/oauth/register", json={**METADATA, **metadata})
    assert response.status == 201, await response.text()
    return await response.json()


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def path_of(body: dict[str, object]) -> str:
    uri = str(body["registration_client_uri"])
    assert uri.startswith(ISSUER)
    return uri[len(ISSUER):]


async def error_of(response) -> tuple[int, str]:
    return response.status, (await response.json())["error"]


@pytest.fixture
async def limited(aiohttp_client, tmp_path):
    return await start_app(aiohttp_client, load_settings(tmp_path, "[registration]\nmax_per_address = 2\n"))


@pytest.fixture
async def short_lived(aiohttp_client, tmp_path):
    toml = "[registration]\nunused_ttl = 1\n[tokens]\nrefresh_grace = 0\n"
    return await start_app(aiohttp_client, load_settings(tmp_path, toml))


async def test_registration_returns_management_credentials(http):
    body = await registered(http)
    assert body["registration_client_uri"] == f"{ISSUER}/oauth/register/{body['client_id']}"
    token = body["registration_access_token"]
    assert isinstance(token, str) and len(token) >= 32
    stored = await http.app[SERVICES].driver.get(f"frontauth:client:{body['client_id']}")
    assert token.encode() not in stored
    assert json.loads(stored)["registration_token_hash"] == digest(token)


async def test_read_returns_client_information(http):
    body = await registered(http)
    response = await http.get(path_of(body), headers=bearer(body["registration_access_token"]))
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    information = await response.json()
    assert information["client_id"] == body["client_id"]
    assert information["client_name"] == "Test client"
    assert information["redirect_uris"] == [REDIRECT_URI]
    assert information["registration_client_uri"] == body["registration_client_uri"]
    assert "registration_access_token" not in information


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(bearer("not-the-token"), id="wrong"),
        pytest.param({"Authorization": "Basic abc"}, id="other-scheme"),
    ],
)
async def test_read_without_valid_token_rejected(http, headers):
    body = await registered(http)
    response = await http.get(path_of(body), headers=headers)
    assert await error_of(response) == (401, "invalid_token")


async def test_token_of_other_client_rejected(http):
    first = await registered(http)
    second = await registered(http)
    response = await http.get(path_of(first), headers=bearer(second["registration_access_token"]))
    assert await error_of(response) == (401, "invalid_token")


async def test_unknown_client_rejected(http):
    body = await registered(http)
    response = await http.get("/oauth/register/unknown", headers=bearer(body["registration_access_token"]))
    assert await error_of(response) == (401, "invalid_token")


async def test_update_replaces_metadata(http):
    body = await registered(http)
    other_uri = "http://127.0.0.1:40000/done"
    update = {**METADATA, "client_id": body["client_id"], "client_name": "Renamed", "redirect_uris": [other_uri]}
    response = await http.put(path_of(body), json=update, headers=bearer(body["registration_access_token"]))
    assert response.status == 200, await response.text()
    information = await response.json()
    assert information["client_name"] == "Renamed"
    assert information["redirect_uris"] == [other_uri]
    # The new redirect URI is the one authorize accepts now.
    client = Client(str(body["client_id"]), redirect_uri=other_uri)
    code, _, _ = await get_code(http, client)
    assert code


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"client_id": "other"}, "invalid_client_metadata", id="other-client-id"),
        pytest.param({"token_endpoint_auth_method": "client_secret_post"}, "invalid_client_metadata", id="auth-method"),
        pytest.param({"client_secret": "guess"}, "invalid_client_metadata", id="secret"),
        pytest.param({"redirect_uris": ["http://example.com/cb"]}, "invalid_redirect_uri", id="redirect-uri"),
    ],
)
async def test_invalid_update_rejected(http, changes, error):
    body = await registered(http)
    update = {**METADATA, "client_id": body["client_id"], **changes}
    response = await http.put(path_of(body), json=update, headers=bearer(body["registration_access_token"]))
    assert await error_of(response) == (400, error)


@pytest.mark.parametrize(
    ("field", "value", "character"),
    [
        pytest.param("client_name", "Good App\u202egnp.exe", "U+202E", id="name-right-to-left-override"),
        pytest.param("client_name", "x\u0000y", "U+0000", id="name-nul"),
        pytest.param("client_uri", "https://app.example/\u0007", "U+0007", id="client-uri-bel"),
        pytest.param("contacts", ["\u200badmin@app.example"], "U+200B", id="contacts-zero-width-space"),
    ],
)
async def test_update_with_hidden_character_rejected(http, field, value, character):
    body = await registered(http)
    token = body["registration_access_token"]
    update = {**METADATA, "client_id": body["client_id"], field: value}
    response = await http.put(path_of(body), json=update, headers=bearer(token))
    assert response.status == 400
    # RFC 7591 §3.2.2, which RFC 7592 §2.2 applies to updates.
    assert await response.json() == {
        "error": "invalid_client_metadata",
        "error_description": f"{field} contains {character}, a control, format or unassigned character",
    }
    information = await (await http.get(path_of(body), headers=bearer(token))).json()
    assert information["client_name"] == "Test client"
    assert "client_uri" not in information


async def test_delete_removes_client(http):
    body = await registered(http)
    token = body["registration_access_token"]
    response = await http.delete(path_of(body), headers=bearer(token))
    assert response.status == 204
    assert await http.app[SERVICES].clients.find(str(body["client_id"])) is None
    again = await http.get(path_of(body), headers=bearer(token))
    assert await error_of(again) == (401, "invalid_token")


async def test_registrations_per_address_limited(limited):
    await registered(limited)
    await registered(limited)
    response = await limited.post("/oauth/register", json=METADATA)
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"] == "temporarily_unavailable"


async def test_unused_registration_expires(short_lived):
    body = await registered(short_lived)
    await asyncio.sleep(1.3)
    assert await short_lived.app[SERVICES].clients.find(str(body["client_id"])) is None


async def test_used_registration_kept(short_lived):
    body = await registered(short_lived)
    client = Client(str(body["client_id"]))
    code, verifier, _ = await get_code(short_lived, client)
    issued = await exchange(short_lived, client, code, verifier)
    assert issued.status == 200, await issued.text()
    await asyncio.sleep(1.3)
    assert await short_lived.app[SERVICES].clients.find(client.client_id) is not None
    response = await refresh(short_lived, client, (await issued.json())["refresh_token"])
    assert response.status == 200, await response.text()
