"""Adapter to the official MCP Python SDK's ``TokenVerifier`` protocol (mcp 2.x).

The SDK's bearer middleware calls :meth:`MCPTokenVerifier.verify_token` and
checks ``AuthSettings.required_scopes`` itself, responding with 403
``insufficient_scope`` when one is missing. The adapter therefore checks no
scope, so that a token lacking a scope reaches that check and gets a 403 rather
than the SDK's 401 for an invalid token.

SECURITY: so ``BearerVerifier.required_scopes`` is NOT enforced here. The SDK's
``TokenVerifier`` interface can only return an ``AccessToken`` or None, and None
becomes 401 ``invalid_token``, which makes an MCP client sign in again
rather than request more scopes. Put the scopes every request needs in
``AuthSettings.required_scopes``.
"""

from __future__ import annotations

import logging

from mcp.server.auth.provider import AccessToken

from frontauth.resource.errors import BearerError, VerificationUnavailable
from frontauth.resource.verifier import BearerVerifier

logger = logging.getLogger("frontauth.resource")


class MCPTokenVerifier:
    """An ``mcp.server.auth.provider.TokenVerifier`` backed by a :class:`BearerVerifier`.

    Args:
        verifier: checks the tokens. Its ``audience`` must be the MCP server's
            ``AuthSettings.resource_server_url``. Its ``required_scopes`` are
            ignored: the SDK checks ``AuthSettings.required_scopes`` instead.
    """

    def __init__(self, verifier: BearerVerifier) -> None:
        self.verifier = verifier

    async def verify_token(self, token: str) -> AccessToken | None:
        """Check a bearer token and describe it for the SDK.

        Returns:
            The token's client, scopes, expiry, resource (the verifier's
            audience, which ``aud`` contains), subject and all claims. None when
            the token is invalid, or when it cannot be checked because no key set
            could be loaded or introspection failed.
        """
        try:
            verified = await self.verifier.verify(token, required_scopes=())
        except BearerError as exc:
            logger.debug("MCP request rejected: %s (%s)", exc.error, exc.description)
            return None
        except VerificationUnavailable as exc:
            logger.warning("MCP request rejected: %s", exc)
            return None
        return AccessToken(
            token=token,
            client_id=verified.client_id,
            scopes=list(verified.scopes),
            expires_at=verified.expires_at,
            resource=self.verifier.audience,
            subject=verified.subject,
            claims=dict(verified.claims),
        )
