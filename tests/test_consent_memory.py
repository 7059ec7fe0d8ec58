"""Remembered consent: what it covers, and when the person must approve again."""

from __future__ import annotations

from tests.oauth_flow import Client, authorize_params, new_pkce, register

TWO_RESOURCES = 'resources = ["http://127.0.0.1:9000/mcp", "http://127.0.0.1:9001/other"]\n'


async def _start(aiohttp_client, make_settings, toml: str = ""):
    from frontauth.app import create_app
    from frontauth.drivers.memory import MemoryDriver

    return await aiohttp_client(create_app(make_settings(toml), driver=MemoryDriver(cleanup_interval=0)))


async def _authorize(http, client: Client, **extra: str) -> str:
    _, challenge = new_pkce()
    response = await http.get("/oauth/authorize", params=authorize_params(client, challenge, **extra), allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]


async def _approve_once(http, client: Client, **extra: str) -> None:
    from tests.oauth_flow import approve, sign_in

    location = await _authorize(http, client, **extra)
    location = await sign_in(http, location)
    location = await approve(http, location)
    assert location.startswith(client.redirect_uri)


async def test_consent_for_one_resource_does_not_cover_another(aiohttp_client, make_settings):
    http = await _start(aiohttp_client, make_settings, TWO_RESOURCES)
    client = await register(http)
    await _approve_once(http, client, resource="http://127.0.0.1:9000/mcp")

    same = await _authorize(http, client, resource="http://127.0.0.1:9000/mcp")
    other = await _authorize(http, client, resource="http://127.0.0.1:9001/other")

    assert same.startswith(client.redirect_uri)
    assert "/oauth/consent?pending=" in other


async def test_loopback_port_variant_needs_approval_again(aiohttp_client, make_settings):
    http = await _start(aiohttp_client, make_settings)
    client = await register(http, redirect_uris=["http://127.0.0.1/callback"])
    await _approve_once(http, client)

    exact = await _authorize(http, client)
    other_port = await _authorize(http, client, redirect_uri="http://127.0.0.1:31337/callback")

    assert exact.startswith("http://127.0.0.1/callback?")
    assert "/oauth/consent?pending=" in other_port
