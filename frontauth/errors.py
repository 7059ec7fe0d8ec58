"""OAuth protocol errors: one exception class per error code.

Each class carries its RFC error code and HTTP status as class attributes. An
instance takes a public ``description`` (sent to the client), a private
``detail`` (logged at DEBUG only) and, for authorization-endpoint errors,
whether it may be sent back to the client's redirect_uri. Nothing here builds a
response: :mod:`frontauth.responses` renders every error in one place.
"""

from __future__ import annotations

import re

# RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E
# (printable ASCII without '"' and '\').
_DESCRIPTION_CHARS = re.compile(r'^[\x20\x21\x23-\x5b\x5d-\x7e]*$')


class OAuthError(Exception):
    """Base class of the errors returned to clients, rendered by frontauth.responses."""

    error: str = "server_error"
    status: int = 400

    def __init__(
        self,
        description: str | None = None,
        *,
        detail: str | None = None,
        redirectable: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        if description is not None and not _DESCRIPTION_CHARS.match(description):
            raise ValueError(f"error_description has characters RFC 6749 §5.2 forbids: {description!r}")
        super().__init__(description or self.error)
        self.description = description
        self.detail = detail
        self.redirectable = redirectable
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        """Return the JSON error object of RFC 6749 §5.2."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 §5.2: client authentication failed; 401 with WWW-Authenticate."""

    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the resource parameter names a resource this server does not serve."""

    error = "invalid_target"


class AccessDenied(OAuthError):
    error = "access_denied"
    status = 403


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1."""

    error = "unsupported_token_type"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: the bearer token is missing, expired, revoked or malformed."""

    error = "invalid_token"
    status = 401


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1: the token lacks a scope the request needs."""

    error = "insufficient_scope"
    status = 403

    def __init__(self, scope: str, description: str | None = None) -> None:
        super().__init__(description or "the access token does not carry the required scope")
        self.scope = scope


class InvalidRedirectUri(OAuthError):
    """RFC 7591 §3.2.2."""

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """RFC 7591 §3.2.2."""

    error = "invalid_client_metadata"


class LoginRequired(OAuthError):
    error = "login_required"


class ServerError(OAuthError):
    error = "server_error"
    status = 500


class TemporarilyUnavailable(OAuthError):
    """Storage or an upstream dependency is down; the client should retry later."""

    error = "temporarily_unavailable"
    status = 503


class SlowDown(OAuthError):
    """Too many requests from this client address or for this user."""

    error = "slow_down"
    status = 429


class PageError(OAuthError):
    """An error shown to the person in the browser, never redirected to the client.

    Used where redirecting would be unsafe (unknown client, mismatched
    redirect_uri, RFC 6749 §4.1.2.1) or where no client redirect exists
    (a stale or replayed consent form).
    """

    error = "invalid_request"

    def __init__(self, title: str, description: str, *, status: int = 400, detail: str | None = None) -> None:
        super().__init__(description, detail=detail)
        self.title = title
        self.status = status
