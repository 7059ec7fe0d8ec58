"""Bearer-token verification for a protected resource, such as an MCP server.

:class:`BearerVerifier` checks frontauth's JWT access tokens in-process against
the authorization server's published key set, remembers the tokens it verified,
and refuses revoked ones it knows of (see :meth:`BearerVerifier.revoke` and
:class:`Introspection`). Three front ends use it:

- :func:`bearer_auth_middleware` for aiohttp applications;
- :class:`BearerAuthMiddleware` for ASGI applications (Starlette, FastAPI);
- :class:`MCPTokenVerifier` for the official MCP Python SDK's ``token_verifier``.
  It needs the ``mcp`` package and is imported on first use.
"""

from __future__ import annotations

import typing

from frontauth.resource.aiohttp_middleware import TOKEN_KEY, bearer_auth_middleware
from frontauth.resource.asgi import SCOPE_KEY, BearerAuthMiddleware
from frontauth.resource.bearer import extract_bearer_token
from frontauth.resource.errors import (
    BearerError,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidRequest,
    InvalidToken,
    KeySetUnavailable,
    MissingToken,
    VerificationUnavailable,
)
from frontauth.resource.introspection import Introspection
from frontauth.resource.jwks import KeySetCache
from frontauth.resource.verifier import DEFAULT_ALGORITHMS, BearerVerifier, VerifiedToken

if typing.TYPE_CHECKING:
    from frontauth.resource.mcp_verifier import MCPTokenVerifier

__all__ = [
    "DEFAULT_ALGORITHMS",
    "SCOPE_KEY",
    "TOKEN_KEY",
    "BearerAuthMiddleware",
    "BearerError",
    "BearerVerifier",
    "InsufficientScope",
    "Introspection",
    "IntrospectionUnavailable",
    "InvalidRequest",
    "InvalidToken",
    "KeySetCache",
    "KeySetUnavailable",
    "MCPTokenVerifier",
    "MissingToken",
    "VerificationUnavailable",
    "VerifiedToken",
    "bearer_auth_middleware",
    "extract_bearer_token",
]


def __getattr__(name: str) -> typing.Any:
    # The MCP SDK is an optional dependency (the "mcp" extra), so the adapter
    # is imported only when asked for (PEP 562).
    if name == "MCPTokenVerifier":
        from frontauth.resource.mcp_verifier import MCPTokenVerifier

        return MCPTokenVerifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
