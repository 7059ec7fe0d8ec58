"""End-to-end: the official MCP Python SDK client against frontauth and the example MCP server.

Two subprocesses run on free loopback ports: ``python -m frontauth serve`` and
``examples/mcp_server.py``, which trusts frontauth as its authorization server.
The SDK's ``OAuthClientProvider`` discovers frontauth from the MCP server's 401
challenge, registers itself, and sends the authorization URL to a redirect
handler that plays the person's browser: it signs in as alice and approves the
consent page. The client then lists and calls tools, refreshes its access token
and calls again.
"""

from __future__ import annotations

import html.parser
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import typing
import urllib.parse

import attrs
import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from frontauth.users import hash_password

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parent.parent
USERNAME = "alice"
PASSWORD = "pw"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Process:
    """A server subprocess whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: pathlib.Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def start_process(name: str, command: list[str], workdir: pathlib.Path) -> Process:
    log_path = workdir / f"{name}.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("FRONTAUTH_", "JWT_"))}
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    return Process(name, popen, log_path)


def wait_until_serving(process: Process, url: str, accepted: typing.Container[int]) -> None:
    """Poll *url* until it returns one of the *accepted* statuses."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with code {process.popen.returncode}:\n{process.log()}")
        try:
            if httpx.get(url, timeout=1).status_code in accepted:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{process.name} did not serve {url} within {START_TIMEOUT} s:\n{process.log()}")


@attrs.frozen
class Servers:
    issuer: str
    mcp_url: str
    resource_metadata_url: str
    processes: tuple[Process, ...]

    def logs(self) -> str:
        return "".join(process.log() for process in self.processes)


@pytest.fixture
def servers(tmp_path: pathlib.Path) -> typing.Iterator[Servers]:
    auth_port = free_port()
    mcp_port = free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"

    users_file = tmp_path / "users.toml"
    users_file.write_text(f'[users.{USERNAME}]\npassword_hash = "{hash_password(PASSWORD)}"\n')
    config_file = tmp_path / "frontauth.toml"
    config_file.write_text(
        f'resources = ["{mcp_url}"]\n'
        "\n[server]\n"
        f'state_dir = "{tmp_path / "state"}"\n'
        "\n[login]\n"
        f'users_file = "{users_file}"\n'
    )

    processes: list[Process] = []
    try:
        auth = start_process(
            "frontauth",
            [sys.executable, "-m", "frontauth", "serve", "--config", str(config_file), "--port", str(auth_port)],
            tmp_path,
        )
        processes.append(auth)
        wait_until_serving(auth, f"{issuer}/healthz", accepted={200})

        mcp = start_process(
            "mcp-server",
            [sys.executable, str(REPO / "examples" / "mcp_server.py"), "--issuer", issuer, "--port", str(mcp_port)],
            tmp_path,
        )
        processes.append(mcp)
        # Without a token the MCP endpoint responds 401, which shows it is up.
        wait_until_serving(mcp, mcp_url, accepted={401})

        yield Servers(
            issuer=issuer,
            mcp_url=mcp_url,
            resource_metadata_url=f"http://127.0.0.1:{mcp_port}/.well-known/oauth-protected-resource/mcp",
            processes=(auth, mcp),
        )
    finally:
        for process in reversed(processes):
            process.stop()


class MemoryTokenStorage:
    """The SDK's ``TokenStorage``, in memory, keeping every token response it is given."""

    def __init__(self) -> None:
        self.history: list[OAuthToken] = []
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.history[-1] if self.history else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@attrs.define
class Form:
    action: str
    method: str
    fields: dict[str, str] = attrs.field(factory=dict)
    buttons: list[tuple[str, str]] = attrs.field(factory=list)


class FormParser(html.parser.HTMLParser):
    """Collect each form's action, method, named inputs and named submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attributes}
        if tag == "form":
            self.forms.append(Form(action=values.get("action", ""), method=values.get("method", "get").lower()))
            return
        if not self.forms or not values.get("name"):
            return
        form = self.forms[-1]
        kind = values.get("type", "submit" if tag == "button" else "text").lower()
        if tag in ("input", "button") and kind == "submit":
            form.buttons.append((values["name"], values.get("value", "")))
        elif tag == "input":
            form.fields[values["name"]] = values.get("value", "")


def only_form(page: str) -> Form:
    parser = FormParser()
    parser.feed(page)
    assert len(parser.forms) == 1, f"expected one form, found {len(parser.forms)}"
    return parser.forms[0]


class Browser:
    """A person's browser: keeps cookies and follows redirects up to the client's redirect_uri."""

    def __init__(self, issuer: str, redirect_uri: str) -> None:
        self.issuer = issuer
        self.redirect_uri = redirect_uri
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=10)
        self.visited: list[str] = []
        self.result: AuthorizationCodeResult | None = None

    async def get(self, url: str) -> httpx.Response:
        """GET *url*, following redirects until a page or the client's redirect_uri."""
        response = await self.http.get(url)
        while response.is_redirect:
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            if location.startswith(self.redirect_uri):
                return response
            response = await self.http.get(location)
        self.visited.append(urllib.parse.urlsplit(str(response.url)).path)
        return response

    async def submit(self, page: httpx.Response, **fields: str) -> httpx.Response:
        """Submit the page's only form with its hidden inputs and *fields* filled in."""
        form = only_form(page.text)
        assert form.method == "post"
        data = {**form.fields, **fields}
        response = await self.http.post(urllib.parse.urljoin(str(page.url), form.action), data=data)
        if response.is_redirect:
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            if location.startswith(self.redirect_uri):
                return response
            return await self.get(location)
        return response

    async def sign_in_and_approve(self, authorization_url: str) -> None:
        """Act as the SDK's redirect handler: sign in, approve, and keep the code."""
        login = await self.get(authorization_url)
        assert login.status_code == 200, login.text
        assert urllib.parse.urlsplit(str(login.url)).path == "/oauth/login"
        login_form = only_form(login.text)
        assert "csrf_token" in login_form.fields

        consent = await self.submit(login, username=USERNAME, password=PASSWORD)
        assert consent.status_code == 200, consent.text
        assert urllib.parse.urlsplit(str(consent.url)).path == "/oauth/consent"
        consent_form = only_form(consent.text)
        assert "csrf_token" in consent_form.fields
        assert ("decision", "approve") in consent_form.buttons

        redirect = await self.submit(consent, decision="approve")
        assert redirect.status_code in (302, 303)
        location = redirect.headers["location"]
        assert location.startswith(self.redirect_uri + "?")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        # RFC 9207: the authorization response names the issuer.
        assert query["iss"] == self.issuer
        self.result = AuthorizationCodeResult(code=query["code"], state=query["state"], iss=query["iss"])

    async def callback(self) -> AuthorizationCodeResult:
        """Act as the SDK's callback handler: return what the redirect carried."""
        assert self.result is not None
        result, self.result = self.result, None
        return result


@attrs.frozen
class Exchange:
    """One request the MCP client sent, with the status of its response."""

    method: str
    url: str
    status: int
    grant_type: str | None


def record_into(exchanges: list[Exchange]) -> typing.Callable[[httpx2.Response], typing.Awaitable[None]]:
    async def record(response: httpx2.Response) -> None:
        request = response.request
        grant_type = None
        if request.url.path == "/oauth/token":
            form = dict(urllib.parse.parse_qsl(request.content.decode()))
            grant_type = form.get("grant_type")
        url = str(request.url.copy_with(query=None))
        exchanges.append(Exchange(request.method, url, response.status_code, grant_type))

    return record


def verify_access_token(token: str, issuer: str, audience: str) -> dict[str, typing.Any]:
    """Check the token's signature against frontauth's JWKS and return its claims."""
    key_set = KeySet.import_key_set(httpx.get(f"{issuer}/.well-known/jwks.json").json())
    decoded = jwt.decode(token, key_set, algorithms=["ES256", "RS256", "EdDSA"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["iss"] == issuer
    assert decoded.claims["aud"] == audience
    assert decoded.claims["sub"] == USERNAME
    assert decoded.claims["scope"] == "mcp"
    return decoded.claims


def tool_text(result: typing.Any) -> str:
    assert result.is_error is False
    return result.content[0].text


async def test_sdk_client_signs_in_and_refreshes(servers: Servers) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    browser = Browser(servers.issuer, redirect_uri)
    storage = MemoryTokenStorage()
    provider = OAuthClientProvider(
        server_url=servers.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="frontauth e2e test",
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
        async with streamable_http_client(servers.mcp_url, http_client=http_client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                assert sorted(tool.name for tool in tools.tools) == ["add", "whoami"]
                assert tool_text(await session.call_tool("add", {"a": 2, "b": 3})) == "5"

                assert len(storage.history) == 1
                first = storage.history[0]
                # Make the provider treat the access token as expired, so the
                # next request goes through the refresh_token grant first.
                provider.context.token_expiry_time = time.time() - 1

                whoami = await session.call_tool("whoami", {})
                assert whoami.is_error is False
                assert whoami.structured_content is not None
                assert whoami.structured_content["subject"] == USERNAME
                assert whoami.structured_content["client_id"] == storage.client_info.client_id
                assert whoami.structured_content["scopes"] == ["mcp"]

    # Discovery started from the 401 challenge's resource_metadata parameter.
    assert exchanges[0] == Exchange("POST", servers.mcp_url, 401, None)
    assert exchanges[1] == Exchange("GET", servers.resource_metadata_url, 200, None)
    assert exchanges[2] == Exchange("GET", f"{servers.issuer}/.well-known/oauth-authorization-server", 200, None)
    assert exchanges[3] == Exchange("POST", f"{servers.issuer}/oauth/register", 201, None)
    token_requests = [exchange for exchange in exchanges if exchange.url == f"{servers.issuer}/oauth/token"]
    assert [exchange.grant_type for exchange in token_requests] == ["authorization_code", "refresh_token"]
    assert [exchange.status for exchange in token_requests] == [200, 200]
    # After sign-in, no MCP request was rejected.
    mcp_statuses = [exchange.status for exchange in exchanges[4:] if exchange.url == servers.mcp_url]
    assert all(status < 300 for status in mcp_statuses), mcp_statuses
    assert browser.visited == ["/oauth/login", "/oauth/consent"]

    assert len(storage.history) == 2
    refreshed = storage.history[1]
    assert refreshed.access_token != first.access_token
    assert refreshed.refresh_token is not None
    assert refreshed.refresh_token != first.refresh_token

    first_claims = verify_access_token(first.access_token, servers.issuer, servers.mcp_url)
    refreshed_claims = verify_access_token(refreshed.access_token, servers.issuer, servers.mcp_url)
    assert refreshed_claims["client_id"] == first_claims["client_id"] == storage.client_info.client_id
    assert refreshed_claims["jti"] != first_claims["jti"]

    # The rotated refresh token no longer works (RFC 9700 §4.14).
    reuse = httpx.post(
        f"{servers.issuer}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first.refresh_token, "client_id": first_claims["client_id"]},
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"

    logs = servers.logs()
    for credential in (first.access_token, first.refresh_token, refreshed.access_token, refreshed.refresh_token):
        assert credential is not None
        assert credential not in logs
