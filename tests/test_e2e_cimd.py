"""End-to-end: the MCP Python SDK client identified by a client ID metadata document.

The test serves the document over https on loopback, from a thread, with a
certificate of a test CA. ``python -m frontauth serve`` trusts that CA through
SSL_CERT_FILE and allows loopback documents (``cimd.allow_http_loopback``, for
tests only). The SDK sees ``client_id_metadata_document_supported`` in the
metadata and uses the document URL as its client_id instead of registering.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import ssl
import subprocess
import sys
import threading
import time
import typing

import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from frontauth.users import hash_password
from tests.test_e2e_mcp import (
    PASSWORD,
    REPO,
    USERNAME,
    Browser,
    Exchange,
    MemoryTokenStorage,
    Process,
    free_port,
    record_into,
    tool_text,
    wait_until_serving,
)
from tests.tls_files import make_tls_files

pytestmark = pytest.mark.e2e


class DocumentServer:
    """An https server on loopback that serves one client metadata document and counts fetches."""

    def __init__(self, folder: pathlib.Path, redirect_uri: str) -> None:
        tls = make_tls_files(folder, "127.0.0.1")
        self.ca = tls.ca
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/clients/e2e.json"
        self.fetches = 0
        document = {
            "client_id": self.url,
            "client_name": "frontauth document client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        body = json.dumps(document).encode()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: typing.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert, tls.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_with_env(name: str, command: list[str], workdir: pathlib.Path, extra: dict[str, str]) -> Process:
    log_path = workdir / f"{name}.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("FRONTAUTH_", "JWT_"))}
    environment.update(extra)
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    return Process(name, popen, log_path)


async def test_sdk_client_with_metadata_document(tmp_path: pathlib.Path) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    documents = DocumentServer(tmp_path, redirect_uri)
    auth_port, mcp_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
    users_file = tmp_path / "users.toml"
    users_file.write_text(f'[users.{USERNAME}]\npassword_hash = "{hash_password(PASSWORD)}"\n')
    config_file = tmp_path / "frontauth.toml"
    config_file.write_text(
        f'resources = ["{mcp_url}"]\n'
        f'\n[server]\nstate_dir = "{tmp_path / "state"}"\n'
        f'\n[login]\nusers_file = "{users_file}"\n'
        "\n[cimd]\nallow_http_loopback = true\n"
    )
    processes: list[Process] = []
    try:
        auth = start_with_env(
            "frontauth",
            [sys.executable, "-m", "frontauth", "serve", "--config", str(config_file), "--port", str(auth_port)],
            tmp_path,
            {"SSL_CERT_FILE": documents.ca},
        )
        processes.append(auth)
        wait_until_serving(auth, f"{issuer}/healthz", accepted={200})
        mcp = start_with_env(
            "mcp-server",
            [sys.executable, str(REPO / "examples" / "mcp_server.py"), "--issuer", issuer, "--port", str(mcp_port)],
            tmp_path,
            {},
        )
        processes.append(mcp)
        wait_until_serving(mcp, mcp_url, accepted={401})

        browser = Browser(issuer, redirect_uri)
        storage = MemoryTokenStorage()
        provider = OAuthClientProvider(
            server_url=mcp_url,
            client_metadata=OAuthClientMetadata(
                client_name="frontauth document client",
                redirect_uris=[redirect_uri],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=browser.sign_in_and_approve,
            callback_handler=browser.callback,
            client_metadata_url=documents.url,
        )
        exchanges: list[Exchange] = []
        http_client = httpx2.AsyncClient(auth=provider, timeout=30, event_hooks={"response": [record_into(exchanges)]})
        async with browser.http, http_client:
            async with streamable_http_client(mcp_url, http_client=http_client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    assert tool_text(await session.call_tool("add", {"a": 2, "b": 3})) == "5"
                    provider.context.token_expiry_time = time.time() - 1
                    whoami = await session.call_tool("whoami", {})
                    assert whoami.is_error is False
                    assert whoami.structured_content is not None
                    assert whoami.structured_content["client_id"] == documents.url
        grants = [exchange.grant_type for exchange in exchanges if exchange.grant_type]
        assert grants == ["authorization_code", "refresh_token"]
        assert not [exchange for exchange in exchanges if exchange.url.endswith("/oauth/register")]
        # Authorize, consent and both token requests used one fetch of the document.
        assert documents.fetches == 1
    finally:
        for process in reversed(processes):
            process.stop()
        documents.stop()
