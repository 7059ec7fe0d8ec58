"""aiohttp middleware that requires a valid bearer token on every request."""

from __future__ import annotations

import logging
import typing

from aiohttp import hdrs, web

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
from frontauth.resource.verifier import BearerVerifier, VerifiedToken

logger = logging.getLogger("frontauth.resource")

TOKEN_KEY = web.RequestKey("frontauth.token", VerifiedToken)
"""Request key under which the middleware stores the verified token."""

Handler = typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]]


def bearer_auth_middleware(
    verifier: BearerVerifier,
    *,
    resource_metadata_url: str | None,
    exempt_paths: typing.Iterable[str] = (),
    required_scopes: typing.Iterable[str] | None = None,
) -> typing.Callable[[web.Request, Handler], typing.Awaitable[web.StreamResponse]]:
    """Create a middleware that rejects requests without a valid access token.

    A request that passes gets the verified token at ``request[TOKEN_KEY]``.

    Args:
        verifier: checks the tokens.
        resource_metadata_url: URL of this resource's RFC 9728 metadata, sent in
            every ``WWW-Authenticate`` challenge. None leaves it out.
        exempt_paths: request paths served without a token, compared exactly
            (for example ``/.well-known/oauth-protected-resource``).
        required_scopes: scopes every request needs. None uses the verifier's.

    Returns:
        The middleware, for ``web.Application(middlewares=[...])``.
    """
    check_metadata_url(resource_metadata_url)
    exempt = frozenset(exempt_paths)
    scopes = None if required_scopes is None else tuple(required_scopes)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        try:
            token = extract_bearer_token(request.headers.getall(hdrs.AUTHORIZATION, []), request.query_string)
            if token is None:
                raise MissingToken("A bearer token is required")
            request[TOKEN_KEY] = await verifier.verify(token, scopes)
        except BearerError as exc:
            logger.debug("request to %s rejected: %s (%s)", request.path, exc.error, exc.description)
            return _response(render_challenge(exc, resource_metadata_url))
        except VerificationUnavailable as exc:
            logger.warning("request to %s rejected: %s", request.path, exc)
            return _response(render_unavailable(exc))
        return await handler(request)

    return middleware


def _response(challenge: Challenge) -> web.Response:
    return web.Response(status=challenge.status, headers=dict(challenge.headers), body=challenge.body)
