"""An MCP server whose tools require an access token issued by frontauth.

Run frontauth first, then this server, which trusts it as its authorization server:

    python -m frontauth serve --port 8080
    python examples/mcp_server.py --issuer http://127.0.0.1:8080 --port 9000

The MCP endpoint is http://127.0.0.1:9000/mcp. Its RFC 9728 metadata, at
http://127.0.0.1:9000/.well-known/oauth-protected-resource/mcp, names the issuer
as the authorization server, so an MCP client that receives the 401 challenge
can discover frontauth, register, and sign the user in. frontauth must list
http://127.0.0.1:9000/mcp in its ``resources`` setting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import typing

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from frontauth.resource import BearerVerifier, MCPTokenVerifier

logger = logging.getLogger("frontauth.example")


def resource_url(host: str, port: int) -> str:
    """Return the URL of the MCP endpoint, which is also the token audience."""
    authority = f"[{host}]" if ":" in host else host
    return f"http://{authority}:{port}/mcp"


def build_server(issuer: str, resource: str, scopes: list[str], verifier: BearerVerifier) -> MCPServer:
    """Create the MCP server with its tools and its token check.

    Args:
        issuer: the frontauth issuer URL, published as the authorization server.
        resource: the MCP endpoint URL; tokens must name it in ``aud``.
        scopes: scopes every request needs.
        verifier: checks the access tokens; its audience must be *resource*.
    """
    server: MCPServer = MCPServer(
        name="frontauth-example",
        token_verifier=MCPTokenVerifier(verifier),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            required_scopes=scopes,
            # The verifier already checks aud; this makes the SDK compare it too.
            validate_token_resource=True,
        ),
    )

    @server.tool()
    def whoami() -> dict[str, typing.Any]:
        """Return the subject, client and scopes of the caller's access token."""
        token = get_access_token()
        if token is None:
            raise RuntimeError("no access token in this request")
        return {"subject": token.subject, "client_id": token.client_id, "scopes": token.scopes}

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


async def serve(issuer: str, host: str, port: int, scopes: list[str]) -> None:
    """Run the MCP server over streamable HTTP until it is interrupted."""
    resource = resource_url(host, port)
    async with BearerVerifier(issuer, resource, required_scopes=scopes) as verifier:
        server = build_server(issuer, resource, scopes, verifier)
        app = server.streamable_http_app(host=host)
        logger.info("serving MCP at %s; tokens must come from %s", resource, issuer)
        config = uvicorn.Config(app, host=host, port=port, log_level="info")
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the server; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issuer", required=True, help="frontauth issuer URL, for example http://127.0.0.1:8080")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="TCP port to listen on (default: 9000)")
    parser.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help="scope every request needs; repeat for several (default: mcp)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.issuer, args.host, args.port, args.scopes or ["mcp"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
