"""End-to-end: frontauth in remote mode, with a second frontauth in local mode as its upstream provider.

Three subprocesses on free loopback ports: the upstream frontauth (local mode,
user alice, frontauth-b pre-registered as a confidential client), frontauth B
(remote mode), and ``examples/mcp_server.py`` trusting B. The MCP SDK client
discovers B, registers there and sends the browser to B's authorization
endpoint. The browser signs in and approves at the upstream, returns to B's
callback, approves B's consent page and lands on the client's redirect URI.
The client then calls tools with B's token, whose subject is the upstream user.
"""

from __future__ import annotations

import pathlib
import sys
import typing
import urllib.parse

import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

from frontauth.users import hash_password
from tests.test_e2e_mcp import (
    REPO,
    Browser,
    Exchange,
    MemoryTokenStorage,
    Process,
    free_port,
    only_form,
    record_into,
    start_process,
    tool_text,
    wait_until_serving,
)

pytestmark = pytest.mark.e2e

USERNAME = "alice"
PASSWORD = "pw"
UPSTREAM_CLIENT_ID = "frontauth-b"
UPSTREAM_CLIENT_SECRET = "b-secret-" + "x" * 24


class ChainServers(typing.NamedTuple):
    upstream: str
    issuer: str
    mcp_url: str
    processes: tuple[Process, ...]

    def logs(self) -> str:
        return "".join(process.log() for process in self.processes)


@pytest.fixture
def chain(tmp_path: pathlib.Path) -> typing.Iterator[ChainServers]:
    upstream_port, remote_port, mcp_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    issuer = f"http://127.0.0.1:{remote_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"

    users_file = tmp_path / "users.toml"
    users_file.write_text(f'[users.{USERNAME}]\npassword_hash = "{hash_password(PASSWORD)}"\n')
    upstream_config = tmp_path / "upstream.toml"
    upstream_config.write_text(
        f'[server]\nstate_dir = "{tmp_path / "upstream-state"}"\n'
        f'[login]\nusers_file = "{users_file}"\n'
        f'[[clients]]\nclient_id = "{UPSTREAM_CLIENT_ID}"\nclient_name = "frontauth B"\n'
        f'redirect_uris = ["{issuer}/oauth/callback"]\n'
        f'client_secret_hash = "{hash_password(UPSTREAM_CLIENT_SECRET)}"\n'
    )
    remote_config = tmp_path / "remote.toml"
    remote_config.write_text(
        f'mode = "remote"\nresources = ["{mcp_url}"]\n'
        f'[server]\nstate_dir = "{tmp_path / "remote-state"}"\n'
        # Both servers share the host 127.0.0.1, and cookies ignore the port.
        '[session]\ncookie_name = "frontauth_b_session"\n'
        f'[upstream]\nprovider = "{upstream}"\nclient_id = "{UPSTREAM_CLIENT_ID}"\n'
        f'client_secret = "{UPSTREAM_CLIENT_SECRET}"\nscopes = ["mcp"]\n'
    )

    processes: list[Process] = []
    try:
        first = start_process(
            "upstream",
            [sys.executable, "-m", "frontauth", "serve", "--config", str(upstream_config), "--port", str(upstream_port)],
            tmp_path,
        )
        processes.append(first)
        wait_until_serving(first, f"{upstream}/healthz", accepted={200})
        remote = start_process(
            "remote",
            [sys.executable, "-m", "frontauth", "serve", "--config", str(remote_config), "--port", str(remote_port)],
            tmp_path,
        )
        processes.append(remote)
        wait_until_serving(remote, f"{issuer}/healthz", accepted={200})
        mcp = start_process(
            "mcp-server",
            [sys.executable, str(REPO / "examples" / "mcp_server.py"), "--issuer", issuer, "--port", str(mcp_port)],
            tmp_path,
        )
        processes.append(mcp)
        wait_until_serving(mcp, mcp_url, accepted={401})
        yield ChainServers(upstream, issuer, mcp_url, tuple(processes))
    finally:
        for process in reversed(processes):
            process.stop()


class ChainBrowser(Browser):
    """The person's browser across both servers: sign in upstream, approve twice."""

    def __init__(self, upstream: str, issuer: str, redirect_uri: str) -> None:
        super().__init__(issuer, redirect_uri)
        self.upstream = upstream

    async def sign_in_and_approve(self, authorization_url: str) -> None:
        login = await self.get(authorization_url)
        assert login.status_code == 200, login.text
        assert str(login.url).startswith(f"{self.upstream}/oauth/login")

        upstream_consent = await self.submit(login, username=USERNAME, password=PASSWORD)
        assert upstream_consent.status_code == 200, upstream_consent.text
        assert str(upstream_consent.url).startswith(f"{self.upstream}/oauth/consent")

        remote_consent = await self.submit(upstream_consent, decision="approve")
        assert remote_consent.status_code == 200, remote_consent.text
        assert str(remote_consent.url).startswith(f"{self.issuer}/oauth/consent")
        assert ("decision", "approve") in only_form(remote_consent.text).buttons

        redirect = await self.submit(remote_consent, decision="approve")
        location = redirect.headers["location"]
        assert location.startswith(self.redirect_uri + "?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert query["iss"] == self.issuer
        self.result = AuthorizationCodeResult(code=query["code"], state=query["state"], iss=query["iss"])


async def test_remote_mode_chain_with_sdk_client(chain: ChainServers) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    browser = ChainBrowser(chain.upstream, chain.issuer, redirect_uri)
    storage = MemoryTokenStorage()
    provider = OAuthClientProvider(
        server_url=chain.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="frontauth remote e2e test",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.sign_in_and_approve,
        callback_handler=browser.callback,
    )
    exchanges: list[Exchange] = []
    http_client = httpx2.AsyncClient(auth=provider, timeout=30, event_hooks={"response": [record_into(exchanges)]})

    async with browser.http, http_client:
        async with streamable_http_client(chain.mcp_url, http_client=http_client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert tool_text(await session.call_tool("add", {"a": 2, "b": 3})) == "5"
                whoami = await session.call_tool("whoami", {})

    assert whoami.structured_content is not None
    assert whoami.structured_content["subject"] == USERNAME
    assert whoami.structured_content["client_id"] == storage.client_info.client_id
    # The MCP client only ever talked to B; the upstream saw only the browser and B.
    client_urls = {exchange.url for exchange in exchanges}
    assert not any(url.startswith(chain.upstream) for url in client_urls)
    assert f"{chain.issuer}/oauth/register" in client_urls
    metadata = httpx.get(f"{chain.issuer}/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == chain.issuer

    logs = chain.logs()
    token = storage.history[-1]
    assert token.access_token not in logs
    assert UPSTREAM_CLIENT_SECRET not in logs
