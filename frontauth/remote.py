"""Remote mode: sign-in at the upstream identity provider, on behalf of an MCP client.

Lifecycle of one sign-in:

1. ``/oauth/authorize`` validates the MCP client's request as in local mode and
   stores the pending authorization. Without a session, :func:`redirect_upstream`
   stores an :class:`~frontauth.stores.UpstreamState` (frontauth's own PKCE
   verifier and OpenID Connect nonce) under a new ``state`` and sends the
   browser to the provider.
2. ``/oauth/callback`` takes that state (single use), checks that the same
   browser returns, exchanges the code (:func:`exchange_code`), validates the
   ID token (:func:`validate_id_token`), optionally reads userinfo, starts a
   session and keeps the upstream tokens in the vault under that session.
3. Consent and the code for the MCP client then work as in local mode.

Every upstream failure after step 2 begins becomes an :class:`UpstreamError`
carrying the OAuth error that the MCP client receives on its redirect URI.
"""

from __future__ import annotations

import json
import logging
import secrets
import typing
import urllib.parse
import warnings

import aiohttp
from aiohttp import web
from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError, SecurityWarning
from joserfc.jwt import JWTClaimsRegistry

from frontauth import errors, pkce
from frontauth.resource.errors import KeySetUnavailable
from frontauth.resource.jwks import FetchError
from frontauth.resource.verifier import DEFAULT_ALGORITHMS
from frontauth.responses import NO_STORE
from frontauth.services import Services
from frontauth.stores import UpstreamState, VaultRecord
from frontauth.tokens import new_opaque
from frontauth.upstream import Upstream

logger = logging.getLogger("frontauth.oauth")

CALLBACK_PATH = "/oauth/callback"
# Upstream errors that mean the person did not (or could not) approve the sign-in.
# OpenID Connect Core §3.1.2.6 adds the *_required codes to RFC 6749's access_denied.
_DENIALS = frozenset(
    {"access_denied", "login_required", "consent_required", "interaction_required", "account_selection_required"}
)
_MAX_TOKEN_RESPONSE = 64 * 1024


class UpstreamError(Exception):
    """An upstream failure, with the OAuth error the MCP client should receive."""

    def __init__(self, error: errors.OAuthError, log_message: str) -> None:
        super().__init__(log_message)
        self.error = error


def callback_url(services: Services) -> str:
    return services.settings.issuer + CALLBACK_PATH


def upstream_of(services: Services) -> Upstream:
    assert services.upstream is not None  # create_app connects it in remote mode
    return services.upstream


async def redirect_upstream(services: Services, pending_id: str) -> web.Response:
    """Store the upstream state of a pending authorization; return the redirect to the provider."""
    upstream = upstream_of(services)
    state = new_opaque()
    verifier = secrets.token_urlsafe(48)  # RFC 7636 §4.1: 43 to 128 characters
    record = UpstreamState(pending_id=pending_id, code_verifier=verifier, nonce=new_opaque())
    await services.stores.put_upstream_state(state, record, services.settings.tokens.pending_ttl)

    params = {
        "response_type": "code",
        "client_id": upstream.settings.client_id or "",
        "redirect_uri": callback_url(services),
        "scope": " ".join(upstream.settings.scopes),
        "state": state,
        "nonce": record.nonce,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
    }
    endpoint = upstream.metadata.authorization_endpoint or ""
    separator = "&" if urllib.parse.urlsplit(endpoint).query else "?"
    location = endpoint + separator + urllib.parse.urlencode(params)
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def error_from_callback(error: str, description: str | None) -> UpstreamError:
    """Map an error the provider sent to the callback onto the MCP client's error."""
    if error in _DENIALS:
        return UpstreamError(errors.AccessDenied("the sign-in at the identity provider was not approved", redirectable=True),
                             f"upstream returned {error}")
    if error == "temporarily_unavailable":
        return UpstreamError(errors.TemporarilyUnavailable("the identity provider is temporarily unavailable",
                                                           redirectable=True), "upstream returned temporarily_unavailable")
    return UpstreamError(errors.ServerError("the identity provider rejected the sign-in request", redirectable=True),
                         f"upstream returned {error[:64]!r}")


async def exchange_code(services: Services, code: str, state: UpstreamState) -> dict[str, typing.Any]:
    """Redeem the upstream code with frontauth's PKCE verifier; return the token response.

    Raises:
        UpstreamError: the provider is unreachable, or returned an error or an unusable body.
    """
    upstream = upstream_of(services)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": callback_url(services),
        "code_verifier": state.code_verifier,
    }
    return await _token_request(upstream, form, "code exchange")


async def refresh_tokens(upstream: Upstream, refresh_token: str) -> dict[str, typing.Any]:
    """Refresh the upstream access token; return the token response.

    Raises:
        UpstreamError: as :func:`exchange_code`.
    """
    return await _token_request(upstream, {"grant_type": "refresh_token", "refresh_token": refresh_token}, "refresh")


async def read_limited(content: aiohttp.StreamReader, limit: int) -> bytes:
    """Read a body to its end, stopping once it exceeds ``limit`` bytes.

    StreamReader.read(n) returns what has arrived, which may be fewer than n
    bytes before the end of the body, so one call can cut a response short.
    """
    body = bytearray()
    while len(body) <= limit:
        chunk = await content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


async def _token_request(upstream: Upstream, form: dict[str, str], purpose: str) -> dict[str, typing.Any]:
    client_id = upstream.settings.client_id or ""
    auth = None
    if upstream.settings.client_secret:
        # RFC 6749 §2.3.1: client_secret_basic, with both parts form-encoded first.
        auth = aiohttp.BasicAuth(urllib.parse.quote(client_id, safe=""),
                                 urllib.parse.quote(upstream.settings.client_secret, safe=""))
    else:
        form = {**form, "client_id": client_id}
    endpoint = upstream.metadata.token_endpoint or ""
    try:
        async with upstream.session.post(endpoint, data=form, auth=auth, timeout=upstream.timeout,
                                         allow_redirects=False, headers={"Accept": "application/json"}) as response:
            body = await read_limited(response.content, _MAX_TOKEN_RESPONSE)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(
            errors.TemporarilyUnavailable("the identity provider is unreachable", redirectable=True),
            f"upstream {purpose} failed: {type(exc).__name__}",
        ) from None
    try:
        document = json.loads(body) if len(body) <= _MAX_TOKEN_RESPONSE else None
    except (ValueError, RecursionError):
        # RecursionError: the json module gives up on deeply nested arrays or objects.
        document = None
    if status != 200 or not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        upstream_error = document.get("error") if isinstance(document, dict) else None
        raise UpstreamError(
            errors.ServerError("the identity provider did not complete the sign-in", redirectable=True),
            f"upstream {purpose} returned HTTP {status} error={str(upstream_error)[:64]!r}",
        )
    return document


async def validate_id_token(services: Services, id_token: str, nonce: str) -> dict[str, typing.Any]:
    """Check the upstream ID token (OpenID Connect Core §3.1.3.7) and return its claims.

    Checks: signature by a key of the upstream JWKS, ``iss`` equal to the
    provider, ``aud`` containing frontauth's client_id, ``exp`` and ``iat`` with
    ``tokens.leeway``, and ``nonce`` equal to the one sent.

    Raises:
        UpstreamError: any check fails, or no key set can be loaded.
    """
    upstream = upstream_of(services)
    registry = jws.JWSRegistry(algorithms=list(DEFAULT_ALGORITHMS))
    try:
        signed = jws.extract_compact(id_token.encode("ascii"), registry=registry)
        header = signed.headers()
        if header.get("alg") not in DEFAULT_ALGORITHMS:
            raise _invalid_id_token("algorithm not accepted")
        key = await upstream.keys.get_key(str(header.get("kid", "")))
        if key is None:
            raise _invalid_id_token("no key of the provider matches its kid")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            if not jws.validate_compact(signed, key, registry=registry):
                raise _invalid_id_token("signature is invalid")
        claims = json.loads(signed.payload)
    except KeySetUnavailable:
        raise UpstreamError(errors.TemporarilyUnavailable("the identity provider's keys cannot be loaded",
                                                          redirectable=True), "upstream key set unavailable") from None
    except (JoseError, ValueError, TypeError, UnicodeError, RecursionError):
        raise _invalid_id_token("malformed") from None
    if not isinstance(claims, dict):
        raise _invalid_id_token("malformed")
    checks = JWTClaimsRegistry(
        leeway=services.settings.tokens.leeway,
        iss={"essential": True, "value": upstream.issuer},
        aud={"essential": True, "value": upstream.settings.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        # SECURITY: OpenID Connect Core §3.1.2.1: the nonce binds the ID token
        # to this sign-in, so a token replayed from another one is rejected.
        nonce={"essential": True, "value": nonce},
    )
    try:
        checks.validate(claims)
    except ExpiredTokenError:
        raise _invalid_id_token("expired") from None
    except (MissingClaimError, ClaimError) as exc:
        raise _invalid_id_token(f"claim check failed: {type(exc).__name__} {getattr(exc, 'claim', '')}") from None
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise _invalid_id_token("sub is not a string")
    return claims


def _invalid_id_token(reason: str) -> UpstreamError:
    return UpstreamError(errors.ServerError("the identity provider returned an invalid ID token", redirectable=True),
                         f"upstream ID token rejected: {reason}")


async def fetch_userinfo(services: Services, access_token: str, subject: str | None) -> dict[str, typing.Any]:
    """Return the upstream userinfo claims; {} when they cannot be read or name another subject.

    Args:
        subject: the ID token's ``sub`` that userinfo must repeat, or None when
            there is no ID token and userinfo is the only source of the subject.
    """
    upstream = upstream_of(services)
    endpoint = upstream.metadata.userinfo_endpoint
    if not endpoint:
        return {}
    session = upstream.session
    try:
        async with session.get(endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                               timeout=upstream.timeout, allow_redirects=False) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            body = await read_limited(response.content, _MAX_TOKEN_RESPONSE)
            if len(body) > _MAX_TOKEN_RESPONSE:
                raise FetchError(f"the response is larger than {_MAX_TOKEN_RESPONSE} bytes")
            document = json.loads(body)
    except (FetchError, aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:
        logger.warning("upstream userinfo not used: %s", type(exc).__name__ if not isinstance(exc, FetchError) else exc)
        return {}
    # SECURITY: OpenID Connect Core §5.3.2: userinfo of another subject must not be used.
    if not isinstance(document, dict) or (subject is not None and document.get("sub") != subject):
        logger.warning("upstream userinfo not used: its sub differs from the ID token's")
        return {}
    return document


def vault_record(tokens: dict[str, typing.Any], subject: str, now: float) -> VaultRecord:
    """Build the vault record of an upstream token response."""
    expires_in = tokens.get("expires_in")
    expires_at = int(now + expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else None
    refresh_token = tokens.get("refresh_token")
    id_token = tokens.get("id_token")
    scope = tokens.get("scope")
    return VaultRecord(
        access_token=tokens["access_token"],
        expires_at=expires_at,
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        id_token=id_token if isinstance(id_token, str) else None,
        scope=scope if isinstance(scope, str) else "",
        subject=subject,
    )
