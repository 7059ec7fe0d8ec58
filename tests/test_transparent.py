"""Transparent mode: upstream access tokens checked by GET /oauth/userinfo, metadata naming the provider."""

from __future__ import annotations

import time
import typing

import pytest

from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver
from tests.processes import free_port, run_frontauth
from tests.upstream_stub import RESOURCE, UpstreamStub, serve_stub

METADATA_PATH = "/.well-known/oauth-protected-resource"


@pytest.fixture
async def stub(aiohttp_server: typing.Any) -> UpstreamStub:
    return await serve_stub(aiohttp_server)


@pytest.fixture
def make_client(
    aiohttp_client: typing.Any, make_settings: typing.Any, stub: UpstreamStub
) -> typing.Callable[..., typing.Awaitable[typing.Any]]:
    async def make(extra: str = "") -> typing.Any:
        settings = make_settings(
            f'mode = "transparent"\nresources = ["{RESOURCE}"]\n'
            f'[upstream]\nprovider = "{stub.issuer}"\nrequired_scopes = ["mcp"]\n{extra}'
        )
        return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))

    return make


async def check(client: typing.Any, token: str | None) -> typing.Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get("/oauth/userinfo", headers=headers)


def challenge_of(client: typing.Any) -> str:
    # The metadata URL is built from the configured issuer, never from the request's Host.
    return f'resource_metadata="http://127.0.0.1:8080{METADATA_PATH}"'


async def test_valid_token_returns_subject(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await check(client, stub.sign())

    assert response.status == 200
    body = await response.json()
    assert body["sub"] == "alice"
    assert body["scope"] == "mcp read"
    assert body["anonymous"] is False
    assert response.headers["Cache-Control"] == "no-store"


async def test_generic_jwt_type_accepted(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await check(client, stub.sign(typ="JWT", client_id=None, jti=None))

    assert response.status == 200


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"aud": "https://other.example/mcp"}, "The access token audience does not include this resource"),
        ({"iss": "https://evil.example"}, "The access token issuer is not trusted"),
        ({"exp": int(time.time()) - 3600}, "The access token expired"),
    ],
    ids=["wrong-aud", "wrong-iss", "expired"],
)
async def test_invalid_token_gets_401(
    make_client: typing.Any, stub: UpstreamStub, claims: dict[str, typing.Any], description: str
) -> None:
    client = await make_client()

    response = await check(client, stub.sign(**claims))

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}", {challenge_of(client)}'
    )


async def test_missing_scope_gets_403(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await check(client, stub.sign(scope="read"))

    assert response.status == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", '
        f'scope="mcp", {challenge_of(client)}'
    )


async def test_missing_token_gets_bare_challenge(make_client: typing.Any) -> None:
    client = await make_client()

    response = await check(client, None)

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == f"Bearer {challenge_of(client)}"


async def test_anonymous_allowed_without_token(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client("allow_anonymous = true\n")

    anonymous = await check(client, None)
    forged = await check(client, stub.sign(aud="https://other.example/mcp"))

    assert anonymous.status == 200
    assert await anonymous.json() == {"sub": "anonymous", "anonymous": True, "scope": ""}
    assert forged.status == 401


async def test_additional_issuer_accepted(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client('additional_issuers = ["https://login.example/v2"]\n')

    response = await check(client, stub.sign(iss="https://login.example/v2"))

    assert response.status == 200


async def test_unchecked_issuer_accepts_any(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client(f'verify_issuer = false\nexpected_audience = "{RESOURCE}"\n')

    response = await check(client, stub.sign(iss="https://elsewhere.example"))

    assert response.status == 200


async def test_metadata_names_upstream_provider(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client()

    response = await client.get(METADATA_PATH)

    assert await response.json() == {
        "resource": RESOURCE,
        "authorization_servers": [stub.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp"],
    }


@pytest.mark.parametrize(
    "path",
    ["/oauth/authorize", "/oauth/token", "/oauth/register", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json"],
)
async def test_issuing_endpoints_absent(make_client: typing.Any, path: str) -> None:
    client = await make_client()

    response = await client.get(path)

    assert response.status in (404, 405)


async def test_jwks_outage_counted_in_metrics(make_client: typing.Any, stub: UpstreamStub) -> None:
    client = await make_client("jwks_cache_ttl = 0.001\njwks_refetch_cooldown = 0.001\n")
    token = stub.sign()
    stub.jwks_fault = "500"
    time.sleep(0.01)  # past the 1 ms TTL and cool-down, so the next check fetches the key set

    response = await check(client, token)
    metrics = await (await client.get("/metrics")).text()

    assert response.status == 200, metrics
    assert f'frontauth_jwks_fetch_errors_total{{provider="{stub.issuer}"}} 1.0' in metrics


def test_unreachable_provider_stops_startup(tmp_path: typing.Any) -> None:
    provider = f"http://127.0.0.1:{free_port()}"
    config_file = tmp_path / "frontauth.toml"
    config_file.write_text(f'mode = "transparent"\n[upstream]\nprovider = "{provider}"\nhttp_timeout = 2\n')

    result = run_frontauth(
        str(tmp_path), "serve", "--port", str(free_port()), "--config", str(config_file),
        env={"FRONTAUTH_SERVER_SECRET": "s" * 32},
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"frontauth: upstream provider {provider} is unreachable or has no usable metadata (")
