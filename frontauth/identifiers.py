"""Comparison of issuer and resource identifiers (RFC 8414, RFC 8707, RFC 9728).

Clients build these URLs from what a person typed or from a discovery
document, so the same identifier arrives as ``https://Example.COM/mcp`` or
``HTTPS://example.com:443/mcp``. RFC 3986 §6.2.2.1 makes scheme and host
case-insensitive and §6.2.3 drops a default port, so those forms compare
equal here. The path stays case-sensitive. A trailing slash is a client quirk,
handled in :func:`frontauth.quirks.strip_trailing_slash`.
"""

from __future__ import annotations

import functools
import urllib.parse

from frontauth import quirks

DEFAULT_PORTS = {"http": 80, "https": 443}


# Cached: every authorization and token request compares its resource with the
# configured ones. The bound keeps client-chosen URLs from growing the cache.
@functools.lru_cache(maxsize=1024)
def canonical(url: str) -> str | None:
    """Return the URL with lower-case scheme and host and no default port; None when it is not absolute.

    Query and fragment are kept, so a URL carrying either never matches a
    configured identifier, which has neither.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, or a port out of range
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    if parts.username is not None:
        return None  # credentials in an identifier are never valid
    return urllib.parse.urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def same_identifier(left: str, right: str) -> bool:
    """Compare two issuer or resource URLs after canonical() and the trailing-slash quirk."""
    first, second = canonical(left), canonical(right)
    if first is None or second is None:
        return False
    return quirks.strip_trailing_slash(first) == quirks.strip_trailing_slash(second)


def find_resource(requested: str, configured: tuple[str, ...]) -> str | None:
    """Return the configured resource that ``requested`` names, in its configured spelling; None when none does."""
    for resource in configured:
        if same_identifier(requested, resource):
            return resource
    return None


def path_of(url: str) -> str:
    """Return the URL's path without a trailing slash: '' for an origin, '/mcp' for https://host/mcp/."""
    return urllib.parse.urlsplit(url).path.rstrip("/")
