"""The MCP conformance suite's authorization-server scenarios against ``python -m frontauth serve``.

The suite is the npm package ``@modelcontextprotocol/conformance``. Its
``authorization`` command, which tests an authorization server, exists only in
the 0.2.0 pre-releases: 0.1.16, the ``latest`` tag, has server and client
scenarios only. It needs Node.js 22 or later (it imports ``fs.globSync`` at
start), so the test takes Node 22 from npm when the node on PATH is older (see
tests/node_tools.py). Both land in tests/.cache on the first run.

Two scenarios, run in this order by the suite:

- ``authorization-server-metadata-endpoint`` fetches the RFC 8414 metadata at
  the path-inserted address (then the OIDC ones) and checks the required
  fields, ``code_challenge_methods_supported`` with S256, the issuer, and
  ``client_id_metadata_document_supported``.
- ``authorization-code-grant`` prints an authorization URL with PKCE and
  ``state`` and waits for the redirect on ``http://127.0.0.1:<port>/callback``.
  The test plays the person's browser as tests/test_e2e_mcp.py does: it signs in,
  approves, and the redirect reaches the suite, which checks ``code``, ``state``
  and ``iss`` and redeems the code (status, Content-Type, Cache-Control no-store,
  ``access_token`` and ``token_type``).

One run fails because of the suite, and the test pins that failure so that a
suite upgrade that fixes it is noticed. Given ``--client-secret``, the suite
still authenticates with ``none`` whenever the server lists ``none`` in
``token_endpoint_auth_methods_supported`` (its ``selectTokenAuthMethod``).
A confidential client's token request then carries no secret, and frontauth
rejects it as RFC 6749 §3.2.1 requires: "Confidential clients or other clients
issued client credentials MUST authenticate with the authorization server ...
when making requests to the token endpoint". The method belongs to the
client's registration (RFC 7591 §2, ``token_endpoint_auth_method``), not to
the list of methods the server supports for all its clients.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import queue
import re
import subprocess
import threading
import typing
import urllib.parse

import attrs
import httpx
import pytest

from frontauth.users import add_user
from tests import node_tools
from tests.processes import ServerProcess, free_port, start_frontauth
from tests.test_e2e_mcp import Browser

pytestmark = pytest.mark.e2e

CONFORMANCE_SPEC = "@modelcontextprotocol/conformance@0.2.0-alpha.12"
SCENARIOS = {"authorization-server-metadata-endpoint", "authorization-code-grant"}
USER, PASSWORD = "alice", "conformance password"
# The suite itself waits five minutes for the redirect. A run here took one to two seconds.
SUITE_TIMEOUT = 60.0


@attrs.frozen
class Suite:
    """The installed conformance suite and the node that runs it."""

    node: str
    entry: pathlib.Path

    def command(self, issuer: str, output_dir: pathlib.Path, *args: str) -> list[str]:
        return [self.node, str(self.entry), "authorization", "--url", issuer, "--output-dir", str(output_dir), *args]


@attrs.frozen
class Run:
    """One run of the suite: exit code, output, and the checks of each scenario it ran."""

    returncode: int
    output: str
    checks: dict[str, list[dict[str, typing.Any]]]

    def statuses(self) -> dict[str, list[str]]:
        return {scenario: [check["status"] for check in checks] for scenario, checks in self.checks.items()}


@pytest.fixture(scope="module")
def suite() -> Suite:
    node = node_tools.node_binary(22)
    folder = node_tools.npm_package("conformance", CONFORMANCE_SPEC)
    entry = folder / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if not entry.exists():
        node_tools.missing(f"the conformance suite's entry point {entry}")
    return Suite(node, entry)


def start_server(workdir: pathlib.Path, *args: str, port: int | None = None) -> ServerProcess:
    add_user(str(workdir / "users.toml"), USER, PASSWORD)
    config = f'[server]\nstate_dir = "{workdir / "state"}"\n[login]\nusers_file = "users.toml"\n'
    (workdir / "frontauth.toml").write_text(config)
    return start_frontauth(str(workdir), str(workdir / "frontauth.toml"), port=port, args=args)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("conformance"))
    yield process
    process.stop()


def register(server: ServerProcess, redirect_uri: str, method: str = "none") -> dict[str, typing.Any]:
    body = {"client_name": "MCP conformance suite", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": method}
    response = httpx.post(f"{server.url}/oauth/register", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return typing.cast(dict[str, typing.Any], response.json())


async def sign_in_and_approve(authorization_url: str, issuer: str, redirect_uri: str) -> None:
    """Sign in and approve as the person's browser, then follow the redirect to the suite's callback."""
    browser = Browser(issuer, redirect_uri)
    try:
        login = await browser.get(authorization_url)
        assert urllib.parse.urlsplit(str(login.url)).path == "/oauth/login", login.text
        consent = await browser.submit(login, username=USER, password=PASSWORD)
        assert urllib.parse.urlsplit(str(consent.url)).path == "/oauth/consent", consent.text
        redirect = await browser.submit(consent, decision="approve")
        location = redirect.headers["location"]
        assert location.startswith(redirect_uri + "?"), location
        delivered = await browser.http.get(location)
        assert delivered.status_code == 200, delivered.text
    finally:
        await browser.http.aclose()


def read_checks(output_dir: pathlib.Path) -> dict[str, list[dict[str, typing.Any]]]:
    """Return the checks of each scenario, from <output_dir>/authorization-server-<scenario>-<time>/checks.json."""
    checks = {}
    for path in output_dir.glob("authorization-server-*/checks.json"):
        match = re.fullmatch(r"authorization-server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z", path.parent.name)
        assert match, path
        checks[match.group(1)] = json.loads(path.read_text())
    return checks


def run_suite(suite: Suite, issuer: str, output_dir: pathlib.Path, *args: str,
              redirect_uri: str | None = None) -> Run:
    """Run the suite and, given redirect_uri, approve the authorization URL it prints."""
    output_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(suite.command(issuer, output_dir, *args), cwd=output_dir, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        prefix = f"{issuer}/oauth/authorize?"
        while (line := lines.get(timeout=SUITE_TIMEOUT)) is not None:
            output.append(line)
            if redirect_uri is not None and line.startswith(prefix):
                asyncio.run(sign_in_and_approve(line.strip(), issuer, redirect_uri))
        returncode = process.wait(timeout=SUITE_TIMEOUT)
    except (queue.Empty, subprocess.TimeoutExpired):
        pytest.fail("the conformance suite did not finish; its output:\n" + "".join(output))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
    return Run(returncode, "".join(output), read_checks(output_dir))


@pytest.mark.parametrize("resource", [None, "/mcp"], ids=["no-resource", "resource"])
def test_public_client_passes_all(suite, server, tmp_path, resource):
    port = free_port()
    client = register(server, f"http://127.0.0.1:{port}/callback")
    args = ["--client-id", client["client_id"], "--port", str(port)]
    if resource is not None:
        args += ["--resource", server.url + resource]
    run = run_suite(suite, server.url, tmp_path, *args, redirect_uri=f"http://127.0.0.1:{port}/callback")
    assert set(run.checks) == SCENARIOS, run.output
    assert run.statuses() == {
        "authorization-server-metadata-endpoint": ["SUCCESS", "SUCCESS"],
        "authorization-code-grant": ["SUCCESS"],
    }, run.output
    assert run.returncode == 0, run.output
    grant = run.checks["authorization-code-grant"][0]["details"]
    assert grant["body"]["token_type"] == "Bearer"
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(grant["authorizationResponseUrl"]).query)["iss"] == [server.url]


def test_path_issuer_metadata_passes(suite, tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/tenant"
    server = start_server(tmp_path, "--public-url", issuer, port=port)
    try:
        run = run_suite(suite, issuer, tmp_path / "results", "--scenario", "authorization-server-metadata-endpoint")
    finally:
        server.stop()
    assert run.statuses() == {"authorization-server-metadata-endpoint": ["SUCCESS", "SUCCESS"]}, run.output
    assert run.returncode == 0, run.output
    assert run.checks["authorization-server-metadata-endpoint"][0]["details"]["body"]["issuer"] == issuer


def test_confidential_client_gets_no_secret(suite, server, tmp_path):
    """The suite sends no client secret, so frontauth rejects the token request (see the module docstring)."""
    port = free_port()
    client = register(server, f"http://127.0.0.1:{port}/callback", method="client_secret_post")
    run = run_suite(suite, server.url, tmp_path, "--client-id", client["client_id"], "--client-secret",
                    client["client_secret"], "--port", str(port), redirect_uri=f"http://127.0.0.1:{port}/callback")
    assert run.statuses() == {
        "authorization-server-metadata-endpoint": ["SUCCESS", "SUCCESS"],
        "authorization-code-grant": ["FAILURE"],
    }, run.output
    assert run.checks["authorization-code-grant"][0]["errorMessage"] == "Invalid status code: 401"
    assert run.returncode == 1
    assert re.search(r"rejected POST /oauth/token .*error=invalid_client", server.log()), server.log()
