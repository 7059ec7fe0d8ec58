"""The upstream identity provider of the transparent and remote modes.

At start-up, :func:`discover` reads the provider's metadata (OpenID Connect
Discovery 1.0 first, then RFC 8414) unless every endpoint the mode needs is
configured. Configured endpoints always win over discovered ones.
:class:`Upstream` holds the result: the endpoints, one HTTP session, and the
JWKS cache that both modes share for signature keys.
"""

from __future__ import annotations

import json
import logging
import typing
import urllib.parse

import aiohttp
import attrs

from frontauth.config import Settings, UpstreamSettings
from frontauth.resource.jwks import FetchError, KeySetCache, fetch_json, loggable_url, metadata_url

logger = logging.getLogger("frontauth.oauth")

ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


class DiscoveryError(Exception):
    """The provider's metadata could not be loaded, or lacks an endpoint the mode needs."""


@attrs.frozen
class ProviderMetadata:
    """The endpoints of the upstream provider, configured or discovered."""

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None


def discovery_urls(issuer: str) -> list[str]:
    """Return the metadata URLs of an issuer, in the order they are tried.

    OpenID Connect Discovery 1.0 §4 appends ``/.well-known/openid-configuration``
    to the issuer; RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server``
    between the host and the issuer's path.
    """
    return [issuer.rstrip("/") + "/.well-known/openid-configuration", metadata_url(issuer)]


def needed_endpoints(settings: Settings) -> tuple[str, ...]:
    """Return the endpoints the configured mode cannot work without."""
    upstream = settings.upstream
    needed: list[str] = []
    if settings.mode == "remote":
        needed += ["authorization_endpoint", "token_endpoint"]
        if upstream.use_userinfo or "openid" not in upstream.scopes:
            # Without openid there is no ID token, so the subject comes from userinfo.
            needed.append("userinfo_endpoint")
    if upstream.jwks is None:
        needed.append("jwks_uri")
    return tuple(needed)


async def discover(settings: Settings, session: aiohttp.ClientSession) -> ProviderMetadata:
    """Return the provider's endpoints: the configured ones, completed from its metadata.

    Raises:
        DiscoveryError: an endpoint the mode needs is neither configured nor
            in a metadata document that names the configured issuer.
    """
    upstream = settings.upstream
    assert upstream.provider is not None  # checked by config.validate in the upstream modes
    configured = {name: getattr(upstream, name) for name in ENDPOINTS if getattr(upstream, name)}
    needed = needed_endpoints(settings)
    if all(name in configured for name in needed):
        return ProviderMetadata(issuer=upstream.provider, **configured)

    timeout = aiohttp.ClientTimeout(total=upstream.http_timeout)
    failures: list[str] = []
    for url in discovery_urls(upstream.provider):
        try:
            document = await fetch_json(session, url, timeout)
        except FetchError as exc:
            failures.append(str(exc))
            continue
        # SECURITY: OIDC Discovery §4.3 and RFC 8414 §3.3: the document must
        # name the issuer it was requested for, or another provider's
        # endpoints and keys could be trusted (mix-up).
        if document.get("issuer") != upstream.provider:
            failures.append(f"{loggable_url(url)} names issuer {str(document.get('issuer'))[:200]!r}")
            continue
        discovered = {name: document[name] for name in ENDPOINTS if _is_http_url(document.get(name))}
        metadata = ProviderMetadata(issuer=upstream.provider, **{**discovered, **configured})
        missing = [name for name in needed if getattr(metadata, name) is None]
        if missing:
            raise DiscoveryError(
                f"the metadata of upstream provider {upstream.provider} lacks {', '.join(missing)}; "
                f"set upstream.{missing[0]}"
            )
        logger.info("discovered the endpoints of upstream provider %s from %s", upstream.provider, loggable_url(url))
        return metadata
    raise DiscoveryError(
        f"upstream provider {upstream.provider} is unreachable or has no usable metadata "
        f"({'; '.join(failures)}); check upstream.provider or configure its endpoints and upstream.jwks"
    )


def _is_http_url(value: typing.Any) -> bool:
    return isinstance(value, str) and urllib.parse.urlsplit(value).scheme in ("http", "https")


class Upstream:
    """The upstream provider at run time: endpoints, HTTP session and key set cache.

    Args:
        settings: validated settings of a transparent or remote mode server.
        metadata: the provider's endpoints from :func:`discover`.
        session: the HTTP session for every upstream request; closed by :meth:`close`.
        on_fetch_error: called once per failed JWKS fetch (metrics).
        on_retry: called once per JWKS fetch that follows a failed one (metrics).
    """

    def __init__(
        self,
        settings: Settings,
        metadata: ProviderMetadata,
        session: aiohttp.ClientSession,
        *,
        on_fetch_error: typing.Callable[[], None] | None = None,
        on_retry: typing.Callable[[], None] | None = None,
        **cache_options: typing.Any,
    ) -> None:
        upstream: UpstreamSettings = settings.upstream
        self.settings = upstream
        self.metadata = metadata
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=upstream.http_timeout)
        self.keys = KeySetCache(
            metadata.issuer,
            jwks=json.loads(upstream.jwks) if upstream.jwks else None,
            jwks_uri=metadata.jwks_uri,
            ttl=upstream.jwks_cache_ttl,
            refetch_cooldown=upstream.jwks_refetch_cooldown,
            max_backoff=upstream.jwks_max_backoff,
            timeout=upstream.http_timeout,
            session=session,
            on_fetch_error=on_fetch_error,
            on_retry=on_retry,
            **cache_options,
        )

    @property
    def issuer(self) -> str:
        return self.metadata.issuer

    async def close(self) -> None:
        await self.keys.close()
        await self.session.close()


async def connect(settings: Settings, **options: typing.Any) -> Upstream:
    """Discover the provider and return its :class:`Upstream`, which owns a new HTTP session.

    Raises:
        DiscoveryError: as :func:`discover`, or the key set cannot be fetched.
    """
    session = aiohttp.ClientSession()
    try:
        metadata = await discover(settings, session)
        upstream = Upstream(settings, metadata, session, **options)
        if not await upstream.keys.load():
            raise DiscoveryError(
                f"the key set of upstream provider {metadata.issuer} at {loggable_url(metadata.jwks_uri or '')} "
                "cannot be fetched; check upstream.jwks_uri or set upstream.jwks"
            )
    except BaseException:
        await session.close()
        raise
    return upstream
