"""Validation of an authorization request and issuance of its code.

The authorize endpoint runs the ``check_*`` steps in order. Until the client
and its redirect_uri are verified, errors go to an error page; after that,
they go back to the client with ``state`` and ``iss`` (RFC 6749 §4.1.2.1).
A repeated parameter follows the same split: a repeated client_id or
redirect_uri gets the page, any other repeated parameter the redirect.
"""

from __future__ import annotations

import functools
import re
import urllib.parse

from frontauth.clients import find_redirect_uri
from frontauth import cimd
from frontauth.identifiers import find_resource
from frontauth.errors import InvalidRequest, InvalidScope, InvalidTarget, PageError, UnsupportedResponseType
from frontauth.params import duplicated_error
from frontauth.services import Services
from frontauth.stores import ClientRecord, CodeRecord, PendingAuthorization
from frontauth.tokens import new_id, new_opaque

MAX_STATE_LENGTH = 1024
# Parameters that decide where errors may be sent; a repeated one makes both untrustworthy.
REDIRECT_DECIDING = ("client_id", "redirect_uri")


def check_redirect_parameters_unique(duplicated: list[str]) -> None:
    """RFC 6749 §3.1: with client_id or redirect_uri repeated, the error can only go to a page."""
    for name in REDIRECT_DECIDING:
        if name in duplicated:
            raise PageError("Invalid request", f"parameter {name} is included more than once")


def check_unique(duplicated: list[str]) -> None:
    """RFC 6749 §3.1: parameters must not be repeated; sent back to the verified redirect_uri."""
    if duplicated:
        raise duplicated_error(duplicated[0], redirectable=True)


async def check_client(services: Services, client_id: str | None) -> ClientRecord:
    if not client_id:
        raise PageError("Unknown application", "The request does not name a client (client_id is missing).")
    if cimd.is_document_url(client_id, services.settings):
        # Errors render as a page: the client is not verified, so nothing is redirected.
        return await services.clients.documents.resolve(client_id)
    client = await services.clients.find(client_id)
    if client is None:
        raise PageError("Unknown application", "No application is registered under this client_id.", detail=client_id[:80])
    return client


def check_redirect_uri(client: ClientRecord, requested: str | None) -> str:
    # SECURITY: an unverified redirect_uri gets an error page, never a redirect (open redirector).
    redirect_uri = find_redirect_uri(client, requested)
    if redirect_uri is None:
        raise PageError(
            "Invalid redirect address",
            "The redirect_uri does not match any address registered for this application.",
        )
    return redirect_uri


def check_response_type(response_type: str | None) -> None:
    if not response_type:
        raise InvalidRequest("response_type is required", redirectable=True)
    if response_type != "code":
        # OAuth 2.1 keeps only the code response type: no implicit flow.
        raise UnsupportedResponseType("response_type must be code", redirectable=True)


def check_state(state: str | None) -> str:
    if not state:
        raise InvalidRequest("state is required", redirectable=True)
    if len(state) > MAX_STATE_LENGTH:
        raise InvalidRequest("state is too long", redirectable=True)
    return state


def check_scope(services: Services, client: ClientRecord, requested: str | None) -> str:
    """Return the granted scope string; unknown scopes are refused, not dropped."""
    settings = services.settings
    allowed = set(client.scope.split()) if client.scope else set(settings.scopes)
    if requested is None or not requested.strip():
        default = settings.default_scope or " ".join(sorted(settings.scopes))
        return " ".join(s for s in default.split() if s in allowed)
    wanted = list(dict.fromkeys(requested.split()))
    unknown = [s for s in wanted if s not in settings.scopes]
    if unknown:
        raise InvalidScope("the request names a scope this server does not offer", redirectable=True)
    if any(s not in allowed for s in wanted):
        raise InvalidScope("the client may not request this scope", redirectable=True)
    return " ".join(wanted)


def check_resource(services: Services, resources: list[str]) -> str:
    """RFC 8707 §2: the resource must be one this server issues tokens for."""
    audiences = services.settings.audiences
    if not resources:
        return audiences[0]
    if len(resources) > 1:
        raise InvalidTarget("only one resource per request is supported", redirectable=True)
    resource = resources[0]
    try:
        parts = urllib.parse.urlsplit(resource)
    except ValueError:  # for example an unclosed IPv6 bracket
        parts = None
    if parts is None or not parts.scheme or not parts.netloc or parts.fragment:
        raise InvalidTarget("resource must be an absolute URI without a fragment", redirectable=True)
    configured = find_resource(resource, audiences)
    if configured is None:
        raise InvalidTarget("this server does not issue tokens for the requested resource", redirectable=True)
    # The token's aud carries the configured spelling, which resource servers check.
    return configured


async def consent_needed(
    services: Services,
    subject: str,
    pending: PendingAuthorization,
    prompt: frozenset[str] = frozenset(),
    client: ClientRecord | None = None,
) -> list[str] | None:
    """Return the scopes the person must approve now, or None when the code may be issued at once.

    A remembered consent covers one user, one client and one resource
    (the token audience). An empty list means the page must still be shown,
    with no scope marked new. ``client`` is the pending request's client when
    the caller has just looked it up; otherwise it is looked up here.
    """
    consent = services.settings.consent
    if not consent.enabled:
        return None
    approved = await services.stores.get_consent(subject, pending.client_id, pending.resource)
    new_scopes = [s for s in pending.scope.split() if s not in approved]
    if new_scopes or not consent.remember or "consent" in prompt:
        return new_scopes
    if client is None or client.client_id != pending.client_id:
        client = await services.clients.find(pending.client_id)
    if client is None or (not client.confidential and pending.redirect_uri not in client.redirect_uris):
        # SECURITY: RFC 8252 §8.6: any local process can claim a loopback port,
        # so a public client on a port other than the registered one is not
        # identified well enough to skip the person's approval.
        return []
    return None


async def issue_code(services: Services, pending: PendingAuthorization, subject: str, auth_time: int) -> dict[str, str]:
    """Store a new authorization code for the pending request; return the redirect parameters."""
    code = new_opaque()
    record = CodeRecord(
        client_id=pending.client_id,
        redirect_uri=pending.redirect_uri,
        redirect_uri_explicit=pending.redirect_uri_explicit,
        code_challenge=pending.code_challenge,
        scope=pending.scope,
        resource=pending.resource,
        subject=subject,
        auth_time=auth_time,
        family_id=new_id(),
    )
    await services.stores.put_code(code, record, services.settings.tokens.code_ttl)
    # RFC 9207 §2: iss lets the client detect a mix-up between servers.
    return {"code": code, "state": pending.state, "iss": services.settings.issuer}


@functools.lru_cache(maxsize=1024)
def redirect_origin(redirect_uri: str) -> str:
    """Return the CSP source that allows a form to end in a redirect to this URI."""
    parts = urllib.parse.urlsplit(redirect_uri)
    scheme = parts.scheme if re.fullmatch(r"[a-z][a-z0-9+.\-]*", parts.scheme) else ""
    if not scheme:
        return "'none'"
    if scheme in ("http", "https"):
        # SECURITY: rebuilt from the parsed host and port, so no text of the
        # registered URI (a space or ';') can add a CSP directive.
        host = parts.hostname or ""
        if not re.fullmatch(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]+", host):
            return "'none'"
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port is not None else ""
        return f"{scheme}://{host}{port}"
    return f"{scheme}:"
