"""Tolerances for known MCP clients (frontauth.quirks), each through the endpoint it affects."""

from __future__ import annotations

import urllib.parse

import pytest

from frontauth import quirks
from tests.oauth_checks import FORM, ISSUER, error_page
from tests.oauth_flow import Client, authorize_params, get_code, new_pkce, register

LOCALHOST_URI = "http://localhost:19876/callback"


async def code_exchange_form(http) -> dict[str, str]:
    client = await register(http)
    code, verifier, _ = await get_code(http, client)
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": verifier,
        "client_id": client.client_id,
    }


def encoded(form: dict[str, str]) -> str:
    return urllib.parse.urlencode(form)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("Content-Type", FORM + "; charset=UTF-8")], id="charset"),
        pytest.param([("Content-Type", f"{FORM}, {FORM}")], id="doubled-value"),
        pytest.param([("Content-Type", f"{FORM};charset=utf-8, {FORM}")], id="doubled-with-charset"),
    ],
)
async def test_token_content_type_variants_accepted(http, headers):
    form = await code_exchange_form(http)
    response = await http.post("/oauth/token", data=encoded(form), headers=headers)
    assert response.status == 200, await response.text()
    assert "access_token" in await response.json()


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param(f"application/json, {FORM}", id="json-merged-in"),
        pytest.param(FORM + "; charset=ISO-8859-1", id="other-charset"),
        pytest.param(FORM + "; boundary=x", id="other-parameter"),
        pytest.param("multipart/form-data", id="multipart"),
    ],
)
async def test_token_other_content_types_rejected(http, content_type):
    form = await code_exchange_form(http)
    response = await http.post("/oauth/token", data=encoded(form), headers={"Content-Type": content_type})
    assert response.status == 400
    assert await response.json() == {
        "error": "invalid_request",
        "error_description": "the body must be application/x-www-form-urlencoded",
    }


def test_form_content_type_needs_a_value():
    assert quirks.form_content_type([]) is False


async def test_localhost_redirect_other_port_accepted(http):
    registered = await register(http, redirect_uris=[LOCALHOST_URI])
    client = Client(registered.client_id, redirect_uri="http://localhost:19877/callback")
    code, _, query = await get_code(http, client)
    assert code
    assert query["iss"] == ISSUER


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("http://localhost:19877/other", id="other-path"),
        pytest.param("http://localhost:19877/callback?x=1", id="added-query"),
        pytest.param("https://localhost:19877/callback", id="https"),
        pytest.param("http://127.0.0.1:19876/callback", id="other-host"),
    ],
)
async def test_localhost_redirect_other_parts_rejected(http, redirect_uri):
    client = await register(http, redirect_uris=[LOCALHOST_URI])
    _, challenge = new_pkce()
    response = await http.get(
        "/oauth/authorize", params=authorize_params(client, challenge, redirect_uri=redirect_uri), allow_redirects=False
    )
    assert response.status == 400
    assert "Location" not in response.headers
    assert error_page(await response.text())["title"] == "Invalid redirect address"


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("https://host.example/", "https://host.example"),
        ("https://host.example/mcp/", "https://host.example/mcp"),
        ("https://host.example/mcp", "https://host.example/mcp"),
        ("https://host.example/mcp//", "https://host.example/mcp/"),
    ],
)
def test_trailing_slash_stripped_once(identifier, expected):
    assert quirks.strip_trailing_slash(identifier) == expected


async def test_resource_with_trailing_slash_accepted(http):
    client = await register(http)
    code, _, query = await get_code(http, client, resource=ISSUER + "/mcp/")
    assert code
    assert query["iss"] == ISSUER
