"""Serve FastMCP's in-memory OAuth provider with uvicorn and uvloop, for the benchmark.

Runs in the peer's own virtual environment (bench/.cache), never in
frontauth's. The provider approves every authorization request at once: it has
no sign-in or consent page, so its authorize step is the steady-state flow.

Usage: python fastmcp_server.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth.auth import ClientRegistrationOptions
from fastmcp.server.auth.providers.in_memory import InMemoryOAuthProvider


def main(port: int) -> None:
    base_url = f"http://127.0.0.1:{port}"
    provider = InMemoryOAuthProvider(
        base_url=base_url,
        client_registration_options=ClientRegistrationOptions(enabled=True, valid_scopes=["mcp"]),
        required_scopes=["mcp"],
    )
    server = FastMCP("bench", auth=provider)
    app = server.http_app(path="/mcp")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
