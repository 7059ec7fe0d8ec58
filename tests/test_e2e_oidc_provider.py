"""Acceptance against node-oidc-provider, a certified OpenID provider, run on loopback.

Remote mode: the MCP SDK client signs in through frontauth, which sends the
browser to node-oidc-provider. The test fills in the provider's own sign-in
and consent forms, then frontauth's consent page.

Transparent mode: tokens that node-oidc-provider issued (client_credentials
grant, JWT access tokens per RFC 8707 resource) are checked by
GET /oauth/userinfo of frontauth apps in transparent mode.
"""

from __future__ import annotations

import pathlib
import sys
import time
import typing
import urllib.parse

import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from frontauth.app import create_app
from frontauth.drivers.memory import MemoryDriver
from tests.oidc_provider import first_form, start_oidc_provider
from tests.test_e2e_mcp import (
    REPO,
    Browser,
    MemoryTokenStorage,
    Process,
    free_port,
    only_form,
    start_process,
    tool_text,
    wait_until_serving,
)

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "oidc-secret-" + "x" * 24
RESOURCE = "https://mcp.example/mcp"
ACCOUNT = "carol"


class Provider(typing.NamedTuple):
    issuer: str
    process: Process


@pytest.fixture
def oidc_provider(tmp_path: pathlib.Path) -> typing.Iterator[tuple[Provider, int]]:
    """node-oidc-provider whose client "frontauth" returns to a frontauth on the second port."""
    port, frontauth_port = free_port(), free_port()
    callback = f"http://127.0.0.1:{frontauth_port}/oauth/callback"
    process = start_oidc_provider(tmp_path, port, callback, CLIENT_SECRET)
    try:
        yield Provider(f"http://127.0.0.1:{port}", process), frontauth_port
    finally:
        process.stop()


# --- remote mode with the MCP SDK client ------------------------------------------


class ProviderBrowser(Browser):
    """Signs in with node-oidc-provider's development forms, then approves frontauth's consent page."""

    async def submit_first(self, page: httpx.Response, **fields: str) -> httpx.Response:
        form = first_form(page.text)
        response = await self.http.post(urllib.parse.urljoin(str(page.url), form.action), data={**form.fields, **fields})
        if response.is_redirect:
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            return response if location.startswith(self.redirect_uri) else await self.get(location)
        return response

    async def sign_in_and_approve(self, authorization_url: str) -> None:
        login = await self.get(authorization_url)
        assert login.status_code == 200, login.text
        assert "/interaction/" in str(login.url)
        assert 'name="login"' in login.text

        provider_consent = await self.submit_first(login, login=ACCOUNT, password="any")
        assert provider_consent.status_code == 200, provider_consent.text
        assert "/interaction/" in str(provider_consent.url)

        consent = await self.submit_first(provider_consent)
        assert consent.status_code == 200, consent.text
        assert str(consent.url).startswith(f"{self.issuer}/oauth/consent")

        redirect = await self.submit(consent, decision="approve")
        location = redirect.headers["location"]
        assert location.startswith(self.redirect_uri + "?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        self.result = AuthorizationCodeResult(code=query["code"], state=query["state"], iss=query["iss"])


async def test_remote_mode_with_oidc_provider(tmp_path: pathlib.Path, oidc_provider: tuple[Provider, int]) -> None:
    provider, port = oidc_provider
    issuer = f"http://127.0.0.1:{port}"
    mcp_port = free_port()
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    config_file = tmp_path / "remote.toml"
    config_file.write_text(
        f'mode = "remote"\nresources = ["{mcp_url}"]\n'
        f'[server]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[upstream]\nprovider = "{provider.issuer}"\nclient_id = "frontauth"\nclient_secret = "{CLIENT_SECRET}"\n'
        'scopes = ["openid", "email"]\nuse_userinfo = true\n'
    )
    processes = []
    try:
        remote = start_process(
            "frontauth", [sys.executable, "-m", "frontauth", "serve", "--config", str(config_file), "--port", str(port)],
            tmp_path,
        )
        processes.append(remote)
        wait_until_serving(remote, f"{issuer}/healthz", accepted={200})
        mcp = start_process(
            "mcp-server", [sys.executable, str(REPO / "examples" / "mcp_server.py"), "--issuer", issuer, "--port", str(mcp_port)],
            tmp_path,
        )
        processes.append(mcp)
        wait_until_serving(mcp, mcp_url, accepted={401})

        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        browser = ProviderBrowser(issuer, redirect_uri)
        storage = MemoryTokenStorage()
        auth = OAuthClientProvider(
            server_url=mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name="frontauth oidc-provider test", redirect_uris=[redirect_uri],
                grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage, redirect_handler=browser.sign_in_and_approve, callback_handler=browser.callback,
        )
        async with browser.http, httpx2.AsyncClient(auth=auth, timeout=30) as http_client:
            async with streamable_http_client(mcp_url, http_client=http_client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    assert tool_text(await session.call_tool("add", {"a": 1, "b": 2})) == "3"
                    whoami = await session.call_tool("whoami", {})

        assert whoami.structured_content is not None
        assert whoami.structured_content["subject"] == ACCOUNT
        logs = "".join(process.log() for process in processes)
        assert CLIENT_SECRET not in logs
        assert storage.history[-1].access_token not in logs
    finally:
        for process in reversed(processes):
            process.stop()


# --- transparent mode with tokens the provider issued ------------------------------


def provider_token(issuer: str, resource: str, scope: str = "mcp") -> str:
    response = httpx.post(
        f"{issuer}/token", auth=("resource-tester", CLIENT_SECRET),
        data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
async def transparent(
    aiohttp_client: typing.Any, make_settings: typing.Any, oidc_provider: tuple[Provider, int]
) -> typing.Any:
    provider, _ = oidc_provider

    async def make(provider_url: str, extra: str = "") -> typing.Any:
        settings = make_settings(
            f'mode = "transparent"\nresources = ["{RESOURCE}"]\n[tokens]\nleeway = 0\n'
            f'[upstream]\nprovider = "{provider_url}"\nrequired_scopes = ["mcp"]\n{extra}'
        )
        return await aiohttp_client(create_app(settings, driver=MemoryDriver(cleanup_interval=0)))

    return provider, make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


METADATA = 'resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource"'


async def test_transparent_accepts_provider_token(transparent: typing.Any) -> None:
    provider, make = transparent
    client = await make(provider.issuer)

    response = await client.get("/oauth/userinfo", headers=bearer(provider_token(provider.issuer, RESOURCE)))

    assert response.status == 200
    body = await response.json()
    assert body["sub"] == "resource-tester"
    assert body["scope"] == "mcp"
    assert body["iss"] == provider.issuer


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("wrong-aud", "The access token audience does not include this resource"),
        ("wrong-iss", "The access token issuer is not trusted"),
        ("expired", "The access token expired"),
    ],
)
async def test_transparent_rejects_provider_token(transparent: typing.Any, case: str, description: str) -> None:
    provider, make = transparent
    if case == "wrong-iss":
        # Same keys, but frontauth expects another issuer name for them.
        client = await make(f"{provider.issuer}/other", f'jwks_uri = "{provider.issuer}/jwks"\n')
        token = provider_token(provider.issuer, RESOURCE)
    elif case == "wrong-aud":
        client = await make(provider.issuer)
        token = provider_token(provider.issuer, "https://other.example/mcp")
    else:
        client = await make(provider.issuer, 'expected_audience = "https://short.example/mcp"\n')
        token = provider_token(provider.issuer, "https://short.example/mcp")
        time.sleep(2.1)  # the provider issues these tokens for 1 s

    response = await client.get("/oauth/userinfo", headers=bearer(token))

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}", {METADATA}'
    )


async def test_transparent_rejects_missing_scope(transparent: typing.Any) -> None:
    provider, make = transparent
    client = await make(provider.issuer)

    response = await client.get("/oauth/userinfo", headers=bearer(provider_token(provider.issuer, RESOURCE, "other")))

    assert response.status == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", error_description="The access token lacks a required scope", '
        f'scope="mcp", {METADATA}'
    )
