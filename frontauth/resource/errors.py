"""Bearer-token errors of a protected resource and their one HTTP rendering.

Every error carries its RFC 6750 §3.1 error code and HTTP status. The
description is public: it goes into the ``WWW-Authenticate`` header and the
response body, so it is always a fixed text written here and never contains the
token, a claim value or anything else taken from the request.
"""

from __future__ import annotations

import json
import re

import attrs

# RFC 6750 §3: error_description and scope values are restricted to these
# characters, which also keeps them valid inside an HTTP quoted-string.
_PARAMETER_VALUE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


class BearerError(Exception):
    """A request failed bearer-token authentication.

    Attributes:
        error: the RFC 6750 error code, or None when the challenge carries none.
        status: the HTTP status of the response.
        description: public text for ``error_description``.
    """

    error: str | None = None
    status: int = 401

    def __init__(self, description: str) -> None:
        if not _PARAMETER_VALUE.fullmatch(description):
            raise ValueError(f"error_description has characters RFC 6750 §3 forbids: {description!r}")
        super().__init__(description)
        self.description = description


class MissingToken(BearerError):
    """The request carries no bearer token.

    RFC 6750 §3.1: such a challenge should include no error code and no error
    information, only the parameters that tell the client where to authenticate.
    """

    error = None
    status = 401


class InvalidRequest(BearerError):
    """The request presents its token in a way this resource does not accept (RFC 6750 §3.1)."""

    error = "invalid_request"
    status = 400


class InvalidToken(BearerError):
    """The access token is malformed, expired, revoked, or not meant for this resource."""

    error = "invalid_token"
    status = 401


class InsufficientScope(BearerError):
    """The access token is valid but lacks a scope the request requires.

    Attributes:
        scope: the space-separated scopes the request requires, for the ``scope``
            parameter of the challenge (RFC 6750 §3).
    """

    error = "insufficient_scope"
    status = 403

    def __init__(self, description: str, scope: str) -> None:
        if not _PARAMETER_VALUE.fullmatch(scope):
            raise ValueError(f"scope has characters RFC 6750 §3 forbids: {scope!r}")
        super().__init__(description)
        self.scope = scope


class VerificationUnavailable(Exception):
    """A token could not be checked because a part the check needs is unavailable.

    This is a fault of the resource server or the authorization server, not of
    the client, so it is rendered as 503 rather than as an RFC 6750 challenge.

    Attributes:
        public_description: fixed text for the ``error_description`` of the 503 response.
    """

    public_description = "The access token could not be checked"


class KeySetUnavailable(VerificationUnavailable):
    """No key set could be loaded yet, so no token can be checked."""

    public_description = "The token signing keys could not be loaded"


class IntrospectionUnavailable(VerificationUnavailable):
    """Token introspection failed, and the verifier is set to reject tokens it cannot check there."""

    public_description = "The access token status could not be checked"


@attrs.frozen
class Challenge:
    """An HTTP response that rejects a request, independent of the web framework."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def render_challenge(error: BearerError, resource_metadata_url: str | None) -> Challenge:
    """Build the response for a failed bearer-token check.

    Args:
        error: the failure.
        resource_metadata_url: URL of the resource's RFC 9728 metadata, sent as
            the ``resource_metadata`` parameter so that a client can discover the
            authorization server (RFC 9728 §5.1). None leaves it out.

    Returns:
        The status, the headers (``WWW-Authenticate`` first) and the body.
    """
    parameters: list[tuple[str, str]] = []
    if error.error is not None:
        parameters.append(("error", error.error))
        parameters.append(("error_description", error.description))
    if isinstance(error, InsufficientScope):
        parameters.append(("scope", error.scope))
    if resource_metadata_url is not None:
        parameters.append(("resource_metadata", resource_metadata_url))

    challenge = "Bearer"
    if parameters:
        challenge += " " + ", ".join(f'{name}="{value}"' for name, value in parameters)

    if error.error is None:
        body = b"A bearer token is required."
        content_type = "text/plain; charset=utf-8"
    else:
        body = json.dumps({"error": error.error, "error_description": error.description}).encode()
        content_type = "application/json"
    headers = (("WWW-Authenticate", challenge), ("Content-Type", content_type), ("Cache-Control", "no-store"))
    return Challenge(status=error.status, headers=headers, body=body)


def render_unavailable(error: VerificationUnavailable | None = None) -> Challenge:
    """Build the 503 response sent while a token cannot be checked.

    Args:
        error: the failure. None stands for :class:`KeySetUnavailable`.
    """
    description = (error or KeySetUnavailable()).public_description
    body = json.dumps({"error": "temporarily_unavailable", "error_description": description}).encode()
    headers = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
    return Challenge(status=503, headers=headers, body=body)


def check_metadata_url(url: str | None) -> None:
    """Raise ValueError if *url* cannot be sent inside a quoted ``resource_metadata`` parameter."""
    if url is not None and not _PARAMETER_VALUE.fullmatch(url):
        raise ValueError(f"resource_metadata_url has characters a quoted-string cannot hold: {url!r}")
