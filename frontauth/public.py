"""Public mode: no sign-in; every request gets the anonymous identity.

frontauth issues nothing in this mode. ``GET /oauth/userinfo`` returns the
anonymous identity with ``public.anonymous_scopes``, counted per client
address by the rate limiter (``ratelimit.window`` and ``ratelimit.max_requests``):
over the limit it answers 429 with ``Retry-After``. A reverse proxy in front
of the MCP server can call it for every request, which makes the limit hold
per client address across every instance that shares the storage.
The protected-resource metadata names no authorization server, because there
is none to sign in at.
"""

from __future__ import annotations

import logging
import typing

from aiohttp import web

from frontauth.appkeys import SERVICES
from frontauth.config import Settings
from frontauth.endpoints import health
from frontauth.metrics import METRICS
from frontauth.ratelimit import RateLimited, RateLimiter, Rule, client_address, retry_after_seconds
from frontauth.responses import NO_STORE

logger = logging.getLogger("frontauth.oauth")

ANONYMOUS_SUBJECT = "anonymous"
METADATA_PATH = "/.well-known/oauth-protected-resource"
# The rate-limit rule of the anonymous identity endpoint.
RULE = "anonymous"


def anonymous_identity(settings: Settings) -> dict[str, object]:
    """Return the identity every request has in public mode."""
    return {"sub": ANONYMOUS_SUBJECT, "anonymous": True, "scope": " ".join(settings.public.anonymous_scopes)}


LIMITER = web.AppKey("frontauth_public_limiter", RateLimiter)


async def identity(request: web.Request) -> web.Response:
    """Count the request against its client address; return the anonymous identity, or 429 over the limit."""
    settings = request.app[SERVICES].settings
    limiter = request.app.get(LIMITER)
    if limiter is not None:
        address = client_address(request, settings.server.trust_proxy)
        state = await limiter.hit(address, RULE)
        if not state.allowed:
            retry_after = retry_after_seconds(state)
            if limiter.should_log_info(RULE):
                logger.info("rate limit reached on the anonymous identity for address %s", address)
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.rate_limited.labels(RULE).inc()
            raise RateLimited(f"too many requests; retry after {retry_after} seconds", headers={"Retry-After": retry_after})
    return web.json_response(anonymous_identity(settings), headers=NO_STORE)


async def limiter_ctx(app: web.Application) -> typing.AsyncIterator[None]:
    """Run the per-address limiter of the anonymous identity on the storage driver (after storage opens)."""
    settings = app[SERVICES].settings
    if not settings.ratelimit.enabled:
        yield
        return
    limits = settings.ratelimit
    limiter = RateLimiter(
        app[SERVICES].driver,
        settings.storage.prefix,
        {RULE: Rule(limits.window, limits.max_requests)},
        cleanup_interval=limits.cleanup_interval,
    )
    app[LIMITER] = limiter
    limiter.start()
    yield
    await limiter.close()


async def protected_resource(request: web.Request) -> web.Response:
    """Serve RFC 9728 metadata of a resource that needs no token."""
    settings = request.app[SERVICES].settings
    document = {
        "resource": settings.audiences[0],
        "authorization_servers": [],
        "scopes_supported": list(settings.public.anonymous_scopes),
        "bearer_methods_supported": [],
    }
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})


def add_routes(app: web.Application) -> None:
    """Register the routes of public mode: metadata, the anonymous identity, probes."""
    app.router.add_get(METADATA_PATH, protected_resource)
    app.router.add_get("/oauth/userinfo", identity)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
