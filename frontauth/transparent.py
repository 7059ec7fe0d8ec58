"""Transparent mode: verify access tokens that the upstream provider issued.

frontauth issues nothing in this mode. It serves the RFC 9728 metadata that
sends MCP clients to the upstream provider, and a check endpoint,
``GET /oauth/userinfo``, that verifies the request's bearer token with the
rules below and returns its subject and scopes. A reverse proxy can call it
before forwarding a request (nginx ``auth_request``, Traefik ``forwardAuth``),
and an MCP server in Python can verify in-process instead with the verifier
that :func:`build_verifier` returns.

Rules: signature by a key of the upstream JWKS (matched by ``kid``), ``exp``,
``nbf`` and ``iat`` with ``tokens.leeway``, ``iss`` equal to the provider or
one of ``upstream.additional_issuers`` (unless ``upstream.verify_issuer`` is
off), ``aud`` containing ``upstream.expected_audience`` (default: the first of
``resources``), and every scope of ``upstream.required_scopes``.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web

from frontauth.appkeys import SERVICES
from frontauth.config import Settings
from frontauth.resource.bearer import extract_bearer_token
from frontauth.resource.errors import BearerError, KeySetUnavailable, MissingToken, render_challenge, render_unavailable
from frontauth.resource.verifier import UPSTREAM_REQUIRED_CLAIMS, BearerVerifier
from frontauth.responses import NO_STORE
from frontauth.upstream import Upstream

logger = logging.getLogger("frontauth.oauth")

ANONYMOUS_SUBJECT = "anonymous"
METADATA_PATH = "/.well-known/oauth-protected-resource"


def audience(settings: Settings) -> str:
    """Return the audience upstream access tokens must name."""
    return settings.upstream.expected_audience or settings.audiences[0]


def build_verifier(settings: Settings, upstream: Upstream) -> BearerVerifier:
    """Return a verifier of upstream access tokens that shares the upstream JWKS cache."""
    return BearerVerifier(
        upstream.issuer,
        audience(settings),
        required_scopes=settings.upstream.required_scopes,
        leeway=settings.tokens.leeway,
        additional_issuers=settings.upstream.additional_issuers,
        verify_issuer=settings.upstream.verify_issuer,
        required_claims=UPSTREAM_REQUIRED_CLAIMS,
        accept_generic_jwt=True,
        keys=upstream.keys,
    )


def metadata_url(settings: Settings) -> str:
    return settings.issuer + METADATA_PATH


async def protected_resource(request: web.Request) -> web.Response:
    """Serve RFC 9728 metadata that names the upstream provider as the authorization server."""
    settings = request.app[SERVICES].settings
    document = {
        "resource": audience(settings),
        "authorization_servers": [settings.upstream.provider],
        "bearer_methods_supported": ["header"],
    }
    if settings.upstream.required_scopes:
        document["scopes_supported"] = list(settings.upstream.required_scopes)
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})


async def check_token(request: web.Request) -> web.Response:
    """Verify the bearer token; return its subject and scopes, or the RFC 6750 challenge."""
    services = request.app[SERVICES]
    settings = services.settings
    verifier = services.upstream_verifier
    assert verifier is not None  # set by create_app in transparent mode
    try:
        token = extract_bearer_token(request.headers.getall(hdrs.AUTHORIZATION, []), request.query_string)
        if token is None:
            if settings.upstream.allow_anonymous:
                return web.json_response({"sub": ANONYMOUS_SUBJECT, "anonymous": True, "scope": ""}, headers=NO_STORE)
            raise MissingToken("A bearer token is required")
        verified = await verifier.verify(token)
    except BearerError as exc:
        logger.info("token check rejected: %s", exc.error or "missing token")
        challenge = render_challenge(exc, metadata_url(settings))
        return web.Response(status=challenge.status, headers=dict(challenge.headers), body=challenge.body)
    except KeySetUnavailable:
        logger.warning("token check failed: the key set of upstream provider %s is unavailable", verifier.issuer)
        challenge = render_unavailable()
        return web.Response(status=challenge.status, headers=dict(challenge.headers), body=challenge.body)
    body = {
        "sub": verified.subject,
        "anonymous": False,
        "scope": " ".join(verified.scopes),
        "client_id": verified.client_id,
        "iss": verified.issuer,
        "aud": list(verified.audience),
        "exp": verified.expires_at,
    }
    return web.json_response(body, headers=NO_STORE)


def add_routes(app: web.Application) -> None:
    """Register the routes of transparent mode: metadata and the token check, nothing that issues."""
    app.router.add_get(METADATA_PATH, protected_resource)
    app.router.add_get("/oauth/userinfo", check_token)
