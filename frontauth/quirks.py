"""Tolerances for known MCP clients that depart from the standards.

Each function names the client and the behaviour it accepts, with the public
report it comes from. Request parsing elsewhere stays strict; a new tolerance
gets its own function here and a test in tests/test_quirks.py.
"""

from __future__ import annotations

import urllib.parse

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def form_content_type(header_values: list[str]) -> bool:
    """Whether the Content-Type header values of a token request name the form media type.

    RFC 6749 §3.2 requires ``application/x-www-form-urlencoded``. Accepted too:
    a ``charset=UTF-8`` parameter (RFC 6749 Appendix B names UTF-8, and
    browsers' fetch and many HTTP libraries add it), and the same media type
    sent twice as one comma-joined value. (Two Content-Type header lines never
    get here: aiohttp's parser rejects the request with 400.) The Dart
    client oauth_dio sent ``application/x-www-form-urlencoded,
    application/x-www-form-urlencoded`` (salomaosnff/oauth_dio pull request 4).
    The MCP Inspector's direct transports merged a default Content-Type into
    the SDK's token request (modelcontextprotocol/inspector pull request 1122).
    Any other media type in the list, or another charset, is rejected.
    """
    media_types = [item for value in header_values for item in value.split(",")]
    if not media_types:
        return False
    for media_type in media_types:
        name, _, parameters = media_type.partition(";")
        if name.strip().lower() != FORM_MEDIA_TYPE:
            return False
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if not key.strip():
                continue
            if key.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                return False
    return True


def localhost_port_differs(requested: str, registered: str) -> bool:
    """Whether a ``localhost`` redirect URI differs from the registered one only in its port.

    RFC 8252 §7.3 lets the port vary for loopback IP literals, and §8.3 advises
    against the name ``localhost``. MCP clients that register
    ``http://localhost:PORT/callback`` still move to another port when the
    first is taken and reuse their registration: pi-mcp-adapter falls back from
    19876 to 19877 (nicobailon/pi-mcp-adapter pull request 97). Both URIs must
    be plain http on ``localhost`` with the same path and query.
    """
    try:
        req = urllib.parse.urlsplit(requested)
        reg = urllib.parse.urlsplit(registered)
        _ = (req.port, reg.port)  # a port that is not a number raises ValueError
    except ValueError:
        return False
    if (req.scheme, reg.scheme) != ("http", "http"):
        return False
    if (req.hostname or "").lower() != "localhost" or (reg.hostname or "").lower() != "localhost":
        return False
    return (req.path, req.query, req.fragment, req.username, req.password) == (
        reg.path, reg.query, reg.fragment, reg.username, reg.password
    )


def strip_trailing_slash(identifier: str) -> str:
    """Return a resource or issuer URL without one trailing slash on its path.

    Claude Code sends ``resource=https://host/`` for a server whose metadata
    says ``https://host`` (anthropics/claude-code issue 52871), and so does
    claude.ai (sigbit/mcp-auth-proxy issue 123). RFC 8707 compares resources as
    given, but a trailing slash on a path names the same MCP server in
    practice, and the MCP authorization specification recommends the form
    without it (quoted in PrefectHQ/fastmcp issue 1431).
    """
    parts = urllib.parse.urlsplit(identifier)
    if parts.path.endswith("/"):
        parts = parts._replace(path=parts.path[:-1])
    return urllib.parse.urlunsplit(parts)

