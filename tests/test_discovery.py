"""Discovery at every address clients probe, and identifiers compared canonically."""

from __future__ import annotations

import base64
import json

import pytest

from frontauth import config
from frontauth.identifiers import canonical, find_resource, same_identifier
from tests.oauth_checks import ISSUER, load_settings, start_app
from tests.oauth_flow import exchange, get_code, register

TWO_RESOURCES = f'resources = ["{ISSUER}/mcp", "{ISSUER}/files/mcp"]\n'
TENANT = 'public_url = "HTTP://127.0.0.1:8080/tenant/"\n'


@pytest.fixture
async def two_resources(aiohttp_client, tmp_path):
    return await start_app(aiohttp_client, load_settings(tmp_path, TWO_RESOURCES))


@pytest.fixture
async def tenant(aiohttp_client, tmp_path):
    return await start_app(aiohttp_client, load_settings(tmp_path, TENANT))


async def json_of(http, path: str) -> dict[str, object]:
    response = await http.get(path)
    assert response.status == 200, f"{path}: {response.status}"
    return await response.json()


def audience_of(access_token: str) -> object:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp/"])
async def test_resource_metadata_path_inserted(http, path):
    document = await json_of(http, path)
    assert document["resource"] == ISSUER + "/mcp"
    assert document["authorization_servers"] == [ISSUER]


async def test_resource_metadata_at_root(http):
    document = await json_of(http, "/.well-known/oauth-protected-resource")
    assert document["resource"] == ISSUER + "/mcp"


async def test_resource_metadata_claims_no_response_signing(http):
    """RFC 9728 §2: resource_signing_alg_values_supported is for signed resource responses, which frontauth has none of."""
    document = await json_of(http, "/.well-known/oauth-protected-resource")
    assert "resource_signing_alg_values_supported" not in document


async def test_resource_metadata_per_resource(two_resources):
    first = await json_of(two_resources, "/.well-known/oauth-protected-resource/mcp")
    second = await json_of(two_resources, "/.well-known/oauth-protected-resource/files/mcp")
    assert first["resource"] == ISSUER + "/mcp"
    assert second["resource"] == ISSUER + "/files/mcp"


async def test_unknown_resource_path_not_found(http):
    response = await http.get("/.well-known/oauth-protected-resource/other")
    assert response.status == 404
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == "not_found"
    assert body["error_description"] == "no configured resource on this origin has that path"


# RFC 9728 §3.1 and §3.3: only the resource's own origin publishes its metadata.
OTHER_ORIGIN = "https://mcp.example.com/mcp"
OTHER_ORIGIN_METADATA = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"], ids=["root", "path"]
)
async def test_resource_on_other_origin_not_claimed(aiohttp_client, tmp_path, path):
    app = await start_app(aiohttp_client, load_settings(tmp_path, f'resources = ["{OTHER_ORIGIN}"]\n'))
    response = await app.get(path)
    assert response.status == 404
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == "not_found"
    assert OTHER_ORIGIN_METADATA in body["error_description"]
    assert "RFC 9728 section 3.1" in body["error_description"]


@pytest.mark.parametrize(
    "resource",
    ["http://127.0.0.1:9000/mcp", "https://127.0.0.1:8080/mcp", "http://localhost:8080/mcp"],
    ids=["other-port", "other-scheme", "other-host"],
)
async def test_resource_origin_compared_exactly(aiohttp_client, tmp_path, resource):
    app = await start_app(aiohttp_client, load_settings(tmp_path, f'resources = ["{resource}"]\n'))
    assert (await app.get("/.well-known/oauth-protected-resource")).status == 404
    assert (await app.get("/.well-known/oauth-protected-resource/mcp")).status == 404


async def test_root_names_first_resource_on_own_origin(aiohttp_client, tmp_path):
    """With the default resource on another origin, the root and the path name only the resource on this one."""
    toml = f'resources = ["{OTHER_ORIGIN}", "{ISSUER}/files"]\n'
    app = await start_app(aiohttp_client, load_settings(tmp_path, toml))
    root = await json_of(app, "/.well-known/oauth-protected-resource")
    assert root["resource"] == ISSUER + "/files"
    assert root["authorization_servers"] == [ISSUER]
    inserted = await json_of(app, "/.well-known/oauth-protected-resource/files")
    assert inserted["resource"] == ISSUER + "/files"
    assert (await app.get("/.well-known/oauth-protected-resource/mcp")).status == 404


async def test_root_prefers_resource_equal_to_origin(aiohttp_client, tmp_path):
    """RFC 9728 §3.3: the root URL is built from the origin, so a resource equal to it wins."""
    app = await start_app(aiohttp_client, load_settings(tmp_path, f'resources = ["{ISSUER}/mcp", "{ISSUER}"]\n'))
    root = await json_of(app, "/.well-known/oauth-protected-resource")
    assert root["resource"] == ISSUER


async def test_resource_origin_case_insensitive(aiohttp_client, tmp_path):
    """RFC 3986 §6.2.2.1: a resource spelled with upper-case scheme and host is on this origin."""
    toml = 'resources = ["HTTP://127.0.0.1:8080/mcp"]\n'
    app = await start_app(aiohttp_client, load_settings(tmp_path, toml))
    document = await json_of(app, "/.well-known/oauth-protected-resource/mcp")
    assert document["resource"] == "HTTP://127.0.0.1:8080/mcp"


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server/tenant",
        "/.well-known/openid-configuration/tenant",
        "/tenant/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ],
)
async def test_issuer_with_path_metadata(tenant, path):
    document = await json_of(tenant, path)
    assert document["issuer"] == "http://127.0.0.1:8080/tenant"
    assert document["token_endpoint"] == "http://127.0.0.1:8080/tenant/oauth/token"


@pytest.mark.parametrize(
    "path",
    ["/.well-known/oauth-authorization-server/other", "/other/.well-known/openid-configuration"],
)
async def test_issuer_other_path_not_found(tenant, path):
    response = await tenant.get(path)
    assert response.status == 404


async def test_issuer_without_path_has_no_inserted_metadata(http):
    response = await http.get("/.well-known/oauth-authorization-server/tenant")
    assert response.status == 404


def test_issuer_lower_case_without_slash():
    settings = config.load(environ={"FRONTAUTH_PUBLIC_URL": "HTTPS://Auth.Example.COM/Tenant/"})
    assert settings.issuer == "https://auth.example.com/Tenant"


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        pytest.param("https://host.example/mcp", "HTTPS://HOST.example/mcp", True, id="case-of-scheme-and-host"),
        pytest.param("https://host.example/mcp", "https://host.example:443/mcp", True, id="default-port"),
        pytest.param("https://host.example/mcp", "https://host.example/mcp/", True, id="trailing-slash"),
        pytest.param("https://host.example", "https://host.example/", True, id="origin-slash"),
        pytest.param("https://host.example/mcp", "https://host.example/MCP", False, id="case-of-path"),
        pytest.param("https://host.example/mcp", "http://host.example/mcp", False, id="other-scheme"),
        pytest.param("https://host.example/mcp", "https://host.example:8443/mcp", False, id="other-port"),
        pytest.param("https://host.example/mcp", "https://host.example/mcp?x=1", False, id="query"),
        pytest.param("https://host.example/mcp", "https://user@host.example/mcp", False, id="userinfo"),
        pytest.param("https://host.example/mcp", "/mcp", False, id="relative"),
    ],
)
def test_same_identifier(left, right, same):
    assert same_identifier(left, right) is same


def test_find_resource_returns_configured_spelling():
    assert find_resource("HTTPS://host.example/mcp/", ("https://host.example/mcp",)) == "https://host.example/mcp"
    assert find_resource("https://host.example/other", ("https://host.example/mcp",)) is None


def test_canonical_rejects_bad_port():
    assert canonical("https://host.example:99999/mcp") is None


@pytest.mark.parametrize("resource", ["HTTP://127.0.0.1:8080/mcp", ISSUER + "/mcp/"])
async def test_resource_spelling_accepted_at_authorize_and_token(http, resource):
    client = await register(http)
    code, verifier, _ = await get_code(http, client, resource=resource)
    response = await exchange(http, client, code, verifier, resource=resource)
    assert response.status == 200, await response.text()
    tokens = await response.json()
    assert audience_of(tokens["access_token"]) == ISSUER + "/mcp"
