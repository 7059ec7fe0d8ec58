"""Extraction of the bearer token from an HTTP request (RFC 6750 §2)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

from frontauth.resource.errors import InvalidRequest

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def extract_bearer_token(authorization: Sequence[str], query_string: str) -> str | None:
    """Return the bearer token of a request, or None when it carries none.

    Only the ``Authorization`` header is accepted (RFC 6750 §2.1). The scheme
    name is matched case-insensitively (RFC 9110 §11.1). A header with another
    scheme counts as no bearer token.

    Args:
        authorization: every ``Authorization`` header value of the request.
        query_string: the raw query string of the request URL.

    Raises:
        InvalidRequest: the query string has an ``access_token`` parameter, the
            request has more than one ``Authorization`` header, or the bearer
            credentials are not a b64token.
    """
    # SECURITY: a token in the URL ends up in access logs, proxies and the
    # Referer header (RFC 6750 §5.3), so it is rejected even next to a header.
    query = urllib.parse.parse_qsl(query_string, keep_blank_values=True)
    if any(name == "access_token" for name, _ in query):
        raise InvalidRequest("Access tokens in the query string are not accepted")

    if not authorization:
        return None
    if len(authorization) > 1:
        raise InvalidRequest("The request has more than one Authorization header")

    scheme, _, credentials = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    credentials = credentials.strip()
    if not _B64TOKEN.fullmatch(credentials):
        raise InvalidRequest("The Authorization header has no valid bearer token")
    return credentials
