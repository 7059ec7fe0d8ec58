"""The aiohttp application: routes, middleware, templates and the storage lifecycle."""

from __future__ import annotations

import asyncio
import logging
import typing

from aiohttp import web

from frontauth import pages
from frontauth import services as services_module
from frontauth.appkeys import SERVICES
from frontauth.config import UPSTREAM_MODES, Settings
from frontauth.content_coding import HANDLER_ARGS
from frontauth.drivers import open_driver
from frontauth.endpoints import client_configuration
from frontauth.endpoints import authorize, consent, health, introspect, login, metadata, register, revoke, token, userinfo
from frontauth import public, remote, transparent, upstream as upstream_module
from frontauth.endpoints import callback
from frontauth.keys import SigningKeys
from frontauth.metrics import METRICS, Metrics, metrics_endpoint
from frontauth.middleware import request_middleware
from frontauth.ratelimit import RATE_LIMITER, RateLimiter
from frontauth.storage import Driver, StorageUnavailable

logger = logging.getLogger("frontauth.cli")

UPSTREAM = web.AppKey("frontauth_upstream", upstream_module.Upstream)


def add_routes(app: web.Application, mode: str = "local") -> None:
    """Register the routes of the issuing modes; remote mode has /oauth/callback instead of sign-in."""
    r = app.router
    r.add_get("/.well-known/oauth-authorization-server", metadata.authorization_server)
    r.add_get("/.well-known/openid-configuration", metadata.authorization_server)
    r.add_get("/.well-known/oauth-protected-resource", metadata.protected_resource)
    r.add_get("/.well-known/jwks.json", metadata.jwks)
    metadata.add_path_routes(r)
    r.add_get("/oauth/authorize", authorize.authorize)
    if mode == "remote":
        r.add_get(remote.CALLBACK_PATH, callback.callback)
    else:
        r.add_get("/oauth/login", login.login_page)
        r.add_post("/oauth/login", login.login_submit)
    r.add_get("/oauth/consent", consent.consent_page)
    r.add_post("/oauth/consent", consent.consent_submit)
    r.add_post("/oauth/token", token.token)
    r.add_post("/oauth/register", register.register)
    r.add_get(client_configuration.PATH, client_configuration.read)
    r.add_put(client_configuration.PATH, client_configuration.update)
    r.add_delete(client_configuration.PATH, client_configuration.delete)
    r.add_post("/oauth/revoke", revoke.revoke)
    r.add_post("/oauth/introspect", introspect.introspect)
    r.add_get("/oauth/userinfo", userinfo.userinfo)
    r.add_get("/healthz", health.healthz)
    r.add_get("/readyz", health.readyz)
    r.add_static("/static", _static_dir(), append_version=False)


def add_transparent_routes(app: web.Application) -> None:
    """Register the routes of transparent mode, which issues nothing: metadata, token check, probes."""
    transparent.add_routes(app)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)


def _static_dir() -> str:
    import importlib.resources

    return str(importlib.resources.files("frontauth.templates") / "static")


async def open_storage(settings: Settings) -> Driver:
    """Open the storage driver, retrying for storage.startup_wait seconds."""
    deadline = asyncio.get_running_loop().time() + settings.storage.startup_wait
    while True:
        driver = await open_driver(settings.storage)
        try:
            await driver.ping()
            return driver
        except StorageUnavailable:
            await driver.close()
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(1.0)


def create_app(
    settings: Settings,
    *,
    keys: SigningKeys | None = None,
    driver: Driver | None = None,
    upstream: upstream_module.Upstream | None = None,
) -> web.Application:
    """Build the application; the storage driver opens when the app starts.

    Args:
        settings: validated settings.
        keys: signing keys; loaded from settings when None.
        driver: an already open driver (tests); opened from settings when None.
        upstream: the connected upstream provider (transparent and remote
            modes); connected when the app starts when None.
    """
    # HANDLER_ARGS turns off aiohttp's request decompression, so that the
    # request middleware, not aiohttp's parser, rejects encoded bodies.
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=settings.server.max_body_size,
        handler_args=HANDLER_ARGS,
    )
    if settings.metrics.enabled:
        app[METRICS] = Metrics()
        if settings.metrics.port is None:
            app.router.add_get("/metrics", metrics_endpoint)
    pages.setup(app, settings)
    if settings.mode == "transparent":
        add_transparent_routes(app)
    elif settings.mode == "public":
        public.add_routes(app)
    else:
        add_routes(app, settings.mode)

    async def storage_ctx(app: web.Application) -> typing.AsyncIterator[None]:
        opened = driver or await open_storage(settings)
        app[SERVICES] = services_module.build(settings, opened, keys, app.get(UPSTREAM))
        if METRICS in app:
            app[METRICS].declare_storage(opened.name)
        limiter = None
        if settings.ratelimit.enabled:
            limiter = RateLimiter.from_settings(settings, opened)
            app[RATE_LIMITER] = limiter
            limiter.start()
        yield
        if limiter is not None:
            await limiter.close()
        if driver is None:
            await opened.close()

    async def upstream_ctx(app: web.Application) -> typing.AsyncIterator[None]:
        connected = upstream or await upstream_module.connect(settings)
        if METRICS in app:
            metrics = app[METRICS]
            provider = connected.issuer
            metrics.declare_jwks_provider(provider)
            connected.keys.on_fetch_error = metrics.jwks_fetch_errors.labels(provider).inc
            connected.keys.on_retry = metrics.jwks_fetch_retries.labels(provider).inc
        app[UPSTREAM] = connected
        yield
        await connected.close()

    if settings.mode in UPSTREAM_MODES:
        app.cleanup_ctx.append(upstream_ctx)
    app.cleanup_ctx.append(storage_ctx)
    if settings.mode == "public":
        app.cleanup_ctx.append(public.limiter_ctx)
    return app
