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
- ``cimd.allowed_domains`` and ``cimd.denied_domains`` filter the host first,
  and again in the resolver. Both compare the host that aiohttp connects to:
  yarl encodes a non-ASCII host with IDNA 2008 and the UTS 46 mapping, so
  ``ｅvil.example`` (fullwidth e) is ``evil.example``, and a trailing dot
  names the same DNS name, so ``evil.example.`` is ``evil.example`` as well.

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
import yarl
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
# A host name after IDNA encoding: letters, digits, hyphens, underscores and dots.
HOST_NAME = re.compile(r"[a-z0-9_.-]+")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


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


def comparable_host(host: str) -> str:
    """Return a host name in the form the domain lists compare: IDNA-encoded as yarl does, lower-case, no trailing dot.

    yarl applies this encoding (IDNA 2008 with the UTS 46 mapping) to every URL
    aiohttp fetches. So a list entry and a client_id host that differ only in
    case, character width, Unicode form or a trailing dot compare equal here.
    """
    try:
        encoded = yarl.URL.build(scheme="https", host=host).raw_host or host
    except ValueError:  # also UnicodeError. yarl cannot encode this name, so it is compared as written.
        encoded = host
    return encoded.lower().rstrip(".")


def _host_matches(host: str, domains: tuple[str, ...]) -> bool:
    for domain in domains:
        entry = comparable_host(domain)
        if host == entry or host.endswith("." + entry):
            return True
    return False


def check_domain(host: str, settings: Settings) -> None:
    """Apply ``cimd.denied_domains`` and ``cimd.allowed_domains`` to a host name.

    Raises:
        DocumentRejected: the host or a parent domain is denied, or an allow list exists and excludes it.
    """
    host = comparable_host(host)
    denied = _host_matches(host, settings.cimd.denied_domains)
    if denied or (settings.cimd.allowed_domains and not _host_matches(host, settings.cimd.allowed_domains)):
        raise DocumentRejected(f"documents from {host} are not accepted by this server")


def check_url(url: str, settings: Settings) -> yarl.URL:
    """Check the document URL before anything is resolved or fetched; return it as aiohttp will request it.

    Every host rule applies to the host yarl produces, because that is the host
    aiohttp resolves and connects to (see comparable_host).

    Raises:
        DocumentRejected: not https (or loopback http when allowed), a fragment,
            credentials, no path, a space or a control, format or unassigned
            character, a host that is neither a DNS name nor an IP address, or
            a host the domain lists exclude.
    """
    from frontauth.endpoints.register import hidden_character

    # SECURITY: yarl drops a tab inside the host and percent-encodes other
    # characters, so the URL fetched could differ from the text shown and compared.
    if hidden_character(url) is not None or any(character.isspace() for character in url):
        raise DocumentRejected("the client_id URL contains a space or a control, format or unassigned character")
    try:
        parts = urllib.parse.urlsplit(url)
        target = yarl.URL(url)
        _ = target.port
    except ValueError:  # UnicodeError too, for a host IDNA cannot encode
        raise DocumentRejected("the client_id is not a valid URL") from None
    host = comparable_host(target.raw_host or "")
    if not host or parts.username is not None or parts.fragment or "#" in url:
        raise DocumentRejected("the client_id URL must have a host and no credentials or fragment")
    if target.path in ("", "/"):
        raise DocumentRejected("the client_id URL must have a path")
    if target.scheme != "https" and not (target.scheme == "http" and settings.cimd.allow_http_loopback):
        raise DocumentRejected("the client_id URL must use https")
    if ":" not in host and not HOST_NAME.fullmatch(host):
        raise DocumentRejected("the client_id URL host is not a valid host name")
    if target.scheme == "http" and host not in LOOPBACK_NAMES:
        raise DocumentRejected("an http client_id URL must name a loopback host")
    check_domain(host, settings)
    return target


def check_address(address: str, settings: Settings) -> None:
    """Reject an address that points inside the server's network, unless allow-listed.

    Raises:
        DocumentRejected: an address that is not globally reachable (private,
            loopback, link-local, shared, reserved and the like), or multicast,
            outside ``cimd.allowed_networks``.
    """
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(network, strict=False) for network in settings.cimd.allowed_networks):
        return
    if ip.is_loopback and settings.cimd.allow_http_loopback:
        return
    # SECURITY: the client chooses this URL; these ranges reach internal services and cloud metadata.
    # is_global also leaves out ranges that is_private misses, such as the shared
    # address space 100.64.0.0/10 (RFC 6598), where some clouds keep their metadata
    # service. A 6to4 address (2002::/16) carries an IPv4 address that must pass too.
    embedded = ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
    for candidate in (ip, embedded):
        if candidate is None:
            continue
        if not candidate.is_global or candidate.is_multicast or candidate.is_reserved or candidate.is_unspecified:
            raise DocumentRejected("the client_id URL resolves to a private or internal address")


class CheckedResolver(AbstractResolver):
    """Resolve a host name and return only addresses that pass check_address, so aiohttp connects to those."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        # check_url applied the domain lists already. This applies them to the exact name aiohttp resolves.
        check_domain(host, self._settings)
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
    origin = check_url(url, settings)
    host = origin.raw_host or ""
    # aiohttp connects without calling the resolver to a host that looks like an
    # IP address (a colon, or only digits and dots), so such a host is checked here.
    if ":" in host or host.rstrip(".").replace(".", "").isdigit():
        try:
            check_address(host, settings)
        except ValueError:
            raise DocumentRejected("the client_id URL host is not a valid IP address") from None
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(settings), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=settings.cimd.timeout)
    current = origin
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(current, allow_redirects=False, headers={"Accept": "application/json"}) as response:
                    if response.status in REDIRECT_STATUSES:
                        current = _same_origin_redirect(origin, current, response.headers.get("Location", ""))
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


def _same_origin_redirect(origin: yarl.URL, current: yarl.URL, location: str) -> yarl.URL:
    try:
        target = current.join(yarl.URL(location))
        same = (target.scheme, target.raw_host, target.port) == (origin.scheme, origin.raw_host, origin.port)
    except ValueError:  # UnicodeError too
        raise DocumentRejected("the client metadata document redirects to an invalid URL") from None
    # SECURITY: a redirect to another host would bypass the domain lists and the address check.
    if not same or target.raw_user is not None or target.raw_password is not None:
        raise DocumentRejected("the client metadata document redirects to another host")
    return target


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
    try:
        # check_metadata reads only services.settings.
        record = check_metadata(types.SimpleNamespace(settings=settings), metadata)  # type: ignore[arg-type]
    except OAuthError as exc:
        # Registration's error classes become DocumentRejected, for a cached document too.
        raise DocumentRejected(exc.description) from None
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
            # The URL rules apply to a cached document as well: it may predate a rule or a domain list entry.
            check_url(url, self._settings)
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
