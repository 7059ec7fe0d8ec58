"""End-to-end: the official MCP TypeScript SDK client against frontauth and the example MCP server.

The test installs ``@modelcontextprotocol/sdk`` with npm into
``tests/.cache/mcp-node`` (gitignored) when it is missing, copies
``tests/mcp_ts_client.mjs`` beside it so Node resolves the package, and runs
it against the servers of ``tests/test_e2e_mcp.py``. The script registers,
signs in, approves, calls tools and refreshes; the test checks its summary.
Without node and npm on PATH the test is skipped.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from tests.test_e2e_mcp import PASSWORD, USERNAME, Servers, free_port, servers  # noqa: F401 (servers is a fixture)

pytestmark = pytest.mark.e2e

TESTS = pathlib.Path(__file__).resolve().parent
CACHE = TESTS / ".cache" / "mcp-node"
SDK_VERSION = "1.32.2"
SCRIPT = "mcp_ts_client.mjs"


def installed_sdk() -> pathlib.Path:
    """Install the TypeScript SDK into the cache folder once; return the folder to run the script in."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript SDK client")
    package = CACHE / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != SDK_VERSION:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--silent",
             f"@modelcontextprotocol/sdk@{SDK_VERSION}"],
            check=True,
            timeout=600,
        )
    shutil.copyfile(TESTS / SCRIPT, CACHE / SCRIPT)
    return CACHE


def test_typescript_sdk_client_signs_in_and_refreshes(servers: Servers) -> None:
    folder = installed_sdk()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    completed = subprocess.run(
        ["node", SCRIPT, servers.mcp_url, redirect_uri, USERNAME, PASSWORD],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr + servers.logs()
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["tools"] == ["add", "whoami"]
    assert summary["added"] == "5"
    assert summary["iss"] == servers.issuer
    assert summary["whoami"]["subject"] == USERNAME
    assert summary["whoami"]["client_id"] == summary["client_id"]
    assert summary["grants"] == ["authorization_code", "refresh_token"]
