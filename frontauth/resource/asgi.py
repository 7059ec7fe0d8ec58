"""ASGI middleware that requires a valid bearer token, for Starlette or any ASGI app."""

from __future__ import annotations

import logging
import typing

from frontauth.resource.bearer import extract_bearer_token
from frontauth.resource.errors import (
    BearerError,
    Challenge,
    MissingToken,
    VerificationUnavailable,
    check_metadata_url,
    render_challenge,
    render_unavailable,
)
from frontauth.resource.verifier import BearerVerifier

logger = logging.getLogger("frontauth.resource")

Scope = typing.MutableMapping[str, typing.Any]
Message = typing.MutableMapping[str, typing.Any]
Receive = typing.Callable[[], typing.Awaitable[Message]]
Send = typing.Callable[[Message], typing.Awaitable[None]]
ASGIApp = typing.Callable[[Scope, Receive, Send], typing.Awaitable[None]]

SCOPE_KEY = "frontauth.token"
"""ASGI scope key under which the middleware stores the verified token."""

# WebSocket close code 1008 (policy violation, RFC 6455 §7.4.1). Closing
# before the handshake is accepted makes the ASGI server respond with HTTP 403.
_WEBSOCKET_POLICY_VIOLATION = 1008


class BearerAuthMiddleware:
    """Reject HTTP and WebSocket requests without a valid access token.

    A request that passes reaches the wrapped app with the verified token at
    ``scope["frontauth.token"]``. Lifespan events pass through unchanged.

    Args:
        app: the ASGI application to protect.
        verifier: checks the tokens.
        resource_metadata_url: URL of this resource's RFC 9728 metadata, sent in
            every ``WWW-Authenticate`` challenge. None leaves it out.
        exempt_paths: request paths served without a token, compared exactly.
        required_scopes: scopes every request needs. None uses the verifier's.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: BearerVerifier,
        *,
        resource_metadata_url: str | None,
        exempt_paths: typing.Iterable[str] = (),
        required_scopes: typing.Iterable[str] | None = None,
    ) -> None:
        check_metadata_url(resource_metadata_url)
        self.app = app
        self.verifier = verifier
        self.resource_metadata_url = resource_metadata_url
        self.exempt_paths = frozenset(exempt_paths)
        self.required_scopes = None if required_scopes is None else tuple(required_scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return

        authorization = [
            value.decode("latin-1") for name, value in scope.get("headers", ()) if name.lower() == b"authorization"
        ]
        query_string = scope.get("query_string", b"").decode("latin-1")
        try:
            token = extract_bearer_token(authorization, query_string)
            if token is None:
                raise MissingToken("A bearer token is required")
            verified = await self.verifier.verify(token, self.required_scopes)
        except BearerError as exc:
            logger.debug("request to %s rejected: %s (%s)", scope["path"], exc.error, exc.description)
            await self._reject(scope, receive, send, render_challenge(exc, self.resource_metadata_url))
            return
        except VerificationUnavailable as exc:
            logger.warning("request to %s rejected: %s", scope["path"], exc)
            await self._reject(scope, receive, send, render_unavailable(exc))
            return

        await self.app({**scope, SCOPE_KEY: verified}, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, challenge: Challenge) -> None:
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect event
            await send({"type": "websocket.close", "code": _WEBSOCKET_POLICY_VIOLATION})
            return
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in challenge.headers]
        headers.append((b"content-length", str(len(challenge.body)).encode("ascii")))
        await send({"type": "http.response.start", "status": challenge.status, "headers": headers})
        await send({"type": "http.response.body", "body": challenge.body})
