"""Strict checks of redirect URI text, applied before any parsing or matching.

urllib.parse is lenient: it drops tabs and line breaks, accepts spaces and
lower-cases the scheme, so two different strings can parse to the same parts.
Redirect URIs must match exactly (OAuth 2.1 §2.3.1), so frontauth checks the
text itself: only RFC 3986 characters, no user information, and for the
registration policy, patterns matched part by part.
"""

from __future__ import annotations

import fnmatch
import re

# RFC 3986 §2: unreserved, reserved and percent-encoded octets.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def problem(uri: str) -> str | None:
    """Return why a redirect URI is not acceptable text, or None when it is."""
    if not _URI_CHARACTERS.fullmatch(uri) or _PERCENT.search(uri):
        return "a redirect URI contains characters that RFC 3986 does not allow"
    match = _AUTHORITY.match(uri)
    if match is not None and "@" in match.group("authority"):
        # SECURITY: userinfo makes "https://trusted.example@evil.example/" read
        # like the trusted host on a consent page (RFC 6749 §10.15).
        return "a redirect URI must not contain user information"
    return None


def split_authority(uri: str) -> tuple[str, str, str, str | None] | None:
    """Split an absolute hierarchical URI into (scheme, host, rest, port), or None."""
    match = _AUTHORITY.match(uri)
    if match is None:
        return None
    authority = match.group("authority")
    host, port = authority, None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, tail = authority[: end + 1], authority[end + 1 :]
        if tail:
            if not tail.startswith(":"):
                return None
            port = tail[1:]
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    return match.group("scheme"), host, match.group("rest"), port


def same_except_port(requested: str, registered: str) -> bool:
    """True when the two URIs are the same text but for the requested port.

    The requested port, when present, must be a plain decimal number from 1
    to 65535 without leading zeros (RFC 8252 §7.3 lets only the port vary).
    """
    if problem(requested) is not None:
        return False
    req, reg = split_authority(requested), split_authority(registered)
    if req is None or reg is None:
        return False
    port = req[3]
    if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
        return False
    return req[:3] == reg[:3]


def matches_pattern(uri: str, pattern: str) -> bool:
    """Match a redirect URI against a registration policy pattern, part by part.

    The scheme must be equal, the authority (host and port) must match the
    pattern's authority, and the path with its query must match the
    pattern's rest. A ``*`` therefore cannot reach from the host into the
    path, so ``https://*.example.com/*`` does not admit
    ``https://evil.example/.example.com/``.
    """
    if problem(uri) is not None:
        return False
    uri_match, pattern_match = _AUTHORITY.match(uri), _AUTHORITY.match(pattern)
    if uri_match is None or pattern_match is None:
        return fnmatch.fnmatchcase(uri, pattern) and "*" not in pattern
    if uri_match.group("scheme") != pattern_match.group("scheme"):
        return False
    return fnmatch.fnmatchcase(uri_match.group("authority"), pattern_match.group("authority")) and (
        fnmatch.fnmatchcase(uri_match.group("rest"), pattern_match.group("rest"))
    )
