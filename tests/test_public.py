"""Public mode: the anonymous identity, rate-limited per client address."""

from __future__ import annotations

import typing

import pytest

from frontauth import config
from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver


@pytest.fixture
def make_client(aiohttp_client: typing.Any, make_settings: typing.Any) -> typing.Any:
    async def make(extra: str = "") -> typing.Any:
        settings = make_settings(
            'mode = "public"\n[scopes]\nmcp = "Use the tools"\nread = "Read"\n'
            '[public]\nanonymous_scopes = ["read"]\n'
            f"[ratelimit]\nmax_requests = 3\n{extra}"
        )
        return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))

    return make


async def test_anonymous_identity_has_configured_scopes(make_client: typing.Any) -> None:
    client = await make_client()

    response = await client.get("/oauth/userinfo")

    assert response.status == 200
    assert await response.json() == {"sub": "anonymous", "anonymous": True, "scope": "read"}


async def test_anonymous_identity_limited_per_address(make_client: typing.Any) -> None:
    client = await make_client()

    statuses = [(await client.get("/oauth/userinfo")).status for _ in range(4)]
    limited = await client.get("/oauth/userinfo")

    assert statuses == [200, 200, 200, 429]
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await limited.json())["error"] == "temporarily_unavailable"


async def test_limit_counted_in_metrics(make_client: typing.Any) -> None:
    client = await make_client()
    for _ in range(4):
        await client.get("/oauth/userinfo")

    metrics = await (await client.get("/metrics")).text()

    assert 'frontauth_rate_limited_requests_total{endpoint="anonymous"} 1.0' in metrics


async def test_metadata_names_no_authorization_server(make_client: typing.Any) -> None:
    client = await make_client()

    response = await client.get("/.well-known/oauth-protected-resource")

    body = await response.json()
    assert body["authorization_servers"] == []
    assert body["scopes_supported"] == ["read"]


@pytest.mark.parametrize("path", ["/oauth/authorize", "/oauth/token", "/.well-known/oauth-authorization-server"])
async def test_issuing_endpoints_absent(make_client: typing.Any, path: str) -> None:
    client = await make_client()

    response = await client.get(path)

    assert response.status in (404, 405)


def test_unknown_anonymous_scope_rejected(make_settings: typing.Any, tmp_path: typing.Any) -> None:
    with pytest.raises(config.ConfigError) as raised:
        make_settings('mode = "public"\n[public]\nanonymous_scopes = ["admin"]\n')

    assert str(raised.value) == (
        f"invalid setting public.anonymous_scopes (from file {tmp_path / 'frontauth.toml'}): "
        "scope 'admin' is not in [scopes]"
    )


def test_unlimited_public_mode_warns(make_settings: typing.Any) -> None:
    settings = make_settings('mode = "public"\n[ratelimit]\nenabled = false\n')

    assert [setting for setting, _ in config.warnings_of(settings)] == ["ratelimit.enabled"]
