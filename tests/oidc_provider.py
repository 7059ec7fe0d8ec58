"""node-oidc-provider for the acceptance tests: installed from npm into tests/.cache, run on loopback.

The first run installs ``oidc-provider`` (OIDC_PROVIDER_SPEC) with npm into
``tests/.cache/oidc-provider`` (gitignored); later runs reuse it. Tests that
need it are skipped when node or npm is missing.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import typing

import pytest

from tests.test_e2e_mcp import Process, start_process, wait_until_serving

OIDC_PROVIDER_SPEC = "oidc-provider@^9"
TESTS = pathlib.Path(__file__).resolve().parent
CACHE = TESTS / ".cache" / "oidc-provider"
NPM_TIMEOUT = 300


def ensure_installed() -> pathlib.Path:
    """Install oidc-provider if needed; return the server script placed beside its node_modules."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed, so node-oidc-provider cannot run")
    CACHE.mkdir(parents=True, exist_ok=True)
    marker = CACHE / ".installed"
    if not marker.exists() or marker.read_text() != OIDC_PROVIDER_SPEC:
        package_json = CACHE / "package.json"
        if not package_json.exists():
            package_json.write_text('{"name": "frontauth-test-oidc-provider", "private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", OIDC_PROVIDER_SPEC],
            cwd=CACHE, check=True, timeout=NPM_TIMEOUT, env={**os.environ, "NODE_ENV": "development"},
        )
        marker.write_text(OIDC_PROVIDER_SPEC)
    # ESM resolves "oidc-provider" from the script's own folder.
    script = CACHE / "oidc_provider.mjs"
    shutil.copyfile(TESTS / "oidc_provider.mjs", script)
    return script


def start_oidc_provider(workdir: pathlib.Path, port: int, callback_url: str, client_secret: str) -> Process:
    """Start the provider on 127.0.0.1:port and wait for its discovery document."""
    script = ensure_installed()
    process = start_process("oidc-provider", ["node", str(script), str(port), callback_url, client_secret], workdir)
    wait_until_serving(process, f"http://127.0.0.1:{port}/.well-known/openid-configuration", accepted={200})
    return process


def first_form(page: str) -> typing.Any:
    """Return the first form of a page, for the provider's pages that have more than one."""
    from tests.test_e2e_mcp import FormParser

    parser = FormParser()
    parser.feed(page)
    assert parser.forms, "the page has no form"
    return parser.forms[0]
