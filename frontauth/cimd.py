"""Client ID metadata documents: a client_id that is an https URL names its own metadata.

The authorization server fetches the document at the client_id URL and uses it
as the client's registration. The document's ``client_id`` must equal the URL,
its redirect URIs pass the same checks as dynamic registration, and the client
is public (``token_endpoint_auth_method`` none), because a document cannot
carry a secret.

The fetch is a request to an address that the client chose, so it is guarded
against server-side request forgery:

- https only. Plain http is allowed for loopback addresses only when
  ``cimd.allow_http_loopback`` is set, for tests;
- the host name is resolved first, and every resolved address is checked:
  private, loopback, link-local (which includes cloud metadata at
  169.254.169.254), multicast, reserved and unspecified addresses are rejected
  unless ``cimd.allowed_networks`` lists them. The connection then goes to the
  checked addresses, never to a second resolution;
- redirects are followed only to the same scheme, host and port, at most
  ``MAX_REDIRECTS`` times;
- the body is read up to ``cimd.max_bytes`` and the whole fetch is limited to
  ``cimd.timeout`` seconds;
- ``cimd.allowed_domains`` and ``cimd.denied_domains`` filter the host first.

Documents are cached in the storage driver under ``cimd:{digest}`` for their
``Cache-Control: max-age``, clamped between ``cimd.min_cache`` and
``cimd.max_cache``, so every instance shares one fetch. A rejected document is
cached for ``cimd.error_cache`` seconds, so a client cannot make frontauth
fetch a failing URL over and over.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import types
import typing
import urllib.parse

import aiohttp
import attrs
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from frontauth.errors import OAuthError
from frontauth.stores import ClientRecord, Stores
from frontauth.tokens import digest

if typing.TYPE_CHECKING:
    from frontauth.config import Settings

logger = logging.getLogger("frontauth.oauth")

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


class DocumentRejected(OAuthError):
    """The client metadata document could not be fetched or is not acceptable.

    The description states why, in words a person can act on; it never contains
    the document's contents.
    """

    error = "invalid_client"
    status = 400
    title = "Client metadata document rejected"


def is_document_url(client_id: str, settings: Settings) -> bool:
    """Return whether a client_id names a metadata document rather than a registered client."""
    if not settings.cimd.enabled:
        return False
    lowered = client_id[:8].lower()
    return lowered.startswith("https://") or (settings.cimd.allow_http_loopback and lowered.startswith("http://"))


def _host_matches(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain.lower() or host.endswith("." + domain.lower()) for domain in domains)


def check_url(url: str, settings: Settings) -> urllib.parse.SplitResult:
    """Check the document URL before anything is resolved or fetched.

    Raises:
        DocumentRejected: not https (or loopback http when allowed), a fragment,
            credentials, no path, or a host the domain lists exclude.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port
    except ValueError:
        raise DocumentRejected("the client_id is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.fragment or "#" in url:
        raise DocumentRejected("the client_id URL must have a host and no credentials or fragment")
    if parts.path in ("", "/"):
        raise DocumentRejected("the client_id URL must have a path")
    if parts.scheme != "https" and not (parts.scheme == "http" and settings.cimd.allow_http_loopback):
        raise DocumentRejected("the client_id URL must use https")
    if parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
        raise DocumentRejected("an http client_id URL must name a loopback host")
    if _host_matches(host, settings.cimd.denied_domains):
        raise DocumentRejected(f"documents from {host} are not accepted by this server")
    if settings.cimd.allowed_domains and not _host_matches(host, settings.cimd.allowed_domains):
        raise DocumentRejected(f"documents from {host} are not accepted by this server")
    return parts


def check_address(address: str, settings: Settings) -> None:
    """Reject an address that points inside the server's network, unless allow-listed.

    Raises:
        DocumentRejected: a private, loopback, link-local, multicast, reserved or
            unspecified address outside ``cimd.allowed_networks``.
    """
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(network, strict=False) for network in settings.cimd.allowed_networks):
        return
    if ip.is_loopback and settings.cimd.allow_http_loopback:
        return
    # SECURITY: the client chooses this URL; these ranges reach internal services and cloud metadata.
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        raise DocumentRejected("the client_id URL resolves to a private or internal address")


class CheckedResolver(AbstractResolver):
    """Resolve a host name and return only addresses that pass check_address, so aiohttp connects to those."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            check_address(result["host"], self._settings)
        return results

    async def close(self) -> None:
        await self._resolver.close()


def cache_lifetime(cache_control: str | None, settings: Settings) -> float:
    """Return seconds to cache a document: its max-age, clamped to the configured bounds."""
    limits = settings.cimd
    match = MAX_AGE.search(cache_control or "")
    seconds = float(match.group(1)) if match else limits.default_cache
    if "no-store" in (cache_control or "").lower() or "no-cache" in (cache_control or "").lower():
        seconds = 0.0
    # NOTE: Expires and ETag revalidation are not read; max-age alone sets the lifetime.
    return min(max(seconds, limits.min_cache), limits.max_cache)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = b""
    async for chunk in response.content.iter_chunked(4096):
        body += chunk
        if len(body) > limit:
            raise DocumentRejected(f"the client metadata document is larger than {limit} bytes")
    return body


async def fetch(url: str, settings: Settings) -> tuple[dict[str, object], float]:
    """Fetch and parse a document under the SSRF guard; return it and its cache lifetime.

    Raises:
        DocumentRejected: every failure, with the reason.
    """
    parts = check_url(url, settings)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # aiohttp connects to an IP literal without calling the resolver, so it is checked here.
        check_address(host, settings)
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(settings), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=settings.cimd.timeout)
    current = url
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(current, allow_redirects=False, headers={"Accept": "application/json"}) as response:
                    if response.status in REDIRECT_STATUSES:
                        current = _same_origin_redirect(parts, current, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        raise DocumentRejected(f"fetching the client metadata document returned HTTP {response.status}")
                    body = await _read_capped(response, settings.cimd.max_bytes)
                    lifetime = cache_lifetime(response.headers.get("Cache-Control"), settings)
                    break
            else:
                raise DocumentRejected("the client metadata document redirects too many times")
    except asyncio.TimeoutError:
        raise DocumentRejected(f"fetching the client metadata document timed out after {settings.cimd.timeout} s") from None
    except aiohttp.ClientError as exc:
        raise DocumentRejected(f"the client metadata document could not be fetched ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DocumentRejected("the client metadata document is not valid JSON") from None
    if not isinstance(document, dict):
        raise DocumentRejected("the client metadata document must be a JSON object")
    return document, lifetime


def _same_origin_redirect(origin: urllib.parse.SplitResult, current: str, location: str) -> str:
    target = urllib.parse.urlsplit(urllib.parse.urljoin(current, location))
    same = (target.scheme, (target.hostname or "").lower(), target.port) == (
        origin.scheme, (origin.hostname or "").lower(), origin.port
    )
    # SECURITY: a redirect to another host would bypass the domain lists and the address check.
    if not same or target.username is not None:
        raise DocumentRejected("the client metadata document redirects to another host")
    return urllib.parse.urlunsplit(target)


def client_from_document(url: str, document: dict[str, object], settings: Settings) -> ClientRecord:
    """Build the client from a fetched document, with the checks of dynamic registration.

    Raises:
        DocumentRejected: the document names another client_id, a secret-based
            authentication method, or metadata registration would reject.
    """
    from frontauth.endpoints.register import check_metadata

    if document.get("client_id") != url:
        raise DocumentRejected("the client_id inside the client metadata document does not equal its URL")
    method = document.get("token_endpoint_auth_method", "none")
    if method != "none":
        raise DocumentRejected("a client metadata document client must use token_endpoint_auth_method none")
    metadata = {**document, "token_endpoint_auth_method": "none"}
    # check_metadata reads only services.settings.
    record = check_metadata(types.SimpleNamespace(settings=settings), metadata)  # type: ignore[arg-type]
    return attrs.evolve(record, client_id=url, dynamic=False)


class DocumentClients:
    """Resolves document client_ids through the shared cache in the storage driver."""

    def __init__(self, settings: Settings, stores: Stores) -> None:
        self._settings = settings
        self._stores = stores

    def _key(self, url: str) -> str:
        return self._stores.key("cimd", digest(url))

    async def resolve(self, url: str) -> ClientRecord:
        """Return the client a document URL names, fetching it when the cache has none.

        Raises:
            DocumentRejected: the document was rejected now or within ``cimd.error_cache`` seconds.
        """
        cached = await self._stores.driver.get(self._key(url))
        if cached is not None:
            entry = json.loads(cached)
            if "error" in entry:
                raise DocumentRejected(entry["error"])
            return client_from_document(url, entry["document"], self._settings)
        try:
            document, lifetime = await fetch(url, self._settings)
            client = client_from_document(url, document, self._settings)
        except OAuthError as exc:
            logger.info("client metadata document rejected: client_id=%s reason=%s", url[:200], exc.description)
            entry = {"error": exc.description}
            await self._stores.driver.set(self._key(url), json.dumps(entry).encode(), self._settings.cimd.error_cache)
            raise DocumentRejected(exc.description) from None
        await self._stores.driver.set(self._key(url), json.dumps({"document": document}).encode(), lifetime)
        return client
